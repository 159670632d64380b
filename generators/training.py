"""The training loop every generator shares: `train` runs the epochs of the `Training` a model describes.

What a model supplies (`SyntheticGenerator._training`), a `Training`:

- `groups`: one optimiser per name, each a `Group` (its parameters, rate, weight decay, betas; Adam with L2 or
  AdamW). A GAN names two ("critic", "generator"), a VAE one.
- `batches()`: called once an epoch, that epoch's batches (`shuffled_batches` for full batches of shuffled rows).
- `step(batch, update)`: the losses of one batch, calling `update(name, loss)` for each optimiser step it takes, in
  order (CTGAN: `discriminator_steps` critic updates, then one generator update); it returns the figures to
  average over the epoch ({name: 0-d tensor}) and how many units they sum (1 for a mean over the batch, or its
  rows for a sum).
- optionally `wrap(optimizers)`, a context manager around the epochs that yields the optimisers to step (DP-SGD:
  opacus's `make_private` wraps the module, the optimiser and the batches, `generators.privacy`);
  `epoch_figures()`, figures read once an epoch (the privacy budget spent); and the schedule: `warmup_steps`,
  `plateau_decay`, `ema_decay`, `flush_denormals`.

What the loop owns, the same for every model: the optimisers (`make_optimizer`: fused Adam, or AdamW), the
learning rate (a linear warm-up over `warmup_steps`, then times `plateau_decay` after each epoch whose validation
metric did not improve; constant by default), an exponential moving average of the weights (`Average`: the
averaged weights are validated and kept), early stopping on a `Validation` metric with the best epoch's weights
kept in memory (`Checkpoint`), the wall-time budget (`Budget`: checked after every step and by the validation pass
between its batches, so it holds within about one step at any table size, or about a second among data-parallel
ranks), the subnormal flush, and progress (`progress_bar`: a tqdm bar and the model's `progress_callback`).

Subnormal floats are zeroed once an epoch and flushed in the stepping thread (`generators.subnormals`).

Data-parallel training (`generators.sharded`, through `SyntheticGenerator.fit_codes`) uses three hooks here: the
modules wrapped in `torch.nn.parallel.DistributedDataParallel` inside `Training.wrap`; `Training.batches` drawn
from each rank's own rows; and `ranks`, a `OneProcess` replaced by `sharded.TorchRanks`, whose `mean` all-reduces
the validation metric and whose `max` all-reduces the budget decision (about once a second, `Budget`), so every
rank stops at the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass

import torch

from tabtwin.generators.subnormals import flush_denormals, zero_subnormals_

# ---------------------------------------------------------------------------------------------- what a model declares


@dataclass(frozen=True)
class Group:
    """One optimiser: the parameters it updates, its rate, weight decay and betas; Adam with the decay as an L2
    term (Kingma & Ba 2015), or AdamW with it decoupled (`decoupled`, Loshchilov & Hutter 2019)."""

    params: list
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    decoupled: bool = False

    def __post_init__(self):
        object.__setattr__(self, "params", list(self.params))  # a module's parameters() is a one-pass generator


def adam(params, **options) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters instead of a dozen small ops per tensor (CPU and
    CUDA)."""
    return torch.optim.Adam(params, fused=True, **options)


def make_optimizer(group: Group) -> torch.optim.Optimizer:
    """`group`'s optimiser: fused Adam, or torch's default AdamW (its fused kernel rounds differently, and the
    flagship's seeded results are this one's)."""
    options = dict(lr=group.lr, betas=group.betas, weight_decay=group.weight_decay)
    return torch.optim.AdamW(group.params, **options) if group.decoupled else adam(group.params, **options)


def permutation(n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) random order of n rows on `device`: drawn from `generator` (on its own device, then moved), else from
    the global RNG of `device`."""
    if generator is None:
        return torch.randperm(n, device=device)
    return torch.randperm(n, generator=generator, device=generator.device).to(device)


def shuffled_batches(rows: torch.Tensor, size: int, generator: torch.Generator | None = None):
    """`Training.batches` for row batches: each epoch one shuffled copy of `rows` (see `permutation`), then its
    `len(rows) // size` full batches of `size` rows as slices (the remainder, different each epoch, is left out,
    as with drop_last). Slices of one copy are cheaper than a gather every step."""
    steps = len(rows) // size

    def epoch():
        shuffled = rows[permutation(len(rows), rows.device, generator)]
        for step in range(steps):
            yield shuffled[step * size : (step + 1) * size]

    return epoch


@dataclass
class Training:
    """What `train` runs for one fit (see the module docstring)."""

    groups: dict[str, Group]
    batches: Callable[[], Iterable]
    step: Callable  # (batch, update) -> ({figure: 0-d tensor}, units)
    wrap: Callable | None = None  # optimizers -> context manager yielding the optimizers to step
    epoch_figures: Callable[[], dict[str, float]] | None = None
    warmup_steps: int = 0
    plateau_decay: float = 1.0
    ema_decay: float = 0.0
    flush_denormals: bool = False


@dataclass(frozen=True)
class Validation:
    """Early stopping: `measure(budget)` is the metric on held-out rows (lower is better; None when the budget ran
    out during the pass), recorded as `name`; training stops after `patience` epochs without an improvement
    larger than `tolerance`."""

    name: str
    measure: Callable
    patience: int
    tolerance: float = 0.0


class OneProcess:
    """How ranks agree, for a single process: nothing to agree on (see the module docstring). `rank`: this process
    among the `world` training together; `mean`, `min`, `sum` and `max` (of a tensor, elementwise) give every rank
    one value, here the value itself."""

    rank, world = 0, 1
    mean = min = sum = max = staticmethod(lambda value: value)


# Seconds of steps between two agreements of the ranks on the budget. One all-reduce of a flag after every step
# cost a 2-rank gloo fit on this VM 36 ms of a 123 ms step (a second point where every rank waits for the slowest,
# besides the gradients'); agreeing once a second costs under 1 %, and a budget then holds within about a second.
AGREE_SECONDS = 1.0
AGREE_MOST_CALLS = 1000  # however short a step (a GPU's), the ranks agree at least this often


class Budget:
    """Wall time: `elapsed()` seconds since `start` (a `time.perf_counter` reading, the start of fit), and whether
    `max_seconds` (None: no budget) are `spent()`, as every rank agrees. Alone, each call reads the clock. Among
    several ranks (which call `spent` equally often), a call agrees (`ranks.max` of the flag and of the seconds a
    call took) only every so many calls, chosen at each agreement to come about AGREE_SECONDS later; the calls in
    between say not spent, and once an agreement says spent every later call does. The first call, and the first
    after `new_pace()` (a step and a validation batch take different times), agree."""

    def __init__(self, max_seconds: float | None, start: float, ranks: OneProcess | None = None, clock=None):
        self.max_seconds, self.start, self.ranks = max_seconds, start, ranks or OneProcess()
        self.clock = clock or time.perf_counter
        self.done = False
        self.new_pace()

    def new_pace(self) -> None:
        """The calls from here on may take another time than those before: the next call agrees."""
        self.calls, self.due, self.since = 0, 1, self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def spent(self) -> bool:
        if self.max_seconds is None or self.done:
            return self.done
        if self.ranks.world == 1:
            self.done = self.elapsed() > self.max_seconds
            return self.done
        self.calls += 1
        if self.calls < self.due:
            return False
        now = self.clock()
        flag, per_call = self.ranks.max(torch.tensor([float(now - self.start > self.max_seconds),
                                                      (now - self.since) / self.calls], dtype=torch.float64)).tolist()
        self.calls, self.since, self.done = 0, now, bool(flag)
        self.due = round(min(AGREE_MOST_CALLS, max(1.0, AGREE_SECONDS / per_call))) if per_call > 0 else 1
        return self.done


# ---------------------------------------------------------------------------------------------- what the loop keeps


class Average:
    """Exponential moving average of `params`: after each step avg += (1 - decay) (param - avg); off at decay 0. It
    smooths the last steps' noise. It starts at zero and is divided by 1 - decay^steps (Adam's bias correction,
    Kingma & Ba 2015, 3), so it weighs trained weights only (from the initial weights it was 59 % those after
    105 steps at 0.995)."""

    def __init__(self, params: list, decay: float):
        self.params, self.decay, self.steps = params, decay, 0
        self.values = [torch.zeros_like(p, memory_format=torch.preserve_format).detach() for p in params] if decay else []

    @torch.no_grad()
    def update(self) -> None:
        if self.decay:
            torch._foreach_lerp_(self.values, self.params, 1.0 - self.decay)
            self.steps += 1

    @torch.no_grad()
    def averaged(self) -> list:
        """The bias-corrected average (the parameters themselves before the first step)."""
        if not self.steps:
            return [p.detach().clone() for p in self.params]
        return torch._foreach_div(self.values, 1.0 - self.decay ** self.steps)

    @torch.no_grad()
    def flush_subnormals(self) -> None:
        for tensor in self.values:
            tensor.masked_fill_(tensor.abs() < torch.finfo(torch.float32).tiny, 0.0)

    @contextmanager
    def swapped(self):
        """The averaged weights in the parameters inside the block, the trained ones back afterwards."""
        if not self.decay:
            yield
            return
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.averaged())
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, live)

    @torch.no_grad()
    def keep(self) -> None:
        """End of training: the averaged weights replace the trained ones."""
        if self.decay:
            torch._foreach_copy_(self.params, self.averaged())


class Checkpoint:
    """The modules' weights (state_dicts, cloned in memory) at the best validation metric so far."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.modules, self.epoch, self.metric, self.weights = modules, None, None, None

    def offer(self, epoch: int, metric: float, tolerance: float) -> bool:
        """Keep the weights now in place when `metric` beats the best by more than `tolerance`; say whether."""
        if self.weights is not None and not metric < self.metric - tolerance:
            return False
        self.weights = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in self.modules.items()}
        self.epoch, self.metric = epoch, metric
        return True

    def restore(self) -> None:
        for name, module in self.modules.items():
            module.load_state_dict(self.weights[name])


def progress_bar(epochs: int, description: str, verbose: bool, callback=None, history: list | None = None):
    """The epochs to iterate: a tqdm bar over range(`epochs`) (drawn when `verbose`) whose `set_postfix` shows
    each epoch's figures; with `callback`, also calling `callback(epoch, epochs, record)` each time, epoch
    counting from 1 and `record` the epoch's entry of `history` without "epoch"."""
    from tqdm.auto import tqdm

    bar = tqdm(range(epochs), desc=description, disable=not verbose, unit="epoch")
    return bar if callback is None else _Reporting(bar, callback, epochs, history)


class _Reporting:
    def __init__(self, bar, callback, epochs: int, history: list):
        self.bar, self.callback, self.epochs, self.history = bar, callback, epochs, history

    def __iter__(self):
        return iter(self.bar)

    def set_postfix(self, **figures) -> None:
        self.bar.set_postfix(**figures)
        record = dict(self.history[-1])
        self.callback(int(record.pop("epoch")) + 1, self.epochs, record)


# ---------------------------------------------------------------------------------------------- the loop


def train(run: Training, modules: dict[str, torch.nn.Module], progress, history: list,
          validation: Validation | None = None, budget: Budget | None = None,
          ranks: OneProcess | None = None) -> tuple[int | None, str]:
    """Train `modules` as `run` says, one epoch per item of `progress` (`progress_bar`), appending each epoch's
    record to `history`: {"epoch", "steps", the step figures' means, `epoch_figures`, the validation metric}, no wall times,
    so a seeded run's history repeats. An epoch the budget cuts short is recorded with the steps it ran, and not
    validated.

    Returns (the epoch whose weights are kept, what ended training: "early stopping", "time budget" or "epoch
    cap", a model's `stop_reason_`). The weights kept are
    the best validated epoch's, else the averaged (or last) ones; the modules are left in eval mode.
    """
    ranks = ranks or OneProcess()
    budget = budget or Budget(None, time.perf_counter(), ranks)
    optimizers = {name: make_optimizer(group) for name, group in run.groups.items()}
    averages = {name: Average(group.params, run.ema_decay) for name, group in run.groups.items()}
    checkpoint, reason, stale = Checkpoint(modules), None, 0
    with flush_denormals(run.flush_denormals), (run.wrap or nullcontext)(optimizers) as stepped:
        schedules = {name: _warm_up(o, run.warmup_steps) for name, o in stepped.items()} if run.warmup_steps else {}

        def update(name: str, loss: torch.Tensor) -> None:
            optimizer = stepped[name]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            averages[name].update()
            if schedules:
                schedules[name].step()

        for epoch in progress:
            for module in modules.values():
                module.train()
            budget.new_pace()
            figures, cut_short = _epoch(run, update, budget)
            zero_subnormals_(*optimizers.values())
            for average in averages.values():
                average.flush_subnormals()
            record = {"epoch": epoch, **figures, **(run.epoch_figures() if run.epoch_figures else {})}
            improved = None
            if validation is not None and not cut_short:
                with ExitStack() as swaps:
                    for average in averages.values():
                        swaps.enter_context(average.swapped())
                    budget.new_pace()
                    metric = validation.measure(budget)
                    if metric is not None:
                        record[validation.name] = metric = ranks.mean(metric)
                        improved = checkpoint.offer(epoch, metric, validation.tolerance)
            history.append(record)
            progress.set_postfix(**{k: f"{v:.3f}" for k, v in record.items() if k not in ("epoch", "steps")})
            if improved is not None:
                stale = 0 if improved else stale + 1
                if not improved and run.plateau_decay != 1.0:
                    _decay(stepped.values(), schedules.values(), run.plateau_decay)
                if stale >= validation.patience:
                    reason = "early stopping"
                    break
            if cut_short or budget.spent():
                reason = "time budget"
                break
    if checkpoint.weights is not None:
        checkpoint.restore()
        best = checkpoint.epoch
    else:
        for average in averages.values():
            average.keep()
        best = history[-1]["epoch"] if history else None
    for module in modules.values():
        module.eval()
    return best, reason or "epoch cap"


def _epoch(run: Training, update, budget: Budget) -> tuple[dict[str, float], bool]:
    """One epoch's steps: how many ("steps") and the means of their figures; whether the budget ended it early."""
    totals, names, units, steps = None, [], 0, 0
    for steps, batch in enumerate(run.batches(), 1):
        figures, count = run.step(batch, update)
        values = torch.stack([value.detach() for value in figures.values()])
        totals, names, units = values if totals is None else totals + values, list(figures), units + count
        if budget.spent():
            break
    else:
        return {"steps": steps, **_means(names, totals, units)}, False
    return {"steps": steps, **_means(names, totals, units)}, True


def _means(names: list[str], totals: torch.Tensor | None, units: int) -> dict[str, float]:
    return {} if totals is None else dict(zip(names, (totals / max(units, 1)).tolist()))  # one device sync


def _warm_up(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Rates rising linearly to their base over the first `steps` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / steps))


def _decay(optimizers, schedules, factor: float) -> None:
    """Every rate (and the base a warm-up scales) times `factor`."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] *= factor
    for schedule in schedules:
        schedule.base_lrs = [base * factor for base in schedule.base_lrs]
