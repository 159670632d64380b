"""Fidelity: does the synthetic table look like the real one, column by column, pair by pair, and as a whole?

- sdmetrics' QualityReport (Column Shapes: KS / TV complement per column; Column Pair Trends: correlation /
  contingency similarity per pair). Its Trend definition changed across versions, so the version is recorded.
- A classifier two-sample test: gradient-boosted trees try to tell real from synthetic rows. Out-of-fold ROC AUC
  becomes a score, 1 - 2 * max(AUC - 0.5, 0): 1 when indistinguishable, 0 when perfectly separable. A boosted
  model, because logistic detection saturates: it misses interactions that trees find at once.

Bounds. Pair trends grow with the square of the width (a 300-column table has 44,850 pairs: 5 to 11 minutes
and 3.9 GB through sdmetrics), so past QUALITY_MAX_PAIRS pairs a seeded uniform sample of that many pairs is
scored (the mean over a uniform sample estimates the mean over all pairs) and the result says so
(`pairs_scored`, `pairs_total`, `note`). The detection test needs DETECTION_MIN_ROWS real rows (a few per fold
and class); with fewer (a request for a rare segment) it is not run and says why (`skipped`).
"""

from __future__ import annotations

import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_validate

from tabtwin.evaluation.features import MAX_CATEGORIES, model_frames
from tabtwin.pipeline.schema import Schema

QUALITY_ROWS = 20_000  # rows per side for the QualityReport (pair trends grow with rows x pairs)
DETECTION_ROWS = 20_000  # rows per side for the detection classifier
QUALITY_MAX_PAIRS = 1_000  # column pairs scored for pair trends; wider tables get a seeded sample (5 s here)
DETECTION_MIN_ROWS = 3 * 5  # real rows: 3 folds of at least 5 real and 5 synthetic rows each
# Rows of one held-out fold that permutation importance shuffles, once per column: 2.5 s on Adult (14 columns,
# 20,000 rows per side) on one core, against 6.7 s for the three folds' fits; more rows barely move the ranking.
IMPORTANCE_ROWS = 5_000
IMPORTANCE_TOP = 5  # columns named in the result


def quality_report(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0) -> dict:
    """sdmetrics' QualityReport on at most QUALITY_ROWS rows per side and QUALITY_MAX_PAIRS column pairs.

    Returns {"score", "column_shapes", "column_pair_trends" (each in [0, 1] or None), "columns" {name: {metric,
    score}}, "pairs" [{columns, metric, score, real, synthetic}], "rows_used", "pair_thresholds" {correlation,
    association}, "pairs_scored", "pairs_total", "sdmetrics_version", and "note" when the pairs were sampled}.
    Pairs are drawn with `seed`. `pairs_scored` counts the pairs sent to sdmetrics; those whose real
    association is at or below `pair_thresholds` come back with score None and do not count in
    `column_pair_trends`.
    """
    from sdmetrics.reports import QualityReport

    modelled = [s.name for s in schema.columns if s.kind != "id"]
    metadata = {"tables": {"table": _metadata_without_ids(schema)}}
    real_rows = _subsample(real[modelled], QUALITY_ROWS, seed)
    synthetic_rows = _subsample(synthetic[modelled], QUALITY_ROWS, seed)
    report = QualityReport()
    pairs_total = len(modelled) * (len(modelled) - 1) // 2
    sampled = _sample_pairs(modelled, QUALITY_MAX_PAIRS, seed) if pairs_total > QUALITY_MAX_PAIRS else None
    if sampled is not None:
        sampled = _score_only(report, sampled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sdmetrics warns per column about dtypes it converts itself
        report.generate({"table": real_rows}, {"table": synthetic_rows}, metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes")
    trends = report.get_details("Column Pair Trends")
    result = {
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
        # sdmetrics leaves a pair unscored (score None) when its real correlation or association is at or below
        # these; such pairs do not count in column_pair_trends, so the report says how many did.
        "pair_thresholds": {"correlation": getattr(report, "real_correlation_threshold", None),
                            "association": getattr(report, "real_association_threshold", None)},
        "pairs_scored": pairs_total if sampled is None else len(sampled),
        "pairs_total": pairs_total,
        "sdmetrics_version": version("sdmetrics"),
    }
    if sampled is not None:
        result["note"] = (f"pair trends scored on a seeded uniform sample of {len(sampled):,} of {pairs_total:,} "
                          f"column pairs (seed {seed}); the pair trends score estimates the mean over all pairs")
    return result


def _sample_pairs(columns: list[str], count: int, seed: int) -> list[tuple[str, str]]:
    """`count` distinct unordered column pairs, drawn uniformly with `seed`, in the table's column order."""
    n = len(columns)
    total = n * (n - 1) // 2
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    # Pair index k enumerates (i, j), i < j, row by row: row i starts at i * n - i * (i + 1) / 2.
    starts = np.arange(n) * n - np.arange(n) * (np.arange(n) + 1) // 2
    rows = np.searchsorted(starts, chosen, side="right") - 1
    cols = chosen - starts[rows] + rows + 1
    return [(columns[i], columns[j]) for i, j in zip(rows, cols)]


def _score_only(report, pairs: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """Make `report` score only `pairs` for Column Pair Trends; returns the pairs, or None where this sdmetrics
    cannot, in which case it scores all pairs.

    sdmetrics' (multi-table) QualityReport builds one single-table ColumnPairTrends per table from the class in
    `_single_table_property`; that class's `_generate_details` takes `column_pairs` (sdmetrics 0.32), so the
    report's own preprocessing, thresholds and averaging stay as they are and only the pairs differ.
    """
    import inspect

    trends = getattr(report, "_properties", {}).get("Column Pair Trends")
    single = getattr(trends, "_single_table_property", None)
    if single is None or "column_pairs" not in inspect.signature(single._generate_details).parameters:
        return None

    class SampledPairTrends(single):
        def _generate_details(self, real_data, synthetic_data, metadata, progress_bar=None, column_pairs=None):
            return super()._generate_details(real_data, synthetic_data, metadata, progress_bar, column_pairs=pairs)

    trends._single_table_property = SampledPairTrends
    return pairs


def detection_test(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0) -> dict:
    """Out-of-fold AUC of a boosted classifier separating real from synthetic rows (equal numbers of each).

    Returns {"auc", "auc_ci95", "score", "score_ci95", "rows_per_side", "model", "top_columns"} (the intervals:
    `auc_interval`'s 95 % interval and the score it maps to), or {"skipped": reason, "auc": None,
    "score": None, ...} when there are fewer than DETECTION_MIN_ROWS real or synthetic rows (3 stratified folds
    need several rows of each class; a request for a segment of 5 real rows has too few to judge).

    `top_columns` ([{"column", "importance"}], at most IMPORTANCE_TOP, largest first, importance > 0) are the
    columns the classifier relied on most: the drop in AUC when one column's values are shuffled among the
    held-out rows of the first fold (permutation importance, on at most IMPORTANCE_ROWS rows, with that
    fold's model, so no extra fit). An importance of 0.15 means shuffling that column costs the classifier
    0.15 AUC: the synthetic column, or its relation to the others, gives the rows away.
    """
    n = min(len(real), len(synthetic), DETECTION_ROWS)
    model_name = "HistGradientBoostingClassifier, 3-fold"
    if n < DETECTION_MIN_ROWS:
        return {"auc": None, "score": None, "rows_per_side": n, "model": model_name, "top_columns": [],
                "skipped": f"too few rows to judge: {len(real)} real and {len(synthetic)} synthetic rows, the "
                           f"detection test needs at least {DETECTION_MIN_ROWS} of each"}
    grouped: dict = {}
    real_x, synthetic_x = model_frames([_subsample(real, n, seed), _subsample(synthetic, n, seed + 1)], schema, grouped=grouped)
    features = pd.concat([real_x, synthetic_x], ignore_index=True)
    labels = np.r_[np.zeros(len(real_x)), np.ones(len(synthetic_x))]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    # The fitted fold models are kept (same folds and seeds as cross_val_predict, so the same AUC) so that the
    # importances come from a model that never saw the rows it is scored on.
    fitted = cross_validate(model, features, labels, cv=folds, return_estimator=True, return_indices=True)
    scores = np.empty(len(labels))
    for estimator, test in zip(fitted["estimator"], fitted["indices"]["test"]):
        scores[test] = estimator.predict_proba(features.iloc[test])[:, 1]
    auc = float(roc_auc_score(labels, scores))
    low, high = auc_interval(auc, len(real_x), len(synthetic_x))
    result = {"auc": auc, "auc_ci95": [low, high], "score": 1.0 - 2.0 * max(auc - 0.5, 0.0),
              "score_ci95": [1.0 - 2.0 * max(high - 0.5, 0.0), 1.0 - 2.0 * max(low - 0.5, 0.0)],
              "rows_per_side": n, "model": model_name,
              "top_columns": _top_columns(fitted["estimator"][0], features, labels, fitted["indices"]["test"][0], seed)}
    if grouped:
        result["grouped_categories"] = grouped
        result["note"] = (f"columns with more than {MAX_CATEGORIES} values had their rarest values grouped as one for "
                          f"the classifier: {grouped}")
    return result


def auc_interval(auc: float, positives: int, negatives: int, z: float = 1.959964) -> tuple[float, float]:
    """A 95 % confidence interval for a ROC AUC from `positives` and `negatives` scored rows, clipped to [0, 1]:
    the AUC +- z times Hanley and McNeil's standard error (Radiology 143(1), 1982, eq. 2), which reads the AUC as
    the Mann-Whitney statistic with Q1 = A / (2 - A) and Q2 = 2 A^2 / (1 + A)."""
    a = min(max(auc, 0.0), 1.0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    half = z * float(np.sqrt(max(variance, 0.0)))
    return max(a - half, 0.0), min(a + half, 1.0)


def _top_columns(estimator, features: pd.DataFrame, labels: np.ndarray, test: np.ndarray, seed: int) -> list[dict]:
    """Permutation importance (drop in ROC AUC) of each column on held-out rows; the largest positive ones."""
    held_out, y = features.iloc[test], labels[test]
    if len(np.unique(y)) < 2:  # AUC needs both classes
        return []
    importance = permutation_importance(estimator, held_out, y, scoring="roc_auc", n_repeats=1, random_state=seed,
                                        max_samples=min(IMPORTANCE_ROWS, len(held_out)))
    means = importance.importances_mean
    order = [i for i in np.argsort(-means, kind="stable") if means[i] > 0][:IMPORTANCE_TOP]
    return [{"column": str(features.columns[i]), "importance": float(means[i])} for i in order]


def _metadata_without_ids(schema: Schema) -> dict:
    """The metadata of the modelled columns: ids and personal data (faked, `pii`) left out."""
    metadata = schema.to_metadata()
    ids = {spec.name for spec in schema.columns if spec.kind == "id"}
    metadata["columns"] = {name: entry for name, entry in metadata["columns"].items() if name not in ids}
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
