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

Training steps are written out by hand, forward and backward, for both networks (`Critic.step_gradients`,
`Critic.generator_pass`, `Generator.train_forward` / `train_backward`, `activate_backward`,
`ConditionSampler.condition_gradient`; each is tested against autograd). No autograd graph is built; every
large intermediate lives in a `Workspace` allocated once per fit; and the layouts are chosen so that nothing is
concatenated: the generator writes each block's output beside its input in one activation buffer (CTGAN's
concatenations, for free), the Gumbel-softmax writes the fake rows straight into the critic's input buffer, and
the sampler writes the conditions there too. The networks' functions, initialisation and losses are CTGAN's;
`forward` of each module is that definition through autograd, used for sampling and by the tests.

Several conditions at once: with probability `multi_condition_rate` per extra discrete column, a training
condition also fixes that column to the value it has in the sampled real row, so combinations seen in the data
are in the training distribution of the conditional vector. At sampling time every requested value goes into
the conditional vector (one generator pass, no rejection loop) and the base class writes the requested one-hots
into the output, so every row satisfies the conditions exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tabtwin.generators.base import (
    ConditionPlan,
    SpanLayout,
    SyntheticGenerator,
    activate,
    adam,
    flatten_parameters,
    segment_log_softmax,
    segment_max,
    segment_softmax,
)
from tabtwin.pipeline.errors import TabtwinError


class Generator(nn.Module):
    """CTGAN's residual MLP: block i is Linear -> BatchNorm -> ReLU, and its output is concatenated in front of
    its input, so block i reads [h_(i-1), ..., h_1, x] and the output layer reads [h_k, ..., h_1, x].

    `forward` is that definition, through autograd. Training uses `train_forward` and `train_backward`: the
    concatenations live side by side in one buffer, [h_k | ... | h_1 | x], so each layer reads a slice of it
    with one matmul and every output is written where its readers expect it; each weight's gradient is one
    matmul, and batch norm runs through ATen's own forward and backward kernels.
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

    def train_forward(self, work: Workspace) -> torch.Tensor:
        """Raw output for the batch whose input (noise, then condition) is in `work.acts`' last columns, with
        batch norm in training mode (batch statistics; running statistics updated); keeps in `work` what
        `train_backward` needs."""
        acts, start = work.acts, sum(self.hidden)
        work.pre, work.saved = [], []
        for linear, norm, width in zip(self.blocks, self.norms, self.hidden):
            pre = torch.addmm(linear.bias, acts[:, start:], linear.weight.t())
            normed, mean, invstd = torch.native_batch_norm(
                pre, norm.weight, norm.bias, norm.running_mean, norm.running_var, True, norm.momentum, norm.eps
            )
            norm.num_batches_tracked.add_(1)
            start -= width
            torch.clamp_min(normed, 0.0, out=acts[:, start : start + width])  # ReLU, into its place
            work.pre.append(pre)
            work.saved.append((mean, invstd))
        return torch.addmm(self.out.bias, acts, self.out.weight.t())

    def train_backward(self, d_raw: torch.Tensor, work: Workspace) -> None:
        """Writes every parameter's .grad, given d loss / d raw output of the last `train_forward`."""
        acts, total = work.acts, sum(self.hidden)
        torch.mm(d_raw.t(), acts, out=_grad(self.out.weight))
        torch.sum(d_raw, dim=0, out=_grad(self.out.bias))
        d_acts = torch.mm(d_raw, self.out.weight[:, :total], out=work.d_acts)  # d loss / d every hidden output
        start = 0  # newest block first: its output is the first columns
        for i in reversed(range(len(self.hidden))):
            linear, norm, width = self.blocks[i], self.norms[i], self.hidden[i]
            out = slice(start, start + width)
            d_normed = torch.ops.aten.threshold_backward(d_acts[:, out], acts[:, out], 0)
            mean, invstd = work.saved[i]
            d_pre, d_gamma, d_beta = torch.ops.aten.native_batch_norm_backward(
                d_normed, work.pre[i], norm.weight, norm.running_mean, norm.running_var, mean, invstd, True,
                norm.eps, [True, True, True],
            )
            _grad(norm.weight).copy_(d_gamma)
            _grad(norm.bias).copy_(d_beta)
            torch.mm(d_pre.t(), acts[:, start + width :], out=_grad(linear.weight))
            torch.sum(d_pre, dim=0, out=_grad(linear.bias))
            earlier = total - start - width  # columns of this block's input that are earlier blocks' outputs
            if earlier:
                d_acts[:, start + width :].addmm_(d_pre, linear.weight[:, :earlier])
            start += width


class Critic(nn.Module):
    """PacGAN critic: `pac` rows are judged together, which penalises mode collapse.

    A pac group's input is its rows' data side by side, then their conditions side by side (CTGAN concatenates
    each row's data and condition first; the two orders differ by a fixed permutation of the first layer's
    columns, the same family of functions). Data and conditions enter through two weight matrices, `data_in`
    and `cond_in`, together one linear layer initialised as CTGAN's; so nothing is concatenated, and the
    generator's step takes an input gradient for the data alone.

    Each hidden layer is Linear -> LeakyReLU(0.2) -> Dropout(0.5), as in CTGAN, written as the pre-activation
    times a `_slope`: LeakyReLU(pre) = pre * (1 or 0.2), and dropout multiplies by 0 or 2, one random bit per
    unit (see `random_bits`). Hidden layer 0 is the input layer; hidden layer i > 0 is `layers[i - 1]`; the
    last of `layers` gives the score.

    `forward` is the definition through autograd; training uses `step_gradients` (the critic's own step) and
    `generator_pass` (the generator's loss and its gradient w.r.t. the generated data), both by hand.
    """

    negative_slope = 0.2  # dropout is 0.5: a unit is kept on one random bit

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
        """Scores (groups, 1) of the pac groups of `data` (rows, data_dim) and `cond` (rows, cond_dim)."""
        groups = data.shape[0] // self.pac
        pre = self._first(data.reshape(groups, -1), None if cond is None else cond.reshape(groups, -1))
        h = pre * self._slope(pre.detach())
        for linear in self.layers[:-1]:
            pre = linear(h)
            h = pre * self._slope(pre.detach())
        return self.layers[-1](h)

    def _first(self, data: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Pre-activation of the input layer for pac groups (groups, pac * data_dim) and (groups, pac * cond_dim)."""
        pre = torch.addmm(self.data_in.bias, data, self.data_in.weight.t())
        if self.cond_in is not None:
            pre = torch.addmm(pre, cond, self.cond_in.weight.t())
        return pre

    def _slope(self, pre: torch.Tensor) -> torch.Tensor:
        """d (LeakyReLU then dropout) / d pre at each unit: 1 or 0.2, times 0 or 2 (dropout 0.5) while training."""
        if not self.training:
            return torch.where(pre > 0, 1.0, self.negative_slope)
        return torch.where(pre > 0, 2.0, 2.0 * self.negative_slope).mul_(random_bits(pre.shape, pre.device))

    def _hidden(self, first_pre: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The slopes and outputs of every hidden layer, from the input layer's pre-activation."""
        slopes, outputs, pre = [], [], first_pre
        for i in range(len(self.layers)):
            if i:
                pre = torch.addmm(self.layers[i - 1].bias, outputs[-1], self.layers[i - 1].weight.t())
            slopes.append(self._slope(pre))
            outputs.append(pre * slopes[-1])
        return slopes, outputs

    def _down(self, grad: torch.Tensor, slopes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Gradients w.r.t. each hidden layer's pre-activation, given the gradient w.r.t. the last hidden output."""
        d_pre = [None] * len(slopes)
        for i in reversed(range(len(slopes))):
            d_pre[i] = grad * slopes[i]
            if i:
                grad = d_pre[i] @ self.layers[i - 1].weight
        return d_pre

    def step_gradients(self, work: Workspace, gp_weight: float) -> torch.Tensor:
        """WGAN-GP critic step by hand: writes every parameter's .grad for
        mean(score(fake)) - mean(score(real)) + gp_weight * mean((|d score / d mixed| - 1)^2), with `mixed` a random
        interpolation of each real and fake pac group, and returns the first term. The groups are the rows of
        `work.critic_data` and `work.critic_cond`: real groups, then fake groups; the third block is overwritten.

        Written out because it saves work autograd cannot see: the interpolated rows' input-layer pre-activation
        is the interpolation of the real and fake ones (the layer is linear), so those rows never go through the
        widest matmul; and each weight's two gradients (from the scores and from the penalty) come from one
        matmul over stacked rows instead of two. A test compares it with autograd's double backward.
        """
        data, cond, groups = work.critic_data, work.critic_cond, work.groups
        last = self.layers[-1]
        alpha = torch.rand(groups, 1, device=data.device)  # one interpolation weight per pac group
        pre = self._first(data[: 2 * groups], None if cond is None else cond[: 2 * groups])
        slopes, outputs = self._hidden(pre)
        score = torch.addmm(last.bias, outputs[-1], last.weight.t())
        d_score = torch.full((2 * groups, 1), 1.0 / groups, device=data.device)  # d loss / d score: real, then fake
        d_score[:groups] = -1.0 / groups
        d_pre = self._down(d_score @ last.weight, slopes)
        mixed_pre = torch.lerp(pre[groups:], pre[:groups], alpha)  # by linearity: the interpolated rows' pre
        factors, arriving = self._penalty_backward(mixed_pre, gp_weight, work)
        # The input layer's weights meet the real and fake rows (score term) and the penalty's d/dG rows (written
        # into the third block of the same buffers) in one matmul each.
        first = torch.cat([d_pre[0], factors[0]]).t()
        torch.mm(first, data, out=_grad(self.data_in.weight))
        if self.cond_in is not None:
            torch.mm(first, cond, out=_grad(self.cond_in.weight))
        torch.sum(d_pre[0], dim=0, out=_grad(self.data_in.bias))
        for i, linear in enumerate(self.layers[:-1], start=1):
            inputs = torch.cat([outputs[i - 1], arriving[i]])
            torch.mm(torch.cat([d_pre[i], factors[i]]).t(), inputs, out=_grad(linear.weight))
            torch.sum(d_pre[i], dim=0, out=_grad(linear.bias))
        torch.addmm(arriving[-1].sum(dim=0, keepdim=True), d_score.t(), outputs[-1], out=_grad(last.weight))
        torch.sum(d_score, dim=0, out=_grad(last.bias))
        return (d_score * score).sum()  # mean fake score minus mean real score

    def _penalty_backward(self, mixed_pre: torch.Tensor, gp_weight: float, work: Workspace):
        """The gradient penalty on rows whose input-layer pre-activation is `mixed_pre`, differentiated bottom up.

        The penalty's input gradient is G = u_0 W_0 with u_i = (u_(i+1) W_(i+1)) * s_i and u_top = w_top * s_top
        (s: each hidden unit's slope, piecewise constant in the weights). Returns the factors u_i and what
        arrives at each hidden layer's input from gp_weight * mean((|G| - 1)^2): d/dG itself (written into the
        third block of `work.critic_data` / `critic_cond`), then at each later layer; the last is at w_top.
        """
        groups = work.groups
        slopes, _ = self._hidden(mixed_pre)
        factors = self._down(self.layers[-1].weight.expand(mixed_pre.shape[0], -1), slopes)
        g_data = torch.mm(factors[0], self.data_in.weight, out=work.critic_data[2 * groups :])
        squares = torch.linalg.vector_norm(g_data, dim=1, keepdim=True).square_()
        g_cond = None
        if self.cond_in is not None:
            g_cond = torch.mm(factors[0], self.cond_in.weight, out=work.critic_cond[2 * groups :])
            squares += torch.linalg.vector_norm(g_cond, dim=1, keepdim=True).square_()
        norms = squares.sqrt_()
        coef = (norms - 1) / norms.clamp_min(1e-12) * (2 * gp_weight / groups)
        arriving = [g_data.mul_(coef)]  # d penalty / dG, in place
        back = g_data @ self.data_in.weight.t()
        if g_cond is not None:
            back.addmm_(g_cond.mul_(coef), self.cond_in.weight.t())
        arriving.append(back.mul_(slopes[0]))
        for i, linear in enumerate(self.layers[:-1], start=1):
            arriving.append((arriving[-1] @ linear.weight.t()).mul_(slopes[i]))
        return factors, arriving

    def generator_pass(self, work: Workspace) -> torch.Tensor:
        """The generator's critic loss, -mean(score) of the fake groups (`work.critic_data` / `critic_cond`, second
        block), by hand with new dropout masks; writes d loss / d fake rows into `work.d_fake`."""
        groups = work.groups
        data, cond = work.critic_data[groups : 2 * groups], None
        if self.cond_in is not None:
            cond = work.critic_cond[groups : 2 * groups]
        slopes, outputs = self._hidden(self._first(data, cond))
        last = self.layers[-1]
        score = torch.addmm(last.bias, outputs[-1], last.weight.t())
        d_first = self._down(last.weight.expand(groups, -1) * (-1.0 / groups), slopes)[0]
        torch.mm(d_first, self.data_in.weight, out=work.d_fake.view(groups, -1))
        return -score.mean()


def _grad(param: nn.Parameter) -> torch.Tensor:
    """The parameter's .grad, to be overwritten; created on first use (in training it is a view of a flat buffer)."""
    if param.grad is None:
        param.grad = torch.empty_like(param)
    return param.grad


def random_bits(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """0/1 float32 values of `shape`, each 1 with probability 1/2, 16 from each draw of the random generator.

    On a CPU the generator's cost is per draw, so unpacking bits is many times cheaper than thresholding one
    torch.rand float per unit; dropout masks are the critic's largest random draw.
    """
    n = math.prod(shape)
    words = torch.randint(0, 1 << 16, ((n + 15) // 16, 1), dtype=torch.int32, device=device)
    shifts = torch.arange(16, dtype=torch.int32, device=device)
    bits = words.bitwise_right_shift(shifts).bitwise_and_(1)
    return bits.view(-1)[:n].view(shape).float()


def activate_backward(
    activated: torch.Tensor, d_activated: torch.Tensor, layout: SpanLayout, tau: float
) -> torch.Tensor:
    """d loss / d raw, given the Gumbel-softmax output of `activate` and d loss / d that output: tanh' = 1 - t^2 on the
    value columns; on each softmax span, p * (g - sum over the span of g * p) / tau."""
    v, matrix = layout.n_values, layout.softmax_matrix
    d_raw = torch.empty_like(activated)
    t = activated[:, :v]
    torch.addcmul(d_activated[:, :v], d_activated[:, :v], t * t, value=-1.0, out=d_raw[:, :v])
    p, g = activated[:, v:], d_activated[:, v:]
    weighted = torch.mul(p, g).mul_(1.0 / tau)
    torch.addcmul(weighted, p, (weighted @ matrix) @ matrix.T, value=-1.0, out=d_raw[:, v:])
    return d_raw


@dataclass
class Workspace:
    """The buffers of one training batch, allocated once per fit and reused by every step.

    Fresh tensors of this size would be allocated (and their memory faulted in) every step; and the layouts let
    one stage write its output where the next one reads it, with no concatenation: the generator's activations
    side by side (see `Generator`), the fake rows straight into the critic's input (pac groups of a contiguous
    (batch, data_dim) block are rows of (groups, pac * data_dim)), the conditions likewise.
    """

    batch: int
    groups: int
    critic_data: torch.Tensor  # (3 * groups, pac * data_dim): real groups, fake groups, the penalty's d/dG
    critic_cond: torch.Tensor | None  # (3 * groups, pac * cond_dim), the same blocks
    acts: torch.Tensor  # (batch, hidden widths + embedding + cond): [h_k | ... | h_1 | noise | condition]
    d_acts: torch.Tensor  # (batch, hidden widths)
    d_fake: torch.Tensor  # (batch, data_dim)
    noise: torch.Tensor  # (batch, embedding)

    @classmethod
    def allocate(cls, batch, pac, data_dim, cond_dim, embedding, hidden, device) -> Workspace:
        groups = batch // pac
        return cls(
            batch=batch,
            groups=groups,
            critic_data=torch.zeros(3 * groups, pac * data_dim, device=device),
            critic_cond=torch.zeros(3 * groups, pac * cond_dim, device=device) if cond_dim else None,
            acts=torch.zeros(batch, sum(hidden) + embedding + cond_dim, device=device),
            d_acts=torch.zeros(batch, sum(hidden), device=device),
            d_fake=torch.zeros(batch, data_dim, device=device),
            noise=torch.zeros(batch, embedding, device=device),
        )

    def generator_input(self, part: int) -> torch.Tensor:
        """The columns of `acts` that hold the generator's input: part 0 the noise, part 1 the condition."""
        start = self.d_acts.shape[1] + part * self.noise.shape[1]  # after the hidden outputs
        return self.acts[:, start : start + self.noise.shape[1]] if part == 0 else self.acts[:, start:]

    def block(self, buffer: torch.Tensor, index: int) -> torch.Tensor:
        """Block `index` (0 real, 1 fake) of a critic buffer, as (batch, width) rows."""
        return buffer[index * self.groups : (index + 1) * self.groups].view(self.batch, -1)


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

    def condition_gradient(self, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor, d_raw: torch.Tensor):
        """`condition_loss` by hand: returns the loss and adds its gradient, (softmax - cond) / rows on each fixed
        column's span, into d_raw's trailing columns."""
        rows = raw.shape[0]
        logits = raw[:, raw.shape[1] - self.cond_dim :]
        shifted = logits - segment_max(logits, self.segment, self.matrix) @ self.matrix.T
        exps = torch.exp(shifted)
        sums = exps @ self.matrix  # (rows, C)
        fixed = mask.to(raw.dtype)
        loss = ((torch.log(sums) - (cond * shifted) @ self.matrix) * fixed).sum() / rows
        weight = fixed / (sums * rows)  # per row and column: 1 / (rows * sum exp) where fixed, else 0
        d_cond = d_raw[:, raw.shape[1] - self.cond_dim :]
        d_cond.addcmul_(exps, weight @ self.matrix.T).sub_(cond * (fixed @ self.matrix.T), alpha=1.0 / rows)
        return loss

    def _one_hot(self, codes: torch.Tensor, mask: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            out = torch.empty(codes.shape[0], self.cond_dim, device=self.device)
        out.zero_()
        rows, columns = mask.nonzero(as_tuple=True)
        out[rows, self.offsets[columns] + codes[rows, columns]] = 1.0
        return out


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
        self.critic_ = Critic(data_dim, cond_dim, tuple(self.discriminator_dim), self.pac)
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
        # Each network's parameters in one flat buffer, so each Adam step is one fused kernel over one tensor.
        generator_flat = flatten_parameters(list(self.generator_.parameters()))
        critic_flat = flatten_parameters(list(self.critic_.parameters()))
        opt_g = adam([generator_flat], lr=self.generator_lr, betas=(0.5, 0.9), weight_decay=self.generator_decay)
        opt_d = adam([critic_flat], lr=self.discriminator_lr, betas=(0.5, 0.9), weight_decay=self.discriminator_decay)
        work = Workspace.allocate(
            self.batch_size, self.pac, data.shape[1], self.sampler_.cond_dim, self.embedding_dim,
            self.generator_.hidden, self.device_,
        )
        steps = max(len(data) // self.batch_size, 1)
        self.generator_.train()
        self.critic_.train()
        with torch.no_grad():  # every gradient is written by hand
            for epoch in progress:
                totals = torch.zeros(2, device=self.device_)
                for _ in range(steps):
                    for _ in range(self.discriminator_steps):  # the generator's step reuses the last batch
                        raw, cond, mask = self._fake_batch(data, work)
                        loss_d = self.critic_.step_gradients(work, self.gp_weight)
                        opt_d.step()
                    loss_g = self._generator_step(raw, cond, mask, work)
                    opt_g.step()
                    totals += torch.stack([loss_g, loss_d])
                loss_g, loss_d = (totals / steps).tolist()  # one device sync per epoch
                if self._after_epoch(progress, epoch, {"generator_loss": loss_g, "critic_loss": loss_d}):
                    break

    def _fake_batch(self, data: torch.Tensor, work: Workspace):
        """Draw conditions and real rows, generate fake rows; fills the critic's real and fake blocks in `work`.

        Returns the generator's raw output and the conditions (cond and mask are None without discrete columns).
        Real rows are paired with a shuffled copy of the conditions, as in CTGAN: both sides see the same
        condition distribution, and each real row matches its own condition.
        """
        has_cond = work.critic_cond is not None
        fake_cond = work.block(work.critic_cond, 1) if has_cond else None
        cond, mask, rows = self.sampler_.sample_for_training(self.batch_size, self.multi_condition_rate, fake_cond)
        perm = torch.randperm(self.batch_size, device=self.device_)
        torch.index_select(data, 0, rows[perm], out=work.block(work.critic_data, 0))
        torch.randn(work.noise.shape, device=self.device_, out=work.noise)
        work.generator_input(0).copy_(work.noise)  # the generator reads [noise | condition]
        if has_cond:
            torch.index_select(cond, 0, perm, out=work.block(work.critic_cond, 0))
            work.generator_input(1).copy_(cond)
        raw = self.generator_.train_forward(work)
        activate(raw, self.layout_, tau=self.tau, out=work.block(work.critic_data, 1))
        return raw, cond, mask

    def _generator_step(self, raw, cond, mask, work: Workspace) -> torch.Tensor:
        """Gradients of the generator's loss on the batch the critic just saw, scored by the updated critic.

        Reusing that forward pass (as PyTorch's DCGAN example does) saves a generator pass per step.
        """
        loss = self.critic_.generator_pass(work)
        d_raw = activate_backward(work.block(work.critic_data, 1), work.d_fake, self.layout_, self.tau)
        if cond is not None:
            loss = loss + self.sampler_.condition_gradient(raw, cond, mask, d_raw)
        self.generator_.train_backward(d_raw, work)
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
