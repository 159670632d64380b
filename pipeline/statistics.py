"""A table's statistics, computed chunk by chunk: the input both encoders are fitted from.

`TableStatistics(schema).update(chunk, row_offset)` adds rows (a DataFrame with the schema's columns whose first
row is the table's `row_offset`-th); `merge(other)` combines the statistics of other rows, so partitions can be
summarised apart (Dask) and reduced in any grouping; `finalise()` gives each column's summary and form. What each
column type measures, and how exactly, is in `pipeline.columns`. Every statistic is exact, and equal to that of
the whole table however it was chunked, except a numeric column's distribution past `exact_values` distinct
values (read from a uniform sample, with a stated rank error, `pipeline.columns.numeric`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from tabtwin.pipeline.columns import StatisticsOptions, statistics_for
from tabtwin.pipeline.columns.base import EXACT_VALUES, QUANTILE_ROWS, SAMPLE_ROWS
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.forms import ColumnForm, column_form, text_labels
from tabtwin.pipeline.schema import Schema


@dataclass
class TableSummary:
    """Finalised statistics: rows, one summary per schema column (by name, schema order) and their forms."""

    schema: Schema
    rows: int
    columns: dict
    forms: list[ColumnForm]


class TableStatistics:
    """Per-column accumulators of a table (see the module docstring). Raises EncodingError for a chunk that
    lacks schema columns, and at `finalise` for a table without rows."""

    def __init__(self, schema: Schema, exact_values: int = EXACT_VALUES, quantile_rows: int = QUANTILE_ROWS,
                 sample_rows: int = SAMPLE_ROWS, sample_seed: int = 0):
        self.schema = schema
        self.options = StatisticsOptions(exact_values=exact_values, quantile_rows=quantile_rows, sample_rows=sample_rows,
                                         sample_seed=sample_seed)
        self.rows = 0
        self.columns = {spec.name: statistics_for(spec, self.options) for spec in schema.columns}

    @classmethod
    def of(cls, schema: Schema, chunks: Iterable[pd.DataFrame], **options) -> TableStatistics:
        """The statistics of the chunks, in order, as consecutive rows of one table."""
        stats = cls(schema, **options)
        for chunk in chunks:
            stats.update(chunk, stats.rows)
        return stats

    def update(self, df: pd.DataFrame, row_offset: int) -> TableStatistics:
        """Add the rows of `df` (labels text or numbers), the first being the table's `row_offset`-th; returns
        self."""
        originals = {str(label): label for label in df.columns}
        table = text_labels(df)
        check_columns(table, self.schema)
        self.rows += len(table)
        for name, column in self.columns.items():
            column.update(table[name], row_offset, label=originals.get(name, name))
        return self

    def merge(self, other: TableStatistics) -> TableStatistics:
        """The statistics of both tables' rows (neither input changes). Raises ValueError for statistics of
        another schema or options."""
        if other.schema.to_dict() != self.schema.to_dict() or other.options != self.options:
            raise ValueError("cannot merge statistics of different schemas or options")
        out = TableStatistics.__new__(TableStatistics)
        out.schema, out.options, out.rows = self.schema, self.options, self.rows + other.rows
        out.columns = {name: column.merge(other.columns[name]) for name, column in self.columns.items()}
        return out

    def finalise(self) -> TableSummary:
        if self.rows == 0:
            raise EncodingError("cannot fit the encoder on a table with no rows")
        columns = {name: column.finalise() for name, column in self.columns.items()}
        forms = [column_form(spec, self.columns[spec.name].form_facts(columns[spec.name]))
                 for spec in self.schema.columns]
        return TableSummary(schema=self.schema, rows=self.rows, columns=columns, forms=forms)


def check_columns(df: pd.DataFrame, schema: Schema) -> None:
    """EncodingError unless `df` (text labels) has every column the schema names."""
    labels = {str(label) for label in df.columns}
    lacking = [name for name in schema.names if name not in labels]
    if lacking:
        raise EncodingError(f"table lacks column(s) {lacking} that the schema expects")
