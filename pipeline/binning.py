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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tabtwin.pipeline.categories import (
    MAX_CATEGORIES,
    Categorical,
    categorical_codes,
    categorical_state,
    decode_categorical,
)
from tabtwin.pipeline.columns.datetime import from_model_units, to_model_units
from tabtwin.pipeline.columns.identifier import Identifier, generate_ids
from tabtwin.pipeline.columns.personal import link_names
from tabtwin.pipeline.encoder_base import ColumnEncoder
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import SPECIALS, decimals_of, restore
from tabtwin.pipeline.schema import Schema
from tabtwin.pipeline.statistics import TableStatistics, TableSummary

SUB_BINS = 8  # equally-populated slices per bin, for in-bin sampling


@dataclass
class Numeric:
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


class BinnedEncoder(ColumnEncoder, kind="binned",
                    tags={Categorical: "categorical", Numeric: "numeric", Identifier: "id"}):
    """Fit on a table, then map it to an int64 code matrix (`transform`) and back (`inverse_transform`).

    `transform(df)` -> (rows, n_columns) int64, column j in [0, cardinalities_[j]); `inverse_transform(codes,
    seed)` -> DataFrame with the source columns and dtypes (in-bin values drawn with `seed`). Raises
    EncodingError for a table that lacks schema columns, holds unseen categories, or nulls where fit saw none.
    Fitted from the table's statistics (`pipeline.statistics`): `fit(df)` is `fit_chunks([df])`.
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

    @classmethod
    def from_statistics(cls, stats: TableStatistics, **params) -> BinnedEncoder:
        """The encoder fitted from a table's statistics. Raises EncodingError when they keep fewer exact values
        per column (`exact_values`) than `max_exact`: a sampled column could not tell whether it is few-valued."""
        encoder = cls(stats.schema, **params)
        if stats.options.exact_values < encoder.max_exact:
            raise EncodingError(f"statistics keep {stats.options.exact_values} exact values per column, fewer than "
                                f"max_exact = {encoder.max_exact}; compute them with exact_values >= max_exact")
        return encoder.fit_statistics(stats)

    def statistics_options(self) -> dict:
        return {"sample_rows": 0}  # the mixture's sample: bins need none

    def _fit(self, summary: TableSummary) -> None:
        states = []
        for spec in self.schema.columns:
            column = summary.columns[spec.name]
            if spec.kind == "id":
                states.append(column)
            elif spec.kind in ("continuous", "datetime"):
                states.append(self._numeric_state(spec, column))
            else:
                states.append(categorical_state(column, self.max_categories))
        self.states_ = states

    def _numeric_state(self, spec, summary) -> Numeric:
        """Points and bins of a numeric column from its statistics (`columns.numeric.NumericSummary`)."""
        points: list[float] = []
        edges: list[list[float]] = []
        distinct, counts = summary.distinct, summary.counts
        if summary.finite:
            if summary.exact and len(distinct) <= self.max_exact:
                points = distinct.tolist()
            else:
                spikes = counts >= max(self.spike_share * summary.finite, 2)
                points = distinct[spikes].tolist()
                edges = quantile_bins(distinct[~spikes], counts[~spikes], self.n_bins)
        integer = bool(spec.integer or summary.unit is not None)
        return Numeric(
            name=spec.name,
            dtype=spec.dtype,
            integer=integer,
            decimals=0 if integer else decimals_of(summary.head),
            has_nulls=bool(summary.nulls),
            points=points,
            edges=edges,
            datetime_unit=summary.unit,
            datetime_format=spec.datetime_format,
            timezone=summary.timezone,
            specials=list(summary.specials),
        )

    # ------------------------------------------------------------------------------------------ properties

    @property
    def modelled(self) -> list:
        """States of the columns that take a code, in code-matrix order."""
        self._check_fitted()
        return [s for s in self.states_ if not isinstance(s, Identifier)]

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
            if isinstance(state, Numeric):
                values[: len(state.points)] = state.points
                values[len(state.points) : len(state.points) + len(state.edges)] = [e[SUB_BINS // 2] for e in state.edges]
            out.append(values)
        return out

    def all_category_values(self, column: str) -> list:
        """Every value a discrete column held at fit, sorted, then None when it had nulls."""
        return self._category_values(column)

    # ------------------------------------------------------------------------------------------ transform

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        df = self._checked_table(df)
        specs = {s.name: s for s in self.schema.columns}
        out = np.zeros((len(df), len(self.modelled)), dtype=np.int64)
        for j, state in enumerate(self.modelled):
            series = df[state.name]
            if isinstance(state, Categorical):
                out[:, j] = categorical_codes(state, series)
            else:
                values, _ = to_model_units(series, specs[state.name], state.datetime_unit)
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
            if isinstance(state, Identifier):
                decoded[state.name] = generate_ids(state, len(codes), id_offset, rng)
                continue
            column = codes[:, j]
            j += 1
            if isinstance(state, Categorical):
                decoded[state.name] = decode_categorical(state, column, rng)
            else:
                decoded[state.name] = from_model_units(_decode_numeric(state, column, rng), state)
        link_names(decoded, {s.name: s.pii for s in self.states_ if isinstance(s, Identifier) and s.pii}, id_offset)
        return restore(pd.DataFrame(decoded, columns=[s.name for s in self.states_]), self.forms_)


# ---------------------------------------------------------------------------------------------- numeric


def quantile_bins(values: np.ndarray, counts: np.ndarray, n_bins: int) -> list[list[float]]:
    """Cut the values (ascending distinct `values`, each held by `counts` rows) into at most n_bins bins of (near)
    equal counts, never splitting equal values across bins; each bin gets SUB_BINS + 1 slice edges at its own
    quantiles, as `np.quantile` (linear) computes them on the bin's rows, bit for bit, without expanding them."""
    total = int(counts.sum())
    if total == 0:
        return []
    ends = np.cumsum(counts)  # one past each value's last row
    starts = ends - counts
    marks = np.linspace(0, total, n_bins + 1).astype(int)[1:-1]
    cuts = np.unique(starts[np.searchsorted(ends, marks, "right")])  # each mark moved back to its value's start
    cuts = cuts[(cuts > 0) & (cuts < total)]
    bounds = np.r_[0, cuts, total]
    levels = np.linspace(0, 1, SUB_BINS + 1)
    return [_row_quantiles(values, ends, int(lo), int(hi - lo), levels).tolist()
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def _row_quantiles(values: np.ndarray, ends: np.ndarray, start: int, n: int, levels: np.ndarray) -> np.ndarray:
    """`np.quantile(rows[start:start + n], levels)` where rows would be the values repeated by their counts:
    numpy's linear method (Hyndman and Fan's 7th), its index arithmetic and interpolation, step for step."""
    virtual = (n - 1) * levels
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1  # numpy takes the last row there
    previous[above], following[above] = -1, -1
    gamma = virtual - previous
    at = lambda index: values[np.searchsorted(ends, start + np.where(index < 0, n - 1, index), "right")]  # noqa: E731
    low, high = at(previous.astype(np.intp)), at(following.astype(np.intp))
    diff = high - low
    return np.where(gamma >= 0.5, high - diff * (1 - gamma), low + diff * gamma)


def _numeric_codes(state: Numeric, values: np.ndarray) -> np.ndarray:
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


def _decode_numeric(state: Numeric, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
