"""Per-value latent Gaussians: how a VAE (TVAE) keeps the unconditioned columns coherent with a condition.

The base writes the conditioned one-hots after sampling, so rows satisfy conditions exactly; to keep the other
columns coherent with them, z is drawn from a per-value latent Gaussian instead of N(0, I). Once training ends the
encoder runs once more over the training rows (batched, no grad) and, for every value of every discrete column with
at least `MIN_CONDITION_ROWS` rows, `fit_latent_stats` keeps the count, mean and diagonal variance of the posterior
means of the rows holding it: aggregate statistics only, never a row. Several conditions combine (`latent_prior`)
as a product of Gaussians divided by the prior counted once too often: precision P = 1 + sum_k (P_k - 1),
mean = sum_k P_k m_k / P, with each P_k floored at the prior's 1 so the combined precision stays positive (one
condition therefore samples its own Gaussian, variance capped at 1). Rare values (fewer than `MIN_CONDITION_ROWS`
training rows: too few to estimate a mean and variance in `embedding_dim` dimensions) fall back to the prior
N(0, I): the rows still hold the condition exactly, but the other columns follow the unconditional distribution
rather than the value's own. When no value has enough rows (a 6-row table, or columns of hundreds of values in 400
rows) every condition falls back, and the model saves `latent_by_value: null`. Cost: one extra encoder pass at
fit, O(n_conditions * embedding_dim) at sampling, no rejection loop.

The statistics are a dict of tensors: "position" (values,) the encoder column of each kept value's one-hot,
"count" (values,) float64, "mean" and "var" (values, latent) float32.
"""

from __future__ import annotations

import torch

from tabtwin.generators.conditions import ConditionPlan
from tabtwin.pipeline.rules import Int, Items, Num, ascending, check_fields, fail

MIN_CONDITION_ROWS = 5  # a value needs this many training rows for its latent Gaussian to be estimated
INFERENCE_BATCH = 10_000  # rows per encoder (or decoder) pass outside training
VAR_FLOOR = 1e-4  # keeps per-value latent precisions finite when a latent dimension is constant
# Latent means and variances of a trained encoder are of order 1; the bound keeps float32 sampling finite.
BOUND = 1e6
KEYS = ("position", "count", "mean", "var")


def category_positions(spans) -> list[int]:
    """Encoder column of every discrete value's one-hot, for the encoder's `output_info` spans."""
    return [span.start + code for span in spans if span.role == "category" for code in range(span.dim)]


@torch.no_grad()
def fit_latent_stats(encode, data: torch.Tensor, positions: list[int], dim: int) -> dict | None:
    """Count, mean and variance of the posterior means (`encode(rows)`: (rows, dim)) of the rows of `data`
    (rows, width; encoder order) holding each value at `positions`; None when no value has MIN_CONDITION_ROWS."""
    if not positions:
        return None
    index = torch.tensor(positions, dtype=torch.long, device=data.device)
    count = torch.zeros(len(positions), dtype=torch.float64, device=data.device)
    total = torch.zeros((len(positions), dim), dtype=torch.float64, device=data.device)
    squares = torch.zeros_like(total)
    for start in range(0, data.shape[0], INFERENCE_BATCH):
        x = data[start : start + INFERENCE_BATCH]
        mu = encode(x).double()
        onehot = x[:, index].double()  # (rows, values)
        count += onehot.sum(dim=0)
        total += onehot.T @ mu
        squares += onehot.T @ mu**2
    keep = count >= MIN_CONDITION_ROWS
    if not bool(keep.any()):  # every value too rare: conditions fall back to the prior
        return None
    mean = total[keep] / count[keep, None]
    var = (squares[keep] / count[keep, None] - mean**2).clamp_min(VAR_FLOOR)
    return {"position": index[keep], "count": count[keep], "mean": mean.float(), "var": var.float()}


def latent_prior(stats: dict | None, plan: ConditionPlan | None, dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(dim,) mean and std of the latent Gaussian to sample z from under `plan` (N(0, I) without one)."""
    mean = torch.zeros(dim, device=device)
    precision = torch.ones(dim, device=device)
    if plan is None or stats is None:
        return mean, torch.ones(dim, device=device)
    positions = stats["position"].tolist()
    weighted = torch.zeros(dim, device=device)
    for span, code in zip(plan.spans, plan.codes):
        if span.start + code not in positions:  # too rare to estimate: the prior, i.e. no evidence
            continue
        i = positions.index(span.start + code)
        value_precision = (1.0 / stats["var"][i]).clamp_min(1.0)
        precision = precision + value_precision - 1.0
        weighted = weighted + value_precision * stats["mean"][i]
    return weighted / precision, precision.rsqrt()


def latent_stats_to_json(stats: dict | None) -> dict | None:
    return None if stats is None else {key: stats[key].tolist() for key in KEYS}


def latent_stats_from_json(saved, dim: int, width: int, positions: list[int], device) -> dict | None:
    """The statistics as saved in config.json, checked (StateError naming the field): `dim`-wide means and
    variances within BOUND, counts of at least MIN_CONDITION_ROWS, ascending positions among `positions` (the
    encoder's category columns, of `width`)."""
    if saved is None:
        return None
    check_fields(saved, {"position": Items(Int(0, width - 1)), "count": Items(Num(MIN_CONDITION_ROWS)),
                         "mean": Items(Items(Num(-BOUND, BOUND))), "var": Items(Items(Num(0.0, BOUND, open_low=True)))},
                 "latent_by_value")
    n = len(saved["position"])
    if any(len(saved[key]) != n for key in KEYS[1:]) or any(len(row) != dim for key in KEYS[2:] for row in saved[key]):
        fail("latent_by_value", f"must hold {n} counts, and means and variances of {dim} numbers each")
    ascending(saved["position"], "latent_by_value", "position")
    if not set(saved["position"]) <= set(positions):
        fail("latent_by_value", "position must name category columns of the encoder")
    dtypes = {"position": torch.long, "count": torch.float64, "mean": torch.float32, "var": torch.float32}
    return {key: torch.tensor(saved[key], dtype=dtypes[key], device=device) for key in KEYS}
