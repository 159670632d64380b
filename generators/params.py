"""Hyper-parameter checks shared by the generators: each refuses a value in one line naming the parameter.

They run at the start of `fit` and when `load` reads config.json (`_check_params`), so the upper bounds below hold
for both: a model never needs more, and a config.json asking for more (`hidden` of 1e9) is refused before anything
is built.
"""

from __future__ import annotations

import numbers

import numpy as np

from tabtwin.pipeline.errors import TabtwinError

MAX_WIDTH = 65_536  # a layer's width: hidden units, embedding sizes
MAX_LAYERS = 64  # layers in a network
MAX_EPOCHS = 1_000_000
MAX_BATCH = 10_000_000


def check_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> None:
    """Refuse `value` unless it is an integer (not a bool) >= minimum (and <= maximum); the message names the
    parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise TabtwinError(f"{name} must be {what}, got {value!r}")
    if maximum is not None and value > maximum:
        raise TabtwinError(f"{name} must be at most {maximum:,}, got {value!r}")


def check_float(name: str, value, minimum: float = 0.0, inclusive: bool = False, maximum: float | None = None) -> None:
    """Refuse `value` unless it is a finite real number above `minimum` (or equal, with `inclusive`) and at most
    `maximum`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value >= minimum if inclusive else value > minimum) and (maximum is None or value <= maximum)
    if not ok:
        bound = f"{'>=' if inclusive else '>'} {minimum}" + ("" if maximum is None else f" and <= {maximum}")
        raise TabtwinError(f"{name} must be a number {bound}, got {value!r}")


def check_widths(name: str, value) -> None:
    """Refuse `value` unless it is a sequence of at most MAX_LAYERS integer layer widths from 1 to MAX_WIDTH."""
    wanted = f"a list of at most {MAX_LAYERS} integer layer widths from 1 to {MAX_WIDTH:,}"
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) > MAX_LAYERS:
        raise TabtwinError(f"{name} must be {wanted}, got {short(value)}")
    for width in value:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or not 1 <= width <= MAX_WIDTH:
            raise TabtwinError(f"{name} must be {wanted}, got {short(value)}")


def check_bool(name: str, value) -> None:
    """Refuse `value` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TabtwinError(f"{name} must be True or False, got {short(value)}")


def short(value) -> str:
    """repr(value), cut to 60 characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
