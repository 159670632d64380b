"""Condition matching: which of a column's values does a requested value (often text from a command line) mean?

Used by the generators (to find the category a condition fixes) and by the flows (to pick the real rows that
meet a request's conditions), so a condition selects the same values in both.

Tiers, the first that matches anything wins:
1. exact: same type and equal (" Female" is " Female", 1 is 1);
2. numbers across int/float (1 matches 1.0; bools are not numbers here);
3. text: the category keys compared ignoring case and surrounding spaces ("female" matches " Female", "2"
   matches 2.0, "true" matches True).
A null condition (None or NaN) matches the null values only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tabtwin.pipeline.keys import category_key, is_null

_NUMBERS = (int, float, np.number)


def matching_values(values: Sequence, wanted) -> list[bool]:
    """For each of `values`, whether the condition `wanted` selects it (see the module docstring)."""
    values = list(values)
    if is_null(wanted):
        return [is_null(v) for v in values]
    exact = [type(v) is type(wanted) and not is_null(v) and bool(v == wanted) for v in values]
    if any(exact):
        return exact
    if isinstance(wanted, _NUMBERS) and not isinstance(wanted, (bool, np.bool_)):
        numeric = [
            isinstance(v, _NUMBERS) and not isinstance(v, (bool, np.bool_)) and not is_null(v) and bool(v == wanted)
            for v in values
        ]
        if any(numeric):
            return numeric
    text = _text(wanted)
    return [not is_null(v) and _text(v) == text for v in values]


def find_value(values: Sequence, wanted) -> int | None:
    """Index of the first of `values` that `wanted` selects (None is the null category), or None."""
    for i, hit in enumerate(matching_values(values, wanted)):
        if hit:
            return i
    return None


def matches(series: pd.Series, wanted) -> pd.Series:
    """Boolean mask of the rows of `series` whose value `wanted` selects."""
    codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)
    hits = np.array(matching_values(list(uniques) + [None], wanted), dtype=bool)
    return pd.Series(hits[codes], index=series.index)  # code -1 (null) picks the appended None


def _text(value) -> str:
    return category_key(value).strip().lower()
