"""CTGAN-style conditional GAN (Xu et al., 2019), written for speed: the whole step stays on the device.

- Conditional vector over the discrete columns, trained by sampling: pick a discrete column uniformly, a
  value by log-frequency, then a real row with that value. The sampler is a handful of tensor ops over
  per-column row orderings built once at fit: no per-row Python.
- Generator: CTGAN's residual MLP; tanh on continuous offsets, Gumbel-softmax (tau 0.2) on every mode, category
  and null span, because a generator must emit discrete values and stay differentiable.
- Critic: PacGAN (`pac` rows judged together) trained as a WGAN with gradient penalty.
- Generator loss adds the cross-entropy that ties the generated discrete value to the condition.
- The networks see the encoded columns grouped (see `SpanLayout`), so the output splits into slices and the
  conditional block is the trailing columns; generated rows are put back in the encoder's order at the end.

Training is autograd on the modules' `forward` (the definitions), run by `generators.training`: each step is
`discriminator_steps` critic updates, then one generator update (loss -> `backward()` -> Adam), and the gradient
penalty takes the critic's input gradient with `torch.autograd.grad(create_graph=True)`.
What keeps it fast needs no hand-written backward: the training matrix stays on the device as one tensor; the
condition sampler is a few tensor ops; every softmax span goes through one segment softmax (`SpanLayout`);
Adam is the fused kernel; the critic scores real and fake groups as one batch; and the generator's step reuses
the generator pass the critic just judged (as PyTorch's DCGAN example does), one generator forward per step.
The networks' functions, initialisation and losses are CTGAN's.

Several conditions at once: with probability `multi_condition_rate` per extra discrete column, a training
condition also fixes that column to the value it has in the sampled real row, so combinations seen in the data
are in the training distribution of the conditional vector. At sampling time every requested value goes into
the conditional vector (one generator pass, no rejection loop) and the base class writes the requested one-hots
into the output, so every row satisfies the conditions exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tabtwin.generators import DEFAULT_SEED
from tabtwin.generators.conditions import ConditionPlan
from tabtwin.generators.onehot import OneHotGenerator, SpanLayout, activate, segment_log_softmax
from tabtwin.generators.params import (
    BATCH, EPOCHS, NON_NEGATIVE, PATIENCE, POSITIVE, SHARE, WIDTH, Bool, Device, Seed, Widths,
)
from tabtwin.generators.training import Group, Training
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import Int, Items, Num, check_fields, fail

MAX_COUNT = 1e12  # rows a saved value count may claim (float32 holds it; the sampler's weights stay finite)


class Generator(nn.Module):
    """CTGAN's residual generator (Xu et al. 2019): block i is Linear -> BatchNorm -> ReLU, and its output is
    concatenated in front of its input, so block i reads [h_(i-1), ..., h_1, x] and the output layer reads
    [h_k, ..., h_1, x].

    Input (rows, embedding_dim + cond_dim): noise, then the conditional vector. Output (rows, data_dim): raw
    values in grouped column order (see `SpanLayout`), before tanh / Gumbel-softmax (`activate`).
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        self.hidden = tuple(int(width) for width in hidden)
        dims = [in_dim + sum(self.hidden[:i]) for i in range(len(self.hidden) + 1)]
        self.blocks = nn.ModuleList(nn.Linear(dim, width) for dim, width in zip(dims, self.hidden))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for width in self.hidden)
        self.out = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, norm in zip(self.blocks, self.norms):
            x = torch.cat([torch.relu(norm(linear(x))), x], dim=1)
        return self.out(x)


class Critic(nn.Module):
    """CTGAN's PacGAN critic (Xu et al. 2019): `pac` rows are judged together, which penalises mode collapse.

    Input: `data` (rows, data_dim) in grouped order and `cond` (rows, cond_dim) or None, rows a multiple of
    `pac`; output: one score per pac group, (rows / pac, 1). A pac group's input is its rows' data side by side,
    then their conditions side by side (CTGAN concatenates each row's data and condition first; the two orders
    differ by a fixed permutation of the first layer's columns, the same family of functions). Data and
    conditions enter through two weight matrices, `data_in` and `cond_in`, together one linear layer initialised
    as CTGAN's, so nothing is concatenated. Each hidden layer is Linear -> LeakyReLU(0.2) -> Dropout(0.5), as in
    CTGAN; the last of `layers` gives the score.
    """

    negative_slope = 0.2
    dropout = 0.5

    def __init__(self, data_dim: int, cond_dim: int, hidden: tuple[int, ...], pac: int):
        super().__init__()
        self.pac = pac
        self.data_in = nn.Linear(data_dim * pac, hidden[0])
        self.cond_in = nn.Linear(cond_dim * pac, hidden[0], bias=False) if cond_dim else None
        dims = [*hidden, 1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        bound = 1 / math.sqrt((data_dim + cond_dim) * pac)  # nn.Linear's init for the whole input layer
        first = [self.data_in.weight, self.data_in.bias] + ([] if self.cond_in is None else [self.cond_in.weight])
        with torch.no_grad():
            for param in first:
                param.uniform_(-bound, bound)

    def forward(self, data: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        groups = data.shape[0] // self.pac
        h = self.data_in(data.reshape(groups, -1))
        if self.cond_in is not None:
            h = torch.addmm(h, cond.reshape(groups, -1), self.cond_in.weight.t())
        for linear in self.layers:
            h = F.dropout(F.leaky_relu(h, self.negative_slope), self.dropout, self.training)
            h = linear(h)
        return h


def gradient_penalty(critic: nn.Module, data: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """WGAN-GP's penalty (Gulrajani et al. 2017, as in CTGAN): mean over pac groups of (|d score / d input| - 1)^2,
    the input being a group's data and conditions together. `data` (rows, data_dim) and `cond` (rows, cond_dim)
    are interpolated rows; the gradient goes through `torch.autograd.grad(create_graph=True)` so the penalty's own
    gradient reaches the critic's weights."""
    inputs = [data.requires_grad_(True)] + ([] if cond is None else [cond.requires_grad_(True)])
    scores = critic(data, cond)
    grads = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    groups = data.shape[0] // critic.pac
    squares = sum(g.reshape(groups, -1).square().sum(dim=1) for g in grads)
    return ((squares.sqrt() - 1) ** 2).mean()

class ConditionSampler:
    """Draws conditional vectors (and matching real rows) over the discrete columns, all on the device.

    The conditional vector is the discrete columns' one-hots side by side: the trailing `cond_dim` columns of the
    grouped layout (C columns). `counts` (C, W, padded to the widest) holds how often each value occurs, the only
    thing about the data kept after training.
    """

    def __init__(self, layout: SpanLayout, counts: torch.Tensor):
        self.device = counts.device
        dims = torch.tensor(layout.condition_dims, dtype=torch.long, device=self.device)
        self.n_columns = len(dims)
        self.cond_dim = int(dims.sum())
        self.segment = torch.arange(self.n_columns, device=self.device).repeat_interleave(dims)  # (Kc,) column of each
        self.matrix = F.one_hot(self.segment, self.n_columns).float() if self.n_columns else None
        self.offsets = torch.cumsum(dims, 0) - dims  # where each column starts in the conditional vector
        self.local = torch.arange(self.cond_dim, device=self.device) - self.offsets[self.segment]  # code of each
        self.last = dims - 1
        self.counts = counts

    @classmethod
    def from_data(cls, grouped: torch.Tensor, layout: SpanLayout) -> ConditionSampler:
        """From the training rows in grouped order."""
        width = max(layout.condition_dims, default=1)
        counts = torch.zeros((len(layout.condition_dims), width), device=grouped.device)
        sampler = cls(layout, counts)
        sampler.n_rows = grouped.shape[0]
        if sampler.n_columns == 0:
            return sampler
        # One-hot rows times each column's local position, summed per column, is each row's value code.
        block = grouped[:, grouped.shape[1] - sampler.cond_dim :]
        sampler.codes = ((block * sampler.local) @ sampler.matrix).round().long()  # (n, C)
        counts.scatter_add_(1, sampler.codes.T, torch.ones_like(sampler.codes.T, dtype=counts.dtype))
        # Rows sorted by their value in each column; a value's rows are a contiguous run starting at `first`.
        sampler.order = torch.argsort(sampler.codes.T, dim=1, stable=True)  # (C, n)
        sampler.first = (torch.cumsum(counts, dim=1) - counts).long()
        log_freq = torch.log1p(counts)  # 0 on the padding, whose count is 0
        # Cumulative log-frequency probabilities: a value is drawn by inverse CDF, one uniform per row, which on
        # a CPU is several times faster than torch.multinomial.
        sampler.train_cdf = torch.cumsum(log_freq / log_freq.sum(dim=1, keepdim=True), dim=1)
        return sampler

    def sample_for_training(self, batch: int, multi_rate: float, out: torch.Tensor | None = None):
        """(cond, mask, rows): the condition of each example (written into `out` when given), which columns it
        fixes, and a real row fitting it."""
        if self.n_columns == 0:
            return None, None, torch.randint(0, self.n_rows, (batch,), device=self.device)
        column = torch.randint(0, self.n_columns, (batch,), device=self.device)
        uniform = torch.rand(batch, 2, device=self.device)
        below = (uniform[:, :1] >= self.train_cdf[column]).sum(dim=1)
        value = below.minimum(self.last[column])  # rounding can leave the last cumulative sum just under 1
        count = self.counts[column, value].long()
        pick = (uniform[:, 1] * count).long().minimum(count - 1)
        rows = self.order[column, self.first[column, value] + pick]
        mask = F.one_hot(column, self.n_columns).bool()
        if multi_rate > 0 and self.n_columns > 1:
            mask |= torch.rand(batch, self.n_columns, device=self.device) < multi_rate
        return self._one_hot(self.codes[rows], mask, out), mask, rows

    def sample_for_generation(self, batch: int, generator: torch.Generator) -> torch.Tensor | None:
        """Unconditional sampling: a random discrete column with a value drawn by its frequency in the data."""
        if self.n_columns == 0:
            return None
        column = torch.randint(0, self.n_columns, (batch,), device=self.device, generator=generator)
        value = torch.multinomial(self.counts[column], 1, generator=generator).squeeze(1)
        codes = torch.zeros(batch, self.n_columns, dtype=torch.long, device=self.device)
        codes[torch.arange(batch, device=self.device), column] = value
        return self._one_hot(codes, F.one_hot(column, self.n_columns).bool())

    def fixed(self, batch: int, plan: ConditionPlan, column_of_span: dict[int, int]) -> torch.Tensor:
        """The conditional vector for user conditions, the same for every row."""
        codes = torch.zeros(batch, self.n_columns, dtype=torch.long, device=self.device)
        mask = torch.zeros(batch, self.n_columns, dtype=torch.bool, device=self.device)
        for span, code in zip(plan.spans, plan.codes):
            codes[:, column_of_span[span.start]] = code
            mask[:, column_of_span[span.start]] = True
        return self._one_hot(codes, mask)

    def condition_loss(self, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy between the generated discrete values (grouped `raw`) and the conditioned ones, over the
        fixed columns."""
        log_probs = segment_log_softmax(raw[:, raw.shape[1] - self.cond_dim :], self.segment, self.matrix)
        per_column = -(cond * log_probs) @ self.matrix  # (B, C)
        return (per_column * mask).sum() / raw.shape[0]

    def _one_hot(self, codes: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            out = torch.empty(codes.shape[0], self.cond_dim, device=self.device)
        out.zero_()
        rows, columns = mask.nonzero(as_tuple=True)
        out[rows, self.offsets[columns] + codes[rows, columns]] = 1.0
        return out


class CTGAN(OneHotGenerator):
    """CTGAN (Xu et al. 2019, "Modeling Tabular data using Conditional GAN") with the published defaults.

    Parameters are stored as given and validated in `fit` (scikit-learn's contract). `generator_dim` and
    `discriminator_dim` are the hidden widths; `batch_size` must be a multiple of `pac`; `discriminator_steps`
    critic updates per generator update; `tau` the Gumbel-softmax temperature; `gp_weight` the gradient
    penalty's weight; `multi_condition_rate` see the module docstring; `early_stopping` a patience in epochs on
    the validation distance (0 = off); `compile` wraps the generator and the critic with `torch.compile` for
    training (opt-in: the first steps pay the compile time, see bench/RESULTS.md; the gradient penalty's double
    backward runs on the eager critic, since compiled graphs do not support it).

    Learned state: `encoder_`, `layout_`, `generator_`, `critic_`, `sampler_`, `history_`, `best_epoch_`,
    `stop_reason_`.
    """

    model_name = "ctgan"
    sampling_modules = ("generator",)
    _parameter_constraints = {
        "embedding_dim": WIDTH, "generator_dim": Widths(), "discriminator_dim": Widths(least=1),
        "generator_lr": POSITIVE, "discriminator_lr": POSITIVE, "tau": POSITIVE,
        "generator_decay": NON_NEGATIVE, "discriminator_decay": NON_NEGATIVE, "gp_weight": NON_NEGATIVE,
        "pac": Int(1, 1000), "discriminator_steps": Int(1, 1000), "multi_condition_rate": SHARE,
        "batch_size": BATCH, "epochs": EPOCHS, "early_stopping": PATIENCE,
        "compile": Bool(), "device": Device(), "random_state": Seed(), "verbose": Bool(),
    }

    def __init__(
        self,
        embedding_dim: int = 128, generator_dim: tuple[int, ...] = (256, 256),
        discriminator_dim: tuple[int, ...] = (256, 256),
        generator_lr: float = 2e-4, generator_decay: float = 1e-6,
        discriminator_lr: float = 2e-4, discriminator_decay: float = 1e-6,
        batch_size: int = 500, discriminator_steps: int = 1, pac: int = 10, tau: float = 0.2, gp_weight: float = 10.0,
        multi_condition_rate: float = 0.1,
        epochs: int = 300, early_stopping: int = 0, compile: bool = False,
        device: str = "auto", random_state: int | None = DEFAULT_SEED, verbose: bool = True,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------------------------------ hooks

    def _check_params(self) -> None:
        super()._check_params()
        if self.batch_size % self.pac:
            raise TabtwinError(f"batch_size ({self.batch_size}) must be a multiple of pac ({self.pac})")

    def _build(self) -> None:
        data_dim, cond_dim = self.encoder_.output_dim, self.layout_.condition_width
        self.generator_ = Generator(self.embedding_dim + cond_dim, tuple(self.generator_dim), data_dim)
        self.critic_ = Critic(data_dim, cond_dim, tuple(self.discriminator_dim), self.pac)
        self.generator_.to(self.device_)
        self.critic_.to(self.device_)
        self._column_of_span = {start: c for c, start in enumerate(self.layout_.condition_starts)}

    def _modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator_, "critic": self.critic_}

    def _extra_state(self) -> dict:
        return {"category_counts": self.sampler_.counts.cpu().tolist()} if self.sampler_.n_columns else {}

    def _load_extra_state(self, state: dict) -> None:
        """The value counts of the discrete columns saved in config.json: (columns, widest) whole numbers, each
        column's over its own values (zero padding after them), every column summing to the same row count."""
        dims = self.layout_.condition_dims
        counts = torch.zeros((len(dims), max(dims, default=1)), device=self.device_)
        check_fields(state, {"category_counts": Items(Items(Num(0.0, MAX_COUNT)))} if dims else {}, "state")
        if dims:
            rows = state["category_counts"]
            if len(rows) != len(dims) or any(len(row) != counts.shape[1] for row in rows):
                fail("category_counts", f"must be {len(dims)} rows of {counts.shape[1]} counts, one per discrete column")
            totals = {sum(row) for row in rows}
            if any(v != int(v) for row in rows for v in row) or any(any(row[dim:]) for row, dim in zip(rows, dims)):
                fail("category_counts", "must be whole numbers, zero past each column's values")
            if min(totals) <= 0 or max(totals) - min(totals) > 1e-6 * max(totals):
                fail("category_counts", "must count the same rows, at least one, in every column")
            counts = torch.tensor(rows, dtype=torch.float32, device=self.device_)
        self.sampler_ = ConditionSampler(self.layout_, counts)

    def _training(self, data: torch.Tensor, generator: torch.Generator | None) -> Training:
        """Adam (betas 0.5, 0.9, as in CTGAN) for each network; a step is `discriminator_steps` critic updates,
        then one generator update on the last batch the critic judged; max(rows // batch_size, 1) steps an
        epoch, each drawing its rows through the condition sampler."""
        data = data[:, self.layout_.grouped]  # the networks see grouped columns (see SpanLayout)
        self.sampler_ = ConditionSampler.from_data(data, self.layout_)
        network, critic = self.generator_, self.critic_
        if self.compile:
            network, critic = torch.compile(network), torch.compile(critic)

        def step(_, update):
            for d in range(self.discriminator_steps):
                # Only the last batch's generator pass is kept for the generator's step (see _generator_loss).
                with torch.set_grad_enabled(d == self.discriminator_steps - 1):
                    batch = self._fake_batch(data, network)
                total, critic_loss = self._critic_loss(batch, critic)
                update("critic", total)
            generator_loss = self._generator_loss(batch, critic)
            update("generator", generator_loss)
            return {"generator_loss": generator_loss, "critic_loss": critic_loss}, 1

        betas = (0.5, 0.9)
        groups = {"generator": Group(self.generator_.parameters(), self.generator_lr, self.generator_decay, betas),
                  "critic": Group(self.critic_.parameters(), self.discriminator_lr, self.discriminator_decay, betas)}
        return Training(groups, batches=lambda: range(max(len(data) // self.batch_size, 1)), step=step)

    def _fake_batch(self, data: torch.Tensor, generator: nn.Module) -> dict:
        """Conditions, matching real rows and generated rows for one step.

        Returns a dict: `real` (B, data_dim) real rows and `real_cond` their conditions, `fake` (B, data_dim)
        Gumbel-softmax output of the generator under `cond` (B, cond_dim), `mask` (B, columns) which columns each
        condition fixes, `raw` (B, data_dim) the generator's raw output (conditions are None without discrete
        columns). Real rows are paired with a shuffled copy of the conditions, as in CTGAN: both sides see the same
        condition distribution, and each real row matches its own condition.
        """
        cond, mask, rows = self.sampler_.sample_for_training(self.batch_size, self.multi_condition_rate)
        perm = torch.randperm(self.batch_size, device=self.device_)
        real = data[rows[perm]]
        noise = torch.randn(self.batch_size, self.embedding_dim, device=self.device_)
        raw = generator(noise if cond is None else torch.cat([noise, cond], dim=1))
        fake = activate(raw, self.layout_, tau=self.tau)
        real_cond = None if cond is None else cond[perm]
        return {"real": real, "real_cond": real_cond, "fake": fake, "cond": cond, "mask": mask, "raw": raw}

    def _critic_loss(self, batch: dict, critic: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """WGAN-GP's critic loss (Gulrajani et al. 2017): mean(score(fake)) - mean(score(real)) + gp_weight *
        penalty, real and fake groups scored as one batch. Returns (that loss, its first term)."""
        real, fake = batch["real"], batch["fake"].detach()
        real_cond, fake_cond = batch["real_cond"], batch["cond"]
        groups = self.batch_size // self.pac
        both = torch.cat([real, fake])
        both_cond = None if fake_cond is None else torch.cat([real_cond, fake_cond])
        scores = critic(both, both_cond)
        loss = scores[groups:].mean() - scores[:groups].mean()
        # One interpolation weight per pac group, spread over the group's rows.
        alpha = torch.rand(groups, 1, device=self.device_).repeat_interleave(self.pac, dim=0)
        mixed = torch.lerp(fake, real, alpha)
        mixed_cond = None if fake_cond is None else torch.lerp(fake_cond, real_cond, alpha)
        penalty = gradient_penalty(self.critic_, mixed, mixed_cond)  # eager: compiled graphs lack double backward
        return loss + self.gp_weight * penalty, loss

    def _generator_loss(self, batch: dict, critic: nn.Module) -> torch.Tensor:
        """The generator's loss on the batch the critic just judged, scored by the updated critic: -mean(score)
        plus the condition's cross-entropy. Reusing the batch's generator pass (as PyTorch's DCGAN example does)
        saves one generator forward per step."""
        self.critic_.requires_grad_(False)  # no weight gradients for the critic in this step
        try:
            loss = -critic(batch["fake"], batch["cond"]).mean()
        finally:
            self.critic_.requires_grad_(True)
        if batch["cond"] is not None:
            loss = loss + self.sampler_.condition_loss(batch["raw"], batch["cond"], batch["mask"])
        return loss

    @torch.no_grad()
    def _generate(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> torch.Tensor:
        self.generator_.eval()
        z = torch.randn(n, self.embedding_dim, device=self.device_, generator=generator)
        if plan is None:
            cond = self.sampler_.sample_for_generation(n, generator)
        else:
            cond = self.sampler_.fixed(n, plan, self._column_of_span)
        raw = self.generator_(z if cond is None else torch.cat([z, cond], dim=1))
        return activate(raw, self.layout_, tau=self.tau, generator=generator)[:, self.layout_.to_encoded]
