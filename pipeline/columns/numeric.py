"""Continuous columns: numbers, with nulls and the special values +inf / -inf.

Statistics, per chunk of rows and merged: null and special-value counts, the exact minimum and maximum, the
first `DECIMALS_SAMPLE` finite values (the column's decimals, `pipeline.forms`), a uniform sample of finite
values (`TableEncoder`'s mixture), and the distribution of the finite values:

- exact while the column holds at most `exact_values` distinct values (2**20 by default): (value, count) arrays,
  merged exactly, so everything computed from them (quantiles, spikes, distinct counts) is the same as on the
  whole column, bit for bit;
- past that, a KLL sketch (Karnin, Lang and Liberty 2016, "Optimal quantile approximation in streams"; Apache
  DataSketches' `kll_doubles_sketch`). With k = 4096 a rank it returns is within 0.071 % of the true
  normalised rank with 99 % confidence (`get_normalized_rank_error(4096, False)`), a fraction of the flagship's
  resolution of 1 / (64 bins x 8 slices) = 0.2 %. Spikes (values holding a share of the rows) then come from
  the sketch's mass at each retained value: an estimate within twice that error of the true share, enough for
  spike thresholds of 1 %. The sketch draws its compaction coins from DataSketches' own unseeded generator, so
  past the cap two fits agree within that error, not bit for bit.

Memory per column: at most `exact_values` pairs, then the sketch (about 100 KB), plus the two samples.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasketches import kll_doubles_sketch

from tabtwin.pipeline.columns.base import ColumnStatistics
from tabtwin.pipeline.columns.samples import BottomK, Head
from tabtwin.pipeline.forms import DECIMALS_SAMPLE, SPECIALS, FormFacts, model_numbers

_REPEAT_BATCH = 1 << 20  # values fed to the sketch at once when a (value, count) array joins it


@dataclass
class NumericSummary:
    """A finalised numeric column, in model units (a datetime column's values are counts of `unit`).

    `distinct` (ascending float64) and `counts` (int64, summing to about `finite`) are the finite values and
    their counts: exact when `exact`, else the sketch's retained values and weights, whose ranks are within
    `rank_error` (normalised) of the true ones, with the exact minimum and maximum included."""

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
        self.sketch: kll_doubles_sketch | None = None
        self.minimum = None
        self.maximum = None
        self.head = Head(DECIMALS_SAMPLE)
        self.sample = BottomK(options.sample_rows, options.sample_seed)
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
        if self.sketch is not None:
            self.sketch.update(x.astype(np.float64))
        else:
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
        if other.sketch is not None:
            if self.sketch is None:
                self._start_sketch()
            self.sketch.merge(other.sketch)
        elif self.sketch is not None:
            self._feed(other.distinct, other.counts)
        else:
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
            self._start_sketch()

    def _start_sketch(self) -> None:
        self.sketch = kll_doubles_sketch(self.options.sketch_k)
        self._feed(self.distinct, self.counts)
        self.distinct, self.counts = self.distinct[:0], self.counts[:0]

    def _feed(self, distinct: np.ndarray, counts: np.ndarray) -> None:
        """Add exact (value, count) pairs to the sketch (it takes no weights), a batch of values at a time."""
        ends = np.cumsum(counts)
        start = 0
        while start < len(distinct):
            stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + _REPEAT_BATCH, "right")), start + 1)
            self.sketch.update(np.repeat(distinct[start:stop], counts[start:stop]).astype(np.float64))
            start = stop

    def units(self, stored: np.ndarray) -> np.ndarray:
        """Stored values (exact arrays, samples, extremes) in model units, float64."""
        return np.asarray(stored, dtype=np.float64)

    def sketch_units(self, items: np.ndarray) -> np.ndarray:
        """The sketch's float64 items in model units."""
        return items

    def distribution(self) -> tuple[np.ndarray, np.ndarray, bool, float]:
        """(distinct, counts, exact, rank_error) of the finite values in model units (see `NumericSummary`)."""
        if self.sketch is None:
            return self.units(self.distinct), self.counts.copy(), True, 0.0
        retained = list(self.sketch)
        items = self.sketch_units(np.array([item for item, _ in retained], dtype=np.float64))
        extremes = self.units(np.array([self.minimum, self.maximum], dtype=self.storage))
        values, where = np.unique(np.r_[items, extremes], return_inverse=True)
        totals = np.zeros(len(values), dtype=np.int64)
        np.add.at(totals, where, np.r_[[weight for _, weight in retained], 0, 0].astype(np.int64))
        totals = np.maximum(totals, 1)  # an extreme the sketch did not retain still holds a row
        return values, totals, False, kll_doubles_sketch.get_normalized_rank_error(self.options.sketch_k, False)

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

    def __getstate__(self):
        state = dict(self.__dict__)
        state["sketch"] = None if self.sketch is None else self.sketch.serialize()
        return state

    def __setstate__(self, state):
        sketch = state["sketch"]
        self.__dict__.update(state, sketch=None if sketch is None else kll_doubles_sketch.deserialize(sketch))
