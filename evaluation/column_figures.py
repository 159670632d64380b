"""The report's per-column figures: the share of real and of synthetic rows per value or per bin.

They name values, so they follow evaluation/disclosure.py: a value gets its own bar only when at least k
(`MIN_COUNT`) real rows hold it; the other values, real or synthetic, share one bar ("rare or unseen values").
A histogram ends in two open-ended bars ("below L", "H and above") that hold the k most extreme real values
at each end and more (a unique salary neither shows nor squashes the other bins), and a run of bins holding 1
to k - 1 real rows is merged with its neighbours into one wider bin, so no bar tells of fewer than k real
rows; synthetic rows are binned alike (a synthetic table that fails the gate may copy real rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tabtwin.evaluation.disclosure import DATETIME_LIMITS, DAY_NS, FLOAT_LIMITS, MIN_COUNT, nice_step, outer_bounds
from tabtwin.evaluation.features import numeric_values
from tabtwin.evaluation.plot_style import HISTOGRAM_BINS, REAL, SYNTHETIC, layout, to_html
from tabtwin.pipeline.keys import category_keys
from tabtwin.pipeline.schema import Schema

TOP_CATEGORIES = 15  # bars per categorical column; the rest are one "other" bar
DISCRETE_VALUES = 40  # a numeric column with at most this many values gets one bar per value
SPIKE_SHARE = 0.10  # a single value holding this share of the real rows gets its own bar beside the histogram
MAX_SPIKES = 3
NULL = "(null)"


def column_figures(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, shown: list[str],
                   quality: dict | None = None, min_count: int = MIN_COUNT) -> list[dict]:
    """One figure per column in `shown`: [{"column", "html"}]. The y axis is the share of rows (real and
    synthetic separately, so tables of different sizes compare); the x axis the column's values: one bar per
    category (the TOP_CATEGORIES most common, then "other"), per value (numeric columns with few values), or per
    histogram bin. A numeric value holding SPIKE_SHARE of the real rows or more (Adult's capital-gain is 0 in
    92 % of rows), nulls and the pooled rare values get their own bars in a left panel, so that the histogram
    of the other values on the right keeps a readable scale. `min_count`: see the module docstring."""
    columns = (quality or {}).get("columns") or {}
    figures = []
    for i, spec in enumerate(s for s in schema.columns if s.kind != "id" and s.name in shown):
        score = (columns.get(spec.name) or {}).get("score")
        title = f"{spec.name} · {(columns.get(spec.name) or {}).get('metric', 'shape')} {score:.2f}" if score is not None else spec.name
        if spec.kind in ("continuous", "datetime"):
            figure = _numeric_figure(real[spec.name], synthetic[spec.name], spec, title, min_count)
        else:
            figure = _categorical_figure(real[spec.name], synthetic[spec.name], spec.name, title, min_count)
        figures.append({"column": spec.name, "html": to_html(figure, f"column-{i}", 300)})
    return figures


def rare_label(withheld: int, min_count: int) -> str:
    """The pooled bar's label; `withheld` is the number of real values pooled (report.json's meta.disclosure)."""
    return f"rare or unseen<br>({withheld:,} real values, each under {min_count} rows)"


def _categorical_figure(real: pd.Series, synthetic: pd.Series, name: str, title: str, min_count: int):
    import plotly.graph_objects as go

    real_keys = pd.Series(category_keys(real, null=NULL))
    counts = real_keys.value_counts()
    common = set(counts.index[(counts >= min_count) | (counts.index == NULL)])
    keys = [real_keys, pd.Series(category_keys(synthetic, null=NULL))]
    rare = [~k.isin(common) for k in keys]
    shares = pd.DataFrame({side: k[~r].value_counts() / max(len(k), 1) for side, k, r in zip(("real", "synthetic"), keys, rare)})
    shares = shares.fillna(0.0).sort_values("real", ascending=False, kind="stable")
    if len(shares) > TOP_CATEGORIES:  # the most common on either side, in the real order; the rest as one bar
        top = shares.max(axis=1).nlargest(TOP_CATEGORIES - 1).index
        rest = shares.drop(index=top)
        shares = pd.concat([shares.loc[shares.index.isin(top)],
                            pd.DataFrame([rest.sum()], index=[f"other ({len(rest)} values)"])])
    if any(r.any() for r in rare):
        withheld = int((counts[counts.index != NULL] < min_count).sum())
        pooled = {side: float(r.mean()) for side, r in zip(("real", "synthetic"), rare)}
        shares = pd.concat([shares, pd.DataFrame([pooled], index=[rare_label(withheld, min_count)])])
    labels = [str(v) for v in shares.index]
    figure = go.Figure([
        go.Bar(x=labels, y=shares[side], name=side, marker_color=colour,
               hovertemplate=f"{name} = %{{x}}<br>{side}: %{{y:.2%}} of rows<extra></extra>")
        for side, colour in (("real", REAL), ("synthetic", SYNTHETIC))])
    figure.update_layout(layout(title={"text": title, "font": {"size": 13}}, barmode="group", bargap=0.15,
                                legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}))
    figure.update_xaxes(title_text=f"{name} (value)", type="category", tickangle=-40)
    figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero")
    return figure


def _numeric_figure(real: pd.Series, synthetic: pd.Series, spec, title: str, min_count: int):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    a, b = numeric_values(real, spec), numeric_values(synthetic, spec)
    n_a, n_b = max(len(a), 1), max(len(b), 1)
    distinct = a.dropna().value_counts()
    common = distinct[distinct >= min_count]
    few_values = len(distinct) <= DISCRETE_VALUES
    if few_values:
        values = np.union1d(common.index.to_numpy(), b.dropna().unique())
        if len(values) > 2 * DISCRETE_VALUES:  # the synthetic side spreads: fall back to bins
            few_values = False
    # Decided after the fallback: a real column with few values but a spike (a small table's capital-gain) that
    # falls back to bins still shows its spike apart, not inside the first bin.
    spikes = [] if few_values else [v for v, c in common.head(MAX_SPIKES).items() if c / n_a >= SPIKE_SHARE]
    special = [(_value_text(v, spec), float((a == v).sum() / n_a), float((b == v).sum() / n_b)) for v in spikes]
    if a.isna().any() or b.isna().any():
        special.append((NULL, float(a.isna().mean()), float(b.isna().mean())))
    rest_a, rest_b = a.dropna()[~a.dropna().isin(spikes)], b.dropna()[~b.dropna().isin(spikes)]
    widths = None
    if few_values:
        x = common.index.sort_values().to_numpy()
        y_a = rest_a.value_counts().reindex(x, fill_value=0).to_numpy() / n_a
        y_b = rest_b.value_counts().reindex(x, fill_value=0).to_numpy() / n_b
        ranges = [_value_text(v, spec) for v in x]
        pooled = (float((~rest_a.isin(x)).sum() / n_a), float((~rest_b.isin(x)).sum() / n_b))
        if pooled[0] or pooled[1]:
            special.append((rare_label(len(distinct) - len(common), min_count), *pooled))
    else:
        edges, counts_a, counts_b, ranges = _histogram(rest_a.to_numpy(float), rest_b.to_numpy(float), spec, min_count)
        y_a, y_b = counts_a / n_a, counts_b / n_b
        x, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    if spec.kind == "datetime":
        x = pd.to_datetime(np.clip(x, *DATETIME_LIMITS).astype("int64")).astype(str).tolist()
        widths = None if widths is None else widths / 1e6  # a date axis counts milliseconds
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
    for offset, (side, colour, y) in enumerate((("real", REAL, y_a), ("synthetic", SYNTHETIC, y_b))):
        # Bins of unequal width (merged sparse bins) are drawn at their width, real left and synthetic right.
        place = {} if widths is None else {"width": 0.475 * widths, "offset": (offset - 1) * 0.475 * widths}
        figure.add_trace(go.Bar(x=x, y=y, name=side, marker_color=colour, customdata=ranges, offsetgroup=side,
                                hovertemplate=f"{spec.name} %{{customdata}}<br>{side}: %{{y:.2%}} of rows<extra></extra>",
                                **place), row=1, col=col)
    figure.update_xaxes(title_text=f"{spec.name} ({'the other values' if special else 'value'})", row=1, col=col)
    figure.update_yaxes(title_text="" if special else "share of rows", tickformat=".1%", rangemode="tozero", row=1, col=col)
    figure.update_layout(layout(title={"text": title, "font": {"size": 13}}, barmode="group", bargap=0.05,
                                legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}))
    return figure


def _histogram(a: np.ndarray, b: np.ndarray, spec, min_count: int):
    """(edges, real counts, synthetic counts, range labels) of the histogram's bars.

    With at least 2k real values, HISTOGRAM_BINS bins of a round step span the grid points just inside the k-th
    smallest and the k-th largest real value; the values beyond, real and synthetic, are two open-ended end
    bars ("below L", "H and above") of at least k real rows each, so an outlier (a unique salary) neither
    squashes the histogram nor shows. With fewer, the bins span the real range, its ends rounded outward where
    rare (`disclosure.outer_bounds`), widened to synthetic values outside it. Runs of bins with 1 to k - 1 real
    rows are then merged (`merge_sparse`)."""
    unit = DAY_NS if spec.kind == "datetime" else None
    real = np.sort(a)
    body = None
    if len(real) >= 2 * min_count and real[min_count - 1] < real[-min_count]:
        inner, outer = real[min_count - 1], real[-min_count]
        step = _step((outer - inner) / HISTOGRAM_BINS, unit)
        low, high = (np.floor(inner / step) + 1) * step, (np.ceil(outer / step) - 1) * step
        body = (low, high, step) if low < high else None
    if body:
        low, high, step = body
        edges = np.arange(low, high + step / 2, step)
    else:
        # The axis spans at most what the type holds (floats: half of it each side, so that its width is
        # finite); values past it, such as a rare extreme that left an end of `outer_bounds` open, count in the
        # end bins.
        limits = DATETIME_LIMITS if unit else (FLOAT_LIMITS[0] / 2, FLOAT_LIMITS[1] / 2)
        bounds = outer_bounds(real, min_count, unit=unit, limits=limits)
        low, high = bounds if bounds else ((float(b.min()), float(b.max())) if len(b) else (0.0, 1.0))
        if len(b):  # synthetic values outside the real range are no real values: the axis may show them
            low, high = min(low, float(b.min())), max(high, float(b.max()))
        low, high = np.clip([low, high], *limits)
        edges = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
    counts = [np.histogram(v[(v >= low) & (v < high)] if body else np.clip(v, low, high), bins=edges)[0]
              for v in (a, b)]
    starts = [start for start, _ in merge_sparse(counts[0], min_count)]
    edges, counts = np.r_[edges[starts], edges[-1]], [np.add.reduceat(c, starts) for c in counts]
    labels = [f"{_value_text(lo, spec)} to {_value_text(hi, spec)}" for lo, hi in zip(edges[:-1], edges[1:])]
    if body:  # the open-ended end bars, drawn one step wide beyond the grid
        below, above = [[int((v < low).sum()) for v in (a, b)], [int((v >= high).sum()) for v in (a, b)]]
        edges = np.r_[low - step, edges, high + step]
        counts = [np.r_[lo, c, hi] for lo, c, hi in zip(below, counts, above)]
        labels = [f"below {_value_text(low, spec)}", *labels, f"{_value_text(high, spec)} and above"]
    return edges, counts[0], counts[1], labels


def _step(width: float, unit: float | None) -> float:
    return nice_step(width / unit) * unit if unit and width >= unit else nice_step(width)


def merge_sparse(counts: np.ndarray, min_count: int) -> list[tuple[int, int]]:
    """Consecutive bins grouped so that every group holds 0 or at least `min_count` (real) rows: [(start, stop)].

    Scans left to right, closing a group once it holds k rows (or when it is empty and the next bin is not);
    a sparse group left at the end joins the one before it. A table with fewer than k rows in all gets one
    group."""
    groups: list[list[int]] = []  # [start, stop, rows]
    start, total = 0, 0
    for i, count in enumerate(counts):
        if total == 0 and count and i > start:  # an empty run ends where rows begin
            groups.append([start, i, 0])
            start = i
        total += int(count)
        if total >= min_count:
            groups.append([start, i + 1, total])
            start, total = i + 1, 0
    if start < len(counts):
        groups.append([start, len(counts), total])
    if total:  # a sparse tail: merged with everything back to the last group holding rows
        held = [j for j, group in enumerate(groups[:-1]) if group[2]]
        first = held[-1] if held else 0
        groups[first:] = [[groups[first][0], len(counts), sum(g[2] for g in groups[first:])]]
    return [(g[0], g[1]) for g in groups]


def _value_text(value, spec) -> str:
    if spec.kind == "datetime":
        return str(pd.Timestamp(int(np.clip(value, *DATETIME_LIMITS))))  # as float64, an end may round past the range
    value = float(value)
    return f"{value:.0f}" if value.is_integer() else f"{value:.4g}"
