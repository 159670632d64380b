"""pipeline/mixture.py fits the model scikit-learn's BayesianGaussianMixture fits (Dirichlet-process prior, 1-D).

Both are run to convergence on clear multi-mode samples and must find the same modes. Tolerances: two fits of
the same variational model differ only through initialisation (quantile Lloyd steps here, k-means in
scikit-learn) and where they stop, so they must agree well inside the data's own sampling noise: a weight's
standard error is sqrt(w (1 - w) / n), about 0.009 for w = 0.5 at n = 3000, and a mode's mean has a standard
error of sd / sqrt(n w), about 0.03 sd. We allow 0.01 on weights, 0.05 sd on means and 5 % on standard
deviations; the fits in fact agree to about 1e-3 in weight and 1e-3 sd in mean.

Note: at the encoder's settings (max_iter=200, each column stops when no weight moves by more than 1e-4 in an
iteration) surplus components that share one cluster may remain, since the Dirichlet-process prior drains them
only over several hundred iterations; tests/test_spikes.py checks the default fit per cluster. This test pins
the model, not the encoder's stopping rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture

from tabtwin.pipeline.mixture import fit_mixtures, prune

WEIGHT_THRESHOLD = 0.005  # the encoder's pruning threshold


def draw(rng, n, weights, means, stds):
    k = rng.choice(len(weights), n, p=weights)
    return rng.normal(np.asarray(means)[k], np.asarray(stds)[k])


def sklearn_modes(values: np.ndarray):
    model = BayesianGaussianMixture(
        n_components=10, weight_concentration_prior_type="dirichlet_process", weight_concentration_prior=1e-3,
        max_iter=5000, tol=1e-6, random_state=0,
    ).fit(values[:, None])
    assert model.converged_
    keep = model.weights_ >= WEIGHT_THRESHOLD
    order = np.argsort(model.means_[keep, 0])
    weights = model.weights_[keep][order]
    return weights / weights.sum(), model.means_[keep, 0][order], np.sqrt(model.covariances_[keep, 0, 0])[order]


@pytest.fixture(scope="module")
def columns():
    rng = np.random.default_rng(0)
    three = draw(rng, 3000, [0.5, 0.3, 0.2], [-5.0, 0.0, 6.0], [1.0, 0.5, 1.5])
    two = draw(rng, 2000, [0.6, 0.4], [100.0, 130.0], [5.0, 8.0])  # another scale, and a shorter column (padding)
    return [three, two]


def test_converged_mixtures_match_scikit_learn(columns):
    ours = [prune(m, WEIGHT_THRESHOLD) for m in fit_mixtures(columns, n_components=10, max_iter=4000, tol=0.0)]
    for values, mixture, true_modes in zip(columns, ours, (3, 2)):
        weights, means, stds = sklearn_modes(values)
        assert len(mixture.weights) == len(weights) == true_modes
        np.testing.assert_allclose(mixture.weights, weights, atol=0.01)
        np.testing.assert_allclose(mixture.means, means, atol=0.05 * stds.min())
        np.testing.assert_allclose(mixture.stds, stds, rtol=0.05)
