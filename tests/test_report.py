"""End to end: evaluate() on the three reference cases, the written reports, and `tabtwin evaluate`."""

import json

import numpy as np
import pandas as pd
import pytest

from tabtwin.evaluation.report import evaluate, write_report
from tabtwin.flows.cli import main
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.ingest import write_table
from tabtwin.pipeline.schema import infer_schema


def independent_columns(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.permutation(frame[c].to_numpy()) for c in frame.columns})


def within_range(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """A fresh draw clipped to the real range, as our decoder does (the contracts expect the seen range)."""
    out = frame.copy()
    for column in ("income", "age"):
        out[column] = out[column].clip(reference[column].min(), reference[column].max())
    return out


@pytest.fixture(scope="module")
def runs(correlated_split):
    train, holdout, fresh = correlated_split
    fresh = within_range(fresh, train)
    schema = infer_schema(train)
    cases = {"fresh": fresh, "copy": train.copy(), "independent": independent_columns(fresh)}
    return schema, {name: evaluate(train, holdout, synthetic, schema, target="segment") for name, synthetic in cases.items()}


def failed_sections(result):
    return {failure["section"] for failure in result["gate"]["failures"]}


def test_a_fresh_draw_from_the_same_distribution_passes(runs):
    _, results = runs
    assert results["fresh"]["gate"]["passed"], results["fresh"]["gate"]["failures"]


def test_a_copy_of_the_training_rows_fails_on_privacy(runs):
    _, results = runs
    copy = results["copy"]
    assert not copy["gate"]["passed"] and "privacy" in failed_sections(copy)
    assert copy["privacy"]["exact_copy_share"] == 1.0


def test_independent_random_columns_fail_on_fidelity(runs):
    _, results = runs
    independent = results["independent"]
    assert failed_sections(independent) >= {"fidelity"}
    assert "privacy" not in failed_sections(independent)


def test_report_sections_and_files(runs, correlated_split, tmp_path):
    schema, results = runs
    train, _, fresh = correlated_split
    fresh = within_range(fresh, train)
    paths = write_report(results["fresh"], tmp_path / "report", train, fresh, schema)
    report = json.loads(paths["json"].read_text())
    assert set(report) == {"gate", "run", "fidelity", "privacy", "utility", "contracts", "meta"}
    assert report["fidelity"]["quality"]["sdmetrics_version"]
    assert "suite" not in report["contracts"] and json.loads(paths["suite"].read_text())
    assert "NaN" not in paths["json"].read_text()
    html = paths["html"].read_text()
    assert "Gate PASSED" in html
    # Interactive figures, no images: one per modelled column (5), the association and pair-score matrices, the
    # DCR histograms and the attack risks; plotly.js inlined once, before them.
    assert html.count('class="plotly-graph-div"') == 5 + 2 + 2 and "<img" not in html
    assert html.count("<script>") - html.count("Plotly.newPlot(") == 1
    for heading in ("Fidelity", "Privacy", "Utility", "Data contracts"):
        assert f"<h2>{heading}</h2>" in html
    assert not list((tmp_path / "report").glob("*.tmp"))


def test_mismatched_tables_are_refused(correlated_split):
    train, holdout, fresh = correlated_split
    schema = infer_schema(train)
    with pytest.raises(TabtwinError, match="synthetic table lacks column"):
        evaluate(train, holdout, fresh.drop(columns="region"), schema)
    # An empty holdout is allowed (a rare segment's can be; tests/test_eval_edges.py): real and synthetic are not.
    with pytest.raises(TabtwinError, match="synthetic table has no rows"):
        evaluate(train, holdout, fresh.iloc[:0], schema)


def test_cli_exit_codes(correlated_split, tmp_path, capsys):
    train, holdout, fresh = correlated_split
    fresh = within_range(fresh, train)
    paths = {name: write_table(frame, tmp_path / f"{name}.csv")
             for name, frame in {"train": train, "holdout": holdout, "fresh": fresh, "copy": train}.items()}

    def run(synthetic, out):
        return main(["evaluate", "--real", str(paths["train"]), "--holdout", str(paths["holdout"]),
                     "--synthetic", str(paths[synthetic]), "--target", "segment", "--out", str(tmp_path / out)])

    assert run("fresh", "ok") == 0
    assert run("copy", "leak") == 3
    out = capsys.readouterr().out
    assert "gate FAILED" in out and "FAIL privacy.exact_copy_excess" in out
    assert (tmp_path / "leak" / "report.html").is_file()  # a failed gate still leaves its report
