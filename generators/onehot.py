"""The generators on `TableEncoder`'s encoding (CTGAN, TVAE; Xu et al. 2019): mode-specific normalised values
(a tanh scalar and a one-hot mode per continuous value) and one-hot categories, with what they share.

`SpanLayout` groups the encoded columns so that every span of a kind is handled in a few whole-matrix operations,
the segment softmax and `activate` turn a network's raw output into encoded rows, and `OneHotGenerator` is their
base: it fits the encoder, checks memory before training, draws sampling batches with the conditioned one-hots
forced, and measures early stopping's validation distance. A subclass adds `_build`, `_training`, `_modules` and
`_generate(n, plan, generator)`: n raw encoded rows (probabilities / tanh values, encoder order) under `plan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from tabtwin.generators.base import ONLY_IDS, SyntheticGenerator, check_finite
from tabtwin.generators.conditions import ConditionPlan
from tabtwin.generators.memory import check_training_memory
from tabtwin.generators.training import Budget
from tabtwin.pipeline.encoding import Span, TableEncoder
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import Schema


@dataclass
class SpanLayout:
    """Where each kind of encoded column sits, so all spans of a kind are handled in a few whole-matrix operations.

    The networks see the encoded columns *grouped*: the V tanh value columns first, then every softmax span one
    after another, with the discrete columns' spans (the conditional vector) last. A network's output then splits
    into slices instead of gathers, the conditional block is the trailing `condition_width` columns, and
    `to_encoded` puts generated rows back in the encoder's order. Softmax runs per segment over the K softmax
    columns: a segment max, one exp, and segment sums as a matmul with a (K, spans) indicator matrix; a Python
    loop over spans would cost a handful of small kernels per span per step.
    """

    value_columns: torch.Tensor  # (V,) encoder positions of the tanh scalars
    softmax_columns: torch.Tensor  # (K,) encoder positions of the softmax columns, span after span, discrete last
    softmax_segment: torch.Tensor  # (K,) which softmax span each of those columns belongs to
    softmax_matrix: torch.Tensor  # (K, S) indicator: column k belongs to span s
    grouped: torch.Tensor  # (V + K,) encoder position of each grouped column: value_columns, softmax_columns
    to_encoded: torch.Tensor  # (V + K,) grouped column of each encoder position (the inverse permutation)
    condition_starts: list[int]  # encoder start of each discrete column's span, in conditional-vector order
    condition_dims: list[int]  # and its width

    @property
    def n_values(self) -> int:
        return len(self.value_columns)

    @property
    def condition_width(self) -> int:
        return sum(self.condition_dims)

    @classmethod
    def from_spans(cls, spans: list[Span], device: torch.device) -> SpanLayout:
        softmax = [s for s in spans if s.activation == "softmax"]
        conditions = [s for s in softmax if s.role == "category"]
        softmax = [s for s in softmax if s.role != "category"] + conditions
        columns = torch.tensor([p for s in softmax for p in range(s.start, s.stop)], dtype=torch.long)
        dims = torch.tensor([s.dim for s in softmax], dtype=torch.long)
        segment = torch.repeat_interleave(torch.arange(len(softmax)), dims)
        values = torch.tensor([s.start for s in spans if s.activation == "tanh"], dtype=torch.long)
        grouped = torch.cat([values, columns])
        return cls(
            value_columns=values.to(device),
            softmax_columns=columns.to(device),
            softmax_segment=segment.to(device),
            softmax_matrix=F.one_hot(segment, len(softmax)).float().to(device),
            grouped=grouped.to(device),
            to_encoded=torch.argsort(grouped).to(device),
            condition_starts=[s.start for s in conditions],
            condition_dims=[s.dim for s in conditions],
        )


# Softmax exponents are clamped from below at EXP_FLOOR (after the shift by the segment max): exp(-60) = 8.7e-27,
# so a probability divided by its span's sum, and its products with gradients down to ~1e-11 in the backward,
# stay normal float32s (subnormals take the CPU's slow path: `generators.training`). Without it, the Gumbel-softmax
# (tau 0.2 multiplies logit gaps by 5) produced subnormal probabilities by the hundred per CTGAN step after a few
# dozen epochs. A probability below e^-60 is zero to float32 anyway next to the span's largest one (1 after the
# shift).
EXP_FLOOR = -60.0


def segment_log_softmax(logits: torch.Tensor, segment: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """log-softmax of (rows, K) logits within each segment (columns sharing a `segment` id).

    The log-probabilities themselves are not clamped (a cross-entropy keeps its full gradient); only the terms
    of the segment sums are floored at exp(EXP_FLOOR), where they cannot change the sum (whose largest term is 1).
    """
    shifted = logits - segment_max(logits, segment, matrix) @ matrix.T
    sums = torch.exp(shifted.clamp_min(EXP_FLOOR)) @ matrix  # (rows, S)
    return shifted - torch.log(sums) @ matrix.T


def segment_softmax(
    logits: torch.Tensor, segment: torch.Tensor, matrix: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax of (rows, K) logits within each segment; fewer kernels than exp(segment_log_softmax). Every
    probability is at least exp(EXP_FLOOR) / span sum, a normal float32 (see EXP_FLOOR)."""
    e = torch.exp((logits - segment_max(logits, segment, matrix) @ matrix.T).clamp_min(EXP_FLOOR))
    return torch.div(e, (e @ matrix) @ matrix.T, out=out)


def segment_max(logits: torch.Tensor, segment: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(rows, S) largest logit of each segment: the shift that keeps exp finite (it needs no gradient, since
    softmax is shift-invariant). Per-segment values are spread back to their columns by a matmul with the 0/1
    indicator (exact, since each column has a single 1): on a CPU several times faster than a gather and its
    scatter-add backward."""
    with torch.no_grad():
        top = torch.full((logits.shape[0], matrix.shape[1]), float("-inf"), device=logits.device, dtype=logits.dtype)
        return top.scatter_reduce(1, segment.expand_as(logits), logits, "amax")


def activate(
    raw: torch.Tensor,
    layout: SpanLayout,
    tau: float | None = None,
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """tanh on the value columns and softmax on every softmax span of grouped `raw`; with `tau`, Gumbel-softmax.

    Gumbel noise keeps the GAN's discrete outputs differentiable yet near one-hot, and its argmax is a draw
    from the span's categorical, which is why sampling uses it too. Input and output are in grouped order.
    With `out` (training, no autograd) the result is written there instead of into a new tensor.
    """
    v = layout.n_values
    logits = raw[:, v:]
    if tau is not None:
        logits = torch.add(logits, gumbel_noise(logits, generator)).div_(tau)
    if out is None:
        probs = segment_softmax(logits, layout.softmax_segment, layout.softmax_matrix)
        return torch.cat([torch.tanh(raw[:, :v]), probs], dim=1)
    segment_softmax(logits, layout.softmax_segment, layout.softmax_matrix, out=out[:, v:])
    torch.tanh(raw[:, :v], out=out[:, :v])
    return out


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """-log(-log U) for uniform U, in place on one buffer: at sampling sizes the allocations cost more than the
    arithmetic."""
    noise = torch.rand(like.shape, device=like.device, dtype=like.dtype, generator=generator)
    return noise.clamp_min_(1e-20).log_().neg_().clamp_min_(1e-20).log_().neg_()


class OneHotGenerator(SyntheticGenerator):
    """Base of the generators on `TableEncoder` (see the module docstring). Learned state: `encoder_`, `layout_`."""

    def _encode(self, df: pd.DataFrame, schema: Schema) -> torch.Tensor:
        """Fit the encoder; refuse, before the encoded table and the networks take it, a training that cannot fit
        in memory (`memory.check_training_memory`); return the (rows, width) float32 encoded table."""
        self.encoder_ = TableEncoder(schema, random_state=self.random_state, max_categories=self.max_categories).fit(df)
        if self.encoder_.output_dim == 0:
            raise TabtwinError(ONLY_IDS)
        self._prepare_loaded()
        check_training_memory(self, len(df))
        return torch.from_numpy(self.encoder_.transform(df)).to(self.device_)

    @classmethod
    def _load_encoder(cls, path: Path) -> TableEncoder:
        return TableEncoder.load(path)

    def _prepare_loaded(self) -> None:
        self.layout_ = SpanLayout.from_spans(self.encoder_.output_info, self.device_)

    def _generate(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _sample_batch(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> np.ndarray:
        raw = check_finite(self._generate(n, plan, generator), self.model_name).float().cpu().numpy()
        if plan is not None:
            plan.force(raw)
        return raw

    def _validation_metric(self, rows: torch.Tensor, budget: Budget) -> float:
        return self._validation_distance(rows)

    def _validation_distance(self, real: torch.Tensor) -> float:
        """Mean per-span distance between held-out real rows `real` (rows, width; encoder order) and as many
        generated rows, in encoded space.

        Softmax spans: total variation between value frequencies; tanh offsets: mean gap between 20 quantiles.
        Cheap enough to run every epoch, and it falls as the marginals are learned; not a substitute for the
        evaluation reports.
        """
        generator = torch.Generator(device=self.device_).manual_seed(0)
        with torch.no_grad():
            fake = self._generate(len(real), None, generator)
        layout = self.layout_
        columns, matrix = layout.softmax_columns, layout.softmax_matrix
        tvd = 0.5 * ((real[:, columns].mean(0) - fake[:, columns].mean(0)).abs() @ matrix)
        levels = torch.linspace(0.05, 0.95, 20, device=self.device_)
        values = layout.value_columns
        gaps = (torch.quantile(real[:, values], levels, dim=0) - torch.quantile(fake[:, values], levels, dim=0)).abs()
        return float(torch.cat([tvd, gaps.mean(0) / 2]).mean())
