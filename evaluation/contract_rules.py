r"""The expectations a data contract learns from the real table, column by column (evaluation/contracts.py
builds them into one suite and runs it on the synthetic table).

Expectations, per column (``meta["rule"]`` on each names the rule; the report groups by it):

* table    -- `ExpectTableColumnsToMatchSet(exact_match=True)` (order is not part of the contract) and
              `ExpectColumnToExist` for every schema column.
* type     -- `ExpectColumnValuesToBeInTypeList` for continuous columns (an integer dtype in the real table
              -> every numpy/nullable integer dtype; a float dtype -> float dtypes. A whole-number column
              the real table stores as float64 because it holds NaN stays a float column: the decoder
              restores the source dtype), for datetime64 columns (any unit; tz-aware columns are not
              type-checked: GX 1.x cannot name a `DatetimeTZDtype` in a type list, the tz-aware range
              bounds guard them instead) and for bool/boolean columns.
              String-formatted datetimes (`datetime_format` set): `ExpectColumnValuesToMatchStrftimeFormat`.
* range    -- continuous and datetime64: `ExpectColumnValuesToBeBetween(low, high)`: the real min and max
              where at least k real rows hold them, else rounded outward (`disclosure.outer_bounds`; meta
              "rounded"), so the bounds never pin one person's value (datetime bounds as ISO strings,
              floored/ceiled to the microsecond so they stay inclusive; an end that a rare extreme at the
              end of the type's range leaves open is None, both open: no rule). A generator that clips to the real
              range meets either; rounding only lets values just past a rare extreme pass. GX 1.x
              coerces string bounds to datetimes, so it cannot compare *string* dates to bounds value by
              value: a string-formatted datetime whose format sorts chronologically as text (directives
              %Y %m %d %H %M %S %f in that order, nothing else) gets `ExpectColumnMinToBeBetween` and
              `ExpectColumnMaxToBeBetween` on its non-null rows (a `row_condition`), which together say
              every value lies in the range. Other formats get no range check (recorded in the suite's notes).
              `range_mostly` < 1 (default 1) lets that share of values stray, for data that is not clipped
              (it applies to the value-by-value checks; the string-date min/max checks stay strict).
* set      -- boolean, and discrete columns whose every value is held by at least `min_count` (k, evaluation/
              disclosure.py) real rows: `ExpectColumnValuesToBeInSet(real non-null values)`.
              A discrete column with rarer values (e-mails, phone numbers, household codes) is checked without
              listing them, so that the suite a failed gate leaves behind holds no rare real value: the set of
              its common values with `mostly` = the share of real values they cover less `share_tolerance`
              (when some are common); for text, `ExpectColumnValueLengthsToBeBetween` (rule "length") and
              `ExpectColumnValuesToMatchRegexList(match_on="any")` over the value shapes held by at least k
              real values (rule "pattern", `disclosure.shapes`: e.g. ^\+\d{2} \d{3} \d{3} \d{4}$); for numbers,
              the range rule with rounded bounds; and where most values are distinct (a unique share of at
              least MANY_VALUED), `ExpectColumnProportionOfUniqueValuesToBeBetween` within a factor of two of
              the real share (rule "count").
* nulls    -- no nulls in the real column: `ExpectColumnValuesToNotBeNull`. Nulls at rate r: one
              `ExpectColumnProportionOfNonNullValuesToBeBetween(1 - (r + tol), 1 - (r - tol))`, clipped to
              [0, 1], i.e. the null rate must lie in r +- null_tolerance (absolute).
* unique   -- id columns: `ExpectColumnValuesToBeUnique` (ids are regenerated); their null rule is the
              one above, so an id column without nulls in the real table must have none.

Map expectations (type on object columns, range, set, format, unique) ignore nulls, as GX does; nulls are
judged by the null rule only.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from tabtwin.evaluation.disclosure import MIN_COUNT, outer_bounds, outer_datetime_bounds, shapes
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import parse_datetimes

INTEGER_TYPES = [
    *(f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)),
    *(f"{sign}Int{bits}Dtype" for sign in ("", "U") for bits in (8, 16, 32, 64)),
]
FLOAT_TYPES = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype"]
DATETIME_TYPES = [f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns")]
BOOLEAN_TYPES = ["bool", "BooleanDtype"]

# Directives of a format whose text sorts like the time it names, most significant first.
_SORTABLE_DIRECTIVES = ["%Y", "%m", "%d", "%H", "%M", "%S", "%f"]
_DIRECTIVE = re.compile(r"%.")

MANY_VALUED = 0.2  # unique share of a column's real values from which its count of distinct values is checked
_EPS = 1e-9  # slack on the null-rate band, so float rounding never fails the real table


def column_rules(E, spec, column: pd.Series, notes: list[str], *, null_tolerance: float, range_mostly: float,
                 min_count: int, share_tolerance: float) -> list:
    """The expectations of one schema column (`E`: gx.expectations, `column`: its real values); a rule that
    cannot be checked says why in `notes`."""
    rules = [E.ExpectColumnToExist(column=spec.name, meta={"rule": "table"})]
    rules += _type_rules(E, spec, column, notes)
    rules += _range_rules(E, spec, column, notes, range_mostly, min_count)
    if spec.kind in ("discrete", "boolean"):
        rules += _value_rules(E, spec, column, notes, range_mostly, min_count, share_tolerance)
    if spec.kind == "id" and not spec.pii:  # personal data may repeat (a household's phone), and so may its fakes
        rules.append(E.ExpectColumnValuesToBeUnique(column=spec.name, meta={"rule": "unique"}))
    rules.append(_null_rule(E, spec.name, column, null_tolerance))
    return rules


def _type_rules(E, spec, column: pd.Series, notes: list[str]) -> list:
    name, dtype = spec.name, column.dtype
    type_list = None
    if spec.kind == "continuous" and not pd.api.types.is_bool_dtype(dtype):
        if pd.api.types.is_integer_dtype(dtype):
            type_list = INTEGER_TYPES
        elif pd.api.types.is_float_dtype(dtype):
            type_list = FLOAT_TYPES
    elif spec.kind == "datetime":
        if isinstance(dtype, pd.DatetimeTZDtype):
            notes.append(
                f"{name}: tz-aware datetimes are not type-checked (GX cannot name DatetimeTZDtype); "
                "the range bounds carry the zone"
            )
        elif pd.api.types.is_datetime64_dtype(dtype):
            type_list = DATETIME_TYPES
        elif spec.datetime_format:
            fmt = spec.datetime_format
            return [E.ExpectColumnValuesToMatchStrftimeFormat(column=name, strftime_format=fmt, meta={"rule": "type"})]
        else:
            notes.append(f"{name}: datetime strings without a datetime_format are not format-checked")
    elif spec.kind == "boolean" and pd.api.types.is_bool_dtype(dtype):
        type_list = BOOLEAN_TYPES
    if type_list is None:
        return []
    return [E.ExpectColumnValuesToBeInTypeList(column=name, type_list=list(type_list), meta={"rule": "type"})]


def _range_rules(E, spec, column: pd.Series, notes: list[str], mostly: float, min_count: int) -> list:
    name = spec.name
    values = column.dropna()
    if not len(values):
        return []
    if spec.kind == "continuous":
        if pd.api.types.is_bool_dtype(column.dtype):
            return []
        numeric = pd.to_numeric(values, errors="coerce").dropna()
        return _numeric_range(E, name, numeric, mostly, min_count) if len(numeric) else []
    if spec.kind != "datetime":
        return []
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        low, high = outer_datetime_bounds(values, min_count)
        rounded = (low, high) != (values.min(), values.max())
        return _between(E, name, *_iso(low, high), mostly, rounded, min_count)
    return _string_datetime_range(E, spec, values, notes, min_count)


def _numeric_range(E, name: str, numeric: pd.Series, mostly: float, min_count: int):
    """The range rule of numbers: the real extremes where k real rows hold them, else rounded outward."""
    low, high = outer_bounds(numeric.to_numpy(dtype=float), min_count)
    exact = (jsonable(numeric.min()), jsonable(numeric.max()))
    bounds = tuple(e if b == e else None if not np.isfinite(b) else int(b) if float(b).is_integer() else b
                   for b, e in zip((low, high), exact))
    return _between(E, name, *bounds, mostly, bounds != exact, min_count)


def _between(E, name: str, low, high, mostly: float, rounded: bool = False, min_count: int = MIN_COUNT) -> list:
    """The range rule; a None end is open (a rare extreme at the end of what the type holds), both: no rule."""
    if low is None and high is None:
        return []
    extra = {"mostly": mostly} if mostly < 1 else {}
    meta = {"rule": "range", **({"rounded": True, "min_count": min_count} if rounded else {})}
    return [E.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high, meta=meta, **extra)]


def _iso(low, high) -> tuple[str | None, str | None]:
    """Datetime bounds as ISO text, floored and ceiled to the microsecond so that they stay inclusive."""
    return (None if low is None else low.floor("us").isoformat(), None if high is None else high.ceil("us").isoformat())


def _string_datetime_range(E, spec, values: pd.Series, notes: list[str], min_count: int) -> list:
    """Min and max of the non-null strings, for formats whose text order is time order (see module docstring)."""
    from dateutil.parser import parse

    name, fmt = spec.name, spec.datetime_format
    if not fmt or not _sorts_as_text(fmt):
        notes.append(f"{name}: range not checked; format {fmt!r} does not sort chronologically as text")
        return []
    texts = values.astype(str)
    first, last = texts.min(), texts.max()
    stamps = parse_datetimes(pd.Series([first, last]), fmt)
    try:  # GX compares the observed min/max after dateutil parses them: it must read them as the format does
        agrees = all(parse(text) == stamp.to_pydatetime() for text, stamp in zip((first, last), stamps, strict=True))
    except (ValueError, OverflowError):
        agrees = False
    if stamps.isna().any() or not agrees:
        notes.append(f"{name}: range not checked; dateutil reads format {fmt!r} differently")
        return []
    # Text order is time order, so the k earliest and k latest values decide the bounds.
    ordered = texts.sort_values()
    ends = ordered if len(ordered) <= 2 * min_count else pd.concat([ordered.head(min_count), ordered.tail(min_count)])
    low, high = outer_datetime_bounds(parse_datetimes(ends, fmt), min_count)
    bounds = dict(zip(("min_value", "max_value"), _iso(low, high)))
    if low is None and high is None:
        return []
    from great_expectations.expectations.row_conditions import Column

    present = Column(name=name).is_not_null()
    meta = {"rule": "range", **({"rounded": True, "min_count": min_count} if (low, high) != tuple(stamps) else {})}
    return [
        E.ExpectColumnMinToBeBetween(column=name, row_condition=present, meta=meta, **bounds),
        E.ExpectColumnMaxToBeBetween(column=name, row_condition=present, meta=meta, **bounds),
    ]


def _sorts_as_text(fmt: str) -> bool:
    directives = _DIRECTIVE.findall(fmt)
    return len(directives) >= 3 and directives == _SORTABLE_DIRECTIVES[: len(directives)]


def _null_rule(E, name: str, column: pd.Series, tolerance: float):
    rate = float(column.isna().mean()) if len(column) else 0.0
    if rate == 0:
        return E.ExpectColumnValuesToNotBeNull(column=name, meta={"rule": "nulls", "real_null_rate": 0.0})
    low = max(0.0, 1.0 - (rate + tolerance) - _EPS)
    high = min(1.0, 1.0 - (rate - tolerance) + _EPS)
    return E.ExpectColumnProportionOfNonNullValuesToBeBetween(
        column=name, min_value=low, max_value=high, meta={"rule": "nulls", "real_null_rate": rate}
    )


def _value_rules(E, spec, column: pd.Series, notes: list[str], range_mostly: float, min_count: int,
                 tolerance: float) -> list:
    """The set rule, or, for a discrete column with values held by fewer than `min_count` real rows, rules on
    its common values, lengths, shapes, range and distinct count that name no rare value (module docstring)."""
    name, values = spec.name, column.dropna()
    if not len(values):
        return []
    counts = values.value_counts()
    if spec.kind == "boolean" or counts.min() >= min_count:  # True and False say nothing of anyone
        return [E.ExpectColumnValuesToBeInSet(column=name, value_set=_sorted(counts.index), meta={"rule": "set"})]
    rules = []
    common = counts[counts >= min_count]
    covered = float(common.sum() / len(values))
    if len(common) and covered - tolerance > 0:
        rules.append(E.ExpectColumnValuesToBeInSet(
            column=name, value_set=_sorted(common.index), mostly=_floor(covered - tolerance),
            meta={"rule": "set", "common_share": covered, "min_count": min_count}))
    texts = values.map(lambda v: isinstance(v, str)).all()
    numbers = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if texts:
        lengths = values.str.len()
        rules.append(E.ExpectColumnValueLengthsToBeBetween(column=name, min_value=int(lengths.min()),
                                                           max_value=int(lengths.max()), meta={"rule": "length"}))
        found = shapes(values, min_count, tolerance)
        if found:
            regexes, matched = found
            extra = {"mostly": _floor(matched - tolerance)} if matched < 1 else {}
            rules.append(E.ExpectColumnValuesToMatchRegexList(column=name, regex_list=regexes, match_on="any",
                                                              meta={"rule": "pattern", "min_count": min_count}, **extra))
        else:
            notes.append(f"{name}: no few value shapes are common enough to check; lengths and counts are")
    elif numbers:
        rules += _numeric_range(E, name, pd.to_numeric(values), range_mostly, min_count)
    unique = float(counts.size / len(values))
    if unique >= MANY_VALUED:
        rules.append(E.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column=name, min_value=_floor(unique / 2), max_value=min(1.0, 2 * unique),
            meta={"rule": "count", "real_unique_share": unique}))
    return rules


def _sorted(values) -> list:
    values = [jsonable(v) for v in values]
    return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _floor(share: float) -> float:
    """A share rounded down to 6 decimals: a `mostly` the real table itself meets despite float rounding."""
    return float(np.floor(share * 1e6) / 1e6)
