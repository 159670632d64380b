"""The report page's Jinja template (autoescaped; figures and plotly.js come in as Markup from report.render_html)."""

from __future__ import annotations

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tabtwin evaluation report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.banner{padding:1rem 1.2rem;border-radius:6px;font-size:1.2rem;font-weight:600;margin:1rem 0}
.pass{background:#e6f4ea;color:#1e6b34} .fail{background:#fce8e6;color:#a50e0e}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;font-size:.92rem;vertical-align:top}
th{background:#f5f5f5} td.ok{color:#1e6b34} td.bad{color:#a50e0e;font-weight:600}
.muted{color:#666;font-size:.9rem} code{font-size:.88rem;background:#f3f3f3;padding:0 .25rem;border-radius:3px}
ol.failures li{margin:.5rem 0} .failure b{color:#a50e0e}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:.6rem}
.figrow{display:grid;grid-template-columns:minmax(0,1fr) 370px;gap:1rem;align-items:start;margin:.8rem 0}
.side{min-width:0;overflow-x:auto} .side td,.side th{font-size:.85rem;padding:.2rem .4rem}
.side-checks td:first-child,#checks td:nth-child(2){overflow-wrap:anywhere;word-break:break-word}
@media (max-width:900px){.figrow{grid-template-columns:1fr}}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5rem .8rem;margin:.6rem 0}
dl.glossary dt{font-weight:600;margin-top:.8rem} dl.glossary dd{margin-left:1rem}
</style>
<script>{{ plotly_js }}</script>
</head><body>
<h1>Synthetic data evaluation</h1>
<p class="muted">{{ r.meta.created }} · real {{ r.meta.rows.train }} rows, holdout {{ r.meta.rows.holdout }},
synthetic {{ r.meta.rows.synthetic }} · tabtwin {{ r.meta.versions.tabtwin }}, sdmetrics {{ r.meta.versions.sdmetrics }},
great-expectations {{ r.meta.versions.great_expectations }}</p>
{% if run_rows %}<table class="run" id="run">{% for label, text in run_rows %}<tr><th>{{ label }}</th><td>{{ text }}</td></tr>{% endfor %}</table>{% endif %}
<div class="banner {{ 'pass' if r.gate.passed else 'fail' }}" id="verdict">Gate {{ 'PASSED' if r.gate.passed else 'FAILED' }}
{%- if not r.gate.passed %}: {{ r.gate.failures|length }} check(s) failed
{%- if r.run and r.run.kind in ('run', 'request') %}; the synthetic table was withheld{% endif %}{% endif %}</div>
{% if not r.gate.passed and r.run and r.run.kind in ('run', 'request') %}<p class="muted">This folder keeps the report and the contracts, not the synthetic table, and shows no real value
that fewer than {{ disclosure.min_count }} real rows hold (<a href="#disclosure">what was withheld</a>).</p>{% endif %}
{% if changed %}<p class="note" id="gate-file">Thresholds from a gate file: {{ changed|length }} differ from the defaults
({% for key in changed %}<code>{{ key }}</code>{% if not loop.last %}, {% endif %}{% endfor %}); the checks below show each changed threshold with its default.</p>{% endif %}
{% if failed %}<h2 id="failed">What failed and what to do</h2>
<ol class="failures">{% for c in failed %}<li class="failure" data-key="{{ c.key }}"><b>{{ c.section }} · {{ c.check }}</b>
(<code>{{ c.key }}</code>): {{ c.explanation }}</li>{% endfor %}</ol>{% endif %}
<table id="checks"><tr><th>section</th><th>check</th><th>gate key</th><th>value</th><th>threshold</th><th>result</th></tr>
{% for c in checks %}<tr><td>{{ c.section }}</td><td>{{ c.check }}</td><td><code>{{ c.key }}</code></td><td>{{ c.shown }}</td>
<td>{{ '≥' if c.op == '>=' else '≤' }} {{ c.threshold_text }}</td>
<td class="{{ 'ok' if c.passed else 'bad' }}">{% if c.judged == false %}not judged: {{ c.reason }}{% elif c.passed %}pass{% else %}FAIL{% endif %}</td></tr>{% endfor %}
</table>
<p class="muted">A gate file sets a threshold by its gate key (e.g. <code>{"min_detection_score": 0.2}</code>, passed with <code>--gate</code>);
<a href="#glossary">what each check means</a>.</p>

<section id="fidelity"><h2>Fidelity</h2>
<table><tr><th>sdmetrics quality</th><td>{{ fmt(r.fidelity.quality.score) }}</td></tr>
<tr><th>column shapes</th><td>{{ fmt(r.fidelity.quality.column_shapes) }}</td></tr>
<tr><th>column pair trends</th><td>{{ fmt(r.fidelity.quality.column_pair_trends) }}</td></tr>
{% if r.fidelity.detection.skipped %}<tr><th>detection test</th><td>not run: {{ r.fidelity.detection.skipped }}</td></tr></table>
{% else %}<tr><th>detection AUC (boosted trees, 3-fold)</th><td>{{ fmt(r.fidelity.detection.auc) }}</td></tr>
<tr><th>detection score (1 = indistinguishable)</th><td>{{ fmt(r.fidelity.detection.score) }}</td></tr>
{% if r.fidelity.detection.top_columns %}<tr><th>columns the classifier relied on most</th><td>{% for c in r.fidelity.detection.top_columns %}{{ c.column }} ({{ fmt(c.importance, 3) }}){% if not loop.last %}, {% endif %}{% endfor %}
<div class="muted">drop in AUC when the column is shuffled on held-out rows</div></td></tr>{% endif %}</table>{% endif %}
<p class="muted">sdmetrics {{ r.fidelity.quality.sdmetrics_version }} on {{ r.fidelity.quality.rows_used }} rows per side.
{% if r.fidelity.quality.note %}Note: {{ r.fidelity.quality.note }}.{% endif %}{% if r.fidelity.detection.note %} Detection: {{ r.fidelity.detection.note }}.{% endif %}</p>
<details><summary>Shape score per column</summary>
<table><tr><th>column</th><th>metric</th><th>score</th></tr>
{% for name, c in r.fidelity.quality.columns.items() %}<tr><td>{{ name }}</td><td>{{ c.metric }}</td><td>{{ fmt(c.score) }}</td></tr>{% endfor %}
</table></details>
{% if figures.columns %}<h3 id="column-figures">Real vs synthetic, per column{% if figure_note %} ({{ figure_note }}){% endif %}</h3>
<p class="muted">Share of rows per value (categories, few-valued numbers) or per bin (other numbers); a value holding
10 % or more of the real rows, and nulls, have their own bars on the left so the rest stays readable. Values held by fewer than
{{ disclosure.min_count }} real rows, and synthetic values that are not common real ones, share one bar; a histogram's end bars are open-ended
(below its first bin, above its last: at least {{ disclosure.min_count }} real rows each), and neighbouring bins holding fewer than
{{ disclosure.min_count }} real rows are merged into one wider bin (<a href="#disclosure">why</a>). Hover for figures; drag to zoom, double-click to reset.</p>
<div class="grid">{% for f in figures.columns %}<div class="column-figure">{{ f.html }}</div>{% endfor %}</div>{% endif %}
{% if figures.associations or figures.pair_scores %}<h3 id="pair-figures">Column pairs</h3>
{% if pair_note %}<p class="note" id="pair-note">{{ pair_note }}</p>{% endif %}
{% if figures.associations %}<p class="muted">Association of every pair, on {{ associations.rows.real }} real and {{ associations.rows.synthetic }} synthetic rows: correlation (-1 to 1) for two numeric
columns, Cramér's V (0 to 1) for the others (numbers cut into {{ associations.bins }} bins). Compare the two matrices cell by cell.</p>
{{ figures.associations }}{% endif %}
{% if figures.pair_scores %}<p class="muted">sdmetrics' pair trend score per pair (1 = kept exactly); grey: not scored, so it does not count.</p>
{{ figures.pair_scores }}{% endif %}{% endif %}
</section>

<section id="privacy"><h2>Privacy</h2>
{% if r.privacy.personal_data %}<h3>Personal data</h3>
<table id="personal-data"><tr><th>column</th><th>kind</th><th>treatment</th><th>synthetic values equal to a real one</th></tr>
{% for p in r.privacy.personal_data %}<tr><td>{{ p.column }}</td><td>{{ p.pii }}</td><td>{{ p.treatment }}</td><td>{{ p.real_values_in_synthetic }}</td></tr>{% endfor %}
</table>{% endif %}
{% if dp %}<h3>Differential privacy</h3>
<p class="note" id="dp-sentence">{{ dp_sentence }}</p>
<table id="dp"><tr><th>mechanism</th><td>{{ dp.mechanism }}</td></tr>
<tr><th>epsilon spent (target)</th><td>{{ fmt(dp.epsilon) }}{% if dp.target_epsilon is not none %} ({{ dp.target_epsilon }}){% endif %}</td></tr>
<tr><th>delta</th><td>{{ '%.3g'|format(dp.delta) if dp.delta is number else dp.delta }}{% if dp.delta_rule %} ({{ dp.delta_rule }}){% endif %}</td></tr>
<tr><th>noise multiplier</th><td>{{ fmt(dp.noise_multiplier) }}</td></tr><tr><th>max gradient norm</th><td>{{ dp.max_grad_norm }}</td></tr>
<tr><th>sample rate, epochs, steps, rows</th><td>{{ fmt(dp.sample_rate, 5) }}, {{ dp.epochs }}, {{ dp.steps }}, {{ dp.rows }}</td></tr>
<tr><th>accountant</th><td>{{ dp.accountant }}</td></tr>
{% if dp.noise_seed %}<tr><th>noise seed</th><td>{{ dp.noise_seed }}</td></tr>{% endif %}
{% if dp.covered %}<tr><th>covered</th><td>{{ dp.covered }}</td></tr>{% endif %}
{% if dp.not_covered %}<tr><th>not covered</th><td><ul>{% for item in dp.not_covered %}<li>{{ item }}</li>{% endfor %}</ul></td></tr>{% endif %}
{% if dp.conditional_sampling %}<tr><th>conditional sampling</th><td>{{ dp.conditional_sampling }}</td></tr>{% endif %}
</table><p class="muted">Epsilon itself is not a gate check: the distance and attack checks below are, and they judge the synthetic rows whatever the training.</p>{% endif %}
{% if r.privacy.skipped %}<p>Distance metrics not judged: {{ r.privacy.skipped }}.</p>{% endif %}
{% macro side(rows) %}<table class="side-checks"><tr><th>check</th><th>value</th><th>threshold</th><th>result</th></tr>
{% for p in rows %}<tr><td>{{ p.figure }}</td><td>{{ p.checked }}</td><td>{{ p.op }} {{ p.threshold }}</td>
<td class="{{ 'ok' if p.passed else 'bad' }}">{{ p.result }}</td></tr>{% endfor %}</table>{% endmacro %}
{% if figures.dcr %}<h3 id="distance-figures">Distance to the closest training row</h3>
<div class="figrow"><div class="fig">{{ figures.dcr }}</div><div class="side">{{ side(side_rows['distance-figures']) }}
<p class="muted">Synthetic rows should sit no closer to the training rows than real unseen (holdout) rows do: the orange bars
should not pile up left of the grey ones, nor left of the dashed line.</p></div></div>{% endif %}
{% if figures.attacks %}<h3 id="attack-figures">Attacks</h3>
<div class="figrow"><div class="fig">{{ figures.attacks }}</div><div class="side">{{ side(side_rows['attack-figures']) }}
<p class="muted">Each dot is an attack's excess success on training rows over unseen rows; its bar the 95 % interval, whose upper end
(the value checked) must stay under the threshold.</p></div></div>{% endif %}
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
{% elif a %}<details><summary>Attack details (anonymeter {{ a.anonymeter_version }})</summary>
<table><tr><th>attack</th><th>detail</th><th>risk</th><th>95 % CI</th><th>attack / control success</th></tr>
{% for x in a.attacks %}<tr><td>{{ x.attack }}</td><td>{{ x.detail }}</td><td>{{ fmt(x.risk) }}</td><td>{{ fmt(x.ci_low) }} to {{ fmt(x.ci_high) }}</td>
<td>{{ fmt(x.attack_rate) }} / {{ fmt(x.control_rate) }}</td></tr>{% endfor %}</table>
<p class="muted">{{ a.method }}. Risk = (success on training rows - success on holdout rows) / (1 - success on holdout rows).
{{ a.n_targets }} training and {{ a.n_control }} holdout rows attacked (seeded), {{ a.n_synthetic_searched }} synthetic rows searched;
singling out is multivariate ({{ a.attacks[0].detail }}, 3 columns per query); linkability views:
{% for v in a.views %}[{{ v|join(', ') }}]{% if not loop.last %} and {% endif %}{% endfor %}; inference secrets: {{ a.secrets|join(', ') }}
(the target when given, then categorical columns by entropy).</p></details>{% endif %}
<p class="muted">{{ r.privacy.distance }}</p>
</section>

<section id="utility"><h2>Utility</h2>
{% if r.utility and r.utility.skipped %}<p>Utility for <b>{{ r.utility.target }}</b> not measured: {{ r.utility.skipped }}.</p>
{% elif r.utility %}<p>Predicting <b>{{ r.utility.target }}</b> ({{ r.utility.task }}, {{ r.utility.model }}), tested on the real holdout ({{ r.utility.test_rows }} rows).</p>
<table><tr><th>metric</th><th>train on real</th><th>train on synthetic</th><th>ratio</th></tr>
{% for m, ratio in r.utility.ratio.items() %}<tr><td>{{ m }}</td><td>{{ fmt(r.utility.train_real[m]) }}</td><td>{{ fmt(r.utility.train_synthetic[m]) }}</td><td>{{ fmt(ratio) }}</td></tr>{% endfor %}
</table>{% for side, label in (('train_real', 'real'), ('train_synthetic', 'synthetic')) %}{% if r.utility[side].note %}
<p class="muted">The model on the {{ label }} rows {{ r.utility[side].note }}.</p>{% endif %}{% endfor %}{% else %}<p class="muted">No target column given: utility not measured.</p>{% endif %}
</section>

<section id="contracts"><h2>Data contracts</h2>
<p>{{ r.contracts.n_expectations - r.contracts.n_failed }} of {{ r.contracts.n_expectations }} expectations met
(success rate {{ fmt(r.contracts.success_rate) }}).</p>
{% if r.contracts.failed %}<ul class="contract-failures">{% for f in r.contracts.failed %}<li>{{ f.sentence or (f.column ~ ': ' ~ f.expectation) }}
<span class="muted">({{ f.expectation }})</span></li>{% endfor %}</ul>{% endif %}
</section>

<section id="disclosure"><h2>Real values in this report</h2>
<p>{{ disclosure.rule[:1]|upper }}{{ disclosure.rule[1:] }}. The same holds for
synthetic values, which may copy real rows; a synthetic value outside the real range is no real value and may be quoted.
So a run whose gate fails leaves a report and contracts that do not disclose the rare values the gate withheld.</p>
{% if disclosure.columns %}<details><summary>Values withheld from display, per column</summary>
<table><tr><th>column</th><th>distinct real values</th><th>withheld (under {{ disclosure.min_count }} rows each)</th><th>real rows holding them</th></tr>
{% for name, c in disclosure.columns.items() %}<tr><td>{{ name }}</td><td>{{ c['values'] }}</td><td>{{ c.withheld }}</td><td>{{ c.rows_withheld }}</td></tr>{% endfor %}
</table><p class="muted">Numbers and dates are shown as bins and rounded range ends, so most of their distinct values count as withheld.</p></details>{% endif %}
</section>

<section id="glossary"><h2>What each check means</h2>
<p class="muted">Each check's threshold is set by its gate key in a gate file; the values here are this run's.</p>
<dl class="glossary">{% for g in glossary %}<dt id="key-{{ g.key }}"><code>{{ g.key }}</code> · {{ g.title }}
<span class="muted">(check <code>{{ g.checks }}</code>{% if g.threshold is not none %}, threshold {{ g.threshold }}{% endif %}{% if g.figure %}, shown in <a href="#{{ g.figure }}">{{ figure_names[g.figure] }}</a>{% endif %})</span></dt>
<dd>{{ g.measures }} <b>Good:</b> {{ g.good }} <b>If it fails:</b> {{ g.fix }}</dd>{% endfor %}</dl>
</section>
<p class="muted">Evaluation took {% for k, v in r.meta.seconds.items() %}{{ k }} {{ v }} s{% if not loop.last %}, {% endif %}{% endfor %} on {{ r.meta.machine }}.</p>
</body></html>
"""
