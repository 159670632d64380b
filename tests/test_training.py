"""The training loop every generator shares (generators/training.py): budget, early stopping, schedule, average,
optimiser groups and hooks, on toy problems and on the flagship; and the parameter rules every model declares."""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch

import tabtwin.generators.memory as memory
from tabtwin.generators import MODEL_NAMES, model_class
from tabtwin.generators.autoregressive import AutoregressiveGenerator, ColumnAR
from tabtwin.generators.base import SyntheticGenerator
from tabtwin.generators.params import POSITIVE
from tabtwin.generators.training import Average, Budget, Group, Training, Validation, progress_bar, train
from tabtwin.pipeline.errors import TabtwinError


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], n)
    return pd.DataFrame({"group": group, "x": rng.normal(size=n) + (group == "a"), "k": rng.integers(0, 5, n)})


def slow_clock(monkeypatch, seconds: float, training: bool) -> list:
    """Make each forward pass of the flagship's network in training (or, with training False, in eval) mode take
    `seconds` more on the clock fits read (time.perf_counter), without waiting; returns the rows of each such pass."""
    passes, real, forward = [], time.perf_counter, ColumnAR.forward

    def slow(self, codes, mask):
        if self.training == training:
            passes.append(len(codes))
        return forward(self, codes, mask)

    monkeypatch.setattr(ColumnAR, "forward", slow)
    monkeypatch.setattr(time, "perf_counter", lambda: real() + seconds * len(passes))
    return passes


# ---------------------------------------------------------------------------------------------- time budget


def test_a_time_budget_ends_training_within_an_epoch_much_longer_than_it(monkeypatch):
    # 540 training rows in batches of 16: 33 steps of 10 s each, an epoch of 330 s against a 25 s budget.
    steps = slow_clock(monkeypatch, 10.0, training=True)
    model = AutoregressiveGenerator(epochs=5, hidden=16, max_seconds=25.0, device="cpu", random_state=0).fit(table(600))
    assert 1 <= len(steps) <= 3  # the step that passes the budget is the last (encoding's real seconds count too)
    assert model.stop_reason_ == "time budget" and len(model.history_) == 1
    assert "loss" in model.history_[0] and "validation_nll" not in model.history_[0]  # cut short: not validated
    assert model.best_epoch_ == 0 and len(model.sample(20, seed=0)) == 20  # the averaged weights are kept


def test_a_time_budget_stops_a_validation_pass(monkeypatch):
    # 60 held-out rows scored 8 at a time, 100 s a batch, against a 60 s budget: the pass stops after one batch.
    batches = slow_clock(monkeypatch, 100.0, training=False)
    monkeypatch.setitem(memory.SAMPLE_BATCH, "cpu", 8)
    model = AutoregressiveGenerator(epochs=5, hidden=16, max_seconds=60.0, device="cpu", random_state=0).fit(table(600))
    assert batches == [8]
    assert model.stop_reason_ == "time budget" and len(model.history_) == 1
    assert "validation_nll" not in model.history_[0] and model.best_epoch_ == 0


# ---------------------------------------------------------------------------------------------- the loop on a toy


def regression(rows: int = 64, seed: int = 0):
    """y = 3x + noise, a one-weight model, and a Training of full-batch steps on it."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 1, generator=generator)
    y = 3 * x + 0.1 * torch.randn(rows, 1, generator=generator)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Linear(1, 1, bias=False)

    def step(batch, update):
        loss = ((model(batch[0]) - batch[1]) ** 2).mean()
        update("w", loss)
        return {"loss": loss}, 1

    return model, lambda **options: Training({"w": Group(model.parameters(), 0.1)}, lambda: [(x, y)], step, **options)


def epochs(n: int):
    return progress_bar(n, "toy", verbose=False)


def scripted(metrics):
    values = iter(metrics)
    return lambda budget: next(values)


def test_early_stopping_keeps_the_best_epochs_weights_and_decays_the_rate_on_plateaus():
    model, run = regression()
    kept = {}

    def metric(budget):  # best at epoch 1; the weights then in place must be the ones restored
        value = [3.0, 1.0, 2.0, 2.0, 2.0][len(kept)]
        kept[len(kept)] = model.weight.detach().clone()
        return value

    history = []
    training = run(plateau_decay=0.5)
    best, reason = train(training, {"m": model}, epochs(10), history, Validation("v", metric, patience=3))
    assert (best, reason) == (1, "early stopping") and [h["v"] for h in history] == [3.0, 1.0, 2.0, 2.0, 2.0]
    assert torch.equal(model.weight, kept[1]) and not model.training


def test_a_tolerance_counts_small_improvements_as_none():
    model, run = regression()
    best, reason = train(run(), {"m": model}, epochs(10), [], Validation("v", scripted([1.0, 0.99, 0.98]), 2, 0.05))
    assert (best, reason) == (0, "early stopping")


def test_the_budget_ends_training_at_the_step_that_spends_it():
    model, run = regression()
    now, steps = [0.0], []
    training = run()

    def step(batch, update):  # each step takes a second on the budget's clock
        now[0] += 1.0
        steps.append(now[0])
        return training.step(batch, update)

    history = []
    budget = Budget(2.5, 0.0, clock=lambda: now[0])
    ten_batches = Training(training.groups, lambda: [training.batches()[0]] * 10, step)
    best, reason = train(ten_batches, {"m": model}, epochs(50), history, budget=budget)
    assert reason == "time budget" and steps == [1.0, 2.0, 3.0]
    assert len(history) == 1 and best == 0  # the cut epoch is recorded; no validation: its weights are kept


def test_warm_up_then_plateau_decay_set_the_rate(monkeypatch):
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    model, run = regression()  # one step an epoch, base rate 0.1
    train(run(warmup_steps=4, plateau_decay=0.5), {"m": model}, epochs(6), [],
          Validation("v", scripted([4.0, 3.0, 2.0, 1.0, 5.0, 5.0]), patience=10))
    # A linear warm-up over 4 steps, the full rate, then halved after each epoch that did not improve.
    assert seen == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.05])


def test_the_weight_average_is_validated_and_kept():
    model, run = regression()
    validated = []
    train(run(ema_decay=0.5), {"m": model}, epochs(3), [],
          Validation("v", lambda budget: validated.append(model.weight.item()) or -len(validated), patience=5))
    raw, raw_run = regression()
    train(raw_run(), {"m": raw}, epochs(3), [])
    assert model.weight.item() == validated[-1]  # the best epoch's (the last) averaged weights are kept
    assert validated[-1] != raw.weight.item()  # and they are not the trained weights


def test_several_optimisers_step_in_the_order_the_step_asks():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    order = []

    def step(batch, update):
        for _ in range(2):  # as CTGAN: critic updates, then one generator update
            order.append("critic")
            update("critic", (a - 1).square().sum())
        order.append("generator")
        update("generator", (b + 1).square().sum())
        return {"a": a.sum(), "b": b.sum()}, 1

    history = []
    run = Training({"critic": Group([a], 0.1), "generator": Group([b], 0.1)}, lambda: epochs(3), step)
    train(run, {}, epochs(2), history)
    assert order == ["critic", "critic", "generator"] * 6
    assert a.item() > 0 > b.item() and set(history[0]) == {"epoch", "steps", "a", "b"} and history[0]["steps"] == 3


def test_wrap_replaces_the_optimisers_for_the_epochs_and_closes_after_them():
    model, run = regression()
    events = []

    @contextmanager
    def wrap(optimizers):
        events.append(("open", sorted(optimizers)))
        (optimizer,) = optimizers.values()

        class Counting:
            param_groups = optimizer.param_groups

            def zero_grad(self, set_to_none=True):
                optimizer.zero_grad(set_to_none=set_to_none)

            def step(self):
                events.append("step")
                optimizer.step()

        try:
            yield {"w": Counting()}
        finally:
            events.append("close")

    train(run(wrap=wrap), {"m": model}, epochs(2), [])
    assert events == [("open", ["w"]), "step", "step", "close"]


def test_every_decision_goes_through_the_ranks_hook():
    """What a data-parallel run replaces: the validation metric and the budget decision pass through `ranks`."""

    class Ranks:
        world = 2

        def __init__(self):
            self.means, self.maxes = [], []

        def mean(self, value):
            self.means.append(value)
            return value + 100.0

        def max(self, tensor):
            self.maxes.append(tensor.tolist())
            return tensor

    ranks = Ranks()
    model, run = regression()
    history = []
    train(run(), {"m": model}, epochs(2), history, Validation("v", scripted([1.0, 2.0]), patience=5),
          Budget(1e9, time.perf_counter(), ranks), ranks)
    assert ranks.means == [1.0, 2.0] and [h["v"] for h in history] == [101.0, 102.0]
    assert len(ranks.maxes) >= 2 and all(flag == 0.0 for flag, _ in ranks.maxes)


def test_ranks_agree_on_the_budget_about_once_a_second():
    """Among ranks, `spent` all-reduces (flag, seconds a call) at the first call, then every AGREE_SECONDS' worth
    of calls; the calls between say not spent, and any rank's "spent" stops them all."""

    class Ranks:
        world, agreed, other_spent = 2, [], False

        def max(self, tensor):
            self.agreed.append(now[0])
            return torch.maximum(tensor, torch.tensor([float(self.other_spent), 0.0], dtype=torch.float64))

    now, ranks = [0.0], Ranks()
    budget = Budget(5.0, 0.0, ranks, clock=lambda: now[0])
    said = []
    for _ in range(60):  # a call every 0.1 s
        said.append(budget.spent())
        now[0] = round(now[0] + 0.1, 6)
    assert ranks.agreed[:7] == [0.0, 0.1, 1.1, 2.1, 3.1, 4.1, 5.1]  # then one a second (10 calls of 0.1 s)
    assert said.index(True) == 51 and all(said[51:])  # past 5 s: spent from the agreement on, with no collective
    assert len(ranks.agreed) == 7
    now[0], ranks.agreed[:] = 0.0, []
    budget = Budget(60.0, 0.0, ranks, clock=lambda: now[0])
    for seconds in [0.01] * 100 + [1.0] * 5:  # fast validation batches, then slow steps after `new_pace`
        if seconds == 1.0 and now[0] < 1.5:
            budget.new_pace()
        now[0] = round(now[0] + seconds, 6)
        budget.spent()
    assert ranks.agreed[-5:] == [2.0, 3.0, 4.0, 5.0, 6.0]  # the slow steps agree each second, not 100 calls later
    ranks.other_spent = True  # another rank's budget ran out: every rank stops at the next agreement
    budget = Budget(1e9, 0.0, ranks, clock=lambda: now[0])
    assert budget.spent() is True


def test_the_progress_callback_sees_each_record():
    model, run = regression()
    history, seen = [], []
    progress = progress_bar(3, "toy", False, lambda *args: seen.append(args), history)
    train(run(), {"m": model}, progress, history)
    assert [(epoch, epochs) for epoch, epochs, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert all(set(record) == {"steps", "loss"} for _, _, record in seen)


# ---------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("name, rate", [("autoregressive", "learning_rate"), ("ctgan", "generator_lr"), ("tvae", "lr")])
def test_every_parameter_has_one_rule_checked_at_fit(name, rate):
    cls = model_class(name)
    assert sorted(cls._parameter_constraints) == sorted(cls._get_param_names())
    with pytest.raises(TabtwinError, match=f"^{rate} must be a finite number above 0.0, got -1.0$"):
        cls(**{rate: -1.0}).fit(table(50))


def test_a_model_without_a_rule_for_a_parameter_is_refused_when_defined():
    with pytest.raises(TypeError, match="_parameter_constraints"):
        class Incomplete(SyntheticGenerator):  # noqa: F841
            model_name = "incomplete"
            _parameter_constraints = {"lr": POSITIVE}

            def __init__(self, lr=1.0, epochs=1):
                self._store_params(locals())
    assert "incomplete" not in SyntheticGenerator.registry


def test_the_flagship_splits_validation_rows_as_every_model_does(monkeypatch):
    held_out = []
    split = SyntheticGenerator._split_validation

    def capture(self, data, *args):
        train_rows, validation_rows = split(self, data, *args)
        held_out.append((type(self).__name__, len(validation_rows)))
        return train_rows, validation_rows

    monkeypatch.setattr(SyntheticGenerator, "_split_validation", capture)
    for name in MODEL_NAMES:
        model_class(name)(epochs=1, early_stopping=1, batch_size=50, device="cpu", verbose=False).fit(table(500))
    assert [rows for _, rows in held_out] == [50] * len(MODEL_NAMES)


def test_the_weight_average_weighs_trained_weights_only():
    weight = torch.nn.Parameter(torch.tensor([1.0]))  # the initial weight
    average = Average([weight], 0.99)
    with torch.no_grad():
        weight.fill_(3.0)
    average.update()
    assert average.averaged()[0].item() == pytest.approx(3.0)  # not 0.99 x 1 + 0.01 x 3 = 1.02
    with torch.no_grad():
        weight.fill_(5.0)
    average.update()
    assert average.averaged()[0].item() == pytest.approx((0.99 * 0.01 * 3 + 0.01 * 5) / (1 - 0.99**2))
    with average.swapped():
        assert weight.item() == pytest.approx(average.averaged()[0].item())
    assert weight.item() == 5.0
