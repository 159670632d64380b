"""A broken synthetic table still gets a report (issue 20 item 8): columns all null, text where numbers belong,
one value throughout, a target of unseen labels. Utility is judged failing or not judged, with the reason;
fidelity, privacy, the attacks, the contracts and the figures run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import make_correlated_table
from tabtwin.evaluation.explain import explain_failure
from tabtwin.evaluation.report import evaluate, write_report
from tabtwin.evaluation.utility import utility_report
from tabtwin.pipeline.schema import infer_schema


@pytest.fixture(scope="module")
def split():
    table = make_correlated_table(500, seed=4)
    train, holdout = table.iloc[:350].reset_index(drop=True), table.iloc[350:].reset_index(drop=True)
    return train, holdout, make_correlated_table(350, seed=5), infer_schema(train)


BROKEN = {
    "all null": lambda column: pd.Series([None] * len(column), dtype=object),
    "text": lambda column: pd.Series(["n/a"] * len(column)),
    "one value": lambda column: pd.Series([column.iloc[0]] * len(column)),
}


@pytest.mark.parametrize("target", ["segment", "income"])
def test_a_table_broken_everywhere_is_reported(split, tmp_path, target):
    train, holdout, fresh, schema = split
    synthetic = fresh.copy()
    for column, damage in zip(("income", "age", "region", "member"), ("all null", "text", "one value", "all null")):
        if column != target:
            synthetic[column] = BROKEN[damage](synthetic[column]).to_numpy()
    results = evaluate(train, holdout, synthetic, schema, target=target)
    paths = write_report(results, tmp_path, train, synthetic, schema)
    report = json.loads(paths["json"].read_text())
    assert not report["gate"]["passed"] and "Gate FAILED" in paths["html"].read_text()
    utility = report["utility"]
    assert "skipped" not in utility and utility["ratio"][{"segment": "auc", "income": "r2"}[target]] is not None
    # the synthetic columns that hold no number are left out of the model trained on them, and it says so
    assert utility["train_synthetic"]["note"].startswith("left out features that hold no value: ")
    assert "age" in utility["train_synthetic"]["note"] and "note" not in utility["train_real"]
    assert report["contracts"]["n_failed"] >= 3 and report["privacy"]["mia_auc"] is not None


@pytest.mark.parametrize(("target", "damage"), [("segment", "all null"), ("segment", "one value"),
                                                ("income", "all null"), ("income", "text")])
def test_a_target_that_cannot_train_a_model_fails_utility_with_the_reason(split, target, damage):
    train, holdout, fresh, schema = split
    synthetic = fresh.assign(**{target: BROKEN[damage](fresh[target]).to_numpy()})
    results = evaluate(train, holdout, synthetic, schema, target=target)
    (check,) = [c for c in results["gate"]["checks"] if c["section"] == "utility"]
    assert check["judged"] and not check["passed"] and check["value"] is None
    note = results["utility"]["train_synthetic"]["note"]
    assert note.startswith("could not be trained: its rows hold ")
    assert f"The model on the synthetic rows {note}." in explain_failure(check, results)


def test_utility_is_not_judged_without_a_scale(split):
    train, holdout, fresh, schema = split
    one_class = holdout.assign(segment="low")
    result = utility_report(train, one_class, fresh, schema, "segment")
    assert result["skipped"] == ("the holdout rows hold fewer than two distinct values of 'segment', so no model can "
                                 "be scored on them")
    # no feature predicts the target, and one holds no value (left out, with a note, which is not the reason)
    noise = train.assign(income=np.random.default_rng(0).normal(size=len(train)), age=np.nan)
    result = utility_report(noise, holdout.assign(income=np.random.default_rng(1).normal(size=len(holdout))), fresh,
                            schema, "income")
    assert result["train_real"]["note"] == "left out features that hold no value: age"
    assert result["skipped"].startswith("the model on the real rows scores r2 -")
    assert result["skipped"].endswith("no better than chance (0), so the ratio has no scale")


def test_a_classifier_at_chance_on_the_real_rows_is_not_judged(split):
    """AUC's chance level is 0.5, not R2's 0: a random label scores about 0.5 and gives the ratio no scale."""
    train, holdout, fresh, schema = split
    rng = np.random.default_rng(3)
    noise = [frame.assign(segment=rng.choice(["low", "high"], len(frame))) for frame in (train, holdout, fresh)]
    result = utility_report(*noise, schema, "segment")
    assert 0 < result["train_real"]["auc"] <= 0.5
    assert result["skipped"] == (f"the model on the real rows scores auc {result['train_real']['auc']:.3f}, no better "
                                 "than chance (0.5), so the ratio has no scale")


def test_a_target_of_labels_the_real_table_lacks_scores_chance(split):
    train, holdout, fresh, schema = split
    three = [frame.assign(segment=np.where(frame["age"] > 40, "old", np.where(frame["age"] > 30, "mid", "young")))
             for frame in (train, holdout)]
    schema3 = infer_schema(three[0])
    alien = fresh.assign(segment=[f"label{i % 7}" for i in range(len(fresh))])
    result = utility_report(*three, alien, schema3, "segment")
    assert result["train_synthetic"]["auc"] == pytest.approx(0.5) and result["ratio"]["auc"] < 0.85
