"""The report's interactive figures: plotly, drawn in the browser from small precomputed tables.

Each `*_figure` function returns an HTML fragment (a div and the script that draws it) or None when there is
nothing to draw; the page must load plotly.js once before them (`plotly_js()`, inlined: the report is one
self-contained file that needs no network when viewed). The figures carry shares and bin edges, not rows, so
a report stays small whatever the table's size: Adult's 15 column figures, association matrices and privacy
figures add about 0.3 MB to plotly.js's 4.8 MB.

Colours: real data blue, synthetic orange, holdout (real unseen rows) grey, in every figure.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from tabtwin.evaluation.features import numeric_values
from tabtwin.pipeline.keys import category_keys
from tabtwin.pipeline.schema import Schema

REAL, SYNTHETIC, HOLDOUT, NOT_SCORED = "#1f77b4", "#ff7f0e", "#7f7f7f", "#bdbdbd"
TOP_CATEGORIES = 15  # bars per categorical column; the rest are one "other" bar
HISTOGRAM_BINS = 40
DISCRETE_VALUES = 40  # a numeric column with at most this many values gets one bar per value
SPIKE_SHARE = 0.10  # a single value holding this share of the real rows gets its own bar beside the histogram
MAX_SPIKES = 3
ASSOCIATION_ROWS = 5_000  # rows per side for the association matrices (seeded sample; 30 columns in ~2 s)
ASSOCIATION_BINS = 10  # numeric columns are cut into this many equal-width bins for Cramér's V, as sdmetrics does
ASSOCIATION_CATEGORIES = 50  # categories kept per column for Cramér's V; rarer ones are grouped
CONFIG = {"displaylogo": False, "responsive": True}


def plotly_js() -> str:
    """plotly.js (minified, ~4.8 MB) to inline once in a <script> element; no CDN, no network at view time."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _layout(**extra) -> dict:
    """A small shared style; plotly's default template would add ~7 KB to every figure."""
    axis = {"gridcolor": "#eee", "linecolor": "#999", "zeroline": False, "automargin": True}
    layout = {"template": {"layout": {"font": {"family": "system-ui, sans-serif", "size": 12},
                                      "paper_bgcolor": "white", "plot_bgcolor": "white",
                                      "xaxis": axis, "yaxis": axis}},
              "margin": {"l": 60, "r": 20, "t": 50, "b": 60}, "hovermode": "closest"}
    layout.update(extra)
    return layout


def _html(figure, div_id: str, height: int) -> str:
    return figure.to_html(include_plotlyjs=False, full_html=False, div_id=div_id, config=CONFIG,
                          default_height=f"{height}px", default_width="100%")


# ---------------------------------------------------------------------------------------------- columns


def column_figures(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, shown: list[str],
                   quality: dict | None = None) -> list[dict]:
    """One figure per column in `shown`: [{"column", "html"}]. The y axis is the share of rows (real and
    synthetic separately, so tables of different sizes compare); the x axis the column's values: one bar per
    category (the TOP_CATEGORIES most common, then "other"), per value (numeric columns with few values), or per
    histogram bin. A numeric value holding SPIKE_SHARE of the real rows or more (Adult's capital-gain is 0 in
    92 % of rows), and nulls, get their own bars in a left panel, so that the histogram of the other values on
    the right keeps a readable scale."""
    columns = (quality or {}).get("columns") or {}
    figures = []
    for i, spec in enumerate(s for s in schema.columns if s.kind != "id" and s.name in shown):
        score = (columns.get(spec.name) or {}).get("score")
        title = f"{spec.name} · {(columns.get(spec.name) or {}).get('metric', 'shape')} {score:.2f}" if score is not None else spec.name
        if spec.kind in ("continuous", "datetime"):
            figure = _numeric_figure(real[spec.name], synthetic[spec.name], spec, title)
        else:
            figure = _categorical_figure(real[spec.name], synthetic[spec.name], spec.name, title)
        figures.append({"column": spec.name, "html": _html(figure, f"column-{i}", 300)})
    return figures


def _categorical_figure(real: pd.Series, synthetic: pd.Series, name: str, title: str):
    import plotly.graph_objects as go

    shares = pd.DataFrame({"real": _shares(real), "synthetic": _shares(synthetic)}).fillna(0.0)
    shares = shares.sort_values("real", ascending=False, kind="stable")
    if len(shares) > TOP_CATEGORIES:  # the most common on either side, in the real order; the rest as one bar
        top = shares.max(axis=1).nlargest(TOP_CATEGORIES - 1).index
        rest = shares.drop(index=top)
        shares = pd.concat([shares.loc[shares.index.isin(top)],
                            pd.DataFrame([rest.sum()], index=[f"other ({len(rest)} values)"])])
    labels = [str(v) for v in shares.index]
    figure = go.Figure([
        go.Bar(x=labels, y=shares[side], name=side, marker_color=colour,
               hovertemplate=f"{name} = %{{x}}<br>{side}: %{{y:.2%}} of rows<extra></extra>")
        for side, colour in (("real", REAL), ("synthetic", SYNTHETIC))])
    figure.update_layout(_layout(title={"text": title, "font": {"size": 13}}, barmode="group", bargap=0.15,
                                 legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}))
    figure.update_xaxes(title_text=f"{name} (value)", type="category", tickangle=-40)
    figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero")
    return figure


def _numeric_figure(real: pd.Series, synthetic: pd.Series, spec, title: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    a, b = numeric_values(real, spec), numeric_values(synthetic, spec)
    n_a, n_b = max(len(a), 1), max(len(b), 1)
    present = a.dropna()
    distinct = present.value_counts()
    few_values = len(distinct) <= DISCRETE_VALUES
    if few_values:
        values = np.union1d(distinct.index.to_numpy(), b.dropna().unique())
        if len(values) > 2 * DISCRETE_VALUES:  # the synthetic side spreads: fall back to bins
            few_values = False
    # Decided after the fallback: a real column with few values but a spike (a small table's capital-gain) that
    # falls back to bins still shows its spike apart, not inside the first bin.
    spikes = [] if few_values else [v for v, c in distinct.head(MAX_SPIKES).items() if c / n_a >= SPIKE_SHARE]
    special = [(_value_text(v, spec), float((a == v).sum() / n_a), float((b == v).sum() / n_b)) for v in spikes]
    if a.isna().any() or b.isna().any():
        special.append(("(null)", float(a.isna().mean()), float(b.isna().mean())))
    rest_a, rest_b = a.dropna()[~a.dropna().isin(spikes)], b.dropna()[~b.dropna().isin(spikes)]
    if few_values:
        x = values
        y_a = rest_a.value_counts().reindex(values, fill_value=0).to_numpy() / n_a
        y_b = rest_b.value_counts().reindex(values, fill_value=0).to_numpy() / n_b
        ranges = [_value_text(v, spec) for v in values]
    else:
        both = np.r_[rest_a.to_numpy(), rest_b.to_numpy()]
        low, high = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
        edges = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
        y_a = np.histogram(rest_a, bins=edges)[0] / n_a
        y_b = np.histogram(rest_b, bins=edges)[0] / n_b
        x = (edges[:-1] + edges[1:]) / 2
        ranges = [f"{_value_text(lo, spec)} to {_value_text(hi, spec)}" for lo, hi in zip(edges[:-1], edges[1:])]
    if spec.kind == "datetime":
        x = pd.to_datetime(np.asarray(x, dtype="int64")).astype(str).tolist()
    if special:
        figure = make_subplots(rows=1, cols=2, column_widths=[0.2, 0.8], horizontal_spacing=0.12)
        col = 2
        for side, colour, index in (("real", REAL, 1), ("synthetic", SYNTHETIC, 2)):
            figure.add_trace(go.Bar(x=[s[0] for s in special], y=[s[index] for s in special], name=side,
                                    marker_color=colour, showlegend=False, offsetgroup=side,
                                    hovertemplate=f"{spec.name} = %{{x}}<br>{side}: %{{y:.2%}} of rows<extra></extra>"),
                             row=1, col=1)
        figure.update_xaxes(type="category", title_text="single values", row=1, col=1)
        figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero", row=1, col=1)
    else:
        figure, col = make_subplots(rows=1, cols=1), 1
    for side, colour, y in (("real", REAL, y_a), ("synthetic", SYNTHETIC, y_b)):
        figure.add_trace(go.Bar(x=x, y=y, name=side, marker_color=colour, customdata=ranges, offsetgroup=side,
                                hovertemplate=f"{spec.name} %{{customdata}}<br>{side}: %{{y:.2%}} of rows<extra></extra>"),
                         row=1, col=col)
    figure.update_xaxes(title_text=f"{spec.name} ({'the other values' if special else 'value'})", row=1, col=col)
    figure.update_yaxes(title_text="" if special else "share of rows", tickformat=".1%", rangemode="tozero", row=1, col=col)
    figure.update_layout(_layout(title={"text": title, "font": {"size": 13}}, barmode="group", bargap=0.05,
                                 legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}))
    return figure


def _value_text(value, spec) -> str:
    if spec.kind == "datetime":
        return str(pd.Timestamp(int(value)))
    value = float(value)
    return f"{value:.0f}" if value.is_integer() else f"{value:.4g}"


def _shares(series: pd.Series) -> pd.Series:
    return pd.Series(category_keys(series, null="(null)")).value_counts(normalize=True)


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
    figure.update_layout(_layout(coloraxis={"colorscale": "RdBu", "reversescale": True, "cmin": -1, "cmax": 1,
                                            "colorbar": {"title": {"text": "r / V"}}},
                                 plot_bgcolor="white"))
    figure.update_yaxes(autorange="reversed", tickfont_size=10)
    figure.update_yaxes(showticklabels=False, col=2)
    figure.update_xaxes(tickangle=-50, tickfont_size=10)
    return _html(figure, "associations", 160 + 22 * len(specs))


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
    figure.update_layout(_layout(plot_bgcolor="white"))
    figure.update_yaxes(autorange="reversed", tickfont_size=10)
    figure.update_xaxes(tickangle=-50, tickfont_size=10)
    return _html(figure, "pair-scores", 160 + 22 * len(specs))


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
    figure.update_layout(_layout(barmode="overlay", bargap=0,
                                 legend={"orientation": "h", "y": -0.3, "x": 0}))
    figure.update_xaxes(title_text="distance to the closest training row (0 = identical row)")
    figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero")
    return _html(figure, "dcr", 360)


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
    figure.update_layout(_layout(legend={"orientation": "h", "y": 1.15, "x": 0}))
    figure.update_yaxes(title_text="excess risk over unseen rows", range=[0, 1])
    figure.update_xaxes(title_text="attack [secret column]", type="category")
    return _html(figure, "attacks", 340)
