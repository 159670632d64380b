"""Utility: does a model trained on the synthetic table do as well on real data as one trained on the real table?

Train on synthetic, test on real (TSTR) against train on real, test on real (TRTR): the same gradient-boosted
model, the same features, the real holdout as the test set for both. Classification when the target is
discrete or boolean (ROC AUC, one-vs-rest macro for several classes; macro F1), regression when continuous (R2).

Utility is skipped, with the reason in `skipped`, when there is nothing to predict from (the table holds only
the target and ids) or too few rows to judge (fewer than UTILITY_MIN_ROWS training, holdout or synthetic rows,
as in a request for a rare segment): a model fitted or tested on a handful of rows says nothing. It is also
not judged when the holdout holds a single value of the target (nothing to score on) or the model trained on the
real rows cannot be trained or does no better than chance (`CHANCE`: AUC 0.5, R2 0), which leaves the ratio
no scale. A model that cannot be trained on the synthetic rows (a target all null or of one class) scores None,
which the gate counts as a failure, with the reason in `train_synthetic.note`. Feature columns that hold no
value in a training table (all null, or text where numbers were expected) are left out of that model, and its
`note` says so.
"""

from __future__ import annotations

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import f1_score, r2_score, roc_auc_score

from tabtwin.evaluation.features import model_frames, numeric_values
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.keys import category_key
from tabtwin.pipeline.schema import Schema

UTILITY_MIN_ROWS = 20  # rows each of train, holdout and synthetic below which utility is not judged
# What a model that learned nothing scores on each task's headline metric (its first): a ranking by chance has
# ROC AUC 0.5, predicting the mean has R2 0.
METRICS = {"classification": ["auc", "f1"], "regression": ["r2"]}
CHANCE = {"classification": 0.5, "regression": 0.0}


def utility_report(
    train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, target: str, seed: int = 0
) -> dict:
    """TSTR against TRTR for `target` (see the module docstring), tested on `holdout`.

    Returns {"target", "task", "model", "train_real", "train_synthetic" ({metric: value}), "ratio" ({metric:
    TSTR / TRTR}), "test_rows"}, or {"target", "task", "skipped": reason, ...} with empty metrics when utility
    cannot be judged. Raises TabtwinError for a target that is not a column or is an id.
    """
    try:
        spec = schema[target]
    except KeyError:
        raise TabtwinError(f"target column {target!r} is not in the table; columns are {schema.names}") from None
    if spec.kind == "id":
        raise TabtwinError(f"target column {target!r} is an id; choose a column to predict")
    regression = spec.kind in ("continuous", "datetime")
    task = "regression" if regression else "classification"
    features = [s.name for s in schema.columns if s.kind != "id" and s.name != target]
    reason = None
    if not features:
        reason = (f"no feature columns: the table holds only the target {target!r}"
                  f"{' and ids' if len(schema.columns) > 1 else ''}, so there is nothing to predict it from")
    elif min(len(train), len(holdout), len(synthetic)) < UTILITY_MIN_ROWS:
        reason = (f"too few rows to judge: {len(train)} training, {len(holdout)} holdout and {len(synthetic)} "
                  f"synthetic rows, utility needs at least {UTILITY_MIN_ROWS} of each")
    if reason:
        return {"target": target, "task": task, "skipped": reason,
                "train_real": {}, "train_synthetic": {}, "ratio": {}, "test_rows": int(len(holdout))}
    grouped: dict = {}
    train_x, holdout_x, synthetic_x = model_frames([train, holdout, synthetic], schema, exclude=(target,), grouped=grouped,
                                                   reference=2)
    if regression:
        labels = [numeric_values(frame[target], spec) for frame in (train, holdout, synthetic)]
    else:
        labels = [frame[target].astype(object).map(category_key) for frame in (train, holdout, synthetic)]
        classes = sorted(set(labels[0].dropna()) | set(labels[1].dropna()))
    metrics = METRICS[task]
    if labels[1].nunique() < 2:  # AUC needs two classes among the test rows, R2 a spread
        return {"target": target, "task": task, "train_real": {}, "train_synthetic": {}, "ratio": {},
                "test_rows": int(len(holdout)),
                "skipped": f"the holdout rows hold fewer than two distinct values of {target!r}, so no model can be scored on them"}
    fits = []
    for x, y in ((train_x, labels[0]), (synthetic_x, labels[2])):
        fits.append(_regression(x, y, holdout_x, labels[1], seed) if regression
                    else _classification(x, y, holdout_x, labels[1], classes, seed))
    real, synth = fits
    ratios = {m: (synth[m] / real[m] if real.get(m) and synth.get(m) is not None and real[m] > 0 else None) for m in metrics}
    result = {"target": target, "task": task, "model": f"HistGradientBoosting{'Regressor' if task == 'regression' else 'Classifier'}",
              "train_real": real, "train_synthetic": synth, "ratio": ratios, "test_rows": int(len(holdout_x))}
    headline, chance = metrics[0], CHANCE[task]
    if real.get(headline) is None or real[headline] <= chance:
        # Train-on-real sets the scale: without it (or at or below chance) the ratio says nothing of the synthetic rows.
        said = (real["note"] if real.get(headline) is None
                else f"scores {headline} {real[headline]:.3f}, no better than chance ({chance:g})")
        result["skipped"] = f"the model on the real rows {said}, so the ratio has no scale"
    if grouped:
        result["grouped_categories"] = grouped
        result["note"] = f"rarest values grouped as one for the classifiers, per column: {grouped}"
    return result


def _usable(x: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`x` without feature columns that hold no value (all null, or text where numbers were expected: a
    broken synthetic column): they carry nothing to learn from, and scikit-learn's binning fails on them."""
    empty = [column for column in x.columns if not x[column].notna().any()]
    return x.drop(columns=empty), empty


def _unfit(metrics: list[str], note: str) -> dict:
    return {**{m: None for m in metrics}, "note": note}


def _with_dropped(scores: dict, empty: list[str]) -> dict:
    return {**scores, "note": f"left out features that hold no value: {', '.join(empty)}"} if empty else scores


def _classification(x, y, test_x, test_y, classes, seed) -> dict:
    keep, test_keep = y.notna(), test_y.notna()
    x, y, test_x, test_y = x[keep], y[keep], test_x[test_keep], test_y[test_keep]
    x, empty = _usable(x)
    if y.nunique() < 2:
        return _unfit(METRICS["classification"], "could not be trained: its rows hold " +
                      ("no value of the target" if not len(y) else "a single class of the target"))
    if not len(x.columns):
        return _unfit(METRICS["classification"], f"could not be trained: no feature holds a value ({', '.join(empty)})")
    test_x = test_x[x.columns]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed).fit(x, y)
    probabilities = pd.DataFrame(model.predict_proba(test_x), columns=model.classes_).reindex(columns=classes, fill_value=0.0)
    predictions = model.predict(test_x)
    if len(classes) == 2:
        auc = roc_auc_score(test_y == classes[1], probabilities[classes[1]])
    else:
        present = [c for c in classes if (test_y == c).any()]
        scores = probabilities[present].to_numpy()
        # A row given no probability for any test class (a model that learned only other labels) knows nothing:
        # uniform scores, the chance level.
        scores[scores.sum(axis=1) <= 0] = 1.0
        scores = scores / scores.sum(axis=1, keepdims=True)
        auc = roc_auc_score(test_y, scores, multi_class="ovr", average="macro", labels=present)
    return _with_dropped({"auc": float(auc), "f1": float(f1_score(test_y, predictions, average="macro"))}, empty)


def _regression(x, y, test_x, test_y, seed) -> dict:
    keep, test_keep = y.notna(), test_y.notna()
    if keep.sum() < 2:
        return _unfit(METRICS["regression"], "could not be trained: its rows hold fewer than two values of the target")
    x, empty = _usable(x[keep])
    if not len(x.columns):
        return _unfit(METRICS["regression"], f"could not be trained: no feature holds a value ({', '.join(empty)})")
    model = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed).fit(x, y[keep])
    return _with_dropped({"r2": float(r2_score(test_y[test_keep], model.predict(test_x.loc[test_keep, x.columns])))}, empty)
