"""Disclosure control: what the files of an evaluation may say about the real table's values.

An evaluation's folder outlives its gate: a failed gate withholds the synthetic table, but the report, the
expectation suite and the charts stay. So they follow one rule, a minimum frequency in the spirit of
k-anonymity (Sweeney 2002, "k-Anonymity: a model for protecting privacy", IJUFKS 10(5)) and of the small-cell
suppression statistical offices apply to published tables: **a real value is shown only when at least
`MIN_COUNT` (k) rows of the real table hold it.** Anything else is shown only generalised:

- categories held by fewer than k real rows are pooled into one "rare values" bar, and the contracts of a
  column with such values check value shapes (`shapes`), lengths and counts instead of listing the values;
- the ends of a numeric or datetime range are exact only when k rows hold the extreme value (a top-coded age,
  a zero); otherwise they are rounded outward to a round step (`outer_bounds`), so that no bound pins one
  person's value: the interval between a bound and two steps inside it holds at least k real values. Bounds stay
  within what the type holds (finite floats, pandas' nanosecond dates); a rare extreme at its very end leaves
  that end open;
- a histogram ends in two open-ended bars that hold at least the k most extreme real values each, and a run
  of bins holding 1 to k - 1 real rows is merged into one wider bin (evaluation/column_shares.py).

Synthetic values are treated alike: a synthetic table that fails the gate may copy real rows, so a synthetic
value is quoted only when it is a common real value or lies outside the (published) real range.
`disclosure_summary` states, per column, how many real values were withheld from display.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from tabtwin.pipeline.keys import category_key, category_keys
from tabtwin.pipeline.schema import Schema

MIN_COUNT = 10  # k: real rows that must hold a value before any file of the evaluation shows it
RULE = ("a real value is shown only when at least {k} real rows hold it; rarer values are pooled in the charts, "
        "checked by shape, length and count in the contracts, and range ends held by fewer rows are rounded outward")
MAX_SHAPES = 8  # shapes a pattern rule lists at most; a column whose common shapes are more gets none


def value_counts(series: pd.Series) -> pd.Series:
    """Real rows per value (by `category_key`, so 1 and 1.0 are one value), nulls left out; most common first."""
    return pd.Series(category_keys(series)).dropna().value_counts()


class Shown:
    """Which values of which column may be quoted: those held by at least `min_count` rows of `real`.

    `Shown(real, k)(column, value)` -> bool; a column `real` lacks shows nothing. `counts(column)`, the real value
    counts it decides by, are built once per column on first use; `disclosure_summary` reads the same ones.
    """

    def __init__(self, real: pd.DataFrame, min_count: int = MIN_COUNT):
        self.real, self.min_count = real, min_count
        self._counts: dict = {}
        self._common: dict = {}

    def counts(self, column) -> pd.Series:
        if column not in self._counts:
            known = column in self.real.columns
            self._counts[column] = value_counts(self.real[column]) if known else pd.Series(dtype=int)
        return self._counts[column]

    def __call__(self, column, value) -> bool:
        if column not in self._common:
            counts = self.counts(column)
            self._common[column] = set(counts.index[counts >= self.min_count])
        return category_key(value) in self._common[column]


def disclosure_summary(real: pd.DataFrame, schema: Schema, min_count: int = MIN_COUNT, *,
                       shown: Shown | None = None) -> dict:
    """The rule and, per modelled column, what it withheld: {"min_count": k, "rule": text, "columns": {name:
    {"values": distinct real values, "withheld": values held by fewer than k rows, "rows_withheld": rows holding
    them}}}. Id columns are never shown and are left out. `shown`: a `Shown` of `real` whose counts to reuse."""
    shown = Shown(real, min_count) if shown is None else shown
    columns = {}
    for spec in schema.columns:
        if spec.kind == "id":
            continue
        counts = shown.counts(spec.name)
        rare = counts[counts < min_count]
        columns[spec.name] = {"values": int(len(counts)), "withheld": int(len(rare)), "rows_withheld": int(rare.sum())}
    return {"min_count": min_count, "rule": RULE.format(k=min_count), "columns": columns}


# ---------------------------------------------------------------------------------------------- ranges


def nice_step(gap: float) -> float:
    """The smallest of 1, 2 and 5 times a power of ten that is at least `gap` (> 0)."""
    power = 10.0 ** math.floor(math.log10(gap))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= gap * (1 - 1e-12))


FLOAT_LIMITS = (-float(np.finfo(np.float64).max), float(np.finfo(np.float64).max))
# pandas' nanosecond range, to the whole microsecond inside it (contracts write bounds floored or ceiled to the
# microsecond) and as float64, which rounds these ends inward.
DATETIME_LIMITS = (float(pd.Timestamp.min.ceil("us").value), float(pd.Timestamp.max.floor("us").value))


def outer_bounds(values, min_count: int = MIN_COUNT, *, unit: float | None = None,
                 limits: tuple[float, float] = FLOAT_LIMITS) -> tuple[float, float] | None:
    """(low, high) enclosing every finite value of `values`, that pin no value held by fewer than `min_count`.

    An end is the extreme value itself when at least `min_count` values equal it. Otherwise, with x_k the k-th
    most extreme value and s = `nice_step`(|extreme - x_k|) (in multiples of `unit`, e.g. a day for datetimes
    as nanoseconds, when the gap is at least one unit), the upper end is the first multiple of s above x_k that
    lies above the maximum: it is no value, and the two steps below it hold at least k values. The lower end
    mirrors it. The end of a column of one sign stops at zero unless zero is its rare extreme. A rounded end
    goes no further than `limits` (what the type holds); where the limit is no further out than a rare extreme,
    that end is infinite: no bound names it. None when there is no finite value. Units: those of `values`.
    """
    data = np.sort(np.asarray(values, dtype=np.float64))
    data = data[np.isfinite(data)]
    if not len(data):
        return None
    k = min(min_count, len(data))
    common = len(data) >= min_count
    low = data[0] if common and data[k - 1] == data[0] else _rounded(data[k - 1], data[0], -1, unit)
    high = data[-1] if common and data[-k] == data[-1] else _rounded(data[-k], data[-1], 1, unit)
    if data[0] > 0:
        low = max(low, 0.0)
    if data[-1] < 0:
        high = min(high, 0.0)
    return _within(low, data[0], limits[0], -1), _within(high, data[-1], limits[1], 1)


def _rounded(inner: float, extreme: float, direction: int, unit: float | None) -> float:
    with np.errstate(over="ignore"):
        gap = abs(np.float64(extreme) - np.float64(inner))
    if gap <= 0:  # fewer than k values, all equal: step by the value's own size
        gap = abs(inner) or 1.0
    step = math.inf if math.isinf(gap) else nice_step(gap / unit) * unit if unit and gap >= unit else nice_step(gap)
    if math.isinf(step):  # a gap near the largest float: past every finite bound, which `_within` clamps
        return direction * math.inf
    # The first multiple of the step past x_k, or the second where the first would be the extreme itself.
    bound = (math.floor(inner / step) + 1) * step if direction > 0 else (math.ceil(inner / step) - 1) * step
    if direction * (bound - extreme) <= 0:
        bound += direction * step
    return round(bound, max(0, 1 - math.floor(math.log10(step))))  # no float noise such as 0.30000000000000004


def _within(bound: float, extreme: float, limit: float, direction: int) -> float:
    """A rounded `bound` no further out than `limit`, or infinite where that would reach or cross `extreme`."""
    if bound == extreme:  # exact: k values hold it
        return float(bound)
    bound = min(bound, limit) if direction > 0 else max(bound, limit)
    return float(bound) if direction * (bound - extreme) > 0 else direction * math.inf


DAY_NS = 86_400 * 10**9


def outer_datetime_bounds(stamps: pd.Series, min_count: int = MIN_COUNT
                          ) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
    """`outer_bounds` of datetimes (naive or tz-aware, back in the column's zone), stepping in whole days once
    the gap between the extreme and the k-th value is a day or more, within pandas' nanosecond range. An exact
    end is the extreme itself (no float rounding); an open end is None. None without a value."""
    stamps = pd.Series(stamps).dropna()
    if not len(stamps):
        return None
    zone = getattr(stamps.dt, "tz", None)
    utc = stamps.dt.tz_convert("UTC").dt.tz_localize(None) if zone is not None else stamps
    utc = utc.astype("datetime64[ns]")
    nanos = utc.astype("int64").to_numpy().astype(np.float64)
    # A zoned bound's wall time must fit the range too: a day inside covers every UTC offset.
    limits = DATETIME_LIMITS if zone is None else (DATETIME_LIMITS[0] + DAY_NS, DATETIME_LIMITS[1] - DAY_NS)
    ends = zip(outer_bounds(nanos, min_count, unit=DAY_NS, limits=limits), (nanos.min(), nanos.max()),
               (utc.min(), utc.max()))
    bounds = tuple(None if not math.isfinite(b) else stamp if b == extreme else pd.Timestamp(int(b), unit="ns")
                   for b, extreme, stamp in ends)
    if zone is not None:
        bounds = tuple(None if b is None else b.tz_localize("UTC").tz_convert(zone) for b in bounds)
    return bounds


# ---------------------------------------------------------------------------------------------- shapes

# How coarsely a value's characters are generalised, finest first: ASCII letters by case with exact run
# lengths; letters of any case; digit runs of any length; letters and digits as one class.
_LEVELS = ("case", "letters", "digits", "words")


def shape(text: str, level: str) -> str:
    """An anchored regular expression that `text`, and every value of its shape, matches at `level` (one of
    `_LEVELS`): letters -> a letter class, digits -> \\d, other characters literal. E.g. "+44 207 946 0958" ->
    ^\\+\\d{2} \\d{3} \\d{3} \\d{4}$ at the levels "case" and "letters"."""
    if level == "words":
        runs = re.findall(r"[^\W_]+|\W|_", text)
        return "^" + "".join(("[A-Za-z0-9]+" if r.isascii() else r"[^\W_]+") if r[0].isalnum() else _escape(r)
                             for r in runs) + "$"
    parts = []
    for chunk in re.findall(r"[^\W\d_]+|\d+|\W|_", text):
        if chunk[0].isdigit():
            parts.append(r"\d+" if level == "digits" else r"\d" + (f"{{{len(chunk)}}}" if len(chunk) > 1 else ""))
        elif chunk[0].isalpha():
            parts.extend(_letters(chunk, level))
        else:
            parts.append(_escape(chunk))
    return "^" + "".join(parts) + "$"


def _escape(text: str) -> str:
    """Backslashes before regex metacharacters only (re.escape also escapes spaces and hyphens: unreadable)."""
    return re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", text)


def _letters(chunk: str, level: str) -> list[str]:
    ascii_only = chunk.isascii()
    if level != "case" or not ascii_only:
        return ["[A-Za-z]+" if ascii_only else r"[^\W\d_]+"]
    out = []
    for run in re.finditer(r"[A-Z]+|[a-z]+", chunk):
        letters = "[A-Z]" if run.group()[0].isupper() else "[a-z]"
        out.append(letters + (f"{{{len(run.group())}}}" if len(run.group()) > 1 else ""))
    return out


def shapes(texts: pd.Series, min_count: int = MIN_COUNT, tolerance: float = 0.05) -> tuple[list[str], float] | None:
    """The value shapes of a text column that a contract may list: (regexes, share of values they match).

    At the finest level (`_LEVELS`) where the shapes held by at least `min_count` values number at most
    MAX_SHAPES and match at least 1 - `tolerance` of the values; None when no level qualifies.
    """
    values = texts.dropna().astype(str).value_counts()  # shapes per distinct value, weighted by its rows
    if not len(values):
        return None
    for level in _LEVELS:
        counts = values.groupby([shape(text, level) for text in values.index]).sum()
        common = counts[counts >= min_count]
        covered = float(common.sum() / values.sum())
        if 0 < len(common) <= MAX_SHAPES and covered >= 1 - tolerance:
            return sorted(common.index), covered
    return None
