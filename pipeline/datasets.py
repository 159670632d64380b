"""Partitioned tables, read part by part: a folder or glob of Parquet files (hive-style `key=value` folders too)
or of CSV files, through pyarrow.dataset, so no process needs the whole table.

    table = open_dataset("lake/customers/")     # or "lake/customers/*.parquet", "exports/day-*.csv"
    table.count_rows(); len(table.parts)
    for frame in table.frames(): ...            # one pandas DataFrame per file, in a stable order

A part is one file. Its frame has the dataset's columns in the same dtypes whatever the part holds: integer
columns that hold a null anywhere in a Parquet dataset (its footer statistics say) are pandas' nullable
integers in every part, as `read_table` gives them for one file; hive partition keys are columns too (typed as
pyarrow infers them: `year=2024` is an integer).

Source: https://arrow.apache.org/docs/python/dataset.html (discovery, hive partitioning).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from tabtwin.pipeline.errors import IngestError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}
_GLOB = set("*?[")
# What pyarrow's discovery skips in a folder; a glob's matches are filtered the same way.
_IGNORED_PREFIXES = (".", "_")
# pyarrow turns integers with nulls into float64; they get pandas' nullable integer of their width instead.
NULLABLE_INTEGERS = {
    "int8": pd.Int8Dtype(), "int16": pd.Int16Dtype(), "int32": pd.Int32Dtype(), "int64": pd.Int64Dtype(),
    "uint8": pd.UInt8Dtype(), "uint16": pd.UInt16Dtype(), "uint32": pd.UInt32Dtype(), "uint64": pd.UInt64Dtype(),
}


def is_partitioned(source: str | os.PathLike) -> bool:
    """Whether `source` names a partitioned table: an existing folder, or a path with glob characters."""
    text = os.fspath(source)
    return bool(_GLOB & set(text)) or Path(text).expanduser().is_dir()


@dataclass(frozen=True)
class PartitionedTable:
    """A partitioned table on disk: `files` (sorted paths), `format` ("parquet" or "csv"), `root` (the folder the
    hive keys are read below). Build it with `open_dataset`."""

    files: tuple[str, ...]
    format: str
    root: str

    @cached_property
    def dataset(self) -> ds.Dataset:
        partitioning = ds.HivePartitioning.discover(infer_dictionary=False)
        return ds.dataset(list(self.files), format=self.format, partitioning=partitioning, partition_base_dir=self.root)

    @property
    def parts(self) -> list[ds.Fragment]:
        return list(self.dataset.get_fragments())

    @cached_property
    def nullable_integers(self) -> frozenset[str]:
        """Integer columns that hold a null in some part. Parquet footers count nulls per row group, so this
        reads no data; CSV files have no footer, so every integer column of a CSV dataset counts as nullable."""
        schema = self.dataset.schema
        integers = {f.name for f in schema if pa.types.is_integer(f.type)}
        if self.format == "csv":
            return frozenset(integers)
        nullable = set()
        for path in self.files:
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                group = meta.row_group(g)
                for c in range(group.num_columns):
                    column = group.column(c)
                    name = column.path_in_schema
                    stats = column.statistics
                    if name in integers and (stats is None or not stats.has_null_count or stats.null_count):
                        nullable.add(name)
        return frozenset(nullable)

    def count_rows(self) -> int:
        """Rows in all parts (Parquet: from the footers, no data read)."""
        return int(self.dataset.count_rows())

    def part_rows(self) -> list[int]:
        """Rows of each part, in `parts` order."""
        return [int(part.count_rows()) for part in self.parts]

    def read_part(self, index: int) -> pd.DataFrame:
        """Part `index` as a DataFrame with every column of the dataset (see the module docstring)."""
        part = self.parts[index]
        try:
            return self._frame(part.to_table(schema=self.dataset.schema))
        except (pa.ArrowInvalid, OSError) as err:  # e.g. a file rewritten since the dataset was opened
            raise IngestError(f"{self.files[index]}: {str(err).splitlines()[0]}; the file changed or is damaged, "
                              "rerun once the table is written") from None

    def frames(self):
        """Each part's DataFrame in turn (a generator: one part in memory at a time)."""
        for index in range(len(self.files)):
            yield self.read_part(index)

    def read(self) -> pd.DataFrame:
        """Every part as one DataFrame, in part order (the whole table in memory: `read_table` of a folder)."""
        return self._frame(self.dataset.to_table())

    def head(self, rows: int) -> pd.DataFrame:
        """The first `rows` rows in part order (previews)."""
        return self._frame(self.dataset.head(rows))

    def spread(self, rows: int) -> pd.DataFrame:
        """About `rows` rows taken from the start of every part alike (schema inference: one part may hold only
        one year, one region), in part order."""
        parts = self.parts
        each = max(1, -(-rows // len(parts)))
        schema = self.dataset.schema
        heads = []
        for part in parts:
            head = part.scanner(schema=schema).head(each)
            # A copy: the head is a slice that keeps the part's whole decoded row group alive (a 10M-row table's
            # schema inference held 2 GiB, a 100M-row one's 20 GiB).
            heads.append(head.take(np.arange(len(head))))
        return self._frame(pa.concat_tables(heads))

    def _frame(self, table: pa.Table) -> pd.DataFrame:
        return arrow_frame(table, self.nullable_integers)


def arrow_frame(table: pa.Table, nullable: Collection[str]) -> pd.DataFrame:
    """`table` as a DataFrame, the integer columns named in `nullable` as pandas' nullable integers of their
    width (pyarrow would make integers with nulls float64)."""
    frame = table.to_pandas()
    for field in table.schema:
        if field.name in nullable and pa.types.is_integer(field.type):  # per column: a type mapper converts all
            frame[field.name] = table.column(field.name).to_pandas(
                types_mapper={field.type: NULLABLE_INTEGERS[str(field.type)]}.get)
    return frame


def open_parts(source: str | os.PathLike, table: str | None = None, partition_column: str | None = None,
               partitions: int = 8):
    """The partitioned table `source` names, read part by part: a folder or glob (`open_dataset`), or with
    `partition_column` a database table in `partitions` ranges of that column (`pipeline.sql_parts`); None for a
    source that is one file or a whole database table (`ingest.read_table` reads those)."""
    if partition_column is not None:
        from tabtwin.pipeline.sources import is_url
        from tabtwin.pipeline.sql_parts import SqlPartitionedTable

        text = os.fspath(source)
        url = text if is_url(text) else _database_url(Path(text).expanduser())
        return SqlPartitionedTable(url, table, partition_column, partitions)
    return open_dataset(source) if is_partitioned(source) else None


def _database_url(path: Path) -> str:
    from tabtwin.pipeline.databases import DUCKDB_SUFFIXES, SQLITE_SUFFIXES

    suffix = path.suffix.lower()
    if suffix not in SQLITE_SUFFIXES + DUCKDB_SUFFIXES:
        raise IngestError(f"--partition-column reads a database: {path} is not a SQLite or DuckDB file or a "
                          "SQLAlchemy URL; a folder of files is read in parts without it")
    if not path.is_file():
        raise IngestError(f"Database file not found: {path}; check the path")
    return f"{'sqlite' if suffix in SQLITE_SUFFIXES else 'duckdb'}:///{path.resolve()}"


def open_dataset(source: str | os.PathLike) -> PartitionedTable:
    """The partitioned table at `source`: a folder (its Parquet or CSV files, in sub-folders too, skipping names
    that start with "." or "_") or a glob ("exports/*.csv"). All files must be of one format.

    Raises IngestError (one line naming `source`) when nothing matches, formats are mixed, or a file is not a
    table pyarrow can read.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        root = path
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and _visible(p, path))
    else:
        root = Path(_glob_root(text)).expanduser()
        files = sorted(p for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).is_file() and _visible(Path(p), root))
    formats = {_format_of(Path(p)) for p in files}
    formats.discard(None)
    if not files or not formats:
        where = "the directory holds" if path.is_dir() else "the pattern matches"
        raise IngestError(f"{text}: {where} no Parquet or CSV files; name a folder or glob of .parquet or .csv "
                          "files (a partitioned table), or one table file")
    if len(formats) > 1:
        raise IngestError(f"{text}: holds both Parquet and CSV files; a partitioned table is of one format")
    (fmt,) = formats
    tables = [p for p in files if _format_of(Path(p)) == fmt]
    others = [p for p in files if _format_of(Path(p)) is None]
    if others:
        raise IngestError(f"{text}: {others[0]} is neither Parquet nor CSV; move it out of the table's folder")
    # Absolute: Dask workers whose working folder differs read the same files (on storage every worker sees).
    table = PartitionedTable(tuple(map(os.path.abspath, tables)), fmt, os.path.abspath(root))
    try:
        table.dataset.schema  # noqa: B018  (discovery reads every footer/header: a broken file fails here)
    except (pa.ArrowInvalid, OSError) as err:
        raise IngestError(f"{text}: {str(err).splitlines()[0]}; check the files") from None
    return table


def _visible(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts if path.is_relative_to(root) else (path.name,)
    return not any(part.startswith(_IGNORED_PREFIXES) for part in parts)


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)


def _glob_root(pattern: str) -> str:
    """The folder above a glob's first wildcard: hive keys are read below it."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if _GLOB & set(p)), len(parts))]]
    return str(Path(*fixed)) if fixed else "."
