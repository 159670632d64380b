"""Continuous columns: numbers, with nulls and the special values +inf / -inf.

Statistics, per chunk of rows and merged: null and special-value counts, the exact minimum and maximum, the
first `DECIMALS_SAMPLE` finite values (the column's decimals, `pipeline.forms`), a uniform sample of finite
values (`TableEncoder`'s mixture), and the distribution of the finite values:

- exact while the column holds at most `exact_values` distinct values (2**20 by default): (value, count) arrays,
  merged exactly, so everything computed from them (quantiles, spikes, distinct counts) is the same as on the
  whole column, bit for bit;
- past that, a uniform sample of `quantile_rows` finite values (2**20 by default; the same bottom-k sample of
  global row indices as `pipeline.columns.samples.BottomK`, so it is the same whatever the chunking and the
  order of merges, and seeded): quantiles and spike shares are read from it. An empirical distribution
  function of k sampled rows has, at every value, a rank error with a standard deviation of at most
  0.5 / sqrt(k): 0.049 % for k = 2**20, a quarter of the flagship's resolution of 1 / (64 bins x 8 slices) =
  0.2 %; `rank_error` states four of them. The exact minimum and maximum are kept, so the range stays exact.

Memory per column: at most `exact_values` (value, count) pairs and `quantile_rows` sampled rows (16 + 24 MiB).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.base import ColumnStatistics
from tabtwin.pipeline.columns.samples import BottomK, Head
from tabtwin.pipeline.forms import DECIMALS_SAMPLE, SPECIALS, FormFacts, model_numbers

@dataclass
class NumericSummary:
    """A finalised numeric column, in model units (a datetime column's values are counts of `unit`).

    `distinct` (ascending float64) and `counts` (int64, summing to about `finite`) are the finite values and
    their counts: exact when `exact`, else the sampled values with their counts scaled to `finite`, whose ranks
    are within `rank_error` (normalised, four standard deviations) of the true ones, with the exact minimum and
    maximum included."""

    name: str
    rows: int
    nulls: int
    specials: list[str]  # keys of forms.SPECIALS present, in that order
    finite: int
    distinct: np.ndarray
    counts: np.ndarray
    exact: bool
    rank_error: float
    minimum: float | None
    maximum: float | None
    head: np.ndarray  # the first finite values, in row order
    sample: BottomK  # a uniform sample of finite values (model units)
    unit: str | None = None
    timezone: str | None = None
    facts: FormFacts | None = None

    def fit_sample(self, n: int) -> np.ndarray:
        """At most `n` finite values of the uniform sample, in row order (every value when the column holds at
        most `n`)."""
        return self.sample.first(n)


class NumericStatistics(ColumnStatistics):
    """Accumulator of a continuous column (see the module docstring)."""

    storage = np.float64  # what the exact arrays and samples hold

    def __init__(self, spec, options):
        super().__init__(spec, options)
        self.special_counts = {key: 0 for key in SPECIALS}
        self.finite = 0
        self.distinct = np.zeros(0, dtype=self.storage)
        self.counts = np.zeros(0, dtype=np.int64)
        self.overflowed = False  # more than `exact_values` distinct values: the distribution comes from the sample
        self.minimum = None
        self.maximum = None
        self.head = Head(DECIMALS_SAMPLE)
        # One bottom-k sample serves both: its `sample_rows` smallest keys are a uniform sample of that size too.
        self.sample = BottomK(max(options.sample_rows, options.quantile_rows), options.sample_seed)
        self.float32 = str(spec.dtype).lower() == "float32"

    def read(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values in `storage`, finite mask, null mask) of a chunk; special values are counted here."""
        # -0.0 becomes 0.0: the two are one value, and which of them a sort keeps would depend on the chunking.
        values = model_numbers(series) + 0.0
        for key, special in SPECIALS.items():
            self.special_counts[key] += int(np.sum(values == special))
        return values, np.isfinite(values), np.isnan(values)

    def _update(self, series: pd.Series, row_offset: int) -> None:
        values, finite, null = self.read(series)
        self.nulls += int(null.sum())
        rows = row_offset + np.flatnonzero(finite)
        x = values[finite]
        if not len(x):
            return
        self.finite += len(x)
        self._extremes(x.min(), x.max())
        self.head.update(rows[: self.head.size], x[: self.head.size])
        self.sample.update(rows, x)
        if not self.overflowed:
            self._add_exact(*np.unique(x, return_counts=True))

    def _merge_from(self, other: NumericStatistics) -> None:
        for key in SPECIALS:
            self.special_counts[key] += other.special_counts[key]
        if not other.finite:
            return
        self.finite += other.finite
        self._extremes(other.minimum, other.maximum)
        self.head.merge_from(other.head)
        self.sample.merge_from(other.sample)
        if other.overflowed:
            self._drop_exact()
        elif not self.overflowed:
            self._add_exact(other.distinct, other.counts)

    def _extremes(self, low, high) -> None:
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)

    def _add_exact(self, distinct: np.ndarray, counts: np.ndarray) -> None:
        values, where = np.unique(np.concatenate([self.distinct, distinct]), return_inverse=True)
        totals = np.zeros(len(values), dtype=np.int64)
        np.add.at(totals, where, np.concatenate([self.counts, counts]))
        self.distinct, self.counts = values, totals
        if len(values) > self.options.exact_values:
            self._drop_exact()

    def _drop_exact(self) -> None:
        """Past the cap: the distinct count of the merged rows can only grow, so whichever grouping merges them,
        the rows of a column with more than `exact_values` distinct values end here, and the sample takes over."""
        self.overflowed = True
        self.distinct, self.counts = self.distinct[:0], self.counts[:0]

    def units(self, stored: np.ndarray) -> np.ndarray:
        """Stored values (exact arrays, samples, extremes) in model units, float64."""
        return np.asarray(stored, dtype=np.float64)

    def distribution(self) -> tuple[np.ndarray, np.ndarray, bool, float]:
        """(distinct, counts, exact, rank_error) of the finite values in model units (see `NumericSummary`)."""
        if not self.overflowed:
            return self.units(self.distinct), self.counts.copy(), True, 0.0
        values, counts = np.unique(self.units(self.sample.values), return_counts=True)
        counts = np.maximum(np.round(counts * (self.finite / len(self.sample.values))), 1).astype(np.int64)
        extremes = self.units(np.array([self.minimum, self.maximum], dtype=self.storage))
        missing = ~np.isin(extremes, values)  # an extreme the sample missed still holds a row
        values, where = np.unique(np.r_[values, extremes[missing]], return_inverse=True)
        totals = np.zeros(len(values), dtype=np.int64)
        np.add.at(totals, where, np.r_[counts, np.ones(int(missing.sum()), dtype=np.int64)])
        return values, totals, False, 4 * 0.5 / np.sqrt(len(self.sample.values))

    def finalise(self) -> NumericSummary:
        distinct, counts, exact, error = self.distribution()
        sample = copy.copy(self.sample)
        sample.values = self.units(self.sample.values)
        head = self.units(self.head.values)
        low, high = (None, None) if self.minimum is None else self.units(np.array([self.minimum, self.maximum]))
        return NumericSummary(
            name=self.name, rows=self.rows, nulls=self.nulls, specials=self._specials(), finite=self.finite,
            distinct=distinct, counts=counts, exact=exact, rank_error=error,
            minimum=None if low is None else float(low), maximum=None if high is None else float(high),
            head=head, sample=sample, unit=self.unit(), timezone=self.timezone(),
            facts=self.facts(**{"specials": self._specials(), "finite_head": head, "float32": self.float32,
                                **self.typed_facts()}),
        )

    def unit(self) -> str | None:
        return None

    def timezone(self) -> str | None:
        return None

    def typed_facts(self) -> dict:
        """Facts of the column's form that only its type knows (datetime text, dates)."""
        return {}

    def form_facts(self, summary: NumericSummary):
        return summary.facts

    def _specials(self) -> list[str]:
        return [key for key, count in self.special_counts.items() if count]
