"""Privacy: is the synthetic table closer to the training rows than real rows the generator never saw?

Distance
--------
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
  holdout->train closest distances, for the report's histogram.

Few rows. The distance metrics compare m training with m holdout rows; below PRIVACY_MIN_ROWS (a request for
a segment of 5 real rows) a DCR share or an MIA AUC over a handful of rows says nothing (the AUC's standard error
at m = 5 is about 0.2), so they are None and `skipped` says why. Exact copies are counted at any size.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from tabtwin.evaluation.features import numeric_values
from tabtwin.pipeline import keys
from tabtwin.pipeline.device import resolve_device
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import ColumnSpec, Schema

NUMERIC_KINDS = ("continuous", "datetime")
HISTOGRAM_SAMPLE = 2000
# Extra candidates the matmul keeps per query, so float32 near-ties cannot push the true nearest out of the
# set whose distances are recomputed exactly.
REFINE_MARGIN = 2
# Distances closer than this (after normalisation) count as a tie: float32 resolution of values in [0, ~1].
TIE_TOLERANCE = 1e-6
NULL_KEY = "\x00null"  # a category for nulls that no real value can spell
PRIVACY_MIN_ROWS = 20  # training and holdout rows each below which the distance metrics are not judged
DISTANCE = (
    "Euclidean over modelled columns: numerics and datetimes scaled by the training range, one-hot categories "
    "/ sqrt(2) (0/1 per mismatch, null its own category, numeric nulls add a 0/1 indicator), divided by "
    "sqrt(number of modelled columns); nearest neighbours by chunked float32 matmul in torch, refined exactly"
)


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
    target = _device(device)
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
    members = _sample_rows(len(train), m, rng)
    non_members = _sample_rows(len(holdout), m, rng)

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
        "distances": {
            "synthetic_to_train": _histogram_sample(synthetic_to_train[:, 0], rng),
            "synthetic_to_holdout": _histogram_sample(synthetic_to_holdout, rng),
            "holdout_to_train": _histogram_sample(holdout_to_train[:, 0], rng),
        },
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
        "mia_auc": None, "distances": {},
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


# ---------------------------------------------------------------------------------------------- distance


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
    values = [_finite_or_nan(numeric_values(column, spec)) for column in columns]
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


def _finite_or_nan(series: pd.Series) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------- exact copies


def exact_copy_share(rows: pd.DataFrame, train: pd.DataFrame, schema: Schema) -> float:
    """Share of `rows` equal to some training row in every modelled column (nulls equal nulls)."""
    return float(np.isin(row_hashes(rows, schema), row_hashes(train, schema)).mean())


def row_hashes(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """A 64-bit hash per row of the modelled columns, normalised so equal values hash alike across tables.

    Numerics (datetimes as nanoseconds) as float64 with nulls as a separate flag (NaN bit patterns vary);
    categories as the text keys the distance uses (1 and 1.0 alike).
    """
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
    return pd.util.hash_pandas_object(pd.DataFrame(normalised), index=False).to_numpy()


# ---------------------------------------------------------------------------------------------- helpers


def _sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a seeded sample without replacement (all rows when size == n)."""
    return np.arange(n) if size >= n else np.sort(rng.choice(n, size=size, replace=False))


def _take(rows: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    return rows if len(index) == len(rows) else rows[torch.from_numpy(index).to(rows.device)]


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


def _device(device: str) -> torch.device:
    return resolve_device(device)


# ---------------------------------------------------------------------------------------------- attacks (anonymeter)

ATTACK_ROWS = 10_000  # synthetic rows the attacker searches at most (a seeded sample past that): bounds the kNN cost
ATTACK_TARGETS = 500  # training rows attacked, and as many holdout (control) rows (anonymeter's default)
ATTACK_MIN_ROWS = 50  # training and holdout rows each below which the attacks are not judged
SINGLING_OUT_COLUMNS = 3  # predicates per multivariate singling-out query (anonymeter's default)
SINGLING_OUT_ATTEMPTS = 50  # query draws per wanted query before anonymeter stops (bounds the cost)
SENSITIVE_COLUMNS = 3  # secrets attacked by inference
CONFIDENCE = 0.95
# Column names that read as who a person is, not what they did: the linkability attacker's first view.
DEMOGRAPHIC_WORDS = (
    "age", "sex", "gender", "female", "male", "race", "ethnic", "marital", "married", "relationship", "partner",
    "spouse", "dependents", "children", "senior", "education", "country", "native", "nationality", "religion",
    "language", "birth", "born", "zip", "postcode", "postal", "city", "state", "region", "address",
)


def attack_risks(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    target: str | None = None,
    seed: int = 0,
) -> dict:
    """Singling-out, linkability and attribute-inference risks of the synthetic table, by anonymeter.

    Method: Giomi et al. 2023, "A Unified Framework for Quantifying Privacy Risk in Synthetic Data",
    Proceedings on Privacy Enhancing Technologies 2023(2) (anonymeter). Each attack is run against training
    rows and, as the control, against holdout rows the generator never saw; the risk is the excess success
    on training rows, (rate_train - rate_control) / (1 - rate_control), with its Wilson confidence interval at
    CONFIDENCE, so what any good model of the population reveals about unseen rows counts as no risk.

    - singling_out: multivariate, queries of SINGLING_OUT_COLUMNS predicates built from synthetic rows that
      isolate exactly one synthetic row; success when the query isolates exactly one training row.
    - linkability: the modelled columns split into two attacker views (`attacker_views`); a training row is
      linked when both halves have the same nearest synthetic row.
    - inference: for each secret (`sensitive_columns`), the attacker knows every other modelled column and
      guesses the secret from the nearest synthetic row.

    Cost is bounded by seeded samples: ATTACK_ROWS synthetic rows, ATTACK_TARGETS training and as many holdout
    rows (sizes in the result). With fewer than ATTACK_MIN_ROWS training or holdout rows, `skipped` says why.
    """
    columns = modelled_columns(schema)
    if min(len(train), len(holdout)) < ATTACK_MIN_ROWS or len(synthetic) < ATTACK_MIN_ROWS or len(columns) < 2:
        return {"skipped": (f"the attacks need at least {ATTACK_MIN_ROWS} training, holdout and synthetic rows and "
                            f"two modelled columns: got {len(train)}, {len(holdout)}, {len(synthetic)} rows and "
                            f"{len(columns)} column(s)"), "attacks": []}
    from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator

    rng = np.random.default_rng(seed)
    n_targets = min(ATTACK_TARGETS, len(train), len(holdout))
    # Whole real tables (the attacked rows are drawn from them); the synthetic table up to ATTACK_ROWS, which
    # dilutes a copy of a larger table (a copied row left out of the sample cannot be found). anonymeter draws the n_targets
    # attacked rows itself (seeded below) and corrects singling-out for the holdout's smaller size.
    ori, control = _attack_frame(train, train, schema), _attack_frame(holdout, train, schema)
    syn = _attack_frame(synthetic.iloc[_sample_rows(len(synthetic), ATTACK_ROWS, rng)], train, schema)
    views = attacker_views(schema)
    secrets = sensitive_columns(train, schema, target)
    attacks = []
    # anonymeter logs a WARNING when it finds fewer singling-out queries than asked (mid-CLI output); the
    # report's n_attacks carries that figure instead.
    with _seeded_numpy(seed), _quiet_logger("anonymeter"):  # anonymeter draws its baselines from numpy's global generator
        start = time.perf_counter()
        evaluator = SinglingOutEvaluator(ori=ori, syn=syn, control=control, n_attacks=n_targets,
                                         n_cols=min(SINGLING_OUT_COLUMNS, len(columns)), seed=seed,
                                         max_attempts=SINGLING_OUT_ATTEMPTS * n_targets)
        attacks.append(_risk("singling_out", "multivariate", _evaluated(evaluator, mode="multivariate"), start))
        start = time.perf_counter()
        evaluator = LinkabilityEvaluator(ori=ori, syn=syn, control=control, aux_cols=views, n_attacks=n_targets)
        attacks.append(_risk("linkability", "views: " + " | ".join(", ".join(v) for v in views),
                             _evaluated(evaluator, n_jobs=1), start))
        for secret in secrets:
            start = time.perf_counter()
            evaluator = InferenceEvaluator(
                ori=ori, syn=syn, control=control, secret=secret, n_attacks=n_targets,
                aux_cols=[c for c in columns if c != secret], regression=_is_numeric(schema, secret),
            )
            attacks.append(_risk("inference", secret, _evaluated(evaluator, n_jobs=1), start))
    return {
        "method": "anonymeter (Giomi et al. 2023, PoPETs): excess success on training rows over holdout rows",
        "anonymeter_version": _package_version("anonymeter"),
        "confidence_level": CONFIDENCE,
        "attacks": attacks,
        "views": views,
        "secrets": secrets,
        "n_targets": n_targets,
        "n_control": n_targets,
        "n_synthetic_searched": len(syn),
    }


def attacker_views(schema: Schema) -> list[list[str]]:
    """The two column sets of the linkability attacker: columns whose names read as demographics
    (DEMOGRAPHIC_WORDS as a word of the name) against the rest; if either side would be empty, the modelled
    columns in schema order, first half against second half. Deterministic given the schema."""
    import re

    columns = modelled_columns(schema)
    words = set(DEMOGRAPHIC_WORDS)
    demographic = [c for c in columns if words & set(re.split(r"[^a-z]+", c.lower()))]
    rest = [c for c in columns if c not in demographic]
    if not demographic or not rest:
        half = (len(columns) + 1) // 2
        demographic, rest = columns[:half], columns[half:]
    return [demographic, rest]


def sensitive_columns(train: pd.DataFrame, schema: Schema, target: str | None = None) -> list[str]:
    """The secrets inference attacks: the target when given, then categorical (discrete, boolean) columns by
    the Shannon entropy of their training values, highest first (the most there is to learn; ties in schema
    order), up to SENSITIVE_COLUMNS; a table with no categorical column uses its numeric columns in schema
    order."""
    columns = modelled_columns(schema)
    chosen = [target] if target in columns else []
    kinds = {spec.name: spec.kind for spec in schema.columns}
    categorical = [c for c in columns if kinds[c] not in NUMERIC_KINDS and c not in chosen]

    def entropy(column: str) -> float:
        shares = pd.Series(category_keys(train[column])).value_counts(normalize=True).to_numpy()
        return float(-(shares * np.log(shares)).sum())

    ranked = sorted(categorical, key=lambda c: -entropy(c)) or [c for c in columns if c not in chosen]
    return (chosen + ranked)[:SENSITIVE_COLUMNS]


def _attack_frame(frame: pd.DataFrame, train: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The modelled columns in types anonymeter reads alike across tables: numerics (datetimes as
    nanoseconds) as float with nulls at the training median, categories as their text keys (null its own)."""
    out = {}
    for spec in schema.columns:
        if spec.kind == "id":
            continue
        if spec.kind in NUMERIC_KINDS:
            values = _finite_or_nan(numeric_values(frame[spec.name], spec))
            reference = _finite_or_nan(numeric_values(train[spec.name], spec))
            fill = float(np.nanmedian(reference)) if (~np.isnan(reference)).any() else 0.0
            out[spec.name] = np.nan_to_num(values, nan=fill)
        else:
            out[spec.name] = category_keys(frame[spec.name]).astype(str)
    return pd.DataFrame(out)


def _is_numeric(schema: Schema, column: str) -> bool:
    return next(spec.kind for spec in schema.columns if spec.name == column) in NUMERIC_KINDS


def _evaluated(evaluator, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anonymeter warns when few queries succeed; the CI says so
        return evaluator.evaluate(**kwargs)


def _risk(attack: str, detail: str, evaluator, start: float) -> dict:
    import warnings

    # anonymeter warns (on stderr, mid-CLI output) when the attack does no better than its random baseline; the
    # report carries that as a note instead.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        risk = evaluator.risk(confidence_level=CONFIDENCE)
        results = evaluator.results(confidence_level=CONFIDENCE)
    low, high = (float(v) for v in risk.ci)
    out = {
        "attack": attack, "detail": detail, "risk": float(risk.value), "ci_low": low, "ci_high": high,
        "attack_rate": float(results.attack_rate.value), "control_rate": float(results.control_rate.value),
        "baseline_rate": float(results.baseline_rate.value), "n_attacks": int(results.n_attacks_ori),
        "seconds": round(time.perf_counter() - start, 3),
    }
    notes = list(dict.fromkeys(str(w.message).split(".")[0] for w in caught))
    if notes:
        out["note"] = "; ".join(notes)
    return out


class _quiet_logger:
    """The named logger raised to ERROR inside the block, and put back after it."""

    def __init__(self, name: str):
        import logging

        self.logger = logging.getLogger(name)

    def __enter__(self):
        import logging

        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


class _seeded_numpy:
    """numpy's global generator seeded inside the block and restored after it."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.state = np.random.get_state()
        np.random.seed(self.seed)

    def __exit__(self, *exc):
        np.random.set_state(self.state)


def _package_version(package: str) -> str | None:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:
        return None
