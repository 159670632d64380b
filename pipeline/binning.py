"""A table as one integer code per column, and back: the input of the autoregressive generator.

Per modelled column (schema order; id columns take no code and are regenerated on decode, as in
`TableEncoder`):

- discrete / boolean: the index of the value among the seen categories, sorted; nulls get the last code. Past
  `max_categories` values, the rarest share one "rare" code that decodes to one of them, drawn by frequency
  (`pipeline.categories`, shared with `TableEncoder`).
- continuous / datetime (datetimes as counts of their coarsest unit, as in `TableEncoder`): a column with at most
  `max_exact` distinct values keeps each value as its own code, so its marginal comes back exactly. Otherwise
  every value that holds at least `spike_share` of the rows (Adult's capital-gain zeros, round prices) keeps its
  own code as a spike, and the remaining values are cut into `n_bins` bins of equal counts. A bin decodes to a
  value drawn uniformly inside one of `SUB_BINS` equally-populated slices of it, so the decoded marginal follows
  the real one at a resolution of 1 / (n_bins * SUB_BINS) quantiles, while no value is copied from a row. A few
  far outliers therefore share the top bin with their neighbours instead of spreading over the column. Nulls
  get the last code, and +inf / -inf (special values) a code each before it. Values come back rounded to the
  column's decimals (whole numbers for integers).

Each column's form (label, dtype, decimals, datetime text format and UTC offset; `pipeline.forms`) is recorded
at fit and restored by `inverse_transform`, as in `TableEncoder`.

Reference: quantile discretisation with in-bin sampling is how MOSTLY AI's TabularARGN (Tiwald et al. 2025,
"TabularARGN: A Flexible and Efficient Auto-Regressive Framework for Generating High-Fidelity Synthetic Data")
and the binned mixtures in the TabPC line of work model numeric columns; this is our own implementation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from tabtwin.pipeline.categories import (
    MAX_CATEGORIES,
    _Categorical,
    categorical_codes,
    categorical_from_json,
    categorical_to_json,
    decode_categorical,
    fit_categorical,
)
from tabtwin.pipeline.encoding import (
    _check_columns,
    _from_model_units,
    _generate_ids,
    _Identifier,
    _identifier_state,
    _to_model_units,
)
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import (
    SPECIALS,
    decimals_of,
    fit_forms,
    forms_from_json,
    forms_to_json,
    restore,
    text_labels,
)
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import Schema
from tabtwin.pipeline.validation import EncoderFile, check_encoder

SUB_BINS = 8  # equally-populated slices per bin, for in-bin sampling


@dataclass
class _Numeric:
    """Codes of one continuous or datetime column: points (exact values, spikes) then bins, then null."""

    name: str
    dtype: str
    integer: bool
    decimals: int | None  # round decoded values to this many decimals (None: keep full precision)
    has_nulls: bool
    points: list[float]  # values that are codes of their own, ascending
    edges: list[list[float]]  # per bin: SUB_BINS + 1 ascending slice edges (first = bin minimum, last = maximum)
    datetime_unit: str | None = None
    datetime_format: str | None = None
    timezone: str | None = None
    specials: list[str] = field(default_factory=list)  # keys of forms.SPECIALS, a code each after the bins

    @property
    def n_codes(self) -> int:
        return len(self.points) + len(self.edges) + len(self.specials) + int(self.has_nulls)


class BinnedEncoder(EncoderFile):
    """Fit on a table, then map it to an int64 code matrix (`transform`) and back (`inverse_transform`).

    `transform(df)` -> (rows, n_columns) int64, column j in [0, cardinalities_[j]); `inverse_transform(codes,
    seed)` -> DataFrame with the source columns and dtypes (in-bin values drawn with `seed`). Raises
    EncodingError for a table that lacks schema columns, holds unseen categories, or nulls where fit saw none.
    """

    def __init__(
        self,
        schema: Schema,
        n_bins: int = 64,
        max_exact: int = 128,
        spike_share: float = 0.01,
        max_categories: int = MAX_CATEGORIES,
    ):
        self.schema = schema
        self.n_bins = n_bins
        self.max_exact = max_exact
        self.spike_share = spike_share
        self.max_categories = max_categories

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, df: pd.DataFrame) -> BinnedEncoder:
        table = text_labels(df)
        _check_columns(table, self.schema)
        if len(df) == 0:
            raise EncodingError("cannot fit the encoder on a table with no rows")
        self.forms_ = fit_forms(df, self.schema)
        df = table
        states = []
        for spec in self.schema.columns:
            if spec.kind == "id":
                states.append(_identifier_state(spec, df[spec.name]))
            elif spec.kind in ("continuous", "datetime"):
                states.append(self._fit_numeric(spec, df[spec.name]))
            else:
                states.append(fit_categorical(spec, df[spec.name], self.max_categories))
        self.states_ = states
        return self

    def _fit_numeric(self, spec, series: pd.Series) -> _Numeric:
        values, unit = _to_model_units(series, spec)
        missing = np.isnan(values)
        specials = [key for key, special in SPECIALS.items() if np.any(values == special)]
        finite = values[np.isfinite(values)]
        points: list[float] = []
        edges: list[list[float]] = []
        if len(finite):
            distinct, counts = np.unique(finite, return_counts=True)
            if len(distinct) <= self.max_exact:
                points = distinct.tolist()
            else:
                spikes = counts >= max(self.spike_share * len(finite), 2)
                points = distinct[spikes].tolist()
                rest = np.sort(finite[~np.isin(finite, distinct[spikes])])
                edges = _quantile_bins(rest, self.n_bins)
        integer = bool(spec.integer or unit is not None)
        return _Numeric(
            name=spec.name,
            dtype=spec.dtype,
            integer=integer,
            decimals=0 if integer else decimals_of(finite),
            has_nulls=bool(missing.any()),
            points=points,
            edges=edges,
            datetime_unit=unit,
            datetime_format=spec.datetime_format,
            timezone=str(series.dtype.tz) if isinstance(series.dtype, pd.DatetimeTZDtype) else None,
            specials=specials,
        )

    # ------------------------------------------------------------------------------------------ properties

    @property
    def modelled(self) -> list:
        """States of the columns that take a code, in code-matrix order."""
        self._check_fitted()
        return [s for s in self.states_ if not isinstance(s, _Identifier)]

    @property
    def columns(self) -> list[str]:
        return [s.name for s in self.modelled]

    @property
    def cardinalities(self) -> list[int]:
        return [max(s.n_codes, 1) for s in self.modelled]

    def representatives(self) -> list[np.ndarray]:
        """Per modelled column, a number standing for each code in value order: the value of an exact code, the
        median of a bin; NaN for the null code and for every code of a discrete column (no order)."""
        out = []
        for state in self.modelled:
            values = np.full(state.n_codes, np.nan)
            if isinstance(state, _Numeric):
                values[: len(state.points)] = state.points
                values[len(state.points) : len(state.points) + len(state.edges)] = [e[SUB_BINS // 2] for e in state.edges]
            out.append(values)
        return out

    def all_category_values(self, column: str) -> list:
        """Every value a discrete column held at fit, sorted, then None when it had nulls."""
        state = self._state(column)
        if not isinstance(state, _Categorical):
            raise EncodingError(f"column {column!r} is not discrete; only discrete columns have categories")
        return list(state.base.categories) + ([None] if state.base.has_nulls else [])

    def code_of_value(self, column: str, index: int) -> int:
        """The code of `all_category_values(column)[index]` (rare values share one code)."""
        return self._state(column).code_of_value(index)

    # ------------------------------------------------------------------------------------------ transform

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        self._check_fitted()
        df = text_labels(df)
        _check_columns(df, self.schema)
        specs = {s.name: s for s in self.schema.columns}
        out = np.zeros((len(df), len(self.modelled)), dtype=np.int64)
        for j, state in enumerate(self.modelled):
            series = df[state.name]
            if isinstance(state, _Categorical):
                out[:, j] = categorical_codes(state, series)
            else:
                values, _ = _to_model_units(series, specs[state.name], state.datetime_unit)
                out[:, j] = _numeric_codes(state, values)
        return out

    # ------------------------------------------------------------------------------------------ inverse

    def inverse_transform(self, codes: np.ndarray, seed: int | None = 0, id_offset: int = 0) -> pd.DataFrame:
        self._check_fitted()
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != len(self.modelled):
            raise EncodingError(f"expected a code matrix with {len(self.modelled)} columns, got shape {codes.shape}")
        rng = np.random.default_rng(seed)
        decoded, j = {}, 0
        for state in self.states_:
            if isinstance(state, _Identifier):
                decoded[state.name] = _generate_ids(state, len(codes), id_offset)
                continue
            column = codes[:, j]
            j += 1
            if isinstance(state, _Categorical):
                decoded[state.name] = decode_categorical(state, column, rng)
            else:
                decoded[state.name] = _from_model_units(_decode_numeric(state, column, rng), state)
        return restore(pd.DataFrame(decoded, columns=[s.name for s in self.states_]), self.forms_)

    # ------------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        self._check_fitted()
        columns = []
        for s in self.states_:
            if isinstance(s, _Categorical):
                entry = {"type": "categorical", **categorical_to_json(s)}
            elif isinstance(s, _Numeric):
                entry = {"type": "numeric", **asdict(s)}
            else:
                entry = {"type": "id", **jsonable(asdict(s))}
            columns.append(entry)
        params = {"n_bins": self.n_bins, "max_exact": self.max_exact, "spike_share": self.spike_share,
                  "max_categories": self.max_categories}
        return {"params": params, "schema": self.schema.to_dict(), "columns": columns, "forms": forms_to_json(self.forms_)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "the encoder description") -> BinnedEncoder:
        """The encoder `to_dict` described, after `pipeline.validation.check_encoder` has checked every field
        (EncodingError, one line naming `source`, the column and the field)."""
        check_encoder(data, "binned", source)
        encoder = cls(Schema.from_dict(data["schema"]), **data["params"])
        builders = {"categorical": categorical_from_json, "numeric": lambda body: _Numeric(**body),
                    "id": lambda body: _Identifier(**body)}
        encoder.states_ = [builders[c["type"]]({k: v for k, v in c.items() if k != "type"}) for c in data["columns"]]
        encoder.forms_ = forms_from_json(data["forms"])
        return encoder

    # ------------------------------------------------------------------------------------------ helpers

    def _state(self, column: str):
        for state in self.modelled:
            if state.name == column:
                return state
        raise EncodingError(f"unknown column {column!r}; the encoder models {self.columns}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "states_"):
            raise EncodingError("the encoder is not fitted yet; call fit(df) first")


# ---------------------------------------------------------------------------------------------- numeric


def _quantile_bins(rest: np.ndarray, n_bins: int) -> list[list[float]]:
    """Cut sorted values into at most n_bins bins of (near) equal counts, never splitting equal values across
    bins; each bin gets SUB_BINS + 1 slice edges at its own quantiles."""
    if len(rest) == 0:
        return []
    cuts = np.unique(np.searchsorted(rest, rest[np.linspace(0, len(rest), n_bins + 1).astype(int)[1:-1]], "left"))
    cuts = cuts[(cuts > 0) & (cuts < len(rest))]
    bins = []
    for chunk in np.split(rest, cuts):
        bins.append(np.quantile(chunk, np.linspace(0, 1, SUB_BINS + 1)).tolist())
    return bins


def _numeric_codes(state: _Numeric, values: np.ndarray) -> np.ndarray:
    missing = np.isnan(values)
    codes = np.zeros(len(values), dtype=np.int64)
    if missing.any():
        if not state.has_nulls:
            raise EncodingError(f"column {state.name!r} has nulls but had none when the encoder was fitted; refit")
        codes[missing] = state.n_codes - 1
    n_bins = len(state.edges)
    special = np.zeros(len(values), dtype=bool)
    for k, key in enumerate(state.specials):
        at = values == SPECIALS[key]
        codes[at] = len(state.points) + n_bins + k
        special |= at
    unseen = np.isinf(values) & ~special
    if unseen.any():
        raise EncodingError(
            f"column {state.name!r} holds {values[unseen][0]}, a value it did not hold when the encoder was fitted; "
            "refit on data that includes it"
        )
    missing = missing | special  # settled above; kept out of the point and bin lookups
    x = np.where(missing, 0.0, values)
    points = np.asarray(state.points, dtype=np.float64)
    n_points = len(points)
    is_point = np.zeros(len(x), dtype=bool)
    if n_points:
        at = np.clip(np.searchsorted(points, x), 0, n_points - 1)
        is_point = points[at] == x
        codes[is_point & ~missing] = at[is_point & ~missing]
    rest = ~is_point & ~missing
    if rest.any():
        if state.edges:
            lows = np.asarray([e[0] for e in state.edges])
            codes[rest] = n_points + np.clip(np.searchsorted(lows, x[rest], "right") - 1, 0, len(lows) - 1)
        else:  # a value between exact points (new data): the nearest point
            nearest = np.argmin(np.abs(points[None, :] - x[rest][:, None]), axis=1)
            codes[rest] = nearest
    return codes


def _decode_numeric(state: _Numeric, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    values = np.full(len(codes), np.nan)
    n_points = len(state.points)
    if n_points:
        is_point = codes < n_points
        values[is_point] = np.asarray(state.points)[codes[is_point]]
    in_bin = (codes >= n_points) & (codes < n_points + len(state.edges))
    if in_bin.any():
        edges = np.asarray(state.edges)  # (bins, SUB_BINS + 1)
        bins = codes[in_bin] - n_points
        slices = rng.integers(0, SUB_BINS, size=len(bins))
        lo, hi = edges[bins, slices], edges[bins, slices + 1]
        drawn = lo + rng.random(len(bins)) * (hi - lo)
        if state.decimals is not None:
            drawn = np.round(drawn, state.decimals)
        values[in_bin] = np.clip(drawn, edges[bins, 0], edges[bins, -1])
    for k, key in enumerate(state.specials):
        values[codes == n_points + len(state.edges) + k] = SPECIALS[key]
    return values
