"""CTGAN-style conditional GAN (Xu et al., 2019), written for speed: the whole step stays on the device.

- Conditional vector over the discrete columns, trained by sampling: pick a discrete column uniformly, a
  value by log-frequency, then a real row with that value. The sampler is a handful of tensor ops over
  per-column row orderings built once at fit: no per-row Python.
- Generator: residual MLP; tanh on continuous offsets, Gumbel-softmax (tau 0.2) on every mode, category and
  null span, because a generator must emit discrete values and stay differentiable.
- Critic: PacGAN (`pac` rows judged together) trained as a WGAN with gradient penalty. Its step is written out
  by hand (`Critic.step_gradients`, tested against autograd's double backward) to skip work autograd cannot
  see; the generator's step uses autograd.
- Generator loss adds the cross-entropy that ties the generated discrete value to the condition.
- The networks see the encoded columns grouped (see `SpanLayout`), so the output splits into slices and the
  conditional block is the trailing columns; generated rows are put back in the encoder's order at the end.

Several conditions at once: with probability `multi_condition_rate` per extra discrete column, a training
condition also fixes that column to the value it has in the sampled real row, so combinations seen in the data
are in the training distribution of the conditional vector. At sampling time every requested value goes into
the conditional vector (one generator pass, no rejection loop) and the base class writes the requested one-hots
into the output, so every row satisfies the conditions exactly.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from generators.base import ConditionPlan, SpanLayout, SyntheticGenerator, activate, adam, segment_log_softmax
from pipeline.errors import TabtwinError


class Generator(nn.Module):
    """CTGAN's residual MLP: each block is Linear -> BatchNorm -> ReLU, its output concatenated with its input.

    The concatenation is never built: each linear layer adds one matmul per part over that part's columns of its
    weight. That saves the copies, and the noise-and-condition part, which needs no gradient, gets none (a matmul
    over the concatenation would compute its input gradient and throw it away).
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        dims = [in_dim + sum(hidden[:i]) for i in range(len(hidden) + 1)]
        self.blocks = nn.ModuleList(nn.Linear(dim, width) for dim, width in zip(dims, hidden))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for width in hidden)
        self.out = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x]  # newest first: the order of the concatenation it stands for
        for linear, norm in zip(self.blocks, self.norms):
            parts.insert(0, torch.relu(norm(_linear_of_parts(linear, parts))))
        return _linear_of_parts(self.out, parts)


def _linear_of_parts(linear: nn.Linear, parts: list[torch.Tensor]) -> torch.Tensor:
    """linear(torch.cat(parts, dim=1)), without the concatenation."""
    out, start = linear.bias, 0
    for part in parts:
        out = torch.addmm(out, part, linear.weight[:, start : start + part.shape[1]].t())
        start += part.shape[1]
    return out


class Critic(nn.Module):
    """PacGAN critic: `pac` rows are concatenated and scored together, which penalises mode collapse.

    Each hidden layer is Linear -> LeakyReLU(0.2) -> Dropout(0.5), as in CTGAN, written as the pre-activation
    times a `_slope`: LeakyReLU(pre) = pre * (1 or 0.2), and dropout multiplies by 0 or 1 / keep, drawn from
    uniforms (on a CPU several times faster than `bernoulli_`).

    Training uses `step_gradients`, the WGAN-GP critic loss with its gradient written by hand; `forward` is what
    the generator's loss backpropagates through.
    """

    negative_slope = 0.2
    dropout = 0.5

    def __init__(self, in_dim: int, hidden: tuple[int, ...], pac: int):
        super().__init__()
        self.pac = pac
        dims = [in_dim * pac, *hidden, 1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.shape[1] * self.pac)
        for linear in self.layers[:-1]:
            pre = linear(h)
            h = pre * self._slope(pre.detach())
        return self.layers[-1](h)

    def _slope(self, pre: torch.Tensor) -> torch.Tensor:
        """d (LeakyReLU then dropout) / d pre at each unit: 1 or 0.2, times 0 or 1 / keep while training."""
        slope = torch.where(pre > 0, 1.0, self.negative_slope)
        if self.training:
            keep = 1.0 - self.dropout
            slope = slope * torch.rand_like(pre).lt_(keep).div_(keep)
        return slope

    def _hidden(self, first_pre: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The slopes and outputs of every hidden layer, from the first layer's pre-activation."""
        slopes, outputs, pre = [], [], first_pre
        for i, linear in enumerate(self.layers[:-1]):
            if i:
                pre = torch.addmm(linear.bias, outputs[-1], linear.weight.t())
            slopes.append(self._slope(pre))
            outputs.append(pre * slopes[-1])
        return slopes, outputs

    def step_gradients(self, real: list[torch.Tensor], fake: list[torch.Tensor], gp_weight: float) -> torch.Tensor:
        """WGAN-GP critic step by hand: writes every parameter's .grad for
        mean(score(fake)) - mean(score(real)) + gp_weight * mean((|d score / d mixed| - 1)^2), with `mixed` a random
        interpolation of each real and fake pac group, and returns the first term. `real` and `fake` are the
        column blocks of the critic's rows (data, then condition).

        Written out because it saves work autograd cannot see: the interpolated rows' first-layer pre-activation
        is the interpolation of the real and fake ones (the layer is linear), so those rows never go through the
        widest matmul; and each weight's two gradients (from the scores and from the penalty) come from one
        matmul over stacked rows instead of two. A test compares it with autograd's double backward.
        """
        groups = real[0].shape[0] // self.pac
        hidden, last = list(self.layers[:-1]), self.layers[-1]
        stacked = self._stack(real, fake)
        x = stacked[: 2 * groups]
        alpha = torch.rand(groups, 1, device=x.device)  # one interpolation weight per pac group
        pre = torch.addmm(hidden[0].bias, x, hidden[0].weight.t())
        slopes, outputs = self._hidden(pre)
        score = torch.addmm(last.bias, outputs[-1], last.weight.t())
        d_score = torch.full((2 * groups, 1), 1.0 / groups, device=x.device)  # d loss / d score: real rows, then fake
        d_score[:groups] = -1.0 / groups
        d_pre = self._score_backward(slopes, d_score)
        mixed_pre = torch.lerp(pre[groups:], pre[:groups], alpha)  # by linearity: the interpolated rows' pre
        factors, arriving = self._penalty_backward(mixed_pre, gp_weight, out=stacked[2 * groups :])
        stacked_inputs = [stacked] + [torch.cat([h, a]) for h, a in zip(outputs[:-1], arriving[1:])]
        for i, linear in enumerate(hidden):
            linear.weight.grad = torch.cat([d_pre[i], factors[i]]).t() @ stacked_inputs[i]
            linear.bias.grad = d_pre[i].sum(dim=0)
        last.weight.grad = d_score.t() @ outputs[-1] + arriving[-1].sum(dim=0, keepdim=True)
        last.bias.grad = d_score.sum(dim=0)
        return (d_score * score).sum()  # mean fake score minus mean real score

    def _stack(self, real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
        """(3 * groups, pac * width) pac groups: real, fake, then room for the penalty's input gradient, which
        meets them in the first layer's weight gradient. One buffer saves concatenating them there."""
        n, width = real[0].shape[0], sum(block.shape[1] for block in real)
        stacked = torch.empty(3 * n, width, device=real[0].device)
        torch.cat(real, dim=1, out=stacked[:n])
        torch.cat(fake, dim=1, out=stacked[n : 2 * n])
        return stacked.view(3 * (n // self.pac), self.pac * width)

    def _score_backward(self, slopes: list[torch.Tensor], d_score: torch.Tensor) -> list[torch.Tensor]:
        """d loss / d pre-activation of each hidden layer, top down, given d loss / d score."""
        hidden = self.layers[:-1]
        d_pre, grad = [None] * len(hidden), d_score @ self.layers[-1].weight
        for i in reversed(range(len(hidden))):
            d_pre[i] = grad * slopes[i]
            if i:
                grad = d_pre[i] @ hidden[i].weight
        return d_pre

    def _penalty_backward(self, mixed_pre: torch.Tensor, gp_weight: float, out: torch.Tensor):
        """The gradient penalty on rows whose first-layer pre-activation is `mixed_pre`, differentiated bottom up.

        The penalty's input gradient is G = u_1 W_1 with u_i = (u_{i+1} W_{i+1}) * s_i and u_top = w_top * s_top
        (s: each hidden unit's slope, piecewise constant in the weights). Returns the factors u_i, and what
        arrives at each product u_i W_i from gp_weight * mean((|G| - 1)^2): first d/dG, written into `out`; the
        last is d/d w_top summed over rows.
        """
        slopes, _ = self._hidden(mixed_pre)
        grad = self.layers[-1].weight.expand(mixed_pre.shape[0], -1)
        factors = []
        for linear, slope in zip(reversed(self.layers[:-1]), reversed(slopes)):
            grad = grad * slope
            factors.append(grad)
            grad = grad @ linear.weight
        factors.reverse()
        norms = grad.norm(dim=1, keepdim=True)
        arriving = [torch.mul(grad, (norms - 1) / norms.clamp_min(1e-12) * (2 * gp_weight / len(grad)), out=out)]
        for linear, slope in zip(self.layers[:-1], slopes):
            arriving.append((arriving[-1] @ linear.weight.t()) * slope)
        return factors, arriving


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

    def sample_for_training(self, batch: int, multi_rate: float):
        """(cond, mask, rows): the condition of each example, which columns it fixes, and a real row fitting it."""
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
        return self._one_hot(self.codes[rows], mask), mask, rows

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

    def _one_hot(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cond = torch.zeros(codes.shape[0], self.cond_dim, device=self.device)
        rows, columns = mask.nonzero(as_tuple=True)
        cond[rows, self.offsets[columns] + codes[rows, columns]] = 1.0
        return cond


class CTGAN(SyntheticGenerator):
    model_name = "ctgan"

    def __init__(
        self,
        embedding_dim: int = 128,
        generator_dim: tuple[int, ...] = (256, 256),
        discriminator_dim: tuple[int, ...] = (256, 256),
        generator_lr: float = 2e-4,
        generator_decay: float = 1e-6,
        discriminator_lr: float = 2e-4,
        discriminator_decay: float = 1e-6,
        batch_size: int = 500,
        discriminator_steps: int = 1,
        pac: int = 10,
        tau: float = 0.2,
        gp_weight: float = 10.0,
        multi_condition_rate: float = 0.1,
        epochs: int = 300,
        early_stopping: int = 0,
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = True,
    ):
        self.embedding_dim = embedding_dim
        self.generator_dim = generator_dim
        self.discriminator_dim = discriminator_dim
        self.generator_lr = generator_lr
        self.generator_decay = generator_decay
        self.discriminator_lr = discriminator_lr
        self.discriminator_decay = discriminator_decay
        self.batch_size = batch_size
        self.discriminator_steps = discriminator_steps
        self.pac = pac
        self.tau = tau
        self.gp_weight = gp_weight
        self.multi_condition_rate = multi_condition_rate
        self.epochs = epochs
        self.early_stopping = early_stopping  # patience in epochs on the validation distance; 0 = off
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------ hooks

    def _build(self, data_dim: int) -> None:
        if self.batch_size % self.pac:
            raise TabtwinError(f"batch_size ({self.batch_size}) must be a multiple of pac ({self.pac})")
        cond_dim = self.layout_.condition_width
        self.generator_ = Generator(self.embedding_dim + cond_dim, tuple(self.generator_dim), data_dim)
        self.critic_ = Critic(data_dim + cond_dim, tuple(self.discriminator_dim), self.pac)
        self.generator_.to(self.device_)
        self.critic_.to(self.device_)
        self._column_of_span = {start: c for c, start in enumerate(self.layout_.condition_starts)}

    def _modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator_, "critic": self.critic_}

    def _extra_state(self) -> dict:
        return {"category_counts": self.sampler_.counts.cpu().tolist()} if self.sampler_.n_columns else {}

    def _load_extra_state(self, state: dict) -> None:
        dims = self.layout_.condition_dims
        counts = torch.zeros((len(dims), max(dims, default=1)), device=self.device_)
        if dims:
            counts = torch.tensor(state["category_counts"], dtype=torch.float32, device=self.device_)
        self.sampler_ = ConditionSampler(self.layout_, counts)

    def _train(self, data: torch.Tensor, progress) -> None:
        data = data[:, self.layout_.grouped]  # the networks see grouped columns (see SpanLayout)
        self.sampler_ = ConditionSampler.from_data(data, self.layout_)
        opt_g = adam(
            self.generator_.parameters(), lr=self.generator_lr, betas=(0.5, 0.9), weight_decay=self.generator_decay
        )
        opt_d = adam(
            self.critic_.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.9), weight_decay=self.discriminator_decay
        )
        steps = max(len(data) // self.batch_size, 1)
        self.generator_.train()
        self.critic_.train()
        for epoch in progress:
            totals = torch.zeros(2, device=self.device_)
            for _ in range(steps):
                for k in range(self.discriminator_steps):
                    cond, mask, rows = self.sampler_.sample_for_training(self.batch_size, self.multi_condition_rate)
                    with torch.set_grad_enabled(k == self.discriminator_steps - 1):  # only the last batch is reused
                        raw, fake = self._fake(cond)
                    loss_d = self._critic_step(data, rows, cond, fake.detach(), opt_d)
                loss_g = self._generator_step(raw, fake, cond, mask, opt_g)
                totals += torch.stack([loss_g.detach(), loss_d.detach()])
            loss_g, loss_d = (totals / steps).tolist()  # one device sync per epoch
            if self._after_epoch(progress, epoch, {"generator_loss": loss_g, "critic_loss": loss_d}):
                break

    def _fake(self, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw generator output and its activated form for a batch of conditions."""
        z = torch.randn(self.batch_size, self.embedding_dim, device=self.device_)
        raw = self.generator_(z if cond is None else torch.cat([z, cond], dim=1))
        return raw, activate(raw, self.layout_, tau=self.tau)

    def _critic_step(self, data, rows, cond, fake, opt_d) -> torch.Tensor:
        # Real rows are paired with a shuffled copy of the conditions, as in CTGAN: both sides see the same
        # condition distribution, and each real row matches its own condition.
        perm = torch.randperm(self.batch_size, device=self.device_)
        real, fake = [data[rows[perm]]], [fake]
        if cond is not None:
            real.append(cond[perm])
            fake.append(cond)
        with torch.no_grad():  # the critic's gradients are written by hand
            loss = self.critic_.step_gradients(real, fake, self.gp_weight)
        opt_d.step()
        return loss

    def _generator_step(self, raw, fake, cond, mask, opt_g) -> torch.Tensor:
        """Update the generator on the batch the critic just saw, scored by the updated critic.

        Reusing that forward pass (as PyTorch's DCGAN example does) saves a generator pass per step; the
        critic's weights are frozen here so no gradient is spent on them.
        """
        self.critic_.requires_grad_(False)
        if cond is None:
            loss = -self.critic_(fake).mean()
        else:
            loss = -self.critic_(torch.cat([fake, cond], dim=1)).mean() + self.sampler_.condition_loss(raw, cond, mask)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        self.critic_.requires_grad_(True)
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
