"""The small base every generator shares: fit on a table, sample rows (optionally under conditions), save/load.

A generator subclass implements four hooks on encoded data, all on `self.device_`:

- `_build(data_dim)` creates the torch modules (also called by `load`, before the weights go in),
- `_train(data, progress)` trains on the encoded training matrix (a float32 tensor resident on the device; the
  networks see its columns grouped, `data[:, layout_.grouped]`, see `SpanLayout`),
- `_generate(n, cond, generator)` returns n raw encoded rows (probabilities / tanh values) under `cond`,
- `_modules()` names the modules whose state_dict makes up the weights file.

Optional hooks: `_extra_state()` / `_load_extra_state(state)` (JSON-able learned state beyond the weights),
`_check_params()` (validate hyper-parameters at the start of `fit` and `load`; call super) and
`_after_training(data)` (runs once the final weights, the best epoch's under early stopping, are in place).

Generators follow scikit-learn's estimator contract (`sklearn.base.BaseEstimator`): hyper-parameters are
`__init__` arguments stored as given, so `get_params` / `set_params` / `clone` work; they are validated in `fit`
(a `TabtwinError` naming the parameter); learned state ends in `_` (`encoder_`, `layout_`, `history_`,
`best_epoch_`, the networks).

The base owns everything else: schema and encoder, seeding, conditions, decoding in large batches, the memory
check before training (`generators.memory`), and model files (`config.json` + `encoder.json` + `weights.pt`, a
`state_dict` loaded with `weights_only=True`; checksummed and validated on load, `generators.persistence`).

Subnormal floats: each generator calls `zero_subnormals_(optimizers)` once per epoch, which keeps weights and
Adam state out of the subnormal range where the CPU is ~250x slower; see that function for what was measured.
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from torch.nn import functional as F

from tabtwin.generators.memory import SAMPLE_BATCH  # noqa: F401  (re-exported: generators.base.SAMPLE_BATCH)
from tabtwin.generators.memory import check_training_memory, sample_rows, sampling_width
from tabtwin.generators.params import MAX_BATCH, MAX_EPOCHS, check_bool, check_int
from tabtwin.pipeline.categories import MAX_CATEGORIES
from tabtwin.pipeline.conditions import find_value
from tabtwin.pipeline.device import resolve_device  # noqa: F401  (re-exported: generators.base.resolve_device)
from tabtwin.pipeline.encoding import Span, TableEncoder
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import Schema, infer_schema
from tabtwin.pipeline.rules import Int, check_fields, shown
from tabtwin.pipeline.validation import MAX_CODES, MAX_SEED

# 7: config.json holds the SHA-256 of every file (generators.persistence); CTGAN and TVAE cap a column's categories
#    (`_Categorical` states); the flagship's index buffers, derived from its parameters, are no longer saved
# 6: encoder.json records each column's form (label, dtype, decimals, special values, datetime text; pipeline.forms)
# 5: autograd training (same weight layout as 4; parameters no longer views of one flat buffer)
# 4: the critic reads a pac group's data, then its conditions; 3: grouped columns, discrete spans last
FORMAT_VERSION = 7
VALIDATION_FRACTION = 0.1  # rows held out for early stopping


class ModelError(TabtwinError):
    """A model directory is missing, corrupt or does not match this version."""


def adam(params, **options) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters instead of a dozen small ops per tensor (CPU and
    CUDA)."""
    return torch.optim.Adam(params, fused=True, **options)


# Below this magnitude a weight or an Adam first moment changes no float32 result that
# matters, yet its products with gradients land in the subnormal range (see zero_subnormals_).
FLUSH_BELOW = 1e-20


def zero_subnormals_(*optimizers: torch.optim.Optimizer) -> None:
    """Set every negligible float (|x| < 1e-20; 1e-40, i.e. subnormal, for Adam's second moments) in the
    optimizers' parameters and state to zero, in place.

    Why (measured on Adult, bench/RESULTS.md "Subnormal floats"): weights that get no gradient from the data (rows
    of dead ReLU units and of latent dimensions the KL term switched off) are pulled to zero by the L2 term alone;
    once their gradient is far below Adam's eps, each step shrinks them by a near-constant factor (about 0.95),
    into the subnormal range, where rounding stalls them instead of reaching zero. Long before that, at 1e-30,
    they are normal but their products in the backward pass are not: the TVAE's gradient with respect to the
    encoder's last hidden layer (grad_out @ W) had a whole column of 500 subnormal values per dead unit, 2,485 per
    step by epoch 160, and its epochs grew from 0.4 s to 4.4 s over 300 (bench/generators.py, 2026-11-30, 1
    thread), while an earlier version that zeroed only subnormal weights kept the parameters clean. A weight
    below 1e-20 moves no float32 sum of terms near 1, so zeroing it is what it was converging to; one that is
    exactly zero with no data gradient stays zero (its L2 gradient is zero too). Once per epoch is enough: at
    0.95 a step, going from 1e-20 to the subnormal range takes about 760 steps. `torch.set_flush_denormal(True)`
    is no substitute: it sets only the calling thread's FTZ/DAZ flags, not those of torch's other intra-op threads.
    """
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    state = optimizer.state.get(param, {})
                    for name, tensor in [("param", param), *((k, v) for k, v in state.items() if torch.is_tensor(v))]:
                        if tensor.is_floating_point() and tensor.dtype == torch.float32 and tensor.dim():
                            floor = tiny if name in ("exp_avg_sq", "max_exp_avg_sq") else FLUSH_BELOW
                            tensor.masked_fill_(tensor.abs() < floor, 0.0)


@contextmanager
def flush_denormals(enabled: bool = True):
    """Flush subnormal floats to zero inside the block (`torch.set_flush_denormal(True)`), restoring the previous
    mode afterwards.

    Measured limit (bench/RESULTS.md, "Subnormal floats"): the FTZ/DAZ flags it sets belong to the calling thread
    only, not to torch's other intra-op threads, so with 2 threads a matmul on subnormal weights ran only 2x
    faster with it, against ~250x slower than on normal values without it. It is a mitigation; the fix at the
    source is `zero_subnormals_` once per epoch, which every generator's training loop calls.
    """
    if not enabled:
        yield
        return
    before = _flush_mode()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _flush_mode() -> bool:
    """Whether the calling thread flushes subnormals now: half the smallest normal float32 is then 0."""
    tiny = torch.tensor([torch.finfo(torch.float32).tiny], dtype=torch.float32)
    return bool((tiny * 0.5 == 0).item())


def seed_everything(seed: int | None) -> None:
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- spans


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
# stay normal float32s. Without it, the Gumbel-softmax (tau 0.2 multiplies logit gaps by 5) produced subnormal
# probabilities by the hundred per CTGAN step after a few dozen epochs (bench/RESULTS.md, "Subnormal floats"),
# and every op touching them (the division, the backward's products) took the CPU's slow path. A probability
# below e^-60 is zero to float32 anyway next to the span's largest one (1 after the shift).
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


# ---------------------------------------------------------------------------------------------- conditions


@dataclass
class ConditionPlan:
    """Conditions resolved against the encoder: the fixed one-hots to write, and the conditional vector."""

    columns: list[str]
    spans: list[Span]
    codes: list[int]  # index of the required value inside each span
    shared: dict = field(default_factory=dict)  # {column: value} of values whose code they share with other rare ones

    def force(self, data: np.ndarray) -> None:
        """Overwrite the conditioned spans with their one-hots, so every decoded row satisfies them."""
        for span, code in zip(self.spans, self.codes):
            data[:, span.start : span.stop] = 0.0
            data[:, span.start + code] = 1.0


def plan_conditions(encoder: TableEncoder, conditions: dict | None) -> ConditionPlan | None:
    if not conditions:
        return None
    if not isinstance(conditions, dict):
        raise TabtwinError("conditions must be a mapping of column to value, e.g. {'sex': ' Female'}")
    names, spans, codes, shared = [], [], [], {}
    for column, value in conditions.items():
        spec = _schema_column(encoder.schema, column)
        if spec.kind not in ("discrete", "boolean"):
            raise TabtwinError(
                f"condition on column {column!r} ({spec.kind}) is not supported; conditions apply to "
                "discrete and boolean columns"
            )
        values = encoder.category_values(column)
        index = _find_value(values, value)
        if index is None:
            shown = [v for v in values if v is not None][:20]
            raise TabtwinError(f"column {column!r} has no value {value!r}; known values include {shown}")
        (span,) = encoder.spans_of(column)
        names.append(column)
        spans.append(span)
        codes.append(encoder.code_of_value(column, index))
        if encoder.is_rare(column, index):
            shared[column] = values[index]
    return ConditionPlan(names, spans, codes, shared)


def _schema_column(schema: Schema, column: str):
    try:
        return schema[column]
    except KeyError:
        raise TabtwinError(f"condition names unknown column {column!r}; columns are {schema.names}") from None


def _find_value(values: list, wanted) -> int | None:
    """Index of `wanted` among a column's values (None is the null category): `pipeline.conditions.find_value`."""
    return find_value(values, wanted)


# ---------------------------------------------------------------------------------------------- base


class SyntheticGenerator(BaseEstimator):
    """Base class. Subclasses define `model_name`, `__init__` params (stored as given), and the hooks above.

    `get_params` / `set_params` come from scikit-learn's BaseEstimator, which reads the parameter names from
    the subclass's `__init__` signature; `save` writes them to config.json and `load` passes them back.
    """

    model_name: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[SyntheticGenerator]]] = {}
    # Optional, set on an instance before `fit` to follow training: called once per epoch as
    # `progress_callback(epoch, epochs, record)`, epoch counting from 1, `epochs` the cap, `record` the epoch's
    # entry of `history_`. Not a hyper-parameter: it is not saved, and `clone` drops it.
    progress_callback: ClassVar = None
    # Codes per discrete column of the one-hot encoding (CTGAN, TVAE): past it the rarest values share one
    # (`pipeline.categories`). Not a hyper-parameter (set it on an instance before `fit`): the fitted encoder
    # saves its own. The flagship takes it as a parameter of its encoder.
    max_categories: ClassVar[int] = MAX_CATEGORIES
    sampling_modules: ClassVar[tuple[str, ...]] = ()  # names in `_modules()` that sampling runs (memory.sampling_width)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.model_name:
            SyntheticGenerator.registry[cls.model_name] = cls

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, df: pd.DataFrame, schema: Schema | None = None) -> SyntheticGenerator:
        """Fit the encoder and train the networks on `df` (rows, columns); returns self."""
        schema = self._begin_fit(df, schema)
        self.encoder_ = TableEncoder(schema, random_state=self.random_state, max_categories=self.max_categories).fit(df)
        if self.encoder_.output_dim == 0:
            raise TabtwinError("the table has only id columns; there is nothing to model")
        self.layout_ = SpanLayout.from_spans(self.encoder_.output_info, self.device_)
        check_training_memory(self, len(df))  # before the encoded table and the networks take it
        data = torch.from_numpy(self.encoder_.transform(df)).to(self.device_)
        self._build(self.encoder_.output_dim)
        self.history_ = []
        self.best_epoch_ = None
        data, self._validation = self._split_validation(data)
        self._best = None
        try:
            self._train(data, self._progress())
            if self._best is not None:  # early stopping: keep the weights of the best validation epoch
                for name, module in self._modules().items():
                    module.load_state_dict(self._best["weights"][name])
                self.best_epoch_ = self._best["epoch"]
            self._after_training(data)  # with the final weights in place
        finally:
            del self._validation, self._best
        return self

    def _check_params(self) -> None:
        """Validate the hyper-parameters every generator has (those it has); subclasses add theirs and call super.

        Runs at the start of `fit` (and in `load`), never in `__init__`: scikit-learn's contract stores
        parameters as given, so `set_params` and `clone` see exactly what the caller passed.
        """
        for name in ("epochs", "early_stopping"):
            if hasattr(self, name):
                check_int(name, getattr(self, name), minimum=0, maximum=MAX_EPOCHS)
        if hasattr(self, "batch_size"):
            check_int("batch_size", self.batch_size, maximum=MAX_BATCH)
        check_int("max_categories", self.max_categories, maximum=MAX_CODES)
        for name in ("verbose", "compile", "dp_reproducible"):
            if hasattr(self, name):
                check_bool(name, getattr(self, name))
        if not isinstance(getattr(self, "device", "auto"), str):
            raise TabtwinError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        seed = getattr(self, "random_state", None)
        if seed is not None and Int(0, MAX_SEED).check(seed):
            raise TabtwinError(f"random_state must be None or an integer from 0 to 2**63 - 1, got {shown(seed)}")

    def _begin_fit(self, df: pd.DataFrame, schema: Schema | None) -> Schema:
        """What every fit does first: refuse an empty table or bad parameters, pick the device, seed, and return
        `schema` (inferred from `df` when None)."""
        if not isinstance(df, pd.DataFrame) or len(df) == 0:
            raise TabtwinError("fit needs a non-empty table (a pandas DataFrame)")
        self._check_params()
        self.device_ = resolve_device(self.device)
        seed_everything(self.random_state)
        return schema or infer_schema(df)

    # ------------------------------------------------------------------------------------------ epochs

    def _split_validation(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hold out VALIDATION_FRACTION of the rows when early stopping is on (the split stays on the device)."""
        patience = getattr(self, "early_stopping", 0)
        if not patience or len(data) < 20:
            return data, None
        order = torch.randperm(len(data), device=data.device)
        cut = max(int(len(data) * VALIDATION_FRACTION), 10)
        return data[order[cut:]], data[order[:cut]]

    def _after_epoch(self, progress, epoch: int, losses: dict[str, float]) -> bool:
        """Record the epoch, update the progress bar, and say whether to stop early."""
        record = {"epoch": epoch, **losses}
        if self._validation is not None:
            record["validation_distance"] = self._validation_distance()
            best = self._best
            if best is None or record["validation_distance"] < best["distance"]:
                weights = {n: {k: v.detach().clone() for k, v in m.state_dict().items()} for n, m in self._modules().items()}
                self._best = {"epoch": epoch, "distance": record["validation_distance"], "weights": weights}
        self.history_.append(record)
        progress.set_postfix(**{k: f"{v:.3f}" for k, v in record.items() if k != "epoch"})
        return self._best is not None and epoch - self._best["epoch"] >= self.early_stopping

    def _validation_distance(self) -> float:
        """Mean per-span distance between held-out real rows and generated rows, in encoded space.

        Softmax spans: total variation between value frequencies; tanh offsets: mean gap between 20 quantiles.
        Cheap enough to run every epoch, and it falls as the marginals are learned; not a substitute for the
        evaluation reports.
        """
        real = self._validation
        generator = torch.Generator(device=self.device_).manual_seed(0)
        with torch.no_grad():
            fake = self._generate(len(real), None, generator)
        for module in self._modules().values():
            module.train()
        layout = self.layout_
        columns, matrix = layout.softmax_columns, layout.softmax_matrix
        tvd = 0.5 * ((real[:, columns].mean(0) - fake[:, columns].mean(0)).abs() @ matrix)
        levels = torch.linspace(0.05, 0.95, 20, device=self.device_)
        values = layout.value_columns
        gaps = (torch.quantile(real[:, values], levels, dim=0) - torch.quantile(fake[:, values], levels, dim=0)).abs()
        return float(torch.cat([tvd, gaps.mean(0) / 2]).mean())

    def _progress(self):
        from tqdm.auto import tqdm

        bar = tqdm(range(self.epochs), desc=f"{self.model_name} epochs", disable=not self.verbose, unit="epoch")
        return bar if self.progress_callback is None else _ReportingProgress(bar, self)

    # ------------------------------------------------------------------------------------------ sample

    def sample(self, n: int, conditions: dict | None = None, seed: int | None = None) -> pd.DataFrame:
        """Exactly `n` rows; every row satisfies `conditions` ({column: value} on discrete columns)."""
        self._check_fitted()
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise TabtwinError(f"number of rows must be a non-negative integer, got {n!r}")
        plan = plan_conditions(self.encoder_, conditions)
        seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        frames = []
        batch = sample_rows(self.device_, sampling_width(self))
        for start in range(0, n, batch):
            rows = min(batch, n - start)
            with torch.no_grad():
                raw = check_finite(self._generate(rows, plan, generator), self.model_name).float().cpu().numpy()
            if plan is not None:
                plan.force(raw)
            frame = self.encoder_.inverse_transform(raw, id_offset=start, seed=seed + start)
            frames.append(write_values(frame, plan.shared if plan else {}, self.encoder_.forms_))
        if not frames:
            return self.encoder_.inverse_transform(np.zeros((0, self.encoder_.output_dim), dtype=np.float32))
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write config.json, encoder.json and weights.pt into `path`, replacing it only once all are written;
        config.json records every file's SHA-256 (`generators.persistence`). An existing `path` is replaced only
        when it is a model folder (nothing in it but `persistence.MODEL_FILES`) or empty, unless `overwrite`;
        otherwise a TabtwinError before anything is written (`pipeline.outputs`)."""
        from tabtwin.generators.persistence import save_model

        self._check_fitted()
        return save_model(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> SyntheticGenerator:
        """The model saved in folder `path`, its networks on `device`. Every file's checksum and every value are
        checked before use, and the networks' shapes before any is allocated (`generators.persistence`); a
        ModelError (one line naming the file and the field) refuses a folder that is missing, damaged, edited or
        from another format."""
        from tabtwin.generators.persistence import load_model_dir

        return load_model_dir(cls, path, device)

    @classmethod
    def _load_encoder(cls, path: Path):
        """Read the fitted encoder saved beside the weights (a generator with another encoder overrides this)."""
        return TableEncoder.load(path)

    def _prepare_loaded(self) -> None:
        """What the networks of a loaded model are built from, on `self.device_`: the span layout of its encoder."""
        self.layout_ = SpanLayout.from_spans(self.encoder_.output_info, self.device_)

    def _build_loaded(self) -> None:
        """Build the networks of a loaded model (after `_prepare_loaded`), before the weights go in."""
        self._build(self.encoder_.output_dim)

    def _meta_weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """The state_dicts the networks would have, built on torch's meta device: names, shapes and dtypes of every
        tensor, with no memory allocated whatever the sizes (checked against weights.pt, counted before training)."""
        device, self.device_ = self.device_, torch.device("meta")
        try:
            with torch.device("meta"):
                self._build_loaded()
            return {name: module.state_dict() for name, module in self._modules().items()}
        finally:
            self.device_ = device

    # ------------------------------------------------------------------------------------------ hooks

    def _build(self, data_dim: int) -> None:
        raise NotImplementedError

    def _train(self, data: torch.Tensor, progress) -> None:
        raise NotImplementedError

    def _generate(self, n: int, plan: ConditionPlan | None, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def _after_training(self, data: torch.Tensor) -> None:
        """Learned state computed from the final weights (the best epoch's under early stopping), on the
        training rows `data` (encoder order). Default: nothing."""

    def _extra_state(self) -> dict:
        """JSON-able learned state beyond the weights (e.g. category frequencies)."""
        return {}

    def _load_extra_state(self, state: dict) -> None:
        """Restore `_extra_state()` from config.json, refusing (TabtwinError naming the field) anything else."""
        check_fields(state, {}, "state")

    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_"):
            raise TabtwinError(f"the {self.model_name} model is not fitted yet; call fit(df) first")


def check_finite(output: torch.Tensor, model_name: str) -> torch.Tensor:
    """`output` (a network's sampled rows or probabilities), or a one-line TabtwinError when any value is NaN or
    infinite: weights that load (finite, the right shapes) can still overflow float32, and a NaN would otherwise
    end in a traceback (torch.multinomial) or decode to silent nulls."""
    if not bool(torch.isfinite(output).all()):
        raise TabtwinError(f"the {model_name} model produced NaN or infinite values while sampling; its weights are "
                           "damaged or were edited: refit the model")
    return output


def write_values(frame: pd.DataFrame, values: dict, forms) -> pd.DataFrame:
    """`frame` (decoded rows) with every row of each column in `values` ({column: value}) set to that value, in
    the column's dtype and under its source label (`forms`): a conditioned value whose code it shares with other
    rare values decodes to any of them, so the value asked for is written afterwards."""
    labels = {form.name: form.label for form in forms}
    for column, value in values.items():
        label = labels.get(column, column)
        frame[label] = pd.Series([value] * len(frame), dtype=frame[label].dtype)
    return frame


class _ReportingProgress:
    """The epoch bar, also calling the generator's `progress_callback` each time an epoch's figures are posted
    (every training loop posts them once per epoch, after appending the epoch to `history_`)."""

    def __init__(self, bar, model: SyntheticGenerator):
        self.bar, self.model = bar, model

    def __iter__(self):
        return iter(self.bar)

    def set_postfix(self, **figures) -> None:
        self.bar.set_postfix(**figures)
        record = dict(self.model.history_[-1])
        self.model.progress_callback(int(record.pop("epoch")) + 1, self.model.epochs, record)
