"""TVAE: a variational autoencoder for tables (Xu et al. 2019, "Modeling Tabular data using Conditional GAN").

Model. The encoder maps an encoded row x (mode-specific normalised values, one-hot modes and categories) through
an MLP with ReLUs to the mean and log-variance of q(z|x), a diagonal Gaussian over `embedding_dim` latents.
The decoder maps z through a second MLP to one raw output per encoded column, and owns one learned sigma per
value (tanh) span. p(x|z) is, per span: a Gaussian N(tanh(out), sigma^2) for a value span, sigma clamped to
[0.01, 1] as in the paper; a categorical softmax(out) for every mode, category and null span.

Loss per batch = loss_factor * reconstruction + KL, both summed over columns and averaged over rows, where
reconstruction is (x - tanh(out))^2 / (2 sigma^2) + log sigma on value spans plus the cross-entropy of each
softmax span against its one-hot, and KL is that of q(z|x) from N(0, I). All softmax spans are handled at once
by segment softmax over the grouped columns (see `SpanLayout`), so a step costs the same few kernels whatever
the table's width.

Training is autograd on the modules' `forward` (the definitions): `_batch_loss` -> `backward()` -> fused Adam
(Kingma & Ba, with L2 `l2scale` as in the paper's code), then log sigma is clamped to its bounds. The training
matrix stays on the device; each epoch is a `randperm` on the device, one shuffled copy and slices of it,
`n // batch` full batches of `min(batch_size, n)` rows (the remainder, different each epoch, is skipped, as with
drop_last); the only host sync is the loss read once per epoch. Shapes: x (rows, data_dim) grouped, mu and
logvar (rows, embedding_dim), the decoder's output (rows, data_dim).

Subnormal floats (issue #10: on Adult the hand-written version slowed from 6.9 to 1.9 epochs/s over 100
epochs). Measured with a probe that counts subnormal values in parameters, gradients, Adam's moments and every
op's output during training (bench/RESULTS.md, "Subnormal floats"): they come from the encoder's weights and
their Adam first moments, in rows that get no gradient from the data (dead ReLU units in `encoder.net`, and
latent dimensions the KL term has switched off in `encoder.head`). The L2 term alone pulls those weights to
zero; once their gradient is far below Adam's eps, each step shrinks them by a near-constant factor into the
subnormal range, where rounding stalls them (0.9 x the smallest subnormal rounds back to it), so they never
reach zero and their count only grows (none at epoch 20, 27 at epoch 29, 419 weights and 1,908 first moments at
epoch 149). Every matmul and Adam step touching them takes the CPU's slow path. The fix, at that source: once
per epoch `base.zero_subnormals_` sets weights and first moments below 1e-20 (and subnormal second moments) to
the zero they were converging to: weights near 1e-30 are normal but their products with gradients are not (a
column of 500 subnormals per dead unit in the backward pass; late epochs 10x slower before, bench/RESULTS.md). `torch.set_flush_denormal(True)` is not
enough on its own: it sets the FTZ/DAZ flags of the calling thread only, not of torch's other intra-op threads.

Sampling is ancestral: z ~ N(0, I), then x ~ p(x|z). Softmax spans are drawn with the Gumbel-max trick (the
base decodes by argmax); value spans are tanh(out) plus sigma-scaled Gaussian noise, clipped to [-1, 1]. The
noise is part of the model (sigma is fitted as the spread of x around tanh(out)); leaving it out would sample
the decoder's conditional means only and make every continuous column too smooth.

Conditions. The base writes the conditioned one-hots after `_generate`, so rows satisfy conditions exactly; to
keep the other columns coherent with them, z is drawn from a per-value latent Gaussian instead of N(0, I). At
the end of fit the encoder runs once more over the training data (batched, no grad) and, for every value of
every discrete column with at least `MIN_CONDITION_ROWS` rows, keeps the count, mean and diagonal variance of
the posterior means of the rows holding it: aggregate statistics only, never a row. Several conditions combine
as a product of Gaussians divided by the prior counted once too often: precision P = 1 + sum_k (P_k - 1),
mean = sum_k P_k m_k / P, with each P_k floored at the prior's 1 so the combined precision stays positive (one
condition therefore samples its own Gaussian, variance capped at 1). Rare values (fewer than
`MIN_CONDITION_ROWS` training rows: too few to estimate a mean and variance in `embedding_dim` dimensions) fall
back to the prior N(0, I): the rows still hold the condition exactly (the base writes its one-hot), but the other
columns follow the unconditional distribution rather than the value's own. When no value has enough rows (a
6-row table, or columns of hundreds of values in 400 rows) every condition falls back, and the model saves
`latent_by_value: null`. Cost: one extra encoder pass at fit, O(n_conditions * embedding_dim) at sampling, no
rejection loop.

Differentially private training (opt-in, `dp_epsilon`). DP-SGD (Abadi et al. 2016, "Deep Learning with
Differential Privacy") through opacus (https://opacus.ai: `get_noise_multiplier`, then `PrivacyEngine.make_private`): batches are
Poisson samples of the training rows (each row in a batch independently with rate batch_size / n), every row's
gradient of its own loss is clipped to L2 norm `dp_max_grad_norm`, Gaussian noise of std noise_multiplier x
`dp_max_grad_norm` is added to the clipped sum, and opacus's RDP accountant (Mironov 2017; orders 1.25-256) picks the smallest
noise multiplier that keeps the whole run (`epochs` epochs) within (`dp_epsilon`, delta), then reports the
epsilon actually spent. delta defaults to 1 / n^1.1 (below 1/n, the usual bound). Per-sample gradients come from
opacus's `GradSampleModule` hooks on the Linear layers; the decoder's log sigma, a bare parameter, enters the
per-row loss through a small module (`_LogSigma`) that opacus differentiates with functorch. The networks have
no BatchNorm (nothing to replace). Early stopping is refused under DP (the validation rows would select the
epoch outside the accountant), and so is `compile`. The guarantee covers the network weights; what the encoder
learns from the data is listed in `privacy_["not_covered"]` (see `NOT_COVERED`), and the per-value latent
statistics for conditional sampling are not computed at all under DP: conditioned rows draw z from the prior
N(0, I) (the conditions still hold exactly; the other columns follow the unconditional distribution). The spent
budget is `privacy_` (saved in config.json as state "privacy"). The noise and the Poisson batch draws come from a
secret seed (OS entropy, never saved): a seed an attacker can read would let them replay the noise, so private
fits are not reproducible by default. `dp_reproducible=True` seeds them from `random_state` instead (tests,
benchmarks), and `privacy_["noise_seed"]` says which was used.

Other uses. `embed(df)` returns the posterior means (rows, embedding_dim). `score(df)` returns each row's
training loss, loss_factor * reconstruction + KL (the negative ELBO up to constants, with the same weighting as
training), evaluated at the posterior mean z = mu: deterministic, and one decoder pass per row.
"""

from __future__ import annotations

import math
import secrets

import numpy as np
import pandas as pd
import torch
from torch import nn

from tabtwin.generators import DEFAULT_SEED
from tabtwin.generators.base import (
    ConditionPlan,
    SyntheticGenerator,
    activate,
    adam,
    segment_log_softmax,
    zero_subnormals_,
)
from tabtwin.generators.params import MAX_WIDTH, check_float, check_int, check_widths
from tabtwin.generators.privacy import DP_ACCOUNTANT, DP_ALPHAS, NOT_COVERED, check_privacy, default_delta
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import Int, Items, Num, Rule, ascending, check_fields, fail

MIN_CONDITION_ROWS = 5  # a value needs this many training rows for its latent Gaussian to be estimated
SIGMA_MIN, SIGMA_MAX = 0.01, 1.0
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
INFERENCE_BATCH = 10_000  # rows per encoder/decoder pass outside training
_VAR_FLOOR = 1e-4  # keeps per-value latent precisions finite when a latent dimension is constant


def _mlp(in_dim: int, dims) -> tuple[nn.Sequential, int]:
    layers = []
    for width in dims:
        layers += [nn.Linear(in_dim, int(width)), nn.ReLU()]
        in_dim = int(width)
    return nn.Sequential(*layers), in_dim


class Encoder(nn.Module):
    """TVAE's encoder: (rows, data_dim) grouped rows -> mean and log-variance of q(z|x), each (rows, latent)."""

    def __init__(self, data_dim: int, compress_dims, embedding_dim: int):
        super().__init__()
        self.net, width = _mlp(data_dim, compress_dims)
        self.head = nn.Linear(width, 2 * embedding_dim)  # mean and log-variance from one matmul

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.net(x)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """TVAE's decoder: (rows, latent) z -> (rows, data_dim) raw outputs in grouped order; owns one learned
    log sigma per value column (the Gaussian's spread)."""

    def __init__(self, embedding_dim: int, decompress_dims, data_dim: int, n_values: int):
        super().__init__()
        self.net, width = _mlp(embedding_dim, decompress_dims)
        self.out = nn.Linear(width, data_dim)
        self.log_sigma = nn.Parameter(torch.full((n_values,), math.log(0.1)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(z))

    def clamped_log_sigma(self) -> torch.Tensor:
        """log sigma within [log SIGMA_MIN, log SIGMA_MAX]; clamping the log, not sigma, keeps the bounds exact
        (training clamps log_sigma to them after every step, and the gradient passes there)."""
        return self.log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    def sigma(self) -> torch.Tensor:
        return self.clamped_log_sigma().exp()


class TVAE(SyntheticGenerator):
    """TVAE (Xu et al. 2019) with the published defaults: 128-d latent, 128x128 encoder and decoder, batch 500,
    Adam 1e-3 with L2 1e-5, loss_factor 2, 300 epochs. See the module docstring for the model.

    Parameters are stored as given and validated in `fit` (scikit-learn's contract). `early_stopping`: patience
    in epochs on the validation distance (0 = off); `compile`: the training loss (both networks and the loss) is
    wrapped with `torch.compile` (opt-in; the first steps pay the compile time, see bench/RESULTS.md).

    Learned state: `encoder_`, `layout_`, `encoder_net_`, `decoder_net_`, `latent_stats_` (computed after the
    final weights, the best epoch's under early stopping, are in place), `history_`, `best_epoch_`.
    """

    model_name = "tvae"
    sampling_modules = ("decoder",)

    def __init__(
        self,
        embedding_dim=128,
        compress_dims=(128, 128),
        decompress_dims=(128, 128),
        l2scale=1e-5,
        batch_size=500,
        epochs=300,
        loss_factor=2.0,
        lr=1e-3,
        early_stopping=0,
        compile=False,
        device="auto",
        random_state=DEFAULT_SEED,
        verbose=True,
        dp_epsilon=None,
        dp_delta=None,
        dp_max_grad_norm=1.0,
        dp_reproducible=False,
    ):
        self.embedding_dim = embedding_dim
        self.compress_dims = compress_dims
        self.decompress_dims = decompress_dims
        self.l2scale = l2scale
        self.batch_size = batch_size
        self.epochs = epochs
        self.loss_factor = loss_factor
        self.lr = lr
        self.early_stopping = early_stopping
        self.compile = compile
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.dp_max_grad_norm = dp_max_grad_norm
        self.dp_reproducible = dp_reproducible

    # ------------------------------------------------------------------------------------------ hooks

    def _check_params(self) -> None:
        super()._check_params()
        check_int("embedding_dim", self.embedding_dim, maximum=MAX_WIDTH)
        check_widths("compress_dims", self.compress_dims)
        check_widths("decompress_dims", self.decompress_dims)
        check_float("lr", self.lr)
        check_float("loss_factor", self.loss_factor)
        check_float("l2scale", self.l2scale, inclusive=True)
        check_float("dp_max_grad_norm", self.dp_max_grad_norm)
        if self.dp_epsilon is not None:
            check_float("dp_epsilon", self.dp_epsilon)
            if self.early_stopping:
                raise TabtwinError("early_stopping cannot be used with dp_epsilon: choosing the epoch on validation rows is outside the privacy accounting; set early_stopping=0")
            if self.compile:
                raise TabtwinError("compile cannot be used with dp_epsilon (opacus's per-sample gradient hooks); set compile=False")
        if self.dp_delta is not None:
            check_float("dp_delta", self.dp_delta)
            if self.dp_epsilon is None or not self.dp_delta < 1:
                raise TabtwinError(f"dp_delta must be in (0, 1) and needs dp_epsilon, got {self.dp_delta!r}")

    def _build(self, data_dim: int) -> None:
        n_values = len(self.layout_.value_columns)
        self.encoder_net_ = Encoder(data_dim, self.compress_dims, self.embedding_dim).to(self.device_)
        self.decoder_net_ = Decoder(self.embedding_dim, self.decompress_dims, data_dim, n_values).to(self.device_)
        self.latent_stats_ = None
        self.privacy_ = None

    def _modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder_net_, "decoder": self.decoder_net_}

    def _train(self, data: torch.Tensor, progress) -> None:
        if self.dp_epsilon is not None:
            self._train_private(data, progress)
            return
        encoder, decoder = self.encoder_net_, self.decoder_net_
        optimizer = adam([*encoder.parameters(), *decoder.parameters()], lr=self.lr, weight_decay=self.l2scale)
        n = data.shape[0]
        batch = min(self.batch_size, n)
        steps = n // batch
        batch_loss = torch.compile(self._batch_loss) if self.compile else self._batch_loss
        encoder.train()
        decoder.train()
        # Both networks see grouped columns (see SpanLayout): the loss reads two slices of one tensor instead of
        # gathering columns every step, and an epoch shuffles a single copy.
        grouped = data[:, self.layout_.grouped]
        for epoch in progress:
            # One shuffled copy per epoch, then contiguous slices: cheaper than row gathers every step.
            shuffled = grouped[torch.randperm(n, device=data.device)]
            totals = torch.zeros(3, device=data.device)
            for step in range(steps):
                x = shuffled[step * batch : (step + 1) * batch]
                noise = torch.randn(batch, self.embedding_dim, device=data.device)
                reconstruction, kl = batch_loss(x, noise)
                loss = reconstruction + kl
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    decoder.log_sigma.clamp_(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
                totals += torch.stack([loss.detach(), reconstruction.detach(), kl.detach()])
            zero_subnormals_(optimizer)  # see the module docstring, "Subnormal floats"
            loss, reconstruction, kl = (totals / steps).tolist()  # one device sync per epoch
            if self._after_epoch(progress, epoch, {"loss": loss, "reconstruction": reconstruction, "kl": kl}):
                break

    def _train_private(self, data: torch.Tensor, progress) -> None:
        """DP-SGD (Abadi et al. 2016) with opacus: Poisson-sampled batches, per-row gradients clipped to
        `dp_max_grad_norm`, Gaussian noise calibrated by the RDP accountant to (`dp_epsilon`, delta) over
        `epochs` epochs; sets `privacy_`. See the module docstring."""
        import warnings

        from opacus import PrivacyEngine
        from opacus.accountants.utils import get_noise_multiplier
        from torch.utils.data import DataLoader, TensorDataset

        n = data.shape[0]
        delta = self.dp_delta if self.dp_delta is not None else default_delta(n)
        batch = min(self.batch_size, n)
        trainer = _PrivateLoss(self)
        optimizer = adam(list(trainer.parameters()), lr=self.lr, weight_decay=self.l2scale)
        # DP-SGD's guarantee assumes the attacker cannot replay the noise or the batch draws. A seed that is in a
        # config file or a run's parameters would let them, so both come from OS entropy (never saved) unless
        # dp_reproducible asks for random_state (tests, benchmarks; not for a release).
        seeded = self.dp_reproducible and self.random_state is not None
        seed = self.random_state if seeded else secrets.randbits(62)
        sampler_rng = torch.Generator().manual_seed(seed)
        noise_rng = torch.Generator(device=data.device).manual_seed(seed + 1)
        # Indices, not rows, go through the loader: the rows stay on the device and each batch is one gather.
        loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=batch, generator=sampler_rng)
        with warnings.catch_warnings():  # opacus warns that secure_mode is off (a CSPRNG for the noise): stated in privacy_
            warnings.simplefilter("ignore")
            engine = PrivacyEngine(accountant=DP_ACCOUNTANT)
            noise_multiplier = get_noise_multiplier(
                target_epsilon=float(self.dp_epsilon),
                target_delta=float(delta),
                sample_rate=1 / len(loader),
                epochs=self.epochs,
                accountant=DP_ACCOUNTANT,
                alphas=DP_ALPHAS,
            )
            module, dp_optimizer, dp_loader = engine.make_private(
                module=trainer,
                optimizer=optimizer,
                data_loader=loader,
                noise_multiplier=noise_multiplier,
                max_grad_norm=float(self.dp_max_grad_norm),
                poisson_sampling=True,
                noise_generator=noise_rng,
            )
        # Kept for inspection (tests): the GradSampleModule computing per-row gradients, the clipping optimizer.
        self._private_module, self._private_optimizer = module, dp_optimizer
        grouped = data[:, self.layout_.grouped]
        module.train()
        # opacus's Poisson sampler draws from the loader's generator (sampler_rng: make_private passes its
        # secure_rng, None outside secure_mode, and DPDataLoader.from_data_loader then falls back to the loader's),
        # and the noise from noise_rng. The global RNG (the VAE's reparameterisation draws) gets the same seed
        # source, so a secret fit does not follow random_state anywhere in the private phase.
        torch.manual_seed(seed + 2)
        with warnings.catch_warnings():
            # torch notes that opacus's backward hooks fire on outputs when the input (the rows) needs no gradient:
            # that is the intended case.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            self._private_epochs(module, dp_optimizer, optimizer, dp_loader, engine, grouped, delta, progress)
        self.privacy_ = {
            "mechanism": "DP-SGD (Abadi et al. 2016) with opacus: Poisson sampling, per-row gradient clipping, Gaussian noise",
            "epsilon": float(engine.accountant.get_epsilon(delta, alphas=DP_ALPHAS)),
            "target_epsilon": float(self.dp_epsilon),
            "delta": float(delta),
            "delta_rule": "given" if self.dp_delta is not None else "1 / n^1.1",
            "noise_multiplier": float(dp_optimizer.noise_multiplier),
            "max_grad_norm": float(self.dp_max_grad_norm),
            "sample_rate": float(1 / len(loader)),
            "epochs": len(self.history_),
            "steps": int(sum(steps for _, _, steps in engine.accountant.history)),  # (noise, rate, steps) entries
            "rows": int(n),
            "accountant": f"opacus {DP_ACCOUNTANT} (Renyi DP, Mironov 2017; orders 1.25-256)",
            "secure_mode": False,
            "noise_seed": ("random_state (dp_reproducible): anyone who knows the seed can replay the noise, so the "
                           "guarantee does not hold for a release" if seeded else
                           "secret: drawn from OS entropy and never saved, so the run is not reproducible"),
            "covered": "network weights (encoder and decoder) and all that is sampled from them",
            "not_covered": list(NOT_COVERED),
            "conditional_sampling": "latent statistics per value not computed under DP: conditions draw z from the prior",
        }

    def _private_epochs(self, module, dp_optimizer, optimizer, dp_loader, engine, grouped, delta, progress) -> None:
        """The DP-SGD epochs (see `_train_private`); opacus's hooks are removed at the end, even on an error."""
        decoder = self.decoder_net_
        try:
            for epoch in progress:
                totals = torch.zeros(3, device=grouped.device)
                rows = 0
                for (index,) in dp_loader:
                    x = grouped[index.to(grouped.device)]
                    noise = torch.randn(len(x), self.embedding_dim, device=grouped.device)
                    reconstruction, kl = module(x, noise)
                    loss = (reconstruction + kl).mean() if len(x) else (reconstruction + kl).sum()
                    dp_optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    dp_optimizer.step()
                    with torch.no_grad():
                        decoder.log_sigma.clamp_(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
                        totals += torch.stack([(reconstruction + kl).sum(), reconstruction.sum(), kl.sum()]).detach()
                    rows += len(x)
                zero_subnormals_(optimizer)
                loss, reconstruction, kl = (totals / max(rows, 1)).tolist()
                spent = engine.accountant.get_epsilon(delta, alphas=DP_ALPHAS)
                record = {"loss": loss, "reconstruction": reconstruction, "kl": kl, "epsilon": spent}
                if self._after_epoch(progress, epoch, record):
                    break
        finally:
            module._close()  # removes opacus's hooks and per-sample attributes from the shared layers

    def _after_training(self, data: torch.Tensor) -> None:
        if self.dp_epsilon is not None:  # per-value latent statistics would read the rows outside the accountant
            self.latent_stats_ = None
            return
        # After the base has restored the best epoch's weights (early stopping): the latent statistics must
        # come from the encoder that is kept.
        self._fit_latent_stats(data)

    def _batch_loss(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss of a batch, as (loss_factor * reconstruction, KL), each the mean over rows of
        `_row_losses`, with z = mu + noise * sigma_q (the reparameterisation). `x` (rows, data_dim) grouped,
        `noise` (rows, embedding_dim) standard normal."""
        mu, logvar = self.encoder_net_(x)
        z = torch.addcmul(mu, noise, torch.exp(0.5 * logvar))
        reconstruction, kl = self._row_losses(x, self.decoder_net_(z), mu, logvar)
        return reconstruction.mean(), kl.mean()

    def _row_losses(
        self, x: torch.Tensor, raw: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_sigma=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss_factor * reconstruction NLL and KL(q(z|x) || N(0, I)), each of shape (rows,).

        `x` (the rows) and `raw` (the decoder's output) are both grouped: value columns first, then softmax columns.
        `log_sigma` (rows, values), under DP only: the clamped log sigma per row, so that opacus sees it as a
        layer's output (see `_LogSigma`); otherwise the decoder's own.
        """
        layout = self.layout_
        sigma = self.decoder_net_.sigma() if log_sigma is None else log_sigma.exp()
        n_values = layout.n_values
        gaussian = (x[:, :n_values] - torch.tanh(raw[:, :n_values])) ** 2 / (2 * sigma**2) + torch.log(sigma)
        log_probs = segment_log_softmax(raw[:, n_values:], layout.softmax_segment, layout.softmax_matrix)
        cross_entropy = -(x[:, n_values:] * log_probs).sum(dim=1)
        reconstruction = self.loss_factor * (gaussian.sum(dim=1) + cross_entropy)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
        return reconstruction, kl

    def _generate(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> torch.Tensor:
        self.encoder_net_.eval()
        self.decoder_net_.eval()
        mean, std = self._latent_prior(plan)
        z = torch.randn((n, self.embedding_dim), device=self.device_, generator=generator) * std + mean
        out = activate(self.decoder_net_(z), self.layout_, tau=1.0, generator=generator)
        values = out[:, : self.layout_.n_values]
        noise = torch.randn(values.shape, device=self.device_, generator=generator)
        values.add_(noise * self.decoder_net_.sigma()).clamp_(-1.0, 1.0)
        return out[:, self.layout_.to_encoded]

    # ------------------------------------------------------------------------------------------ conditions

    @torch.no_grad()
    def _fit_latent_stats(self, data: torch.Tensor) -> None:
        """Count, mean and variance of the posterior means of the rows holding each discrete value."""
        positions = [
            span.start + code
            for span in self.encoder_.output_info
            if span.role == "category"
            for code in range(span.dim)
        ]
        if not positions:
            self.latent_stats_ = None
            return
        index = torch.tensor(positions, dtype=torch.long, device=data.device)
        dim = self.embedding_dim
        count = torch.zeros(len(positions), dtype=torch.float64, device=data.device)
        total = torch.zeros((len(positions), dim), dtype=torch.float64, device=data.device)
        squares = torch.zeros_like(total)
        self.encoder_net_.eval()
        for start in range(0, data.shape[0], INFERENCE_BATCH):
            x = data[start : start + INFERENCE_BATCH]
            mu = self.encoder_net_(x[:, self.layout_.grouped])[0].double()
            onehot = x[:, index].double()  # (rows, values)
            count += onehot.sum(dim=0)
            total += onehot.T @ mu
            squares += onehot.T @ mu**2
        keep = count >= MIN_CONDITION_ROWS
        if not bool(keep.any()):  # every value too rare: conditions fall back to the prior (module docstring)
            self.latent_stats_ = None
            return
        mean = total[keep] / count[keep, None]
        var = (squares[keep] / count[keep, None] - mean**2).clamp_min(_VAR_FLOOR)
        self.latent_stats_ = {
            "position": index[keep],
            "count": count[keep],
            "mean": mean.float(),
            "var": var.float(),
        }

    def _latent_prior(self, plan: ConditionPlan | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the latent Gaussian to sample z from under `plan` (N(0, I) without one)."""
        dim = self.embedding_dim
        mean = torch.zeros(dim, device=self.device_)
        precision = torch.ones(dim, device=self.device_)
        stats = self.latent_stats_
        if plan is None or stats is None:
            return mean, torch.ones(dim, device=self.device_)
        positions = stats["position"].tolist()
        weighted = torch.zeros(dim, device=self.device_)
        for span, code in zip(plan.spans, plan.codes):
            if span.start + code not in positions:  # too rare to estimate: the prior, i.e. no evidence
                continue
            i = positions.index(span.start + code)
            value_precision = (1.0 / stats["var"][i]).clamp_min(1.0)
            precision = precision + value_precision - 1.0
            weighted = weighted + value_precision * stats["mean"][i]
        return weighted / precision, precision.rsqrt()

    def _extra_state(self) -> dict:
        stats = self.latent_stats_
        privacy = {"privacy": self.privacy_} if self.privacy_ is not None else {}
        if stats is None:
            return {"latent_by_value": None, **privacy}
        return {"latent_by_value": {key: stats[key].tolist() for key in ("position", "count", "mean", "var")}, **privacy}

    def _load_extra_state(self, state: dict) -> None:
        """The privacy block and the per-value latent statistics saved in config.json, every field checked
        (`privacy.check_privacy`; statistics of this model's size, at positions of its category columns)."""
        check_fields(state, {"latent_by_value": Rule(), **({"privacy": Rule()} if "privacy" in state else {})}, "state")
        self.privacy_ = check_privacy(state.get("privacy"), self.dp_epsilon)
        self.latent_stats_ = self._latent_stats_from(state["latent_by_value"])

    def _latent_stats_from(self, saved) -> dict | None:
        if saved is None:
            return None
        # Latent means and variances of a trained encoder are of order 1; the bounds keep float32 sampling finite.
        dim, bound = self.embedding_dim, 1e6
        check_fields(saved, {"position": Items(Int(0, self.encoder_.output_dim - 1)), "count": Items(Num(MIN_CONDITION_ROWS)),
                             "mean": Items(Items(Num(-bound, bound))), "var": Items(Items(Num(0.0, bound, open_low=True)))},
                     "latent_by_value")
        n = len(saved["position"])
        if any(len(saved[key]) != n for key in ("count", "mean", "var")) or any(
            len(row) != dim for key in ("mean", "var") for row in saved[key]
        ):
            fail("latent_by_value", f"must hold {n} counts, and means and variances of {dim} numbers each")
        ascending(saved["position"], "latent_by_value", "position")
        categories = {span.start + code for span in self.encoder_.output_info if span.role == "category"
                      for code in range(span.dim)}
        if not set(saved["position"]) <= categories:
            fail("latent_by_value", "position must name category columns of the encoder")
        return {
            "position": torch.tensor(saved["position"], dtype=torch.long, device=self.device_),
            "count": torch.tensor(saved["count"], dtype=torch.float64, device=self.device_),
            "mean": torch.tensor(saved["mean"], dtype=torch.float32, device=self.device_),
            "var": torch.tensor(saved["var"], dtype=torch.float32, device=self.device_),
        }

    # ------------------------------------------------------------------------------------------ other uses

    @torch.no_grad()
    def embed(self, df: pd.DataFrame) -> np.ndarray:
        """Posterior means of the rows of `df`, shape (rows, embedding_dim), float32."""
        return np.concatenate([mu.cpu().numpy() for _, mu, _ in self._encode_batches(df)], axis=0)

    @torch.no_grad()
    def score(self, df: pd.DataFrame) -> np.ndarray:
        """Per-row anomaly score: loss_factor * reconstruction + KL at z = mu (higher is more unusual)."""
        scores = []
        for x, mu, logvar in self._encode_batches(df):
            reconstruction, kl = self._row_losses(x, self.decoder_net_(mu), mu, logvar)
            scores.append((reconstruction + kl).cpu().numpy())
        return np.concatenate(scores, axis=0).astype(np.float64)

    def _encode_batches(self, df: pd.DataFrame):
        self._check_fitted()
        if not isinstance(df, pd.DataFrame):
            raise TabtwinError(f"expected a pandas DataFrame, got {type(df).__name__}")
        encoded = self.encoder_.transform(df)
        self.encoder_net_.eval()
        self.decoder_net_.eval()
        if len(encoded) == 0:
            empty = torch.zeros((0, self.embedding_dim), device=self.device_)
            yield torch.zeros((0, encoded.shape[1]), device=self.device_), empty, empty
            return
        for start in range(0, len(encoded), INFERENCE_BATCH):
            x = torch.from_numpy(encoded[start : start + INFERENCE_BATCH]).to(self.device_)
            x = x[:, self.layout_.grouped]
            mu, logvar = self.encoder_net_(x)
            yield x, mu, logvar


class _LogSigma(nn.Module):
    """The decoder's log sigma (the same Parameter), clamped, repeated for every row of the batch: as a layer's
    output it gets per-row gradients from opacus (functorch), which a bare parameter outside `forward` would not."""

    def __init__(self, log_sigma: nn.Parameter):
        super().__init__()
        self.log_sigma = log_sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX).expand(x.shape[0], -1)


class _PrivateLoss(nn.Module):
    """TVAE's per-row training loss as one module over the same layers and parameters as the model's networks,
    for opacus to wrap: (x grouped, noise) -> (loss_factor * reconstruction, KL), each (rows,)."""

    def __init__(self, model: TVAE):
        super().__init__()
        self.model = [model]  # a list: not a submodule (its networks are registered below, once)
        self.encoder = model.encoder_net_  # no parameters of its own, only Linear layers
        self.decoder_net = model.decoder_net_.net
        self.decoder_out = model.decoder_net_.out
        self.log_sigma = _LogSigma(model.decoder_net_.log_sigma)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = torch.addcmul(mu, noise, torch.exp(0.5 * logvar))
        raw = self.decoder_out(self.decoder_net(z))
        return self.model[0]._row_losses(x, raw, mu, logvar, log_sigma=self.log_sigma(x))
