"""A database table read in parts by ranges of one numeric or date column (`--partition-column`), so no process
needs the whole table: the same interface as `pipeline.datasets.PartitionedTable` (`parts`, `part_rows`,
`read_part`, `frames`, `count_rows`, `spread`).

The ranges split [min, max] of the column into `partitions` equal widths, as Spark's JDBC source splits its
`partitionColumn` between `lowerBound` and `upperBound` into `numPartitions`
(https://spark.apache.org/docs/latest/sql-data-sources-jdbc.html): part i holds lo_i <= column < hi_i, the last
one its upper bound too, and rows whose column is null are one more part. Every row is in exactly one part;
parts are as even as the column's values are. Queries are SQLAlchemy Core selects, so every dialect it speaks
works; SQLite's dates, which are text, are compared as text in the format the column's values have.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tabtwin.pipeline.databases import create_engine, mask_url, resolve_table, sql_errors
from tabtwin.pipeline.read_checks import ingest_error

PROBE_ROWS = 1000
SQLITE_DATE_FORMATS = {10: "%Y-%m-%d", 19: "%Y-%m-%d %H:%M:%S", 26: "%Y-%m-%d %H:%M:%S.%f"}  # SQLite: length -> format


@dataclass(frozen=True)
class SqlPartitionedTable:
    """Table `table` (None: the database's only table) of the database at `url`, in `partitions` ranges of
    `column`. Raises IngestError (one line) for a missing table or column, or a column that is not numeric or a
    date."""

    url: str
    table: str | None
    column: str
    partitions: int = 8

    def __reduce__(self):  # to a Dask worker: the settings, not the engine (each process opens its own)
        return SqlPartitionedTable, (self.url, self.table, self.column, self.partitions)

    @cached_property
    def engine(self) -> sa.Engine:
        return create_engine(self.url, mask_url(self.url))

    @cached_property
    def sql_table(self) -> sa.TableClause:
        """The table with its column names (read from one row, not reflected: DuckDB's driver cannot reflect)."""
        with sql_errors(mask_url(self.url), "could not read the table", "check the table's name"):
            with self.engine.connect() as conn:
                schema, name = resolve_table(conn, self.table, mask_url(self.url))
                names = list(conn.execute(sa.select(sa.text("*")).select_from(sa.table(name, schema=schema))
                                          .limit(1)).keys())
        if self.column not in names:
            raise ingest_error(f"--partition-column {self.column!r} is not a column of {name} in "
                               f"{mask_url(self.url)}; columns: {', '.join(names)}")
        return sa.table(name, *(sa.column(n) for n in names), schema=schema)

    @cached_property
    def dtypes(self) -> dict:
        """Each column's dtype as the first PROBE_ROWS rows read it: what a part whose column is all null gets."""
        return self._read(sa.select(self.sql_table).limit(PROBE_ROWS)).dtypes.to_dict()

    @cached_property
    def parts(self) -> list:
        """One WHERE clause per part: the ranges of the column, then its nulls where there are any."""
        column = self.sql_table.columns[self.column]
        low, high, nulls = self._scalar(sa.select(sa.func.min(column), sa.func.max(column),
                                                  sa.func.count() - sa.func.count(column)))
        clauses = []
        if low is not None:
            edges = self._edges(low, high)
            clauses = [sa.and_(column >= a, column < b) for a, b in zip(edges[:-2], edges[1:-1])]
            clauses.append(sa.and_(column >= edges[-2], column <= edges[-1]))
        return clauses + ([column.is_(None)] if nulls else [])

    def _edges(self, low, high) -> list:
        """partitions + 1 edges from `low` to `high` in the column's own type, fewer where values are too few
        (a column of one value is one part: [low, high])."""
        edges = list(dict.fromkeys(self._spaced(low, high, max(1, self.partitions))))
        return edges if len(edges) > 1 else [low, high]

    def _spaced(self, low, high, n: int) -> list:
        if isinstance(low, (bool, np.bool_)) or not isinstance(low, (int, float, dt.date, str)):
            raise ingest_error(f"--partition-column {self.column!r} must be numeric or a date, not "
                               f"{type(low).__name__}; choose another column")
        if isinstance(low, int):
            # Over [low, high + 1): whole numbers 0-999 in 4 parts of 250 each, not 250, 250, 249, 251.
            return np.linspace(low, high + 1, n + 1).round().astype(np.int64).tolist()
        if isinstance(low, float):
            return np.linspace(low, high, n + 1).tolist()
        text = isinstance(low, str)
        if text and len(low) not in SQLITE_DATE_FORMATS:
            raise ingest_error(f"--partition-column {self.column!r} holds text ({low!r}), not numbers or dates; "
                               "choose another column")
        stamps = pd.date_range(pd.Timestamp(low), pd.Timestamp(high), periods=n + 1)[1:-1]
        if text:
            return [low, *stamps.strftime(SQLITE_DATE_FORMATS[len(low)]), high]
        return [low, *(s.to_pydatetime() if type(low) is dt.datetime else s.date() for s in stamps), high]

    def _scalar(self, query):
        with sql_errors(mask_url(self.url), "query failed", "check the table and --partition-column"):
            with self.engine.connect() as conn:
                return conn.execute(query).one()

    @cached_property
    def _part_counts(self) -> tuple[int, ...]:  # counted once a process: each is a scan of the part
        return tuple(int(self._scalar(sa.select(sa.func.count()).select_from(self.sql_table).where(c))[0])
                     for c in self.parts)

    def part_rows(self) -> list[int]:
        return list(self._part_counts)

    def count_rows(self) -> int:
        return sum(self._part_counts)

    def read_part(self, index: int, limit: int | None = None) -> pd.DataFrame:
        """Part `index`'s rows ordered by every column: a database returns a part's rows in any order, and the row
        split and the ranks' shares select rows by their position in the part (rows equal in every column are
        interchangeable)."""
        query = sa.select(self.sql_table).where(self.parts[index]).order_by(*self.sql_table.columns)
        frame = self._read(query.limit(limit) if limit else query)
        # A column that is null throughout a part (the nulls' part) reads as object; it gets the dtype the table's
        # first rows give it, so parts agree (a float column must not turn into text when parts are joined).
        for name in frame.columns[frame.isna().all().to_numpy()]:
            frame[name] = frame[name].astype(self.dtypes[name])
        return frame

    def _read(self, query) -> pd.DataFrame:
        with sql_errors(mask_url(self.url), "query failed", "check the table and --partition-column"):
            with self.engine.connect() as conn:
                return pd.read_sql(query, conn)

    def frames(self):
        for index in range(len(self.parts)):
            yield self.read_part(index)

    def read(self) -> pd.DataFrame:
        return pd.concat(list(self.frames()), ignore_index=True)

    def spread(self, rows: int) -> pd.DataFrame:
        """About `rows` rows from the start of every part alike (schema inference)."""
        each = max(1, -(-rows // max(1, len(self.parts))))
        return pd.concat([self.read_part(i, each) for i in range(len(self.parts))], ignore_index=True)

