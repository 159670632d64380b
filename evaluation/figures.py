"""The report's interactive figures: plotly, drawn in the browser from small precomputed tables.

Each `*_figure` function returns an HTML fragment (a div and the script that draws it) or None when there is
nothing to draw; the page must load plotly.js once before them (`plotly_js()`, inlined: the report is one
self-contained file that needs no network when viewed). The figures carry shares and bin edges, not rows, so
a report stays small whatever the table's size: Adult's 15 column figures, association matrices and privacy
figures add about 0.3 MB to plotly.js's 4.8 MB. The per-column figures are built in
evaluation/column_figures.py (they name real values, so they follow evaluation/disclosure.py); the pair and
privacy figures here carry column names and numbers only. Style and colours: evaluation/plot_style.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from tabtwin.evaluation.column_figures import DISCRETE_VALUES, column_figures  # noqa: F401 (the report's figures)
from tabtwin.evaluation.features import numeric_values
from tabtwin.evaluation.plot_style import (HISTOGRAM_BINS, HOLDOUT, NOT_SCORED, REAL, SYNTHETIC, layout,  # noqa: F401
                                           plotly_js, to_html)
from tabtwin.pipeline.keys import category_keys
from tabtwin.pipeline.schema import Schema

ASSOCIATION_ROWS = 5_000  # rows per side for the association matrices (seeded sample; 30 columns in ~2 s)
ASSOCIATION_BINS = 10  # numeric columns are cut into this many equal-width bins for Cramér's V, as sdmetrics does
ASSOCIATION_CATEGORIES = 50  # categories kept per column for Cramér's V; rarer ones are grouped


# ---------------------------------------------------------------------------------------------- pairs


def association_figure(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, names: list[str],
                       quality: dict, seed: int = 0) -> str | None:
    """Real and synthetic association matrices side by side over `names`: Pearson correlation for pairs of
    numeric columns (-1 to 1), Cramér's V for the others (0 to 1; numeric columns cut into ASSOCIATION_BINS
    equal-width bins of the real range, nulls a category of their own), on ASSOCIATION_ROWS seeded rows per
    side. Every pair has a value here, whether or not sdmetrics scored it; the hover text says which."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    specs = [s for s in schema.columns if s.name in names and s.kind != "id"]
    if len(specs) < 2:
        return None
    matrices = association_matrices(real, synthetic, specs, seed)
    labels = [s.name for s in specs]
    scored = _pair_lookup(quality)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("real", "synthetic"), horizontal_spacing=0.08)
    for index, (side, matrix) in enumerate(zip(("real", "synthetic"), matrices), start=1):
        text = [[_pair_hover(a, b, matrix, side, scored, specs) for b in range(len(specs))] for a in range(len(specs))]
        figure.add_trace(go.Heatmap(z=_rounded(matrix), x=labels, y=labels, coloraxis="coloraxis", text=text,
                                    hovertemplate="%{text}<extra></extra>", xgap=1, ygap=1), row=1, col=index)
    figure.update_layout(layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -1, "cmax": 1,
                                            "colorbar": {"title": {"text": "r / V"}}},
                                 plot_bgcolor="white"))
    figure.update_yaxes(autorange="reversed", tickfont_size=10)
    figure.update_yaxes(showticklabels=False, col=2)
    figure.update_xaxes(tickangle=-50, tickfont_size=10)
    return to_html(figure, "associations", 160 + 22 * len(specs))


def pair_score_figure(schema: Schema, names: list[str], quality: dict) -> str | None:
    """sdmetrics' per-pair trend score (1 = the pair's correlation or contingency table kept exactly) over
    `names`. A pair sdmetrics did not score (its real association is below sdmetrics' threshold, or it was not
    in the sample of pairs) is drawn grey with the hover text "not scored": its value counts for nothing in
    the pair trends score, so it must not look like a perfect 1. The diagonal is left blank."""
    import plotly.graph_objects as go

    specs = [s for s in schema.columns if s.name in names and s.kind != "id"]
    if len(specs) < 2:
        return None
    labels = [s.name for s in specs]
    scored = _pair_lookup(quality)
    score = np.full((len(specs), len(specs)), np.nan)
    unscored = np.full_like(score, np.nan)
    text = [["" for _ in specs] for _ in specs]
    for i, j in itertools.permutations(range(len(specs)), 2):
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
    return to_html(figure, "pair-scores", 160 + 22 * len(specs))


def association_matrices(real: pd.DataFrame, synthetic: pd.DataFrame, specs: list, seed: int = 0) -> list[np.ndarray]:
    """[real, synthetic] square matrices over `specs` (NaN on the diagonal); see `association_figure`."""
    frames = [_sample(frame, ASSOCIATION_ROWS, seed) for frame in (real, synthetic)]
    numeric = [s.kind in ("continuous", "datetime") for s in specs]
    values = [[numeric_values(frame[s.name], s) if is_num else None for s, is_num in zip(specs, numeric)]
              for frame in frames]
    codes = _codes(frames, specs, values)
    out = []
    for side in range(2):
        matrix = np.full((len(specs), len(specs)), np.nan)
        for i, j in itertools.combinations(range(len(specs)), 2):
            if numeric[i] and numeric[j]:
                value = values[side][i].corr(values[side][j])
            else:
                value = _cramers_v(*codes[side][i], *codes[side][j])
            matrix[i, j] = matrix[j, i] = value
        out.append(matrix)
    return out


def _codes(frames, specs, values) -> list[list[tuple[np.ndarray, int]]]:
    """Per frame and column, (integer codes, number of codes), with one vocabulary per column across frames."""
    out: list[list] = [[], []]
    for index, spec in enumerate(specs):
        if values[0][index] is not None:
            real = values[0][index].dropna()
            low, high = (float(real.min()), float(real.max())) if len(real) else (0.0, 1.0)
            edges = np.linspace(low, high if high > low else low + 1.0, ASSOCIATION_BINS + 1)[1:-1]
            for side in range(2):
                v = values[side][index]
                code = np.where(v.isna(), ASSOCIATION_BINS, np.searchsorted(edges, v.fillna(low), side="right"))
                out[side].append((code.astype(np.int64), ASSOCIATION_BINS + 1))
            continue
        keys = [pd.Series(category_keys(frame[spec.name], null="(null)")) for frame in frames]
        counts = pd.concat(keys, ignore_index=True).value_counts()
        vocabulary = {key: code for code, key in enumerate(counts.index[:ASSOCIATION_CATEGORIES - 1])}
        for side in range(2):
            out[side].append((keys[side].map(vocabulary).fillna(len(vocabulary)).to_numpy(np.int64), len(vocabulary) + 1))
    return out


def _cramers_v(a: np.ndarray, ka: int, b: np.ndarray, kb: int) -> float:
    """Cramér's V of two code arrays: sqrt(chi² / n / (min(rows, columns) - 1)) over the observed categories."""
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(float)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    n = table.sum()
    k = min(table.shape) - 1
    if k < 1 or n == 0:
        return 0.0
    expected = np.outer(table.sum(1), table.sum(0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(min(chi2 / n / k, 1.0)))


def _pair_lookup(quality: dict) -> dict:
    return {frozenset(p["columns"]): p for p in (quality or {}).get("pairs") or []}


def _pair_hover(i: int, j: int, matrix: np.ndarray, side: str, scored: dict, specs) -> str:
    a, b = specs[i], specs[j]
    if i == j:
        return a.name
    measure = "correlation" if a.kind in ("continuous", "datetime") and b.kind in ("continuous", "datetime") else "Cramér's V"
    pair = scored.get(frozenset((a.name, b.name)))
    verdict = (f"sdmetrics score {pair['score']:.3f}" if pair is not None and pair.get("score") is not None
               else "sdmetrics: not scored")
    value = matrix[i, j]
    shown = "n/a" if np.isnan(value) else f"{value:.2f}"
    return f"{a.name} × {b.name}<br>{side} {measure} {shown}<br>{verdict}"


def _rounded(matrix: np.ndarray) -> list:
    """Nested lists with 3 decimals and None for NaN: JSON stays small and plotly leaves None cells empty."""
    return [[None if np.isnan(v) else round(float(v), 3) for v in row] for row in matrix]


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


# ---------------------------------------------------------------------------------------------- privacy


def dcr_figure(privacy: dict) -> str | None:
    """Histograms (share of rows) of each synthetic row's and each holdout row's distance to its closest
    training row, on shared bins up to the 99.5th percentile (farther ones in the last bin), with the holdout's
    5th percentile marked (the close_share line). Synthetic to holdout is in the legend, hidden at first."""
    import plotly.graph_objects as go

    distances = {name: np.asarray(values, dtype=float) for name, values in (privacy.get("distances") or {}).items() if values}
    if "synthetic_to_train" not in distances or "holdout_to_train" not in distances:
        return None
    both = np.r_[distances["synthetic_to_train"], distances["holdout_to_train"]]
    top = float(np.nanquantile(both, 0.995)) or 1.0
    edges = np.linspace(0.0, top, HISTOGRAM_BINS + 1)
    names = {"synthetic_to_train": ("synthetic → closest training row", SYNTHETIC, True),
             "holdout_to_train": ("holdout (real unseen) → closest training row", HOLDOUT, True),
             "synthetic_to_holdout": ("synthetic → closest holdout row", REAL, "legendonly")}
    traces = []
    for key, (label, colour, visible) in names.items():
        if key not in distances:
            continue
        values = np.clip(distances[key], 0.0, top)
        counts = np.histogram(values, bins=edges)[0] / max(len(values), 1)
        traces.append(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, name=label, marker_color=colour,
                             opacity=0.65, visible=visible, width=edges[1] - edges[0],
                             hovertemplate=f"{label}<br>distance %{{x:.3f}}: %{{y:.1%}} of rows<extra></extra>"))
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


def attack_figure(attacks: dict | None, thresholds: dict[str, float]) -> str | None:
    """Each anonymeter attack's excess risk over the holdout with its 95 % interval, and the gate's threshold on
    the interval's upper end (`thresholds`: {"singling_out": ..., "linkability": ..., "inference": ...})."""
    import plotly.graph_objects as go

    rows = (attacks or {}).get("attacks") or []
    if not rows or (attacks or {}).get("skipped"):
        return None
    labels = [a["attack"].replace("_", " ") + (f" [{a['detail']}]" if a["attack"] == "inference" else "") for a in rows]
    risk = [a.get("risk") or 0.0 for a in rows]
    high = [(a.get("ci_high") or 0.0) - r for a, r in zip(rows, risk)]
    low = [r - (a.get("ci_low") or 0.0) for a, r in zip(rows, risk)]
    limit = [thresholds.get(a["attack"]) for a in rows]
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
