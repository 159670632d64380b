"""Variational Bayesian Gaussian mixtures for many 1-D columns at once.

The encoder needs one mixture per continuous column. Fitting them one by one with scikit-learn's
BayesianGaussianMixture is the slow part of every CTGAN-style encoder, so this module fits all columns in one
batched loop over (columns, rows, components) arrays. It follows the same model as scikit-learn's
`BayesianGaussianMixture(weight_concentration_prior_type="dirichlet_process")` (Bishop, PRML 10.2, with a
stick-breaking prior on the weights) specialised to one dimension, where every matrix is a scalar.
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
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> list[Mixture1D]:
    """Fit a Dirichlet-process Gaussian mixture to each array in `columns` (finite values only).

    Columns may differ in length: shorter ones are padded and masked out of every sum.
    """
    x, mask, centre, spread = _standardised_batch(columns)
    n_components = max(1, n_components)
    resp = _initial_responsibilities(x, mask, n_components)
    prior = dict(mean=0.0, beta=1.0, dof=1.0, var=1.0, weight=weight_prior)  # data are standardised
    previous = None
    for _ in range(max_iter):
        params = _m_step(x, mask, resp, prior, reg_covar)
        resp, mean_log_norm = _e_step(x, mask, params)
        if previous is not None and np.all(np.abs(mean_log_norm - previous) < tol):
            break
        previous = mean_log_norm
    params = _m_step(x, mask, resp, prior, reg_covar)
    return [
        _to_column_units(params, c, centre[c], spread[c])
        for c in range(len(columns))
    ]


def _standardised_batch(columns: list[np.ndarray]):
    """Stack columns into a (C, n) array of z-scores plus a (C, n) validity mask."""
    n = max(len(col) for col in columns)
    x = np.zeros((len(columns), n))
    mask = np.zeros((len(columns), n))
    centre = np.zeros(len(columns))
    spread = np.ones(len(columns))
    for c, col in enumerate(columns):
        col = np.asarray(col, dtype=np.float64)
        centre[c] = col.mean() if len(col) else 0.0
        std = col.std() if len(col) else 0.0
        spread[c] = std if std > 0 else 1.0
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
