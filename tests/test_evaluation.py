import json

import numpy as np
import pandas as pd
import pytest

from tabtwin.evaluation.fidelity import detection_test, quality_report
from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.evaluation.utility import utility_report
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import infer_schema


def independent_columns(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Every column shuffled on its own: marginals kept, every dependence between columns destroyed."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.permutation(frame[c].to_numpy()) for c in frame.columns})


@pytest.fixture(scope="module")
def schema(correlated_split):
    return infer_schema(correlated_split[0])


def test_detection_separates_independent_columns_but_not_a_fresh_draw(correlated_split, schema):
    train, _, fresh = correlated_split
    same = detection_test(train, fresh, schema)
    broken = detection_test(train, independent_columns(fresh), schema)
    assert same["score"] > 0.7 and 0.4 < same["auc"] < 0.65
    assert broken["score"] < 0.3 and broken["auc"] > 0.85


def test_quality_report_sees_broken_pairs_not_broken_shapes(correlated_split, schema):
    train, _, fresh = correlated_split
    same = quality_report(train, fresh, schema)
    broken = quality_report(train, independent_columns(fresh), schema)
    assert same["column_shapes"] > 0.9 and broken["column_shapes"] > 0.9
    assert broken["column_pair_trends"] < same["column_pair_trends"] - 0.1
    assert same["sdmetrics_version"] and "row_id" not in same["columns"]  # ids are not compared
    json.dumps(same)  # plain types only


def test_utility_classification_and_regression(correlated_split, schema):
    train, holdout, fresh = correlated_split
    good = utility_report(train, holdout, fresh, schema, "segment")
    assert good["task"] == "classification" and good["ratio"]["auc"] > 0.9
    bad = utility_report(train, holdout, independent_columns(fresh), schema, "segment")
    assert bad["train_synthetic"]["auc"] < 0.65 < good["train_synthetic"]["auc"]
    regression = utility_report(train, holdout, fresh, schema, "age")
    assert regression["task"] == "regression" and regression["train_real"]["r2"] > 0.5
    single = utility_report(train, holdout, fresh.assign(segment="low"), schema, "segment")
    assert single["train_synthetic"]["auc"] is None and "single class" in single["train_synthetic"]["note"]
    with pytest.raises(TabtwinError, match="'nope'"):
        utility_report(train, holdout, fresh, schema, "nope")
    with pytest.raises(TabtwinError, match="id"):
        utility_report(train, holdout, fresh, schema, "row_id")


def results_with(**overrides):
    results = {
        "fidelity": {"quality": {"score": 0.9, "column_pair_trends": 0.9}, "detection": {"score": 0.5}},
        "privacy": {"dcr_share": 0.5, "dcr_below_holdout_p5": 0.05, "exact_copy_share": 0.0,
                    "holdout_exact_copy_share": 0.0, "mia_auc": 0.5},
        "utility": {"task": "classification", "ratio": {"auc": 0.95, "f1": 0.9}},
        "contracts": {"success_rate": 1.0},
    }
    for path, value in overrides.items():
        section, key = path.split("__")
        target = results[section]
        for part in key.split("."):
            if isinstance(target.get(part), dict):
                target = target[part]
                continue
            target[part] = value
    return results


def test_gate_passes_good_results_and_names_each_failure():
    assert apply_gate(results_with(), GateConfig())["passed"]
    cases = {
        "fidelity__quality.score": (0.5, "quality"),
        "fidelity__detection.score": (0.01, "detection_score"),
        "privacy__dcr_share": (0.9, "dcr_share"),
        "privacy__exact_copy_share": (0.2, "exact_copy_excess"),
        "privacy__mia_auc": (0.8, "mia_auc"),
        "utility__ratio.auc": (0.5, "auc_ratio"),
        "contracts__success_rate": (0.5, "success_rate"),
    }
    for path, (value, check) in cases.items():
        gate = apply_gate(results_with(**{path: value}), GateConfig())
        assert not gate["passed"] and [f["check"] for f in gate["failures"]] == [check], path
        assert str(round(value, 3)) in gate["failures"][0]["message"]


def test_gate_allows_the_natural_rate_of_exact_copies():
    natural = results_with(privacy__exact_copy_share=0.05, privacy__holdout_exact_copy_share=0.045)
    assert apply_gate(natural, GateConfig())["passed"]


def test_missing_figures_fail_rather_than_pass():
    gate = apply_gate(results_with(**{"utility__ratio.auc": None}), GateConfig())
    assert not gate["passed"] and "missing" in gate["failures"][0]["message"]


def test_gate_config_from_file(tmp_path):
    path = tmp_path / "gate.json"
    path.write_text('{"max_mia_auc": 0.55, "min_quality": 0.7}')
    config = GateConfig.from_file(path)
    assert config.max_mia_auc == 0.55 and config.min_quality == 0.7 and config.max_dcr_share == 0.6
    for text, words in (('{"max_mia": 0.55}', "max_mia"), ('{"max_mia_auc": "high"}', "number"),
                        ('{"max_mia_auc": }', "not valid JSON"), ("[0.5]", "unknown keys")):
        path.write_text(text)
        with pytest.raises(TabtwinError, match=words):
            GateConfig.from_file(path)
    with pytest.raises(TabtwinError, match="not found"):
        GateConfig.from_file(tmp_path / "missing.json")


def test_pair_trends_without_associated_pairs_are_not_a_failure():
    results = results_with()
    results["fidelity"]["quality"]["column_pair_trends"] = None
    gate = apply_gate(results, GateConfig())
    assert gate["passed"] and "pair_trends" not in {c["check"] for c in gate["checks"]}


def test_high_cardinality_columns_are_grouped_for_the_classifiers_and_reported():
    """400 distinct codes (over scikit-learn's 255-category limit) once crashed detection and utility."""
    import numpy as np
    import pandas as pd

    from tabtwin.evaluation.fidelity import detection_test
    from tabtwin.evaluation.utility import utility_report
    from tabtwin.pipeline.schema import infer_schema

    rng = np.random.default_rng(0)
    frame = lambda n: pd.DataFrame({"code": [f"c{i}" for i in rng.integers(0, 400, n)], "x": rng.normal(size=n),
                                   "y": rng.choice(["a", "b"], n)})
    real, holdout, synthetic = frame(1000), frame(300), frame(1000)
    schema = infer_schema(real)
    schema["code"].kind = "discrete"
    detection = detection_test(real, synthetic, schema)
    distinct = len(set(real.code) | set(synthetic.code))
    assert distinct > 255 and detection["grouped_categories"]["code"] == distinct - 254
    assert "255" in detection["note"]
    assert detection["score"] > 0.8  # same distribution on both sides: indistinguishable
    utility = utility_report(real, holdout, synthetic, schema, "y")
    assert utility["grouped_categories"]["code"] > 0 and utility["train_synthetic"]["auc"] is not None
