"""Ingestion layer: read a table from a file or a database into pandas, and write tables atomically.

``read_table`` accepts a local file (CSV, TSV, gzip CSV/TSV, Parquet, SQLite or DuckDB database), a partitioned
table (a folder or glob of Parquet or CSV files, `pipeline.datasets`, read whole here) or a SQLAlchemy URL (``sqlite:///x.db``, ``duckdb:///x.duckdb``, ``postgresql://user@host/db``; read by
`pipeline.databases`).
Every problem a user can fix is raised as a one-line :class:`IngestError` that names the file,
URL or table and says what to do; raw pandas/pyarrow/SQLAlchemy tracebacks never escape for them.

``write_table`` writes CSV or Parquet through a temporary file in the target directory followed
by ``os.replace``, so readers never see a half-written file.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tabtwin import __version__
from tabtwin.pipeline.databases import DUCKDB_SUFFIXES, SQLITE_SUFFIXES, mask_url, read_database_file, read_sql
from tabtwin.pipeline.dialects import detect_dialect
from tabtwin.pipeline.datasets import arrow_frame, is_partitioned, open_dataset
from tabtwin.pipeline.errors import IngestError
from tabtwin.pipeline.files import atomic_file
from tabtwin.pipeline.outputs import MARK
from tabtwin.pipeline.read_checks import first_line, ingest_error, reject_duplicates, reject_empty
from tabtwin.pipeline.sources import is_url

__all__ = [
    "SUPPORTED_SUFFIXES",
    "WRITE_SUFFIXES",
    "check_output_path",
    "is_url",
    "read_notes",
    "read_table",
    "write_table",
]

CSV_SUFFIXES = (".csv", ".csv.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
EXCEL_SUFFIXES = (".xlsx",)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
SUPPORTED_SUFFIXES = (CSV_SUFFIXES + TSV_SUFFIXES + PARQUET_SUFFIXES + EXCEL_SUFFIXES + JSONL_SUFFIXES + SQLITE_SUFFIXES
                      + DUCKDB_SUFFIXES)
WRITE_SUFFIXES = (".csv",) + PARQUET_SUFFIXES
# df.attrs key of what reading a table found worth saying: a detected dialect, dropped columns, a warning.
NOTES = "tabtwin_read_notes"
FEW_ROWS = 100  # a table of fewer rows is fitted, with a warning: its twin can only recombine them


def read_table(
    source: str | os.PathLike, *, table: str | None = None, query: str | None = None
) -> pd.DataFrame:
    """Read one table from a file path or a SQLAlchemy URL into a DataFrame.

    For database sources pass ``table=`` or ``query=`` (not both); with neither, a database
    holding exactly one table is read whole. Raises IngestError for anything a user can fix.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise ingest_error(
            f"Input must be a file path or database URL, got {type(source).__name__}; pass a path string"
        )
    if table is not None and query is not None:
        raise ingest_error(f"Pass either table= or query= for {_label(source)}, not both (CLI: --table or --query)")
    df = _read_any(source, table, query)
    if len(df) < FEW_ROWS:
        df.attrs[NOTES] = [*df.attrs.get(NOTES, []), f"warning: the table has only {len(df)} rows, so synthetic rows "
                           "can only recombine (or copy) them; fit on more rows for a useful twin"]
    return df


def read_notes(df: pd.DataFrame) -> list[str]:
    """What `read_table` found worth saying about the table it read (a detected dialect, columns dropped, a
    warning), one line each."""
    return list(df.attrs.get(NOTES, []))


def _read_any(source, table: str | None, query: str | None) -> pd.DataFrame:
    if is_url(source):
        hint = "check the URL, that the server is reachable and the credentials"
        return read_sql(str(source), label=mask_url(str(source)), table=table, query=query, hint=hint)
    if is_partitioned(source):
        if table is not None or query is not None:
            raise ingest_error(f"table= and query= only apply to database sources, not the folder {source}")
        df = open_dataset(source).read()
        reject_empty(df, str(source))
        return df

    path, suffix = _checked_input_path(source)
    if suffix in SQLITE_SUFFIXES + DUCKDB_SUFFIXES:
        return read_database_file(path, suffix, table=table, query=query)
    if suffix in EXCEL_SUFFIXES and query is None:
        return _read_excel(path, sheet=table)
    if table is not None or query is not None:
        raise ingest_error(
            f"table= and query= only apply to database sources (table= also to an .xlsx file's sheet), not {path}; "
            f"drop them for {suffix} files"
        )
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path)
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
        raise ingest_error(f"Input file not found: {path}; check the path")
    suffix = _matching_suffix(path)  # reject unsupported types before looking at the content
    if path.stat().st_size == 0:
        raise ingest_error(f"Input file is empty (0 bytes): {path}; export the table again")
    return path, suffix


def _matching_suffix(path: Path) -> str:
    name = path.name.lower()
    # Longest first so ".csv.gz" wins over a shorter match.
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    shown = "".join(path.suffixes[-2:]) or "(no suffix)"
    raise ingest_error(f"Unsupported file type {shown} for {path}; use one of: {_supported_list()}")


def _supported_list() -> str:
    return ", ".join(SUPPORTED_SUFFIXES)


def _read_delimited(path: Path, *, sep: str) -> pd.DataFrame:
    """A CSV or TSV file read as its detected `pipeline.dialects.Dialect` (what differs from the suffix's own
    dialect is noted in `df.attrs[NOTES]`); blank-headed columns with no value (a trailing delimiter) dropped."""
    kind = "TSV" if sep == "\t" else "CSV"
    with _file_errors(path, kind):
        dialect = detect_dialect(path, sep)
        options = dialect.read_options()
        # pandas defaults on purpose: values keep leading spaces and default NA markers apply.
        # index_col=False only stops pandas from silently turning the first column into the
        # index when data rows end with a trailing delimiter (the columns would shift).
        df = pd.read_csv(path, index_col=False, **options)
        header = _raw_header(path, options)
        _blank_integers_as_int64(df, path, options)
    return _tidy(df, header, path, [f"read as {', '.join(dialect.notes(sep))}"] if dialect.notes(sep) else [])


def _tidy(df: pd.DataFrame, header: list[str], path: Path, notes: list[str]) -> pd.DataFrame:
    """`df` read from a file whose header row is `header` (blank cells ""), checked: repeated names refused, columns
    with no name and no value (a trailing delimiter, an empty spreadsheet column) dropped, a header of numbers or
    dates warned about (the file likely has none); `notes` and those in `df.attrs[NOTES]`."""
    reject_duplicates([name for name in header if name != ""], path)
    empty = [name for name, written in zip(df.columns, header) if written == "" and df[name].isna().all()]
    if empty:
        df = df.drop(columns=empty)
        notes.append(f"dropped {len(empty)} column{'s' * (len(empty) != 1)} with no name and no value (a trailing "
                     "delimiter?)")
    reject_empty(df, str(path))
    named = [name for name in header if name.strip()]
    if named and all(_number_or_date(name) for name in named):
        notes.append(f"warning: every column name is a number or a date ({named[0]!r}, ...): if the file has no "
                     "header row, add one, else its first row is taken for the names")
    df.attrs[NOTES] = notes
    return df


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    """The sheet `sheet` of an .xlsx workbook (pandas.read_excel, openpyxl); with None, the only sheet."""
    with _file_errors(path, "Excel"), pd.ExcelFile(path, engine="openpyxl") as book:  # .xlsx is a zip archive
        names = book.sheet_names
        if sheet is None and len(names) > 1:
            raise ingest_error(f"{path} has {len(names)} sheets ({', '.join(names)}); pick one with --table SHEET")
        if sheet is not None and sheet not in names:
            raise ingest_error(f"{path} has no sheet {sheet!r}; its sheets are {', '.join(names)} (--table SHEET)")
        sheet = sheet or names[0]
        df = book.parse(sheet)
        first = book.parse(sheet, header=None, nrows=1, dtype=str, keep_default_na=False)
    header = [] if first.empty else ["" if pd.isna(v) else str(v) for v in first.iloc[0].tolist()]
    # Names as written (a header cell 2024 or a date is text, as a CSV's would be); blank ones as pandas names them.
    df.columns = [name or str(label) for name, label in zip(header, df.columns)] if len(header) == df.shape[1] else df.columns
    return _tidy(df, header, path, [f"sheet {sheet!r}"] if len(names) > 1 else [])


def _read_jsonl(path: Path) -> pd.DataFrame:
    """JSON Lines, one object a row (pandas.read_json(lines=True)); values kept as JSON types, dates as text (the
    schema finds them). A column of nested objects or arrays is refused: flatten it first."""
    with _file_errors(path, "JSON Lines"):
        df = pd.read_json(path, lines=True, dtype=False, convert_dates=False, precise_float=True)
    if df.shape[1] == 0 and len(df):
        raise ingest_error(f"{path} has no keys in its objects; each line needs an object such as {{\"a\": 1}}")
    for name in df.columns:
        if df[name].map(lambda v: isinstance(v, (dict, list))).any():
            raise ingest_error(f"{path}: column {name!r} holds nested objects or arrays; flatten them into columns "
                               "of their own (pandas.json_normalize)")
    return _tidy(df, [str(name) for name in df.columns], path, [])


def _number_or_date(name: str) -> bool:
    """Whether a header cell reads as a number or a date (then it is likely a data row's value)."""
    return bool(_NUMBER_OR_DATE.fullmatch(name.strip()))


_NUMBER_OR_DATE = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?"
                             r"|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?")


_INTEGER_TEXT = r"\s*[+-]?\d+\s*"


def _blank_integers_as_int64(df: pd.DataFrame, path: Path, options: dict) -> None:
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
    text = pd.read_csv(path, index_col=False, usecols=positions, dtype=str, **options)
    for k, position in enumerate(positions):
        written = text.iloc[:, k]
        if options["thousands"]:
            written = written.str.replace(options["thousands"], "", regex=False)
        if len(written.dropna()) and bool(written.dropna().str.fullmatch(_INTEGER_TEXT).all()):
            df.isetitem(position, written.str.strip().astype("string").astype("Int64").array)


def _raw_header(path: Path, options: dict) -> list[str]:
    """The header row as written, blank cells as ""; pandas renames a repeated "a" to "a.1", hiding duplicates,
    and names a blank cell "Unnamed: N" itself."""
    first_row = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **options)
    return first_row.iloc[0].tolist()


def _read_parquet(path: Path) -> pd.DataFrame:
    with _file_errors(path, "Parquet"):
        # The schema shows duplicate names that would otherwise make pyarrow fail obscurely.
        reject_duplicates(pq.read_schema(path).names, path)
        table = pq.read_table(path)
        df = arrow_frame(table, [c.name for c in table.schema if table.column(c.name).null_count])
    reject_empty(df, str(path))
    return df


@contextmanager
def _file_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn a reader's exception into a one-line IngestError naming the file."""
    try:
        yield
    except IngestError:
        raise
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
        raise ingest_error(f"{path} is not valid UTF-8 text ({reason}); save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise ingest_error(f"{path} has no header row; it needs a header line and at least one data row") from exc
    except pd.errors.ParserError as exc:
        reason = first_line(exc)
        raise ingest_error(f"{path} could not be parsed as {kind} ({reason}); {_valid_file_hint(kind)}") from exc
    except (pa.ArrowException, OSError, EOFError, ValueError, csv.Error, zipfile.BadZipFile, KeyError) as exc:
        raise ingest_error(f"{path} could not be read as {kind} ({first_line(exc)}); {_valid_file_hint(kind)}") from exc


def _valid_file_hint(kind: str) -> str:
    return f"check that it is a valid {kind} file"


def _label(source: str | os.PathLike) -> str:
    return mask_url(str(source)) if is_url(source) else str(Path(source))


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
    raise ingest_error(f"Cannot write {target}: unsupported file type {shown}; use one of: {', '.join(WRITE_SUFFIXES)}")


def _write_frame(df: pd.DataFrame, path: Path, suffix: str) -> None:
    if suffix in PARQUET_SUFFIXES:
        # tabtwin's mark in the schema metadata: a later run may replace this file (pipeline.outputs.is_ours).
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), MARK: __version__.encode()}), path)
    else:
        df.to_csv(path, index=False)
