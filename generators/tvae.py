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
the table's width. The step's forward and backward passes are written out by hand (`_step_gradients`; a test
checks them against autograd on `_row_losses`): the cross-entropy's gradient is softmax - x, the Gaussian's and
the KL's one expression each, no graph is built, the softmax takes no per-span max (logits are clamped, see
LOGIT_BOUND), and the loss is kept as seven running sums that `_losses` combines once per epoch. Parameters are
views of one flat buffer, so Adam is one fused kernel. The training matrix stays on the device; each epoch is a
`randperm` on the device, one shuffled copy and slices of it, `n // batch` full batches of `min(batch_size, n)`
rows (the remainder, different each epoch, is skipped, as with drop_last); the only host sync is the loss read
once per epoch.

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
condition therefore samples its own Gaussian, variance capped at 1). Rare values (too few rows to estimate)
fall back to N(0, I). Cost: one extra encoder pass at fit, O(n_conditions * embedding_dim) at sampling, no
rejection loop.

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

from tabtwin.generators.base import (
    ConditionPlan,
    ModelError,
    SyntheticGenerator,
    activate,
    adam,
    flatten_parameters,
    segment_log_softmax,
)
from tabtwin.pipeline.errors import TabtwinError

MIN_CONDITION_ROWS = 5  # a value needs this many training rows for its latent Gaussian to be estimated
SIGMA_MIN, SIGMA_MAX = 0.01, 1.0
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
INFERENCE_BATCH = 10_000  # rows per encoder/decoder pass outside training
# Softmax logits are clamped to +-LOGIT_BOUND in the loss, straight through (the clamp's gradient is taken as 1):
# exp then stays inside float32's normal range without a per-span max. A logit this far out means probabilities
# of e^-120 within its span; the decoder's logits stay far inside it.
LOGIT_BOUND = 60.0
_VAR_FLOOR = 1e-4  # keeps per-value latent precisions finite when a latent dimension is constant


def _mlp(in_dim: int, dims) -> tuple[nn.Sequential, int]:
    layers = []
    for width in dims:
        layers += [nn.Linear(in_dim, int(width)), nn.ReLU()]
        in_dim = int(width)
    return nn.Sequential(*layers), in_dim


def _linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


def _forward(layers: list[nn.Linear], x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Linear layers with a ReLU between each and the next, as `_mlp` and a last linear build them: the input of
    every layer (what the backward pass needs) and the output."""
    inputs = []
    for i, linear in enumerate(layers):
        inputs.append(x)
        x = torch.addmm(linear.bias, x, linear.weight.t())
        if i < len(layers) - 1:
            x = x.relu_()
    return inputs, x


def _backward(
    layers: list[nn.Linear], inputs: list[torch.Tensor], grad: torch.Tensor, alpha: float = 1.0, input_grad: bool = True
):
    """Backward pass through `_forward`, given `alpha * grad` as the gradient of its output: writes each layer's
    weight and bias .grad, and returns the gradient w.r.t. the first input (None without `input_grad`). `alpha`
    rides on the top layer's matmuls, which saves scaling `grad` in a pass of its own."""
    for i in reversed(range(len(layers))):
        linear = layers[i]
        linear.weight.grad.addmm_(grad.t(), inputs[i], beta=0, alpha=alpha)
        torch.sum(grad, dim=0, out=linear.bias.grad)
        if alpha != 1.0:
            linear.bias.grad.mul_(alpha)
        if i == 0 and not input_grad:
            return None
        if alpha == 1.0:
            grad = torch.mm(grad, linear.weight)
        else:
            grad = torch.addmm(grad.new_empty(()), grad, linear.weight, beta=0, alpha=alpha)
        alpha = 1.0
        if i > 0:  # through the ReLU that made inputs[i]: zero where it was zero
            grad = torch.ops.aten.threshold_backward(grad, inputs[i], 0)
    return grad


class Encoder(nn.Module):
    def __init__(self, data_dim: int, compress_dims, embedding_dim: int):
        super().__init__()
        self.net, width = _mlp(data_dim, compress_dims)
        self.head = nn.Linear(width, 2 * embedding_dim)  # mean and log-variance from one matmul

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.net(x)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
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
    model_name = "tvae"

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
        device="auto",
        random_state=None,
        verbose=True,
    ):
        self.embedding_dim = embedding_dim
        self.compress_dims = compress_dims
        self.decompress_dims = decompress_dims
        self.l2scale = l2scale
        self.batch_size = batch_size
        self.epochs = epochs
        self.loss_factor = loss_factor
        self.lr = lr
        self.early_stopping = early_stopping  # patience in epochs on the validation distance; 0 = off
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------ hooks

    def _build(self, data_dim: int) -> None:
        for name in ("embedding_dim", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise TabtwinError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if int(self.epochs) < 0:
            raise TabtwinError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        n_values = len(self.layout_.value_columns)
        self.encoder_net_ = Encoder(data_dim, self.compress_dims, int(self.embedding_dim)).to(self.device_)
        self.decoder_net_ = Decoder(int(self.embedding_dim), self.decompress_dims, data_dim, n_values).to(self.device_)
        self.latent_stats_ = None

    def _modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder_net_, "decoder": self.decoder_net_}

    def _train(self, data: torch.Tensor, progress) -> None:
        encoder, decoder = self.encoder_net_, self.decoder_net_
        # One flat buffer for Adam; `_step_gradients` overwrites every .grad view every step.
        flat = flatten_parameters(list(encoder.parameters()) + list(decoder.parameters()))
        optimizer = adam([flat], lr=self.lr, weight_decay=self.l2scale)
        n = data.shape[0]
        batch = min(int(self.batch_size), n)
        steps = n // batch
        log_sigma_bounds = (LOG_SIGMA_MIN, LOG_SIGMA_MAX)
        layers = self._layers()
        encoder.train()
        decoder.train()
        # Both networks see grouped columns (see SpanLayout): the loss reads two slices of one tensor instead of
        # gathering columns every step, and an epoch shuffles a single copy.
        grouped = data[:, self.layout_.grouped]
        shuffled = torch.empty_like(grouped)
        with torch.no_grad():  # the gradients are written by hand
            for epoch in progress:
                # One shuffled copy per epoch, then contiguous slices: cheaper than row gathers every step. The copy
                # reuses one buffer, since a fresh one page-faults in on every epoch.
                shuffled = torch.index_select(grouped, 0, torch.randperm(n, device=data.device), out=shuffled)
                totals = torch.zeros(7, device=data.device)
                for step in range(steps):
                    x = shuffled[step * batch : (step + 1) * batch]
                    noise = torch.randn(batch, int(self.embedding_dim), device=data.device)
                    totals += self._step_gradients(x, noise, layers)
                    optimizer.step()
                    decoder.log_sigma.clamp_(*log_sigma_bounds)
                loss, reconstruction, kl = self._losses(totals / steps, batch).tolist()  # one device sync per epoch
                if self._after_epoch(progress, epoch, {"loss": loss, "reconstruction": reconstruction, "kl": kl}):
                    break
        self._fit_latent_stats(data)

    def _step_gradients(self, x: torch.Tensor, noise: torch.Tensor, layers=None) -> torch.Tensor:
        """Forward and backward pass of one batch, by hand: writes every parameter's .grad and returns the
        batch's loss parts (see `_losses`), with z = mu + noise * sigma_q.

        It is the gradient of the mean of `_row_losses` (a test compares it with autograd's), in few kernels: the
        cross-entropy's gradient is softmax - x directly, the Gaussian's and the KL's are one expression each,
        nothing builds a graph, and the loss is left as seven sums that `_losses` combines once per epoch.
        Written for rows whose softmax spans are one-hot, as the encoder writes them. The softmax needs no
        per-span max: logits are clamped to +-LOGIT_BOUND (see there), so exp cannot overflow or underflow.
        `layers`: the (encoder, decoder) linear layers, as `_layers()` gives them.
        """
        decoder, layout = self.decoder_net_, self.layout_
        rows, v, latent = x.shape[0], layout.n_values, noise.shape[1]
        matrix = layout.softmax_matrix
        encoder_layers, decoder_layers = layers or self._layers()
        encoder_inputs, head = _forward(encoder_layers, x)
        mu, logvar = head[:, :latent], head[:, latent:]
        std = logvar.mul(0.5).exp_()
        z = torch.addcmul(mu, noise, std)
        decoder_inputs, raw = _forward(decoder_layers, z)

        log_sigma = decoder.clamped_log_sigma()
        inv_var = torch.exp(log_sigma * -2.0)
        t = torch.tanh(raw[:, :v])
        gap = x[:, :v] - t  # x - tanh(out)
        squares = gap.square().sum(dim=0)  # (V,)
        logits = raw[:, v:].clamp(-LOGIT_BOUND, LOGIT_BOUND)  # also a contiguous copy: exp is slow on strided views
        exps = torch.exp(logits)
        sums = exps @ matrix  # (rows, spans)
        mu_sq, std_sq = torch.linalg.vector_norm(mu), torch.linalg.vector_norm(std)
        parts = torch.stack([
            torch.log(sums).sum(), (x[:, v:] * logits).sum(), squares @ inv_var, log_sigma.sum(),
            mu_sq * mu_sq, std_sq * std_sq, logvar.sum(),
        ])  # fmt: skip

        # d loss / d raw is -scale times `ascent`, which holds x - softmax on the softmax spans (one pass) and the
        # Gaussian's (x - tanh) (1 - tanh^2) / sigma^2 on the value spans; -scale goes into the output layer's
        # matmuls instead of a pass of its own.
        scale = self.loss_factor / rows
        ascent = torch.empty_like(raw)
        torch.addcmul(gap, gap, t.square(), value=-1.0, out=ascent[:, :v]).mul_(inv_var)
        torch.addcmul(x[:, v:], exps, sums.reciprocal_() @ matrix.T, value=-1.0, out=ascent[:, v:])
        # d/d log sigma of rows * (sum squares / (2 sigma^2) + log sigma), averaged, where the clamp passes it.
        inside = log_sigma == decoder.log_sigma
        d_log_sigma = torch.mul(squares * inv_var, -1.0 / rows, out=decoder.log_sigma.grad)
        d_log_sigma.add_(1.0).mul_(inside).mul_(self.loss_factor)
        grad_z = _backward(decoder_layers, decoder_inputs, ascent, alpha=-scale)
        # d loss / d (mu, logvar): the KL's own term plus what flows back through z = mu + noise * std, i.e.
        # grad_z + mu / rows and 0.5 (std^2 - 1) / rows + 0.5 grad_z noise std, written as
        # 0.5 / rows * (std + rows grad_z noise) * std - 0.5 / rows: two passes.
        grad_head = torch.empty_like(head)
        torch.add(grad_z, mu, alpha=1 / rows, out=grad_head[:, :latent])
        through_z = torch.addcmul(std, grad_z, noise, value=rows)
        torch.addcmul(head.new_tensor(-0.5 / rows), through_z, std, value=0.5 / rows, out=grad_head[:, latent:])
        _backward(encoder_layers, encoder_inputs, grad_head, input_grad=False)
        return parts

    def _losses(self, parts: torch.Tensor, rows: int) -> torch.Tensor:
        """(loss, reconstruction, KL), each the mean over rows, from the sums `_step_gradients` returns for a batch
        of `rows` rows (or their average over batches of that size: the combination is linear)."""
        log_sums, true_logits, scaled_squares, log_sigma, mu_sq, std_sq, logvar = parts
        cross_entropy = (log_sums - true_logits) / rows
        reconstruction = self.loss_factor * (0.5 * scaled_squares / rows + log_sigma + cross_entropy)
        kl = 0.5 * (mu_sq + std_sq - logvar - rows * int(self.embedding_dim)) / rows
        return torch.stack([reconstruction + kl, reconstruction, kl])

    def _layers(self) -> tuple[list[nn.Linear], list[nn.Linear]]:
        """The encoder's and the decoder's linear layers, in order, as `_forward` and `_backward` take them."""
        encoder, decoder = self.encoder_net_, self.decoder_net_
        return [*_linears(encoder.net), encoder.head], [*_linears(decoder.net), decoder.out]

    def _row_losses(
        self, x: torch.Tensor, raw: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss_factor * reconstruction NLL and KL(q(z|x) || N(0, I)), each of shape (rows,).

        `x` (the rows) and `raw` (the decoder's output) are both grouped: value columns first, then softmax columns.
        """
        layout = self.layout_
        sigma = self.decoder_net_.sigma()
        n_values = layout.n_values
        gaussian = (x[:, :n_values] - torch.tanh(raw[:, :n_values])) ** 2 / (2 * sigma**2) + torch.log(sigma)
        logits = raw[:, n_values:]
        logits = logits + (logits.clamp(-LOGIT_BOUND, LOGIT_BOUND) - logits).detach()  # straight through
        log_probs = segment_log_softmax(logits, layout.softmax_segment, layout.softmax_matrix)
        cross_entropy = -(x[:, n_values:] * log_probs).sum(dim=1)
        reconstruction = self.loss_factor * (gaussian.sum(dim=1) + cross_entropy)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
        return reconstruction, kl

    def _generate(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> torch.Tensor:
        self.encoder_net_.eval()
        self.decoder_net_.eval()
        mean, std = self._latent_prior(plan)
        z = torch.randn((n, int(self.embedding_dim)), device=self.device_, generator=generator) * std + mean
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
        dim = int(self.embedding_dim)
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
        dim = int(self.embedding_dim)
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
        if stats is None:
            return {"latent_by_value": None}
        return {"latent_by_value": {key: stats[key].tolist() for key in ("position", "count", "mean", "var")}}

    def _load_extra_state(self, state: dict) -> None:
        saved = (state or {}).get("latent_by_value")
        if saved is None:
            self.latent_stats_ = None
            return
        try:
            stats = {
                "position": torch.tensor(saved["position"], dtype=torch.long, device=self.device_),
                "count": torch.tensor(saved["count"], dtype=torch.float64, device=self.device_),
                "mean": torch.tensor(saved["mean"], dtype=torch.float32, device=self.device_),
                "var": torch.tensor(saved["var"], dtype=torch.float32, device=self.device_),
            }
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ModelError(f"the latent statistics in config.json are corrupt ({err}); refit the model") from None
        rows = len(stats["position"])
        shape = (rows, int(self.embedding_dim))
        if stats["count"].shape != (rows,) or stats["mean"].shape != shape or stats["var"].shape != shape:
            raise ModelError("the latent statistics in config.json do not fit the model's size; refit the model")
        if rows and (not bool((stats["var"] > 0).all()) or not bool(torch.isfinite(stats["mean"]).all())):
            raise ModelError("the latent statistics in config.json hold invalid values; refit the model")
        self.latent_stats_ = stats

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
            empty = torch.zeros((0, int(self.embedding_dim)), device=self.device_)
            yield torch.zeros((0, encoded.shape[1]), device=self.device_), empty, empty
            return
        for start in range(0, len(encoded), INFERENCE_BATCH):
            x = torch.from_numpy(encoded[start : start + INFERENCE_BATCH]).to(self.device_)
            x = x[:, self.layout_.grouped]
            mu, logvar = self.encoder_net_(x)
            yield x, mu, logvar
