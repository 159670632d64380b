"""Category keys: one text spelling per category value, so tables that went through different round trips agree.

A CSV round trip or a null in the column turns 1 into 1.0, and a bool column read back from text holds "True";
comparing categories as these keys makes 1, 1.0 and "1" one category, True and "True" another. Every place that
compares or pools category values across tables (privacy distances and row hashes, the evaluation's shared
vocabularies, utility labels, condition matching) uses `category_key`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def is_null(value) -> bool:
    """None, NaN, NaT and pd.NA are nulls; anything else (including containers) is not."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return False


def category_key(value) -> str | None:
    """The key of one value: None for a null, "True"/"False" for bools, 1.0 as "1", anything else as str()."""
    if is_null(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def category_keys(series: pd.Series, null=None) -> np.ndarray:
    """`category_key` of every value of a column as an object array, nulls as `null` (fast: keys per unique value)."""
    codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)
    keys = np.array([category_key(value) for value in uniques] + [null], dtype=object)
    return keys[codes]  # code -1 (null) picks the appended `null`
