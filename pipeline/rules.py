"""Rules for values read back from files: what each field may hold, checked before a value is used.

A `Rule` per field (`Text`, `Flag`, `Int`, `Num`, `OneOf`, `Maybe`, `Items`, `Scalar`, `Dtype`), `check_fields`
for a mapping with exactly the declared keys, and `read_json`, which reads a file with NaN / Infinity tokens refused
and too-deep nesting turned into one line. Every failure is a `StateError` (an EncodingError, so a TabtwinError:
one line, no traceback) naming where and what: `pipeline.validation` checks encoder files with these rules,
`generators.persistence` and the generators' `_load_extra_state` check config.json.

Numbers are checked one way, here (`Int`, `Num`, `is_number`, `as_float`), for files and for hyper-parameters
(`generators.params`): a number is an int or float of Python or numpy, never a bool, and an integer too large for
a float is simply out of range.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import SPECIALS

INT64_MAX = 2**63 - 1
_SUM_TOLERANCE = 1e-9  # numpy's choice() refuses probabilities further than ~1.5e-8 from summing to 1


class StateError(EncodingError):
    """One field of a loaded state is invalid; the message names where and what."""


# ---------------------------------------------------------------------------------------------- files


def read_json(path, what: str = "file"):
    """The JSON value in `path`; EncodingError (one line naming `what` and the file) when it cannot be read, is not
    JSON, holds NaN / Infinity (which tabtwin never writes), or nests too deeply for the parser."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise EncodingError(f"cannot read {what} {path}: it does not exist") from None
    except OSError as err:
        raise EncodingError(f"cannot read {what} {path}: {err.strerror or err}") from None
    except RecursionError:
        detail = "its JSON is nested too deeply"
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = f"not valid JSON: {_first_line(err)}"
    raise EncodingError(f"{what} {path} is corrupt ({detail}); refit the model or copy it again")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------- rules


def shown(value) -> str:
    """A short description of a loaded value for a message: the value itself, or the size of a container."""
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'mapping'} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_number(value) -> bool:
    """Whether `value` is a real number as JSON, Python or numpy holds one (however large), not True / False."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_float(value) -> float | None:
    """`value` as a finite float, or None when it is not a number, not finite, or an integer too large for a float
    (JSON's 10**400: math.isfinite raises OverflowError on it, np.isfinite TypeError)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Rule:
    """What one field may hold. `check(value)` returns None, or what is wrong ("must be ..., got ..."). The base
    rule takes any value: a field checked on its own elsewhere (a nested state, a type tag)."""

    def check(self, value) -> str | None:
        return None

    def fails(self, value, wanted: str) -> str:
        return f"must be {wanted}, got {shown(value)}"


@dataclass(frozen=True)
class Text(Rule):
    limit: int = 1000

    def check(self, value):
        if not isinstance(value, str) or len(value) > self.limit:
            return self.fails(value, f"text of at most {self.limit} characters")


@dataclass(frozen=True)
class Flag(Rule):
    def check(self, value):
        if not isinstance(value, bool):
            return self.fails(value, "true or false")


@dataclass(frozen=True)
class Int(Rule):
    """An integer (Python's or numpy's, not True / False) from `low` to `high`."""

    low: int = 0
    high: int = INT64_MAX

    def check(self, value):
        if not (is_number(value) and isinstance(value, numbers.Integral) and self.low <= value <= self.high):
            named = {0: "a non-negative integer", 1: "a positive integer"}.get(self.low)
            if named is None:
                return self.fails(value, f"an integer from {self.low:,} to {self.high:,}")
            return self.fails(value, named + (f" up to {self.high:,}" if self.high < INT64_MAX else ""))


@dataclass(frozen=True)
class Num(Rule):
    """A finite number from `low` (above it, with `open_low`) to `high`; an integer too large for a float is out
    of range (`as_float`)."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False

    def check(self, value):
        number = as_float(value)
        if number is None or not self.low <= number <= self.high or (self.open_low and number == self.low):
            low = f"{'above' if self.open_low else 'from'} {self.low}" if self.low > -math.inf else ""
            bounds = " ".join(part for part in (low, f"to {self.high}" if self.high < math.inf else "") if part)
            return self.fails(value, f"a finite number {bounds}".rstrip())


@dataclass(frozen=True)
class OneOf(Rule):
    options: tuple

    def check(self, value):
        if not any(type(value) is type(option) and value == option for option in self.options):
            return self.fails(value, f"one of {list(self.options)}")


@dataclass(frozen=True)
class Maybe(Rule):
    rule: Rule

    def check(self, value):
        return None if value is None else self.rule.check(value)


@dataclass(frozen=True)
class Items(Rule):
    """A list of at most `limit` items, each passing `rule`."""

    rule: Rule
    limit: int = 10**8

    def check(self, value):
        if not isinstance(value, list) or len(value) > self.limit:
            return self.fails(value, f"a list of at most {self.limit} items")
        for i, item in enumerate(value):
            problem = self.rule.check(item)
            if problem:
                return f"[{i}] {problem}"


@dataclass(frozen=True)
class Scalar(Rule):
    """A category value as saved: text, a number, true/false, or {"special": "inf" | "-inf"}."""

    def check(self, value):
        if isinstance(value, (str, bool)) or as_float(value) is not None:  # pandas too fails on 10**400
            return None
        if isinstance(value, dict) and list(value) == ["special"] and value["special"] in SPECIALS:
            return None
        return self.fails(value, "a text, number or true/false value")


@dataclass(frozen=True)
class Dtype(Rule):
    """A pandas dtype as text ('int64', 'Int64', 'datetime64[ns, UTC]', 'category', ...)."""

    def check(self, value):
        if not isinstance(value, str) or len(value) > 100:
            return self.fails(value, "a pandas dtype name")
        try:
            pd.api.types.pandas_dtype(value)
        except (TypeError, ValueError, ImportError):
            return self.fails(value, "a pandas dtype name")


def fail(where: str, problem: str):
    """Raise StateError("where: problem")."""
    raise StateError(f"{where}: {problem}")


def check_fields(entry, rules: dict[str, Rule], where: str) -> dict:
    """Refuse `entry` (StateError naming `where` and the field) unless it is a mapping with exactly the keys of
    `rules`, each value passing its rule; returns `entry`."""
    if not isinstance(entry, dict):
        fail(where, f"must be a mapping, got {shown(entry)}")
    missing, extra = [k for k in rules if k not in entry], [k for k in entry if k not in rules]
    if missing or extra:
        parts = ([f"lacks {missing}"] if missing else []) + ([f"has unknown {[str(k)[:40] for k in extra[:5]]}"] if extra else [])
        fail(where, " and ".join(parts))
    for key, rule in rules.items():
        problem = rule.check(entry[key])
        if problem:
            fail(where, f"{key} {problem}")
    return entry


def ascending(values: list, where: str, field: str, strict: bool = True) -> None:
    """Refuse (StateError) numbers that are not in ascending order (strictly, unless `strict` is False)."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) > 1 and not (np.all(np.diff(a) > 0) if strict else np.all(np.diff(a) >= 0)):
        fail(where, f"{field} must be in {'strictly ' if strict else ''}ascending order")


def sums_to_one(values: list, where: str, field: str, tolerance: float = _SUM_TOLERANCE) -> None:
    """Refuse (StateError) shares whose exact sum is further than `tolerance` from 1."""
    total = math.fsum(values)
    if abs(total - 1.0) > tolerance:
        fail(where, f"{field} must sum to 1, got {total!r}")
