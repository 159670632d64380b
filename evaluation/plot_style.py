"""The report figures' shared style: colours, plotly config and layout, and how a figure becomes HTML.

Colours: real data blue, synthetic orange, holdout (real unseen rows) grey, in every figure.
"""

from __future__ import annotations

REAL, SYNTHETIC, HOLDOUT, NOT_SCORED = "#1f77b4", "#ff7f0e", "#7f7f7f", "#bdbdbd"
CONFIG = {"displaylogo": False, "responsive": True}
HISTOGRAM_BINS = 40  # bins of a histogram (column values, distances to the closest record)


def plotly_js() -> str:
    """plotly.js (minified, ~4.8 MB) to inline once in a <script> element; no CDN, no network at view time."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def layout(**extra) -> dict:
    """A small shared style; plotly's default template would add ~7 KB to every figure."""
    axis = {"gridcolor": "#eee", "linecolor": "#999", "zeroline": False, "automargin": True}
    out = {"template": {"layout": {"font": {"family": "system-ui, sans-serif", "size": 12},
                                   "paper_bgcolor": "white", "plot_bgcolor": "white",
                                   "xaxis": axis, "yaxis": axis}},
           "margin": {"l": 60, "r": 20, "t": 50, "b": 60}, "hovermode": "closest"}
    out.update(extra)
    return out


def to_html(figure, div_id: str, height: int) -> str:
    """A plotly figure as an HTML fragment (a div and the script that draws it), plotly.js not included."""
    return figure.to_html(include_plotlyjs=False, full_html=False, div_id=div_id, config=CONFIG,
                          default_height=f"{height}px", default_width="100%")
