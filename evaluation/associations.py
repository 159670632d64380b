"""How strongly each pair of columns goes together, in the real and in the synthetic table: the association
matrices of the report, kept in report.json under `fidelity.associations`.

Every pair gets a value here, whether or not sdmetrics' pair trends scored it: Pearson correlation for two
numeric columns (-1 to 1), Cramér's V for the others (0 to 1; numeric columns cut into ASSOCIATION_BINS
equal-width bins of the real range, as sdmetrics does, and nulls a category of their own), on
ASSOCIATION_ROWS seeded rows per side. They hold column names and statistics, no values.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from tabtwin.evaluation.column_shares import FIGURE_COLUMNS, worst_columns
from tabtwin.evaluation.features import numeric_values
from tabtwin.pipeline.keys import category_keys
from tabtwin.pipeline.schema import Schema

ASSOCIATION_ROWS = 5_000  # rows per side (a seeded sample; 30 columns in ~2 s)
ASSOCIATION_BINS = 10  # equal-width bins of a numeric column for Cramér's V
ASSOCIATION_CATEGORIES = 50  # categories kept per column for Cramér's V; rarer ones are grouped
NUMERIC_KINDS = ("continuous", "datetime")


def associations(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, quality: dict | None = None,
                 seed: int = 0) -> dict | None:
    """{"columns": names, "numeric": [bool per column], "rows": {"real", "synthetic"} rows used, "bins":
    ASSOCIATION_BINS, "real", "synthetic": square matrices (nested lists, None on the diagonal and where a
    correlation is undefined)} over the `pair_columns`; None with fewer than two columns."""
    names = pair_columns(quality or {}, schema)
    specs = [spec for spec in schema.columns if spec.name in names]
    if len(specs) < 2:
        return None
    real_matrix, synthetic_matrix = _matrices(real, synthetic, specs, seed)
    return {"columns": [spec.name for spec in specs], "numeric": [spec.kind in NUMERIC_KINDS for spec in specs],
            "rows": {side: min(len(frame), ASSOCIATION_ROWS) for side, frame in (("real", real), ("synthetic", synthetic))},
            "bins": ASSOCIATION_BINS, "real": _lists(real_matrix), "synthetic": _lists(synthetic_matrix)}


def pair_columns(quality: dict, schema: Schema) -> list[str]:
    """The matrices' columns: all modelled ones up to FIGURE_COLUMNS, else the columns of the worst scored
    pairs (then of the lowest shape scores), in table order."""
    names = [spec.name for spec in schema.columns if spec.kind != "id"]
    if len(names) <= FIGURE_COLUMNS:
        return names
    chosen: dict = {}
    for pair in sorted((p for p in quality.get("pairs", []) if p.get("score") is not None), key=lambda p: p["score"]):
        for name in pair["columns"]:
            if len(chosen) < FIGURE_COLUMNS:
                chosen.setdefault(name, None)
    for name in worst_columns(quality, schema):
        if len(chosen) < FIGURE_COLUMNS:
            chosen.setdefault(name, None)
    return [name for name in names if name in chosen]


def _matrices(real: pd.DataFrame, synthetic: pd.DataFrame, specs: list, seed: int = 0) -> list[np.ndarray]:
    """[real, synthetic] square matrices over `specs` (NaN on the diagonal); see the module docstring."""
    frames = [_sample(frame, ASSOCIATION_ROWS, seed) for frame in (real, synthetic)]
    numeric = [s.kind in NUMERIC_KINDS for s in specs]
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


def _lists(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)
