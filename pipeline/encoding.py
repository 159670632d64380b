"""Reversible encoding of a mixed-type table into one float32 matrix, and back.

Per column (in schema order; id columns take no space and are regenerated on decode):

- continuous / datetime: mode-specific normalisation. A variational Gaussian mixture (at most 10 modes,
  modes under 0.5 % weight pruned) is fitted per column, all columns in one batched loop
  (`pipeline.mixture`). A value becomes a scalar in [-1, 1] (tanh span: its offset from the chosen mode's
  mean in units of 4 standard deviations) and a one-hot over modes (softmax span). The mode is drawn from the
  value's posterior, as in CTGAN, among the modes whose 4-sigma window holds the value, so that every seen
  value decodes back to itself.
- discrete / boolean: one-hot over the seen categories, with an explicit null category if the column has nulls.
  Past `max_categories` values (None: no cap; the generators pass theirs), the rarest share one code decoded to
  one of them by frequency (`pipeline.categories`, as in the flagship's `BinnedEncoder`).
- a continuous or datetime column with nulls or special values gets a null span: present, missing, then one
  slot per special value the column holds (+inf, -inf); the mixture models only the finite values.

Each column's form (label, dtype, decimals, datetime text format and UTC offset; `pipeline.forms`) is recorded
at fit and restored by `inverse_transform`, so decoded values are written as the source wrote them.

`output_info` lists these spans; generators read it to put tanh on value spans and softmax on the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from tabtwin.pipeline.categories import (
    _Categorical,
    categorical_codes,
    categorical_from_json,
    categorical_to_json,
    decode_categorical,
    fit_categorical,
)
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import (
    SPECIALS,
    fit_forms,
    forms_from_json,
    forms_to_json,
    model_numbers,
    parse_text_datetimes,
    restore,
    restore_dtype,
    text_labels,
)
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.mixture import fit_mixtures, prune
from tabtwin.pipeline.schema import ColumnSpec, Schema, parse_datetimes
from tabtwin.pipeline.validation import MAX_ID_PREFIX, EncoderFile, check_encoder

# Offsets are in units of this many standard deviations, and kept inside the tanh range.
_STD_MULTIPLIER = 4.0
_MAX_OFFSET = 0.99
_UNIT_NS = {  # coarsest first
    "D": 86_400 * 10**9,
    "h": 3_600 * 10**9,
    "min": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "ns": 1,
}
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


@dataclass
class _Continuous:
    """Learned state of one continuous or datetime column."""

    name: str
    dtype: str
    has_nulls: bool
    integer: bool
    minimum: float
    maximum: float
    weights: list[float]
    means: list[float]
    stds: list[float]  # the mixture's own spread, used for the posterior over modes
    scales: list[float]  # normalisation spread: stds widened so every seen value fits some mode's window
    datetime_unit: str | None = None  # set for datetime columns: values are modelled as counts of this unit
    datetime_format: str | None = None  # set when datetimes arrived as strings
    timezone: str | None = None

    @property
    def n_modes(self) -> int:
        return len(self.means)


@dataclass
class _Identifier:
    name: str
    dtype: str
    integer: bool
    prefix: str
    width: int


class TableEncoder(EncoderFile):
    """Fit on a table, then map it to a float32 matrix (`transform`) and back (`inverse_transform`); `save(path)`
    and `load(path)` as JSON (`EncoderFile`)."""

    def __init__(
        self,
        schema: Schema,
        max_modes: int = 10,
        weight_threshold: float = 0.005,
        max_fit_rows: int = 50_000,
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

    def fit(self, df: pd.DataFrame) -> TableEncoder:
        """Learn every column's encoding and form from `df` (rows, columns; labels text or numbers); returns self.
        Raises EncodingError for a table without rows or lacking schema columns."""
        table = text_labels(df)
        _check_columns(table, self.schema)
        if len(df) == 0:
            raise EncodingError("cannot fit the encoder on a table with no rows")
        self.forms_ = fit_forms(df, self.schema)
        df = table
        specs = self.schema.columns
        # +-inf travel in the null span as special values; the mixture sees only finite numbers.
        numeric = {
            s.name: _without_specials(_to_model_units(df[s.name], s))
            for s in specs if s.kind in ("continuous", "datetime")
        }
        mixtures = self._fit_mixtures(numeric)
        self.columns_ = []
        for spec in specs:
            if spec.kind in ("continuous", "datetime"):
                self.columns_.append(_continuous_state(spec, numeric[spec.name], mixtures[spec.name], df[spec.name]))
            elif spec.kind == "id":
                self.columns_.append(_identifier_state(spec, df[spec.name]))
            else:
                self.columns_.append(fit_categorical(spec, df[spec.name], self.max_categories))
        self._build_layout()
        return self

    def _fit_mixtures(self, numeric: dict[str, tuple[np.ndarray, str | None]]) -> dict:
        """Per column, the modes of its finite values (a `Mixture1D`; a mode with std 0 is an exact value).

        Spikes first (`_spikes`: exact zeros, round amounts, a default date): each becomes a mode of its own with
        std 0, decoded exactly and drawn with its share, and the variational mixture (`pipeline.mixture`, on at
        most `max_fit_rows` sampled values) is fitted on the remaining values only. Fitting it on all of them let
        a spike of 94 % zeros and the 6 % around it share one mode whose generator noise moved zeros off zero.
        """
        from tabtwin.pipeline.mixture import Mixture1D

        rng = np.random.default_rng(self.random_state)
        parts = {}
        for name, (values, _) in numeric.items():
            finite = values[np.isfinite(values)]
            if len(finite) > self.max_fit_rows:
                finite = rng.choice(finite, self.max_fit_rows, replace=False)
            parts[name] = _spikes(finite, max(1, self.max_modes // 2))
        fittable = [name for name, (_, _, rest) in parts.items() if len(np.unique(rest)) > 1]
        fitted = fit_mixtures([parts[n][2] for n in fittable], n_components=self.max_modes) if fittable else []
        fitted = {name: prune(m, self.weight_threshold) for name, m in zip(fittable, fitted)}
        mixtures = {}
        for name, (spikes, shares, rest) in parts.items():
            if name in fitted:
                mixture = fitted[name]
            elif len(rest):  # one distinct value besides the spikes (or a constant column): an exact mode
                mixture = Mixture1D(weights=np.ones(1), means=rest[:1].astype(np.float64), stds=np.zeros(1))
            elif len(spikes):
                mixture = Mixture1D(weights=np.zeros(0), means=np.zeros(0), stds=np.zeros(0))
            else:  # all null: one mode, nothing to learn
                mixture = _single_mode(rest)
            rest_share = 1.0 - float(shares.sum())
            weights = np.r_[shares, mixture.weights * rest_share]
            means = np.r_[spikes, mixture.means]
            stds = np.r_[np.zeros(len(spikes)), mixture.stds]
            order = np.argsort(means, kind="stable")
            mixtures[name] = Mixture1D(weights=weights[order] / weights.sum(), means=means[order], stds=stds[order])
        return mixtures

    def _build_layout(self) -> None:
        spans, start = [], 0
        self._specials = {form.name: [SPECIALS[k] for k in form.specials] for form in self.forms_}
        for state in self.columns_:
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
        state = self._categorical(column)
        return list(state.base.categories) + ([None] if state.base.has_nulls else [])

    def code_of_value(self, column: str, index: int) -> int:
        """Position in the column's one-hot span of `category_values(column)[index]`."""
        return self._categorical(column).code_of_value(index)

    def is_rare(self, column: str, index: int) -> bool:
        """Whether `category_values(column)[index]` shares its code with other rare values (decoded by frequency)."""
        return self._categorical(column).is_rare(index)

    def _categorical(self, column: str) -> _Categorical:
        state = self._state(column)
        if not isinstance(state, _Categorical):
            raise EncodingError(f"column {column!r} is not discrete; only discrete columns have categories")
        return state

    # ------------------------------------------------------------------------------------------ transform

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Encode `df` (same columns as at fit) into a float32 matrix of shape (rows, output_dim)."""
        self._check_fitted()
        df = text_labels(df)
        _check_columns(df, self.schema)
        out = np.zeros((len(df), self.output_dim_), dtype=np.float32)
        self._transform_continuous(df, out)
        for state in self.columns_:
            if isinstance(state, _Categorical):
                (span,) = self.spans_of(state.name)
                out[np.arange(len(df)), span.start + categorical_codes(state, df[state.name])] = 1.0
        return out

    def _transform_continuous(self, df: pd.DataFrame, out: np.ndarray) -> None:
        states = self._continuous_states()
        if not states:
            return
        specs = {s.name: s for s in self.schema.columns}
        values = np.column_stack(
            [_to_model_units(df[s.name], specs[s.name], s.datetime_unit)[0] for s in states]
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
        offsets = gap / (_STD_MULTIPLIER * np.where(point, 1.0, self._scales))
        offsets = np.where(point, 0.0, offsets)
        on_point = point & (gap == 0)
        fits = np.where(point, on_point, np.abs(offsets) <= _MAX_OFFSET) & active
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
            beyond = np.abs(gap) - _STD_MULTIPLIER * _MAX_OFFSET * np.where(point, 0.0, self._scales)
            nearest = np.argmin(np.where(active, beyond, np.inf), axis=2)
            modes = np.where(outside, nearest, modes)
        chosen = np.take_along_axis(offsets, modes[:, :, None], axis=2)[:, :, 0]
        chosen = np.clip(chosen, -_MAX_OFFSET, _MAX_OFFSET)
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
        for state in self.columns_:
            if isinstance(state, _Continuous):
                decoded[state.name] = self._decode_continuous(state, data)
            elif isinstance(state, _Categorical):
                (span,) = self.spans_of(state.name)
                decoded[state.name] = decode_categorical(state, np.argmax(data[:, span.start : span.stop], axis=1), rng)
            else:
                decoded[state.name] = _generate_ids(state, len(data), id_offset)
        return restore(pd.DataFrame(decoded, columns=[state.name for state in self.columns_]), self.forms_)

    def _decode_continuous(self, state: _Continuous, data: np.ndarray) -> pd.Series:
        value_span, mode_span, *null_span = self.spans_of(state.name)
        modes = np.argmax(data[:, mode_span.start : mode_span.stop], axis=1)
        offsets = np.clip(data[:, value_span.start].astype(np.float64), -1.0, 1.0)
        values = offsets * _STD_MULTIPLIER * np.asarray(state.scales)[modes] + np.asarray(state.means)[modes]
        values = np.clip(values, state.minimum, state.maximum)
        if state.integer or state.datetime_unit:
            values = np.round(values)
        if null_span:
            slot = np.argmax(data[:, null_span[0].start : null_span[0].stop], axis=1)
            values[slot == 1] = np.nan
            for k, special in enumerate(self._specials.get(state.name, [])):
                values[slot == 2 + k] = special
        return _from_model_units(values, state)

    # ------------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        """Everything needed to rebuild the fitted encoder, as plain JSON types."""
        self._check_fitted()
        return {
            "params": {
                "max_modes": self.max_modes,
                "weight_threshold": self.weight_threshold,
                "max_fit_rows": self.max_fit_rows,
                "random_state": self.random_state,
                "max_categories": self.max_categories,
            },
            "schema": self.schema.to_dict(),
            "columns": [_state_json(s) for s in self.columns_],
            "forms": forms_to_json(self.forms_),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "the encoder description") -> TableEncoder:
        """The encoder `to_dict` described, after `pipeline.validation.check_encoder` has checked every field
        (EncodingError, one line naming `source`, the column and the field)."""
        check_encoder(data, "table", source)
        encoder = cls(Schema.from_dict(data["schema"]), **data["params"])
        encoder.columns_ = [_state_from_json(c) for c in data["columns"]]
        encoder.forms_ = forms_from_json(data["forms"])
        encoder._build_layout()
        return encoder

    # ------------------------------------------------------------------------------------------ helpers

    def _continuous_states(self) -> list[_Continuous]:
        return [s for s in self.columns_ if isinstance(s, _Continuous)]

    def _state(self, column: str):
        for state in self.columns_:
            if state.name == column:
                return state
        raise EncodingError(f"unknown column {column!r}; the encoder knows {[s.name for s in self.columns_]}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise EncodingError("the encoder is not fitted yet; call fit(df) first")


# ---------------------------------------------------------------------------------------------- columns


def _check_columns(df: pd.DataFrame, schema: Schema) -> None:
    if _lacks_columns(df, schema):
        raise EncodingError(f"table lacks column(s) {_lacks_columns(df, schema)} that the schema expects")


def _lacks_columns(df: pd.DataFrame, schema: Schema) -> list[str]:
    labels = {str(label) for label in df.columns}
    return [name for name in schema.names if name not in labels]


def _without_specials(numeric: tuple[np.ndarray, str | None]) -> tuple[np.ndarray, str | None]:
    values, unit = numeric
    return np.where(np.isinf(values), np.nan, values), unit


# The type tag of each column state in encoder.json.
_TYPES = {"_Continuous": _Continuous, "_Categorical": _Categorical, "_Identifier": _Identifier}


def _state_json(state) -> dict:
    if isinstance(state, _Categorical):
        return {"type": "_Categorical", **categorical_to_json(state)}
    return {"type": type(state).__name__, **jsonable(asdict(state))}


def _state_from_json(data: dict):
    body = {k: v for k, v in data.items() if k != "type"}
    if data["type"] == "_Categorical":
        return categorical_from_json(body)
    return _TYPES[data["type"]](**body)


def _span_shapes(state, specials=()) -> list[tuple[str, int, str]]:
    if isinstance(state, _Continuous):
        shapes = [("value", 1, "tanh"), ("mode", state.n_modes, "softmax")]
        return shapes + ([("null", 2 + len(specials), "softmax")] if state.has_nulls else [])
    if isinstance(state, _Categorical):
        return [("category", state.n_codes, "softmax")]
    return []


def _to_model_units(series: pd.Series, spec: ColumnSpec, unit: str | None = None) -> tuple[np.ndarray, str | None]:
    """Float64 values the mixture models, NaN for nulls; datetimes as counts of a unit.

    At fit the unit is the coarsest one that divides every timestamp (dates are modelled in days, not
    nanoseconds); at transform the fitted unit is passed in.
    """
    if pd.api.types.is_timedelta64_dtype(series):  # durations too: counts of their coarsest unit
        valid = series.notna().to_numpy()
        nanos = series.astype("timedelta64[ns]").to_numpy().astype(np.int64)
    elif spec.kind != "datetime":
        return model_numbers(series), None
    else:
        stamps = series if pd.api.types.is_datetime64_any_dtype(series) else parse_datetimes(series, spec.datetime_format)
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        valid = stamps.notna().to_numpy()
        nanos = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    unit = unit or _coarsest_unit(nanos[valid])
    counts = nanos // _UNIT_NS[unit]  # integer division: float division would lose nanoseconds
    return np.where(valid, counts.astype(np.float64), np.nan), unit


def _coarsest_unit(nanos: np.ndarray) -> str:
    for unit, unit_ns in _UNIT_NS.items():
        if np.all(nanos % unit_ns == 0):
            return unit
    return "ns"


# Spikes (`_spikes`): values held by at least this share of a column and this many times the median count of its
# distinct values become exact modes of their own.
_SPIKE_SHARE = 0.01
_SPIKE_FACTOR = 5.0
# A mode's window may grow to this many times its fitted width to hold nearby seen values; values further out
# become tail modes (`_widened_scales`), at most this many per column.
_MAX_WIDENING = 2.0
_MAX_TAIL_MODES = 5


def _continuous_state(spec: ColumnSpec, numeric, mixture, source: pd.Series) -> _Continuous:
    values, unit = numeric
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        finite = np.zeros(1)
    mixture, scales = _widened_scales(finite, mixture)
    timezone = None
    if spec.kind == "datetime" and isinstance(source.dtype, pd.DatetimeTZDtype):
        timezone = str(source.dtype.tz)
    return _Continuous(
        name=spec.name,
        dtype=spec.dtype,
        has_nulls=bool(np.isnan(values).any()),
        integer=spec.integer,
        minimum=float(finite.min()),
        maximum=float(finite.max()),
        weights=mixture.weights.tolist(),
        means=mixture.means.tolist(),
        stds=mixture.stds.tolist(),
        scales=scales.tolist(),
        datetime_unit=unit,
        datetime_format=spec.datetime_format,
        timezone=timezone,
    )


def _widened_scales(values: np.ndarray, mixture):
    """The modes and their normalisation scales, such that every seen value lies inside some mode's window.

    Pruning small modes and heavy tails can leave values more than 4 sigma from every mode; clipping them would
    make the encoding lossy. A value within `_MAX_WIDENING` windows of the mode nearest to it (in its own
    sigmas) widens that mode just enough. Values further out are not swallowed: widening one mode 500-fold to
    reach a single 1e6 among refunds near 30 let the generator's noise on that mode's offsets spread its rows
    over the whole range (half of the synthetic rows above 1,000, against 0.05 % of the real ones). They become
    tail modes instead (`_tail_modes`), weighted by their share: a lone outlier is an exact mode. Clipping them
    to the nearest window would bound them as well, but break the round trip (a seen value would decode to
    another) and still put their rows at the edge of a mode; an own mode keeps the value and its share, and
    discloses nothing the encoder's stored range [minimum, maximum] does not.
    Returns (Mixture1D with any tail modes added, sorted by mean; scales), scale 0 for exact modes.
    """
    from tabtwin.pipeline.mixture import Mixture1D

    means, stds = mixture.means.astype(np.float64), mixture.stds.astype(np.float64)
    scales = stds.copy()
    point = stds <= 0
    distinct, counts = np.unique(values, return_counts=True)
    covered = np.isin(distinct, means[point])
    reach = _STD_MULTIPLIER * _MAX_OFFSET
    spread = np.flatnonzero(~point)
    if len(spread) and len(distinct):
        sigmas = np.abs(distinct[:, None] - means[spread][None, :]) / stds[spread][None, :]
        nearest = np.argmin(sigmas, axis=1)
        needed = sigmas[np.arange(len(distinct)), nearest] / reach  # window widths to reach the value
        near = ~covered & (needed <= _MAX_WIDENING)
        widest = np.ones(len(spread))
        np.maximum.at(widest, nearest[near], needed[near] * (1 + 1e-9))
        scales[spread] = stds[spread] * widest
        covered |= near | (needed <= 1.0)
    far, far_counts = distinct[~covered], counts[~covered]
    if not len(far):
        return mixture, scales
    window = 2 * reach * float(scales[spread].max()) if len(spread) else 0.0
    tail_means, tail_scales, tail_counts = _tail_modes(far, far_counts, np.sort(means), window)
    # The tail values were the mixture's: its modes give up their share, exact modes (spikes) keep theirs.
    total = float(counts.sum())
    weights = mixture.weights.astype(np.float64).copy()
    if (~point).any():
        left = max(1.0 - weights[point].sum() - tail_counts.sum() / total, 0.0)
        weights[~point] *= left / weights[~point].sum()
    weights = np.r_[weights, tail_counts / total]
    means, scales = np.r_[means, tail_means], np.r_[scales, tail_scales]
    stds = np.r_[stds, tail_scales]  # a tail mode's posterior spread is its window's
    order = np.argsort(means, kind="stable")
    widened = Mixture1D(weights=weights[order] / weights.sum(), means=means[order], stds=stds[order])
    return widened, scales[order]


def _tail_modes(far: np.ndarray, counts: np.ndarray, mode_means: np.ndarray, window: float):
    """Group sorted distinct values that no mode reaches into at most `_MAX_TAIL_MODES` modes.

    A new group starts where two values lie more than `window` (the widest mode window) apart or on different
    sides of a mode; past the cap, only the widest gaps split. Each group is a mode spanning exactly its values
    (mean mid-range, scale 0 for a single value). Returns (means, scales, counts), each (groups,).
    """
    slot = np.searchsorted(mode_means, far)
    gaps = np.diff(far)
    score = np.where(np.diff(slot) != 0, np.inf, gaps)
    splits = np.flatnonzero((score > window) | np.isinf(score))
    if len(splits) >= _MAX_TAIL_MODES:
        splits = np.sort(splits[np.argsort(score[splits], kind="stable")[::-1][: _MAX_TAIL_MODES - 1]])
    bounds = np.r_[0, splits + 1, len(far)]
    lows, highs = far[bounds[:-1]], far[bounds[1:] - 1]
    group_counts = np.add.reduceat(counts, bounds[:-1])
    scales = (highs - lows) / (2 * _STD_MULTIPLIER * _MAX_OFFSET) * (1 + 1e-9)
    return (lows + highs) / 2, scales, group_counts.astype(np.float64)


def _spikes(values: np.ndarray, limit: int):
    """Split values into spikes and the rest: (spike values, their shares, the other values).

    A spike is a value held by at least `_SPIKE_SHARE` of the values and at least `_SPIKE_FACTOR` times as many
    as the median distinct value (so the ages of a census, each about 2 %, are not spikes, while its 92 % of
    zero capital gains and the 47 % working 40 hours are); at most `limit`, the most frequent.
    """
    if not len(values):
        return np.zeros(0), np.zeros(0), values
    distinct, counts = np.unique(values, return_counts=True)
    spike = (counts >= _SPIKE_SHARE * len(values)) & (counts >= _SPIKE_FACTOR * np.median(counts))
    chosen = np.flatnonzero(spike)
    chosen = np.sort(chosen[np.argsort(counts[chosen], kind="stable")[::-1][:limit]])
    spikes = distinct[chosen]
    return spikes, counts[chosen] / len(values), values[~np.isin(values, spikes)]


def _single_mode(values: np.ndarray):
    from tabtwin.pipeline.mixture import Mixture1D

    centre = float(values[0]) if len(values) else 0.0
    return Mixture1D(weights=np.ones(1), means=np.array([centre]), stds=np.ones(1))


def _from_model_units(values: np.ndarray, state: _Continuous) -> pd.Series:
    if state.datetime_unit is None:
        return restore_dtype(pd.Series(values), state.dtype)
    valid = ~np.isnan(values)
    nanos = np.zeros(len(values), dtype=np.int64)
    nanos[valid] = values[valid].astype(np.int64) * _UNIT_NS[state.datetime_unit]
    if state.dtype.startswith("timedelta64"):
        return pd.Series(nanos.view("timedelta64[ns]")).where(valid).astype(state.dtype)
    stamps = pd.Series(nanos.view("datetime64[ns]")).where(valid)
    if state.timezone:
        stamps = stamps.dt.tz_localize("UTC").dt.tz_convert(state.timezone)
    if state.datetime_format:  # instants (UTC where the text had offsets); the column's form writes the text
        return stamps
    return restore_dtype(stamps, state.dtype)


def _identifier_state(spec: ColumnSpec, series: pd.Series) -> _Identifier:
    integer = pd.api.types.is_integer_dtype(series)
    sample = series.dropna().astype(str).head(1000)
    prefix = "" if integer else _common_prefix(sample.tolist()).rstrip("0123456789")[:MAX_ID_PREFIX] or "id_"
    width = int(sample.str.len().max() - len(prefix)) if len(sample) and not integer else 0
    # Zero-pad like the source ids where they are short codes; long opaque ids (UUIDs) get no padding.
    width = width if 0 < width <= 12 else 1
    return _Identifier(name=spec.name, dtype=spec.dtype, integer=integer, prefix=prefix, width=width)


def _common_prefix(texts: list[str]) -> str:
    if not texts:
        return ""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _generate_ids(state: _Identifier, n: int, offset: int) -> pd.Series:
    numbers = np.arange(offset, offset + n)
    if state.integer:
        return pd.Series(numbers).astype(state.dtype)
    return pd.Series([f"{state.prefix}{i:0{state.width}d}" for i in numbers], dtype=object)


def round_trip_errors(original: pd.DataFrame, decoded: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Per schema column, how `decoded` differs from `original` (same rows, in order), and whether that passes.

    Columns of the result: column, kind, measure ("max relative error" for continuous columns, relative to the
    larger of the value and a thousandth of the column's range; "exact match share" otherwise; ids are
    regenerated and only their form is checked), value, null_agreement (share of rows null in both or in
    neither), form ("ok", or what differs: the label, the dtype, or special values such as inf), passed (null
    agreement 1, form ok, and an exact match share of 1 or a relative error of at most ROUND_TRIP_TOLERANCE).
    Datetime strings with several UTC offsets match when they name the same instant (their offset is
    normalised, `pipeline.forms`).
    """
    want_table, got_table = text_labels(original), text_labels(decoded)
    wanted_labels, got_labels = list(original.columns), list(decoded.columns)
    rows = []
    for spec in schema.columns:
        want = want_table[spec.name]
        if spec.name not in got_table.columns:
            rows.append((spec.name, spec.kind, "exact match share", 0.0, 0.0, "column missing", False))
            continue
        got = got_table[spec.name]
        same_nulls = float((want.isna().to_numpy() == got.isna().to_numpy()).mean())
        form = _form_difference(want, got, wanted_labels, got_labels, spec)
        if spec.kind == "id":
            measure, value, ok = "exact match share", float("nan"), True
        elif spec.kind == "continuous":
            a, b = model_numbers(want), model_numbers(got)
            if not np.array_equal(np.where(np.isinf(a), a, 0), np.where(np.isinf(b), b, 0)) and form == "ok":
                form = "special values (inf) differ"
            both = np.isfinite(a) & np.isfinite(b)
            span = float(np.ptp(a[both])) if both.any() else 0.0
            rel = np.abs(a[both] - b[both]) / np.maximum(np.maximum(np.abs(a[both]), 1e-3 * span), 1e-12)
            measure, value = "max relative error", float(rel.max()) if both.any() else 0.0
            ok = value <= ROUND_TRIP_TOLERANCE
        else:
            present = want.notna().to_numpy() & got.notna().to_numpy()
            w, g = want[present].astype(str).to_numpy(), got[present].astype(str).to_numpy()
            matches = w == g
            if spec.kind == "datetime" and spec.datetime_format and not matches.all():
                # Several offsets in one column come back at one offset: compare the instants.
                same = parse_text_datetimes(pd.Series(w), spec.datetime_format) == parse_text_datetimes(
                    pd.Series(g), spec.datetime_format
                )
                offsets_differ = pd.Series(w).str.extract(r"([+-]\d\d:?\d\d|Z)\s*$")[0].nunique() > 1
                matches = matches | (same.to_numpy() & offsets_differ)
            measure, value = "exact match share", float(matches.mean()) if present.any() else 1.0
            ok = value == 1.0
        passed = bool(ok and same_nulls == 1.0 and form == "ok")
        rows.append((spec.name, spec.kind, measure, value, same_nulls, form, passed))
    return pd.DataFrame(rows, columns=["column", "kind", "measure", "value", "null_agreement", "form", "passed"])


# Float32 offsets decode to about 1e-7 of a mode's scale; anything past this is a fault, not rounding.
ROUND_TRIP_TOLERANCE = 1e-5


def _form_difference(want: pd.Series, got: pd.Series, wanted_labels: list, got_labels: list, spec) -> str:
    label = next((l for l in wanted_labels if str(l) == spec.name), spec.name)
    if label not in got_labels or any(str(l) == spec.name and type(l) is not type(label) for l in got_labels):
        return f"label {label!r} not kept"
    if str(want.dtype) != str(got.dtype):
        return f"dtype {want.dtype} -> {got.dtype}"
    return "ok"
