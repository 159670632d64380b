"""Reading a table from a database: a SQLAlchemy URL (``sqlite:///x.db``, ``duckdb:///x.duckdb``,
``postgresql://user@host/db``) or a local SQLite or DuckDB file, by table name or query, for `pipeline.ingest`.

Every problem a user can fix is a one-line IngestError naming the database (its password masked) and the
table, with what to check; SQLAlchemy and driver tracebacks never escape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from tabtwin.pipeline.errors import IngestError
from tabtwin.pipeline.read_checks import first_line, ingest_error, reject_duplicates, reject_empty
from tabtwin.pipeline.sources import local_database_file

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
DUCKDB_SUFFIXES = (".duckdb",)

# pip package that provides a driver module, where the names differ or a build would be needed.
_DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}

# Without a timeout libpq waits for the OS TCP timeout (minutes) on an unreachable host.
_POSTGRES_CONNECT_TIMEOUT_S = 10



def read_database_file(path: Path, suffix: str, *, table: str | None, query: str | None) -> pd.DataFrame:
    """Read from a SQLite or DuckDB file (`suffix` tells which). Raises IngestError."""
    if suffix in SQLITE_SUFFIXES:
        url, hint = f"sqlite:///{path.resolve()}", "check that it is a SQLite database file"
    else:
        url, hint = f"duckdb:///{path.resolve()}", "check that it is a DuckDB database file not open in another process"
    return read_sql(url, label=str(path), table=table, query=query, hint=hint)


def read_sql(url: str, *, label: str, table: str | None, query: str | None, hint: str) -> pd.DataFrame:
    """Read ``table`` or the result of ``query`` from a SQLAlchemy URL; ``label`` names the source in messages,
    ``hint`` says what to check when it cannot be opened. Raises IngestError."""
    _reject_missing_database_file(url, label)
    engine = create_engine(url, label)
    try:
        with sql_errors(label, "could not open the database", hint):
            with engine.connect() as conn:
                if query is not None:
                    df = _run_query(conn, query, label)
                    what = f"Query result from {label}"
                else:
                    schema, name = resolve_table(conn, table, label)
                    df = _read_whole_table(conn, schema, name, label)
                    what = f"Table '{table or name}' in {label}"
    finally:
        # Releases pooled connections and, for SQLite/DuckDB, the file handle and lock.
        engine.dispose()
    reject_duplicates(list(df.columns), what)
    reject_empty(df, what)
    return df


def _reject_missing_database_file(url: str, label: str) -> None:
    """SQLite and DuckDB silently create a missing database file; report it instead."""
    path = local_database_file(url)
    if path is None:
        return
    if not path.exists():
        raise ingest_error(f"Database file not found: {path} (from {label}); check the path")
    if path.is_dir():
        raise ingest_error(f"Database path is a directory, not a file: {path} (from {label}); pass a database file")


def create_engine(url: str, label: str) -> sa.Engine:
    try:
        parsed = make_url(url)
        return sa.create_engine(parsed, **_engine_options(parsed))
    except NoSuchModuleError as exc:
        scheme = url.split("://", 1)[0]
        raise ingest_error(
            f"Unknown database type '{scheme}' in {label}; use a SQLAlchemy URL such as "
            "sqlite:///file.db, duckdb:///file.duckdb or postgresql://user@host/db"
        ) from exc
    except (ArgumentError, ValueError) as exc:  # make_url raises ValueError for e.g. a bad port
        example = "postgresql://user@host/db"
        reason = first_line(exc)
        raise ingest_error(f"Invalid database URL {label} ({reason}); check its format, e.g. {example}") from exc
    except ImportError as exc:
        module = exc.name or "driver"
        package = _DRIVER_PACKAGES.get(module, module)
        raise ingest_error(
            f"Database driver for {label} is not installed (no module '{module}'); "
            f"install it: pip install '{package}'"
        ) from exc


def _engine_options(url: sa.URL) -> dict:
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        return {"connect_args": {"connect_timeout": _POSTGRES_CONNECT_TIMEOUT_S}}
    return {}


@contextmanager
def sql_errors(label: str, action: str, hint: str) -> Iterator[None]:
    """Turn a database/driver exception into a one-line IngestError naming the source."""
    try:
        yield
    except IngestError:
        raise
    except SQLAlchemyError as exc:
        # The DBAPI's own message is the useful part; SQLAlchemy appends the SQL and a link.
        reason = first_line(getattr(exc, "orig", None) or exc)
        raise ingest_error(f"{label}: {action} ({reason}); {hint}") from exc


def _run_query(conn: sa.Connection, query: str, label: str) -> pd.DataFrame:
    with sql_errors(label, "query failed", "check the SQL"):
        return pd.read_sql(sa.text(query), conn)


def resolve_table(conn: sa.Connection, table: str | None, label: str) -> tuple[str | None, str]:
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
    raise ingest_error(f"Table '{table}' not found in {label}; available tables: {_names_or_none(available)}")


def _only_table(available: Sequence[str], label: str) -> str:
    if len(available) == 1:
        return available[0]
    if not available:
        raise ingest_error(f"{label} has no tables; load data into it first or pass query=")
    raise ingest_error(
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
    with sql_errors(label, f"could not read table '{name}'", "check the table name and your permissions"):
        return pd.read_sql(statement, conn)


def _names_or_none(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, safe for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable URL: still never echo what sits between "user:" and "@".
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
