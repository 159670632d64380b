"""The HTML report (issue 13): explained failures, gate keys, interactive figures inlined once, not-scored pairs,
zero-inflated columns, a request's and a DP model's facts, contract failures as sentences."""

import base64
import json
import re
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from tabtwin.evaluation import figures
from tabtwin.evaluation.checks import BY_KEY, CHECKS
from tabtwin.evaluation.column_figures import column_figures
from tabtwin.evaluation.column_shares import DISCRETE_VALUES, column_shares
from tabtwin.evaluation.explain import describe_run, explain_dp, explain_failure, gate_key
from tabtwin.evaluation.plot_style import plotly_js
from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.evaluation.report import evaluate, render_html, write_report
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import infer_schema


def plotted(html: str, div_id: str) -> tuple[list, dict]:
    """(data, layout) of the plotly figure drawn into `div_id`, read back from the page's script."""
    found = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + '",', html)
    assert found, f"no figure {div_id}"
    rest = html[found.end():].lstrip()
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(rest)
    layout, _ = decoder.raw_decode(rest[end:].lstrip().lstrip(",").lstrip())
    return _arrays(data), layout


def _arrays(value):
    """plotly writes numpy arrays as {"dtype", "bdata" (base64), "shape"?}: back to lists."""
    if isinstance(value, dict) and set(value) >= {"dtype", "bdata"}:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return (array.reshape([int(n) for n in str(shape).split(",")]) if shape else array).tolist()
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays(v) for v in value]
    return value


@pytest.fixture(scope="module")
def failing(correlated_split):
    """A real evaluation whose gate fails on fidelity and utility: the columns of a fresh draw shuffled apart."""
    train, holdout, fresh = correlated_split
    rng = np.random.default_rng(0)
    synthetic = pd.DataFrame({c: rng.permutation(fresh[c].to_numpy()) for c in fresh.columns})
    synthetic["income"] = synthetic["income"].clip(train["income"].min(), train["income"].max())
    synthetic.loc[:9, "age"] = 5  # below the real range: one contract fails
    schema = infer_schema(train)
    run = {"kind": "request", "model": "tvae", "registry_entry": "adult-tvae@3", "model_dir": "/models/adult-tvae",
           "conditions": {"sex": "Female", "income": ">50K"}, "rows": 5000}
    dp = {"mechanism": "DP-SGD (Abadi et al. 2016) with opacus: Poisson sampling, per-row gradient clipping, Gaussian noise",
          "epsilon": 2.97, "target_epsilon": 3.0, "delta": 1.2e-5, "delta_rule": "1 / n^1.1", "noise_multiplier": 1.07,
          "max_grad_norm": 1.0, "sample_rate": 0.004, "epochs": 5, "steps": 1230, "rows": 26048,
          "accountant": "opacus rdp", "not_covered": ["category sets of discrete columns", "mixture fits of continuous columns"],
          "noise_seed": "random_state (dp_reproducible): anyone who knows the seed can replay the noise"}
    results = evaluate(train, holdout, synthetic, schema, target="segment", run=run, dp=dp)
    return results, train, synthetic, schema


@pytest.fixture(scope="module")
def page(failing, tmp_path_factory):
    results, train, synthetic, schema = failing
    paths = write_report(results, tmp_path_factory.mktemp("report"), train, synthetic, schema)
    return json.loads(paths["json"].read_text()), paths["html"].read_text()


def test_every_gate_key_is_explained_and_every_check_has_a_key():
    keys = [f.name for f in fields(GateConfig)]
    assert [c.key for c in CHECKS] == keys, "GateConfig has one field per declared check, in their order"
    for check in CHECKS:
        assert check.measures and check.good and check.fix, check.key
        assert f"the default threshold is {check.default:g}" in check.good, check.key  # from the declared default
    results = {  # every section, every attack, a regression target: each check the gate can produce
        "fidelity": {"quality": {"score": 0.9, "column_pair_trends": 0.9}, "detection": {"score": 0.5}},
        "privacy": {"dcr_share": 0.5, "dcr_below_holdout_p5": 0.05, "exact_copy_share": 0.0, "mia_auc": 0.5,
                    "attacks": {"attacks": [{"attack": "singling_out", "detail": "multivariate", "ci_high": 0.1},
                                            {"attack": "linkability", "detail": "views", "ci_high": 0.0},
                                            {"attack": "inference", "detail": "income", "ci_high": 0.2}]}},
        "utility": {"task": "regression", "ratio": {"r2": 0.9}},
        "contracts": {"success_rate": 1.0},
    }
    checks = apply_gate(results, GateConfig())["checks"]
    assert {gate_key(c) for c in checks} == set(keys)


def test_failed_checks_are_explained_with_their_gate_keys(page):
    report, html = page
    failed = {c["check"] for c in report["gate"]["failures"]}
    assert {"pair_trends", "auc_ratio"} <= failed
    assert 'id="verdict">Gate FAILED: ' in html
    banner = html[html.index('id="verdict"'):html.index("</div>", html.index('id="verdict"'))]
    assert "the synthetic table was withheld" in banner  # a request's reader learns no table left
    for check in report["gate"]["failures"]:
        sentence = explain_failure(check, report)
        assert sentence and str(round(check["threshold"], 2)) in sentence
        assert f'data-key="{gate_key(check)}"' in html and _escaped(sentence) in html
    # The checks table names each check's gate key; the glossary explains each key once.
    for key in BY_KEY:
        assert html.count(f'id="key-{key}"') == 1 and f"<code>{key}</code>" in html


def test_detection_names_the_columns_it_relied_on(page):
    report, _ = page
    detection = report["fidelity"]["detection"]
    top = detection["top_columns"]
    assert top and all(c["importance"] > 0 for c in top)
    assert [c["importance"] for c in top] == sorted((c["importance"] for c in top), reverse=True)
    check = {"section": "fidelity", "check": "detection_score", "value": 0.02, "op": ">=", "threshold": 0.1,
             "passed": False, "judged": True}
    sentence = explain_failure(check, {"fidelity": {"detection": {"auc": 0.99, "top_columns": top}}})
    assert "AUC 0.99" in sentence and top[0]["column"] in sentence and FLAGSHIP_WORD in sentence


FLAGSHIP_WORD = "autoregressive"


def test_the_flagship_named_in_explanations_is_the_default_model():
    """evaluation must not import flows, so explain.py names the flagship itself; this keeps the two in step."""
    from tabtwin.evaluation.explain import FLAGSHIP
    from tabtwin.flows.spec import DEFAULT_MODEL

    assert FLAGSHIP == DEFAULT_MODEL == FLAGSHIP_WORD


def test_plotly_is_inlined_once_and_nothing_is_fetched(page):
    _, html = page
    js = plotly_js()
    assert html.count(js[:300]) == 1 and html.index(js[:300]) < html.index('class="plotly-graph-div"')
    assert not re.search(r"<script[^>]+src=", html), "a script loaded from a file or URL"
    assert not re.search(r"<link[^>]+href=[\"']https?:", html)
    assert "cdn.plot.ly" not in html.replace(js, "")
    assert "<img" not in html


def test_a_pair_sdmetrics_did_not_score_is_grey_not_perfect():
    quality = {"pairs": [
        {"columns": ["income", "age"], "metric": "CorrelationSimilarity", "score": 0.9, "real": 0.8, "synthetic": 0.6},
        {"columns": ["segment", "region"], "metric": "ContingencySimilarity", "score": None, "real": 0.05, "synthetic": None},
    ]}
    html = figures.pair_score_figure(["income", "age", "segment", "region"], quality)
    data, layout = plotted(html, "pair-scores")
    scored, unscored = data
    names = scored["x"]
    s, r = names.index("segment"), names.index("region")
    assert scored["z"][s][r] is None and scored["z"][r][s] is None  # not a value on the colour scale, least of all 1
    assert unscored["z"][s][r] == 1 and {c[1] for c in unscored["colorscale"]} == {figures.NOT_SCORED}
    assert "not scored" in unscored["text"][s][r]
    i, a = names.index("income"), names.index("age")
    assert scored["z"][i][a] == 0.9 and unscored["z"][i][a] is None
    # A pair missing from sdmetrics' results (a sampled wide table) is not scored either.
    assert scored["z"][i][s] is None and unscored["z"][i][s] == 1


def test_the_report_states_how_many_pairs_the_pair_trends_rest_on(page):
    report, html = page
    quality = report["fidelity"]["quality"]
    counted = sum(p["score"] is not None for p in quality["pairs"])
    assert counted < quality["pairs_total"]  # the fixture has unscored pairs
    assert f"rests on {counted} of {quality['pairs_total']} pairs" in html
    data, _ = plotted(html, "pair-scores")
    scored = data[0]
    unscored_cells = sum(v is None for row in scored["z"] for v in row) - len(scored["z"])  # minus the diagonal
    assert unscored_cells == 2 * (quality["pairs_total"] - counted)


def test_zero_inflated_columns_get_their_own_bar(correlated_split):
    rng = np.random.default_rng(0)
    n = 2000
    gain = np.where(rng.random(n) < 0.92, 0.0, rng.lognormal(8, 1, n)).round()
    real = pd.DataFrame({"gain": gain, "colour": rng.choice(["red", "blue"], n)})
    synthetic = real.sample(frac=1, random_state=1).reset_index(drop=True)
    schema = infer_schema(real)
    (figure,) = column_figures(column_shares(real, synthetic, schema, shown=["gain"]))
    data, layout = plotted(figure["html"], "column-0")
    spike_real, spike_synthetic, rest_real, _ = data
    assert spike_real["x"] == ["0"] and spike_real["y"][0] == pytest.approx(np.mean(gain == 0))
    assert sum(rest_real["y"]) == pytest.approx(np.mean(gain != 0))  # the histogram holds only the other values
    assert layout["yaxis"]["title"]["text"] == "share of rows" and "gain" in layout["xaxis2"]["title"]["text"]


def test_a_spike_stays_apart_when_a_few_valued_column_falls_back_to_bins():
    """A small real table: 0 and ~30 other values (few enough for one bar per value) but the synthetic side
    spreads over hundreds, so the figure falls back to bins; the zeros still get their own bar."""
    rng = np.random.default_rng(1)
    real = pd.DataFrame({"gain": np.where(np.arange(400) < 368, 0.0, rng.lognormal(8, 1, 400).round())})
    synthetic = pd.DataFrame({"gain": np.where(rng.random(400) < 0.5, 0.0, rng.lognormal(8, 1, 400))})
    schema = infer_schema(real)
    assert 0 < real["gain"].nunique() <= DISCRETE_VALUES < synthetic["gain"].nunique() / 2
    (figure,) = column_figures(column_shares(real, synthetic, schema, shown=["gain"]))
    data, _ = plotted(figure["html"], "column-0")
    spike_real, spike_synthetic, rest_real, rest_synthetic = data
    assert spike_real["x"] == ["0"] and spike_real["y"][0] == pytest.approx(0.92)
    assert spike_synthetic["y"][0] == pytest.approx(np.mean(synthetic["gain"] == 0))
    assert sum(rest_real["y"]) == pytest.approx(0.08)


def test_column_figures_label_their_axes(page, failing):
    _, html = page
    data, layout = plotted(html, "column-0")
    assert {trace["name"] for trace in data} == {"real", "synthetic"}
    assert layout["yaxis"]["title"]["text"] == "share of rows" and layout["xaxis"]["title"]["text"]


def test_the_figures_draw_what_report_json_holds(page):
    """The page computes no statistic of its own: each figure plots the tables report.json holds."""
    report, html = page
    fidelity, privacy = report["fidelity"], report["privacy"]
    for i, table in enumerate(fidelity["column_shares"]["columns"]):
        data, _ = plotted(html, f"column-{i}")  # the single values' bars first, where there are any
        assert [trace["y"] for trace in data[-2:]] == [table["bars"]["real"], table["bars"]["synthetic"]]
        singles = table["singles"]
        assert [trace["y"] for trace in data[:-2]] == ([singles["real"], singles["synthetic"]] if singles else [])
    associations = fidelity["associations"]
    data, _ = plotted(html, "associations")
    for trace, side in zip(data, ("real", "synthetic")):
        assert trace["x"] == associations["columns"]
        assert trace["z"] == [[None if v is None else round(v, 3) for v in row] for row in associations[side]]
    data, _ = plotted(html, "pair-scores")
    assert data[0]["x"] == associations["columns"]
    data, _ = plotted(html, "dcr")
    shares = privacy["dcr_histogram"]["shares"]
    assert [trace["y"] for trace in data] == [shares["synthetic_to_train"], shares["holdout_to_train"],
                                              shares["synthetic_to_holdout"]]
    data, _ = plotted(html, "attacks")
    assert data[0]["y"] == [a["risk"] for a in privacy["attacks"]["attacks"]]
    thresholds = {c["check"]: c["threshold"] for c in report["gate"]["checks"]}
    assert data[1]["y"] == [thresholds[c["check"]] for c in report["gate"]["checks"] if c["check"].endswith("]")
                            or c["check"] in ("singling_out_risk", "linkability_risk")]


def test_a_requests_report_names_model_entry_conditions_and_rows(page):
    _, html = page
    for text in ("a request to a registered model", "tvae", "adult-tvae@3", "sex = Female, income = &gt;50K", "5,000"):
        assert text in html, text
    assert describe_run(None) == [] and describe_run({"kind": "run"}) == [("produced by", "a run (fit, sample, evaluate)")]


def test_a_dp_models_budget_is_read_aloud(page):
    _, html = page
    assert "ε = 2.97 of a target of 3 at δ = 1.2e-05" in html
    assert "mixture fits of continuous columns" in html and 'id="dp-sentence"' in html
    assert "does not hold for a release" in html and "anyone who knows the seed can replay the noise" in html
    assert explain_dp(None) is None


def test_failed_contracts_are_sentences_not_dicts(page):
    report, html = page
    (failure,) = [f for f in report["contracts"]["failed"] if f["column"] == "age"]
    # the real maximum age is held by fewer than 10 real rows: rounded outward, and only the synthetic values
    # outside the range are quoted (evaluation/disclosure.py)
    assert re.match(r"age: values should lie between \d+ and \d+, the real range rounded outward \(an end held by "
                    r"fewer than 10 real rows is not shown\); \d+ synthetic rows \([\d.]+ %\) fall outside "
                    r"\(observed down to 5\)$", failure["sentence"]), failure["sentence"]
    section = html[html.index('<section id="contracts">'):html.index('<section id="glossary">')]
    assert _escaped(failure["sentence"]) in section and "{&#39;" not in section and "{'" not in section


def test_render_without_optional_blocks(failing):
    results = failing[0]
    bare = {**results, "run": None, "privacy": {**results["privacy"], "dp": None}}
    html = render_html(jsonable(bare))
    assert 'id="run"' not in html and 'id="dp"' not in html


def _escaped(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_the_pair_note_without_sdmetrics_thresholds():
    """An sdmetrics that does not expose its pair thresholds (None in report.json) scores every pair: the note
    counts them and states no rule, rather than failing to format None."""
    from tabtwin.evaluation.report import _pair_note

    quality = {"column_pair_trends": 0.9, "pairs_total": 1, "pair_thresholds": {"correlation": None, "association": None},
               "pairs": [{"columns": ["a", "b"], "score": 0.9}]}
    assert _pair_note(quality) == "pair trends 0.900 rests on 1 of 1 pairs."
    quality["pair_thresholds"] = {"correlation": 0.5, "association": 0.3}
    assert "exceeds 0.5 (two numeric columns)" in _pair_note(quality) and "exceeds 0.3" in _pair_note(quality)


def test_a_value_never_reads_as_its_threshold():
    from tabtwin.evaluation.explain import value_text

    assert value_text(0.6004, 0.6) == "0.6004" and value_text(0.5996, 0.6) == "0.5996"
    assert value_text(0.6, 0.6) == "0.600" and value_text(0.93812, 0.8) == "0.938" and value_text(None, 0.8) is None
    assert value_text(0.60004, 0.6, kind="g") == "0.60004" and value_text(0.0138, 0.1, kind="g") == "0.0138"
    checks = [{"section": "privacy", "check": "dcr_share", "value": 0.6004, "op": "<=", "threshold": 0.6,
               "passed": False, "judged": True, "message": "m"}]
    from tabtwin.evaluation.report import privacy_rows

    (row,) = privacy_rows({"gate": {"checks": checks}, "privacy": {}})
    assert row["checked"] == "0.6004" and row["result"] == "FAIL"


# ---------------------------------------------------------------------------------------------- advice that fits


DETECTION = {"section": "fidelity", "check": "detection_score", "value": 0.02, "op": ">=", "threshold": 0.1,
             "passed": False, "judged": True}
DCR = {"section": "privacy", "check": "dcr_share", "value": 0.7, "op": "<=", "threshold": 0.6, "passed": False,
       "judged": True}
DP_BLOCK = {"epsilon": 2.97, "delta": 1e-5}


def test_the_flagship_is_not_told_to_use_the_flagship():
    from tabtwin.evaluation.explain import fix_for

    generic = fix_for(DETECTION, {"run": None})
    assert "use the flagship model" in generic and generic == BY_KEY["min_detection_score"].fix
    assert fix_for(DETECTION, {"run": {"kind": "run", "model": "tvae"}}) == generic
    text = fix_for(DETECTION, {"run": {"kind": "run", "model": FLAGSHIP_WORD}})
    assert "use the flagship" not in text and "more epochs" in text and "training budget" in text
    assert "free-text" in text and "id" in text
    assert text.endswith(" check their per-column figures and their pairs.")  # the check's own hint is kept
    # explain_failure, the report's sentence, says the same
    results = {"run": {"kind": "run", "model": FLAGSHIP_WORD}, "fidelity": {"detection": {"auc": 0.99}}}
    assert "use the flagship" not in explain_failure(DETECTION, results)


def test_a_dp_model_gets_a_larger_epsilon_not_a_non_private_model():
    from tabtwin.evaluation.explain import fix_for

    results = {"run": {"kind": "run", "model": "tvae"}, "privacy": {"dp": DP_BLOCK}}
    for key in ("min_quality", "min_pair_trends", "min_detection_score", "min_utility_ratio"):
        text = fix_for(key, results)
        assert "larger epsilon" in text and "more epochs" in text and "trade-off" in text, key
        assert "flagship" not in text and "non-private" not in text, key
    # the privacy checks: a smaller epsilon, never "train with differential privacy" for a model that already is
    for key in ("max_dcr_share", "max_close_share", "max_exact_copy_excess", "max_mia_auc", "max_singling_out_risk",
                "max_linkability_risk", "max_inference_risk"):
        text = fix_for(key, results)
        assert "train with differential privacy" not in text and "smaller epsilon" in text and "2.97" in text, key
    assert "train with differential privacy" in fix_for(DCR, {"run": {"kind": "run", "model": "tvae"}})
    assert "Removing the exact copies alone" in fix_for("max_exact_copy_excess", results)


def test_a_request_gets_what_an_analyst_can_do():
    from tabtwin.evaluation.explain import fix_for

    run = {"kind": "request", "model": FLAGSHIP_WORD, "registry_entry": "/srv/registry/adult-autoregressive",
           "conditions": {"sex": "Female"}, "rows": 500}
    text = fix_for(DETECTION, {"run": run})
    assert "fewer or broader conditions than sex = Female" in text and "more rows" in text
    assert "owner of registry entry adult-autoregressive" in text and "retrain" in text
    assert "Train longer" not in text and "use the flagship" not in text
    text = fix_for(DCR, {"run": run, "privacy": {"dp": DP_BLOCK}})
    assert "broader conditions" in text and "adult-autoregressive" in text and "smaller epsilon" in text
    assert "train with differential privacy" not in text and "train for fewer epochs" not in text
    dp_text = fix_for("min_quality", {"run": run, "privacy": {"dp": DP_BLOCK}})
    assert "larger epsilon" in dp_text and "owner" in dp_text
    # contracts: the generic advice, whoever reads it; an unknown check: none
    assert fix_for("min_contract_success", {"run": run}) == BY_KEY["min_contract_success"].fix
    assert fix_for({"section": "x", "check": "y"}, {"run": run}) is None


def test_the_report_fits_its_advice_to_the_request(page):
    report, html = page  # the fixture: a request to a DP model, entry adult-tvae@3
    failed = html[html.index('id="failed"'):html.index('id="checks"')]
    assert "use the flagship" not in failed and "Train longer" not in failed
    assert "adult-tvae@3" in failed and "broader conditions" in failed and "larger epsilon" in failed
    glossary = html[html.index('<section id="glossary">'):]
    assert "train with differential privacy" not in glossary and "smaller epsilon" in glossary


def test_a_changed_threshold_shows_its_default(failing):
    from tabtwin.evaluation.explain import changed_thresholds, threshold_text

    results = failing[0]
    assert changed_thresholds(results["meta"]["gate_config"]) == []
    html = render_html(jsonable(results))
    assert 'id="gate-file"' not in html and "(default " not in html
    plain = render_html(jsonable({**results, "run": None}))  # `evaluate`: nothing withheld
    assert "withheld" not in plain[plain.index('id="verdict"'):plain.index('id="checks"')]
    config = GateConfig(min_pair_trends=0.04, max_dcr_share=0.7)
    checks = apply_gate(results, config)
    loosened = {**results, "gate": checks, "meta": {**results["meta"], "gate_config": config.to_dict()}}
    html = render_html(jsonable(loosened))
    verdict = html[html.index('id="verdict"'):html.index('id="checks"')]
    assert "Thresholds from a gate file: 2 differ from the defaults" in verdict
    table = html[html.index('id="checks"'):html.index("</table>", html.index('id="checks"'))]
    assert "≥ 0.04 (default 0.8)" in table and "≤ 0.7 (default 0.6)" in table and "≥ 0.8 (default" not in table
    side = html[html.index('class="side-checks"'):]
    assert "≤ 0.7 (default 0.6)" in side
    pair = next(c for c in checks["checks"] if c["check"] == "pair_trends")
    assert threshold_text(pair) == "0.04 (default 0.8)" and threshold_text({**pair, "threshold": 0.8}) == "0.8"
    assert threshold_text({**pair, "check": "inference_risk[x]", "section": "privacy", "threshold": 0.5}) == "0.5"


def test_the_dp_note_says_epsilon_is_not_a_gate_check_but_the_distances_are(page):
    _, html = page
    assert "Not gated: the distance" not in html
    assert "Epsilon itself is not a gate check: the distance and attack checks below are" in html


def test_long_check_names_wrap_in_the_side_tables():
    from tabtwin.evaluation.html import TEMPLATE

    style = TEMPLATE[TEMPLATE.index("<style>"):TEMPLATE.index("</style>")]
    rule = re.search(r"([^}]*\.side-checks td[^{]*)\{([^}]*)\}", style)
    assert rule and "overflow-wrap:anywhere" in rule.group(2) and "#checks td" in rule.group(1)


def test_the_gate_table_marks_a_changed_threshold_and_fits_its_advice(capsys, monkeypatch):
    from tabtwin.flows.cli import print_gate

    inference = {"section": "privacy", "check": "inference_risk[income]", "value": 0.61, "op": "<=", "threshold": 0.5,
                 "passed": False, "judged": True, "message": "privacy.inference_risk[income] = 0.610, needs <= 0.5"}

    monkeypatch.delenv("FORCE_COLOR", raising=False)
    detection = {"section": "fidelity", "check": "detection_score", "value": 0.02, "op": ">=", "threshold": 0.04,
                 "passed": False, "judged": True, "message": "fidelity.detection_score = 0.02, needs >= 0.04"}
    print_gate([detection])
    out = capsys.readouterr().out
    assert out.splitlines()[2].split() == ["fidelity", "detection_score", "0.02", ">=", "0.04", "(default", "0.1)", "FAIL"]
    assert "use the flagship model" in " ".join(out.split())  # no run: the generic advice
    print_gate([detection], results={"run": {"kind": "run", "model": "autoregressive"}, "privacy": {"dp": None}})
    out = " ".join(capsys.readouterr().out.split())
    assert "use the flagship" not in out and "already the flagship" in out
    print_gate([detection], results={"run": {"kind": "request", "registry_entry": "adult-tvae"}})
    out = " ".join(capsys.readouterr().out.split())
    assert "broader conditions" in out and "adult-tvae" in out and "Train longer" not in out
    print_gate([inference], results={"run": {"kind": "run", "model": "tvae"}, "privacy": {"dp": {"epsilon": 3.0}}})
    out = " ".join(capsys.readouterr().out.split())
    assert "train with differential privacy" not in out and "smaller epsilon" in out
