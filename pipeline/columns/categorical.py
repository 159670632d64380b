"""Discrete columns: a set of values with no order the model uses (text, codes, small integer sets).

Statistics, per chunk of rows and merged: every value seen with its count and the global row where it first
appeared, and the null count. Exact; memory bounded by the column's cardinality. Finalised, the categories are
sorted (in order of first appearance where their types do not compare), as `pipeline.categories` codes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.base import ColumnStatistics


@dataclass
class CategorySummary:
    """A finalised discrete or boolean column: its categories (sorted, see the module docstring), the count of
    each, and whether it had nulls."""

    name: str
    dtype: str
    rows: int
    has_nulls: bool
    categories: list
    counts: np.ndarray  # (categories,) int64


class CategoricalStatistics(ColumnStatistics):
    """Accumulator of a discrete column (see the module docstring)."""

    def __init__(self, spec, options):
        super().__init__(spec, options)
        self.values = np.zeros(0, dtype=object)  # in order of first appearance within this accumulator
        self.counts = np.zeros(0, dtype=np.int64)
        self.first_rows = np.zeros(0, dtype=np.int64)

    def _update(self, series: pd.Series, row_offset: int) -> None:
        codes, uniques = pd.factorize(series)  # pandas' own equality, as pd.unique; -1 for nulls
        present = codes >= 0
        self.nulls += int(np.sum(~present))
        counts = np.bincount(codes[present], minlength=len(uniques)).astype(np.int64)
        seen, first = np.unique(codes[present], return_index=True)  # first occurrence of each code
        first_rows = np.zeros(len(uniques), dtype=np.int64)
        first_rows[seen] = np.flatnonzero(present)[first]
        self._add(np.asarray(uniques, dtype=object), counts, row_offset + first_rows)

    def _merge_from(self, other: CategoricalStatistics) -> None:
        self._add(other.values, other.counts, other.first_rows)

    def _add(self, values: np.ndarray, counts: np.ndarray, first_rows: np.ndarray) -> None:
        where = pd.Index(self.values, dtype=object).get_indexer(pd.Index(values, dtype=object))
        known = where >= 0
        np.add.at(self.counts, where[known], counts[known])
        np.minimum.at(self.first_rows, where[known], first_rows[known])
        self.values = np.concatenate([self.values, values[~known]])
        self.counts = np.concatenate([self.counts, counts[~known]])
        self.first_rows = np.concatenate([self.first_rows, first_rows[~known]])

    def finalise(self) -> CategorySummary:
        order = np.argsort(self.first_rows, kind="stable")
        values, counts = self.values[order], self.counts[order]
        try:
            sorting = np.argsort(values, kind="stable")
        except TypeError:  # mixed types: keep order of first appearance
            sorting = np.arange(len(values))
        return CategorySummary(
            name=self.name, dtype=self.spec.dtype, rows=self.rows, has_nulls=self.nulls > 0,
            categories=list(values[sorting]), counts=counts[sorting],
        )
