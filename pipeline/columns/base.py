"""What every column type's statistics share: the accumulator protocol, the options, and the facts about a
column's form (`pipeline.forms`) that do not depend on its type."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pandas as pd

from tabtwin.pipeline.forms import FormFacts

# Distinct values a numeric column keeps exactly, as (value, count) arrays: 16 MiB at most. Past it a uniform
# sample of QUANTILE_ROWS rows takes over (`pipeline.columns.numeric`).
EXACT_VALUES = 2**20
QUANTILE_ROWS = 2**20
# The mixture of `TableEncoder` is fitted on at most this many finite values per column.
SAMPLE_ROWS = 50_000


@dataclass(frozen=True)
class StatisticsOptions:
    """How much each column keeps: `exact_values` distinct numbers kept exactly (then a uniform sample of
    `quantile_rows` finite values), a uniform sample of `sample_rows` finite values drawn with `sample_seed`."""

    exact_values: int = EXACT_VALUES
    quantile_rows: int = QUANTILE_ROWS
    sample_rows: int = SAMPLE_ROWS
    sample_seed: int = 0


class ColumnStatistics:
    """One column's accumulator: `update(series, row_offset)` with a chunk of rows whose first row is the
    table's `row_offset`-th, `merge(other)` with the accumulator of other rows (associative and commutative
    on the exact path), `finalise()` the column's summary. Plain picklable objects: Dask ships them between
    processes. Subclasses add their own statistics in `_update`, `_merge_from` and `finalise`."""

    def __init__(self, spec, options: StatisticsOptions):
        self.spec = spec
        self.options = options
        self.rows = 0
        self.nulls = 0  # counted by each type: a numeric column's nulls are what does not parse as a number
        self.label = spec.name  # the label as given (an integer label stays an integer), from the first chunk
        self.labelled = False
        self.dtype_categories: list | None = None  # a pandas `category` column's categories and order
        self.ordered = False

    @property
    def name(self) -> str:
        return self.spec.name

    def update(self, series: pd.Series, row_offset: int = 0, label=None):
        """Add a chunk of this column (`series`, any index); returns self."""
        if not self.labelled and label is not None:
            self.label, self.labelled = label, True
        if self.dtype_categories is None and isinstance(series.dtype, pd.CategoricalDtype):
            self.dtype_categories = list(series.cat.categories)
            self.ordered = bool(series.cat.ordered)
        self.rows += len(series)
        self._update(series.reset_index(drop=True), int(row_offset))
        return self

    def merge(self, other: ColumnStatistics):
        """A new accumulator of both rows (neither input changes)."""
        if type(other) is not type(self) or other.name != self.name:
            raise TypeError(f"cannot merge statistics of {other.name!r} into those of {self.name!r}")
        out = copy.deepcopy(self)
        if not out.labelled and other.labelled:
            out.label, out.labelled = other.label, True
        if out.dtype_categories is None:
            out.dtype_categories, out.ordered = other.dtype_categories, other.ordered
        out.rows += other.rows
        out.nulls += other.nulls
        out._merge_from(other)
        return out

    def facts(self, **typed) -> FormFacts:
        """The facts of the column's form common to every type, with the type's own (`typed`)."""
        return FormFacts(label=self.label, categories=self.dtype_categories, ordered=self.ordered, **typed)

    def form_facts(self, summary) -> FormFacts:
        """The facts of the column's form, given its finalised `summary`."""
        return self.facts()

    def _update(self, series: pd.Series, row_offset: int) -> None:
        raise NotImplementedError

    def _merge_from(self, other) -> None:
        raise NotImplementedError

    def finalise(self):
        raise NotImplementedError
