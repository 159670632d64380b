"""Opt-in differentially private training (DP-SGD through opacus) of the TVAE, and `fit --dp-epsilon`."""

import json
import math

import pytest
import torch

from tabtwin.flows.cli import main
from tabtwin.generators.privacy import NOT_COVERED, default_delta
from tabtwin.generators.tvae import TVAE
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.ingest import write_table
from tabtwin.pipeline.sample_data import make_sample_table

SMALL = dict(embedding_dim=8, compress_dims=(16,), decompress_dims=(16,), batch_size=50, epochs=2, verbose=False)


@pytest.fixture(scope="module")
def frame():
    return make_sample_table(300, seed=5)


@pytest.fixture(scope="module")
def private(frame):
    return TVAE(dp_epsilon=2.0, random_state=4, dp_reproducible=True, **SMALL).fit(frame)


def test_the_spent_epsilon_is_within_the_target_and_recorded_per_epoch(private, frame):
    privacy = private.privacy_
    assert 0 < privacy["epsilon"] <= 2.0
    assert privacy["epsilon"] > 1.5  # the noise search aims at the target, not far below it
    assert privacy["delta"] == pytest.approx(default_delta(len(frame))) and privacy["delta"] < 1 / len(frame)
    assert privacy["noise_multiplier"] > 0 and privacy["max_grad_norm"] == 1.0
    assert privacy["epochs"] == 2 and privacy["steps"] == 2 * 6  # Poisson rate 50/300: 6 expected batches an epoch
    assert privacy["not_covered"] == list(NOT_COVERED)
    spent = [record["epsilon"] for record in private.history_]
    assert 0 < spent[0] < spent[1] == pytest.approx(privacy["epsilon"])


def test_clipping_and_noise_cover_every_parameter(private):
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

    assert isinstance(private._private_module, GradSampleModule)
    optimizer = private._private_optimizer
    assert isinstance(optimizer, DPOptimizer)
    assert optimizer.max_grad_norm == 1.0 and optimizer.noise_multiplier == private.privacy_["noise_multiplier"]
    clipped = {id(p) for p in optimizer.params}
    networks = [*private.encoder_net_.parameters(), *private.decoder_net_.parameters()]
    assert {id(p) for p in networks} == clipped  # log sigma included: no parameter learns outside the clipping
    # log sigma moved, so it did get (clipped, noised) per-row gradients through _LogSigma.
    assert not torch.allclose(private.decoder_net_.log_sigma, torch.full_like(private.decoder_net_.log_sigma, math.log(0.1)))
    # opacus's hooks are gone once training ends: sampling and scoring do not collect activations.
    assert not any(hasattr(p, "grad_sample") for p in networks)


def test_the_privacy_block_round_trips_and_non_private_models_have_none(private, frame, tmp_path):
    private.save(tmp_path / "dp")
    config = json.loads((tmp_path / "dp" / "config.json").read_text())
    assert config["state"]["privacy"] == private.privacy_
    assert config["params"]["dp_epsilon"] == 2.0
    loaded = TVAE.load(tmp_path / "dp", device="cpu")
    assert loaded.privacy_ == private.privacy_
    plain = TVAE(random_state=0, **SMALL).fit(frame)
    assert plain.privacy_ is None
    plain.save(tmp_path / "plain")
    assert "privacy" not in json.loads((tmp_path / "plain" / "config.json").read_text())["state"]
    assert TVAE.load(tmp_path / "plain", device="cpu").privacy_ is None


def test_private_noise_is_secret_unless_asked_to_be_reproducible(private, frame, monkeypatch):
    # A seed in a run's parameters must not let an attacker replay the noise: by default equal seeds differ ...
    first, second = (TVAE(dp_epsilon=2.0, random_state=4, **SMALL).fit(frame) for _ in range(2))
    assert first.history_ != second.history_
    # ... and the secret is the only source of what differs: fixed, it makes the fits repeat.
    from tabtwin.generators import privacy

    monkeypatch.setattr(privacy.secrets, "randbits", lambda bits: 12345)
    third, fourth = (TVAE(dp_epsilon=2.0, random_state=4, **SMALL).fit(frame) for _ in range(2))
    assert third.history_ == fourth.history_
    assert first.privacy_["noise_seed"].startswith("secret")
    assert private.privacy_["noise_seed"].startswith("random_state")


def test_seeded_private_fits_are_reproducible_and_conditions_still_hold(private, frame):
    again = TVAE(dp_epsilon=2.0, random_state=4, dp_reproducible=True, **SMALL).fit(frame)
    assert again.history_ == private.history_
    assert again.sample(50, seed=1).equals(private.sample(50, seed=1))
    other = TVAE(dp_epsilon=2.0, random_state=5, dp_reproducible=True, **SMALL).fit(frame)
    assert other.history_ != private.history_
    # No per-value latent statistics under DP (they would read the rows outside the accountant) ...
    assert private.latent_stats_ is None
    column = next(c for c in frame.columns if frame[c].dtype == object and frame[c].nunique() > 1)
    value = frame[column].dropna().iloc[0]
    rows = private.sample(40, conditions={column: value}, seed=0)
    assert (rows[column] == value).all()  # ... and conditions hold all the same


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(dp_epsilon=0), "dp_epsilon"),
        (dict(dp_epsilon=1.0, early_stopping=5), "early_stopping"),
        (dict(dp_epsilon=1.0, compile=True), "compile"),
        (dict(dp_delta=1e-5), "dp_delta"),
        (dict(dp_epsilon=1.0, dp_delta=1.5), "dp_delta"),
        (dict(dp_epsilon=1.0, dp_max_grad_norm=0), "dp_max_grad_norm"),
    ],
)
def test_bad_dp_parameters_are_refused_by_name(frame, params, words):
    with pytest.raises(TabtwinError, match=words):
        TVAE(**{**SMALL, **params}).fit(frame)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def table(tmp_path, frame):
    return write_table(frame, tmp_path / "table.csv")


@pytest.mark.parametrize("model", ["autoregressive", "ctgan"])
def test_fit_refuses_dp_for_other_models_in_one_line(table, tmp_path, capsys, model):
    code, out, err = run(capsys, "fit", table, "--model", model, "--dp-epsilon", 3, "--out", tmp_path / "m")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert f"not {model}" in err and "supported by tvae only" in err
    assert not (tmp_path / "m").exists()


def test_fit_takes_a_time_budget_for_the_flagship_only(table, tmp_path, capsys):
    code, out, err = run(capsys, "fit", table, "--model", "tvae", "--max-seconds", 30, "--out", tmp_path / "m")
    assert code == 2 and out == "" and err.strip().count("\n") == 0
    assert "--max-seconds is supported by autoregressive only, not tvae" in err and not (tmp_path / "m").exists()
    code, out, err = run(capsys, "fit", table, "--model", "autoregressive", "--epochs", 20, "--max-seconds", "1e-6",
                         "--quiet", "--device", "cpu", "--out", tmp_path / "a")
    assert code == 0, err
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["params"]["max_seconds"] == 1e-6
    assert "1 epoch, ended by time budget" in out  # a budget far below one epoch: training ends after the first


def test_fit_refuses_a_delta_without_epsilon_and_a_bad_epsilon(table, tmp_path, capsys):
    code, _, err = run(capsys, "fit", table, "--model", "tvae", "--dp-delta", "1e-5", "--out", tmp_path / "m")
    assert code == 2 and "--dp-delta needs --dp-epsilon" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", str(table), "--model", "tvae", "--dp-epsilon", "-1", "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2 and "positive number" in capsys.readouterr().err


def test_fit_with_dp_epsilon_saves_and_prints_the_spent_budget(table, tmp_path, capsys):
    code, out, _ = run(
        capsys, "fit", table, "--model", "tvae", "--epochs", 1, "--batch-size", 100, "--dp-epsilon", 3,
        "--dp-delta", "1e-4", "--seed", 1, "--quiet", "--out", tmp_path / "m",
    )
    assert code == 0
    privacy = json.loads((tmp_path / "m" / "config.json").read_text())["state"]["privacy"]
    assert 0 < privacy["epsilon"] <= 3 and privacy["delta"] == 1e-4 and privacy["delta_rule"] == "given"
    assert f"epsilon {privacy['epsilon']:.3g} spent (target 3)" in out
    dp_lines = out[out.index("differential privacy"):].splitlines()[:2]
    assert "not covered" in dp_lines[1] and all(len(line) <= 100 for line in dp_lines)  # fits a terminal


@pytest.mark.parametrize("epsilon", [0, -1.0, float("nan"), float("inf")])
def test_a_flow_refuses_a_bad_epsilon_before_reading_the_data(tmp_path, epsilon):
    # Flows and deployments get their parameters without the CLI's parser: the run checks them itself,
    # before loading the data (here a file that does not exist, which would be the error otherwise).
    from tabtwin.flows.spec import Places, RunSpec
    from tabtwin.flows.synthesize import run_sequence

    with pytest.raises(TabtwinError, match="must be a positive number"):  # when the spec is made
        spec = RunSpec(data=str(tmp_path / "missing.csv"), model="tvae", dp_epsilon=epsilon)
        run_sequence(spec, Places(out=str(tmp_path / "runs"), cache=str(tmp_path / "cache"), registry=None))
