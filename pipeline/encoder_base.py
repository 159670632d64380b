"""What both encoders share: fitting from a table's statistics (whole, in chunks, or already computed), and the
encoder as one JSON file (`save`, `load`, `to_dict`, `from_dict`).

An encoder is a list of column states, one per schema column, plus the columns' forms (`pipeline.forms`). Its
JSON is {"params", "schema", "columns": [{"type": tag, ...state}], "forms"}; every field is checked on load
(`pipeline.validation.check_encoder`) before anything is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import asdict

import pandas as pd

from tabtwin.pipeline.categories import Categorical, categorical_from_json, categorical_to_json
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.files import write_json_atomic
from tabtwin.pipeline.forms import forms_from_json, forms_to_json, text_labels
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.rules import read_json
from tabtwin.pipeline.schema import Schema
from tabtwin.pipeline.statistics import TableStatistics, TableSummary, check_columns
from tabtwin.pipeline.validation import check_encoder


class ColumnEncoder:
    """Base of `TableEncoder` and `BinnedEncoder`. A subclass names its `kind` (for `check_encoder`) and the
    JSON type `tags` of its state classes in its class statement, keeps each constructor argument after the
    schema as an attribute of the same name (saved as the file's params), and implements `_fit(summary)`,
    which sets `states_` from a `TableSummary`."""

    KIND: str
    TAGS: dict[type, str]

    def __init_subclass__(cls, kind: str, tags: dict, **rest):
        super().__init_subclass__(**rest)
        cls.KIND, cls.TAGS = kind, tags

    schema: Schema

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, df: pd.DataFrame):
        """Learn every column's encoding and form from `df` (rows, columns; labels text or numbers); returns
        self. Raises EncodingError for a table without rows or lacking schema columns."""
        return self.fit_chunks([df])

    def fit_chunks(self, chunks: Iterable[pd.DataFrame]):
        """`fit` on a table given as consecutive chunks of rows (DataFrames with the schema's columns): the same
        encoder as fitting their concatenation, read one chunk at a time; returns self."""
        return self.fit_statistics(TableStatistics.of(self.schema, chunks, **self.statistics_options()))

    @classmethod
    def from_statistics(cls, stats: TableStatistics, **params):
        """The encoder (constructor `params`) fitted from a table's statistics (`pipeline.statistics`), such as
        the merge of per-partition statistics. `TableEncoder` fits its mixtures on their sample: compute them
        with `sample_rows` >= its `max_fit_rows`."""
        return cls(stats.schema, **params).fit_statistics(stats)

    def fit_statistics(self, stats: TableStatistics):
        """Fit this encoder from `stats`, statistics of the table computed with `statistics_options()` (as
        `pipeline.streaming.fit_on_parts` computes them part by part); returns self."""
        summary = stats.finalise()
        self.forms_ = summary.forms
        self._fit(summary)
        self._loaded()
        return self

    def statistics_options(self) -> dict:
        """Options of the `TableStatistics` this encoder fits from (sample size and seed)."""
        return {}

    def _fit(self, summary: TableSummary) -> None:
        raise NotImplementedError

    def _loaded(self) -> None:
        """Derive what the states imply (after fit and load)."""

    # ------------------------------------------------------------------------------------------ states

    def _check_fitted(self) -> None:
        if not hasattr(self, "states_"):
            raise EncodingError("the encoder is not fitted yet; call fit(df) first")

    def _state(self, column: str):
        self._check_fitted()
        for state in self.states_:
            if state.name == column:
                return state
        raise EncodingError(f"unknown column {column!r}; the encoder knows {[s.name for s in self.states_]}")

    def _categorical(self, column: str) -> Categorical:
        state = self._state(column)
        if not isinstance(state, Categorical):
            raise EncodingError(f"column {column!r} is not discrete; only discrete columns have categories")
        return state

    def _category_values(self, column: str) -> list:
        state = self._categorical(column)
        return list(state.base.categories) + ([None] if state.base.has_nulls else [])

    def code_of_value(self, column: str, index: int) -> int:
        """The code of a discrete column's `index`-th value (`category_values` of `TableEncoder`,
        `all_category_values` of `BinnedEncoder`): its position in the one-hot span or its integer code; rare
        values share one code. Raises EncodingError for a column that is not discrete."""
        return self._categorical(column).code_of_value(index)

    def _checked_table(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` with text labels, after checking the encoder is fitted and `df` has the schema's columns."""
        self._check_fitted()
        df = text_labels(df)
        check_columns(df, self.schema)
        return df

    # ------------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        """Everything needed to rebuild the fitted encoder, as plain JSON types."""
        self._check_fitted()
        columns = []
        for state in self.states_:
            body = categorical_to_json(state) if isinstance(state, Categorical) else jsonable(asdict(state))
            columns.append({"type": self.TAGS[type(state)], **body})
        params = {name: getattr(self, name) for name in list(inspect.signature(type(self)).parameters)[1:]}
        return {"params": params, "schema": self.schema.to_dict(), "columns": columns,
                "forms": forms_to_json(self.forms_)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "the encoder description"):
        """The encoder `to_dict` described, after `pipeline.validation.check_encoder` has checked every field
        (EncodingError, one line naming `source`, the column and the field)."""
        check_encoder(data, cls.KIND, source)
        encoder = cls(Schema.from_dict(data["schema"]), **data["params"])
        types = {tag: kind for kind, tag in cls.TAGS.items()}
        states = []
        for entry in data["columns"]:
            kind, body = types[entry["type"]], {k: v for k, v in entry.items() if k != "type"}
            states.append(categorical_from_json(body) if kind is Categorical else kind(**body))
        encoder.states_ = states
        encoder.forms_ = forms_from_json(data["forms"])
        encoder._loaded()
        return encoder

    def save(self, path) -> None:
        write_json_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path):
        """The encoder saved at `path`; EncodingError (one line naming the file) when it is unreadable or invalid."""
        return cls.from_dict(read_json(path, "encoder file"), source=f"encoder file {path}")
