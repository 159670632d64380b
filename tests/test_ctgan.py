import json

import numpy as np
import pandas as pd
import pytest
import torch

from tabtwin.generators.base import ModelError, SyntheticGenerator, plan_conditions
import tabtwin.generators.base as base
from tabtwin.generators.ctgan import CTGAN, ConditionSampler, Critic, Workspace, random_bits
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
    with pytest.raises(ModelError, match="does not fit"):
        CTGAN.load(path)
    config["model"] = "unknown"
    (path / "config.json").write_text(json.dumps(config))
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

    def capture(self, data):
        train, validation = split(self, data)
        held_out["rows"] = validation
        return train, validation

    monkeypatch.setattr(CTGAN, "_split_validation", capture)
    model = CTGAN(epochs=30, batch_size=100, early_stopping=3, random_state=0, verbose=False)
    model.fit(make_sample_table(1000, seed=4))
    distances = [h["validation_distance"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(distances))
    assert len(distances) == 30 or len(distances) == model.best_epoch_ + 3 + 1  # stopped 3 epochs after the best
    assert len(held_out["rows"]) == 100  # 10 % held out
    model._validation = held_out["rows"]
    assert model._validation_distance() == pytest.approx(distances[model.best_epoch_])  # best weights restored


def _autograd_penalty(critic, data, cond):
    inputs = [x.clone().requires_grad_(True) for x in (data, cond) if x is not None]
    grads = torch.autograd.grad(critic(*inputs).sum(), inputs, create_graph=True)
    per_group = torch.cat([g.reshape(-1, g.shape[1] * critic.pac) for g in grads], dim=1)  # a pac group's input
    return ((per_group.norm(2, dim=1) - 1) ** 2).mean()


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("hidden", [(16, 12), (20,)])
@pytest.mark.parametrize("cond_dim", [3, 0])
def test_hand_written_critic_step_matches_autograd(training, hidden, cond_dim):
    """WGAN-GP critic loss + penalty through autograd's double backward, against `step_gradients`. Both draw the
    interpolation weights and then the dropout masks in the same order, so with one seed they see the same ones."""
    critic = Critic(4, cond_dim, hidden, pac=2).train(training)
    torch.manual_seed(0)
    real, fake = torch.randn(12, 4 + cond_dim), torch.randn(12, 4 + cond_dim)
    groups, gp_weight = 6, 10.0
    work = Workspace.allocate(12, 2, 4, cond_dim, 5, (8,), torch.device("cpu"))
    work.block(work.critic_data, 0).copy_(real[:, :4])
    work.block(work.critic_data, 1).copy_(fake[:, :4])
    if cond_dim:
        work.block(work.critic_cond, 0).copy_(real[:, 4:])
        work.block(work.critic_cond, 1).copy_(fake[:, 4:])

    torch.manual_seed(1)
    with torch.no_grad():
        loss = critic.step_gradients(work, gp_weight)
    by_hand = [p.grad.clone() for p in critic.parameters()]

    critic.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    alpha = torch.rand(groups, 1).repeat_interleave(2, dim=0)  # per pac group, as rows
    both = torch.cat([real, fake])
    scores = critic(both[:, :4], both[:, 4:] if cond_dim else None)
    reference = scores[groups:].mean() - scores[:groups].mean()
    mixed = torch.lerp(fake, real, alpha)
    (reference + gp_weight * _autograd_penalty(critic, mixed[:, :4], mixed[:, 4:] if cond_dim else None)).backward()
    torch.testing.assert_close(loss, reference.detach())
    for hand, param in zip(by_hand, critic.parameters()):
        torch.testing.assert_close(hand, param.grad, rtol=1e-4, atol=1e-6)


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


@pytest.mark.parametrize("discrete", [True, False])
def test_hand_written_generator_step_matches_autograd(monkeypatch, discrete):
    """The generator's loss (critic score of the Gumbel-softmax output, plus the condition's cross-entropy) and its
    gradient w.r.t. every generator parameter, by hand (`_fake_batch` + `_generator_step`) and through autograd on
    the modules' own forward passes, with the same noise and dropout masks."""
    df = grouped_table(200, seed=5)
    if not discrete:
        df = df[["value"]].assign(other=lambda d: d["value"] * 2 + 1)
    model = CTGAN(epochs=1, batch_size=20, pac=2, embedding_dim=6, generator_dim=(8, 7), discriminator_dim=(9,),
                  random_state=0, verbose=False).fit(df)
    model.generator_.train()
    model.critic_.train()
    data = torch.from_numpy(model.encoder_.transform(df))[:, model.layout_.grouped]
    model.sampler_ = ConditionSampler.from_data(data, model.layout_)
    gumbel = torch.randn(20, len(model.layout_.softmax_columns)).abs()
    monkeypatch.setattr(base, "gumbel_noise", lambda like, generator=None: gumbel.clone())
    params = list(model.generator_.parameters())
    work = Workspace.allocate(20, 2, data.shape[1], model.sampler_.cond_dim, 6, (8, 7), torch.device("cpu"))

    torch.manual_seed(3)
    with torch.no_grad():
        raw, cond, mask = model._fake_batch(data, work)
        torch.manual_seed(4)
        loss = model._generator_step(raw, cond, mask, work)
    by_hand = [p.grad.clone() for p in params]

    for p in params:
        p.grad = None
    z = work.noise.clone()
    raw_ref = model.generator_(z if cond is None else torch.cat([z, cond], dim=1))
    fake = base.activate(raw_ref, model.layout_, tau=model.tau)
    torch.manual_seed(4)
    reference = -model.critic_(fake, cond).mean()
    if cond is not None:
        reference = reference + model.sampler_.condition_loss(raw_ref, cond, mask)
    reference.backward()
    torch.testing.assert_close(raw, raw_ref.detach())
    torch.testing.assert_close(work.block(work.critic_data, 1), fake.detach())
    torch.testing.assert_close(loss, reference.detach())
    for hand, param in zip(by_hand, params):
        torch.testing.assert_close(hand, param.grad, rtol=1e-4, atol=1e-5 * float(param.grad.abs().max()) + 1e-7)


def test_random_bits_are_fair_coins():
    torch.manual_seed(0)
    bits = random_bits(torch.Size((300, 70)), torch.device("cpu"))
    assert bits.shape == (300, 70) and set(bits.unique().tolist()) == {0.0, 1.0}
    assert abs(bits.mean().item() - 0.5) < 0.01  # 21,000 fair coins: sd 0.0035
    assert abs((bits[:, 1:] * bits[:, :-1]).mean().item() - 0.25) < 0.01  # neighbours independent
    assert not torch.equal(bits, random_bits(torch.Size((300, 70)), torch.device("cpu")))
