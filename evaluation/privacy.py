"""Privacy: is the synthetic table closer to the training rows than real unseen rows are?

Distance. Over the modelled columns (ids ignored): numerics (continuous, datetimes as nanoseconds) scaled by
the training range (a zero range counts as 1), and a 0/1 mismatch per categorical value (discrete, boolean).
A null against a value is a mismatch of 1 on that column: nulls are their own category, and a numeric column
with nulls adds a present/missing category while its null values sit at 0 so only that category counts.
Each row becomes u = [scaled numerics, one-hot categories / sqrt(2)], so that ||u - v||^2 = sum of squared
scaled numeric gaps + number of categorical mismatches, and the distance reported is ||u - v|| / sqrt(columns),
in [0, ~1]. Every block of pairwise distances is then one matmul (`nearest_distances`), chunked so memory stays
bounded, on the GPU when there is one: a 200k x 200k search needs no cross-join.

Metrics (`privacy_metrics`):
- dcr_share: share of synthetic rows closer to their nearest training row than to their nearest holdout row
  (ties count half), against a training sample as large as the holdout so neither side wins by size. 0.5 is
  ideal; near 1 means the generator reproduces its training rows.
- dcr_below_holdout_p5: share of synthetic rows closer to the training set than the 5th percentile of the
  holdout's own distances to it. Holdout rows are real rows the model never saw, so 0.05 is natural.
- exact_copy_share: share of synthetic rows equal to a training row in every modelled column (by row hash, not
  float distance), next to holdout_exact_copy_share, the rate at which real unseen rows repeat training rows.
- nndr_median / nndr_p5: nearest / second-nearest training distance per synthetic row (0 when both are 0);
  small values mean a row sits unusually close to one specific record. The holdout's values are the reference.
- mia_auc: a distance-based membership-inference attack: the attacker scores real records by how close the
  nearest synthetic row is and tries to tell training members (a sample as large as the holdout) from holdout
  non-members. 0.5 means the synthetic data give no membership signal.
No self-matches arise: every search runs between two different tables.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from evaluation.features import numeric_values
from pipeline.errors import TabtwinError
from pipeline.schema import Schema

HISTOGRAM_SAMPLE = 2000


def privacy_metrics(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    device: str = "auto",
    chunk_rows: int = 4096,
    seed: int = 0,
) -> dict:
    for name, frame in (("real", train), ("holdout", holdout), ("synthetic", synthetic)):
        if len(frame) == 0:
            raise TabtwinError(f"the {name} table has no rows; privacy metrics need rows in all three tables")
    target = _device(device)
    rng = np.random.default_rng(seed)
    members = np.sort(rng.choice(len(train), size=min(len(holdout), len(train)), replace=False))
    u_train, u_holdout, u_synthetic = (t.to(target) for t in distance_space([train, holdout, synthetic], schema))
    u_members = u_train[torch.from_numpy(members).to(target)]
    scale = 1.0 / math.sqrt(max(_modelled_count(schema), 1))

    def nearest(queries, reference, k=1):
        values, _ = nearest_distances(queries, reference, k=k, chunk_rows=chunk_rows)
        return (values * scale).cpu().numpy()

    synthetic_to_train = nearest(u_synthetic, u_train, k=2)
    holdout_to_train = nearest(u_holdout, u_train, k=2)
    synthetic_to_members = nearest(u_synthetic, u_members)[:, 0]
    synthetic_to_holdout = nearest(u_synthetic, u_holdout)[:, 0]
    attack = nearest(torch.cat([u_members, u_holdout]), u_synthetic)[:, 0]

    closer = np.mean(synthetic_to_members < synthetic_to_holdout) + 0.5 * np.mean(synthetic_to_members == synthetic_to_holdout)
    p5 = float(np.quantile(holdout_to_train[:, 0], 0.05))
    is_member = np.r_[np.ones(len(members)), np.zeros(len(holdout))]
    return {
        "dcr_share": float(closer),
        "dcr_below_holdout_p5": float(np.mean(synthetic_to_train[:, 0] < p5)),
        "holdout_p5_distance": p5,
        "exact_copy_share": exact_copy_share(synthetic, train, schema),
        "holdout_exact_copy_share": exact_copy_share(holdout, train, schema),
        "nndr_median": float(np.median(_nndr(synthetic_to_train))),
        "nndr_p5": float(np.quantile(_nndr(synthetic_to_train), 0.05)),
        "holdout_nndr_median": float(np.median(_nndr(holdout_to_train))),
        "mia_auc": float(roc_auc_score(is_member, -attack)),
        "distances": {
            "synthetic_to_train": _sample(synthetic_to_train[:, 0], rng),
            "synthetic_to_holdout": _sample(synthetic_to_holdout, rng),
            "holdout_to_train": _sample(holdout_to_train[:, 0], rng),
        },
        "n_train": len(train),
        "n_holdout": len(holdout),
        "n_synthetic": len(synthetic),
        "device": str(target),
        "distance": "Euclidean over range-scaled numerics and 0/1 category mismatches (nulls a category), "
        "divided by sqrt(columns); nearest neighbours by chunked matmul in torch",
    }


# ---------------------------------------------------------------------------------------------- distance


def distance_space(frames: list[pd.DataFrame], schema: Schema) -> list[torch.Tensor]:
    """Each frame's rows as float32 vectors whose Euclidean distances are the documented mixed distance.

    The first frame (the training table) sets the numeric ranges; categories are pooled over all frames, so a
    value only the synthetic table has still gets its own one-hot position.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for spec in schema.columns:
        if spec.kind == "id":
            continue
        if spec.kind in ("continuous", "datetime"):
            columns = [numeric_values(frame[spec.name], spec).to_numpy(dtype=np.float64) for frame in frames]
            low, span = _range(columns[0])
            for block, column in zip(blocks, columns):
                block.append(np.nan_to_num((column - low) / span, nan=0.0)[:, None])
            if any(np.isnan(column).any() for column in columns):
                for block, column in zip(blocks, columns):
                    block.append(_one_hot(np.isnan(column).astype(int), 2))
        else:
            texts = [frame[spec.name].astype(object).map(lambda v: "\x00null" if pd.isna(v) else str(v)) for frame in frames]
            vocabulary = pd.Index(sorted(set().union(*(set(t.unique()) for t in texts))))
            for block, text in zip(blocks, texts):
                block.append(_one_hot(vocabulary.get_indexer(text), len(vocabulary)))
    return [
        torch.from_numpy(np.hstack(block).astype(np.float32)) if block else torch.zeros((len(frame), 0))
        for block, frame in zip(blocks, frames)
    ]


def _range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return low, (high - low) if high > low else 1.0


def _one_hot(codes: np.ndarray, width: int) -> np.ndarray:
    """One-hot rows scaled by 1/sqrt(2), so two different categories are at squared distance 1."""
    out = np.zeros((len(codes), width))
    out[np.arange(len(codes)), codes] = 1.0 / math.sqrt(2)
    return out


def nearest_distances(
    queries: torch.Tensor, reference: torch.Tensor, k: int = 1, chunk_rows: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest Euclidean distances from each query row to the reference rows, and their indices.

    ||q - r||^2 = ||q||^2 + (||r||^2 - 2 q.r); the bracket is one matmul with augmented vectors
    [q, 1] . [-2r, ||r||^2], so each (chunk x chunk) block costs a matmul and a top-k, and memory stays at
    one block whatever the table sizes.
    """
    if len(reference) < k:
        raise TabtwinError(f"need at least {k} reference rows for {k} nearest neighbours, got {len(reference)}")
    reference_aug = torch.cat([-2 * reference, (reference * reference).sum(1, keepdim=True)], dim=1)
    out_values = torch.empty((len(queries), k), device=queries.device)
    out_index = torch.empty((len(queries), k), dtype=torch.long, device=queries.device)
    for q0 in range(0, len(queries), chunk_rows):
        q = queries[q0 : q0 + chunk_rows]
        q_aug = torch.cat([q, torch.ones((len(q), 1), device=q.device)], dim=1)
        best_values = torch.full((len(q), k), float("inf"), device=q.device)
        best_index = torch.zeros((len(q), k), dtype=torch.long, device=q.device)
        for r0 in range(0, len(reference), chunk_rows):
            block = q_aug @ reference_aug[r0 : r0 + chunk_rows].T  # (q, r): ||r||^2 - 2 q.r
            values, index = torch.topk(block, min(k, block.shape[1]), dim=1, largest=False)
            merged_values = torch.cat([best_values, values], dim=1)
            merged_index = torch.cat([best_index, index + r0], dim=1)
            best_values, order = torch.topk(merged_values, k, dim=1, largest=False)
            best_index = torch.gather(merged_index, 1, order)
        squared = best_values + (q * q).sum(1, keepdim=True)
        out_values[q0 : q0 + len(q)] = squared.clamp_min(0).sqrt()
        out_index[q0 : q0 + len(q)] = best_index
    return out_values, out_index


# ---------------------------------------------------------------------------------------------- helpers


def exact_copy_share(rows: pd.DataFrame, train: pd.DataFrame, schema: Schema) -> float:
    """Share of `rows` equal to some training row in every modelled column (nulls equal nulls)."""
    columns = [s.name for s in schema.columns if s.kind != "id"]
    if not columns:
        return 0.0
    train_hashes = set(_row_hashes(train[columns]))
    return float(np.mean([h in train_hashes for h in _row_hashes(rows[columns])]))


def _row_hashes(frame: pd.DataFrame) -> np.ndarray:
    # Compared as text so an int 3 and a float 3.0 (a CSV round trip) hash alike; nulls share one marker.
    text = frame.astype(object).where(frame.notna(), "\x00null").astype(str)
    return pd.util.hash_pandas_object(text, index=False).to_numpy()


def _nndr(distances: np.ndarray) -> np.ndarray:
    first, second = distances[:, 0], distances[:, 1]
    return np.divide(first, second, out=np.zeros_like(first), where=second > 0)


def _sample(values: np.ndarray, rng: np.random.Generator) -> list[float]:
    if len(values) > HISTOGRAM_SAMPLE:
        values = rng.choice(values, HISTOGRAM_SAMPLE, replace=False)
    return [round(float(v), 6) for v in values]


def _modelled_count(schema: Schema) -> int:
    return sum(1 for s in schema.columns if s.kind != "id")


def _device(device: str) -> torch.device:
    from generators.base import resolve_device

    return resolve_device(device)
