"""Variational Bayesian Gaussian mixtures for many 1-D columns at once.

The encoder needs one mixture per continuous column. Fitting them one by one with scikit-learn's
BayesianGaussianMixture is the slow part of every CTGAN-style encoder, so this module fits all columns in one
batched loop over (columns, rows, components) arrays. It follows the same model as scikit-learn's
`BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process")` (Bishop, PRML 10.2, with a
stick-breaking prior on the weights) specialised to one dimension, where every matrix is a scalar.

Two departures from scikit-learn's defaults, both about robustness:

- The prior's location and scale are the column's median and IQR / 1.349 (the standard deviation for normal
  data), where scikit-learn uses the mean and variance. The Wishart prior adds one prior variance to every
  mode's variance sum, so with the variance as prior a single far outlier (1e6 in a column of values near 30)
  made every mode at least sd / sqrt(n_k) wide: thousands instead of tens.
- Convergence is judged per column on the component weights: a column stops when no weight moves by more than
  `tol` in one iteration, and leaves the batch so the others do not pay for it. The mean log-normaliser used
  before flattens on plateaus while components are still emptying; it stopped after 3 to 14 iterations, 0.05
  to 0.1 nats per row short of the converged fit (Adult's hours-per-week, a refunds column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import digamma, logsumexp

_EPS = 10 * np.finfo(np.float64).eps


@dataclass
class Mixture1D:
    """A fitted 1-D mixture, in the column's own units, sorted by mean."""

    weights: np.ndarray
    means: np.ndarray
    stds: np.ndarray


def fit_mixtures(
    columns: list[np.ndarray],
    n_components: int = 10,
    weight_prior: float = 1e-3,
    max_iter: int = 200,
    tol: float = 1e-4,
    reg_covar: float = 1e-6,
) -> list[Mixture1D]:
    """Fit a Dirichlet-process Gaussian mixture to each array in `columns` (finite values only).

    Columns may differ in length: shorter ones are padded and masked out of every sum. A column has converged
    when no component weight (a share of its rows) changes by more than `tol` between two iterations; it then
    leaves the batch. `max_iter` bounds the slowest column: on Adult's numeric columns (32,561 rows) age,
    education-num, the capital columns and hours-per-week converge within 85 iterations; fnlwgt's weights still
    drift by 1e-4 per iteration at 500 (its mean log-likelihood then moves by about 1e-3 nats per row), so
    200 iterations bound its cost (about 2 s on one core) at no visible loss.
    Returns one `Mixture1D` per column, in its own units, components sorted by mean (none pruned).
    """
    x, mask, centre, spread = _standardised_batch(columns)
    n_components = max(1, n_components)
    resp = _initial_responsibilities(x, mask, n_components)
    prior = dict(mean=0.0, beta=1.0, dof=1.0, var=1.0, weight=weight_prior)  # data are robustly standardised
    rows = np.maximum(mask.sum(axis=1), 1.0)[:, None]
    weights = resp.sum(axis=2) / rows
    active = np.arange(len(columns))
    for _ in range(max_iter):
        if not len(active):
            break
        sub_x, sub_mask = x[active], mask[active]
        params = _m_step(sub_x, sub_mask, resp[active], prior, reg_covar)
        sub_resp, _ = _e_step(sub_x, sub_mask, params)
        resp[active] = sub_resp
        new_weights = sub_resp.sum(axis=2) / rows[active]
        moved = np.abs(new_weights - weights[active]).max(axis=1)
        weights[active] = new_weights
        active = active[moved > tol]
    params = _m_step(x, mask, resp, prior, reg_covar)
    return [
        _to_column_units(params, c, centre[c], spread[c])
        for c in range(len(columns))
    ]


def _standardised_batch(columns: list[np.ndarray]):
    """Stack columns into a (C, n) array of robust z-scores ((x - median) / (IQR / 1.349)) plus a (C, n) mask.

    The IQR falls back to the standard deviation, then to 1, when it is 0 (half the values alike).
    """
    n = max(len(col) for col in columns)
    x = np.zeros((len(columns), n))
    mask = np.zeros((len(columns), n))
    centre = np.zeros(len(columns))
    spread = np.ones(len(columns))
    for c, col in enumerate(columns):
        col = np.asarray(col, dtype=np.float64)
        if len(col):
            low, centre[c], high = np.quantile(col, [0.25, 0.5, 0.75])
            robust = (high - low) / 1.349
            spread[c] = robust if robust > 0 else (col.std() or 1.0)
        x[c, : len(col)] = (col - centre[c]) / spread[c]
        mask[c, : len(col)] = 1.0
    return x, mask, centre, spread


def _initial_responsibilities(x: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Hard-assign every value to the nearest of k per-column quantiles, as a (C, K, n) array.

    A few Lloyd steps refine the centres; duplicated quantiles (spikes such as a column that is mostly 0)
    simply attract no values and start empty, which the Dirichlet-process prior then prunes.
    """
    levels = (np.arange(k) + 0.5) / k
    centres = np.nan_to_num(np.nanquantile(np.where(mask > 0, x, np.nan), levels, axis=1).T)  # (C, K)
    for _ in range(5):
        nearest = np.abs(x[:, None, :] - centres[:, :, None]).argmin(axis=1)  # (C, n)
        onehot = (nearest[:, None, :] == np.arange(k)[None, :, None]) * mask[:, None, :]
        counts = onehot.sum(axis=2)
        sums = np.einsum("ckn,cn->ck", onehot, x)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    return onehot.astype(np.float64)


# Arrays are laid out (columns, components, rows) so that every sum over rows is a contiguous reduction
# and every per-component operation is a broadcast over a long row axis.


def _m_step(x, mask, resp, prior, reg_covar):
    nk = resp.sum(axis=2) + _EPS  # (C, K); resp is already zero on padding
    xbar = np.einsum("ckn,cn->ck", resp, x) / nk
    sk = np.maximum(np.einsum("ckn,cn->ck", resp, x * x) / nk - xbar**2, 0.0) + reg_covar
    beta = prior["beta"] + nk
    mean = (prior["beta"] * prior["mean"] + nk * xbar) / beta
    dof = prior["dof"] + nk
    # Posterior scale of the precision's Gamma (the 1-D Wishart), as an inverse: a "variance sum".
    var_sum = prior["var"] + nk * sk + prior["beta"] * nk / (prior["beta"] + nk) * (xbar - prior["mean"]) ** 2
    # Stick-breaking: component k takes a share of what components 0..k-1 left over.
    tail = np.cumsum(nk[:, ::-1], axis=1)[:, ::-1] - nk
    alpha1 = 1.0 + nk
    alpha2 = prior["weight"] + tail
    return dict(beta=beta, mean=mean, dof=dof, var_sum=var_sum, alpha1=alpha1, alpha2=alpha2)


def _e_step(x, mask, p):
    """Responsibilities (C, K, n) and each column's mean log-normaliser (the convergence signal)."""
    d12 = digamma(p["alpha1"] + p["alpha2"])
    left_over = np.cumsum(digamma(p["alpha2"]) - d12, axis=1)
    expected_log_weight = digamma(p["alpha1"]) - d12 + np.concatenate(
        [np.zeros_like(left_over[:, :1]), left_over[:, :-1]], axis=1
    )
    expected_log_precision = digamma(0.5 * p["dof"]) + np.log(2.0) - np.log(p["var_sum"])
    precision = p["dof"] / p["var_sum"]
    # log rho = a + b x + c x^2 per component: three broadcasts instead of a squared difference.
    a = (
        expected_log_weight + 0.5 * expected_log_precision - 0.5 * np.log(2 * np.pi) - 0.5 / p["beta"]
        - 0.5 * precision * p["mean"] ** 2
    )
    b = precision * p["mean"]
    c = -0.5 * precision
    log_rho = a[:, :, None] + x[:, None, :] * (b[:, :, None] + c[:, :, None] * x[:, None, :])
    top = log_rho.max(axis=1, keepdims=True)
    np.subtract(log_rho, top, out=log_rho)
    np.exp(log_rho, out=log_rho)
    total = log_rho.sum(axis=1, keepdims=True)
    resp = np.multiply(log_rho, mask[:, None, :] / total, out=log_rho)
    log_norm = (top + np.log(total))[:, 0, :]
    mean_log_norm = (log_norm * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    return resp, mean_log_norm


def _to_column_units(p, c, centre, spread) -> Mixture1D:
    a1, a2 = p["alpha1"][c], p["alpha2"][c]
    stick = a1 / (a1 + a2)
    weights = stick * np.concatenate([[1.0], np.cumprod(a2 / (a1 + a2))[:-1]])
    weights = weights / weights.sum()
    means = p["mean"][c] * spread + centre
    stds = np.sqrt(p["var_sum"][c] / p["dof"][c]) * spread
    order = np.argsort(means)
    return Mixture1D(weights=weights[order], means=means[order], stds=stds[order])


def prune(mixture: Mixture1D, threshold: float) -> Mixture1D:
    """Drop components whose weight is below `threshold` (keeping at least the heaviest one)."""
    keep = mixture.weights >= threshold
    if not keep.any():
        keep = mixture.weights == mixture.weights.max()
    weights = mixture.weights[keep]
    return Mixture1D(weights=weights / weights.sum(), means=mixture.means[keep], stds=mixture.stds[keep])
