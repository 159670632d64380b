"""anonymeter attacks (Giomi et al. 2023): the column rules, the risks on a copy and on a fresh draw, the gate on
the upper bounds, and the report's one-sentence rows. Small tables, so the whole file runs in about half a
minute (most of it numba compiling anonymeter's neighbour search once)."""

import pandas as pd
import pytest

from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.evaluation.attacks import ATTACK_MIN_ROWS, attack_risks, attacker_views, sensitive_columns
from tabtwin.evaluation.report import privacy_rows
from tabtwin.pipeline.schema import ColumnSpec, Schema, infer_schema


def test_attacker_views_split_demographics_from_the_rest():
    schema = Schema([ColumnSpec("id", "id"), ColumnSpec("age", "continuous"), ColumnSpec("workclass", "discrete"),
                     ColumnSpec("marital-status", "discrete"), ColumnSpec("hours-per-week", "continuous"),
                     ColumnSpec("native-country", "discrete")])
    assert attacker_views(schema) == [["age", "marital-status", "native-country"], ["workclass", "hours-per-week"]]
    plain = Schema([ColumnSpec(name, "continuous") for name in ("a", "b", "c")])
    assert attacker_views(plain) == [["a", "b"], ["c"]]  # no demographic name: halves in schema order


def test_sensitive_columns_are_the_target_then_categoricals_by_entropy():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "low": ["a", "a", "a", "b"], "high": ["a", "b", "c", "d"],
                          "mid": ["a", "a", "b", "b"], "y": ["p", "q", "p", "q"]})
    schema = Schema([ColumnSpec("x", "continuous")] + [ColumnSpec(c, "discrete") for c in ("low", "high", "mid", "y")])
    assert sensitive_columns(frame, schema, target="y") == ["y", "high", "mid"]
    assert sensitive_columns(frame, schema) == ["high", "mid", "y"]  # mid and y tie: schema order


@pytest.fixture(scope="module")
def risks(correlated_split):
    train, holdout, fresh = correlated_split
    schema = infer_schema(train)
    return {name: attack_risks(train, holdout, synthetic, schema, target="segment")
            for name, synthetic in {"copy": train.copy(), "fresh": fresh}.items()}


def by_name(result):
    return {(a["attack"], a["detail"] if a["attack"] == "inference" else ""): a for a in result["attacks"]}


def test_a_copy_is_inferred_and_linked_a_fresh_draw_is_not(risks):
    copy, fresh = by_name(risks["copy"]), by_name(risks["fresh"])
    assert [key[0] for key in copy] == ["singling_out", "linkability", "inference", "inference", "inference"]
    assert copy[("inference", "segment")]["ci_low"] > 0.8  # the nearest synthetic row is the row itself
    assert copy[("linkability", "")]["ci_low"] > fresh[("linkability", "")]["risk"]  # weak on 4 columns, but there
    assert fresh[("inference", "segment")]["risk"] < 0.15 and fresh[("linkability", "")]["ci_high"] < 0.1
    for attack in fresh.values():
        assert 0 <= attack["ci_low"] <= attack["risk"] <= attack["ci_high"] <= 1


def test_sizes_and_rules_are_stated_and_results_reproducible(risks, correlated_split):
    result = risks["fresh"]
    assert (result["n_targets"], result["n_control"], result["n_synthetic_searched"]) == (500, 500, 1500)
    assert result["secrets"][0] == "segment" and len(result["views"]) == 2
    train, holdout, fresh = correlated_split
    again = attack_risks(train, holdout, fresh, infer_schema(train), target="segment")
    assert [a["risk"] for a in again["attacks"]] == [a["risk"] for a in result["attacks"]]


def test_the_gate_checks_each_upper_bound(risks):
    gate = apply_gate({"privacy": {"skipped": "x", "exact_copy_share": 0.0, "attacks": risks["copy"]}}, GateConfig())
    checks = {c["check"]: c for c in gate["checks"]}
    inference = checks["inference_risk[segment]"]
    assert inference["value"] == by_name(risks["copy"])[("inference", "segment")]["ci_high"]
    assert inference["threshold"] == 0.50 and not inference["passed"]
    link = checks["linkability_risk"]
    assert link["threshold"] == 0.10 and link["value"] == by_name(risks["copy"])[("linkability", "")]["ci_high"]
    assert link["passed"] == (link["value"] <= 0.10)
    fresh = apply_gate({"privacy": {"skipped": "x", "exact_copy_share": 0.0, "attacks": risks["fresh"]}}, GateConfig())
    assert all(c["passed"] for c in fresh["checks"] if c["check"].startswith(("linkability", "inference")))


def test_too_few_rows_are_not_judged(correlated_split):
    train, holdout, fresh = correlated_split
    result = attack_risks(train, holdout.iloc[: ATTACK_MIN_ROWS - 1], fresh, infer_schema(train))
    assert "at least 50" in result["skipped"] and result["attacks"] == []
    gate = apply_gate({"privacy": {"skipped": "x", "exact_copy_share": 0.0, "attacks": result}}, GateConfig())
    assert {c["check"] for c in gate["not_judged"]} >= {"singling_out_risk", "linkability_risk", "inference_risk"}
    assert gate["passed"]


def test_each_privacy_figure_has_one_sentence_threshold_and_result(risks):
    privacy = {"dcr_share": 0.5, "dcr_below_holdout_p5": 0.05, "exact_copy_share": 0.0,
               "holdout_exact_copy_share": 0.0, "mia_auc": 0.9, "n_train": 1500, "n_holdout": 1500,
               "n_compared": 1500, "attacks": risks["copy"]}
    results = {"privacy": privacy}
    results["gate"] = apply_gate(results, GateConfig())
    rows = {row["figure"]: row for row in privacy_rows(results)}
    assert set(rows) == {"dcr_share", "close_share", "exact_copy_excess", "mia_auc", "singling_out_risk",
                         "linkability_risk"} | {f"inference_risk[{s}]" for s in risks["copy"]["secrets"]}
    assert rows["mia_auc"]["result"] == "FAIL" and rows["dcr_share"]["result"] == "pass"
    assert "1500 training rows from 1500 unseen rows" in rows["mia_auc"]["sentence"]
    assert "guesses a training person's segment" in rows["inference_risk[segment]"]["sentence"]
    for row in rows.values():
        assert row["sentence"].count(". ") == 0 and row["sentence"].endswith(".")  # one sentence each
