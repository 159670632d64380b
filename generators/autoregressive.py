"""The flagship: an any-order autoregressive model over binned columns.

Model. Every modelled column is one integer code (`tabtwin.pipeline.binning.BinnedEncoder`: categories, exact
values, spikes, quantile bins, null). The joint distribution is factorised along an order of the columns,
p(x) = prod_j p(x_j | x_before_j), one small network ("head") per column:

    z_i   = E_i[x_i]                                    value embedding of column i, (e_i,)
    h_j   = GELU(sum_{i before j} z_i W1_{ij} + u_j(order) + b1_j)       (hidden,)
    h_j   = h_j + GELU(LN(h_j) W2_j + b2_j)                               (residual block, `depth` - 1 times)
    p(x_j | x_before_j) = softmax(h_j Wout_j + bout_j)                    (cardinality_j,)

All heads run at once as one masked matmul: the (sum e_i, columns x hidden) weight W1 is multiplied by the
0/1 mask of which inputs precede each head, so teacher forcing trains every conditional of a row in one pass
(as MADE does, Germain et al. 2015). `u_j(order)` tells a head which columns it sees (a learned vector per
visible column, summed), so one network serves every order.

Any order. Each training batch uses the table's column order with probability `canonical_share` and otherwise
a fresh random order (order-agnostic training, Uria et al. 2014; MOSTLY AI's TabularARGN trains the same way
for its "flexible generation"). Unconditional sampling follows the table's order, the one trained most.
Conditional sampling puts the conditioned columns first, fixes their codes, and draws the rest in table order:
exact conditional sampling from the model, no rejection loop, for any set of discrete columns.

Training length is a budget, not a fixed epoch count: at most `epochs` passes, an optional `max_seconds` of
wall time (from the start of `fit`, checked after each epoch, so the last epoch may overrun it), and early stopping on the validation negative log-likelihood (10 % of the rows, table order),
keeping the best epoch's weights. AdamW with a linear warm-up, then the rate halves after each epoch that
did not improve the validation NLL; the weights validated and kept are an exponential moving average of the
trained ones.

Other uses. `score(df)` is each row's negative log-likelihood in nats under the table order (exact, an anomaly
score: higher is rarer). `embed(df)` is the mean of the heads' first hidden layer when each head sees every
other column: (rows, hidden).

Sources: the factorisation and order-agnostic training follow Uria et al. 2014 ("A Deep and Tractable Density
Estimator") and Germain et al. 2015 ("MADE"); binned numeric columns and per-column heads follow the design
described for TabularARGN (Tiwald et al. 2025). The code is our own.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from tabtwin.generators import DEFAULT_SEED
from tabtwin.generators.base import SyntheticGenerator, check_finite, flush_denormals, write_values, zero_subnormals_
from tabtwin.generators.memory import SAMPLE_BATCH, sample_rows, sampling_width
from tabtwin.generators.params import MAX_LAYERS, MAX_WIDTH, check_float, check_int
from tabtwin.pipeline.binning import BinnedEncoder
from tabtwin.pipeline.categories import MAX_CATEGORIES
from tabtwin.pipeline.conditions import find_value
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import Schema
from tabtwin.pipeline.validation import MAX_BINS, MAX_EXACT

VALIDATION_FRACTION = 0.1


def embedding_width(cardinality: int) -> int:
    """Embedding size of a column with this many codes: grows like sqrt, between 4 and 24."""
    return int(min(24, max(4, round(1.6 * cardinality**0.5))))


class ColumnAR(nn.Module):
    """The per-column heads over embedded codes. Shapes: codes (B, D) int64 -> list of D logits (B, K_j)."""

    def __init__(self, cardinalities: list[int], hidden: int, depth: int, dropout: float):
        super().__init__()
        self.cardinalities = list(cardinalities)
        d = len(cardinalities)
        widths = [embedding_width(k) for k in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(k, w) for k, w in zip(cardinalities, widths))
        # Ordered codes (numbers, bins) also enter through their position in the column's distribution, in
        # [-1, 1] (0 for unordered codes), times a learned vector: neighbouring values start out alike instead of
        # each code learning its embedding from its own rows alone.
        self.register_buffer("positions", torch.zeros(sum(cardinalities)))
        # Index buffers follow from the cardinalities: not saved, so a model file cannot point them outside the tables.
        self.register_buffer("offsets", torch.tensor([0] + list(cardinalities[:-1])).cumsum(0), persistent=False)
        self.ordinal = nn.ParameterList(nn.Parameter(torch.zeros(w)) for w in widths)
        column = torch.repeat_interleave(torch.arange(d), torch.tensor(widths), output_size=sum(widths))
        self.register_buffer("input_column", column, persistent=False)
        self.hidden = hidden
        n_in = sum(widths)
        self.w1 = nn.Parameter(torch.randn(n_in, d, hidden) / math.sqrt(n_in / 2))
        self.b1 = nn.Parameter(torch.zeros(d, hidden))
        self.visible = nn.Parameter(torch.zeros(d, d, hidden))  # u: head j sees column i
        self.blocks = nn.ModuleList(_Block(d, hidden, dropout) for _ in range(depth - 1))
        self.out = nn.ModuleList(nn.Linear(hidden, k) for k in cardinalities)
        # ... and leave through it: logits also get (h . a_j) pos + (h . c_j) pos^2, a discretised Gaussian over
        # the column's ordered codes whose centre and spread follow h, so a shift with the context is one
        # direction to learn instead of one logit per value.
        self.shape = nn.Parameter(torch.zeros(d, hidden, 2))
        self.dropout = nn.Dropout(dropout)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, D) codes -> (B, n_in) concatenated value embeddings."""
        position = self.positions[codes + self.offsets]  # (B, D)
        return torch.cat(
            [e(codes[:, i]) + position[:, i, None] * self.ordinal[i] for i, e in enumerate(self.embeddings)], dim=1
        )

    def set_positions(self, representatives: list[np.ndarray], codes: torch.Tensor) -> None:
        """Each ordered code's mid-CDF position among the training `codes`, scaled to [-1, 1]."""
        parts = []
        for j, values in enumerate(representatives):
            counts = torch.bincount(codes[:, j].cpu(), minlength=len(values)).double().numpy()
            position = np.zeros(len(values))
            ordered = np.flatnonzero(~np.isnan(values))
            if len(ordered) > 1 and counts[ordered].sum() > 0:
                ranked = ordered[np.argsort(values[ordered], kind="stable")]
                cdf = np.cumsum(counts[ranked]) - counts[ranked] / 2
                position[ranked] = 2 * cdf / counts[ranked].sum() - 1
            parts.append(torch.from_numpy(position).float())
        self.positions.copy_(torch.cat(parts).to(self.positions.device))

    def hidden_states(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z (B, n_in) embedded codes, mask (D, D) float: mask[j, i] = 1 when head j sees column i -> (B, D, H)."""
        d, h = self.b1.shape
        weight = self.w1 * mask.T[self.input_column][:, :, None]  # (n_in, D, H): inputs each head may not see are 0
        pre = (z @ weight.reshape(len(weight), d * h)).view(-1, d, h)
        pre = pre + self.b1 + torch.einsum("ji,jih->jh", mask, self.visible)
        x = self.dropout(F.gelu(pre))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, codes: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        x = self.hidden_states(self.embed_codes(codes), mask)
        return [self.logits(x[:, j], j) for j in range(len(self.out))]

    def logits(self, h: torch.Tensor, j: int) -> torch.Tensor:
        """(B, H) hidden state of head j -> (B, K_j) logits: free logits plus the ordered-codes shape."""
        position = self.positions[self.offsets[j] : self.offsets[j] + self.cardinalities[j]]
        a, c = (h @ self.shape[j]).unbind(1)
        return self.out[j](h) + a[:, None] * position + c[:, None] * position.square()

    def head_logits(self, codes: torch.Tensor, mask: torch.Tensor, j: int) -> torch.Tensor:
        """Logits of column j alone (sampling): (B, K_j). Runs only head j's weights."""
        z = self.embed_codes(codes)
        pre = z @ (self.w1[:, j] * mask[j][self.input_column][:, None]) + self.b1[j] + mask[j] @ self.visible[j]
        x = F.gelu(pre)
        for block in self.blocks:
            x = block.one(x, j)
        return self.logits(x, j)


class _Block(nn.Module):
    """Per-head residual MLP block: x + GELU(LN(x) W_j + b_j), batched over heads. (B, D, H) -> (B, D, H)."""

    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.weight = nn.Parameter(torch.randn(d, hidden, hidden) / math.sqrt(hidden / 2))
        self.bias = nn.Parameter(torch.zeros(d, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bdh,dhk->bdk", self.norm(x), self.weight) + self.bias
        return x + self.dropout(F.gelu(y))

    def one(self, x: torch.Tensor, j: int) -> torch.Tensor:
        return x + F.gelu(self.norm(x) @ self.weight[j] + self.bias[j])


def order_mask(order: list[int] | torch.Tensor, d: int, device=None) -> torch.Tensor:
    """(D, D) float mask for a column order: mask[j, i] = 1 when column i comes before column j."""
    rank = torch.empty(d, dtype=torch.long)
    rank[torch.as_tensor(order)] = torch.arange(d)
    return (rank[None, :] < rank[:, None]).float().to(device)


class AutoregressiveGenerator(SyntheticGenerator):
    """The flagship generator (see the module docstring). Parameters:

    epochs: at most this many passes over the training rows (early stopping usually ends sooner).
    early_stopping: stop after this many epochs without a better validation NLL (0: never; no validation split).
    max_seconds: optional wall-time budget in seconds, counted from the start of `fit` (encoding included) and
        checked after each epoch, so training ends with the epoch that passes it (None: none). Opt-in, because a
        budget makes the result depend on the machine's speed; seeded runs without it are reproducible.
        `stop_reason_` says what ended training: "early stopping", "time budget" or "epoch cap".
    batch_size: rows per step; capped at a 32nd of the training rows, so a small table still gets 32 steps an
        epoch.
    hidden, depth, dropout: width of each column's head, its number of layers (1 + residual blocks), dropout.
    learning_rate, weight_decay: AdamW's, with a linear warm-up over the first epoch.
    decay: the learning rate is multiplied by this after each epoch whose validation NLL is no better.
    ema_decay: per-step decay of the exponential moving average of the weights that is validated and kept
        (0: the raw weights).
    canonical_share: share of training batches in the table's column order; the rest use random orders.
    n_bins, max_exact, spike_share, max_categories: the encoder's (`BinnedEncoder`).
    """

    model_name: ClassVar[str] = "autoregressive"
    sampling_modules = ("net",)

    def __init__(
        self,
        epochs: int = 100,
        early_stopping: int = 5,
        max_seconds: float | None = None,
        batch_size: int = 512,
        hidden: int = 256,
        depth: int = 1,
        dropout: float = 0.0,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-5,
        decay: float = 0.5,
        ema_decay: float = 0.995,
        canonical_share: float = 0.5,
        n_bins: int = 64,
        max_exact: int = 128,
        spike_share: float = 0.01,
        max_categories: int = MAX_CATEGORIES,
        device: str = "auto",
        random_state: int | None = DEFAULT_SEED,
        verbose: bool = False,
    ):
        self.epochs = epochs
        self.early_stopping = early_stopping
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.hidden = hidden
        self.depth = depth
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.decay = decay
        self.ema_decay = ema_decay
        self.canonical_share = canonical_share
        self.n_bins = n_bins
        self.max_exact = max_exact
        self.spike_share = spike_share
        self.max_categories = max_categories
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------ parameters

    def _check_params(self) -> None:
        super()._check_params()  # epochs, batch_size, max_categories, verbose, device, random_state
        check_int("epochs", self.epochs)
        limits = {"hidden": MAX_WIDTH, "depth": MAX_LAYERS, "n_bins": MAX_BINS, "max_exact": MAX_EXACT}
        for name, maximum in limits.items():
            check_int(name, getattr(self, name), maximum=maximum)
        for name in ("learning_rate",):
            check_float(name, getattr(self, name))
        check_float("weight_decay", self.weight_decay, inclusive=True)
        check_float("decay", self.decay, maximum=1.0)
        check_float("ema_decay", self.ema_decay, inclusive=True, maximum=0.9999)
        check_float("dropout", self.dropout, inclusive=True, maximum=0.9)
        check_float("canonical_share", self.canonical_share, inclusive=True, maximum=1.0)
        check_float("spike_share", self.spike_share, maximum=1.0)
        if self.max_seconds is not None:
            check_float("max_seconds", self.max_seconds)

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, df: pd.DataFrame, schema: Schema | None = None) -> AutoregressiveGenerator:
        """Fit on `df` (rows x columns) with `schema` (inferred when None); returns self.

        Raises TabtwinError for an empty table, a table of only id columns, or an invalid parameter.
        """
        start = time.perf_counter()
        schema = self._begin_fit(df, schema)
        self.encoder_ = BinnedEncoder(
            schema, n_bins=self.n_bins, max_exact=self.max_exact, spike_share=self.spike_share,
            max_categories=self.max_categories,
        ).fit(df)
        if not self.encoder_.columns:
            raise TabtwinError("the table has only id columns; there is nothing to model")
        codes = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        self._build_network()
        self.net_.set_positions(self.encoder_.representatives(), codes)
        with flush_denormals(self.device_.type == "cpu"):
            self._train_codes(codes, start)
        return self

    def _build_network(self) -> None:
        self.net_ = ColumnAR(self.encoder_.cardinalities, self.hidden, self.depth, self.dropout).to(self.device_)

    def _train_codes(self, codes: torch.Tensor, start: float) -> None:
        seed = torch.seed() if self.random_state is None else self.random_state
        generator = torch.Generator().manual_seed(seed)
        d = codes.shape[1]
        rows = torch.randperm(len(codes), generator=generator).to(self.device_)
        cut = max(int(len(codes) * VALIDATION_FRACTION), 1) if self.early_stopping and len(codes) >= 20 else 0
        valid, train = codes[rows[:cut]], codes[rows[cut:]]
        canonical = order_mask(list(range(d)), d, self.device_)
        batch = max(1, min(self.batch_size, max(16, len(train) // 32), len(train)))
        steps = max(1, len(train) // batch)  # full batches; the remainder differs each epoch
        optimizer = torch.optim.AdamW(self.net_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        # Linear warm-up over the first epoch; then the rate halves after every epoch whose validation NLL is no
        # better (a plateau schedule anneals as soon as the table has taught what it can, whatever its size).
        warm = steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm))
        self.history_, best, best_state, stale = [], math.inf, None, 0
        # An exponential moving average of the weights is what gets validated and kept: it smooths the last
        # steps' noise (Adult: validation NLL 19.55 against 19.59 for the raw weights, same epochs).
        ema_decay = self.ema_decay
        params = list(self.net_.parameters())
        ema = [p.detach().clone() for p in params]
        progress = self._progress()
        for epoch in progress:
            self.net_.train()
            order = torch.randperm(len(train), generator=generator).to(self.device_)
            total = torch.zeros((), device=self.device_)
            for step in range(steps):
                batch_rows = train[order[step * batch : (step + 1) * batch]]
                if torch.rand(1, generator=generator).item() < self.canonical_share:
                    mask = canonical
                else:
                    mask = order_mask(torch.randperm(d, generator=generator), d, self.device_)
                loss = _nll(self.net_(batch_rows, mask), batch_rows).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if ema_decay:
                    with torch.no_grad():
                        torch._foreach_lerp_(ema, params, 1.0 - ema_decay)
                schedule.step()
                total += loss.detach()
            record = {"epoch": epoch, "loss": float(total) / steps}
            zero_subnormals_(optimizer)  # see base.zero_subnormals_: weight decay drives unused weights there
            if ema_decay:
                with torch.no_grad():
                    for tensor in ema:
                        tensor.masked_fill_(tensor.abs() < torch.finfo(torch.float32).tiny, 0.0)
            if ema_decay:  # validate (and keep) the averaged weights; training goes on from the live ones
                with torch.no_grad():
                    live = [p.detach().clone() for p in params]
                    torch._foreach_copy_(params, ema)
            if cut:
                record["validation_nll"] = float(self._row_nll(valid, canonical).mean())
            record["seconds"] = round(time.perf_counter() - start, 3)
            self.history_.append(record)
            progress.set_postfix(**{k: f"{v:.3f}" for k, v in record.items() if k != "epoch"})
            improved = cut and record["validation_nll"] < best - 1e-4
            if improved:
                best, stale, self.best_epoch_ = record["validation_nll"], 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
            if ema_decay:
                with torch.no_grad():
                    torch._foreach_copy_(params, live)
            if cut and not improved:
                stale += 1
                for group in optimizer.param_groups:
                    group["lr"] *= self.decay
                schedule.base_lrs = [base * self.decay for base in schedule.base_lrs]
                if stale >= self.early_stopping:
                    self.stop_reason_ = "early stopping"
                    break
            if self.max_seconds is not None and time.perf_counter() - start > self.max_seconds:
                self.stop_reason_ = "time budget"
                break
        else:
            self.stop_reason_ = "epoch cap"
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        else:  # no validation split: the last epoch's (averaged) weights
            self.best_epoch_ = len(self.history_) - 1
            if ema_decay:
                with torch.no_grad():
                    torch._foreach_copy_(params, ema)
        self.net_.eval()

    @torch.no_grad()
    def _row_nll(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(rows,) negative log-likelihood in nats of each row of `codes` under the order of `mask`."""
        was_training = self.net_.training
        self.net_.eval()
        out = torch.cat([_nll(self.net_(part, mask), part) for part in codes.split(SAMPLE_BATCH[self.device_.type])])
        self.net_.train(was_training)
        return out

    # ------------------------------------------------------------------------------------------ sample

    def sample(self, n: int, conditions: dict | None = None, seed: int | None = None) -> pd.DataFrame:
        """Exactly `n` rows (DataFrame with the source columns and dtypes); every row satisfies `conditions`
        ({column: value} on discrete and boolean columns), drawn from the model's conditional distribution by
        putting the conditioned columns first in the order. Raises TabtwinError for an unknown column or value."""
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise TabtwinError(f"number of rows must be a non-negative integer, got {n!r}")
        fixed = self._resolve_conditions(conditions)
        seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        d = len(self.encoder_.columns)
        order = [j for j in fixed] + [j for j in range(d) if j not in fixed]
        mask = order_mask(order, d, self.device_)
        frames, chunk = [], sample_rows(self.device_, sampling_width(self))
        for lo in range(0, max(n, 1), chunk):
            rows = min(chunk, n - lo)
            codes = torch.zeros(rows, d, dtype=torch.long, device=self.device_)
            with torch.no_grad():
                for j, (code, _) in fixed.items():
                    codes[:, j] = code
                for j in order[len(fixed):]:
                    probs = check_finite(torch.softmax(self.net_.head_logits(codes, mask, j).float(), dim=1), self.model_name)
                    codes[:, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
            frame = self.encoder_.inverse_transform(codes.cpu().numpy(), seed=seed + lo, id_offset=lo)
            # A rare value shares its code with others: write it as asked.
            frames.append(write_values(frame, {self.encoder_.columns[j]: value for j, (_, value) in fixed.items()},
                                       self.encoder_.forms_))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _resolve_conditions(self, conditions: dict | None) -> dict[int, tuple[int, object]]:
        """{column index: (code, value)} for each condition; errors name the column or value."""
        if not conditions:
            return {}
        if not isinstance(conditions, dict):
            raise TabtwinError("conditions must be a mapping of column to value, e.g. {'sex': ' Female'}")
        fixed = {}
        for column, wanted in conditions.items():
            column = column if isinstance(column, str) else str(column)  # a label such as 0 is modelled as "0"
            if column not in self.encoder_.schema.names:
                raise TabtwinError(f"condition names unknown column {column!r}; columns are {self.encoder_.schema.names}")
            kind = self.encoder_.schema[column].kind
            if kind not in ("discrete", "boolean"):
                raise TabtwinError(
                    f"condition on column {column!r} ({kind}) is not supported; conditions apply to discrete and "
                    "boolean columns"
                )
            values = self.encoder_.all_category_values(column)
            index = find_value(values, wanted)
            if index is None:
                shown = [v for v in values if v is not None][:20]
                raise TabtwinError(f"column {column!r} has no value {wanted!r}; known values include {shown}")
            fixed[self.encoder_.columns.index(column)] = (self.encoder_.code_of_value(column, index), values[index])
        return fixed

    # ------------------------------------------------------------------------------------------ other uses

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """(rows,) negative log-likelihood of each row in nats under the table's column order: an anomaly score
        (higher is rarer). Raises EncodingError for values the encoder never saw."""
        self._check_fitted()
        codes = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        d = codes.shape[1]
        return self._row_nll(codes, order_mask(list(range(d)), d, self.device_)).cpu().numpy()

    @torch.no_grad()
    def embed(self, df: pd.DataFrame) -> np.ndarray:
        """(rows, hidden) embedding: the mean over columns of each head's first hidden layer when the head sees
        every other column of the row."""
        self._check_fitted()
        codes = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        d = codes.shape[1]
        mask = 1.0 - torch.eye(d, device=self.device_)
        self.net_.eval()
        parts = [self.net_.hidden_states(self.net_.embed_codes(p), mask).mean(1) for p in codes.split(SAMPLE_BATCH[self.device_.type])]
        return torch.cat(parts).cpu().numpy()

    # ------------------------------------------------------------------------------------------ persistence hooks

    def _modules(self) -> dict[str, nn.Module]:
        return {"net": self.net_}

    @classmethod
    def _load_encoder(cls, path):
        return BinnedEncoder.load(path)

    def _prepare_loaded(self) -> None:  # the network needs nothing but the encoder's cardinalities
        pass

    def _build_loaded(self) -> None:
        self._build_network()
        self.net_.eval()


def _nll(logits: list[torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """(rows,) sum over columns of the cross-entropy of each column's logits against its code."""
    return sum(F.cross_entropy(lg, codes[:, j], reduction="none") for j, lg in enumerate(logits))
