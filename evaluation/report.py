"""One evaluation of a synthetic table: fidelity, privacy, utility and contracts, a gate, and the reports.

`evaluate(...)` returns a JSON-able dict::

    {"gate": {"passed": bool, "failures": [...], "checks": [...]}, "run": {...} | None,
     "fidelity": {"quality": {...}, "detection": {...}, "column_shares": {...}, "associations": {...}},
     "privacy": {...}, "utility": {...} | None, "contracts": {...}, "meta": {...}}

It holds every number the report shows: besides the checks' figures, the tables the figures draw (the share of
rows per value or bin of each column, evaluation/column_shares.py; the association matrices,
evaluation/associations.py; the distance histograms, `privacy.dcr_histogram`). `write_report(results,
out_dir, real, synthetic, schema)` writes `report.json` and a self-contained `report.html` atomically, plus
the learned expectation suite as `expectation_suite.json`. The page inlines plotly.js once and draws its
interactive figures from those tables (evaluation/figures.py), so it needs no network when viewed; the checks
are explained in plain words (evaluation/checks.py, evaluation/explain.py).

These files stay when the gate withholds the synthetic table, so none of them shows a real value that fewer
than k real rows hold (evaluation/disclosure.py); `meta.disclosure` states k and, per column, what was withheld.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import pandas as pd

from tabtwin.evaluation.checks import CHECKS, attack_check_name, check_of
from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.evaluation.html import TEMPLATE
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import write_json_atomic, write_text_atomic
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import Schema


def evaluate(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    target: str | None = None,
    gate: GateConfig | None = None,
    device: str = "auto",
    seed: int = 0,
    run: dict | None = None,
    dp: dict | None = None,
) -> dict:
    """Run every check and the gate; `target` enables the utility section.

    `run` (optional) says what produced the synthetic table, shown at the top of the report as given: keys
    `kind` ("run" or "request"), `model` (generator name), `model_dir`, `registry_entry`, `data`, `conditions`,
    `rows`. `dp` (optional) is a differentially private model's `privacy_` block (generators/tvae.py: epsilon
    spent, delta, noise multiplier, what is not covered), reported under `privacy.dp`; not gated.

    `train`, `holdout` (may be empty, as a rare segment's can be) and `synthetic` need the schema's columns;
    `train` and `synthetic` need rows (TabtwinError otherwise). Sections that cannot be judged on so few rows
    or without features say why in `skipped` and the gate lists them as not judged (`evaluation.gate`).
    """
    from tabtwin.evaluation.attacks import attack_risks
    from tabtwin.evaluation.contracts import contracts_report
    from tabtwin.evaluation.disclosure import Shown, disclosure_summary
    from tabtwin.evaluation.fidelity import detection_test, quality_report
    from tabtwin.evaluation.privacy import few_rows_privacy, privacy_metrics
    from tabtwin.evaluation.utility import utility_report

    _check_tables(train, holdout, synthetic, schema)
    gate = gate or GateConfig()
    seconds = {}
    shown = Shown(train)  # the real value counts, per column, of the contracts' quotes and meta.disclosure

    def timed(name, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = round(time.perf_counter() - start, 3)
        return result

    results = {
        "fidelity": {
            "quality": timed("quality", quality_report, train, synthetic, schema, seed=seed),
            "detection": timed("detection", detection_test, train, synthetic, schema, seed=seed),
        },
        "privacy": (timed("privacy", privacy_metrics, train, holdout, synthetic, schema, device=device, seed=seed)
                    if len(holdout) else few_rows_privacy(train, holdout, synthetic, schema, "no holdout rows: the "
                                                          "distance metrics compare training with holdout rows")),
        "utility": timed("utility", utility_report, train, holdout, synthetic, schema, target, seed=seed) if target else None,
        "contracts": timed("contracts", contracts_report, train, synthetic, schema, shown=shown),
    }
    results["fidelity"].update(timed("figures", figure_tables, train, synthetic, schema,
                                     results["fidelity"]["quality"], seed=seed))
    results["privacy"]["dp"] = dp
    results["privacy"]["personal_data"] = personal_data(train, synthetic, schema)
    results["privacy"]["attacks"] = timed("attacks", attack_risks, train, holdout, synthetic, schema, target, seed=seed)
    results["gate"] = apply_gate(results, gate)
    results["meta"] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "columns": schema.names,
        "target": target,
        "seed": seed,
        "gate_config": gate.to_dict(),
        "disclosure": disclosure_summary(train, schema, shown=shown),
        "seconds": seconds,
        "versions": {pkg: _version(pkg) for pkg in ("tabtwin", "sdmetrics", "great_expectations", "scikit-learn", "torch")},
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
    }
    results["run"] = run
    return {key: results[key] for key in ("gate", "run", "fidelity", "privacy", "utility", "contracts", "meta")}


def personal_data(train: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> list[dict]:
    """Each personal-data column (`ColumnSpec.pii`, `pipeline.columns.personal`): its PII sdtype, how it was
    treated, and how many synthetic values equal a real one of the training rows (0 expected)."""
    return [{"column": spec.name, "pii": spec.pii, "treatment": "not modelled; replaced by fakes (Faker)",
             "real_values_in_synthetic": int(synthetic[spec.name].isin(set(train[spec.name].dropna())).sum())}
            for spec in schema.columns if spec.pii]


def _check_tables(train, holdout, synthetic, schema: Schema) -> None:
    for name, frame in (("real", train), ("holdout", holdout), ("synthetic", synthetic)):
        missing = [column for column in schema.names if column not in frame.columns]
        if missing:
            raise TabtwinError(f"the {name} table lacks column(s) {missing}; all tables need the same columns")
        if len(frame) == 0 and name != "holdout":
            raise TabtwinError(f"the {name} table has no rows; evaluation needs real and synthetic rows")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except Exception:
        return None


def figure_tables(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, quality: dict, seed: int = 0) -> dict:
    """{"column_shares", "associations"}: the tables the fidelity figures draw, over the columns `quality`'s
    scores pick (all of them up to `column_shares.FIGURE_COLUMNS`)."""
    from tabtwin.evaluation.associations import associations
    from tabtwin.evaluation.column_shares import column_shares

    return {"column_shares": column_shares(real, synthetic, schema, quality),
            "associations": associations(real, synthetic, schema, quality, seed)}


# ---------------------------------------------------------------------------------------------- writing


def write_report(results: dict, out_dir: str | Path, real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict:
    """report.json, report.html and expectation_suite.json under `out_dir`; returns their paths. `real` is the
    table the evaluation learned from, `synthetic` the one it judged: what `results` lacks (results not made by
    `evaluate`) is filled in from them, meta.disclosure and the figures' tables."""
    from tabtwin.evaluation.disclosure import disclosure_summary

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = results.get("meta") or {}
    fidelity = results.get("fidelity") or {}
    results = {**results, "meta": {**meta, "disclosure": meta.get("disclosure") or disclosure_summary(real, schema)}}
    if "column_shares" not in fidelity:
        seed = meta.get("seed") or 0
        results["fidelity"] = {**fidelity, **figure_tables(real, synthetic, schema, fidelity.get("quality") or {}, seed)}
    results = jsonable(results)  # plain types only: numpy scalars as Python, NaN and inf as null
    contracts = results.get("contracts") or {}
    suite = contracts.pop("suite", None)
    paths = {"json": write_json_atomic(results, out / "report.json")}
    if suite is not None:
        paths["suite"] = write_json_atomic(suite, out / "expectation_suite.json")
    paths["html"] = write_text_atomic(render_html(results), out / "report.html")
    return paths


# ---------------------------------------------------------------------------------------------- html

# The report's figures that show a check (`Check.figure`): their headings' ids and what a link calls them.
FIGURES = {"column-figures": "the per-column figures", "pair-figures": "the column pair figures",
           "distance-figures": "the distance histograms", "attack-figures": "the attack risks"}


def render_html(results: dict) -> str:
    """The self-contained report page of `evaluate`'s results (as written to report.json): plotly.js inlined
    once, then the verdict, what failed and what to do, every check with the gate key that sets its threshold,
    the sections with their interactive figures and the checks they show, and a glossary of the checks."""
    from jinja2 import Environment
    from markupsafe import Markup

    from tabtwin.evaluation import figures as fig
    from tabtwin.evaluation.column_figures import column_figures
    from tabtwin.evaluation.disclosure import MIN_COUNT, RULE
    from tabtwin.evaluation.explain import (changed_thresholds, describe_run, explain_dp, explain_failure, fix_for,
                                           threshold_text, value_text)
    from tabtwin.evaluation.plot_style import plotly_js

    fidelity, privacy = results["fidelity"], results.get("privacy") or {}
    quality, shares = fidelity["quality"], fidelity.get("column_shares") or {}
    associations = fidelity.get("associations")
    meta = results.get("meta") or {}
    gate = results.get("gate") or {}
    config = meta.get("gate_config") or {}
    disclosure = {"min_count": MIN_COUNT, "columns": {}, **(meta.get("disclosure") or {})}
    disclosure.setdefault("rule", RULE.format(k=disclosure["min_count"]))
    figures = {
        "columns": [{**f, "html": Markup(f["html"])} for f in column_figures(shares, quality)],
        "associations": fig.association_figure(associations, quality),
        "pair_scores": fig.pair_score_figure((associations or {}).get("columns") or [], quality),
        "dcr": fig.dcr_figure(privacy),
        "attacks": fig.attack_figure(privacy.get("attacks"), gate.get("checks", [])),
    }
    figures.update({k: Markup(v) for k, v in figures.items() if isinstance(v, str)})
    drawn = {"column-figures": figures["columns"], "pair-figures": figures["associations"] or figures["pair_scores"],
             "distance-figures": figures["dcr"], "attack-figures": figures["attacks"]}
    checks = []
    for check in gate.get("checks", []):
        declared = check_of(check)
        checks.append({**check, "key": declared and declared.key, "threshold_text": threshold_text(check),
                       "shown": value_text(check["value"], check["threshold"], declared.digits if declared else 3) or "n/a"})
    failed = [{**c, "explanation": explain_failure(c, results)} for c in checks if not c["passed"]]
    rows = privacy_rows(results)
    side_rows = {figure: [row for row in rows if row["shown_in"] == figure] for figure in FIGURES}
    shown = len(shares.get("columns") or [])
    glossary = [{"key": c.key, "title": c.title, "checks": " or ".join(f"{c.section}.{n}" for n in (c.check, *c.also)),
                 "measures": c.describe(), "good": c.good, "fix": fix_for(c.key, results),
                 "threshold": threshold_text(c.key, config[c.key]) if config.get(c.key) is not None else None,
                 "figure": c.figure if drawn.get(c.figure) else None} for c in CHECKS]
    template = Environment(autoescape=True).from_string(TEMPLATE)
    return template.render(
        r=results, figures=figures, fmt=_fmt, checks=checks, failed=failed, privacy_rows=rows, side_rows=side_rows,
        figure_note=(f"the {shown} columns with the lowest shape scores of {shares['modelled']}"
                     if shown < shares.get("modelled", 0) else None),
        pair_note=_pair_note(quality), associations=associations, glossary=glossary, figure_names=FIGURES,
        changed=changed_thresholds(config),
        run_rows=describe_run(results.get("run")), dp=privacy.get("dp"), dp_sentence=explain_dp(privacy.get("dp")),
        disclosure=disclosure,
        plotly_js=Markup(plotly_js()),
    )


def privacy_rows(results: dict) -> list[dict]:
    """The privacy section's rows: {figure, value, checked, op, threshold, result, passed, sentence, shown_in},
    one per gate check of the privacy section, each with one sentence a reviewer can read aloud (what the figure
    measures in this run, what is good). `value` gives an attack's risk with its interval; `checked` the figure
    the gate compares (an attack's upper bound); `shown_in` the id of the figure that shows it."""
    from tabtwin.evaluation.explain import threshold_text, value_text

    privacy = results.get("privacy") or {}
    attacks = {attack_check_name(a): a for a in (privacy.get("attacks") or {}).get("attacks", [])}
    rows = []
    for check in (results.get("gate") or {}).get("checks", []):
        declared = check_of(check)
        if check["section"] != "privacy" or declared is None:
            continue
        attack = attacks.get(check["check"])
        value = (f"{_fmt(attack['risk'])} (95 % CI {_fmt(attack['ci_low'])} to {_fmt(attack['ci_high'])})"
                 if attack else _fmt(check["value"], declared.digits))
        result = ("not judged: " + check["reason"]) if not check["judged"] else ("pass" if check["passed"] else "FAIL")
        checked = value_text(check["value"], check["threshold"], declared.digits)
        sentence = f"{declared.describe(results, attack)[:-1]}; good: {declared.ideal[:1].lower()}{declared.ideal[1:]}."
        rows.append({"figure": check["check"], "value": value, "checked": checked or "n/a",
                     "op": "≥" if check["op"] == ">=" else "≤", "threshold": threshold_text(check), "result": result,
                     "passed": check["passed"], "sentence": sentence, "shown_in": declared.figure})
    return rows


def _pair_note(quality: dict) -> str | None:
    """"pair trends 0.724 rests on 13 of 105 pairs: ..." (None when sdmetrics gave no pairs)."""
    pairs = quality.get("pairs") or []
    if not pairs:
        return None
    counted = sum(p.get("score") is not None for p in pairs)
    total = quality.get("pairs_total") or len(pairs)
    sampled = f" (a sample of {len(pairs):,})" if len(pairs) < total else ""
    thresholds = quality.get("pair_thresholds") or {}
    correlation, association = thresholds.get("correlation"), thresholds.get("association")
    # An sdmetrics without these thresholds (None in report.json) scores every pair: no rule to state.
    rule = (f": sdmetrics scores only pairs whose real correlation exceeds {correlation:g} (two numeric columns) or "
            f"whose real association, Cramér's V, exceeds {association:g} (the others); the rest count for nothing "
            f"and are grey below" if correlation is not None and association is not None else "")
    return f"pair trends {_fmt(quality.get('column_pair_trends'))} rests on {counted:,} of {total:,} pairs{sampled}{rule}."


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


