"""A failed data-contract expectation as a JSON-able record and one sentence a reviewer reads.

`failure(result, frame, shown)` turns one GX `ExpectationValidationResult` into {expectation, column, rule,
kwargs, observed, sentence}. Synthetic values (a failure's examples, the observed range) are quoted only where
`shown(column, value)` allows (evaluation/disclosure.py: a synthetic table that fails the gate may copy real
rows) or where they lie outside the real range, which no real value does; an error message that quotes any
other synthetic value has it replaced.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import pandas as pd

from tabtwin.evaluation.contract_rules import BOOLEAN_TYPES, DATETIME_TYPES, FLOAT_TYPES, INTEGER_TYPES
from tabtwin.pipeline.jsonable import jsonable

MAX_LIST = 10  # list values kept in a failure's kwargs
MAX_EXAMPLES = 5  # unexpected values kept in a failure's observation


def result_key(config) -> tuple[str, str]:
    """(expectation type, column) of an expectation's configuration: how results are put back in suite order."""
    kwargs = dict(config.kwargs)
    return config.type, str(kwargs.get("column", kwargs.get("column_set", "")))


def failure(result, frame: pd.DataFrame, shown: Callable[[Any, Any], bool] | None = None) -> dict:
    """The record of one failed expectation; `shown` (None: quote any synthetic value) vets quoted values."""
    config = result.expectation_config
    column = config.kwargs.get("column")
    observed = _observed(result)
    if shown is not None and "examples" in observed:
        observed["examples"] = [v for v in observed["examples"] if shown(column, v)]
        if not observed["examples"]:
            del observed["examples"]
    if shown is not None and observed.get("error") and column in frame.columns:
        observed["error"] = _redacted(observed["error"], frame[column], column, shown)
    record = {
        "expectation": config.type,
        "column": column,
        "rule": (config.meta or {}).get("rule"),
        "kwargs": jsonable({k: _short(v) for k, v in dict(config.kwargs).items() if k not in ("batch_id", "column")}),
        "observed": jsonable(observed),
    }
    record["sentence"] = _sentence(record, dict(config.kwargs), config.meta or {}, frame, shown)
    return record


def _sentence(failure: dict, kwargs: dict, meta: dict, frame: pd.DataFrame, shown) -> str:
    """The failure as one sentence: what the real table promises, what the synthetic one does.

    E.g. "age: values should lie between 17 and 90, the real range; 32 synthetic rows (3.2 %) fall outside
    (observed down to 12)". `kwargs` and `meta` are the expectation's (value sets unshortened); percentages are
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
    share = f"at least {kwargs['mostly']:.0%} of " if kwargs.get("mostly", 1) < 1 else ""
    low, high = _text(kwargs.get("min_value")), _text(kwargs.get("max_value"))
    if kind == "expect_column_values_to_be_between":
        real = ("the real range rounded outward (an end held by fewer than "
                f"{meta.get('min_count')} real rows is not shown)" if meta.get("rounded") else "the real range")
        span = _outside(frame, column, kwargs.get("min_value"), kwargs.get("max_value"))
        return (f"{name}{share}values should lie between {low} and {high}, {real}; {rows} {verb('falls', 'fall')} outside"
                + (f" (observed {span})" if span else eg))
    if kind in ("expect_column_min_to_be_between", "expect_column_max_to_be_between"):
        which = "earliest" if "min" in kind else "latest"
        # a failed bound: the synthetic extreme lies outside the real range, so it is no real value
        return (f"{name}the {which} value should lie between {low} and {high}, the real range; the synthetic "
                f"{which} is {_text(observed.get('observed_value'))}")
    if kind == "expect_column_values_to_be_in_set":
        values = list(kwargs.get("value_set") or [])
        seen = ", ".join(repr(v) for v in values[:8]) + (f" and {len(values) - 8} more" if len(values) > 8 else "")
        if "common_share" in meta:
            return (f"{name}{share}values should be among the {len(values)} held by at least {meta.get('min_count')} "
                    f"real rows each ({seen}), which cover {meta['common_share']:.1%} of the real values; {rows} "
                    f"{verb('holds', 'hold')} others{eg}")
        return f"{name}values should be among the {len(values)} seen in the real table ({seen}); {rows} {verb('holds', 'hold')} others{eg}"
    if kind == "expect_column_value_lengths_to_be_between":
        return (f"{name}values should be {low} to {high} characters long, as the real values are; {rows} "
                f"{verb('is', 'are')} not{eg}")
    if kind == "expect_column_values_to_match_regex_list":
        shapes = " or ".join(kwargs.get("regex_list") or [])
        return f"{name}{share}values should have a shape common in the real table ({shapes}); {rows} {verb('does', 'do')} not{eg}"
    if kind == "expect_column_proportion_of_unique_values_to_be_between":
        real, seen = meta.get("real_unique_share"), observed.get("observed_value")
        return (f"{name}distinct values should make up {float(kwargs['min_value']):.2f} to {float(kwargs['max_value']):.2f} "
                f"of the values" + (f" (the real share, {real:.2f}, within a factor of two)" if real is not None else "")
                + (f"; the synthetic share is {seen:.2f}" if seen is not None else ""))
    if kind == "expect_column_values_to_be_in_type_list":
        return (f"{name}values should have the real column's type ({_type_family(kwargs.get('type_list'))}); the "
                f"synthetic column is {observed.get('observed_value')}")
    if kind == "expect_column_values_to_not_be_null":
        return f"{name}the real column has no nulls; {rows} {verb('is', 'are')} null"
    if kind == "expect_column_proportion_of_non_null_values_to_be_between":
        real, present = meta.get("real_null_rate"), observed.get("observed_value")
        band = f"{100 * max(0.0, 1 - float(kwargs['max_value'])):.1f} % to {100 * (1 - float(kwargs['min_value'])):.1f} %"
        said = f"{name}nulls should make up {band} of rows" + (f" (the real rate, {100 * real:.1f} %, within the "
                                                               f"tolerance)" if real is not None else "")
        return said + (f"; the synthetic rate is {100 * (1 - present):.1f} %" if present is not None else "")
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


def _redacted(message: str, values: pd.Series, column, shown) -> str:
    """`message` with each synthetic value of the column that may not be quoted replaced by "<a value>": an
    error can quote one (dateutil's "Unknown string format: ...")."""
    for value in pd.unique(values.dropna().astype(str)):
        if value and value in message and not shown(column, value):
            message = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "<a value>", message)
    return message


def _outside(frame: pd.DataFrame, column, low, high) -> str | None:
    """The synthetic extremes that lie outside [low, high]: "down to 12", "up to 500", "-3 to 500"; None when
    neither does or the column has no order. Values inside the range are never quoted: they may be copies."""
    if column not in frame.columns:
        return None
    values = frame[column].dropna()
    if not len(values) or not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        return None
    try:
        first, last = values.min(), values.max()
        below = low is not None and first < _like(low, first)
        above = high is not None and last > _like(high, last)
    except (TypeError, ValueError):
        return None
    if below and above:
        return f"{_text(first)} to {_text(last)}"
    return f"down to {_text(first)}" if below else f"up to {_text(last)}" if above else None


def _like(bound, value):
    """A suite bound (a number, or ISO text for datetimes) comparable with a value of the column."""
    if isinstance(value, pd.Timestamp):
        stamp = pd.Timestamp(bound)
        if value.tz is not None and stamp.tz is None:
            stamp = stamp.tz_localize(value.tz)
        return stamp
    return bound


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
        observed["examples"] = list(found["partial_unexpected_list"])[:MAX_EXAMPLES]
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
    if isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
        return [*value[:MAX_LIST], f"... (+{len(value) - MAX_LIST} more)"]
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value
