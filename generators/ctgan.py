"""CTGAN-style conditional GAN (Xu et al., 2019), written for speed: the whole step stays on the device.

- Conditional vector over the discrete columns, trained by sampling: pick a discrete column uniformly, a
  value by log-frequency, then a real row with that value. The sampler is a handful of tensor ops over
  per-column row orderings built once at fit: no per-row Python.
- Generator: residual MLP; tanh on continuous offsets, Gumbel-softmax (tau 0.2) on every mode, category and
  null span, because a generator must emit discrete values and stay differentiable.
- Critic: PacGAN (`pac` rows judged together) trained as a WGAN with gradient penalty.
- Generator loss adds the cross-entropy that ties the generated discrete value to the condition.

Several conditions at once: with probability `multi_condition_rate` per extra discrete column, a training
condition also fixes that column to the value it has in the sampled real row, so combinations seen in the data
are in the training distribution of the conditional vector. At sampling time every requested value goes into
the conditional vector (one generator pass, no rejection loop) and the base class writes the requested one-hots
into the output, so every row satisfies the conditions exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from generators.base import ConditionPlan, SpanLayout, SyntheticGenerator, activate, adam, segment_log_softmax
from pipeline.errors import TabtwinError


class Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, concatenated with its input (the generator's building block)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.bn(self.fc(x))), x], dim=1)


def make_generator(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers, dim = [], in_dim
    for width in hidden:
        layers.append(Residual(dim, width))
        dim += width
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class Critic(nn.Module):
    """PacGAN critic: `pac` rows are concatenated and scored together, which penalises mode collapse.

    Each hidden layer is Linear -> LeakyReLU(0.2) -> Dropout(0.5), as in CTGAN.
    """

    negative_slope = 0.2
    dropout = 0.5

    def __init__(self, in_dim: int, hidden: tuple[int, ...], pac: int):
        super().__init__()
        self.pac = pac
        layers, dim = [], in_dim * pac
        for width in hidden:
            layers += [nn.Linear(dim, width), nn.LeakyReLU(self.negative_slope), nn.Dropout(self.dropout)]
            dim = width
        layers.append(nn.Linear(dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, x.shape[1] * self.pac))

    def input_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """d score / d input for each pac group of `x`, as a function of the weights that autograd can differentiate.

        For this network the gradient is W1^T (s1 * W2^T (s2 * w3)), where s is each hidden unit's LeakyReLU slope
        (1 or 0.2) times its dropout factor (0 or 1 / keep). The slopes are piecewise constant in the weights, so
        they are found by a forward pass without autograd; what autograd then sees is only this chain of
        matmuls. It gives the same penalty gradient as autograd's double backward through the whole critic, at
        about half the cost: the interpolated rows no longer take part in the forward graph.
        """
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        h, slopes = x.reshape(-1, x.shape[1] * self.pac), []
        with torch.no_grad():
            for linear in linears[:-1]:
                pre = linear(h)
                slope = torch.where(pre > 0, 1.0, self.negative_slope)
                if self.training:
                    keep = 1.0 - self.dropout
                    slope = slope * (torch.rand_like(pre) < keep) / keep
                h = pre * slope  # LeakyReLU then dropout, since LeakyReLU(pre) = pre * its slope
                slopes.append(slope)
        grad = linears[-1].weight.expand(h.shape[0], -1)
        for linear, slope in zip(reversed(linears[:-1]), reversed(slopes)):
            grad = (grad * slope) @ linear.weight
        return grad

    def wasserstein_loss(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean score of fake minus real, gradient penalty on interpolations): WGAN-GP's two critic terms.

        Real and fake rows go through the critic as one batch (one matmul per layer instead of two); the
        penalty uses `input_gradient`. Pac groups never mix because each part is a whole number of groups.
        """
        groups = real.shape[0] // self.pac
        # One interpolation weight per pac group, so the penalty is on the critic's actual inputs.
        alpha = torch.rand(groups, 1, 1, device=real.device)
        alpha = alpha.expand(-1, self.pac, real.shape[1]).reshape(real.shape)
        mixed = torch.lerp(fake, real, alpha)
        real_score, fake_score = self(torch.cat([real, fake])).split(groups)
        norms = self.input_gradient(mixed).norm(2, dim=1)
        return fake_score.mean() - real_score.mean(), ((norms - 1) ** 2).mean()


class ConditionSampler:
    """Draws conditional vectors (and matching real rows) over the discrete columns, all on the device.

    The conditional vector is the discrete columns' one-hots side by side (`columns`, C of them); `counts`
    (C, W) holds how often each value occurs, the only thing about the data kept after training.
    """

    def __init__(self, layout: SpanLayout, counts: torch.Tensor):
        spans = layout.condition_spans
        self.device = counts.device
        self.n_columns = len(spans)
        index, valid = layout.softmax_index[spans], layout.softmax_valid[spans]  # (C, W)
        self.columns = index[valid]  # (Kc,) data positions, column after column
        self.segment = torch.arange(self.n_columns, device=self.device).repeat_interleave(valid.sum(dim=1))
        self.matrix = torch.nn.functional.one_hot(self.segment, self.n_columns).float() if self.n_columns else None
        self.local = (torch.arange(index.shape[1], device=self.device).expand_as(index))[valid]  # code of each
        dims = valid.sum(dim=1)
        self.offsets = torch.cumsum(dims, 0) - dims  # where each column starts in the conditional vector
        self.cond_dim = int(dims.sum())
        self.valid = valid
        self.counts = counts

    @classmethod
    def from_data(cls, data: torch.Tensor, layout: SpanLayout) -> ConditionSampler:
        spans = layout.condition_spans
        counts = torch.zeros(layout.softmax_valid[spans].shape, device=data.device)
        sampler = cls(layout, counts)
        sampler.n_rows = data.shape[0]
        if sampler.n_columns == 0:
            return sampler
        # One-hot rows times each column's local position, summed per column, is each row's value code.
        sampler.codes = ((data[:, sampler.columns] * sampler.local) @ sampler.matrix).round().long()  # (n, C)
        counts.scatter_add_(1, sampler.codes.T, torch.ones_like(sampler.codes.T, dtype=counts.dtype))
        # Rows sorted by their value in each column; a value's rows are a contiguous run starting at `first`.
        sampler.order = torch.argsort(sampler.codes.T, dim=1, stable=True)  # (C, n)
        sampler.first = (torch.cumsum(counts, dim=1) - counts).long()
        log_freq = torch.log(counts + 1) * sampler.valid
        sampler.train_probs = log_freq / log_freq.sum(dim=1, keepdim=True)
        return sampler

    def sample_for_training(self, batch: int, multi_rate: float):
        """(cond, mask, rows): the condition of each example, which columns it fixes, and a real row fitting it."""
        if self.n_columns == 0:
            return None, None, torch.randint(0, self.n_rows, (batch,), device=self.device)
        column = torch.randint(0, self.n_columns, (batch,), device=self.device)
        value = torch.multinomial(self.train_probs[column], 1).squeeze(1)
        count = self.counts[column, value].long()
        pick = (torch.rand(batch, device=self.device) * count).long().minimum(count - 1)
        rows = self.order[column, self.first[column, value] + pick]
        mask = torch.nn.functional.one_hot(column, self.n_columns).bool()
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
        return self._one_hot(codes, torch.nn.functional.one_hot(column, self.n_columns).bool())

    def fixed(self, batch: int, plan: ConditionPlan, column_of_span: dict[int, int]) -> torch.Tensor:
        """The conditional vector for user conditions, the same for every row."""
        codes = torch.zeros(batch, self.n_columns, dtype=torch.long, device=self.device)
        mask = torch.zeros(batch, self.n_columns, dtype=torch.bool, device=self.device)
        for span, code in zip(plan.spans, plan.codes):
            codes[:, column_of_span[span.start]] = code
            mask[:, column_of_span[span.start]] = True
        return self._one_hot(codes, mask)

    def condition_loss(self, raw: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy between generated discrete values and the conditioned ones, over fixed columns."""
        log_probs = segment_log_softmax(raw[:, self.columns], self.segment, self.matrix)
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
        cond_dim = int(self.layout_.softmax_valid[self.layout_.condition_spans].sum())
        self.generator_ = make_generator(self.embedding_dim + cond_dim, tuple(self.generator_dim), data_dim)
        self.critic_ = Critic(data_dim + cond_dim, tuple(self.discriminator_dim), self.pac)
        self.generator_.to(self.device_)
        self.critic_.to(self.device_)
        self._column_of_span = {
            int(self.layout_.softmax_index[s, 0]): c for c, s in enumerate(self.layout_.condition_spans.tolist())
        }

    def _modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator_, "critic": self.critic_}

    def _extra_state(self) -> dict:
        return {"category_counts": self.sampler_.counts.cpu().tolist()} if self.sampler_.n_columns else {}

    def _load_extra_state(self, state: dict) -> None:
        spans = self.layout_.condition_spans
        counts = torch.zeros(self.layout_.softmax_valid[spans].shape, device=self.device_)
        if len(spans):
            counts = torch.tensor(state["category_counts"], dtype=torch.float32, device=self.device_)
        self.sampler_ = ConditionSampler(self.layout_, counts)

    def _train(self, data: torch.Tensor, progress) -> None:
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
        real = data[rows[perm]]
        if cond is not None:
            real = torch.cat([real, cond[perm]], dim=1)
            fake = torch.cat([fake, cond], dim=1)
        loss, penalty = self.critic_.wasserstein_loss(real, fake)
        opt_d.zero_grad(set_to_none=True)
        (loss + self.gp_weight * penalty).backward()
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
        return activate(raw, self.layout_, tau=self.tau, generator=generator)
