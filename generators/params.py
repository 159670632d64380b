"""Hyper-parameter checks shared by the generators: each refuses a value in one line naming the parameter.

They run at the start of `fit` and when `load` reads config.json (`_check_params`), so the upper bounds below hold
for both: a model never needs more, and a config.json asking for more (`hidden` of 1e9) is refused before anything
is built. Numbers are checked by the rules that check every number read from a file (`pipeline.rules.Int`, `Num`).
"""

from __future__ import annotations

import math

import numpy as np

from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import INT64_MAX, Int, Num, Rule, shown

MAX_WIDTH = 65_536  # a layer's width: hidden units, embedding sizes
MAX_LAYERS = 64  # layers in a network
MAX_EPOCHS = 1_000_000
MAX_BATCH = 10_000_000


def check(name: str, value, rule: Rule) -> None:
    """Refuse `value` (TabtwinError "name must be ..., got ...") unless it passes `rule`."""
    problem = rule.check(value)
    if problem:
        raise TabtwinError(f"{name} {problem}")


def check_int(name: str, value, minimum: int = 1, maximum: int = INT64_MAX) -> None:
    """Refuse `value` unless it is an integer (not a bool) from `minimum` to `maximum`."""
    check(name, value, Int(minimum, maximum))


def check_float(name: str, value, minimum: float = 0.0, inclusive: bool = False, maximum: float = math.inf) -> None:
    """Refuse `value` unless it is a finite number above `minimum` (or equal, with `inclusive`) and at most
    `maximum`."""
    check(name, value, Num(minimum, maximum, open_low=not inclusive))


def check_widths(name: str, value) -> None:
    """Refuse `value` unless it is a sequence of at most MAX_LAYERS integer layer widths from 1 to MAX_WIDTH."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) > MAX_LAYERS:
        got = shown(value)
    else:
        got = next((f"width {shown(w)}" for w in value if Int(1, MAX_WIDTH).check(w)), None)
    if got is not None:
        raise TabtwinError(f"{name} must be a list of at most {MAX_LAYERS} integer layer widths from 1 to "
                           f"{MAX_WIDTH:,}, got {got}")


def check_bool(name: str, value) -> None:
    """Refuse `value` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TabtwinError(f"{name} must be True or False, got {shown(value)}")
