"""Tests for the flagship generator: dependence learned, exact conditions, reproducibility, files, other uses."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from tabtwin.generators import load_model, model_class
from tabtwin.generators.autoregressive import AutoregressiveGenerator
from tabtwin.generators.heads import ColumnAR, order_mask
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import infer_schema

from conftest import make_correlated_table

FAST = dict(hidden=64)


@pytest.fixture(scope="module")
def table():
    return make_correlated_table(3000, seed=5)


@pytest.fixture(scope="module")
def fitted(table, device):
    return AutoregressiveGenerator(**FAST, device=device, random_state=0).fit(table)


def _share(df, column, value, given=None):
    rows = df if given is None else df[df[given[0]] == given[1]]
    return float((rows[column] == value).mean())


def test_registered_and_learns_the_dependence_between_columns(table, fitted):
    assert model_class("autoregressive") is AutoregressiveGenerator
    synthetic = fitted.sample(3000, seed=1)
    assert list(synthetic.columns) == list(table.columns)
    # region depends on age (north/east above 45): a model of independent columns would give about 0.5 here
    old_real = _share(table[table.age > 45], "region", "north") + _share(table[table.age > 45], "region", "east")
    old_synthetic = _share(synthetic[synthetic.age > 45], "region", "north") + _share(synthetic[synthetic.age > 45], "region", "east")
    assert old_real == 1.0
    assert old_synthetic > 0.9  # independent columns: about 0.5
    # segment follows income (90 %), member follows income too
    high = synthetic.income > table.income.median()
    assert (synthetic.segment[high] == "high").mean() > 0.8
    assert abs(np.corrcoef(synthetic.income, synthetic.age)[0, 1] - np.corrcoef(table.income, table.age)[0, 1]) < 0.1


def test_conditions_hold_exactly_and_shape_the_other_columns(table, fitted):
    synthetic = fitted.sample(2000, conditions={"region": "north"}, seed=2)
    assert len(synthetic) == 2000 and (synthetic.region == "north").all()
    # north is only ever older people: the model must draw ages for that segment, not for the whole table
    assert (synthetic.age > 45).mean() > 0.6  # independent columns would give the table's 0.13
    assert (table.age > 45).mean() < 0.6
    both = fitted.sample(500, conditions={"region": "south", "segment": "high"}, seed=3)
    assert (both.region == "south").all() and (both.segment == "high").all()
    text = fitted.sample(10, conditions={"region": " NORTH "}, seed=3)  # forgiving text match, as the CLI sends
    assert (text.region == "north").all()


def test_bad_conditions_and_rows_are_refused_by_name(fitted):
    with pytest.raises(TabtwinError, match="unknown column 'nope'"):
        fitted.sample(5, conditions={"nope": 1})
    with pytest.raises(TabtwinError, match="has no value 'mars'"):
        fitted.sample(5, conditions={"region": "mars"})
    with pytest.raises(TabtwinError, match="'income' .continuous. is not supported"):
        fitted.sample(5, conditions={"income": 3.0})
    with pytest.raises(TabtwinError, match="non-negative integer"):
        fitted.sample(-1)
    assert len(fitted.sample(0)) == 0


def test_seeded_fits_and_samples_are_reproducible(table, fitted, device):
    again = AutoregressiveGenerator(**FAST, device=device, random_state=0).fit(table)
    pd.testing.assert_frame_equal(fitted.sample(300, seed=4), again.sample(300, seed=4))
    assert not fitted.sample(300, seed=4).equals(fitted.sample(300, seed=5))


def test_save_and_load_give_the_same_model(tmp_path, fitted, device):
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "encoder.json", "weights.pt"]
    loaded = load_model(tmp_path / "m", device=device)
    assert isinstance(loaded, AutoregressiveGenerator)
    pd.testing.assert_frame_equal(fitted.sample(200, seed=6), loaded.sample(200, seed=6))
    assert loaded.get_params() == {**fitted.get_params(), "device": device}


def test_early_stopping_keeps_the_best_epoch(fitted):
    history = fitted.history_
    best = min(range(len(history)), key=lambda i: history[i]["validation_nll"])
    assert fitted.best_epoch_ == best
    # the weights in place are the best epoch's: their validation NLL is the best one recorded
    assert min(h["validation_nll"] for h in history) == history[fitted.best_epoch_]["validation_nll"]


def test_score_ranks_impossible_rows_as_anomalies_and_embed_has_its_shape(table, fitted):
    normal = table.iloc[:200].copy()
    odd = normal.copy()
    odd["region"] = np.where(odd.age > 45, "south", "north")  # never seen: the old in the south, the young north
    assert np.median(fitted.score(odd)) > np.median(fitted.score(normal)) + 2.0
    vectors = fitted.embed(normal)
    assert vectors.shape == (200, 64) and np.isfinite(vectors).all()


def test_parameters_follow_the_estimator_contract(table):
    model = AutoregressiveGenerator(batch_size=0)
    assert model.get_params()["batch_size"] == 0  # stored as given
    with pytest.raises(TabtwinError, match="batch_size must be a positive integer"):
        model.fit(table)
    model.set_params(batch_size=64, epochs=1)
    assert model.fit(table.iloc[:200]).batch_size == 64


def test_a_time_budget_ends_training_after_the_epoch_that_spends_it(table, device):
    # A budget far below one epoch's time: training stops after the first epoch, whatever the cap says.
    small = table.iloc[:600]
    budgeted = AutoregressiveGenerator(**FAST, epochs=20, early_stopping=100, max_seconds=1e-6, device=device,
                                       random_state=0).fit(small)
    assert len(budgeted.history_) == 1
    capped = AutoregressiveGenerator(**FAST, epochs=3, early_stopping=100, device=device, random_state=0).fit(small)
    assert len(capped.history_) == 3
    with pytest.raises(TabtwinError, match="max_seconds"):
        AutoregressiveGenerator(max_seconds=-1.0).fit(small)


def test_tiny_table_fits_saves_loads_and_samples(tmp_path, device):
    tiny = pd.DataFrame({"colour": ["red", "blue", "red", "green", "blue", "red"], "size": [1, 2, 1, 3, 2, 1]})
    model = AutoregressiveGenerator(epochs=3, device=device).fit(tiny)
    model.save(tmp_path / "tiny")
    sample = load_model(tmp_path / "tiny", device=device).sample(50, conditions={"colour": "green"}, seed=0)
    assert (sample.colour == "green").all() and set(sample["size"]) <= {1, 2, 3}


def test_order_mask_lets_each_head_see_only_earlier_columns():
    mask = order_mask([2, 0, 1], 3)
    assert mask.tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 0]]


def test_conditions_on_a_table_with_integer_labels_keep_the_labels():
    """Labels such as 0 survive decoding, so a condition on column 0 (given as 0 or "0") is written under it."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({0: rng.choice(["a", "b", "c"], 300), 1: rng.normal(size=300)})
    fitted = AutoregressiveGenerator(epochs=2, random_state=0, device="cpu").fit(df)
    for key in (0, "0"):
        out = fitted.sample(40, conditions={key: "b"}, seed=1)
        assert list(out.columns) == [0, 1]
        assert (out[0] == "b").all()


def test_the_per_head_forward_equals_the_masked_matmul_with_its_gradients():
    """forward runs each head on the prefix of the permuted inputs it sees; hidden_states runs all heads as one
    masked matmul. Same logits and gradients, up to float rounding, for any order and with residual blocks."""
    torch.manual_seed(0)
    cardinalities = [5, 2, 30, 7, 64]
    net = ColumnAR(cardinalities, 32, depth=3, dropout=0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        net.positions.uniform_(-1, 1)
    codes = torch.stack([torch.randint(0, k, (200,)) for k in cardinalities], 1)
    for order in ([0, 1, 2, 3, 4], [3, 0, 4, 2, 1]):
        per_head = net(codes, order)
        x = net.hidden_states(codes, order_mask(order, 5))
        masked = [net.logits(x[:, j], j) for j in range(5)]
        grads = []
        for logits in (per_head, masked):
            net.zero_grad()
            sum(F.cross_entropy(lg, codes[:, j]) for j, lg in enumerate(logits)).backward(retain_graph=True)
            grads.append([p.grad.clone() for p in net.parameters()])
        for a, b in zip(per_head, masked):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
