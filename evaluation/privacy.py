"""Privacy: is the synthetic table closer to the training rows than real rows the generator never saw?

Distances are those of evaluation/distance.py (range-scaled numerics, 0/1 category mismatches, divided by
sqrt(number of modelled columns)); the attacks by anonymeter are in evaluation/attacks.py.

Metrics (`privacy_metrics`)
---------------------------
Holdout design. The generator saw the training rows and not the holdout rows, so the holdout rows show how
close real rows that were NOT trained on sit to the training set. Every comparison puts the two sides on an
equal footing, so that neither wins by having more rows to be close to:

- the DCR share measures synthetic rows and holdout rows against the same reference, the whole training set;
  its question is not "which set is closer" (a set with more rows is closer by size alone: with an 80/20 split a
  fresh sample is closer to train 80 % of the time) but "is a synthetic row closer to the training set than a
  real unseen row is". This keeps the full contrast for a copy: it scores about 1 (less half the holdout's
  own exact-repeat rate) at any split, whereas comparing each synthetic row with an equal-size training sample
  and the holdout would let a copy of a training row outside that sample tie, and a verbatim copy would score
  0.5 + 0.5 x m / n_train (0.625 at 80/20, against a 0.60 threshold);
- the membership-inference attack compares equal-size seeded samples: m = min(len(train), len(holdout))
  training rows (members) and m holdout rows (non-members), so its AUC has balanced classes.

The sizes used are in the result (n_train, n_holdout, n_synthetic; n_compared = m).

- dcr_share: the probability that a synthetic row lies strictly closer to the training set than a holdout row
  does (the Mann-Whitney statistic of the two distance-to-closest-training-record samples, ties within float32
  resolution counting half). 0.5 is ideal: synthetic rows sit no closer to what the generator trained on than
  fresh real rows do; near 1 means it copies. (Holdout-based DCR in the sense of Platzer and Reutterer 2021,
  "Holdout-Based Empirical Assessment of Mixed-Type Synthetic Data", Frontiers in Big Data, measured against
  one common reference so that the train/holdout split ratio does not move it.)
- dcr_below_holdout_p5: share of synthetic rows whose distance to the closest training row is below the 5th
  percentile of the holdout rows' own closest-training-row distances (the natural closeness of real unseen
  rows, against all of train). About 0.05 is natural; much higher means too close.
- exact_copy_share: share of synthetic rows equal to some training row in every modelled column (nulls equal
  nulls), by hashing normalised rows, not by float distance; holdout_exact_copy_share is the same for the
  holdout rows, the base rate that duplicates in the data produce on their own.
- nndr_median / nndr_p5: nearest-neighbour distance ratio, distance to the closest training row divided by
  the distance to the second closest (0/0 counts 0: the row sits on a duplicated training record). Small
  ratios mean a row sits unusually close to one specific record; holdout_nndr_median / holdout_nndr_p5 are
  the reference for real unseen rows.
- mia_auc: distance-based membership inference. The attacker scores each real record by how close the
  nearest synthetic row is (minus that distance) and tries to tell training members (the training sample)
  from holdout non-members (the holdout sample); ROC AUC. 0.5 means the synthetic data leak no membership.
- distances: seeded samples (at most 2000 values each) of synthetic->train, synthetic->holdout and
  holdout->train closest distances; dcr_histogram: their shares per distance bin, the report's histogram.

Few rows. The distance metrics compare m training with m holdout rows; below PRIVACY_MIN_ROWS (a request for
a segment of 5 real rows) a DCR share or an MIA AUC over a handful of rows says nothing (the AUC's standard error
at m = 5 is about 0.2), so they are None and `skipped` says why. Exact copies are counted at any size.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from tabtwin.evaluation.distance import (DISTANCE, NUMERIC_KINDS, category_keys, default_chunk_rows, distance_space,
                                         modelled_columns, nearest_distances)
from tabtwin.evaluation.features import numeric_values
from tabtwin.evaluation.plot_style import HISTOGRAM_BINS
from tabtwin.pipeline.device import resolve_device
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import Schema

HISTOGRAM_SAMPLE = 2000
# Distances closer than this (after normalisation) count as a tie: float32 resolution of values in [0, ~1].
TIE_TOLERANCE = 1e-6
PRIVACY_MIN_ROWS = 20  # training and holdout rows each below which the distance metrics are not judged


def privacy_metrics(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    device: str = "auto",
    chunk_rows: int | None = None,
    seed: int = 0,
) -> dict:
    """Distance-to-closest-record, exact-copy, NNDR and membership-inference metrics (see the module docstring).

    Returns the dict of metrics listed there; with fewer than PRIVACY_MIN_ROWS training or holdout rows, only
    the exact-copy shares and `skipped` (the reason). Raises TabtwinError for an empty table, missing columns,
    no modelled column or a non-positive chunk_rows.
    """
    target = resolve_device(device)
    chunk_rows = default_chunk_rows(target) if chunk_rows is None else chunk_rows
    columns = _check_inputs(train, holdout, synthetic, schema, chunk_rows)
    m = min(len(train), len(holdout))
    if m < PRIVACY_MIN_ROWS:
        return few_rows_privacy(
            train, holdout, synthetic, schema,
            f"too few real rows to judge: {len(train)} training and {len(holdout)} holdout rows, the distance "
            f"metrics (DCR, NNDR, membership inference) need at least {PRIVACY_MIN_ROWS} of each",
        )
    rng = np.random.default_rng(seed)
    members = sample_rows(len(train), m, rng)
    non_members = sample_rows(len(holdout), m, rng)

    u_train, u_holdout, u_synthetic = (u.to(target) for u in distance_space([train, holdout, synthetic], schema))
    scale = 1.0 / math.sqrt(len(columns))

    def nearest(queries: torch.Tensor, reference: torch.Tensor, k: int = 1) -> np.ndarray:
        values, _ = nearest_distances(queries, reference, k=k, chunk_rows=chunk_rows)
        return values.cpu().numpy().astype(np.float64) * scale

    u_members, u_non_members = _take(u_train, members), _take(u_holdout, non_members)
    synthetic_to_train = nearest(u_synthetic, u_train, k=2)
    holdout_to_train = nearest(u_holdout, u_train, k=2)
    synthetic_to_holdout = nearest(u_synthetic, u_holdout)[:, 0]
    attack_distances = nearest(torch.cat([u_members, u_non_members]), u_synthetic)[:, 0]

    p5 = float(np.quantile(holdout_to_train[:, 0], 0.05))
    synthetic_nndr, holdout_nndr = _nndr(synthetic_to_train), _nndr(holdout_to_train)
    is_member = np.r_[np.ones(m), np.zeros(m)]
    distances = {
        "synthetic_to_train": _histogram_sample(synthetic_to_train[:, 0], rng),
        "synthetic_to_holdout": _histogram_sample(synthetic_to_holdout, rng),
        "holdout_to_train": _histogram_sample(holdout_to_train[:, 0], rng),
    }
    return {
        "dcr_share": closer_than_holdout_share(synthetic_to_train[:, 0], holdout_to_train[:, 0]),
        "dcr_below_holdout_p5": float(np.mean(synthetic_to_train[:, 0] < p5)),
        "holdout_p5_distance": p5,
        "exact_copy_share": exact_copy_share(synthetic, train, schema),
        "holdout_exact_copy_share": exact_copy_share(holdout, train, schema),
        "nndr_median": float(np.median(synthetic_nndr)),
        "nndr_p5": float(np.quantile(synthetic_nndr, 0.05)),
        "holdout_nndr_median": float(np.median(holdout_nndr)),
        "holdout_nndr_p5": float(np.quantile(holdout_nndr, 0.05)),
        "mia_auc": float(roc_auc_score(is_member, -attack_distances)),
        "distances": distances,
        "dcr_histogram": dcr_histogram(distances),
        "n_train": len(train),
        "n_holdout": len(holdout),
        "n_synthetic": len(synthetic),
        "n_compared": m,
        "columns": columns,
        "device": str(target),
        "distance": DISTANCE,
    }


def few_rows_privacy(train, holdout, synthetic, schema: Schema, reason: str) -> dict:
    """The privacy result where the distance metrics cannot be judged: exact copies only, `skipped` = reason."""
    return {
        "skipped": reason,
        "dcr_share": None, "dcr_below_holdout_p5": None, "holdout_p5_distance": None,
        "exact_copy_share": exact_copy_share(synthetic, train, schema),
        "holdout_exact_copy_share": exact_copy_share(holdout, train, schema) if len(holdout) else None,
        "nndr_median": None, "nndr_p5": None, "holdout_nndr_median": None, "holdout_nndr_p5": None,
        "mia_auc": None, "distances": {}, "dcr_histogram": None,
        "n_train": len(train), "n_holdout": len(holdout), "n_synthetic": len(synthetic), "n_compared": 0,
        "columns": modelled_columns(schema), "device": None, "distance": DISTANCE,
    }


def _check_inputs(train, holdout, synthetic, schema: Schema, chunk_rows: int) -> list[str]:
    columns = modelled_columns(schema)
    if not columns:
        raise TabtwinError("the schema has no modelled (non-id) columns; privacy metrics need at least one")
    if chunk_rows < 1:
        raise TabtwinError(f"chunk_rows must be a positive number of rows, got {chunk_rows}")
    for name, frame in (("training", train), ("holdout", holdout), ("synthetic", synthetic)):
        if len(frame) == 0:
            raise TabtwinError(f"the {name} table has 0 rows; privacy metrics need rows in all three tables")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise TabtwinError(
                f"the {name} table lacks the modelled column(s) {missing}; give all three tables the same columns"
            )
    return columns


# ---------------------------------------------------------------------------------------------- exact copies


def exact_copy_share(rows: pd.DataFrame, train: pd.DataFrame, schema: Schema) -> float:
    """Share of `rows` equal to some training row in every modelled column (nulls equal nulls)."""
    return float(np.isin(row_hashes(rows, schema), row_hashes(train, schema)).mean())


def row_hashes(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """A 64-bit hash per row of the modelled columns (`normalised_rows`), so equal values hash alike across tables."""
    return pd.util.hash_pandas_object(normalised_rows(frame, schema), index=False).to_numpy()


def normalised_rows(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The modelled columns in a form where equal values are equal: numerics (datetimes as nanoseconds) as
    float64 with nulls as a separate flag (NaN bit patterns vary), categories as the text keys the distance uses
    (1 and 1.0 alike)."""
    normalised = {}
    for spec in schema.columns:
        if spec.kind == "id":
            continue
        if spec.kind in NUMERIC_KINDS:
            values = numeric_values(frame[spec.name], spec).to_numpy(dtype=np.float64, na_value=np.nan)
            null = np.isnan(values)
            normalised[spec.name] = np.where(null, 0.0, values) + 0.0  # + 0.0 turns -0.0 into 0.0
            normalised[spec.name + "\x00null"] = null
        else:
            normalised[spec.name] = category_keys(frame[spec.name])
    return pd.DataFrame(normalised, index=frame.index)


# ---------------------------------------------------------------------------------------------- helpers


def sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded sample without replacement (all rows when size == n)."""
    return np.arange(n) if size >= n else np.sort(rng.choice(n, size=size, replace=False))


def _take(rows: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    return rows if len(index) == len(rows) else rows[torch.from_numpy(index).to(rows.device)]


def dcr_histogram(distances: dict[str, list[float]]) -> dict | None:
    """{"edges", "shares": {name: share of rows per bin}} of the distance samples: HISTOGRAM_BINS shared bins
    from 0 to the 99.5th percentile of the synthetic and holdout rows' distances to train (farther ones count in
    the last bin); None without both of those samples."""
    samples = {name: np.asarray(values, dtype=float) for name, values in distances.items() if values}
    if "synthetic_to_train" not in samples or "holdout_to_train" not in samples:
        return None
    top = float(np.nanquantile(np.r_[samples["synthetic_to_train"], samples["holdout_to_train"]], 0.995)) or 1.0
    edges = np.linspace(0.0, top, HISTOGRAM_BINS + 1)
    return {"edges": edges.tolist(),
            "shares": {name: (np.histogram(np.clip(values, 0.0, top), bins=edges)[0] / len(values)).tolist()
                       for name, values in samples.items()}}


def closer_than_holdout_share(synthetic_dcr: np.ndarray, holdout_dcr: np.ndarray) -> float:
    """P(a synthetic row's distance to the closest training row < a holdout row's), ties within TIE_TOLERANCE
    counting half: the Mann-Whitney U statistic of the two samples, from ranks."""
    from scipy.stats import rankdata

    values = np.round(np.r_[synthetic_dcr, holdout_dcr] / TIE_TOLERANCE)  # equal within tolerance: one value
    ranks = rankdata(values)  # ties get their average rank, so each tied pair counts half
    n_s, n_h = len(synthetic_dcr), len(holdout_dcr)
    synthetic_farther = ranks[:n_s].sum() - n_s * (n_s + 1) / 2  # pairs where the synthetic row is farther
    return float(1.0 - synthetic_farther / (n_s * n_h))


def _nndr(distances: np.ndarray) -> np.ndarray:
    first, second = distances[:, 0], distances[:, 1]
    return np.divide(first, second, out=np.zeros_like(first), where=second > 0)


def _histogram_sample(values: np.ndarray, rng: np.random.Generator) -> list[float]:
    if len(values) > HISTOGRAM_SAMPLE:
        values = rng.choice(values, HISTOGRAM_SAMPLE, replace=False)
    return [round(float(v), 6) for v in values]
