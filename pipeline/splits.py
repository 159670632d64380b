"""The training/holdout split of a partitioned table, row by row, without reading it whole.

`RowSplit(table, fraction, seed, holdout=True)` is the holdout side of a seeded random split of the partitioned
`table` (a `pipeline.datasets.PartitionedTable` or `pipeline.sql_parts.SqlPartitionedTable`), `holdout=False` the
training side; each is itself a partitioned table (`parts`, `part_rows`, `count_rows`, `read_part`, `spread`), so
the partitioned fit, the statistics and the evaluation at scale take it as they take the table.

Row r of part i goes to the holdout when the r-th of the uniform draws of `numpy.random.default_rng([seed, i])`
is below `fraction`: which rows are held out depends on the seed and the parts alone (not on the number of
workers or the order parts are read in), the two sides are disjoint and cover the table, and a part's side is
known from its row count without reading its data. The holdout holds about `fraction` of the rows (binomially),
where the in-memory split (`flows.steps.split_train_holdout`) holds exactly round(rows x fraction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabtwin.pipeline.errors import TabtwinError


class RowSplit:
    """One side of the seeded row split of `table` (see the module docstring). Raises TabtwinError for a fraction
    outside (0, 1)."""

    def __init__(self, table, fraction: float, seed: int, holdout: bool):
        if not 0 < fraction < 1:
            raise TabtwinError(f"holdout fraction must be between 0 and 1, got {fraction}")
        self.table, self.fraction, self.seed, self.holdout = table, float(fraction), int(seed), bool(holdout)
        self._sizes = table.part_rows()
        self._rows = None  # each part's rows on this side, counted once

    @property
    def parts(self) -> list:
        return self.table.parts

    def mask(self, index: int) -> np.ndarray:
        """(rows of part `index`,) bool: which of its rows are on this side."""
        draws = np.random.default_rng([self.seed, index]).random(self._sizes[index])
        return (draws < self.fraction) == self.holdout

    def part_rows(self) -> list[int]:
        if self._rows is None:
            self._rows = [int(self.mask(index).sum()) for index in range(len(self._sizes))]
        return list(self._rows)

    def count_rows(self) -> int:
        return sum(self.part_rows())

    def read_part(self, index: int) -> pd.DataFrame:
        """This side's rows of part `index`, in the part's order. Raises TabtwinError when the part no longer has
        the rows it was counted with (the table changed during the run)."""
        frame, mask = self.table.read_part(index), self.mask(index)
        if len(frame) != len(mask):
            raise TabtwinError(f"part {index + 1} of the table had {len(mask):,} rows and now has {len(frame):,}: "
                               "the table changed during the run; rerun once it is written")
        return frame[mask].reset_index(drop=True)

    def spread(self, rows: int) -> pd.DataFrame:
        """Rows from every part alike (schema inference), both sides': the in-memory run infers its schema before
        splitting too."""
        return self.table.spread(rows)


def split_parts(table, fraction: float, seed: int) -> tuple[RowSplit, RowSplit]:
    """(training side, holdout side) of `table`'s seeded row split. Raises TabtwinError for a fraction outside
    (0, 1) or a table too small to keep a holdout and train on the rest."""
    train, holdout = RowSplit(table, fraction, seed, holdout=False), RowSplit(table, fraction, seed, holdout=True)
    if train.count_rows() < 2 or holdout.count_rows() < 1:
        raise TabtwinError(f"the table has {table.count_rows()} rows: too few to keep a holdout of {fraction:.0%} "
                           "and train on the rest")
    return train, holdout
