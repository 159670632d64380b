"""The flagship: an any-order autoregressive model over binned columns.

Model. Every modelled column is one integer code (`tabtwin.pipeline.binning.BinnedEncoder`: categories, exact
values, spikes, quantile bins, null). The joint distribution is factorised along an order of the columns,
p(x) = prod_j p(x_j | x_before_j), one small network ("head") per column:

    z_i   = E_i[x_i]                                    value embedding of column i, (e_i,)
    h_j   = GELU(sum_{i before j} z_i W1_{ij} + u_j(order) + b1_j)       (hidden,)
    h_j   = h_j + GELU(LN(h_j) W2_j + b2_j)                               (residual block, `depth` - 1 times)
    p(x_j | x_before_j) = softmax(h_j Wout_j + bout_j)                    (cardinality_j,)

Teacher forcing trains every conditional of a row in one pass (as MADE does, Germain et al. 2015): with the
embedded inputs permuted into the batch's order, head j's inputs are a prefix of them, and each head multiplies
that prefix by its slice of the (sum e_i, columns, hidden) weight W1 (`ColumnAR.forward`; `hidden_states` runs
all heads as one matmul of W1 times the 0/1 mask of the inputs each head sees, for any mask). `u_j(order)`
tells a head which columns it sees (a learned vector per visible column, summed), so one network serves every
order. Sampling computes each head's first layer from per-code tables instead (`generators.tables`).

Any order. Each training batch uses the table's column order with probability `canonical_share` and otherwise
a fresh random order (order-agnostic training, Uria et al. 2014; MOSTLY AI's TabularARGN trains the same way
for its "flexible generation"). Unconditional sampling follows the table's order, the one trained most.
Conditional sampling puts the conditioned columns first, fixes their codes, and draws the rest in table order:
exact conditional sampling from the model, no rejection loop, for any set of discrete columns.

Training length is a budget, not a fixed epoch count: at most `epochs` passes, an optional `max_seconds` of
wall time (from the start of `fit`, checked after every step and during the validation pass), and early stopping on
the validation negative log-likelihood (`base.VALIDATION_FRACTION` of the rows, table order), keeping the best
epoch's weights. AdamW with a linear warm-up over the first epoch, then the rate halves after each epoch that did
not improve the validation NLL; the weights validated and kept are an exponential moving average of the trained
ones (`generators.training`).

Other uses. `score(df)` is each row's negative log-likelihood in nats under the table order (exact, an anomaly
score: higher is rarer). `embed(df)` is the mean of the heads' first hidden layer when each head sees every
other column: (rows, hidden).

Sources: the factorisation and order-agnostic training follow Uria et al. 2014 ("A Deep and Tractable Density
Estimator") and Germain et al. 2015 ("MADE"); binned numeric columns and per-column heads follow the design
described for TabularARGN (Tiwald et al. 2025). The code is our own.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from tabtwin.generators import DEFAULT_SEED
from tabtwin.generators.base import ONLY_IDS, SyntheticGenerator, check_finite
from tabtwin.generators.conditions import ConditionPlan, plan_conditions
from tabtwin.generators.heads import ColumnAR, order_mask
from tabtwin.generators.memory import SAMPLE_BATCH
from tabtwin.generators.params import (
    BATCH, LAYERS, MAX_EPOCHS, NON_NEGATIVE, PATIENCE, POSITIVE, SECONDS, SHARE, WIDTH, Bool, Device, Seed,
)
from tabtwin.generators.tables import TableCache
from tabtwin.generators.training import Budget, Group, Training, shuffled_batches
from tabtwin.pipeline.binning import BinnedEncoder
from tabtwin.pipeline.categories import MAX_CATEGORIES
from tabtwin.pipeline.encoding import Span
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import Int, Num
from tabtwin.pipeline.schema import Schema
from tabtwin.pipeline.validation import MAX_BINS, MAX_CODES, MAX_EXACT


class AutoregressiveGenerator(SyntheticGenerator):
    """The flagship generator (see the module docstring). Parameters:

    epochs: at most this many passes over the training rows (early stopping usually ends sooner).
    early_stopping: stop after this many epochs without a better validation NLL (0: never; no validation split).
    max_seconds: optional wall-time budget in seconds, counted from the start of `fit` (encoding included) and
        checked after every step and during the validation pass, so training ends at the step that passes it
        (None: none); the best epoch's (or the averaged) weights are kept. Opt-in, because a
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
    fits_codes = True
    validation_name = "validation_nll"
    validation_tolerance = 1e-4  # nats: a smaller fall of the validation NLL is no improvement
    _parameter_constraints = {
        "epochs": Int(1, MAX_EPOCHS), "early_stopping": PATIENCE, "max_seconds": SECONDS, "batch_size": BATCH,
        "hidden": WIDTH, "depth": LAYERS, "dropout": Num(0.0, 0.9),
        "learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE, "decay": Num(0.0, 1.0, open_low=True),
        "ema_decay": Num(0.0, 0.9999), "canonical_share": SHARE,
        "n_bins": Int(1, MAX_BINS), "max_exact": Int(1, MAX_EXACT), "spike_share": Num(0.0, 1.0, open_low=True),
        "max_categories": Int(1, MAX_CODES), "device": Device(), "random_state": Seed(), "verbose": Bool(),
    }

    def __init__(
        self,
        epochs: int = 100, early_stopping: int = 5, max_seconds: float | None = None, batch_size: int = 512,
        hidden: int = 256, depth: int = 1, dropout: float = 0.0,
        learning_rate: float = 2e-3, weight_decay: float = 1e-5, decay: float = 0.5, ema_decay: float = 0.995,
        canonical_share: float = 0.5,
        n_bins: int = 64, max_exact: int = 128, spike_share: float = 0.01, max_categories: int = MAX_CATEGORIES,
        device: str = "auto", random_state: int | None = DEFAULT_SEED, verbose: bool = False,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------------------------------ fit hooks

    def codes_encoder(self, schema: Schema) -> BinnedEncoder:
        return BinnedEncoder(schema, n_bins=self.n_bins, max_exact=self.max_exact, spike_share=self.spike_share,
                             max_categories=self.max_categories)

    def _encode(self, df: pd.DataFrame, schema: Schema) -> torch.Tensor:
        """(rows, columns) int64 codes of `df` under the fitted `BinnedEncoder`."""
        self.encoder_ = self.codes_encoder(schema).fit(df)
        if not self.encoder_.columns:
            raise TabtwinError(ONLY_IDS)
        return torch.from_numpy(self.encoder_.transform(df)).to(self.device_)

    def _build(self) -> None:
        self.net_ = ColumnAR(self.encoder_.cardinalities, self.hidden, self.depth, self.dropout).to(self.device_)
        self.tables_ = TableCache()

    def _data_summary(self, codes: torch.Tensor) -> torch.Tensor:
        """(sum of cardinalities,) int64: how many rows hold each code, column after column."""
        return torch.cat([torch.bincount(codes[:, j].cpu(), minlength=k) for j, k in enumerate(self.net_.cardinalities)])

    def _init_from_summary(self, code_counts: torch.Tensor) -> None:
        self.net_.set_positions(self.encoder_.representatives(), code_counts)

    def _training_generator(self) -> torch.Generator:
        """A CPU generator seeded with `random_state`: the split, the epochs' row orders and the batches' column
        orders are then the same on every device."""
        return torch.Generator().manual_seed(torch.seed() if self.random_state is None else self.random_state)

    def _training(self, codes: torch.Tensor, generator: torch.Generator) -> Training:
        """Full batches of `batch_size` rows (at most a 32nd of the rows, at least 16), each in the table's column
        order with probability `canonical_share`, else in a random order; AdamW, warmed up over the first epoch
        and decayed on plateaus; the weights averaged (`ema_decay`)."""
        d = codes.shape[1]
        canonical = list(range(d))
        batch = max(1, min(self.batch_size, max(16, len(codes) // 32), len(codes)))

        def step(rows: torch.Tensor, update):
            if torch.rand(1, generator=generator).item() < self.canonical_share:
                order = canonical
            else:
                order = torch.randperm(d, generator=generator).tolist()
            loss = _nll(self.net_(rows, order), rows).mean()
            update("net", loss)
            return {"loss": loss}, 1

        return Training(
            groups={"net": Group(self.net_.parameters(), self.learning_rate, self.weight_decay, decoupled=True)},
            batches=shuffled_batches(codes, batch, generator), step=step, warmup_steps=len(codes) // batch,
            plateau_decay=self.decay, ema_decay=self.ema_decay, flush_denormals=self.device_.type == "cpu",
        )

    def _after_training(self, codes: torch.Tensor) -> None:
        self.tables_ = TableCache()  # tables built from the weights before the ones kept are stale

    def _validation_metric(self, codes: torch.Tensor, budget: Budget) -> float | None:
        """Mean negative log-likelihood in nats of the held-out rows under the table's column order."""
        nll = self._row_nll(codes, list(range(codes.shape[1])), budget)
        return None if nll is None else float(nll.mean())

    @torch.no_grad()
    def _row_nll(self, codes: torch.Tensor, order: list[int], budget: Budget | None = None) -> torch.Tensor | None:
        """(rows,) negative log-likelihood in nats of each row of `codes` under the column `order`; None when
        `budget` runs out before the last batch."""
        was_training = self.net_.training
        self.net_.eval()
        parts = []
        try:
            for part in codes.split(SAMPLE_BATCH[self.device_.type]):
                if budget is not None and budget.spent():
                    return None
                parts.append(_nll(self.net_(part, order), part))
        finally:
            self.net_.train(was_training)
        return torch.cat(parts)

    # ------------------------------------------------------------------------------------------ sample hooks

    def _plan_conditions(self, conditions: dict | None) -> ConditionPlan | None:
        return plan_conditions(_CodeColumns(self.encoder_), conditions)

    def _sample_batch(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> np.ndarray:
        """(n, columns) codes: the conditioned columns first in the order, at their codes, then every other
        column drawn from its head in table order (exact conditional sampling, no rejection loop), from the
        order's cached tables (`generators.tables`), or on the matmul path where they would not fit."""
        d = len(self.encoder_.columns)
        fixed = {} if plan is None else {span.start: code for span, code in zip(plan.spans, plan.codes)}
        drawn = [j for j in range(d) if j not in fixed]
        mask = order_mask([*fixed, *drawn], d, self.device_)
        tables = self.tables_.get(self.net_, fixed, drawn, mask)
        if tables is not None:
            return tables.draw(n, generator, self.model_name).cpu().numpy()
        codes = torch.zeros(n, d, dtype=torch.long, device=self.device_)
        for j, code in fixed.items():
            codes[:, j] = code
        for j in drawn:
            probs = check_finite(torch.softmax(self.net_.head_logits(codes, mask, j).float(), dim=1), self.model_name)
            codes[:, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return codes.cpu().numpy()

    # ------------------------------------------------------------------------------------------ other uses

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """(rows,) negative log-likelihood of each row in nats under the table's column order: an anomaly score
        (higher is rarer). Raises EncodingError for values the encoder never saw."""
        self._check_fitted()
        codes = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        return self._row_nll(codes, list(range(codes.shape[1]))).cpu().numpy()

    @torch.no_grad()
    def embed(self, df: pd.DataFrame) -> np.ndarray:
        """(rows, hidden) embedding: the mean over columns of each head's first hidden layer when the head sees
        every other column of the row."""
        self._check_fitted()
        codes = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        d = codes.shape[1]
        mask = 1.0 - torch.eye(d, device=self.device_)
        self.net_.eval()
        parts = [self.net_.hidden_states(p, mask).mean(1) for p in codes.split(SAMPLE_BATCH[self.device_.type])]
        return torch.cat(parts).cpu().numpy()

    # ------------------------------------------------------------------------------------------ persistence hooks

    def _modules(self) -> dict[str, nn.Module]:
        return {"net": self.net_}

    @classmethod
    def _load_encoder(cls, path) -> BinnedEncoder:
        return BinnedEncoder.load(path)


class _CodeColumns:
    """The flagship's encoder as `plan_conditions` reads one: each modelled column is one column of the code
    matrix (a span of width 1 at its index), and every conditioned value is written into the decoded rows
    (`BinnedEncoder` does not say which values share a code)."""

    def __init__(self, encoder: BinnedEncoder):
        self.encoder, self.schema = encoder, encoder.schema

    def spans_of(self, column: str) -> list[Span]:
        return [Span(column, "category", self.encoder.columns.index(column), 1, "code")]

    def category_values(self, column: str) -> list:
        return self.encoder.all_category_values(column)

    def code_of_value(self, column: str, index: int) -> int:
        return self.encoder.code_of_value(column, index)

    def is_rare(self, column: str, index: int) -> bool:
        return True


def _nll(logits: list[torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """(rows,) sum over columns of the cross-entropy of each column's logits against its code."""
    return sum(F.cross_entropy(lg, codes[:, j], reduction="none") for j, lg in enumerate(logits))
