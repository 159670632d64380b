"""One evaluation of a synthetic table: fidelity, privacy, utility and contracts, a gate, and the reports.

`evaluate(...)` returns a JSON-able dict::

    {"gate": {"passed": bool, "failures": [...], "checks": [...]}, "run": {...} | None,
     "fidelity": {"quality": {...}, "detection": {...}}, "privacy": {...}, "utility": {...} | None,
     "contracts": {...}, "meta": {...}}

`write_report(results, out_dir, real, synthetic, schema)` writes `report.json` and a self-contained
`report.html` (plots inline as PNG) atomically, plus the learned expectation suite as `expectation_suite.json`.
"""

from __future__ import annotations

import base64
import io
import os
import platform
import time
import warnings
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import write_json_atomic, write_text_atomic
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.keys import category_keys
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
    from tabtwin.evaluation.contracts import contracts_report
    from tabtwin.evaluation.fidelity import detection_test, quality_report
    from tabtwin.evaluation.privacy import attack_risks, few_rows_privacy, privacy_metrics
    from tabtwin.evaluation.utility import utility_report

    _check_tables(train, holdout, synthetic, schema)
    gate = gate or GateConfig()
    seconds = {}

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
        "contracts": timed("contracts", contracts_report, train, synthetic, schema),
    }
    results["privacy"]["dp"] = dp
    results["privacy"]["attacks"] = timed("attacks", attack_risks, train, holdout, synthetic, schema, target, seed=seed)
    results["gate"] = apply_gate(results, gate)
    results["meta"] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "columns": schema.names,
        "target": target,
        "seed": seed,
        "gate_config": gate.to_dict(),
        "seconds": seconds,
        "versions": {pkg: _version(pkg) for pkg in ("tabtwin", "sdmetrics", "great_expectations", "scikit-learn", "torch")},
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
    }
    results["run"] = run
    return {key: results[key] for key in ("gate", "run", "fidelity", "privacy", "utility", "contracts", "meta")}


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


# ---------------------------------------------------------------------------------------------- writing


def write_report(results: dict, out_dir: str | Path, real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict:
    """report.json, report.html and expectation_suite.json under `out_dir`; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = jsonable(results)  # plain types only: numpy scalars as Python, NaN and inf as null
    contracts = results.get("contracts") or {}
    suite = contracts.pop("suite", None)
    paths = {"json": write_json_atomic(results, out / "report.json")}
    if suite is not None:
        paths["suite"] = write_json_atomic(suite, out / "expectation_suite.json")
    paths["html"] = write_text_atomic(render_html(results, real, synthetic, schema), out / "report.html")
    return paths


# ---------------------------------------------------------------------------------------------- html


def render_html(results: dict, real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> str:
    from jinja2 import Environment

    quality = results["fidelity"]["quality"]
    shown = _worst_columns(quality, schema)
    figures = {
        "columns": _png(_column_figure, real, synthetic, schema, shown),
        "correlation": _png(_correlation_figure, quality),
        "dcr": _png(_dcr_figure, results["privacy"]),
    }
    modelled = sum(spec.kind != "id" for spec in schema.columns)
    figure_note = (f"the {len(shown)} columns with the lowest shape scores of {modelled}"
                   if len(shown) < modelled else None)
    template = Environment(autoescape=True).from_string(_TEMPLATE)
    return template.render(r=results, figures=figures, fmt=_fmt, figure_note=figure_note,
                           privacy_rows=privacy_rows(results))


def privacy_rows(results: dict) -> list[dict]:
    """The privacy section's rows: {figure, value, threshold, result, sentence}, one per gate check of the
    privacy section, each with one sentence a reviewer can read aloud (what the figure measures, what is good)."""
    privacy = results.get("privacy") or {}
    attacks = {(_attack_check_name(a)): a for a in (privacy.get("attacks") or {}).get("attacks", [])}
    m, n_train, n_holdout = privacy.get("n_compared"), privacy.get("n_train"), privacy.get("n_holdout")
    sentences = {
        "dcr_share": (f"The chance that a synthetic row sits closer to the {n_train} training rows than a real "
                      f"unseen (holdout) row does; 0.5 means no closer than fresh data, 1 means copying."),
        "close_share": ("The share of synthetic rows closer to a training row than 95 % of real unseen rows "
                        "are; about 0.05 is natural."),
        "exact_copy_excess": ("The share of synthetic rows that repeat a training row exactly, less the share of "
                              "real unseen rows that do so by chance; 0 means no copying."),
        "mia_auc": (f"How well an attacker tells {m} training rows from {m} unseen rows by how close the nearest "
                    f"synthetic row is; 0.5 is a coin toss, 1 is certain membership."),
    }
    for name, attack in attacks.items():
        n = attack.get("n_attacks")
        if attack["attack"] == "singling_out":
            sentences[name] = (f"How much more often than on unseen rows a query built from the synthetic data "
                               f"picks out exactly one real training person ({n} queries, upper bound of the "
                               f"95 % interval checked).")
        elif attack["attack"] == "linkability":
            sentences[name] = (f"How much more often than on unseen rows an attacker holding two halves of a "
                               f"person's record ({attack['detail'][7:]}) joins them through the synthetic data "
                               f"({n} attacks, upper bound checked).")
        else:
            sentences[name] = (f"How much more often than on unseen rows an attacker who knows every other "
                               f"column guesses a training person's {attack['detail']} from the synthetic data "
                               f"({n} attacks, upper bound checked).")
    rows = []
    for check in (results.get("gate") or {}).get("checks", []):
        if check["section"] != "privacy":
            continue
        attack = attacks.get(check["check"])
        value = (f"{_fmt(attack['risk'])} (95 % CI {_fmt(attack['ci_low'])} to {_fmt(attack['ci_high'])})"
                 if attack else _fmt(check["value"], 4 if check["check"] == "exact_copy_excess" else 3))
        result = ("not judged: " + check["reason"]) if not check["judged"] else ("pass" if check["passed"] else "FAIL")
        rows.append({"figure": check["check"], "value": value, "op": "≤", "threshold": check["threshold"],
                     "result": result, "passed": check["passed"],
                     "sentence": sentences.get(check["check"], sentences.get(check["check"].split("[")[0], ""))})
    return rows


def _attack_check_name(attack: dict) -> str:
    return f"{attack['attack']}_risk" + (f"[{attack['detail']}]" if attack["attack"] == "inference" else "")


# Figures show at most this many columns (a 300-column table would need a 300-inch figure): the worst first.
FIGURE_COLUMNS = 30


def _worst_columns(quality: dict, schema: Schema) -> list[str]:
    names = [spec.name for spec in schema.columns if spec.kind != "id"]
    if len(names) <= FIGURE_COLUMNS:
        return names
    scores = {name: (entry.get("score") if entry.get("score") is not None else 1.0)
              for name, entry in (quality.get("columns") or {}).items()}
    worst = sorted(names, key=lambda name: scores.get(name, 1.0))[:FIGURE_COLUMNS]
    return [name for name in names if name in worst]


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _png(draw, *args) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")  # e.g. CJK category labels
        figure = draw(*args)
        if figure is None:
            return None
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _column_figure(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, shown: list[str]):
    import matplotlib.pyplot as plt

    from tabtwin.evaluation.features import numeric_values

    specs = [s for s in schema.columns if s.kind != "id" and s.name in shown]
    if not specs:
        return None
    per_row = 3
    rows = (len(specs) + per_row - 1) // per_row
    figure, axes = plt.subplots(rows, per_row, figsize=(5 * per_row, 3 * rows), squeeze=False)
    for ax, spec in zip(axes.flat, specs):
        if spec.kind in ("continuous", "datetime"):
            a, b = numeric_values(real[spec.name], spec).dropna(), numeric_values(synthetic[spec.name], spec).dropna()
            bins = np.histogram_bin_edges(a, bins=40) if len(a) and a.min() < a.max() else 20
            ax.hist(a, bins=bins, density=True, alpha=0.55, label="real")
            ax.hist(b, bins=bins, density=True, alpha=0.55, label="synthetic")
        else:
            shares = pd.DataFrame(
                {"real": _shares(real[spec.name]), "synthetic": _shares(synthetic[spec.name])}
            ).fillna(0.0)
            shares = shares.sort_values("real", ascending=False).head(15)
            shares.plot.bar(ax=ax, width=0.8, legend=False)
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.set_title(spec.name, fontsize=10)
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def _shares(series: pd.Series) -> pd.Series:
    return pd.Series(category_keys(series, null="(null)")).value_counts(normalize=True)


def _correlation_figure(quality: dict):
    import matplotlib.pyplot as plt

    pairs = [p for p in quality.get("pairs", []) if p.get("score") is not None]
    if not pairs:
        return None
    names = list(dict.fromkeys(name for p in pairs for name in p["columns"]))
    if len(names) > FIGURE_COLUMNS:  # the columns of the worst pairs, in table order
        worst: dict = {}
        for p in sorted(pairs, key=lambda p: p["score"]):
            for name in p["columns"]:
                if len(worst) < FIGURE_COLUMNS:
                    worst.setdefault(name, None)
        names = [name for name in names if name in worst]
        pairs = [p for p in pairs if set(p["columns"]) <= set(worst)]
    gap = pd.DataFrame(np.nan, index=names, columns=names)
    for p in pairs:
        a, b = p["columns"]
        if p.get("real") is not None and p.get("synthetic") is not None:
            value = abs(p["real"] - p["synthetic"])
        else:
            value = 1.0 - p["score"]
        gap.loc[a, b] = gap.loc[b, a] = value
    figure, ax = plt.subplots(figsize=(0.45 * len(names) + 3, 0.45 * len(names) + 2))
    image = ax.imshow(gap.to_numpy(dtype=float), cmap="Reds", vmin=0, vmax=max(0.2, np.nanmax(gap.to_numpy(dtype=float))))
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title("|real - synthetic| correlation / association per pair")
    figure.colorbar(image, ax=ax, shrink=0.8)
    figure.tight_layout()
    return figure


def _dcr_figure(privacy: dict):
    import matplotlib.pyplot as plt

    distances = privacy.get("distances") or {}
    series = {name: np.asarray(values, dtype=float) for name, values in distances.items() if values}
    if not series:
        return None
    top = max(float(np.nanmax(v)) for v in series.values())
    bins = np.linspace(0, top if top > 0 else 1.0, 50)
    figure, ax = plt.subplots(figsize=(8, 3.5))
    for name, values in series.items():
        ax.hist(values, bins=bins, alpha=0.5, density=True, label=name.replace("_", " "))
    ax.set_xlabel("distance to closest record")
    ax.set_title("Distance to closest record")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tabtwin evaluation report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.banner{padding:1rem 1.2rem;border-radius:6px;font-size:1.2rem;font-weight:600}
.pass{background:#e6f4ea;color:#1e6b34} .fail{background:#fce8e6;color:#a50e0e}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;font-size:.92rem}
th{background:#f5f5f5} td.ok{color:#1e6b34} td.bad{color:#a50e0e;font-weight:600} img{max-width:100%}
.muted{color:#666;font-size:.9rem}
</style></head><body>
<h1>Synthetic data evaluation</h1>
<p class="muted">{{ r.meta.created }} · real {{ r.meta.rows.train }} rows, holdout {{ r.meta.rows.holdout }},
synthetic {{ r.meta.rows.synthetic }} · tabtwin {{ r.meta.versions.tabtwin }}, sdmetrics {{ r.meta.versions.sdmetrics }},
great-expectations {{ r.meta.versions.great_expectations }}</p>
<div class="banner {{ 'pass' if r.gate.passed else 'fail' }}">Gate {{ 'PASSED' if r.gate.passed else 'FAILED' }}
{% if not r.gate.passed %}: {{ r.gate.failures|length }} check(s) failed{% endif %}</div>
<table><tr><th>section</th><th>check</th><th>value</th><th>threshold</th><th>result</th></tr>
{% for c in r.gate.checks %}<tr><td>{{ c.section }}</td><td>{{ c.check }}</td><td>{{ fmt(c.value) }}</td>
<td>{{ '≥' if c.op == '>=' else '≤' }} {{ c.threshold }}</td>
<td class="{{ 'ok' if c.passed else 'bad' }}">{% if c.judged == false %}not judged: {{ c.reason }}{% elif c.passed %}pass{% else %}FAIL{% endif %}</td></tr>{% endfor %}
</table>

<h2>Fidelity</h2>
<table><tr><th>sdmetrics quality</th><td>{{ fmt(r.fidelity.quality.score) }}</td></tr>
<tr><th>column shapes</th><td>{{ fmt(r.fidelity.quality.column_shapes) }}</td></tr>
<tr><th>column pair trends</th><td>{{ fmt(r.fidelity.quality.column_pair_trends) }}</td></tr>
{% if r.fidelity.detection.skipped %}<tr><th>detection test</th><td>not run: {{ r.fidelity.detection.skipped }}</td></tr></table>
{% else %}<tr><th>detection AUC (boosted trees, 3-fold)</th><td>{{ fmt(r.fidelity.detection.auc) }}</td></tr>
<tr><th>detection score (1 = indistinguishable)</th><td>{{ fmt(r.fidelity.detection.score) }}</td></tr></table>{% endif %}
<p class="muted">sdmetrics {{ r.fidelity.quality.sdmetrics_version }} on {{ r.fidelity.quality.rows_used }} rows per side{% if r.fidelity.quality.pairs_total %}, {{ r.fidelity.quality.pairs_scored }} of {{ r.fidelity.quality.pairs_total }} column pairs{% endif %}.
{% if r.fidelity.quality.note %}Note: {{ r.fidelity.quality.note }}.{% endif %}{% if r.fidelity.detection.note %} Detection: {{ r.fidelity.detection.note }}.{% endif %}</p>
<table><tr><th>column</th><th>metric</th><th>score</th></tr>
{% for name, c in r.fidelity.quality.columns.items() %}<tr><td>{{ name }}</td><td>{{ c.metric }}</td><td>{{ fmt(c.score) }}</td></tr>{% endfor %}
</table>
{% if figures.columns %}<h3>Real vs synthetic, per column{% if figure_note %} ({{ figure_note }}){% endif %}</h3><img alt="column distributions" src="data:image/png;base64,{{ figures.columns }}">{% endif %}
{% if figures.correlation %}<h3>Correlation difference</h3><img alt="correlation difference" src="data:image/png;base64,{{ figures.correlation }}">{% endif %}

<h2>Privacy</h2>
{% if r.privacy.skipped %}<p>Distance metrics not judged: {{ r.privacy.skipped }}.</p>{% endif %}
<table><tr><th>figure</th><th>value</th><th>threshold</th><th>result</th><th>what it says</th></tr>
{% for p in privacy_rows %}<tr><td>{{ p.figure }}</td><td>{{ p.value }}</td><td>{{ p.op }} {{ p.threshold }}</td>
<td class="{{ 'ok' if p.passed else 'bad' }}">{{ p.result }}</td><td>{{ p.sentence }}</td></tr>{% endfor %}
</table>
<p class="muted">Sizes: {{ r.privacy.n_train }} training, {{ r.privacy.n_holdout }} holdout, {{ r.privacy.n_synthetic }} synthetic rows;
the DCR share measures synthetic and holdout rows against the same training rows; membership inference compares
{{ r.privacy.n_compared }} training with {{ r.privacy.n_compared }} holdout rows (seeded samples).
NNDR median (synthetic / holdout): {{ fmt(r.privacy.nndr_median) }} / {{ fmt(r.privacy.holdout_nndr_median) }}
(ratio of distances to the closest and second-closest training row; a synthetic median well below the holdout's means rows hug single records).</p>
{% set a = r.privacy.attacks %}{% if a and a.skipped %}<p>Attacks not judged: {{ a.skipped }}.</p>
{% elif a %}<h3>Attacks (anonymeter {{ a.anonymeter_version }})</h3>
<table><tr><th>attack</th><th>detail</th><th>risk</th><th>95 % CI</th><th>attack / control success</th></tr>
{% for x in a.attacks %}<tr><td>{{ x.attack }}</td><td>{{ x.detail }}</td><td>{{ fmt(x.risk) }}</td><td>{{ fmt(x.ci_low) }} to {{ fmt(x.ci_high) }}</td>
<td>{{ fmt(x.attack_rate) }} / {{ fmt(x.control_rate) }}</td></tr>{% endfor %}</table>
<p class="muted">{{ a.method }}. Risk = (success on training rows - success on holdout rows) / (1 - success on holdout rows).
{{ a.n_targets }} training and {{ a.n_control }} holdout rows attacked (seeded), {{ a.n_synthetic_searched }} synthetic rows searched;
singling out is multivariate ({{ a.attacks[0].detail }}, 3 columns per query); linkability views:
{% for v in a.views %}[{{ v|join(', ') }}]{% if not loop.last %} and {% endif %}{% endfor %}; inference secrets: {{ a.secrets|join(', ') }}
(the target when given, then categorical columns by entropy).</p>{% endif %}
<p class="muted">{{ r.privacy.distance }}</p>
{% if figures.dcr %}<img alt="DCR histograms" src="data:image/png;base64,{{ figures.dcr }}">{% endif %}

<h2>Utility</h2>
{% if r.utility and r.utility.skipped %}<p>Utility for <b>{{ r.utility.target }}</b> not measured: {{ r.utility.skipped }}.</p>
{% elif r.utility %}<p>Predicting <b>{{ r.utility.target }}</b> ({{ r.utility.task }}, {{ r.utility.model }}), tested on the real holdout ({{ r.utility.test_rows }} rows).</p>
<table><tr><th>metric</th><th>train on real</th><th>train on synthetic</th><th>ratio</th></tr>
{% for m, ratio in r.utility.ratio.items() %}<tr><td>{{ m }}</td><td>{{ fmt(r.utility.train_real[m]) }}</td><td>{{ fmt(r.utility.train_synthetic[m]) }}</td><td>{{ fmt(ratio) }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">No target column given: utility not measured.</p>{% endif %}

<h2>Data contracts</h2>
<p>{{ r.contracts.n_expectations - r.contracts.n_failed }} of {{ r.contracts.n_expectations }} expectations met
(success rate {{ fmt(r.contracts.success_rate) }}).</p>
{% if r.contracts.failed %}<table><tr><th>expectation</th><th>column</th><th>observed</th></tr>
{% for f in r.contracts.failed %}<tr><td>{{ f.expectation }}</td><td>{{ f.column }}</td><td>{{ f.observed }}</td></tr>{% endfor %}
</table>{% endif %}
<p class="muted">Evaluation took {% for k, v in r.meta.seconds.items() %}{{ k }} {{ v }} s{% if not loop.last %}, {% endif %}{% endfor %} on {{ r.meta.machine }}.</p>
</body></html>
"""
