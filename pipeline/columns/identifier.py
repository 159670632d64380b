"""Identifier columns: unique keys that take no space in the model and are regenerated on decode.

Statistics: whether the ids are integers (from the column's dtype) and the first `ID_SAMPLE` non-null ids by
global row order, from which a text id's prefix and zero-padded width are read; and the largest number among the
ids (an integer id, or the digits a text id ends with), past which regenerated ids are numbered, so that none equals
a real one. Memory: `ID_SAMPLE` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.base import ColumnStatistics
from tabtwin.pipeline.columns.personal import fake_values, pii_profile
from tabtwin.pipeline.columns.samples import Head
from tabtwin.pipeline.errors import EncodingError

ID_SAMPLE = 1000
MAX_ID_PREFIX = 1000  # characters of a regenerated id's prefix
MAX_ID_WIDTH = 12  # zero-padding up to this many digits; longer ids (UUIDs) get none
# A text id's trailing digits count up to this many: a longer run (a hash) cannot equal a regenerated number.
MAX_ID_DIGITS = 18


@dataclass
class Identifier:
    """Learned state of one id column: integers, or text ids `prefix` + a number padded to `width` digits; the
    numbers start at `start`, past every real id's. A personal-data column (`pii`, its PII sdtype) is faked
    instead, in `locale` and, for numbers, in the formats `masks` (drawn by `shares`): `pipeline.columns.personal`."""

    name: str
    dtype: str
    integer: bool
    prefix: str
    width: int
    start: int
    pii: str | None = None
    locale: str | None = None
    masks: list = field(default_factory=list)
    shares: list = field(default_factory=list)
    null_share: float = 0.0  # of a personal-data column's rows, blank in the fakes as in the real rows


class IdentifierStatistics(ColumnStatistics):
    """Accumulator of an id column (see the module docstring)."""

    def __init__(self, spec, options):
        super().__init__(spec, options)
        self.integer = True
        self.head = Head(ID_SAMPLE)
        self.largest = -1  # the largest number among the ids (see the module docstring)

    def _update(self, series: pd.Series, row_offset: int) -> None:
        self.integer = self.integer and pd.api.types.is_integer_dtype(series)
        self.nulls += int(series.isna().sum())
        self.largest = max(self.largest, largest_number(series))
        if len(self.head.rows) < self.head.size:
            present = series.dropna().head(self.head.size)
            self.head.update(row_offset + present.index.to_numpy(), present.astype(str).to_numpy(dtype=object))

    def _merge_from(self, other: IdentifierStatistics) -> None:
        self.integer = self.integer and other.integer
        self.head.merge_from(other.head)
        self.largest = max(self.largest, other.largest)

    def finalise(self) -> Identifier:
        sample = pd.Series(self.head.values, dtype=object)
        integer = self.integer
        pii = getattr(self.spec, "pii", None)
        if pii:  # nothing of the real values is kept but what `personal.pii_profile` keeps
            locale, masks, shares = pii_profile(pii, sample.tolist())
            return Identifier(name=self.name, dtype=self.spec.dtype, integer=False, prefix="", width=1, start=0,
                              pii=pii, locale=locale, masks=masks, shares=shares,
                              null_share=self.nulls / self.rows if self.rows else 0.0)
        prefix = "" if integer else _common_prefix(sample.tolist()).rstrip("0123456789")[:MAX_ID_PREFIX] or "id_"
        width = int(sample.str.len().max() - len(prefix)) if len(sample) and not integer else 0
        width = width if 0 < width <= MAX_ID_WIDTH else 1
        start = max(self.largest + 1, getattr(self.spec, "id_start", 0))  # past the whole table's, holdout too
        return Identifier(name=self.name, dtype=self.spec.dtype, integer=integer, prefix=prefix, width=width,
                          start=start)


def largest_number(series: pd.Series) -> int:
    """The largest integer id, or number a text id ends with (up to MAX_ID_DIGITS digits); -1 for none."""
    present = series.dropna()
    if not len(present):
        return -1
    if pd.api.types.is_integer_dtype(series):
        return max(int(present.max()), -1)
    digits = present.astype(str).str.extract(rf"(\d{{1,{MAX_ID_DIGITS}}})$", expand=False).dropna()
    return int(digits.astype("int64").max()) if len(digits) else -1


def _common_prefix(texts: list[str]) -> str:
    if not texts:
        return ""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def generate_ids(state: Identifier, n: int, offset: int, rng: np.random.Generator | None = None) -> pd.Series:
    """`n` fresh ids numbered from `state.start + offset`, in the column's form: none equals an id of the table
    the encoder was fitted on. A personal-data column's are fakes drawn with `rng` (`personal.fake_values`)."""
    if state.pii:
        rng = rng if rng is not None else np.random.default_rng(offset)
        values = fake_values(state.pii, state.locale, state.masks, state.shares, n, offset, rng)
        return values.mask(rng.random(n) < state.null_share) if state.null_share else values
    numbers = np.arange(state.start + offset, state.start + offset + n)
    if state.integer and len(numbers) and numbers[-1] > _largest_of(state.dtype):
        raise EncodingError(f"column {state.name!r}: ids from {numbers[0]} to {numbers[-1]} do not fit its dtype "
                            f"{state.dtype}; declare the column Int64 in the metadata or sample fewer rows")
    if state.integer:
        return pd.Series(numbers).astype(state.dtype)
    return pd.Series([f"{state.prefix}{i:0{state.width}d}" for i in numbers], dtype=object)


def _largest_of(dtype: str) -> int:
    kind = pd.api.types.pandas_dtype(dtype)
    return int(np.iinfo(getattr(kind, "numpy_dtype", kind)).max)
