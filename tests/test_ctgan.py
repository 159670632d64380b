import json

import numpy as np
import pandas as pd
import pytest
import torch

from tabtwin.generators.base import ModelError, SyntheticGenerator, plan_conditions
from tabtwin.generators.persistence import seal
import tabtwin.generators.base as base
from tabtwin.generators.ctgan import CTGAN, Critic, gradient_penalty
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.sample_data import make_sample_table


def grouped_table(n=1000, seed=0):
    """A discrete column that decides a continuous one: the conditional vector must carry that."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n, p=[0.8, 0.2])
    return pd.DataFrame(
        {
            "group": group,
            "value": np.where(group == "a", rng.normal(0, 1, n), rng.normal(10, 1, n)),
            "colour": rng.choice(["red", "green", "blue"], n),
        }
    )


@pytest.fixture(scope="module")
def trained():
    df = make_sample_table(600, seed=3)
    return df, CTGAN(epochs=3, batch_size=100, random_state=0, verbose=False).fit(df)


@pytest.fixture(scope="module")
def grouped_model():
    df = grouped_table()
    return df, CTGAN(epochs=150, batch_size=100, random_state=0, verbose=False).fit(df)


def test_samples_have_the_source_columns_and_exact_row_count(trained):
    df, model = trained
    sample = model.sample(1234, seed=0)
    assert len(sample) == 1234 and list(sample.columns) == list(df.columns)
    assert sample["count"].dtype == df["count"].dtype and sample["joined"].dtype == df["joined"].dtype
    assert set(sample["colour"]) <= set(df["colour"])
    assert model.sample(0).shape == (0, df.shape[1])


def test_losses_are_recorded_and_finite(trained):
    _, model = trained
    assert len(model.history_) == 3
    assert all(np.isfinite([h["generator_loss"], h["critic_loss"]]).all() for h in model.history_)


def test_same_seed_same_model_and_samples():
    df = make_sample_table(300, seed=1)
    a = CTGAN(epochs=2, batch_size=50, random_state=5, verbose=False).fit(df)
    b = CTGAN(epochs=2, batch_size=50, random_state=5, verbose=False).fit(df)
    for pa, pb in zip(a.generator_.parameters(), b.generator_.parameters()):
        assert torch.equal(pa, pb)
    pd.testing.assert_frame_equal(a.sample(500, seed=9), b.sample(500, seed=9))
    assert not a.sample(500, seed=9).equals(a.sample(500, seed=10))


def test_conditions_hold_on_every_row(trained):
    df, model = trained
    one = model.sample(700, conditions={"colour": "red"}, seed=1)
    assert len(one) == 700 and (one["colour"] == "red").all()
    two = model.sample(333, conditions={"colour": "blue", "grade": 3, "active": True}, seed=1)
    assert (two["colour"] == "blue").all() and (two["grade"] == 3).all() and two["active"].all()
    from_cli = model.sample(50, conditions={"grade": "4", "active": "false"}, seed=1)  # strings, as typed
    assert (from_cli["grade"] == 4).all() and (~from_cli["active"]).all()


def test_condition_on_the_null_category(trained):
    df, model = trained
    sample = model.sample(100, conditions={"city": None}, seed=0)
    assert sample["city"].isna().all()


@pytest.mark.parametrize(
    "conditions, words",
    [
        ({"nope": "x"}, ["'nope'", "columns are"]),
        ({"colour": "purple"}, ["'colour'", "'purple'"]),
        ({"amount": 3.0}, ["'amount'", "discrete"]),
        ("colour=red", ["mapping"]),
    ],
)
def test_bad_conditions_are_named(trained, conditions, words):
    _, model = trained
    with pytest.raises(TabtwinError) as err:
        model.sample(10, conditions=conditions)
    for word in words:
        assert word in str(err.value)


def test_bad_row_counts_are_refused(trained):
    _, model = trained
    for n in (-1, 2.5, "10"):
        with pytest.raises(TabtwinError, match="non-negative integer"):
            model.sample(n)


def test_sampler_draws_real_rows_that_match_the_condition(trained):
    _, model = trained
    sampler = model.sampler_
    torch.manual_seed(0)
    cond, mask, rows = sampler.sample_for_training(4000, multi_rate=0.3)
    codes = sampler.codes[rows]  # (B, C) value of each drawn row
    wanted = ((cond[:, None, :] * (sampler.matrix.T[None] * (sampler.local[None, None] + 1))).sum(-1) - 1).long()
    assert torch.equal(wanted[mask], codes[mask])  # every fixed column matches the real row
    assert ((cond @ sampler.matrix) == mask.float()).all()  # exactly one hot per fixed column, none elsewhere


def test_training_by_sampling_favours_rare_values():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"kind": np.where(rng.random(5000) < 0.01, "rare", "common"), "x": rng.normal(size=5000)})
    model = CTGAN(epochs=0, random_state=0, verbose=False).fit(df)
    cond, _, rows = model.sampler_.sample_for_training(20000, multi_rate=0.0)
    rare = model.encoder_.category_values("kind").index("rare")
    share = (model.sampler_.codes[rows, 0] == rare).float().mean().item()
    # Log-frequency: log(51) / (log(51) + log(4951)) ~ 0.32, against 0.01 by plain frequency.
    assert 0.25 < share < 0.4


def test_generator_learns_to_honour_the_condition(grouped_model):
    df, model = grouped_model
    plan = plan_conditions(model.encoder_, {"group": "b"})
    raw = model._generate(2000, plan, torch.Generator().manual_seed(0)).numpy()
    (span,) = model.encoder_.spans_of("group")
    chosen = raw[:, span.start : span.stop].argmax(axis=1)
    assert (chosen == plan.codes[0]).mean() > 0.9  # before the base forces the one-hot


def test_conditioning_moves_the_dependent_column(grouped_model):
    df, model = grouped_model
    b = model.sample(2000, conditions={"group": "b"}, seed=0)["value"]
    a = model.sample(2000, conditions={"group": "a"}, seed=0)["value"]
    assert b.mean() > 5 > a.mean()


def test_save_and_load_give_the_same_samples(trained, tmp_path):
    df, model = trained
    path = model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "encoder.json", "weights.pt"]
    loaded = SyntheticGenerator.load(path, device="cpu")
    assert isinstance(loaded, CTGAN) and loaded.get_params()["pac"] == 10
    pd.testing.assert_frame_equal(loaded.sample(300, seed=4), model.sample(300, seed=4))
    conditioned = loaded.sample(100, conditions={"colour": "green"}, seed=4)
    pd.testing.assert_frame_equal(conditioned, model.sample(100, conditions={"colour": "green"}, seed=4))
    assert not list(tmp_path.glob(".model.*"))  # no staging folder left behind


def test_broken_model_dirs_are_refused(trained, tmp_path):
    _, model = trained
    path = model.save(tmp_path / "model")
    with pytest.raises(ModelError, match="not found"):
        CTGAN.load(tmp_path / "missing")
    (path / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="weights.pt"):
        CTGAN.load(path)
    model.save(path)
    config = json.loads((path / "config.json").read_text())
    config["params"]["embedding_dim"] = 64  # weights no longer fit the network
    (path / "config.json").write_text(json.dumps(config))
    seal(path)  # fresh checksums: the edit must be refused by what it changed, not only by the checksum
    with pytest.raises(ModelError, match="does not fit"):
        CTGAN.load(path)
    config["model"] = "unknown"
    (path / "config.json").write_text(json.dumps(config))
    seal(path)
    with pytest.raises(ModelError, match="'unknown'"):
        SyntheticGenerator.load(path)
    (path / "config.json").write_text("{")
    with pytest.raises(ModelError, match="corrupt"):
        CTGAN.load(path)


def test_weights_file_is_a_plain_state_dict(trained, tmp_path):
    _, model = trained
    path = model.save(tmp_path / "model")
    weights = torch.load(path / "weights.pt", weights_only=True)  # refuses anything but tensors and containers
    assert set(weights) == {"generator", "critic"}


def test_table_without_discrete_columns_trains_unconditionally():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300), "y": rng.gamma(2, size=300)})
    model = CTGAN(epochs=2, batch_size=50, random_state=0, verbose=False).fit(df)
    assert model.sample(77, seed=0).shape == (77, 2)


def test_batch_must_be_a_multiple_of_pac():
    with pytest.raises(TabtwinError, match="multiple of pac"):
        CTGAN(batch_size=55, epochs=1, verbose=False).fit(make_sample_table(100))


def test_unfitted_model_says_so():
    with pytest.raises(TabtwinError, match="not fitted"):
        CTGAN().sample(5)


def test_early_stopping_keeps_the_best_validation_epoch(monkeypatch):
    held_out = {}
    split = CTGAN._split_validation

    def capture(self, data, *args):
        train, validation = split(self, data, *args)
        held_out["rows"] = validation
        return train, validation

    monkeypatch.setattr(CTGAN, "_split_validation", capture)
    model = CTGAN(epochs=30, batch_size=100, early_stopping=3, random_state=0, verbose=False)
    model.fit(make_sample_table(1000, seed=4))
    distances = [h["validation_distance"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(distances))
    assert len(distances) == 30 or len(distances) == model.best_epoch_ + 3 + 1  # stopped 3 epochs after the best
    assert len(held_out["rows"]) == 100  # 10 % held out
    # best weights restored
    assert model._validation_distance(held_out["rows"]) == pytest.approx(distances[model.best_epoch_])


def test_critic_reads_data_blocks_then_condition_blocks():
    """A pac group's input is [data of row 1, ..., data of row pac, cond of row 1, ..., cond of row pac]."""
    critic = Critic(4, 3, (5,), pac=2).eval()
    data, cond = torch.randn(6, 4), torch.randn(6, 3)
    weight = torch.cat([critic.data_in.weight, critic.cond_in.weight], dim=1)  # one linear layer over the input
    pre = torch.cat([data.reshape(3, 8), cond.reshape(3, 6)], dim=1) @ weight.t() + critic.data_in.bias
    expected = critic.layers[0](torch.nn.functional.leaky_relu(pre, 0.2))
    torch.testing.assert_close(critic(data, cond), expected)
    bound = 1 / (7 * 2) ** 0.5  # initialised as nn.Linear over the whole input of a pac group
    assert weight.abs().max() <= bound and weight.abs().max() > 0.8 * bound


def test_gradient_penalty_of_a_linear_critic_is_known():
    """A critic that is linear in its input (one hidden unit kept positive, eval mode) has the same input
    gradient everywhere: w_out * W_in's row, so the penalty is (|that| - 1)^2 exactly."""
    critic = Critic(3, 2, (1,), pac=2).eval()
    with torch.no_grad():
        critic.data_in.weight.copy_(torch.tensor([[0.5, 0.0, 1.0, 2.0, 0.0, 0.0]]))
        critic.cond_in.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
        critic.data_in.bias.fill_(100.0)  # the LeakyReLU sees positive inputs only: slope 1
        critic.layers[0].weight.fill_(3.0)
    data, cond = torch.rand(8, 3), torch.rand(8, 2)
    norm = 3.0 * (0.25 + 1.0 + 4.0 + 1.0) ** 0.5
    penalty = gradient_penalty(critic, data, cond)
    assert penalty.detach().item() == pytest.approx((norm - 1.0) ** 2, rel=1e-5)
    penalty.backward()  # through create_graph: the penalty's own gradient reaches the weights
    assert critic.layers[0].weight.grad is not None and float(critic.layers[0].weight.grad.abs().sum()) > 0
    assert float(critic.data_in.weight.grad.abs().sum()) > 0 and float(critic.cond_in.weight.grad.abs().sum()) > 0


def test_training_pulls_the_critics_input_gradient_towards_norm_one():
    torch.manual_seed(0)
    critic = Critic(4, 0, (16, 16), pac=2).eval()
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    data = torch.randn(64, 4)
    first = gradient_penalty(critic, data.clone(), None).item()
    for _ in range(100):
        optimizer.zero_grad()
        gradient_penalty(critic, data.clone(), None).backward()
        optimizer.step()
    assert first > 0.1 and gradient_penalty(critic, data.clone(), None).item() < 0.1 * first


def test_a_training_step_changes_every_parameter():
    """loss -> backward -> Adam reaches every weight of both networks (nothing detached by mistake)."""
    df = grouped_table(300, seed=2)
    model = CTGAN(epochs=0, batch_size=50, generator_dim=(16,), discriminator_dim=(16,), embedding_dim=8,
                  random_state=0, verbose=False).fit(df)
    before = {k: v.clone() for k, v in weights_of(model).items()}
    model.epochs = 1
    model.fit(df)  # same seed: the same initial weights, then one epoch of steps
    after = weights_of(model)
    changed = {k for k in after if "running" not in k and "num_batches" not in k and not torch.equal(before[k], after[k])}
    trainable = {k for k in after if "running" not in k and "num_batches" not in k}
    assert changed == trainable


def weights_of(model):
    return {f"{m}.{k}": v.detach().clone() for m, module in model._modules().items() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "params, name",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=-10), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(epochs=-1), "epochs"),
        (dict(pac=0), "pac"),
        (dict(embedding_dim=0), "embedding_dim"),
        (dict(generator_dim=(0,)), "generator_dim"),
        (dict(discriminator_dim="256"), "discriminator_dim"),
        (dict(generator_lr=0.0), "generator_lr"),
        (dict(tau=float("nan")), "tau"),
        (dict(multi_condition_rate=1.5), "multi_condition_rate"),
        (dict(random_state=-1), "random_state"),
    ],
)
def test_bad_parameters_are_refused_in_fit_by_name(params, name):
    model = CTGAN(**params, verbose=False)  # stored as given: no validation in __init__
    for key, value in params.items():
        assert getattr(model, key) == value or value != value
    with pytest.raises(TabtwinError, match=name):
        model.fit(make_sample_table(60))


def test_estimator_contract_get_set_params_and_clone():
    from sklearn.base import BaseEstimator, clone

    model = CTGAN(generator_dim=[64], epochs=2, verbose=False)
    assert isinstance(model, BaseEstimator)
    params = model.get_params()
    assert params["generator_dim"] == [64] and params["compile"] is False and params["pac"] == 10
    assert model.set_params(pac=5, batch_size=50) is model and model.pac == 5 and model.batch_size == 50
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    with pytest.raises(ValueError):
        model.set_params(no_such_parameter=1)


def test_learned_state_ends_in_underscore(trained):
    _, model = trained
    params = set(model.get_params())
    learned = {k for k in vars(model) if k not in params and not k.startswith("_")}
    assert learned and all(k.endswith("_") for k in learned), learned
    assert {"encoder_", "layout_", "history_", "best_epoch_", "generator_", "critic_", "sampler_"} <= learned


def test_compile_is_opt_in_and_trains():
    """compile=True wraps the training modules in torch.compile; where this machine cannot compile, the error
    must come from torch, and compile=False (the default) is what every other test exercises."""
    df = grouped_table(200, seed=1)
    model = CTGAN(epochs=1, batch_size=50, generator_dim=(16,), discriminator_dim=(16,), embedding_dim=8,
                  compile=True, random_state=0, verbose=False)
    try:
        model.fit(df)
    except TabtwinError:
        raise
    except Exception as err:  # noqa: BLE001  (a missing compiler toolchain and the like)
        pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")
    assert len(model.history_) == 1 and np.isfinite(model.history_[0]["generator_loss"])
    assert len(model.sample(20, seed=0)) == 20


