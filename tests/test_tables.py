"""The flagship's table sampler (generators.tables) against the model's exact distribution.

A fitted model on three discrete columns (3 x 4 x 5 = 60 joint codes) has its weights pushed away from the
fit so the columns depend strongly on each other; its exact joint probabilities come from teacher-forced
log-likelihoods over all 60 code rows. The samplers' counts are tested against them with a chi-square test
(seeded draws, so each test is deterministic), and the same test is shown to reject a sampler with one table
row swapped.
"""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare

from tabtwin.generators import tables
from tabtwin.generators.autoregressive import AutoregressiveGenerator
from tabtwin.generators.heads import order_mask
from tabtwin.generators.tables import OrderTables, TableCache

ROWS = 60_000
CARDINALITIES = [3, 4, 5]
TABLE_ORDER = order_mask([0, 1, 2], 3)
SPREAD = 0.3  # weights pushed this far (standard deviation) from the fit
ALL_CODES = torch.tensor(list(itertools.product(*(range(k) for k in CARDINALITIES))))


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"a": rng.choice(["x", "y", "z"], 400), "b": rng.choice(list("pqrs"), 400),
                          "c": rng.choice(list("ABCDE"), 400)})
    fitted = AutoregressiveGenerator(epochs=1, hidden=16, depth=2, random_state=0, device="cpu").fit(table)
    assert fitted.net_.cardinalities == CARDINALITIES
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in fitted.net_.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * SPREAD)
    fitted.tables_ = TableCache()
    return fitted


def exact(model, order, drawn) -> np.ndarray:
    """(60,) probability of each row of ALL_CODES from the heads of the `drawn` columns under `order`."""
    with torch.no_grad():
        logits = model.net_(ALL_CODES, order)
        log_p = sum(torch.log_softmax(logits[j], 1).gather(1, ALL_CODES[:, j, None])[:, 0] for j in drawn)
    return torch.exp(log_p).double().numpy()


def counts(codes: np.ndarray) -> np.ndarray:
    flat = np.ravel_multi_index(tuple(codes.T), CARDINALITIES)
    return np.bincount(flat, minlength=len(ALL_CODES))


def p_value(codes: np.ndarray, probabilities: np.ndarray) -> float:
    """Chi-square test of the codes' joint counts against `probabilities`, the cells expected fewer than 5 times
    pooled into one."""
    expected = probabilities / probabilities.sum() * len(codes)
    rare = expected < 5
    observed = np.r_[counts(codes)[~rare], counts(codes)[rare].sum()]
    return chisquare(observed, np.r_[expected[~rare], expected[rare].sum()]).pvalue


def draw(model, n=ROWS, conditions=None, seed=0) -> np.ndarray:
    return model._sample_batch(n, model._plan_conditions(conditions), torch.Generator().manual_seed(seed))


def test_the_tables_draw_the_models_joint_distribution_and_a_swapped_row_is_caught(model):
    probabilities = exact(model, [0, 1, 2], [0, 1, 2])
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert probabilities.max() > 4 * probabilities.min()  # far from uniform: a wrong sampler shows
    assert p_value(draw(model), probabilities) > 1e-3
    assert isinstance(model.tables_.orders[()], OrderTables)  # drawn from the tables
    broken = OrderTables.build(model.net_, {}, [0, 1, 2], TABLE_ORDER, tables.TABLE_BYTES)
    broken.tables[2][[1, 2]] = broken.tables[2][[2, 1]]  # head c reads a's code 0 as 1 and 1 as 0
    codes = broken.draw(ROWS, torch.Generator().manual_seed(0), "autoregressive").numpy()
    assert p_value(codes, probabilities) < 1e-6


def test_past_the_cap_the_matmul_path_draws_the_same_distribution(model, monkeypatch):
    monkeypatch.setattr(model, "tables_", TableCache(limit=OrderTables.size(model.net_, [0, 1, 2]) - 1))
    calls = []
    head_logits = type(model.net_).head_logits
    monkeypatch.setattr(type(model.net_), "head_logits", lambda *a: calls.append(a[-1]) or head_logits(*a))
    codes = draw(model)
    assert model.tables_.orders[()] is None and calls == [0, 1, 2]  # one matmul pass per column
    assert p_value(codes, exact(model, [0, 1, 2], [0, 1, 2])) > 1e-3


def test_conditions_hold_and_the_rest_follow_the_models_conditional(model):
    codes = draw(model, conditions={"b": "r"})
    assert (codes[:, 1] == 2).all()
    probabilities = exact(model, [1, 0, 2], [0, 2]) * (ALL_CODES[:, 1] == 2).numpy()
    assert p_value(codes, probabilities) > 1e-3
    assert set(model.tables_.orders) == {(), ((1, 2),)}  # one cached order per set of conditions


def test_seeded_rows_repeat_and_do_not_depend_on_the_chunks(model, monkeypatch):
    first = draw(model, 3000, seed=5)
    np.testing.assert_array_equal(first, draw(model, 3000, seed=5))
    assert not np.array_equal(first, draw(model, 3000, seed=6))
    monkeypatch.setattr(tables, "CPU_CHUNK", 7)
    np.testing.assert_array_equal(first, draw(model, 3000, seed=5))


@pytest.mark.parametrize("uniform, expected", [(0.0, 3), (1.0 - 2**-24, 1)])
def test_codes_of_probability_zero_are_never_drawn_at_the_ends_of_the_uniform(model, monkeypatch, uniform, expected):
    """Column c's codes 0 and 4 get probability 0 (their logits -1e4 underflow): the largest uniform lands on
    code 1, the smallest on code 3, never on a code of probability 0 nor on the padding after the last code."""
    net = model.net_
    saved = net.out[2].bias.detach().clone()
    with torch.no_grad():
        net.out[2].bias[[0, 4]] = -1e4
    try:
        order = OrderTables.build(net, {}, [0, 1, 2], TABLE_ORDER, tables.TABLE_BYTES)
        real = torch.rand
        monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.full_like(real(*a, **k), uniform))
        codes = order.draw(500, torch.Generator().manual_seed(0), "autoregressive")
    finally:
        with torch.no_grad():
            net.out[2].bias.copy_(saved)
    assert (codes[:, 2] == expected).all()


def test_the_cache_holds_at_most_its_limit_dropping_the_oldest_order(model):
    size = OrderTables.size(model.net_, [1, 2])  # one column conditioned: two drawn
    cache = TableCache(limit=2 * size)
    for value in ("x", "y", "z"):
        plan = model._plan_conditions({"a": value})
        fixed = {span.start: code for span, code in zip(plan.spans, plan.codes)}
        cache.get(model.net_, fixed, [1, 2], TABLE_ORDER)
    assert list(cache.orders) == [((0, 1),), ((0, 2),)] and cache.held() <= cache.limit
