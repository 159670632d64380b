"""The report's per-column figures, drawn from `fidelity.column_shares` (evaluation/column_shares.py): the share
of real and of synthetic rows per value or per bin, single values (spikes, nulls, pooled rare values) in a
panel of their own on the left."""

from __future__ import annotations

import numpy as np

from tabtwin.evaluation.plot_style import REAL, SYNTHETIC, layout, to_html

SIDES = (("real", REAL), ("synthetic", SYNTHETIC))


def column_figures(column_shares: dict | None, quality: dict | None = None) -> list[dict]:
    """One figure per table of `column_shares`: [{"column", "html"}], titled with the column's shape score in
    `quality` (sdmetrics' QualityReport) where it has one."""
    scores = (quality or {}).get("columns") or {}
    figures = []
    for i, table in enumerate((column_shares or {}).get("columns") or []):
        name, score = table["column"], scores.get(table["column"]) or {}
        title = f"{name} · {score.get('metric', 'shape')} {score['score']:.2f}" if score.get("score") is not None else name
        draw = _numeric_figure if "x" in table["bars"] else _categorical_figure
        figures.append({"column": name, "html": to_html(draw(table, title), f"column-{i}", 300)})
    return figures


def _categorical_figure(table: dict, title: str):
    import plotly.graph_objects as go

    name, bars = table["column"], table["bars"]
    figure = go.Figure([
        go.Bar(x=bars["label"], y=np.asarray(bars[side], float), name=side, marker_color=colour,
               hovertemplate=f"{name} = %{{x}}<br>{side}: %{{y:.2%}} of rows<extra></extra>")
        for side, colour in SIDES])
    figure.update_layout(layout(title={"text": title, "font": {"size": 13}}, barmode="group", bargap=0.15,
                                legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}))
    figure.update_xaxes(title_text=f"{name} (value)", type="category", tickangle=-40)
    figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero")
    return figure


def _numeric_figure(table: dict, title: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    name, bars, singles = table["column"], table["bars"], table["singles"]
    x = bars["x"] if table["kind"] == "datetime" else np.asarray(bars["x"], float)
    widths = None if bars["width"] is None else np.asarray(bars["width"], float)
    if singles:
        figure = make_subplots(rows=1, cols=2, column_widths=[0.2, 0.8], horizontal_spacing=0.12)
        col = 2
        for side, colour in SIDES:
            figure.add_trace(go.Bar(x=singles["label"], y=singles[side], name=side, marker_color=colour,
                                    showlegend=False, offsetgroup=side,
                                    hovertemplate=f"{name} = %{{x}}<br>{side}: %{{y:.2%}} of rows<extra></extra>"),
                             row=1, col=1)
        figure.update_xaxes(type="category", title_text="single values", row=1, col=1)
        figure.update_yaxes(title_text="share of rows", tickformat=".0%", rangemode="tozero", row=1, col=1)
    else:
        figure, col = make_subplots(rows=1, cols=1), 1
    for offset, (side, colour) in enumerate(SIDES):
        # Bins of unequal width (merged sparse bins) are drawn at their width, real left and synthetic right.
        place = {} if widths is None else {"width": 0.475 * widths, "offset": (offset - 1) * 0.475 * widths}
        figure.add_trace(go.Bar(x=x, y=np.asarray(bars[side], float), name=side, marker_color=colour,
                                customdata=bars["label"], offsetgroup=side,
                                hovertemplate=f"{name} %{{customdata}}<br>{side}: %{{y:.2%}} of rows<extra></extra>",
                                **place), row=1, col=col)
    figure.update_xaxes(title_text=f"{name} ({'the other values' if singles else 'value'})", row=1, col=col)
    figure.update_yaxes(title_text="" if singles else "share of rows", tickformat=".1%", rangemode="tozero", row=1, col=col)
    figure.update_layout(layout(title={"text": title, "font": {"size": 13}}, barmode="group", bargap=0.05,
                                legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"}))
    return figure
