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

Training length is a budget, not a fixed epoch count: at most `epochs` passes, at most `max_seconds` of
wall time, and early stopping on the validation negative log-likelihood (10 % of the rows, table order),
keeping the best epoch's weights. Adam with a linear warm-up and cosine decay over the step budget.

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

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from tabtwin.pipeline.binning import BinnedEncoder
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import Schema, infer_schema

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
        self.register_buffer("input_column", torch.repeat_interleave(torch.arange(d), torch.tensor(widths)))
        self.hidden = hidden
        n_in = sum(widths)
        self.w1 = nn.Parameter(torch.randn(n_in, d, hidden) / math.sqrt(n_in / 2))
        self.b1 = nn.Parameter(torch.zeros(d, hidden))
        self.visible = nn.Parameter(torch.zeros(d, d, hidden))  # u: head j sees column i
        self.blocks = nn.ModuleList(_Block(d, hidden, dropout) for _ in range(depth - 1))
        self.out = nn.ModuleList(nn.Linear(hidden, k) for k in cardinalities)
        self.dropout = nn.Dropout(dropout)

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([e(codes[:, i]) for i, e in enumerate(self.embeddings)], dim=1)

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
        return [head(x[:, j]) for j, head in enumerate(self.out)]

    def head_logits(self, codes: torch.Tensor, mask: torch.Tensor, j: int) -> torch.Tensor:
        """Logits of column j alone (sampling): (B, K_j). Runs only head j's weights."""
        z = self.embed_codes(codes)
        pre = z @ (self.w1[:, j] * mask[j][self.input_column][:, None]) + self.b1[j] + mask[j] @ self.visible[j]
        x = F.gelu(pre)
        for block in self.blocks:
            x = block.one(x, j)
        return self.out[j](x)


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


class AutoregressiveGenerator:
    """Prototype; wired into the SyntheticGenerator base once that settles."""

    model_name = "autoregressive"

    def __init__(
        self,
        epochs: int = 200,
        max_seconds: float | None = 90.0,
        batch_size: int = 512,
        hidden: int = 256,
        depth: int = 2,
        dropout: float = 0.1,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-5,
        canonical_share: float = 0.5,
        early_stopping: int = 8,
        n_bins: int = 64,
        device: str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
    ):
        self.epochs = epochs
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.hidden = hidden
        self.depth = depth
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.canonical_share = canonical_share
        self.early_stopping = early_stopping
        self.n_bins = n_bins
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, df: pd.DataFrame, schema: Schema | None = None):
        start = time.perf_counter()
        self.device_ = torch.device("cpu" if self.device == "auto" and not torch.cuda.is_available() else ("cuda" if self.device == "auto" else self.device))
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        schema = schema or infer_schema(df)
        self.encoder_ = BinnedEncoder(schema, n_bins=self.n_bins).fit(df)
        codes = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        d = codes.shape[1]
        self.net_ = ColumnAR(self.encoder_.cardinalities, self.hidden, self.depth, self.dropout).to(self.device_)
        g = torch.Generator(device="cpu").manual_seed(self.random_state or 0)
        perm = torch.randperm(len(codes), generator=g).to(self.device_)
        cut = max(int(len(codes) * VALIDATION_FRACTION), 1) if len(codes) >= 20 else 0
        valid, train = codes[perm[:cut]], codes[perm[cut:]]
        canonical = order_mask(list(range(d)), d, self.device_)
        batch = max(1, min(self.batch_size, len(train)))
        steps_per_epoch = max(1, len(train) // batch)
        total = self.epochs * steps_per_epoch
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        warm = max(1, min(200, total // 20))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
        )
        self.history_ = []
        best, best_state, bad = float("inf"), None, 0
        step = 0
        for epoch in range(self.epochs):
            self.net_.train()
            order = torch.randperm(len(train), generator=g).to(self.device_)
            total_loss = 0.0
            for b in range(steps_per_epoch):
                rows = train[order[b * batch : (b + 1) * batch]]
                if torch.rand(1, generator=g).item() < self.canonical_share:
                    mask = canonical
                else:
                    mask = order_mask(torch.randperm(d, generator=g), d, self.device_)
                logits = self.net_(rows, mask)
                loss = sum(F.cross_entropy(lg, rows[:, j]) for j, lg in enumerate(logits))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                total_loss += loss.item()
            val = self._nll(valid, canonical).mean().item() if cut else total_loss / steps_per_epoch
            self.history_.append({"epoch": epoch, "loss": total_loss / steps_per_epoch, "validation_nll": val,
                                  "seconds": time.perf_counter() - start})
            if self.verbose:
                print(self.history_[-1])
            if val < best - 1e-4:
                best, bad = val, 0
                best_state = {k: v.detach().clone() for k, v in self.net_.state_dict().items()}
                self.best_epoch_ = epoch
            else:
                bad += 1
                if self.early_stopping and bad >= self.early_stopping:
                    break
            if self.max_seconds is not None and time.perf_counter() - start > self.max_seconds:
                break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.net_.eval()
        return self

    @torch.no_grad()
    def _nll(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.net_.eval()
        out = torch.zeros(len(codes), device=codes.device)
        for lo in range(0, len(codes), 8192):
            rows = codes[lo : lo + 8192]
            logits = self.net_(rows, mask)
            out[lo : lo + 8192] = sum(F.cross_entropy(lg, rows[:, j], reduction="none") for j, lg in enumerate(logits))
        return out

    @torch.no_grad()
    def sample(self, n: int, conditions: dict | None = None, seed: int | None = None) -> pd.DataFrame:
        d = len(self.encoder_.cardinalities)
        gen = torch.Generator(device=self.device_).manual_seed(seed if seed is not None else 0)
        fixed = {}
        for column, value in (conditions or {}).items():
            j = self.encoder_.columns.index(column)
            values = self.encoder_.category_values(column)
            fixed[j] = self.encoder_.category_code(column, values.index(value))
        order = list(fixed) + [j for j in range(d) if j not in fixed]
        mask = order_mask(order, d, self.device_)
        frames = []
        for lo in range(0, n, 16384):
            rows = min(16384, n - lo)
            codes = torch.zeros(rows, d, dtype=torch.long, device=self.device_)
            for j, code in fixed.items():
                codes[:, j] = code
            for j in order:
                if j in fixed:
                    continue
                probs = torch.softmax(self.net_.head_logits(codes, mask, j).float(), dim=1)
                codes[:, j] = torch.multinomial(probs, 1, generator=gen)[:, 0]
            frames.append(self.encoder_.inverse_transform(codes.cpu().numpy(), seed=None if seed is None else seed + lo, id_offset=lo))
        return pd.concat(frames, ignore_index=True)
