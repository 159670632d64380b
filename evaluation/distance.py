"""The distance of the privacy metrics (evaluation/privacy.py), and nearest neighbours in torch.

Over the modelled columns (id columns are ignored), every row becomes a vector u:

- continuous values, and datetimes as int64 nanoseconds, scaled by the TRAINING range, (x - min) / (max - min)
  (a zero or empty range counts as 1, so a constant column contributes nothing and nothing divides by 0);
- discrete and boolean values one-hot encoded and divided by sqrt(2), so two different values are at squared
  distance exactly 1 and equal values at 0. The vocabulary is the union of the three tables' values (compared
  as text, with 1.0 written as 1), so a category that only the synthetic or holdout table has still gets its
  own position; a null is one more category.
- a numeric column with nulls in any table also gets a 0/1 null indicator, and its null values are filled
  with the training mean (the neutral value: the point closest, on average in squares, to the real values).

So d(u, v)^2 = sum of squared scaled numeric gaps + number of categorical mismatches; a null against a value
costs 1 for the mismatch, and for a numeric column also the squared scaled gap between the value and the
training mean (an exact "1 and nothing else" is not a Euclidean distance, and Euclidean is what turns every
block of pairs into one matmul). Reported distances are d / sqrt(number of modelled columns): 0 for equal
rows, about 1 at most for rows within the training ranges.

Nearest neighbours (`nearest_distances`) run in torch, float32, on the GPU when there is one: query chunks
against reference chunks, ||q - r||^2 = ||q||^2 + ||r||^2 - 2 q.r as a matmul per (chunk_rows x chunk_rows)
block, and a running top-k merged across reference chunks, so memory stays at one block whatever the table
sizes: no pandas cross-join, no cdist. Blocks are 1024 x 1024 on a CPU (4 MiB, cache-resident: 1.5x the pairs
per second of 4096 x 4096 blocks on a 2-core EPYC) and 4096 x 4096 on a GPU. The matmul only selects candidates;
their distances are then recomputed from the differences, because the expanded form loses the small
distances (exact copies) to float32 cancellation. Every search runs between two different tables (synthetic
vs train, holdout vs train, ...), so there are no self-matches to exclude.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from tabtwin.evaluation.features import numeric_values
from tabtwin.pipeline import keys
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import ColumnSpec, Schema

NUMERIC_KINDS = ("continuous", "datetime")
# Extra candidates the matmul keeps per query, so float32 near-ties cannot push the true nearest out of the
# set whose distances are recomputed exactly.
REFINE_MARGIN = 2
NULL_KEY = "\x00null"  # a category for nulls that no real value can spell
DISTANCE = (
    "Euclidean over modelled columns: numerics and datetimes scaled by the training range, one-hot categories "
    "/ sqrt(2) (0/1 per mismatch, null its own category, numeric nulls add a 0/1 indicator), divided by "
    "sqrt(number of modelled columns); nearest neighbours by chunked float32 matmul in torch, refined exactly"
)


def modelled_columns(schema: Schema) -> list[str]:
    return [spec.name for spec in schema.columns if spec.kind != "id"]


def distance_space(frames: list[pd.DataFrame], schema: Schema) -> list[torch.Tensor]:
    """Each frame's rows as float32 vectors whose Euclidean distances are the documented mixed distance.

    The first frame (the training table) sets the numeric ranges and null fill; categories are pooled over
    all frames. Distances here are not yet divided by sqrt(number of modelled columns).
    """
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for spec in schema.columns:
        if spec.kind == "id":
            continue
        encode = _numeric_parts if spec.kind in NUMERIC_KINDS else _category_parts
        for block, part in zip(blocks, encode([frame[spec.name] for frame in frames], spec)):
            block.append(part)
    return [torch.from_numpy(np.hstack(block).astype(np.float32, copy=False)) for block in blocks]


def _numeric_parts(columns: list[pd.Series], spec: ColumnSpec) -> list[np.ndarray]:
    values = [finite_or_nan(numeric_values(column, spec)) for column in columns]
    low, span = _range(values[0])
    scaled = [(v - low) / span for v in values]
    train_scaled = scaled[0][~np.isnan(scaled[0])]
    fill = float(train_scaled.mean()) if len(train_scaled) else 0.0
    parts = [[np.nan_to_num(s, nan=fill)[:, None]] for s in scaled]
    if any(np.isnan(v).any() for v in values):
        # Only when some table has nulls, so all frames get the same columns.
        for part, v in zip(parts, values):
            part.append(np.isnan(v).astype(np.float64)[:, None])
    return [np.hstack(part) for part in parts]


def finite_or_nan(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(values), values, np.nan)  # +-inf has no place on a range scale: a null


def _range(values: np.ndarray) -> tuple[float, float]:
    finite = values[~np.isnan(values)]
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return low, (high - low) if high > low else 1.0


def _category_parts(columns: list[pd.Series], spec: ColumnSpec) -> list[np.ndarray]:
    keys = [category_keys(column) for column in columns]
    codes, vocabulary = pd.factorize(np.concatenate(keys))
    bounds = np.cumsum([0] + [len(k) for k in keys])
    return [_one_hot(codes[start:stop], len(vocabulary)) for start, stop in zip(bounds[:-1], bounds[1:])]


def category_keys(series: pd.Series) -> np.ndarray:
    """Values as text that reads the same across tables (`pipeline.keys.category_key`: 1, 1.0 and "1" alike,
    True as "True"), nulls as NULL_KEY."""
    return keys.category_keys(series, null=NULL_KEY)


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    """One-hot rows scaled by 1/sqrt(2), so two different categories are at squared distance 1."""
    out = np.zeros((len(codes), width), dtype=np.float32)
    out[np.arange(len(codes)), codes] = 1.0 / math.sqrt(2)
    return out


# ---------------------------------------------------------------------------------------------- nearest neighbours


def default_chunk_rows(device: torch.device) -> int:
    """Rows per block side: small enough to stay in a CPU's cache, large enough to fill a GPU."""
    return 4096 if device.type == "cuda" else 1024


def nearest_distances(
    queries: torch.Tensor, reference: torch.Tensor, k: int = 2, chunk_rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest Euclidean distances from each query row to the reference rows (ascending), and their indices.

    Works on the tensors' device in float32. Memory beyond the inputs is one (chunk_rows x chunk_rows) block
    plus (chunk_rows x (k + REFINE_MARGIN)) candidates, so 200k x 200k needs well under a GiB.
    """
    chunk_rows = default_chunk_rows(queries.device) if chunk_rows is None else chunk_rows
    if k < 1 or chunk_rows < 1:
        raise TabtwinError(f"k and chunk_rows must be positive, got k={k}, chunk_rows={chunk_rows}")
    if len(reference) < k:
        raise TabtwinError(f"need at least {k} reference rows for {k} nearest neighbours, got {len(reference)}")
    queries, reference = queries.float(), reference.to(queries.device).float()
    # Centring on the reference mean shrinks the norms, and with them the float32 cancellation error.
    centre = reference.mean(0, keepdim=True)
    queries, reference = queries - centre, reference - centre
    reference_sq = (reference * reference).sum(1)
    n_candidates = min(k + REFINE_MARGIN, len(reference))
    values = torch.empty((len(queries), k), device=queries.device)
    indices = torch.empty((len(queries), k), dtype=torch.long, device=queries.device)
    for q0 in range(0, len(queries), chunk_rows):
        q = queries[q0 : q0 + chunk_rows]
        candidates = _candidates(q, reference, reference_sq, n_candidates, chunk_rows)
        values[q0 : q0 + len(q)], indices[q0 : q0 + len(q)] = _refine(q, reference, candidates, k)
    return values, indices


def _candidates(
    q: torch.Tensor, reference: torch.Tensor, reference_sq: torch.Tensor, count: int, chunk_rows: int
) -> torch.Tensor:
    """Indices of the `count` reference rows that the matmul ranks closest to each query row."""
    best_scores = torch.empty((len(q), 0), device=q.device)
    best_index = torch.empty((len(q), 0), dtype=torch.long, device=q.device)
    for r0 in range(0, len(reference), chunk_rows):
        # ||q - r||^2 - ||q||^2 = ||r||^2 - 2 q.r: the ranking per query needs no ||q||^2.
        scores = torch.addmm(reference_sq[r0 : r0 + chunk_rows], q, reference[r0 : r0 + chunk_rows].T, alpha=-2)
        scores, index = torch.topk(scores, min(count, scores.shape[1]), dim=1, largest=False, sorted=False)
        best_scores = torch.cat([best_scores, scores], dim=1)
        best_index = torch.cat([best_index, index + r0], dim=1)
        if best_scores.shape[1] > count:
            best_scores, order = torch.topk(best_scores, count, dim=1, largest=False, sorted=False)
            best_index = torch.gather(best_index, 1, order)
    return best_index


def _refine(q: torch.Tensor, reference: torch.Tensor, candidates: torch.Tensor, k: int):
    """Exact distances to the candidates, from differences (no cancellation), sorted; the k smallest."""
    gaps = reference[candidates] - q[:, None, :]  # (rows, candidates, dims)
    distances = gaps.square().sum(2).sqrt()
    distances, order = torch.sort(distances, dim=1, stable=True)
    return distances[:, :k], torch.gather(candidates, 1, order[:, :k])
