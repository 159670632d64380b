"""Discrete and boolean columns as codes, shared by both encoders (`TableEncoder`'s one-hot spans, `BinnedEncoder`'s
integer codes).

A column's seen values are its categories, sorted (order of appearance for mixed types). Each keeps a code of its
own up to `max_categories` values (None: no cap), the most frequent ones; past that, the rarest share one "rare"
code, decoded to one of them drawn by its frequency, and nulls get the last code. A column of 50,000 values thus
takes at most `max_categories` + 2 codes: a one-hot of 50,000 columns made TVAE ask for 18.6 GiB on a wide table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import category_from_json, category_to_json, restore_dtype
from tabtwin.pipeline.jsonable import jsonable

# The generators' default cap on codes per discrete column (flagship, CTGAN and TVAE alike).
MAX_CATEGORIES = 1000


@dataclass
class Discrete:
    """Every value a discrete or boolean column held at fit."""

    name: str
    dtype: str
    has_nulls: bool
    categories: list


@dataclass
class Categorical:
    """Codes of one discrete or boolean column: kept categories, then a shared rare code, then null."""

    base: Discrete  # categories sorted as `columns.categorical` sorts them
    kept: list[int] = field(default_factory=list)  # indices into base.categories that have their own code
    rare: list[int] = field(default_factory=list)  # indices sharing the rare code
    rare_weights: list[float] = field(default_factory=list)  # their frequencies, for decoding

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def n_codes(self) -> int:
        return len(self.kept) + int(bool(self.rare)) + int(self.base.has_nulls)

    def is_rare(self, index: int) -> bool:
        """Whether the column's `index`-th value shares the rare code with others."""
        return index < len(self.base.categories) and self.code_of_value(index) == len(self.kept)

    def code_of_value(self, index: int) -> int:
        """The code of the column's `index`-th value (`len(base.categories)`: the null one)."""
        if index >= len(self.base.categories):
            return self.n_codes - 1
        position = np.searchsorted(self.kept, index)
        if position < len(self.kept) and self.kept[position] == index:
            return int(position)
        return len(self.kept)


def categorical_state(summary, max_categories: int | None) -> Categorical:
    """The codes of a discrete or boolean column from its statistics (`columns.categorical.CategorySummary`):
    its categories as they read back from JSON, the `max_categories` most frequent with a code each (ties:
    sorted order), the rest sharing the rare code with their frequencies."""
    base = Discrete(
        name=summary.name,
        dtype=summary.dtype,
        has_nulls=summary.has_nulls,
        categories=[category_from_json(category_to_json(v)) for v in summary.categories],
    )
    if max_categories is None or len(base.categories) <= max_categories:
        return Categorical(base=base, kept=list(range(len(base.categories))))
    counts = np.asarray(summary.counts)
    order = np.argsort(-counts, kind="stable")
    kept = sorted(order[:max_categories].tolist())
    rare = sorted(order[max_categories:].tolist())
    weights = (counts[rare] / max(counts[rare].sum(), 1)).tolist()
    return Categorical(base=base, kept=kept, rare=rare, rare_weights=weights)


def category_codes(state: Discrete, series: pd.Series) -> np.ndarray:
    """(rows,) index of each value among `state.categories`, len(categories) for a null. Raises EncodingError for
    a value or a null the column did not hold at fit."""
    categories = pd.Index(state.categories)
    values = series.astype(object).where(series.notna(), None)
    codes = categories.get_indexer(values)
    unknown = (codes < 0) & series.notna().to_numpy()
    if unknown.any():
        example = series[unknown].iloc[0]
        raise EncodingError(
            f"column {state.name!r} holds {example!r}, a value not seen when the encoder was fitted; "
            "refit on data that includes it"
        )
    nulls = series.isna().to_numpy()
    if nulls.any():
        if not state.has_nulls:
            raise EncodingError(
                f"column {state.name!r} has nulls but had none when the encoder was fitted; refit on such data"
            )
        codes[nulls] = len(categories)
    return codes


def categorical_codes(state: Categorical, series: pd.Series) -> np.ndarray:
    """(rows,) int64 code of each value: kept values in category order, then the rare code, then null."""
    base_codes = category_codes(state.base, series)  # nulls -> len(categories)
    lookup = np.empty(len(state.base.categories) + 1, dtype=np.int64)
    lookup[state.kept] = np.arange(len(state.kept))
    if state.rare:
        lookup[state.rare] = len(state.kept)
    lookup[-1] = state.n_codes - 1
    return lookup[base_codes]


def decode_categorical(state: Categorical, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
    """Values of (rows,) codes in the column's dtype; the rare code draws one of its values by frequency."""
    categories = state.base.categories
    values = np.empty(len(codes), dtype=object)
    values[:] = np.nan
    kept = codes < len(state.kept)
    lookup = np.empty(len(state.kept), dtype=object)
    lookup[:] = [categories[i] for i in state.kept]
    values[kept] = lookup[codes[kept]]
    if state.rare:
        rare = codes == len(state.kept)
        picks = rng.choice(len(state.rare), size=int(rare.sum()), p=np.asarray(state.rare_weights))
        rare_values = np.empty(len(state.rare), dtype=object)
        rare_values[:] = [categories[i] for i in state.rare]
        values[rare] = rare_values[picks]
    return restore_dtype(pd.Series(values), state.base.dtype)


def discrete_to_json(state: Discrete) -> dict:
    """A `Discrete` as JSON; category values through `category_to_json` (+-inf survive)."""
    return jsonable({**asdict(state), "categories": [category_to_json(v) for v in state.categories]})


def discrete_from_json(data: dict) -> Discrete:
    """The inverse of `discrete_to_json` (fields checked by `pipeline.validation`)."""
    return Discrete(**{**data, "categories": [category_from_json(v) for v in data["categories"]]})


def categorical_to_json(state: Categorical) -> dict:
    """A `Categorical` as JSON: its base, kept and rare indices, and the rare values' frequencies."""
    return {"base": discrete_to_json(state.base), "kept": state.kept, "rare": state.rare,
            "rare_weights": state.rare_weights}


def categorical_from_json(data: dict) -> Categorical:
    """The inverse of `categorical_to_json` (fields checked by `pipeline.validation`)."""
    return Categorical(base=discrete_from_json(data["base"]), kept=data["kept"], rare=data["rare"],
                        rare_weights=data["rare_weights"])
