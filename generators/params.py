"""Hyper-parameter rules: each model declares one per `__init__` parameter in `_parameter_constraints` (as
scikit-learn's estimators declare `_parameter_constraints`), and `SyntheticGenerator._check_params` checks them
all, at the start of `fit` and when `load` reads config.json. Each refusal is one line naming the parameter.

The upper bounds below hold for both: a model never needs more, and a config.json asking for more (`hidden` of 1e9)
is refused before anything is built. Numbers are checked by the rules that check every number read from a file
(`pipeline.rules.Int`, `Num`): a number is an int or float of Python or numpy, never a bool, and an integer too
large for a float is out of range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import Int, Maybe, Num, Rule, shown
from tabtwin.pipeline.validation import MAX_SEED

MAX_WIDTH = 65_536  # a layer's width: hidden units, embedding sizes
MAX_LAYERS = 64  # layers in a network
MAX_EPOCHS = 1_000_000
MAX_BATCH = 10_000_000


@dataclass(frozen=True)
class Bool(Rule):
    """True or False (Python's or numpy's)."""

    def check(self, value):
        if not isinstance(value, (bool, np.bool_)):
            return f"must be True or False, got {shown(value)}"


@dataclass(frozen=True)
class Widths(Rule):
    """A sequence of at most MAX_LAYERS integer layer widths from 1 to MAX_WIDTH, at least `least` of them."""

    least: int = 0

    def check(self, value):
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) > MAX_LAYERS:
            got = shown(value)
        else:
            got = next((f"width {shown(w)}" for w in value if Int(1, MAX_WIDTH).check(w)), None)
        if got is not None:
            return f"must be a list of at most {MAX_LAYERS} integer layer widths from 1 to {MAX_WIDTH:,}, got {got}"
        if len(value) < self.least:
            return f"needs at least {self.least} hidden layer width{'s' * (self.least != 1)}"


@dataclass(frozen=True)
class Device(Rule):
    """A device name as text; `pipeline.device.resolve_device` says whether it exists here."""

    def check(self, value):
        if not isinstance(value, str):
            return f"must be 'auto', 'cpu' or 'cuda', got {shown(value)}"


@dataclass(frozen=True)
class Seed(Rule):
    """None (a fresh seed each fit) or an integer seed."""

    def check(self, value):
        if value is not None and Int(0, MAX_SEED).check(value):
            return f"must be None or an integer from 0 to 2**63 - 1, got {shown(value)}"


# The rules most parameters share.
EPOCHS = Int(0, MAX_EPOCHS)
PATIENCE = Int(0, MAX_EPOCHS)  # early stopping's, in epochs (0: off)
BATCH = Int(1, MAX_BATCH)
WIDTH = Int(1, MAX_WIDTH)
LAYERS = Int(1, MAX_LAYERS)
POSITIVE = Num(0.0, open_low=True)  # a finite number above 0: rates, temperatures, norms
NON_NEGATIVE = Num(0.0)  # a finite number from 0: weight decays, penalty weights
SHARE = Num(0.0, 1.0)
SECONDS = Maybe(POSITIVE)  # an optional time budget


def check(name: str, value, rule: Rule) -> None:
    """Refuse `value` (TabtwinError "name must be ..., got ...") unless it passes `rule`."""
    problem = rule.check(value)
    if problem:
        raise TabtwinError(f"{name} {problem}")
