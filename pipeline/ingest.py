"""Ingestion layer: read a table from a file or a database into pandas, and write tables atomically.

``read_table`` accepts a local file (CSV, TSV, gzip CSV/TSV, Parquet, SQLite or DuckDB database)
or a SQLAlchemy URL (``sqlite:///x.db``, ``duckdb:///x.duckdb``, ``postgresql://user@host/db``).
Every problem a user can fix is raised as a one-line :class:`IngestError` that names the file,
URL or table and says what to do; raw pandas/pyarrow/SQLAlchemy tracebacks never escape for them.

``write_table`` writes CSV or Parquet through a temporary file in the target directory followed
by ``os.replace``, so readers never see a half-written file.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from tabtwin.pipeline.errors import IngestError
from tabtwin import __version__
from tabtwin.pipeline.files import atomic_file
from tabtwin.pipeline.outputs import MARK
from tabtwin.pipeline.sources import is_url, local_database_file

__all__ = [
    "SUPPORTED_SUFFIXES",
    "WRITE_SUFFIXES",
    "check_output_path",
    "is_url",
    "read_table",
    "write_table",
]

CSV_SUFFIXES = (".csv", ".csv.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
DUCKDB_SUFFIXES = (".duckdb",)
SUPPORTED_SUFFIXES = CSV_SUFFIXES + TSV_SUFFIXES + PARQUET_SUFFIXES + SQLITE_SUFFIXES + DUCKDB_SUFFIXES
WRITE_SUFFIXES = (".csv",) + PARQUET_SUFFIXES

# pip package that provides a driver module, where the names differ or a build would be needed.
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}

# Without a timeout libpq waits for the OS TCP timeout (minutes) on an unreachable host.
_POSTGRES_CONNECT_TIMEOUT_S = 10


def read_table(
    source: str | os.PathLike, *, table: str | None = None, query: str | None = None
) -> pd.DataFrame:
    """Read one table from a file path or a SQLAlchemy URL into a DataFrame.

    For database sources pass ``table=`` or ``query=`` (not both); with neither, a database
    holding exactly one table is read whole. Raises IngestError for anything a user can fix.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise _error(f"Input must be a file path or database URL, got {type(source).__name__}; pass a path string")
    if table is not None and query is not None:
        raise _error(f"Pass either table= or query= for {_label(source)}, not both (CLI: --table or --query)")
    if is_url(source):
        hint = "check the URL, that the server is reachable and the credentials"
        return _read_sql(str(source), label=_mask_url(str(source)), table=table, query=query, hint=hint)

    path, suffix = _checked_input_path(source)
    if suffix in SQLITE_SUFFIXES + DUCKDB_SUFFIXES:
        return _read_database_file(path, suffix, table=table, query=query)
    if table is not None or query is not None:
        raise _error(f"table= and query= only apply to database sources, not {path}; drop them for {suffix} files")
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    return _read_delimited(path, sep="\t" if suffix in TSV_SUFFIXES else ",")


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` to CSV or Parquet atomically and return the target path.

    The data goes to a temporary file next to the target, is synced to disk and moved into place with
    ``os.replace`` (``pipeline.files.atomic_file``); on any failure the temporary file is removed and the
    error re-raised, leaving an existing target untouched.
    """
    target = Path(path).expanduser()
    suffix = _write_suffix(target)
    with atomic_file(target, suffix=suffix) as tmp_path:
        _write_frame(df, tmp_path, suffix)
    return target


# --------------------------------------------------------------------------- files


def _checked_input_path(source: str | os.PathLike) -> tuple[Path, str]:
    """(path, matched suffix) after checking it names an existing, non-empty, supported file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise _error(f"Input file not found: {path}; check the path")
    if path.is_dir():
        raise _error(f"Input path is a directory, not a file: {path}; pass a table file ({_supported_list()})")
    suffix = _matching_suffix(path)  # reject unsupported types before looking at the content
    if path.stat().st_size == 0:
        raise _error(f"Input file is empty (0 bytes): {path}; export the table again")
    return path, suffix


def _matching_suffix(path: Path) -> str:
    name = path.name.lower()
    # Longest first so ".csv.gz" wins over a shorter match.
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    shown = "".join(path.suffixes[-2:]) or "(no suffix)"
    raise _error(f"Unsupported file type {shown} for {path}; use one of: {_supported_list()}")


def _supported_list() -> str:
    return ", ".join(SUPPORTED_SUFFIXES)


def _read_delimited(path: Path, *, sep: str) -> pd.DataFrame:
    kind = "TSV" if sep == "\t" else "CSV"
    with _file_errors(path, kind):
        # pandas defaults on purpose: values keep leading spaces and default NA markers apply.
        # index_col=False only stops pandas from silently turning the first column into the
        # index when data rows end with a trailing delimiter (the columns would shift).
        df = pd.read_csv(path, sep=sep, index_col=False)
        header = _raw_header(path, sep=sep)
        _blank_integers_as_int64(df, path, sep=sep)
    _reject_duplicates(header, path)
    _reject_empty(df, str(path))
    return df


_INTEGER_TEXT = r"\s*[+-]?\d+\s*"


def _blank_integers_as_int64(df: pd.DataFrame, path: Path, *, sep: str) -> None:
    """Whole numbers with blanks become pandas Int64 in place, so they are written back as integers (153, not
    153.0) and their blanks stay blank. pandas reads such a column as float64; only columns whose every written
    value is an integer (no "153.0") change, read again as text so that integers past 2^53 stay exact."""
    candidates = [
        name for name in df.columns
        if df[name].dtype == "float64" and df[name].isna().any()
        and bool(np.all(np.mod(df[name].dropna().to_numpy(), 1) == 0))
    ]
    if not candidates:
        return
    positions = sorted(df.columns.get_loc(name) for name in candidates)  # by position: blank headers too
    text = pd.read_csv(path, sep=sep, index_col=False, usecols=positions, dtype=str)
    for k, position in enumerate(positions):
        written = text.iloc[:, k]
        if len(written.dropna()) and bool(written.dropna().str.fullmatch(_INTEGER_TEXT).all()):
            df.isetitem(position, written.str.strip().astype("string").astype("Int64").array)


def _raw_header(path: Path, *, sep: str) -> list[str]:
    """The header row as written; pandas renames a repeated "a" to "a.1", hiding duplicates."""
    first_row = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    # pandas names blank header cells "Unnamed: N" itself, so they never collide.
    return [name for name in first_row.iloc[0].tolist() if name != ""]


def _read_parquet(path: Path) -> pd.DataFrame:
    with _file_errors(path, "Parquet"):
        # The schema shows duplicate names that would otherwise make pyarrow fail obscurely.
        _reject_duplicates(pq.read_schema(path).names, path)
        table = pq.read_table(path)
        df = table.to_pandas()
        # pyarrow turns integers with nulls into float64; give them the nullable integer dtype of their width.
        for i, column in enumerate(table.schema):
            if pa.types.is_integer(column.type) and table.column(i).null_count:
                nullable = _NULLABLE_INTEGERS[str(column.type)]
                df[column.name] = table.column(i).to_pandas(types_mapper={column.type: nullable}.get)
    _reject_empty(df, str(path))
    return df


_NULLABLE_INTEGERS = {
    "int8": pd.Int8Dtype(), "int16": pd.Int16Dtype(), "int32": pd.Int32Dtype(), "int64": pd.Int64Dtype(),
    "uint8": pd.UInt8Dtype(), "uint16": pd.UInt16Dtype(), "uint32": pd.UInt32Dtype(), "uint64": pd.UInt64Dtype(),
}


@contextmanager
def _file_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn a reader's exception into a one-line IngestError naming the file."""
    try:
        yield
    except IngestError:
        raise
    except UnicodeDecodeError as exc:
        raise _error(f"{path} is not valid UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise _error(f"{path} has no header row; it needs a header line and at least one data row") from exc
    except pd.errors.ParserError as exc:
        raise _error(f"{path} could not be parsed as {kind} ({_first_line(exc)}); {_valid_file_hint(kind)}") from exc
    except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
        raise _error(f"{path} could not be read as {kind} ({_first_line(exc)}); {_valid_file_hint(kind)}") from exc


def _valid_file_hint(kind: str) -> str:
    return f"check that it is a valid {kind} file"


# --------------------------------------------------------------------------- databases


def _read_database_file(path: Path, suffix: str, *, table: str | None, query: str | None) -> pd.DataFrame:
    if suffix in SQLITE_SUFFIXES:
        url, hint = f"sqlite:///{path.resolve()}", "check that it is a SQLite database file"
    else:
        url, hint = f"duckdb:///{path.resolve()}", "check that it is a DuckDB database file not open in another process"
    return _read_sql(url, label=str(path), table=table, query=query, hint=hint)


def _read_sql(url: str, *, label: str, table: str | None, query: str | None, hint: str) -> pd.DataFrame:
    """Read ``table`` or the result of ``query``; ``label`` names the source in messages."""
    _reject_missing_database_file(url, label)
    engine = _create_engine(url, label)
    try:
        with _sql_errors(label, "could not open the database", hint):
            with engine.connect() as conn:
                if query is not None:
                    df = _run_query(conn, query, label)
                    what = f"Query result from {label}"
                else:
                    schema, name = _resolve_table(conn, table, label)
                    df = _read_whole_table(conn, schema, name, label)
                    what = f"Table '{table or name}' in {label}"
    finally:
        # Releases pooled connections and, for SQLite/DuckDB, the file handle and lock.
        engine.dispose()
    _reject_duplicates(list(df.columns), what)
    _reject_empty(df, what)
    return df


def _reject_missing_database_file(url: str, label: str) -> None:
    """SQLite and DuckDB silently create a missing database file; report it instead."""
    path = local_database_file(url)
    if path is None:
        return
    if not path.exists():
        raise _error(f"Database file not found: {path} (from {label}); check the path")
    if path.is_dir():
        raise _error(f"Database path is a directory, not a file: {path} (from {label}); pass a database file")


def _create_engine(url: str, label: str) -> sa.Engine:
    try:
        parsed = make_url(url)
        return sa.create_engine(parsed, **_engine_options(parsed))
    except NoSuchModuleError as exc:
        scheme = url.split("://", 1)[0]
        raise _error(
            f"Unknown database type '{scheme}' in {label}; use a SQLAlchemy URL such as "
            "sqlite:///file.db, duckdb:///file.duckdb or postgresql://user@host/db"
        ) from exc
    except (ArgumentError, ValueError) as exc:  # make_url raises ValueError for e.g. a bad port
        example = "postgresql://user@host/db"
        raise _error(f"Invalid database URL {label} ({_first_line(exc)}); check its format, e.g. {example}") from exc
    except ImportError as exc:
        module = exc.name or "driver"
        package = _DRIVER_PACKAGES.get(module, module)
        raise _error(
            f"Database driver for {label} is not installed (no module '{module}'); "
            f"install it: pip install '{package}'"
        ) from exc


def _engine_options(url: sa.URL) -> dict:
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        return {"connect_args": {"connect_timeout": _POSTGRES_CONNECT_TIMEOUT_S}}
    return {}


@contextmanager
def _sql_errors(label: str, action: str, hint: str) -> Iterator[None]:
    """Turn a database/driver exception into a one-line IngestError naming the source."""
    try:
        yield
    except IngestError:
        raise
    except SQLAlchemyError as exc:
        # The DBAPI's own message is the useful part; SQLAlchemy appends the SQL and a link.
        reason = _first_line(getattr(exc, "orig", None) or exc)
        raise _error(f"{label}: {action} ({reason}); {hint}") from exc


def _run_query(conn: sa.Connection, query: str, label: str) -> pd.DataFrame:
    with _sql_errors(label, "query failed", "check the SQL"):
        return pd.read_sql(sa.text(query), conn)


def _resolve_table(conn: sa.Connection, table: str | None, label: str) -> tuple[str | None, str]:
    """(schema, name) of the table to read, picking the only table when none is named."""
    available = _table_names(conn)
    if table is None:
        return None, _only_table(available, label)
    if table in available:
        return None, table
    # "schema.table" names a table outside the default schema (e.g. PostgreSQL).
    schema, _, name = table.rpartition(".")
    if schema and name in _table_names(conn, schema=schema, missing_ok=True):
        return schema, name
    raise _error(f"Table '{table}' not found in {label}; available tables: {_names_or_none(available)}")


def _only_table(available: Sequence[str], label: str) -> str:
    if len(available) == 1:
        return available[0]
    if not available:
        raise _error(f"{label} has no tables; load data into it first or pass query=")
    raise _error(
        f"{label} has several tables ({_names_or_none(available)}); "
        "pick one with table= (CLI: --table) or pass query="
    )


def _table_names(conn: sa.Connection, *, schema: str | None = None, missing_ok: bool = False) -> list[str]:
    inspector = sa.inspect(conn)
    try:
        return sorted(set(inspector.get_table_names(schema=schema)) | set(inspector.get_view_names(schema=schema)))
    except SQLAlchemyError:
        if not missing_ok:
            raise
        conn.rollback()  # some backends abort the transaction after a failed catalog query
        return []


def _read_whole_table(conn: sa.Connection, schema: str | None, name: str, label: str) -> pd.DataFrame:
    # A plain SELECT * instead of pd.read_sql_table: the latter reflects the table, and
    # duckdb_engine's reflection is broken on recent SQLAlchemy/DuckDB releases.
    statement = sa.select(sa.text("*")).select_from(sa.table(name, schema=schema))
    with _sql_errors(label, f"could not read table '{name}'", "check the table name and your permissions"):
        return pd.read_sql(statement, conn)


def _names_or_none(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _mask_url(url: str) -> str:
    """The URL with any password replaced by ***, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable URL: still never echo what sits between "user:" and "@".
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _label(source: str | os.PathLike) -> str:
    return _mask_url(str(source)) if is_url(source) else str(Path(source))


# --------------------------------------------------------------------------- shared checks


def _reject_duplicates(names: Sequence, where: str | Path) -> None:
    repeated = [str(name) for name, count in Counter(names).items() if count > 1]
    if repeated:
        listed = ", ".join(f"'{name}'" for name in repeated)
        raise _error(f"{where} has duplicate column names: {listed}; rename them so every column is unique")


def _reject_empty(df: pd.DataFrame, what: str) -> None:
    if df.shape[1] == 0:
        raise _error(f"{what} has no columns; it needs a header and at least one data row")
    if df.shape[0] == 0:
        raise _error(f"{what} has a header but no rows; it needs at least one data row")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _error(message: str) -> IngestError:
    # The CLI prints the message as a single line, so fold any newline a reason carried in.
    return IngestError(" ".join(message.splitlines()))


# --------------------------------------------------------------------------- writing


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early, before any work, when `path` has a suffix `write_table` cannot write."""
    target = Path(path).expanduser()
    _write_suffix(target)
    return target


def _write_suffix(target: Path) -> str:
    name = target.name.lower()
    for suffix in WRITE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    shown = "".join(target.suffixes[-2:]) or "(no suffix)"
    raise _error(f"Cannot write {target}: unsupported file type {shown}; use one of: {', '.join(WRITE_SUFFIXES)}")


def _write_frame(df: pd.DataFrame, path: Path, suffix: str) -> None:
    if suffix in PARQUET_SUFFIXES:
        # tabtwin's mark in the schema metadata: a later run may replace this file (pipeline.outputs.is_ours).
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), MARK: __version__.encode()}), path)
    else:
        df.to_csv(path, index=False)
