"""The report's interactive figures: plotly, drawn in the browser from the tables the evaluation's results hold.

Each `*_figure` function returns an HTML fragment (a div and the script that draws it) or None when there is
nothing to draw; the page must load plotly.js once before them (`plot_style.plotly_js()`, inlined: the report
is one self-contained file that needs no network when viewed). They compute nothing of their own: the figures
carry the shares, bin edges and matrices of report.json (`fidelity.column_shares` and `fidelity.associations`,
`privacy.dcr_histogram`, the attacks and the gate's checks), not rows, so a report stays small whatever the
table's size: Adult's 15 column figures, association matrices and privacy figures add about 0.3 MB to
plotly.js's 4.8 MB. The per-column figures are in evaluation/column_figures.py. Style and colours:
evaluation/plot_style.py.
"""

from __future__ import annotations

import itertools

import numpy as np

from tabtwin.evaluation.checks import attack_check_name
from tabtwin.evaluation.plot_style import HOLDOUT, NOT_SCORED, REAL, SYNTHETIC, layout, to_html


# ---------------------------------------------------------------------------------------------- pairs


def association_figure(associations: dict | None, quality: dict) -> str | None:
    """Real and synthetic association matrices side by side (`fidelity.associations`, evaluation/associations.py),
    the hover text saying whether sdmetrics scored each pair (`quality`'s pairs)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not associations:
        return None
    labels, numeric = associations["columns"], associations["numeric"]
    scored = _pair_lookup(quality)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("real", "synthetic"), horizontal_spacing=0.08)
    for index, side in enumerate(("real", "synthetic"), start=1):
        matrix = associations[side]
        text = [[_pair_hover(a, b, matrix, side, scored, labels, numeric) for b in range(len(labels))]
                for a in range(len(labels))]
        figure.add_trace(go.Heatmap(z=_rounded(matrix), x=labels, y=labels, coloraxis="coloraxis", text=text,
                                    hovertemplate="%{text}<extra></extra>", xgap=1, ygap=1), row=1, col=index)
    figure.update_layout(layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -1, "cmax": 1,
                                            "colorbar": {"title": {"text": "r / V"}}},
                                 plot_bgcolor="white"))
    figure.update_yaxes(autorange="reversed", tickfont_size=10)
    figure.update_yaxes(showticklabels=False, col=2)
    figure.update_xaxes(tickangle=-50, tickfont_size=10)
    return to_html(figure, "associations", 160 + 22 * len(labels))


def pair_score_figure(labels: list[str], quality: dict) -> str | None:
    """sdmetrics' per-pair trend score (1 = the pair's correlation or contingency table kept exactly) over the
    columns `labels`. A pair sdmetrics did not score (its real association is below sdmetrics' threshold, or it was not
    in the sample of pairs) is drawn grey with the hover text "not scored": its value counts for nothing in
    the pair trends score, so it must not look like a perfect 1. The diagonal is left blank."""
    import plotly.graph_objects as go

    if len(labels) < 2:
        return None
    scored = _pair_lookup(quality)
    score = np.full((len(labels), len(labels)), np.nan)
    unscored = np.full_like(score, np.nan)
    text = [["" for _ in labels] for _ in labels]
    for i, j in itertools.permutations(range(len(labels)), 2):
        pair = scored.get(frozenset((labels[i], labels[j])))
        if pair is not None and pair.get("score") is not None:
            score[i, j] = pair["score"]
            real_value, synthetic_value = pair.get("real"), pair.get("synthetic")
            text[i][j] = (f"{labels[i]} × {labels[j]}<br>score {pair['score']:.3f} ({pair.get('metric', 'sdmetrics')})"
                          + (f"<br>real {real_value:.2f}, synthetic {synthetic_value:.2f}"
                             if real_value is not None and synthetic_value is not None else ""))
        else:
            unscored[i, j] = 1.0
            text[i][j] = f"{labels[i]} × {labels[j]}<br>not scored" + (
                f" (real association {pair['real']:.2f}, below sdmetrics' threshold)"
                if pair is not None and pair.get("real") is not None else " (not in the scored pairs)")
    figure = go.Figure([
        go.Heatmap(z=_rounded(score), x=labels, y=labels, text=text, hovertemplate="%{text}<extra></extra>",
                   colorscale="RdYlGn", zmin=0.5, zmax=1.0, xgap=1, ygap=1, name="scored",
                   colorbar={"title": {"text": "score"}}),
        go.Heatmap(z=unscored.tolist(), x=labels, y=labels, text=text, hovertemplate="%{text}<extra></extra>",
                   colorscale=[[0, NOT_SCORED], [1, NOT_SCORED]], showscale=False, xgap=1, ygap=1,
                   name="not scored"),
    ])
    figure.update_layout(layout(plot_bgcolor="white"))
    figure.update_yaxes(autorange="reversed", tickfont_size=10)
    figure.update_xaxes(tickangle=-50, tickfont_size=10)
    return to_html(figure, "pair-scores", 160 + 22 * len(labels))


def _pair_lookup(quality: dict) -> dict:
    return {frozenset(p["columns"]): p for p in (quality or {}).get("pairs") or []}


def _pair_hover(i: int, j: int, matrix: list, side: str, scored: dict, labels: list, numeric: list) -> str:
    a, b = labels[i], labels[j]
    if i == j:
        return a
    measure = "correlation" if numeric[i] and numeric[j] else "Cramér's V"
    pair = scored.get(frozenset((a, b)))
    verdict = (f"sdmetrics score {pair['score']:.3f}" if pair is not None and pair.get("score") is not None
               else "sdmetrics: not scored")
    value = matrix[i][j]
    shown = "n/a" if value is None else f"{value:.2f}"
    return f"{a} × {b}<br>{side} {measure} {shown}<br>{verdict}"


def _rounded(matrix) -> list:
    """Nested lists with 3 decimals and None for NaN: JSON stays small and plotly leaves None cells empty."""
    return [[None if v is None or np.isnan(v) else round(float(v), 3) for v in row] for row in matrix]


# ---------------------------------------------------------------------------------------------- privacy


def dcr_figure(privacy: dict) -> str | None:
    """`privacy.dcr_histogram` (evaluation/privacy.py): the share of synthetic and of holdout rows per distance
    to the closest training row, with the holdout's 5th percentile marked (the close_share line). Synthetic to
    holdout is in the legend, hidden at first."""
    import plotly.graph_objects as go

    histogram = privacy.get("dcr_histogram")
    if not histogram:
        return None
    edges = np.asarray(histogram["edges"], float)
    names = {"synthetic_to_train": ("synthetic → closest training row", SYNTHETIC, True),
             "holdout_to_train": ("holdout (real unseen) → closest training row", HOLDOUT, True),
             "synthetic_to_holdout": ("synthetic → closest holdout row", REAL, "legendonly")}
    traces = [go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=np.asarray(histogram["shares"][key], float), name=label,
                     marker_color=colour, opacity=0.65, visible=visible, width=edges[1] - edges[0],
                     hovertemplate=f"{label}<br>distance %{{x:.3f}}: %{{y:.1%}} of rows<extra></extra>")
              for key, (label, colour, visible) in names.items() if key in histogram["shares"]]
    figure = go.Figure(traces)
    p5 = privacy.get("holdout_p5_distance")
    if p5 is not None:
        figure.add_vline(x=p5, line_dash="dash", line_color="#a50e0e",
                         annotation_text="holdout's 5th percentile", annotation_font_size=10)
    figure.update_layout(layout(barmode="overlay", bargap=0,
                                 legend={"orientation": "h", "y": -0.3, "x": 0}))
    figure.update_xaxes(title_text="distance to the closest training row (0 = identical row)")
    figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero")
    return to_html(figure, "dcr", 360)


def attack_figure(attacks: dict | None, checks: list[dict]) -> str | None:
    """Each anonymeter attack's excess risk over the holdout with its 95 % interval, and the threshold of its
    gate check (`checks`: the gate's) on the interval's upper end."""
    import plotly.graph_objects as go

    rows = (attacks or {}).get("attacks") or []
    if not rows or (attacks or {}).get("skipped"):
        return None
    gated = {check["check"]: check for check in checks}
    labels = [a["attack"].replace("_", " ") + (f" [{a['detail']}]" if a["attack"] == "inference" else "") for a in rows]
    risk = [a.get("risk") or 0.0 for a in rows]
    high = [(a.get("ci_high") or 0.0) - r for a, r in zip(rows, risk)]
    low = [r - (a.get("ci_low") or 0.0) for a, r in zip(rows, risk)]
    limit = [(gated.get(attack_check_name(a)) or {}).get("threshold") for a in rows]
    passed = [a.get("ci_high") is not None and t is not None and a["ci_high"] <= t for a, t in zip(rows, limit)]
    figure = go.Figure([
        go.Scatter(x=labels, y=risk, mode="markers", name="risk (95 % interval)",
                   marker={"size": 11, "color": ["#1e6b34" if p else "#a50e0e" for p in passed]},
                   error_y={"type": "data", "array": high, "arrayminus": low, "visible": True},
                   hovertemplate="%{x}<br>risk %{y:.3f}<extra></extra>"),
        go.Scatter(x=labels, y=limit, mode="markers", name="threshold on the upper end",
                   marker={"symbol": "line-ew-open", "size": 36, "color": "#a50e0e", "line": {"width": 2}},
                   hovertemplate="%{x}<br>threshold %{y:.2f}<extra></extra>"),
    ])
    figure.update_layout(layout(legend={"orientation": "h", "y": 1.15, "x": 0}))
    figure.update_yaxes(title_text="excess risk over unseen rows", range=[0, 1])
    figure.update_xaxes(title_text="attack [secret column]", type="category")
    return to_html(figure, "attacks", 340)
