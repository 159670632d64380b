"""Edge tables through evaluation and TVAE's model files (issue 12 items 6-9).

6. a table whose only column is the target: utility is skipped with the reason, the rest runs;
7. a rare segment (a handful of real rows): detection, utility and the distance-based privacy metrics (DCR,
   NNDR, membership inference) say there are too few rows to judge; exact copies are still counted;
8. wide tables: pair trends on a seeded sample of pairs, said in the result and the report; figures capped;
9. TVAE models where no category value has enough rows for latent statistics save, load and sample.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tabtwin.evaluation import associations, column_shares, fidelity
from tabtwin.evaluation.features import model_frames
from tabtwin.evaluation.fidelity import DETECTION_MIN_ROWS, _sample_pairs, detection_test, quality_report
from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.evaluation.privacy import PRIVACY_MIN_ROWS, privacy_metrics
from tabtwin.evaluation import report
from tabtwin.evaluation.report import evaluate, render_html, write_report
from tabtwin.evaluation.utility import UTILITY_MIN_ROWS, utility_report
from tabtwin.flows.cli import main
from tabtwin.generators.persistence import seal
from tabtwin.generators.tvae import TVAE
from tabtwin.pipeline.ingest import write_table
from tabtwin.pipeline.schema import infer_schema

SMALL = dict(embedding_dim=8, compress_dims=(16,), decompress_dims=(16,), verbose=False, device="cpu")


def segment(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n).round(3), "y": rng.choice(["a", "b"], n), "seg": ["rare"] * n})


# ---------------------------------------------------------------------------------------------- item 6


def test_a_table_of_only_the_target_skips_utility_and_runs_the_rest(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = {name: pd.DataFrame({"C": rng.choice(["a", "b", "c"], n)})
              for name, n in (("real", 300), ("holdout", 100), ("synthetic", 300))}
    paths = {name: write_table(frame, tmp_path / f"{name}.csv") for name, frame in frames.items()}
    code = main(["evaluate", "--real", str(paths["real"]), "--holdout", str(paths["holdout"]),
                 "--synthetic", str(paths["synthetic"]), "--target", "C", "--out", str(tmp_path / "report")])
    assert code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["utility"]["skipped"].startswith("no feature columns: the table holds only the target 'C'")
    assert report["utility"]["ratio"] == {}
    # the anonymeter attacks need two modelled columns: not judged either (tests/test_attacks.py)
    (not_judged,) = [c for c in report["gate"]["not_judged"] if not c["check"].endswith("_risk")]
    assert (not_judged["section"], not_judged["check"]) == ("utility", "auc_ratio")
    # The rest ran: fidelity and privacy have their figures.
    assert report["fidelity"]["quality"]["column_shapes"] > 0.9
    assert report["fidelity"]["detection"]["auc"] is not None and report["privacy"]["mia_auc"] is not None
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Utility for <b>C</b> not measured: no feature columns" in html


def test_utility_with_only_ids_besides_the_target_says_so():
    train = pd.DataFrame({"user_id": [f"u{i:03d}" for i in range(30)], "C": ["a", "b"] * 15})
    schema = infer_schema(train)
    result = utility_report(train, train, train, schema, "C")
    assert result["skipped"] == ("no feature columns: the table holds only the target 'C' and ids, so there is "
                                 "nothing to predict it from")


# ---------------------------------------------------------------------------------------------- item 7


def test_detection_needs_enough_rows_and_says_so():
    schema = infer_schema(segment(30, 0))
    few = detection_test(segment(2, 0), segment(200, 1), schema)
    assert few["auc"] is None and few["score"] is None
    assert few["skipped"] == (f"too few rows to judge: 2 real and 200 synthetic rows, the detection test needs at "
                              f"least {DETECTION_MIN_ROWS} of each")
    enough = detection_test(segment(DETECTION_MIN_ROWS, 0), segment(200, 1), schema)
    assert "skipped" not in enough and 0.0 <= enough["auc"] <= 1.0


def test_privacy_with_few_real_rows_counts_copies_and_judges_nothing_else():
    train, holdout = segment(4, 0), segment(1, 1)
    synthetic = pd.concat([segment(199, 2), train.iloc[:1]], ignore_index=True)  # one copy of a training row
    result = privacy_metrics(train, holdout, synthetic, infer_schema(segment(30, 0)))
    assert result["skipped"].startswith("too few real rows to judge: 4 training and 1 holdout rows")
    assert result["mia_auc"] is None and result["dcr_share"] is None and result["nndr_median"] is None
    assert result["exact_copy_share"] == pytest.approx(1 / 200)
    enough = privacy_metrics(segment(PRIVACY_MIN_ROWS, 0), segment(PRIVACY_MIN_ROWS, 1), synthetic,
                             infer_schema(segment(30, 0)))
    assert "skipped" not in enough and 0.0 <= enough["mia_auc"] <= 1.0


def test_utility_with_few_rows_is_skipped_with_the_counts():
    schema = infer_schema(segment(30, 0))
    result = utility_report(segment(5, 0), segment(2, 1), segment(200, 2), schema, "y")
    assert result["skipped"] == (f"too few rows to judge: 5 training, 2 holdout and 200 synthetic rows, utility "
                                 f"needs at least {UTILITY_MIN_ROWS} of each")
    assert utility_report(segment(40, 0), segment(40, 1), segment(200, 2), schema, "y")["ratio"]["auc"] is not None


def test_the_gate_lists_unjudged_checks_and_still_counts_copies():
    skipped = "too few rows to judge"
    results = {
        "fidelity": {"quality": {"score": 0.9, "column_pair_trends": 0.9}, "detection": {"skipped": skipped}},
        "privacy": {"skipped": skipped, "exact_copy_share": 0.0, "holdout_exact_copy_share": None},
        "utility": {"task": "classification", "skipped": skipped, "ratio": {}},
        "contracts": {"success_rate": 1.0},
    }
    gate = apply_gate(results, GateConfig())
    assert gate["passed"] and not gate["failures"]
    assert {(c["section"], c["check"]) for c in gate["not_judged"]} == {
        ("fidelity", "detection_score"), ("privacy", "dcr_share"), ("privacy", "close_share"),
        ("privacy", "mia_auc"), ("utility", "auc_ratio")}
    assert all(c["message"].endswith(f"not judged: {skipped}") for c in gate["not_judged"])
    results["privacy"]["exact_copy_share"] = 0.5  # copies are judged at any size
    failed = apply_gate(results, GateConfig())
    assert [c["check"] for c in failed["failures"]] == ["exact_copy_excess"]


def test_a_rare_segment_evaluates_and_the_report_says_what_was_not_judged(tmp_path):
    train, holdout, synthetic = segment(4, 0), segment(0, 1), segment(300, 2)
    schema = infer_schema(segment(30, 0))
    results = evaluate(train, holdout, synthetic, schema, target="y")
    assert results["fidelity"]["detection"]["skipped"].startswith("too few rows to judge: 4 real")
    assert results["privacy"]["skipped"].startswith("no holdout rows")
    assert results["utility"]["skipped"].startswith("too few rows to judge: 4 training, 0 holdout")
    assert results["fidelity"]["quality"]["score"] is not None and results["contracts"]["n_expectations"] > 0
    assert len(results["gate"]["not_judged"]) == 8  # 5 + the three anonymeter attacks (too few rows)
    html = write_report(results, tmp_path, train, synthetic, schema)["html"].read_text()
    assert "not run: too few rows to judge: 4 real and 300 synthetic rows" in html
    assert "Distance metrics not judged: no holdout rows" in html
    assert html.count("not judged: ") >= 5


# ---------------------------------------------------------------------------------------------- item 8


def wide(rows: int, columns: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"n{i}": rng.normal(size=rows).round(4) for i in range(columns // 2)}
    data.update({f"c{i}": rng.choice(list("abcd"), rows) for i in range(columns - columns // 2)})
    return pd.DataFrame(data)


def test_pair_samples_are_distinct_uniform_and_seeded():
    columns = [f"c{i}" for i in range(30)]
    everything = _sample_pairs(columns, 10_000, seed=0)
    assert len(everything) == 435 and len(set(everything)) == 435
    assert all(columns.index(a) < columns.index(b) for a, b in everything)
    sample = _sample_pairs(columns, 100, seed=3)
    assert len(set(sample)) == 100 and sample == _sample_pairs(columns, 100, seed=3)
    assert sample != _sample_pairs(columns, 100, seed=4)
    # Uniform: each column takes part in about 2 * 100 / 30 pairs.
    counts = pd.Series([name for pair in _sample_pairs(columns, 300, seed=0) for name in pair]).value_counts()
    assert counts.max() < 40 and counts.reindex(columns).fillna(0).min() > 5


def test_wide_tables_score_a_stated_sample_of_pairs(monkeypatch):
    monkeypatch.setattr(fidelity, "QUALITY_MAX_PAIRS", 60)
    real, synthetic = wide(80, 40, 0), wide(80, 40, 1)
    result = quality_report(real, synthetic, infer_schema(real), seed=7)
    assert (result["pairs_scored"], result["pairs_total"]) == (60, 780)
    assert len(result["pairs"]) == 60 and len(result["columns"]) == 40
    assert "60 of 780 column pairs (seed 7)" in result["note"]
    assert result["column_pair_trends"] is not None
    narrow = quality_report(real.iloc[:, :10], synthetic.iloc[:, :10], infer_schema(real.iloc[:, :10]))
    assert (narrow["pairs_scored"], narrow["pairs_total"]) == (45, 45) and "note" not in narrow


def test_wide_frames_are_built_whole_and_figures_capped(monkeypatch):
    real, synthetic = wide(60, 300, 0), wide(60, 300, 1)
    schema = infer_schema(real)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)  # "DataFrame is highly fragmented"
        frames = model_frames([real, synthetic], schema)
    assert frames[0].shape == (60, 300)
    for module in (column_shares, associations):  # 30 by default; 4 draws faster and shows the same
        monkeypatch.setattr(module, "FIGURE_COLUMNS", 4)
    quality = {"columns": {name: {"score": 1.0 - i / 1000} for i, name in enumerate(real.columns)},
               "pairs": [{"columns": [a, b], "score": 0.5, "real": 0.1, "synthetic": 0.2}
                         for a, b in _sample_pairs(list(real.columns), 200, 0)]}
    assert column_shares.worst_columns(quality, schema) == ["c146", "c147", "c148", "c149"]  # lowest scores, table order
    tables = report.figure_tables(real, synthetic, schema, quality)
    assert [t["column"] for t in tables["column_shares"]["columns"]] == ["c146", "c147", "c148", "c149"]
    assert len(tables["associations"]["columns"]) == 4
    results = {"gate": {"passed": True, "checks": []}, "fidelity": {"quality": quality, "detection": {}, **tables},
               "privacy": {}, "utility": None, "contracts": {"n_expectations": 0, "n_failed": 0},
               "meta": {"rows": {}, "versions": {}, "seconds": {}}}
    html = render_html(results)
    assert "the 4 columns with the lowest shape scores of 300" in html


# ---------------------------------------------------------------------------------------------- item 9


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tvae_without_latent_statistics_saves_loads_and_samples(tmp_path):
    tiny = pd.DataFrame({"colour": ["red", "blue", "green", "red", "blue", "green"],
                         "size": ["S", "M", "L", "XL", "S", "M"]})
    model = TVAE(epochs=2, random_state=0, **SMALL).fit(tiny)
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["state"] == {"latent_by_value": None}
    loaded = TVAE.load(tmp_path / "m")
    assert loaded.latent_stats_ is None
    rows = loaded.sample(50, conditions={"colour": "red"}, seed=0)
    assert (rows["colour"] == "red").all() and set(rows["size"]) <= set(tiny["size"])


def test_tvae_with_hundreds_of_rare_values_saves_loads_and_samples(tmp_path):
    rng = np.random.default_rng(0)
    codes = np.repeat([f"k{i:03d}" for i in range(200)], 2)  # every value has 2 rows, fewer than 5
    table = pd.DataFrame({"a": rng.permutation(codes), "b": rng.permutation(codes), "v": rng.normal(size=400)})
    model = TVAE(epochs=2, random_state=0, **SMALL).fit(table)
    model.save(tmp_path / "m")
    loaded = TVAE.load(tmp_path / "m")
    rows = loaded.sample(20, conditions={"a": "k007"}, seed=0)
    assert (rows["a"] == "k007").all() and rows["v"].notna().all()
    # The fallback: z from the prior N(0, I) for a value too rare to estimate.
    mean, std = loaded._latent_prior(_plan(loaded, {"a": "k007"}))
    assert torch.equal(mean, torch.zeros(8)) and torch.equal(std, torch.ones(8))


def test_empty_latent_statistics_load_and_sample(tmp_path):
    tiny = pd.DataFrame({"colour": ["red", "blue", "green"] * 2, "size": ["S", "M", "L", "XL", "S", "M"]})
    TVAE(epochs=1, random_state=0, **SMALL).fit(tiny).save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["state"] = {"latent_by_value": {"position": [], "count": [], "mean": [], "var": []}}
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    seal(tmp_path / "m")  # the checksums of the edited config
    loaded = TVAE.load(tmp_path / "m")  # no statistics for any value: conditions fall back to the prior
    assert len(loaded.sample(5, conditions={"size": "XL"}, seed=0)) == 5


def _plan(model, conditions):
    from tabtwin.generators.base import plan_conditions

    return plan_conditions(model.encoder_, conditions)


def test_train_on_real_does_not_change_with_the_synthetic_table():
    # A column with more values than the classifier's categories: which ones are kept (and their codes) must come
    # from the real rows alone, or TRTR, the baseline every TSTR is judged against, moves with the synthetic table.
    rng = np.random.default_rng(0)
    n = 1500
    city = rng.integers(0, 300, n)
    real = pd.DataFrame({"city": [f"c{v}" for v in city], "x": rng.normal(size=n),
                         "y": np.where((city % 2 == 0) ^ (rng.random(n) < 0.1), "yes", "no")})
    train, holdout = real.iloc[:900].reset_index(drop=True), real.iloc[900:].reset_index(drop=True)
    schema = infer_schema(train)
    # 60 values the real rows never hold, each more frequent than any real one: they would take 60 of the kept places
    unlike = pd.DataFrame({"city": [f"new{v}" for v in np.repeat(np.arange(60), 15)], "x": rng.normal(size=900),
                           "y": rng.choice(["yes", "no"], 900)})
    first = utility_report(train, holdout, train.sample(900, replace=True, random_state=1), schema, "y", seed=0)
    second = utility_report(train, holdout, unlike, schema, "y", seed=0)
    assert first["train_real"] == second["train_real"]
    # what the classifiers see of the real rows is fixed by them alone: the same values kept, the same codes
    assert first["grouped_categories"] == second["grouped_categories"]
    frames = [model_frames([train, holdout, synthetic], schema, reference=2)[0] for synthetic in (train, unlike)]
    assert frames[0].equals(frames[1]) and list(frames[0]["city"].cat.categories) == list(frames[1]["city"].cat.categories)
    # the detection test (no reference) shares one vocabulary across real and synthetic, as it must
    assert "new0" in model_frames([train, unlike], schema)[0]["city"].cat.categories
