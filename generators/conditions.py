"""Conditions resolved once for every model: `plan_conditions` turns {column: value} into the codes a model fixes.

A condition names a discrete or boolean column and one of its values; the value is matched as
`pipeline.conditions.find_value` matches it everywhere (exact first, then forgiving text: " NORTH " finds "north").
Each model then holds its conditioned columns at those codes while sampling (CTGAN: the conditional vector, TVAE: a
per-value latent prior, the flagship: the codes fixed first in its column order), and the base writes the values
whose code several rare values share (`pipeline.categories`) into the decoded rows, so every row holds the value
asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabtwin.pipeline.conditions import find_value
from tabtwin.pipeline.encoding import Span
from tabtwin.pipeline.errors import TabtwinError


@dataclass
class ConditionPlan:
    """Conditions resolved against an encoder: per conditioned column, where it sits and the code to hold."""

    columns: list[str]
    spans: list[Span]  # where each column sits in the encoded matrix (a one-hot span, or a code column)
    codes: list[int]  # code of the required value within each span
    shared: dict = field(default_factory=dict)  # {column: value} to write after decoding (see `write_values`)

    def force(self, data: np.ndarray) -> None:
        """Overwrite the conditioned one-hot spans of encoded rows `data` (rows, width) with their one-hots."""
        for span, code in zip(self.spans, self.codes):
            data[:, span.start : span.stop] = 0.0
            data[:, span.start + code] = 1.0


def plan_conditions(encoder, conditions: dict | None) -> ConditionPlan | None:
    """`conditions` ({column: value}) resolved against a fitted `encoder`, or None for no conditions.

    `encoder` answers `schema`, `spans_of(column)`, `category_values(column)` (every value seen at fit, None for
    the null category), `code_of_value(column, index)` and `is_rare(column, index)`, as `TableEncoder` does. A
    column label that is not text is matched as text (labels such as 0 are modelled as "0"). Raises TabtwinError,
    one line naming the column or value, for a mapping that is not one, an unknown column, a column that is not
    discrete or boolean, or a value the column never held.
    """
    if not conditions:
        return None
    if not isinstance(conditions, dict):
        raise TabtwinError("conditions must be a mapping of column to value, e.g. {'sex': ' Female'}")
    names, spans, codes, shared = [], [], [], {}
    for column, value in conditions.items():
        column = column if isinstance(column, str) else str(column)
        if column not in encoder.schema.names:
            raise TabtwinError(f"condition names unknown column {column!r}; columns are {encoder.schema.names}")
        kind = encoder.schema[column].kind
        if kind not in ("discrete", "boolean"):
            raise TabtwinError(
                f"condition on column {column!r} ({kind}) is not supported; conditions apply to discrete and "
                "boolean columns"
            )
        values = encoder.category_values(column)
        index = find_value(values, value)
        if index is None:
            known = [v for v in values if v is not None][:20]
            raise TabtwinError(f"column {column!r} has no value {value!r}; known values include {known}")
        (span,) = encoder.spans_of(column)
        names.append(column)
        spans.append(span)
        codes.append(encoder.code_of_value(column, index))
        if encoder.is_rare(column, index):
            shared[column] = values[index]
    return ConditionPlan(names, spans, codes, shared)


def write_values(frame: pd.DataFrame, values: dict, forms) -> pd.DataFrame:
    """`frame` (decoded rows) with every row of each column in `values` ({column: value}) set to that value, in
    the column's dtype and under its source label (`forms`): a conditioned value whose code it shares with other
    rare values decodes to any of them, so the value asked for is written afterwards."""
    labels = {form.name: form.label for form in forms}
    for column, value in values.items():
        label = labels.get(column, column)
        frame[label] = pd.Series([value] * len(frame), dtype=frame[label].dtype)
    return frame
