"""Identifier columns: unique keys that take no space in the model and are regenerated on decode.

Statistics: whether the ids are integers (from the column's dtype) and the first `ID_SAMPLE` non-null ids by
global row order, from which a text id's prefix and zero-padded width are read. Memory: `ID_SAMPLE` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.base import ColumnStatistics
from tabtwin.pipeline.columns.samples import Head

ID_SAMPLE = 1000
MAX_ID_PREFIX = 1000  # characters of a regenerated id's prefix
MAX_ID_WIDTH = 12  # zero-padding up to this many digits; longer ids (UUIDs) get none


@dataclass
class Identifier:
    """Learned state of one id column: integers, or text ids `prefix` + a number padded to `width` digits."""

    name: str
    dtype: str
    integer: bool
    prefix: str
    width: int


class IdentifierStatistics(ColumnStatistics):
    """Accumulator of an id column (see the module docstring)."""

    def __init__(self, spec, options):
        super().__init__(spec, options)
        self.integer = True
        self.head = Head(ID_SAMPLE)

    def _update(self, series: pd.Series, row_offset: int) -> None:
        self.integer = self.integer and pd.api.types.is_integer_dtype(series)
        self.nulls += int(series.isna().sum())
        if len(self.head.rows) < self.head.size:
            present = series.dropna().head(self.head.size)
            self.head.update(row_offset + present.index.to_numpy(), present.astype(str).to_numpy(dtype=object))

    def _merge_from(self, other: IdentifierStatistics) -> None:
        self.integer = self.integer and other.integer
        self.head.merge_from(other.head)

    def finalise(self) -> Identifier:
        sample = pd.Series(self.head.values, dtype=object)
        integer = self.integer
        prefix = "" if integer else _common_prefix(sample.tolist()).rstrip("0123456789")[:MAX_ID_PREFIX] or "id_"
        width = int(sample.str.len().max() - len(prefix)) if len(sample) and not integer else 0
        width = width if 0 < width <= MAX_ID_WIDTH else 1
        return Identifier(name=self.name, dtype=self.spec.dtype, integer=integer, prefix=prefix, width=width)


def _common_prefix(texts: list[str]) -> str:
    if not texts:
        return ""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def generate_ids(state: Identifier, n: int, offset: int) -> pd.Series:
    """`n` fresh ids numbered from `offset`, in the column's form."""
    numbers = np.arange(offset, offset + n)
    if state.integer:
        return pd.Series(numbers).astype(state.dtype)
    return pd.Series([f"{state.prefix}{i:0{state.width}d}" for i in numbers], dtype=object)
