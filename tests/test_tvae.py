import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import tabtwin.generators.memory as memory
import tabtwin.generators.subnormals as subnormals
import tabtwin.generators.training as training
from tabtwin.generators.conditions import ConditionPlan
from tabtwin.generators.base import ModelError, SyntheticGenerator
from tabtwin.generators.persistence import seal
from tabtwin.generators.tvae import TVAE
from tabtwin.pipeline.encoding import Span
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.sample_data import make_sample_table

SMALL = dict(embedding_dim=16, compress_dims=(64, 64), decompress_dims=(64, 64), verbose=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets run fastest on one thread, and are not slowed down by other work sharing the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def groups_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """`group` decides `x` (a ~ N(0, 1), b ~ N(10, 1)) and mostly `shade`; group "c" is too rare to estimate."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n)
    x = np.where(group == "a", rng.normal(0, 1, n), rng.normal(10, 1, n))
    usual = np.where(group == "a", "light", "dark")
    unusual = np.where(group == "a", "dark", "light")
    shade = np.where(rng.random(n) < 0.9, usual, unusual)
    rare = pd.DataFrame({"group": ["c"] * 3, "x": [5.0, 5.2, 4.8], "shade": ["light"] * 3})
    return pd.concat([pd.DataFrame({"group": group, "x": x, "shade": shade}), rare], ignore_index=True)


@pytest.fixture(scope="module")
def mixed():
    return make_sample_table(300, seed=3)


@pytest.fixture(scope="module")
def mixed_model(mixed):
    return TVAE(epochs=5, batch_size=64, random_state=0, **SMALL).fit(mixed)


@pytest.fixture(scope="module")
def groups():
    return groups_table()


@pytest.fixture(scope="module")
def groups_model(groups):
    return TVAE(epochs=100, batch_size=100, random_state=0, **SMALL).fit(groups)


def weights_of(model):
    return {f"{m}.{k}": v.clone() for m, module in model._modules().items() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("n", [0, 1, 64, 101])
def test_samples_have_the_source_columns_dtypes_and_exact_rows(mixed, mixed_model, n):
    out = mixed_model.sample(n, seed=0)
    assert len(out) == n
    assert list(out.columns) == list(mixed.columns)
    assert out.dtypes.to_dict() == mixed.dtypes.to_dict()
    if n:
        assert out["amount"].notna().all()  # no nulls in the source, so none sampled
        assert out["amount"].between(mixed["amount"].min(), mixed["amount"].max()).all()
        assert set(out["colour"]) <= set(mixed["colour"])


def test_rows_across_sample_batches(mixed_model, monkeypatch):
    monkeypatch.setitem(memory.SAMPLE_BATCH, "cpu", 64)
    out = mixed_model.sample(150, seed=4)
    assert len(out) == 150
    assert out["customer_id"].is_unique
    # a batch boundary must not restart the random stream: batches differ from one another
    assert not out.iloc[:64].reset_index(drop=True).equals(out.iloc[64:128].reset_index(drop=True))


def test_seeded_fit_and_sample_are_reproducible(mixed):
    first = TVAE(epochs=3, random_state=0, **SMALL).fit(mixed)
    second = TVAE(epochs=3, random_state=0, **SMALL).fit(mixed)
    for name, tensor in weights_of(first).items():
        assert torch.equal(tensor, weights_of(second)[name]), name
    assert first.history_ == second.history_
    pd.testing.assert_frame_equal(first.sample(100, seed=1), second.sample(100, seed=1))
    assert not first.sample(100, seed=1).equals(first.sample(100, seed=2))
    other = TVAE(epochs=3, random_state=1, **SMALL).fit(mixed)
    assert not torch.equal(weights_of(other)["decoder.out.weight"], weights_of(first)["decoder.out.weight"])


def test_value_spans_are_sampled_with_the_learned_sigma(groups_model):
    """Same seed, so the same z and the same categories: only the value noise, scaled by sigma, differs."""
    decoder, values = groups_model.decoder_net_, groups_model.layout_.value_columns
    saved = decoder.log_sigma.detach().clone()
    outputs = {}
    try:
        for log_sigma in (-30.0, 30.0):  # sigma clamped to 0.01 and to 1.0
            with torch.no_grad():
                decoder.log_sigma.fill_(log_sigma)
            generator = torch.Generator(device=groups_model.device_).manual_seed(0)
            with torch.no_grad():
                outputs[log_sigma] = groups_model._generate(2000, None, generator)[:, values].cpu()
    finally:
        with torch.no_grad():
            decoder.log_sigma.copy_(saved)
    low, high = outputs[-30.0], outputs[30.0]
    assert high.abs().max() <= 1.0
    assert (high - low).abs().mean() > 0.3  # |N(0, 1)| averages 0.8 before clipping to [-1, 1]
    assert high.std() > low.std()


# ---------------------------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    "conditions",
    [{"colour": "red"}, {"colour": "blue", "grade": 3}, {"active": True}, {"city": None, "grade": 1}],
)
def test_every_row_satisfies_the_conditions(mixed_model, conditions):
    out = mixed_model.sample(120, conditions=conditions, seed=5)
    assert len(out) == 120
    for column, value in conditions.items():
        if value is None:
            assert out[column].isna().all()
        else:
            assert (out[column] == value).all(), column


@pytest.mark.parametrize(
    "conditions, name",
    [({"colour_typo": "red"}, "colour_typo"), ({"colour": "purple"}, "purple"), ({"amount": 3.0}, "amount")],
)
def test_bad_conditions_name_the_problem(mixed_model, conditions, name):
    with pytest.raises(TabtwinError, match=name):
        mixed_model.sample(10, conditions=conditions, seed=0)


def test_conditions_move_the_other_columns(groups, groups_model):
    b = groups_model.sample(1000, conditions={"group": "b"}, seed=1)
    a = groups_model.sample(1000, conditions={"group": "a"}, seed=1)
    assert b["x"].mean() > 7.5 and a["x"].mean() < 2.5
    assert (b["shade"] == "dark").mean() > 0.75  # 90 % in the data, 50 % overall
    both = groups_model.sample(1000, conditions={"group": "b", "shade": "dark"}, seed=1)
    assert both["x"].mean() > 7.5
    overall = groups_model.sample(1000, seed=1)["x"].mean()
    assert 2.5 < overall < 7.5


def test_rare_values_fall_back_to_the_prior(groups_model):
    stats = groups_model.latent_stats_
    span = groups_model.encoder_.spans_of("group")[0]
    positions = stats["position"].tolist()
    assert span.start + 2 not in positions  # "c" has 3 rows
    assert {span.start, span.start + 1} <= set(positions)
    assert stats["count"][positions.index(span.start)] > 250
    out = groups_model.sample(50, conditions={"group": "c"}, seed=0)
    assert (out["group"] == "c").all()


def test_discrete_spans_are_drawn_not_argmaxed(groups_model):
    # "c" is 0.5 % of the rows: drawn from the decoder's softmax it shows up, an argmax would never pick it
    out = groups_model.sample(4000, seed=1)
    assert 3 <= (out["group"] == "c").sum() <= 60
    assert 0.4 < (out["group"] == "a").mean() < 0.6


def test_latent_product_of_gaussians():
    model = TVAE(embedding_dim=2, verbose=False)
    model.device_ = torch.device("cpu")
    span = Span("g", "category", 0, 3, "softmax")
    model.latent_stats_ = {
        "position": torch.tensor([0, 1]),
        "count": torch.tensor([50.0, 50.0], dtype=torch.float64),
        "mean": torch.tensor([[2.0, 0.0], [0.0, -1.0]]),
        "var": torch.tensor([[0.25, 4.0], [0.5, 0.5]]),  # 4.0: broader than the prior
    }
    plan = lambda *codes: ConditionPlan(["g"] * len(codes), [span] * len(codes), list(codes))  # noqa: E731
    mean, std = model._latent_prior(plan(0))
    torch.testing.assert_close(mean, torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(std, torch.tensor([0.5, 1.0]))  # variance capped at the prior's
    mean, std = model._latent_prior(plan(0, 1))
    # precisions 4 + 2 - 1 = 5 and 1 + 2 - 1 = 2; means (4*2 + 0) / 5 and (0 + 2*-1) / 2
    torch.testing.assert_close(mean, torch.tensor([1.6, -1.0]))
    torch.testing.assert_close(std, torch.tensor([5.0, 2.0]).rsqrt())
    mean, std = model._latent_prior(plan(2))  # no statistics: N(0, I)
    torch.testing.assert_close(mean, torch.zeros(2))
    torch.testing.assert_close(std, torch.ones(2))


# ---------------------------------------------------------------------------------------------- persistence


def test_save_load_round_trip(groups, groups_model, tmp_path):
    groups_model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"] == "tvae" and config["params"]["compress_dims"] == [64, 64]
    for loaded in (TVAE.load(tmp_path / "m", device="cpu"), SyntheticGenerator.load(tmp_path / "m", device="cpu")):
        assert isinstance(loaded, TVAE) and loaded.compress_dims == [64, 64]
        for conditions in (None, {"group": "b"}, {"group": "a", "shade": "dark"}):
            want = groups_model.sample(200, conditions=conditions, seed=9)
            pd.testing.assert_frame_equal(loaded.sample(200, conditions=conditions, seed=9), want)
        np.testing.assert_array_equal(loaded.embed(groups.head(20)), groups_model.embed(groups.head(20)))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda data: data[:100], id="truncated-header"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"not a model file at all", id="text"),
        pytest.param(
            lambda data: data[: len(data) // 2],
            id="truncated",
        ),
        pytest.param(
            lambda data: saved_bytes([1, 2, 3]),
            id="not-a-dict",
        ),
    ],
)
@pytest.mark.parametrize("checksum", [True, False], ids=["checksum", "resealed"])
def test_corrupt_weights_are_a_model_error(groups_model, tmp_path, corrupt, checksum):
    groups_model.save(tmp_path / "m")
    weights = tmp_path / "m" / "weights.pt"
    weights.write_bytes(corrupt(weights.read_bytes()))
    if not checksum:  # with checksums of the corrupt file, torch.load's own failure must still become a ModelError
        seal(tmp_path / "m")
    with pytest.raises(ModelError, match="weights.pt"):
        TVAE.load(tmp_path / "m", device="cpu")


def saved_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rewrite_config(path, change):
    """Change config.json and write fresh checksums, so that only validation can refuse the change."""
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))
    seal(path)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda c: c.update(model="ctgan"), id="other-model"),
        pytest.param(lambda c: c["params"].update(generator_dim=[256, 256]), id="other-params"),
        pytest.param(lambda c: c["params"].update(embedding_dim=8), id="other-latent-size"),
        pytest.param(lambda c: c["params"].update(compress_dims=[32]), id="other-layers"),
        pytest.param(lambda c: c["state"]["latent_by_value"]["mean"].pop(), id="bad-latent-stats"),
        pytest.param(lambda c: c["state"]["latent_by_value"].pop("var"), id="missing-latent-stats"),
    ],
)
def test_config_that_does_not_fit_is_a_model_error(groups_model, tmp_path, change):
    groups_model.save(tmp_path / "m")
    rewrite_config(tmp_path / "m", change)
    with pytest.raises(ModelError):
        TVAE.load(tmp_path / "m", device="cpu")


# ---------------------------------------------------------------------------------------------- other uses


def test_embed_gives_deterministic_latent_means(groups, groups_model):
    z = groups_model.embed(groups.head(37))
    assert z.shape == (37, 16) and z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_array_equal(z, groups_model.embed(groups.head(37)))
    # the latent separates the groups that decide x
    a, b = z[groups.head(37)["group"] == "a"], z[groups.head(37)["group"] == "b"]
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 1.0


def test_score_is_higher_for_anomalies(groups, groups_model):
    typical = groups_model.score(groups.iloc[:200])
    assert typical.shape == (200,) and np.isfinite(typical).all()
    np.testing.assert_array_equal(typical, groups_model.score(groups.iloc[:200]))
    outliers = pd.DataFrame({"group": ["b", "a"], "x": [1e4, -1e4], "shade": ["dark", "light"]})
    rare_combination = pd.DataFrame({"group": ["a"] * 5, "x": [10.0, 9.0, 11.0, 10.5, 9.5], "shade": ["dark"] * 5})
    assert groups_model.score(outliers).min() > typical.max()
    assert groups_model.score(rare_combination).min() > np.quantile(typical, 0.75)
    assert groups_model.score(rare_combination).mean() > 3 * np.median(typical)


def test_score_is_the_training_loss_at_the_posterior_mean(groups, groups_model):
    x = torch.from_numpy(groups_model.encoder_.transform(groups))[:, groups_model.layout_.grouped]
    with torch.no_grad():
        reconstruction, kl = groups_model._batch_loss(x, torch.zeros(len(x), 16))  # zero noise: z = mu
    assert groups_model.score(groups).mean() == pytest.approx(float(reconstruction + kl), rel=1e-5)


def test_unfitted_model_raises():
    model = TVAE(verbose=False)
    for call in (lambda: model.sample(3), lambda: model.embed(pd.DataFrame()), lambda: model.score(pd.DataFrame())):
        with pytest.raises(TabtwinError, match="not fitted"):
            call()


# ---------------------------------------------------------------------------------------------- training


def test_batch_loss_matches_the_formula_by_hand():
    """The training loss, written out for a 1-value, one 2-way-span table: loss_factor * (Gaussian NLL + cross
    entropy) + KL, averaged over rows."""
    df = pd.DataFrame({"x": np.linspace(0, 1, 40), "k": ["a", "b"] * 20})
    model = TVAE(epochs=0, embedding_dim=2, compress_dims=(4,), decompress_dims=(4,), random_state=0,
                 verbose=False).fit(df)
    x = torch.from_numpy(model.encoder_.transform(df))[:, model.layout_.grouped][:8]
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reconstruction, kl = model._batch_loss(x, noise)
        mu, logvar = model.encoder_net_(x)
        raw = model.decoder_net_(mu + noise * torch.exp(0.5 * logvar))
        v = model.layout_.n_values
        sigma = model.decoder_net_.sigma()
        gaussian = ((x[:, :v] - torch.tanh(raw[:, :v])) ** 2 / (2 * sigma**2) + torch.log(sigma)).sum(1)
        ce = torch.zeros(8)
        for segment in model.layout_.softmax_segment.unique():
            cols = (model.layout_.softmax_segment == segment).nonzero().flatten() + v
            ce -= (x[:, cols] * torch.log_softmax(raw[:, cols], dim=1)).sum(1)
        expected_kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
    torch.testing.assert_close(reconstruction, (model.loss_factor * (gaussian + ce)).mean())
    torch.testing.assert_close(kl, expected_kl)


def test_a_training_step_reaches_every_parameter(mixed):
    model = TVAE(epochs=0, random_state=0, **SMALL).fit(mixed)
    before = weights_of(model)
    model.epochs = 1
    model.fit(mixed)  # the same seed gives the same initial weights
    after = weights_of(model)
    assert {k for k in after if not torch.equal(before[k], after[k])} == set(after)


def test_tiny_table_trains_and_samples():
    tiny = make_sample_table(10, seed=1)
    model = TVAE(epochs=3, random_state=0, **SMALL).fit(tiny)  # batch_size 500 > 10 rows
    assert len(model.history_) == 3
    out = model.sample(25, conditions={"colour": tiny["colour"].iloc[0]}, seed=0)
    assert len(out) == 25 and (out["colour"] == tiny["colour"].iloc[0]).all()


def test_training_loss_decreases_and_is_reported(mixed, monkeypatch):
    postfixes = []

    class Progress:
        def __iter__(self):
            return iter(range(12))

        def set_postfix(self, **values):
            postfixes.append(values)

    model = TVAE(epochs=12, batch_size=100, random_state=0, **SMALL)
    monkeypatch.setattr(model, "_progress", lambda: Progress())
    model.fit(mixed)
    history = model.history_
    assert [h["epoch"] for h in history] == list(range(12))
    assert all(h["loss"] == pytest.approx(h["reconstruction"] + h["kl"], rel=1e-5) for h in history)
    assert np.mean([h["loss"] for h in history[-3:]]) < 0.9 * history[0]["loss"]
    assert len(postfixes) == 12 and "loss" in postfixes[-1]


def test_params_round_trip_and_validation(mixed):
    params = TVAE(compress_dims=[32], decompress_dims=[16, 16], epochs=1).get_params()
    assert set(params) == {
        "embedding_dim", "compress_dims", "decompress_dims", "l2scale", "batch_size", "epochs",
        "loss_factor", "lr", "early_stopping", "compile", "device", "random_state", "verbose",
        "dp_epsilon", "dp_delta", "dp_max_grad_norm", "dp_reproducible",
    }  # fmt: skip
    model = TVAE(**{**params, "verbose": False, "embedding_dim": 4}).fit(mixed.head(50))
    assert model.embed(mixed.head(5)).shape == (5, 4)
    with pytest.raises(TabtwinError, match="batch_size must be a positive integer"):
        TVAE(batch_size=0, verbose=False).fit(mixed.head(50))
    for bad in (dict(embedding_dim=0), dict(compress_dims=[0]), dict(lr=-1.0), dict(epochs=-2), dict(l2scale=None)):
        model = TVAE(**bad, verbose=False)
        assert model.get_params()[next(iter(bad))] == next(iter(bad.values()))  # stored as given
        with pytest.raises(TabtwinError, match=next(iter(bad))):
            model.fit(mixed.head(50))


def test_estimator_contract(mixed):
    from sklearn.base import BaseEstimator, clone

    model = TVAE(compress_dims=(32,), verbose=False)
    assert isinstance(model, BaseEstimator) and model.get_params()["compress_dims"] == (32,)
    model.set_params(epochs=2, embedding_dim=8, decompress_dims=(16,))
    fitted = clone(model).fit(mixed.head(80))
    assert fitted.embed(mixed.head(3)).shape == (3, 8) and len(fitted.history_) == 2
    params = set(fitted.get_params())
    learned = {k for k in vars(fitted) if k not in params and not k.startswith("_")}
    assert {"encoder_", "layout_", "history_", "encoder_net_", "decoder_net_", "latent_stats_"} <= learned
    assert all(k.endswith("_") for k in learned), learned


def test_early_stopping_restores_the_best_epoch(mixed):
    model = TVAE(epochs=25, batch_size=100, early_stopping=2, random_state=0, verbose=False).fit(mixed)
    distances = [h["validation_distance"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmin(distances))
    assert len(distances) in (25, model.best_epoch_ + 2 + 1)


def test_latent_statistics_come_from_the_restored_best_weights(monkeypatch):
    """Conditional sampling reads per-value latent statistics; under early stopping they must be those of the
    encoder that is kept (the best epoch's), not of the last epoch's."""
    captured = {}
    split = TVAE._split_validation

    def capture(self, data, *args):
        train, validation = split(self, data, *args)
        captured["train"] = train
        return train, validation

    monkeypatch.setattr(TVAE, "_split_validation", capture)
    scripted = iter([5.0, 4.0, 1.0, 3.0, 3.0, 3.0, 3.0])  # best at epoch 2: stops after epoch 5 (patience 3)
    monkeypatch.setattr(TVAE, "_validation_distance", lambda self, rows: next(scripted))
    model = TVAE(epochs=40, batch_size=100, early_stopping=3, random_state=0, **SMALL).fit(groups_table(600, seed=1))
    assert model.best_epoch_ == 2 and len(model.history_) == 6
    kept = {k: v.clone() for k, v in model.latent_stats_.items()}
    model._fit_latent_stats(captured["train"])  # recomputed with the weights the model holds now
    for key in ("position", "count", "mean", "var"):
        torch.testing.assert_close(kept[key], model.latent_stats_[key], rtol=1e-5, atol=1e-6)


def test_compile_is_opt_in_and_trains(mixed):
    model = TVAE(epochs=1, compile=True, random_state=0, **SMALL)
    try:
        model.fit(mixed)
    except TabtwinError:
        raise
    except Exception as err:  # noqa: BLE001  (no compiler toolchain and the like)
        pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")
    assert np.isfinite(model.history_[0]["loss"]) and len(model.sample(10, seed=0)) == 10


def test_adam_with_l2_stalls_unused_weights_in_the_subnormal_range_unless_zeroed():
    """The source of TVAE's slowdown, in numbers: a weight with no data gradient, under Adam with L2 (TVAE's
    optimizer), shrinks into the subnormal range after ~1,600 steps (30 Adult epochs) and stays there; zeroing
    subnormals once per epoch (52 steps) leaves none at any epoch's end."""
    tiny = torch.finfo(torch.float32).tiny

    def subnormal(t):
        return int(((t != 0) & (t.abs() < tiny)).sum())

    for zero in (False, True):
        w = torch.nn.Parameter(torch.full((4,), 0.05))
        optimizer = training.adam([w], lr=1e-3, weight_decay=1e-5)
        seen = []
        for step in range(1, 4001):
            w.grad = torch.zeros_like(w)
            optimizer.step()
            if step % 52 == 0:
                if zero:
                    subnormals.zero_subnormals_(optimizer)
                seen.append(subnormal(w) + subnormal(optimizer.state[w]["exp_avg"]))
        if zero:
            assert sum(seen) == 0 and float(w.detach().abs().max()) == 0.0
        else:
            assert seen[20] == 0 and seen[-1] >= 4  # all normal at 1,092 steps; at 4,000 the 4 weights are subnormal


def test_zero_subnormals_flushes_negligible_weights_and_moments_only():
    # Weights and first moments below 1e-20 go to zero (their products with gradients are subnormal); Adam's
    # second moments only when subnormal (sqrt(1e-30) is far below eps, but nothing is gained by touching them).
    values = [1e-39, -1e-40, 1e-30, 0.0, -2.0, 1.1e-38, 2e-20, -5e-21]
    w = torch.nn.Parameter(torch.tensor(values))
    optimizer = training.adam([w], lr=1e-3)
    w.grad = torch.zeros_like(w)
    optimizer.step()
    with torch.no_grad():
        w.copy_(torch.tensor(values))
    optimizer.state[w]["exp_avg"].copy_(torch.tensor([3e-41, 1.0, 0.0, 5e-39, 1.2e-38, -1e-44, 3e-20, 1e-25]))
    optimizer.state[w]["exp_avg_sq"].copy_(torch.tensor([1e-39, 1e-30, 0.0, 1.0, 1e-20, 2e-38, 0.0, 0.0]))
    subnormals.zero_subnormals_(optimizer)
    assert w.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0, -2.0, 0.0, 2e-20, 0.0], rel=1e-6, abs=0)
    assert optimizer.state[w]["exp_avg"].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 3e-20, 0.0], rel=1e-6, abs=0)
    assert optimizer.state[w]["exp_avg_sq"].tolist() == pytest.approx([0.0, 1e-30, 0.0, 1.0, 1e-20, 2e-38, 0.0, 0.0], rel=1e-6, abs=0)
