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

Training is autograd on the modules' `forward` (the definitions), run by `generators.training`: `_batch_loss`
-> `backward()` -> fused Adam (Kingma & Ba, with L2 `l2scale` as in the paper's code), then log sigma is clamped to
its bounds. The training matrix stays on the device; each epoch is a `randperm` on the device, one shuffled copy and
slices of it, `n // batch` full batches of `min(batch_size, n)` rows (the remainder, different each epoch, is
skipped, as with drop_last); the only host sync is the loss read once per epoch. Shapes: x (rows, data_dim)
grouped, mu and logvar (rows, embedding_dim), the decoder's output (rows, data_dim). Weights that the data leave
unused (dead ReLU units in `encoder.net`, latent dimensions the KL term switched off in `encoder.head`) are where
subnormal floats came from and slowed training tenfold: see `generators.training`.

Sampling is ancestral: z ~ N(0, I), then x ~ p(x|z). Softmax spans are drawn with the Gumbel-max trick (the
base decodes by argmax); value spans are tanh(out) plus sigma-scaled Gaussian noise, clipped to [-1, 1]. The
noise is part of the model (sigma is fitted as the spread of x around tanh(out)); leaving it out would sample
the decoder's conditional means only and make every continuous column too smooth.

Conditions. The base writes the conditioned one-hots after `_generate`, so rows satisfy conditions exactly; to
keep the other columns coherent with them, z is drawn from a per-value latent Gaussian instead of N(0, I), fitted
once training ends (`generators.latent`).

Differentially private training (opt-in, `dp_epsilon`): DP-SGD (Abadi et al. 2016) through opacus,
`generators.privacy`, which says what it does and what the guarantee covers. The per-row loss runs through
`_PrivateLoss`, one module over the model's own layers, for opacus to wrap; the decoder's log sigma, a bare
parameter, enters it through `_LogSigma`, which opacus differentiates per row with functorch. The networks have no
BatchNorm (nothing to replace). Early stopping is refused under DP (the validation rows would select the epoch
outside the accountant), and so is `compile`; the per-value latent statistics for conditional sampling are not
computed at all (conditioned rows draw z from the prior N(0, I); the conditions still hold exactly). The spent
budget is `privacy_` (saved in config.json as state "privacy").

Other uses. `embed(df)` returns the posterior means (rows, embedding_dim). `score(df)` returns each row's
training loss, loss_factor * reconstruction + KL (the negative ELBO up to constants, with the same weighting as
training), evaluated at the posterior mean z = mu: deterministic, and one decoder pass per row.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from tabtwin.generators import DEFAULT_SEED
from tabtwin.generators.conditions import ConditionPlan
from tabtwin.generators.latent import (
    INFERENCE_BATCH, category_positions, fit_latent_stats, latent_prior, latent_stats_from_json, latent_stats_to_json,
)
from tabtwin.generators.onehot import OneHotGenerator, activate, segment_log_softmax
from tabtwin.generators.params import (
    BATCH, EPOCHS, NON_NEGATIVE, PATIENCE, POSITIVE, WIDTH, Bool, Device, Seed, Widths,
)
from tabtwin.generators.privacy import check_privacy, private_training
from tabtwin.generators.training import Group, Training, shuffled_batches
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import Maybe, Rule, check_fields

SIGMA_MIN, SIGMA_MAX = 0.01, 1.0
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
# What a DP fit's privacy block says about the TVAE (`privacy.private_training`).
PRIVACY_NOTES = {
    "covered": "network weights (encoder and decoder) and all that is sampled from them",
    "conditional_sampling": "latent statistics per value not computed under DP: conditions draw z from the prior",
}


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


class TVAE(OneHotGenerator):
    """TVAE (Xu et al. 2019) with the published defaults: 128-d latent, 128x128 encoder and decoder, batch 500,
    Adam 1e-3 with L2 1e-5, loss_factor 2, 300 epochs. See the module docstring for the model.

    Parameters are stored as given and validated in `fit` (scikit-learn's contract). `early_stopping`: patience
    in epochs on the validation distance (0 = off); `compile`: the training loss (both networks and the loss) is
    wrapped with `torch.compile` (opt-in; the first steps pay the compile time, see bench/RESULTS.md).

    Learned state: `encoder_`, `layout_`, `encoder_net_`, `decoder_net_`, `latent_stats_` (computed after the
    final weights, the best epoch's under early stopping, are in place), `history_`, `best_epoch_`, `stop_reason_`,
    `privacy_` (None unless trained with `dp_epsilon`).
    """

    model_name = "tvae"
    sampling_modules = ("decoder",)
    _parameter_constraints = {
        "embedding_dim": WIDTH, "compress_dims": Widths(), "decompress_dims": Widths(),
        "l2scale": NON_NEGATIVE, "batch_size": BATCH, "epochs": EPOCHS, "loss_factor": POSITIVE, "lr": POSITIVE,
        "early_stopping": PATIENCE, "compile": Bool(), "device": Device(), "random_state": Seed(), "verbose": Bool(),
        "dp_epsilon": Maybe(POSITIVE), "dp_delta": Maybe(POSITIVE), "dp_max_grad_norm": POSITIVE,
        "dp_reproducible": Bool(),
    }

    def __init__(
        self,
        embedding_dim: int = 128, compress_dims: tuple[int, ...] = (128, 128),
        decompress_dims: tuple[int, ...] = (128, 128),
        l2scale: float = 1e-5, batch_size: int = 500, epochs: int = 300, loss_factor: float = 2.0, lr: float = 1e-3,
        early_stopping: int = 0, compile: bool = False,
        device: str = "auto", random_state: int | None = DEFAULT_SEED, verbose: bool = True,
        dp_epsilon: float | None = None, dp_delta: float | None = None, dp_max_grad_norm: float = 1.0,
        dp_reproducible: bool = False,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------------------------------ hooks

    def _check_params(self) -> None:
        super()._check_params()
        if self.dp_epsilon is not None:
            if self.early_stopping:
                raise TabtwinError("early_stopping cannot be used with dp_epsilon: choosing the epoch on validation rows is outside the privacy accounting; set early_stopping=0")
            if self.compile:
                raise TabtwinError("compile cannot be used with dp_epsilon (opacus's per-sample gradient hooks); set compile=False")
        if self.dp_delta is not None and (self.dp_epsilon is None or not self.dp_delta < 1):
            raise TabtwinError(f"dp_delta must be in (0, 1) and needs dp_epsilon, got {self.dp_delta!r}")

    def _build(self) -> None:
        data_dim, n_values = self.encoder_.output_dim, len(self.layout_.value_columns)
        self.encoder_net_ = Encoder(data_dim, self.compress_dims, self.embedding_dim).to(self.device_)
        self.decoder_net_ = Decoder(self.embedding_dim, self.decompress_dims, data_dim, n_values).to(self.device_)
        self.latent_stats_ = None
        self.privacy_ = None

    def _modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder_net_, "decoder": self.decoder_net_}

    def _training(self, data: torch.Tensor, generator: torch.Generator | None) -> Training:
        """One Adam over both networks; full batches of min(batch_size, rows) shuffled rows (DP-SGD's Poisson
        batches under `dp_epsilon`, `privacy.private_training`)."""
        # Both networks see grouped columns (see SpanLayout): the loss reads two slices of one tensor instead of
        # gathering columns every step, and an epoch shuffles a single copy.
        grouped = data[:, self.layout_.grouped]
        if self.dp_epsilon is not None:
            trainer = _PrivateLoss(self)
            return private_training(self, trainer, {"vae": Group(trainer.parameters(), self.lr, self.l2scale)},
                                    grouped, self._private_step, PRIVACY_NOTES)
        batch = min(self.batch_size, len(grouped))
        batch_loss = torch.compile(self._batch_loss) if self.compile else self._batch_loss

        def step(x: torch.Tensor, update):
            noise = torch.randn(batch, self.embedding_dim, device=x.device)
            reconstruction, kl = batch_loss(x, noise)
            loss = reconstruction + kl
            update("vae", loss)
            self._clamp_log_sigma()
            return {"loss": loss, "reconstruction": reconstruction, "kl": kl}, 1

        parameters = [*self.encoder_net_.parameters(), *self.decoder_net_.parameters()]
        return Training({"vae": Group(parameters, self.lr, self.l2scale)}, shuffled_batches(grouped, batch), step)

    def _private_step(self, module: nn.Module, x: torch.Tensor, update):
        """One DP-SGD step through opacus's `module` (the wrapped `_PrivateLoss`): the figures are sums over the
        Poisson batch's rows, which may be none."""
        noise = torch.randn(len(x), self.embedding_dim, device=x.device)
        reconstruction, kl = module(x, noise)
        update("vae", (reconstruction + kl).mean() if len(x) else (reconstruction + kl).sum())
        self._clamp_log_sigma()
        with torch.no_grad():
            return {"loss": (reconstruction + kl).sum(), "reconstruction": reconstruction.sum(), "kl": kl.sum()}, len(x)

    @torch.no_grad()
    def _clamp_log_sigma(self) -> None:
        self.decoder_net_.log_sigma.clamp_(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

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

    def _fit_latent_stats(self, data: torch.Tensor) -> None:
        """`latent_stats_` from the encoder now in place, on the training rows `data` (encoder order)."""
        self.encoder_net_.eval()
        self.latent_stats_ = fit_latent_stats(lambda x: self.encoder_net_(x[:, self.layout_.grouped])[0], data,
                                              category_positions(self.encoder_.output_info), self.embedding_dim)

    def _latent_prior(self, plan: ConditionPlan | None) -> tuple[torch.Tensor, torch.Tensor]:
        return latent_prior(self.latent_stats_, plan, self.embedding_dim, self.device_)

    def _extra_state(self) -> dict:
        privacy = {"privacy": self.privacy_} if self.privacy_ is not None else {}
        return {"latent_by_value": latent_stats_to_json(self.latent_stats_), **privacy}

    def _load_extra_state(self, state: dict) -> None:
        """The privacy block and the per-value latent statistics saved in config.json, every field checked
        (`privacy.check_privacy`, `latent.latent_stats_from_json`)."""
        check_fields(state, {"latent_by_value": Rule(), **({"privacy": Rule()} if "privacy" in state else {})}, "state")
        self.privacy_ = check_privacy(state.get("privacy"), self.dp_epsilon)
        positions = category_positions(self.encoder_.output_info)
        self.latent_stats_ = latent_stats_from_json(state["latent_by_value"], self.embedding_dim,
                                                    self.encoder_.output_dim, positions, self.device_)

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
