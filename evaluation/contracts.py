"""Data contracts: Great Expectations rules learned from the REAL table, checked on the SYNTHETIC one.

`build_suite(real, schema)` derives one `gx.ExpectationSuite` from the real table; `check_contracts(synthetic,
suite)` runs the whole suite once, on one batch, and returns a JSON-able summary; `contracts_report(...)` does
both and is what the evaluation calls.

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
* range    -- continuous and datetime64: `ExpectColumnValuesToBeBetween(real min, real max)` (datetime
              bounds as ISO strings, floored/ceiled to the microsecond so they stay inclusive). GX 1.x
              coerces string bounds to datetimes, so it cannot compare *string* dates to bounds value by
              value: a string-formatted datetime whose format sorts chronologically as text (directives
              %Y %m %d %H %M %S %f in that order, nothing else) gets `ExpectColumnMinToBeBetween` and
              `ExpectColumnMaxToBeBetween` on its non-null rows (a `row_condition`), which together say
              every value lies in the range. Other formats get no range check (recorded in the suite's notes).
              `range_mostly` < 1 (default 1) lets that share of values stray, for data that is not clipped
              (it applies to the value-by-value checks; the string-date min/max checks stay strict).
* set      -- discrete and boolean: `ExpectColumnValuesToBeInSet(real non-null values)`.
* nulls    -- no nulls in the real column: `ExpectColumnValuesToNotBeNull`. Nulls at rate r: one
              `ExpectColumnProportionOfNonNullValuesToBeBetween(1 - (r + tol), 1 - (r - tol))`, clipped to
              [0, 1], i.e. the null rate must lie in r +- null_tolerance (absolute).
* unique   -- id columns: `ExpectColumnValuesToBeUnique` (ids are regenerated); their null rule is the
              one above, so an id column without nulls in the real table must have none.

Map expectations (type on object columns, range, set, format, unique) ignore nulls, as GX does; nulls are
judged by the null rule only.

Great Expectations runs offline here: the context is an in-memory ephemeral one built from a config with
``analytics_enabled=False`` and progress bars switched off (``progress_bars`` in the context config, which
the validator reads; without it GX prints "Calculating Metrics" tqdm bars), and ``GX_ANALYTICS_ENABLED`` is
set to ``false`` before GX is imported. GX is imported lazily (it takes seconds), the first time a suite is
built or checked.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import Schema, parse_datetimes

if TYPE_CHECKING:  # pragma: no cover
    import great_expectations as gx

SUITE_NAME = "tabtwin_contracts"

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

_MAX_LIST = 10  # list values kept in a failure's kwargs
_MAX_EXAMPLES = 5  # unexpected values kept in a failure's observation
_EPS = 1e-9  # slack on the null-rate band, so float rounding never fails the real table


# ---------------------------------------------------------------------------------------------- public API


def build_suite(
    real: pd.DataFrame, schema: Schema, null_tolerance: float = 0.05, *, range_mostly: float = 1.0
) -> "gx.ExpectationSuite":
    """Expectations learned from `real`, one set per schema column (see the module docstring).

    `range_mostly` is the share of non-null values that must lie in the real range (GX's `mostly`); 1.0, the
    default, suits our generators, whose decoder clips to the seen range. An independent draw from the same
    distribution falls outside the range of n real rows with probability about 2/(n+1) per value, so checking
    data that is not clipped calls for a little less (say 0.99).
    """
    if not 0 <= null_tolerance <= 1:
        raise ValueError(f"null_tolerance must lie in [0, 1], got {null_tolerance!r}")
    if not 0 < range_mostly <= 1:
        raise ValueError(f"range_mostly must lie in (0, 1], got {range_mostly!r}")
    gx = _gx()
    real = _string_columns(real)
    missing = [name for name in schema.names if name not in real.columns]
    if missing:
        raise ValueError(
            f"the real table lacks schema column(s) {missing}; build the suite from the table the schema describes"
        )
    E = gx.expectations
    notes: list[str] = []
    expectations = [
        E.ExpectTableColumnsToMatchSet(column_set=list(schema.names), exact_match=True, meta={"rule": "table"})
    ]
    for spec in schema.columns:
        column = real[spec.name]
        expectations.append(E.ExpectColumnToExist(column=spec.name, meta={"rule": "table"}))
        expectations += _type_rules(E, spec, column, notes)
        expectations += _range_rules(E, spec, column, notes, range_mostly)
        if spec.kind in ("discrete", "boolean"):
            values = _value_set(column)
            if values:
                expectations.append(
                    E.ExpectColumnValuesToBeInSet(column=spec.name, value_set=values, meta={"rule": "set"})
                )
        if spec.kind == "id":
            expectations.append(E.ExpectColumnValuesToBeUnique(column=spec.name, meta={"rule": "unique"}))
        expectations.append(_null_rule(E, spec.name, column, null_tolerance))
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=expectations,
        meta={
            "source": "tabtwin: learned from the real table",
            "null_tolerance": null_tolerance,
            "range_mostly": range_mostly,
        },
        notes=notes or None,
    )


def check_contracts(synthetic: pd.DataFrame, suite) -> dict:
    """Validate `synthetic` against `suite` (an ExpectationSuite or its JSON dict) in one run on one batch."""
    gx = _gx()
    if isinstance(suite, dict):
        suite = gx.ExpectationSuite(**suite)
    frame = _string_columns(synthetic)
    with _quiet():
        context = _ephemeral_context(gx)
        source = context.data_sources.add_pandas(f"tabtwin_{uuid.uuid4().hex}")
        definition = source.add_dataframe_asset("synthetic").add_batch_definition_whole_dataframe("whole")
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        result_format = {"result_format": "BASIC", "partial_unexpected_count": _MAX_EXAMPLES}
        result = batch.validate(suite, result_format=result_format)
    # GX returns results grouped by how it computed them; report them in suite order
    order = {_key(exp.configuration): i for i, exp in enumerate(suite.expectations)}
    results = sorted(result.results, key=lambda r: order.get(_key(r.expectation_config), len(order)))
    failed = [_failure(r, frame) for r in results if not r.success]
    by_rule: dict[str, dict[str, int]] = {}
    for r in results:
        rule = str((r.expectation_config.meta or {}).get("rule", "other"))
        counts = by_rule.setdefault(rule, {"passed": 0, "total": 0})
        counts["total"] += 1
        counts["passed"] += int(bool(r.success))
    total = len(results)
    return {
        "success_rate": (total - len(failed)) / total if total else 1.0,
        "n_expectations": total,
        "n_failed": len(failed),
        "failed": failed,
        "by_rule": by_rule,
        "suite": jsonable(suite.to_json_dict()),
        "great_expectations_version": gx.__version__,
    }


def contracts_report(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, null_tolerance: float = 0.05, *, range_mostly: float = 1.0
) -> dict:
    """Learn the contracts from `real` and check `synthetic` against them; JSON-able (suite under "suite")."""
    report = check_contracts(synthetic, build_suite(real, schema, null_tolerance, range_mostly=range_mostly))
    report["null_tolerance"] = null_tolerance
    report["range_mostly"] = range_mostly
    return report


# ---------------------------------------------------------------------------------------------- rules


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


def _range_rules(E, spec, column: pd.Series, notes: list[str], mostly: float) -> list:
    name = spec.name
    values = column.dropna()
    if not len(values):
        return []
    if spec.kind == "continuous":
        if pd.api.types.is_bool_dtype(column.dtype):
            return []
        numeric = pd.to_numeric(values, errors="coerce").dropna()
        if not len(numeric):
            return []
        low, high = jsonable(numeric.min()), jsonable(numeric.max())
        return [_between(E, name, low, high, mostly)]
    if spec.kind != "datetime":
        return []
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        low, high = values.min().floor("us"), values.max().ceil("us")
        return [_between(E, name, low.isoformat(), high.isoformat(), mostly)]
    return _string_datetime_range(E, spec, values, notes)


def _between(E, name: str, low, high, mostly: float):
    extra = {"mostly": mostly} if mostly < 1 else {}
    return E.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high, meta={"rule": "range"}, **extra)


def _string_datetime_range(E, spec, values: pd.Series, notes: list[str]) -> list:
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
    bounds = {"min_value": stamps.iloc[0].floor("us").isoformat(), "max_value": stamps.iloc[1].ceil("us").isoformat()}
    from great_expectations.expectations.row_conditions import Column

    present = Column(name=name).is_not_null()
    return [
        E.ExpectColumnMinToBeBetween(column=name, row_condition=present, meta={"rule": "range"}, **bounds),
        E.ExpectColumnMaxToBeBetween(column=name, row_condition=present, meta={"rule": "range"}, **bounds),
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


def _value_set(column: pd.Series) -> list:
    values = [jsonable(v) for v in pd.unique(column.dropna())]
    return sorted(values, key=lambda v: (type(v).__name__, str(v)))


# ---------------------------------------------------------------------------------------------- results


def _key(config) -> tuple[str, str]:
    kwargs = dict(config.kwargs)
    return config.type, str(kwargs.get("column", kwargs.get("column_set", "")))


def _failure(result, frame: pd.DataFrame) -> dict:
    config = result.expectation_config
    kwargs = {k: _short(v) for k, v in dict(config.kwargs).items() if k not in ("batch_id", "column")}
    failure = {
        "expectation": config.type,
        "column": config.kwargs.get("column"),
        "rule": (config.meta or {}).get("rule"),
        "kwargs": jsonable(kwargs),
        "observed": jsonable(_observed(result)),
    }
    failure["sentence"] = _sentence(failure, dict(config.kwargs), config.meta or {}, frame)
    return failure


def _sentence(failure: dict, kwargs: dict, meta: dict, frame: pd.DataFrame) -> str:
    """The failure as one sentence a reviewer reads: what the real table promises, what the synthetic one does.

    E.g. "age: values should lie between 17 and 90, the real range; 32 synthetic rows (3.2 %) fall outside
    (observed 12 to 90)". `kwargs` and `meta` are the expectation's (value sets unshortened); percentages are
    of all synthetic rows."""
    kind, column, observed = failure["expectation"], failure["column"], failure["observed"]
    name = f"{column}: " if column is not None else ""
    if observed.get("error"):
        return f"{name}the check could not run on the synthetic table ({observed['error']})"
    count = observed.get("unexpected_count")
    rows = ""
    if count is not None:
        rows = f"{count:,} synthetic row{'s' if count != 1 else ''}" + (
            f" ({100 * count / len(frame):.2g} %)" if len(frame) else "")

    def verb(singular: str, plural: str) -> str:
        return singular if count == 1 else plural
    examples = ", ".join(repr(v) for v in dict.fromkeys(map(_hashable, observed.get("examples") or [])))
    eg = f", e.g. {examples}" if examples else ""
    low, high = _text(kwargs.get("min_value")), _text(kwargs.get("max_value"))
    if kind == "expect_column_values_to_be_between":
        share = f"at least {kwargs['mostly']:.0%} of " if kwargs.get("mostly", 1) < 1 else ""
        span = _observed_range(frame, column)
        return (f"{name}{share}values should lie between {low} and {high}, the real range; {rows} {verb('falls', 'fall')} outside"
                + (f" (observed {span})" if span else eg))
    if kind in ("expect_column_min_to_be_between", "expect_column_max_to_be_between"):
        which = "earliest" if "min" in kind else "latest"
        return (f"{name}the {which} value should lie between {low} and {high}, the real range; the synthetic "
                f"{which} is {_text(observed.get('observed_value'))}")
    if kind == "expect_column_values_to_be_in_set":
        values = list(kwargs.get("value_set") or [])
        seen = ", ".join(repr(v) for v in values[:8]) + (f" and {len(values) - 8} more" if len(values) > 8 else "")
        return f"{name}values should be among the {len(values)} seen in the real table ({seen}); {rows} {verb('holds', 'hold')} others{eg}"
    if kind == "expect_column_values_to_be_in_type_list":
        return (f"{name}values should have the real column's type ({_type_family(kwargs.get('type_list'))}); the "
                f"synthetic column is {observed.get('observed_value')}")
    if kind == "expect_column_values_to_not_be_null":
        return f"{name}the real column has no nulls; {rows} {verb('is', 'are')} null"
    if kind == "expect_column_proportion_of_non_null_values_to_be_between":
        real, share = meta.get("real_null_rate"), observed.get("observed_value")
        band = f"{100 * max(0.0, 1 - float(kwargs['max_value'])):.1f} % to {100 * (1 - float(kwargs['min_value'])):.1f} %"
        said = f"{name}nulls should make up {band} of rows" + (f" (the real rate, {100 * real:.1f} %, within the "
                                                               f"tolerance)" if real is not None else "")
        return said + (f"; the synthetic rate is {100 * (1 - share):.1f} %" if share is not None else "")
    if kind == "expect_column_values_to_be_unique":
        return f"{name}values should be unique, as ids are; {rows} {verb('repeats', 'repeat')} a value{eg}"
    if kind == "expect_column_values_to_match_strftime_format":
        return f"{name}values should match the format {kwargs.get('strftime_format')}; {rows} {verb('does', 'do')} not{eg}"
    if kind == "expect_column_to_exist":
        return f"{name}the column is missing from the synthetic table"
    if kind == "expect_table_columns_to_match_set":
        mismatch = (observed.get("details") or {}).get("mismatched") or {}
        parts = [f"missing {', '.join(map(str, mismatch['missing']))}" if mismatch.get("missing") else "",
                 f"unexpected {', '.join(map(str, mismatch['unexpected']))}" if mismatch.get("unexpected") else ""]
        return "the synthetic table should have exactly the real table's columns; " + ("; ".join(p for p in parts if p) or "they differ")
    return f"{name}{kind.replace('expect_', '').replace('_', ' ')} fails; observed {observed}"


def _observed_range(frame: pd.DataFrame, column) -> str | None:
    """"min to max" of the synthetic column's non-null values, or None where there is no order to show."""
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    if not len(values) or not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        return None
    try:
        return f"{_text(values.min())} to {_text(values.max())}"
    except TypeError:
        return None


def _text(value) -> str:
    value = jsonable(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and value.endswith("T00:00:00"):
        return value[:-9]  # a date
    return str(value)


def _type_family(type_list) -> str:
    types = set(type_list or [])
    for family, members in (("integer", INTEGER_TYPES), ("float", FLOAT_TYPES), ("datetime", DATETIME_TYPES),
                            ("boolean", BOOLEAN_TYPES)):
        if types & set(members):
            return family
    return ", ".join(sorted(types))


def _hashable(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _observed(result) -> dict:
    info = result.exception_info or {}
    messages = _exception_messages(info)
    observed: dict[str, Any] = {}
    found = result.result or {}
    if "observed_value" in found:
        observed["observed_value"] = _short(found["observed_value"])
    if "details" in found:
        observed["details"] = _short(found["details"])
    for key in ("unexpected_count", "unexpected_percent", "missing_percent"):
        if key in found:
            observed[key] = found[key]
    if found.get("partial_unexpected_list"):
        observed["examples"] = list(found["partial_unexpected_list"])[:_MAX_EXAMPLES]
    if messages:
        observed["error"] = messages[0][:300]
    return observed


def _exception_messages(info: dict) -> list[str]:
    """GX reports an exception either flat ({raised_exception, exception_message}) or per metric."""
    if not isinstance(info, dict):
        return []
    if info.get("raised_exception"):
        return [str(info.get("exception_message"))]
    return [str(v.get("exception_message")) for v in info.values() if isinstance(v, dict) and v.get("exception_message")]


def _short(value):
    if isinstance(value, (list, tuple)) and len(value) > _MAX_LIST:
        return [*value[:_MAX_LIST], f"... (+{len(value) - _MAX_LIST} more)"]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------- GX plumbing


def _gx():
    """Import GX with analytics off (GX reads the variable when it starts)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with warnings.catch_warnings():  # its own imports of deprecated stdlib modules are not our noise
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations as gx

    return gx


def _ephemeral_context(gx):
    """An in-memory context: no files, no cloud, no analytics, no progress bars."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@contextmanager
def _quiet():
    """GX logs and warns freely while it computes metrics; failures come back in the results instead."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _string_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """GX addresses columns by string name; the schema names them with str() too."""
    if all(isinstance(c, str) for c in frame.columns):
        return frame
    return frame.rename(columns=str)
