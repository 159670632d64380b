"""Datetime columns, and durations: values modelled as counts of the coarsest unit that divides every one of
them (dates in days, not nanoseconds).

A datetime64 column (naive or zone-aware, modelled in UTC), datetimes written as text (parsed with the column's
format; strings with UTC offsets become UTC instants, `pipeline.forms`), or a timedelta64 column. Statistics are
those of a numeric column (`pipeline.columns.numeric`) on int64 nanoseconds, which stay exact, plus the unit
(the coarsest dividing every value of every chunk: merged by taking the finer), the time zone, and for the
column's form the first strings (text format, fraction digits, UTC offsets) and whether every value was a
`datetime.date`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabtwin.pipeline.columns.numeric import NumericStatistics
from tabtwin.pipeline.columns.samples import Head
from tabtwin.pipeline.forms import (
    TEXT_SAMPLE,
    all_dates,
    is_timedelta,
    model_numbers,
    parse_text_datetimes,
    restore_dtype,
)

UNIT_NS = {  # coarsest first
    "D": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "min": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}
_UNITS = list(UNIT_NS)


def is_counted(spec) -> bool:
    """Whether the `spec` column is modelled as counts of a unit: datetimes and durations."""
    return spec.kind == "datetime" or is_timedelta(spec.dtype)


def to_nanos(series: pd.Series, spec) -> tuple[np.ndarray, np.ndarray]:
    """(int64 nanoseconds since the epoch, or of the duration; valid mask) of a datetime or duration column."""
    if pd.api.types.is_timedelta64_dtype(series):
        return series.astype("timedelta64[ns]").to_numpy().astype(np.int64), series.notna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series
    else:
        stamps = parse_text_datetimes(series, spec.datetime_format)
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64), stamps.notna().to_numpy()


def coarsest_unit(nanos: np.ndarray) -> str:
    """The coarsest unit of `UNIT_NS` that divides every value ("D" for none)."""
    for unit, unit_ns in UNIT_NS.items():
        if np.all(nanos % unit_ns == 0):
            return unit
    return "ns"


def to_model_units(series: pd.Series, spec, unit: str | None = None) -> tuple[np.ndarray, str | None]:
    """Float64 values the encoders model, NaN for nulls; datetimes and durations as counts of `unit` (None: the
    coarsest that divides every value). Returns (values, unit), unit None for plain numbers."""
    if not (pd.api.types.is_timedelta64_dtype(series) or spec.kind == "datetime"):
        return model_numbers(series), None
    nanos, valid = to_nanos(series, spec)
    unit = unit or coarsest_unit(nanos[valid])
    counts = nanos // UNIT_NS[unit]  # integer division: float division would lose nanoseconds
    return np.where(valid, counts.astype(np.float64), np.nan), unit


def from_model_units(values: np.ndarray, state) -> pd.Series:
    """Decoded model values (NaN for nulls) as the column's values: numbers in its dtype, datetimes as instants
    (in the state's time zone), durations as timedelta64. `state` has dtype, datetime_unit, timezone and
    datetime_format."""
    if state.datetime_unit is None:
        return restore_dtype(pd.Series(values), state.dtype)
    valid = ~np.isnan(values)
    nanos = np.zeros(len(values), dtype=np.int64)
    nanos[valid] = values[valid].astype(np.int64) * UNIT_NS[state.datetime_unit]
    if state.dtype.startswith("timedelta64"):
        return pd.Series(nanos.view("timedelta64[ns]")).where(valid).astype(state.dtype)
    stamps = pd.Series(nanos.view("datetime64[ns]")).where(valid)
    if state.timezone:
        stamps = stamps.dt.tz_localize("UTC").dt.tz_convert(state.timezone)
    if state.datetime_format:  # instants (UTC where the text had offsets); the column's form writes the text
        return stamps
    return restore_dtype(stamps, state.dtype)


class DatetimeStatistics(NumericStatistics):
    """Accumulator of a datetime or duration column (see the module docstring)."""

    storage = np.int64

    def __init__(self, spec, options):
        super().__init__(spec, options)
        self.unit_index = 0  # into UNIT_NS; the coarsest so far
        self.zone: str | None = None
        self.dates = True  # every non-null value so far a datetime.date
        self.texts = Head(TEXT_SAMPLE)

    def read(self, series: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(series.dtype, pd.DatetimeTZDtype) and self.zone is None:
            self.zone = str(series.dtype.tz)
        if self.spec.kind == "datetime":
            self.dates = self.dates and all_dates(series)
        nanos, valid = to_nanos(series, self.spec)
        self.unit_index = max(self.unit_index, _UNITS.index(coarsest_unit(nanos[valid])))
        return nanos, valid, ~valid

    def _update(self, series: pd.Series, row_offset: int) -> None:
        if self.spec.datetime_format and len(self.texts.rows) < self.texts.size:
            present = series.dropna().head(self.texts.size)
            self.texts.update(row_offset + present.index.to_numpy(), present.astype(str).to_numpy(dtype=object))
        super()._update(series, row_offset)

    def _merge_from(self, other: DatetimeStatistics) -> None:
        super()._merge_from(other)
        self.unit_index = max(self.unit_index, other.unit_index)
        self.zone = self.zone or other.zone
        self.dates = self.dates and other.dates
        self.texts.merge_from(other.texts)

    def unit(self) -> str:
        return _UNITS[self.unit_index]

    def timezone(self) -> str | None:
        return self.zone

    def units(self, stored: np.ndarray) -> np.ndarray:
        return (np.asarray(stored, dtype=np.int64) // UNIT_NS[self.unit()]).astype(np.float64)

    def typed_facts(self) -> dict:
        present = self.rows > self.nulls
        return {"all_dates": bool(self.dates and present), "text_head": list(self.texts.values)}
