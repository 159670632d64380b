"""The share of real and of synthetic rows per value or per bin of each column: what the report's column figures
plot, kept in report.json under `fidelity.column_shares`.

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
from tabtwin.evaluation.plot_style import HISTOGRAM_BINS
from tabtwin.pipeline.keys import category_keys
from tabtwin.pipeline.schema import Schema

# Figures show at most this many columns (a 300-column table would need a 300-inch figure): the worst first.
FIGURE_COLUMNS = 30
TOP_CATEGORIES = 15  # bars per categorical column; the rest are one "other" bar
DISCRETE_VALUES = 40  # a numeric column with at most this many values gets one bar per value
SPIKE_SHARE = 0.10  # a single value holding this share of the real rows gets its own bar beside the histogram
MAX_SPIKES = 3
NULL = "(null)"


def column_shares(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, quality: dict | None = None,
                  shown: list[str] | None = None, min_count: int = MIN_COUNT) -> dict:
    """{"modelled": number of modelled columns, "columns": one table per shown column}; `shown` (None: the
    `worst_columns` by `quality`'s shape scores) in table order.

    A table is {"column", "kind", "bars": {"label", "real", "synthetic"}, "singles"}: the share of rows
    (real and synthetic separately, so tables of different sizes compare) per category (the TOP_CATEGORIES
    most common, then "other"), per value (numeric columns with few values) or per histogram bin. A numeric
    column's bars also hold "x" (bin centres, values, or ISO dates) and "width" (bin widths in x's unit,
    milliseconds for dates; None for one bar per value), their labels the bins' ranges. A numeric value
    holding SPIKE_SHARE of the real rows or more (Adult's capital-gain is 0 in 92 % of rows), nulls and the
    pooled rare values are `singles` ({"label", "real", "synthetic"}, or None), drawn apart so that the
    histogram of the other values keeps a readable scale. `min_count`: see the module docstring."""
    shown = worst_columns(quality or {}, schema) if shown is None else shown
    tables = []
    for spec in (s for s in schema.columns if s.kind != "id" and s.name in shown):
        share = _numeric if spec.kind in ("continuous", "datetime") else _categorical
        tables.append({"column": spec.name, "kind": spec.kind,
                       **share(real[spec.name], synthetic[spec.name], spec, min_count)})
    return {"modelled": sum(spec.kind != "id" for spec in schema.columns), "columns": tables}


def worst_columns(quality: dict, schema: Schema) -> list[str]:
    """The modelled columns, or past FIGURE_COLUMNS the ones with the lowest shape scores, in table order."""
    names = [spec.name for spec in schema.columns if spec.kind != "id"]
    if len(names) <= FIGURE_COLUMNS:
        return names
    scores = {name: (entry.get("score") if entry.get("score") is not None else 1.0)
              for name, entry in (quality.get("columns") or {}).items()}
    worst = sorted(names, key=lambda name: scores.get(name, 1.0))[:FIGURE_COLUMNS]
    return [name for name in names if name in worst]


def rare_label(withheld: int, min_count: int) -> str:
    """The pooled bar's label; `withheld` is the number of real values pooled (report.json's meta.disclosure)."""
    return f"rare or unseen<br>({withheld:,} real values, each under {min_count} rows)"


def _shares(labels, real, synthetic, **more) -> dict:
    return {"label": [str(label) for label in labels], **more,
            "real": [float(v) for v in real], "synthetic": [float(v) for v in synthetic]}


def _categorical(real: pd.Series, synthetic: pd.Series, spec, min_count: int) -> dict:
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
    return {"bars": _shares(shares.index, shares["real"], shares["synthetic"]), "singles": None}


def _numeric(real: pd.Series, synthetic: pd.Series, spec, min_count: int) -> dict:
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
    singles = [(_value_text(v, spec), float((a == v).sum() / n_a), float((b == v).sum() / n_b)) for v in spikes]
    if a.isna().any() or b.isna().any():
        singles.append((NULL, float(a.isna().mean()), float(b.isna().mean())))
    rest_a, rest_b = a.dropna()[~a.dropna().isin(spikes)], b.dropna()[~b.dropna().isin(spikes)]
    widths = None
    if few_values:
        x = common.index.sort_values().to_numpy()
        y_a = rest_a.value_counts().reindex(x, fill_value=0).to_numpy() / n_a
        y_b = rest_b.value_counts().reindex(x, fill_value=0).to_numpy() / n_b
        ranges = [_value_text(v, spec) for v in x]
        pooled = (float((~rest_a.isin(x)).sum() / n_a), float((~rest_b.isin(x)).sum() / n_b))
        if pooled[0] or pooled[1]:
            singles.append((rare_label(len(distinct) - len(common), min_count), *pooled))
    else:
        edges, counts_a, counts_b, ranges = _histogram(rest_a.to_numpy(float), rest_b.to_numpy(float), spec, min_count)
        y_a, y_b = counts_a / n_a, counts_b / n_b
        x, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    if spec.kind == "datetime":
        x = pd.to_datetime(np.clip(x, *DATETIME_LIMITS).astype("int64")).astype(str).to_numpy()
        widths = None if widths is None else widths / 1e6  # a date axis counts milliseconds
    bars = _shares(ranges, y_a, y_b, x=x.tolist(), width=None if widths is None else widths.tolist())
    return {"bars": bars, "singles": _shares(*zip(*singles)) if singles else None}


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
