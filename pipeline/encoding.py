"""Reversible encoding of a mixed-type table into one float32 matrix, and back.

Per column (in schema order; id columns take no space and are regenerated on decode):

- continuous / datetime: mode-specific normalisation (`pipeline.modes`). Spikes are exact modes; a variational
  Gaussian mixture (at most 10 modes, modes under 0.5 % weight pruned) is fitted per column on a uniform
  sample of at most `max_fit_rows` values, all columns in one batched loop (`pipeline.mixture`). A value
  becomes a scalar in [-1, 1] (tanh span: its offset from the chosen mode's mean in units of 4 standard
  deviations) and a one-hot over modes (softmax span). The mode is drawn from the value's posterior, as in
  CTGAN, among the modes whose 4-sigma window holds the value, so that every seen value decodes back to itself.
- discrete / boolean: one-hot over the seen categories, with an explicit null category if the column has nulls.
  Past `max_categories` values (None: no cap; the generators pass theirs), the rarest share one code decoded to
  one of them by frequency (`pipeline.categories`, as in the flagship's `BinnedEncoder`).
- a continuous or datetime column with nulls or special values gets a null span: present, missing, then one
  slot per special value the column holds (+inf, -inf); the mixture models only the finite values.

Each column's form (label, dtype, decimals, datetime text format and UTC offset; `pipeline.forms`) is recorded
at fit and restored by `inverse_transform`, so decoded values are written as the source wrote them.

`output_info` lists these spans; generators read it to put tanh on value spans and softmax on the others. The
encoder is fitted from the table's statistics (`pipeline.statistics`): `fit(df)` is `fit_chunks([df])`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tabtwin.pipeline.categories import Categorical, categorical_codes, categorical_state, decode_categorical
from tabtwin.pipeline.columns.base import SAMPLE_ROWS
from tabtwin.pipeline.columns.datetime import from_model_units, to_model_units
from tabtwin.pipeline.columns.identifier import Identifier, generate_ids
from tabtwin.pipeline.columns.personal import link_names
from tabtwin.pipeline.encoder_base import ColumnEncoder
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import SPECIALS, restore
from tabtwin.pipeline.modes import MAX_OFFSET, STD_MULTIPLIER, Continuous, continuous_states
from tabtwin.pipeline.roundtrip import round_trip_errors  # noqa: F401  (imported from here by flows and tests)
from tabtwin.pipeline.schema import Schema
from tabtwin.pipeline.statistics import TableSummary

_TRANSFORM_CHUNK = 50_000


@dataclass(frozen=True)
class Span:
    """A slice of the encoded matrix: `dim` columns from `start`, produced by `activation`."""

    column: str
    role: str  # "value" (tanh scalar), "mode" (mixture component), "category" (discrete value), "null"
    start: int
    dim: int
    activation: str  # "tanh" or "softmax"

    @property
    def stop(self) -> int:
        return self.start + self.dim


class TableEncoder(ColumnEncoder, kind="table",
                   tags={Continuous: "_Continuous", Categorical: "_Categorical", Identifier: "_Identifier"}):
    """Fit on a table (`fit`, `fit_chunks`, `from_statistics`), then map it to a float32 matrix (`transform`)
    and back (`inverse_transform`); `save(path)` and `load(path)` as JSON (`ColumnEncoder`)."""

    def __init__(
        self,
        schema: Schema,
        max_modes: int = 10,
        weight_threshold: float = 0.005,
        max_fit_rows: int = SAMPLE_ROWS,
        random_state: int | None = 0,
        max_categories: int | None = None,
    ):
        self.schema = schema
        self.max_modes = max_modes
        self.weight_threshold = weight_threshold
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state
        self.max_categories = max_categories

    # ------------------------------------------------------------------------------------------ fit

    def statistics_options(self) -> dict:
        seed = self.random_state if self.random_state is not None else np.random.SeedSequence().entropy % 2**63
        return {"sample_rows": self.max_fit_rows, "sample_seed": seed}

    def _fit(self, summary: TableSummary) -> None:
        """Column states from the table's statistics: a mixture of modes per continuous or datetime column
        (`pipeline.modes`, fitted on at most `max_fit_rows` sampled values each), codes per discrete one."""
        numeric = self.schema.of_kind("continuous", "datetime")
        modes = continuous_states(numeric, [summary.columns[s.name] for s in numeric], self.max_modes,
                                  self.weight_threshold, self.max_fit_rows)
        modes = {state.name: state for state in modes}
        self.states_ = [
            modes[spec.name] if spec.name in modes
            else summary.columns[spec.name] if spec.kind == "id"
            else categorical_state(summary.columns[spec.name], self.max_categories)
            for spec in self.schema.columns
        ]

    @property
    def columns_(self) -> list:
        """The column states, in schema order."""
        self._check_fitted()
        return self.states_

    def _loaded(self) -> None:
        self._build_layout()

    def _build_layout(self) -> None:
        spans, start = [], 0
        self._specials = {form.name: [SPECIALS[k] for k in form.specials] for form in self.forms_}
        for state in self.states_:
            for role, dim, activation in _span_shapes(state, self._specials.get(state.name, [])):
                spans.append(Span(state.name, role, start, dim, activation))
                start += dim
        self.output_info_ = spans
        self.output_dim_ = start
        self._cache_padded_mixtures()

    def _cache_padded_mixtures(self) -> None:
        """Mixture parameters of all continuous columns as (C, K) arrays, for vectorised transforms."""
        states = self._continuous_states()
        k = max((s.n_modes for s in states), default=1)
        shape = (len(states), k)
        self._means = np.zeros(shape)
        self._stds = np.ones(shape)
        self._scales = np.ones(shape)
        self._log_weights = np.full(shape, -np.inf)
        for c, s in enumerate(states):
            self._means[c, : s.n_modes] = s.means
            self._stds[c, : s.n_modes] = s.stds
            self._scales[c, : s.n_modes] = s.scales
            self._log_weights[c, : s.n_modes] = np.log(s.weights)

    # ------------------------------------------------------------------------------------------ properties

    @property
    def output_info(self) -> list[Span]:
        self._check_fitted()
        return self.output_info_

    @property
    def output_dim(self) -> int:
        self._check_fitted()
        return self.output_dim_

    def spans_of(self, column: str) -> list[Span]:
        return [span for span in self.output_info if span.column == column]

    def category_values(self, column: str) -> list:
        """Every value a discrete column held at fit, in order, then None when it had nulls; `code_of_value` gives
        each one's place in the column's one-hot (the same index unless rare values share a code)."""
        return self._category_values(column)

    def is_rare(self, column: str, index: int) -> bool:
        """Whether `category_values(column)[index]` shares its code with other rare values (decoded by frequency)."""
        return self._categorical(column).is_rare(index)

    # ------------------------------------------------------------------------------------------ transform

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode `df` (same columns as at fit) into a float32 matrix of shape (rows, output_dim)."""
        df = self._checked_table(df)
        out = np.zeros((len(df), self.output_dim_), dtype=np.float32)
        self._transform_continuous(df, out)
        for state in self.states_:
            if isinstance(state, Categorical):
                (span,) = self.spans_of(state.name)
                out[np.arange(len(df)), span.start + categorical_codes(state, df[state.name])] = 1.0
        return out

    def _transform_continuous(self, df: pd.DataFrame, out: np.ndarray) -> None:
        states = self._continuous_states()
        if not states:
            return
        specs = {s.name: s for s in self.schema.columns}
        values = np.column_stack(
            [to_model_units(df[s.name], specs[s.name], s.datetime_unit)[0] for s in states]
        )
        # Null-span slot of each value: 0 present, 1 missing, 2.. the column's special values.
        slots = np.isnan(values).astype(np.int64)
        for c, state in enumerate(states):
            specials = self._specials.get(state.name, [])
            for k, special in enumerate(specials):
                slots[values[:, c] == special, c] = 2 + k
            unseen = np.isinf(values[:, c]) & (slots[:, c] < 2)
            if unseen.any():
                raise EncodingError(
                    f"column {state.name!r} holds {values[unseen, c][0]}, a value it did not hold when the encoder "
                    "was fitted; refit on data that includes it"
                )
        values = np.where(np.isinf(values), np.nan, values)
        rng = np.random.default_rng(self.random_state)
        for lo in range(0, len(df), _TRANSFORM_CHUNK):
            chunk = values[lo : lo + _TRANSFORM_CHUNK]
            modes, offsets = self._choose_modes(chunk, rng)
            rows = np.arange(lo, lo + len(chunk))
            for c, state in enumerate(states):
                value_span, mode_span, *null_span = self.spans_of(state.name)
                out[rows, value_span.start] = offsets[:, c]
                out[rows, mode_span.start + modes[:, c]] = 1.0
                if null_span:
                    out[rows, null_span[0].start + slots[lo : lo + len(chunk), c]] = 1.0

    def _choose_modes(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample each value's mode from its posterior; return (rows, C) modes and normalised offsets.

        Modes with scale 0 (spikes, lone outliers) are exact values: a value equal to one takes it (the mixture
        was fitted without those values) with offset 0, and no other value fits them.
        """
        missing = np.isnan(x)
        x = np.where(missing, self._means[:, 0], x)[:, :, None]  # placeholder; nulls are overwritten below
        active = np.isfinite(self._log_weights)
        point = (self._scales <= 0) & active
        gap = x - self._means
        offsets = gap / (STD_MULTIPLIER * np.where(point, 1.0, self._scales))
        offsets = np.where(point, 0.0, offsets)
        on_point = point & (gap == 0)
        fits = np.where(point, on_point, np.abs(offsets) <= MAX_OFFSET) & active
        fits = np.where(on_point.any(axis=2, keepdims=True), on_point, fits)
        stds = np.where(point, 1.0, self._stds)
        log_post = self._log_weights - np.log(stds) - 0.5 * (gap / stds) ** 2
        log_post = np.where(fits, log_post, -np.inf)
        gumbel = rng.gumbel(size=log_post.shape)
        modes = np.argmax(log_post + gumbel, axis=2)
        # Values outside every window (new data beyond what fit saw) take the mode whose window edge is nearest
        # and are clipped to it.
        outside = ~fits.any(axis=2)
        if outside.any():
            beyond = np.abs(gap) - STD_MULTIPLIER * MAX_OFFSET * np.where(point, 0.0, self._scales)
            nearest = np.argmin(np.where(active, beyond, np.inf), axis=2)
            modes = np.where(outside, nearest, modes)
        chosen = np.take_along_axis(offsets, modes[:, :, None], axis=2)[:, :, 0]
        chosen = np.clip(chosen, -MAX_OFFSET, MAX_OFFSET)
        # Nulls get a fixed pattern (offset 0, heaviest mode) that a generator can learn and decode ignores.
        modes = np.where(missing, np.argmax(self._log_weights, axis=1), modes)
        chosen = np.where(missing, 0.0, chosen)
        return modes, chosen

    # ------------------------------------------------------------------------------------------ inverse

    def inverse_transform(self, data: np.ndarray, id_offset: int = 0, seed: int | None = 0) -> pd.DataFrame:
        """Decode a (rows, output_dim) matrix (encoded rows or generator output) into a table in the source's
        form: its labels, dtypes, decimals, special values and datetime text (`pipeline.forms`).

        Softmax spans are read by argmax, so raw generator probabilities decode as well as one-hots.
        `id_offset` numbers regenerated ids from that point, so batches decoded separately do not collide; `seed`
        draws the values of shared rare codes. Raises EncodingError for a matrix of another width.
        """
        self._check_fitted()
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.output_dim_:
            raise EncodingError(
                f"expected a matrix with {self.output_dim_} columns, got shape {data.shape}; "
                "was it produced by this encoder?"
            )
        decoded = {}
        rng = np.random.default_rng(seed)
        for state in self.states_:
            if isinstance(state, Continuous):
                decoded[state.name] = self._decode_continuous(state, data)
            elif isinstance(state, Categorical):
                (span,) = self.spans_of(state.name)
                decoded[state.name] = decode_categorical(state, np.argmax(data[:, span.start : span.stop], axis=1), rng)
            else:
                decoded[state.name] = generate_ids(state, len(data), id_offset, rng)
        link_names(decoded, {s.name: s.pii for s in self.states_ if isinstance(s, Identifier) and s.pii}, id_offset)
        return restore(pd.DataFrame(decoded, columns=[state.name for state in self.states_]), self.forms_)

    def _decode_continuous(self, state: Continuous, data: np.ndarray) -> pd.Series:
        value_span, mode_span, *null_span = self.spans_of(state.name)
        modes = np.argmax(data[:, mode_span.start : mode_span.stop], axis=1)
        offsets = np.clip(data[:, value_span.start].astype(np.float64), -1.0, 1.0)
        values = offsets * STD_MULTIPLIER * np.asarray(state.scales)[modes] + np.asarray(state.means)[modes]
        values = np.clip(values, state.minimum, state.maximum)
        if state.integer or state.datetime_unit:
            values = np.round(values)
        if null_span:
            slots = data[:, null_span[0].start : null_span[0].stop]
            if not self.schema[state.name].has_nulls:  # the span holds +-inf only: a null would be made up
                slots = np.where(np.arange(slots.shape[1]) == 1, -np.inf, slots)
            slot = np.argmax(slots, axis=1)
            values[slot == 1] = np.nan
            for k, special in enumerate(self._specials.get(state.name, [])):
                values[slot == 2 + k] = special
        return from_model_units(values, state)

    # ------------------------------------------------------------------------------------------ helpers

    def _continuous_states(self) -> list[Continuous]:
        return [s for s in self.states_ if isinstance(s, Continuous)]


def _span_shapes(state, specials=()) -> list[tuple[str, int, str]]:
    if isinstance(state, Continuous):
        shapes = [("value", 1, "tanh"), ("mode", state.n_modes, "softmax")]
        return shapes + ([("null", 2 + len(specials), "softmax")] if state.has_nulls else [])
    if isinstance(state, Categorical):
        return [("category", state.n_codes, "softmax")]
    return []
