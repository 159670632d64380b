"""How a decoded table differs from the one encoded, column by column: the check behind `tabtwin encode` and the
encoders' tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabtwin.pipeline.forms import model_numbers, parse_text_datetimes, text_labels
from tabtwin.pipeline.schema import Schema


def round_trip_errors(original: pd.DataFrame, decoded: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Per schema column, how `decoded` differs from `original` (same rows, in order), and whether that passes.

    Columns of the result: column, kind, measure ("max relative error" for continuous columns, relative to the
    larger of the value and a thousandth of the column's range; "exact match share" otherwise; ids are
    regenerated and only their form is checked), value, null_agreement (share of rows null in both or in
    neither), form ("ok", or what differs: the label, the dtype, or special values such as inf), passed (null
    agreement 1, form ok, and an exact match share of 1 or a relative error of at most ROUND_TRIP_TOLERANCE).
    Datetime strings with several UTC offsets match when they name the same instant (their offset is
    normalised, `pipeline.forms`).
    """
    want_table, got_table = text_labels(original), text_labels(decoded)
    wanted_labels, got_labels = list(original.columns), list(decoded.columns)
    rows = []
    for spec in schema.columns:
        want = want_table[spec.name]
        if spec.name not in got_table.columns:
            rows.append((spec.name, spec.kind, "exact match share", 0.0, 0.0, "column missing", False))
            continue
        got = got_table[spec.name]
        same_nulls = float((want.isna().to_numpy() == got.isna().to_numpy()).mean())
        form = _form_difference(want, got, wanted_labels, got_labels, spec)
        if spec.kind == "id":
            measure, value, ok = "exact match share", float("nan"), True
        elif spec.kind == "continuous":
            a, b = model_numbers(want), model_numbers(got)
            if not np.array_equal(np.where(np.isinf(a), a, 0), np.where(np.isinf(b), b, 0)) and form == "ok":
                form = "special values (inf) differ"
            both = np.isfinite(a) & np.isfinite(b)
            span = float(np.ptp(a[both])) if both.any() else 0.0
            rel = np.abs(a[both] - b[both]) / np.maximum(np.maximum(np.abs(a[both]), 1e-3 * span), 1e-12)
            measure, value = "max relative error", float(rel.max()) if both.any() else 0.0
            ok = value <= ROUND_TRIP_TOLERANCE
        else:
            present = want.notna().to_numpy() & got.notna().to_numpy()
            w, g = want[present].astype(str).to_numpy(), got[present].astype(str).to_numpy()
            matches = w == g
            if spec.kind == "datetime" and spec.datetime_format and not matches.all():
                # Several offsets in one column come back at one offset: compare the instants.
                same = parse_text_datetimes(pd.Series(w), spec.datetime_format) == parse_text_datetimes(
                    pd.Series(g), spec.datetime_format
                )
                offsets_differ = pd.Series(w).str.extract(r"([+-]\d\d:?\d\d|Z)\s*$")[0].nunique() > 1
                matches = matches | (same.to_numpy() & offsets_differ)
            measure, value = "exact match share", float(matches.mean()) if present.any() else 1.0
            ok = value == 1.0
        passed = bool(ok and same_nulls == 1.0 and form == "ok")
        rows.append((spec.name, spec.kind, measure, value, same_nulls, form, passed))
    return pd.DataFrame(rows, columns=["column", "kind", "measure", "value", "null_agreement", "form", "passed"])


# Float32 offsets decode to about 1e-7 of a mode's scale; anything past this is a fault, not rounding.
ROUND_TRIP_TOLERANCE = 1e-5


def _form_difference(want: pd.Series, got: pd.Series, wanted_labels: list, got_labels: list, spec) -> str:
    label = next((l for l in wanted_labels if str(l) == spec.name), spec.name)
    if label not in got_labels or any(str(l) == spec.name and type(l) is not type(label) for l in got_labels):
        return f"label {label!r} not kept"
    if str(want.dtype) != str(got.dtype):
        return f"dtype {want.dtype} -> {got.dtype}"
    return "ok"
