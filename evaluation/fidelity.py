"""Fidelity: does the synthetic table look like the real one, column by column, pair by pair, and as a whole?

- sdmetrics' QualityReport (Column Shapes: KS / TV complement per column; Column Pair Trends: correlation /
  contingency similarity per pair). Its Trend definition changed across versions, so the version is recorded.
- A classifier two-sample test: gradient-boosted trees try to tell real from synthetic rows. Out-of-fold ROC AUC
  becomes a score, 1 - 2 * max(AUC - 0.5, 0): 1 when indistinguishable, 0 when perfectly separable. A boosted
  model, because logistic detection saturates: it misses interactions that trees find at once.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from tabtwin.evaluation.features import MAX_CATEGORIES, model_frames
from tabtwin.pipeline.schema import Schema

QUALITY_ROWS = 20_000  # rows per side for the QualityReport (pair trends grow with rows x pairs)
DETECTION_ROWS = 20_000  # rows per side for the detection classifier


def quality_report(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0) -> dict:
    from sdmetrics.reports import QualityReport

    modelled = [s.name for s in schema.columns if s.kind != "id"]
    metadata = {"tables": {"table": _metadata_without_ids(schema)}}
    real_rows = _subsample(real[modelled], QUALITY_ROWS, seed)
    synthetic_rows = _subsample(synthetic[modelled], QUALITY_ROWS, seed)
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sdmetrics warns per column about dtypes it converts itself
        report.generate({"table": real_rows}, {"table": synthetic_rows}, metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes")
    trends = report.get_details("Column Pair Trends")
    return {
        "score": _float(report.get_score()),
        "column_shapes": _float(properties.get("Column Shapes")),
        "column_pair_trends": _float(properties.get("Column Pair Trends")),
        "columns": {row["Column"]: {"metric": row["Metric"], "score": _float(row["Score"])} for _, row in shapes.iterrows()},
        "pairs": [
            {
                "columns": [row["Column 1"], row["Column 2"]],
                "metric": row["Metric"],
                "score": _float(row["Score"]),
                "real": _float(row.get("Real Correlation", np.nan), row.get("Real Association", np.nan)),
                "synthetic": _float(row.get("Synthetic Correlation", np.nan), row.get("Synthetic Association", np.nan)),
            }
            for _, row in trends.iterrows()
        ],
        "rows_used": len(real_rows),
        "sdmetrics_version": version("sdmetrics"),
    }


def detection_test(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0) -> dict:
    """Out-of-fold AUC of a boosted classifier separating real from synthetic rows (equal numbers of each)."""
    n = min(len(real), len(synthetic), DETECTION_ROWS)
    grouped: dict = {}
    real_x, synthetic_x = model_frames([_subsample(real, n, seed), _subsample(synthetic, n, seed + 1)], schema, grouped=grouped)
    features = pd.concat([real_x, synthetic_x], ignore_index=True)
    labels = np.r_[np.zeros(len(real_x)), np.ones(len(synthetic_x))]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, features, labels, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(labels, scores))
    result = {"auc": auc, "score": 1.0 - 2.0 * max(auc - 0.5, 0.0), "rows_per_side": n, "model": "HistGradientBoostingClassifier, 3-fold"}
    if grouped:
        result["grouped_categories"] = grouped
        result["note"] = (f"columns with more than {MAX_CATEGORIES} values had their rarest values grouped as one for "
                          f"the classifier: {grouped}")
    return result


def _metadata_without_ids(schema: Schema) -> dict:
    metadata = schema.to_metadata()
    metadata["columns"] = {name: entry for name, entry in metadata["columns"].items() if entry["sdtype"] != "id"}
    metadata.pop("primary_key", None)
    return metadata


def _subsample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(rows, random_state=seed).reset_index(drop=True)


def _float(*values) -> float | None:
    """The first value that is a finite number, as a float (None if there is none): JSON has no NaN."""
    for value in values:
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if np.isfinite(number):
                return number
    return None
