"""Tests for pipeline.ingest: reading files and databases, error messages, atomic writes."""

from __future__ import annotations

import gzip
import importlib.util
import os
import socket
import sqlite3
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tabtwin.pipeline.errors import IngestError, TabtwinError
from tabtwin.pipeline.ingest import (SUPPORTED_SUFFIXES, WRITE_SUFFIXES, is_url, read_notes, read_table,
                                     write_table)

ADULT_CSV = Path(__file__).resolve().parents[1].parent / "shared/data/adult.csv"


# --------------------------------------------------------------------------- helpers


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [39, 50, 38],
            "workclass": ["State-gov", "Self-emp", "Private"],
            "score": [0.5, np.nan, 2.25],
        }
    )


def assert_user_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    """The error is an IngestError on one line that contains every fragment."""
    message = str(excinfo.value)
    assert isinstance(excinfo.value, IngestError)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def make_sqlite(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    with sqlite3.connect(path) as conn:
        for name, df in tables.items():
            df.to_sql(name, conn, index=False)
    conn.close()
    return path


def make_duckdb(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    conn = duckdb.connect(str(path))
    try:
        for name, df in tables.items():
            conn.register("frame", df)
            conn.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')
            conn.unregister("frame")
    finally:
        conn.close()
    return path


def unused_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- is_url / constants


@pytest.mark.parametrize(
    "source",
    [
        "sqlite:///x.db",
        "sqlite://",
        "duckdb:///x.duckdb",
        "postgresql://user@host/db",
        "postgresql+psycopg://user:pw@host:5432/db",
    ],
)
def test_is_url_accepts_sqlalchemy_urls(source):
    assert is_url(source)


@pytest.mark.parametrize(
    "source",
    ["data.csv", "/abs/data.parquet", "C:\\data\\x.csv", "C:/data/x.csv", "dir/sqlite.db", Path("sqlite:/x")],
)
def test_is_url_rejects_paths(source):
    assert not is_url(source)


def test_supported_suffixes_cover_documented_types():
    for suffix in (".csv", ".tsv", ".csv.gz", ".parquet", ".pq", ".db", ".sqlite", ".sqlite3", ".duckdb"):
        assert suffix in SUPPORTED_SUFFIXES
    assert ".txt" not in SUPPORTED_SUFFIXES
    assert set(WRITE_SUFFIXES) == {".csv", ".parquet", ".pq"}


def test_ingest_error_is_a_tabtwin_error(tmp_path):
    with pytest.raises(TabtwinError):
        read_table(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- CSV / TSV


def test_csv_round_trip(tmp_path):
    df = small_frame()
    target = write_table(df, tmp_path / "t.csv")
    assert target == tmp_path / "t.csv"
    pd.testing.assert_frame_equal(read_table(target), df)


def test_csv_accepts_str_path(tmp_path):
    write_table(small_frame(), tmp_path / "t.csv")
    assert read_table(str(tmp_path / "t.csv")).shape == (3, 3)


def test_csv_keeps_leading_spaces_and_default_na(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text("age, workclass,note\n39, State-gov,NA\n50, Private,\n")
    df = read_table(path)
    # Neither values nor column names are stripped.
    assert list(df.columns) == ["age", " workclass", "note"]
    assert df[" workclass"].tolist() == [" State-gov", " Private"]
    assert df["note"].isna().all()


def test_csv_trailing_delimiter_does_not_shift_columns(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("a,b\n1,2,\n3,4,\n")
    df = read_table(path)
    assert list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == [1, 3]
    assert isinstance(df.index, pd.RangeIndex)


def test_tsv(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("name\tcity\nAda\tLondon, UK\nAlan\tWilmslow\n")
    df = read_table(path)
    assert list(df.columns) == ["name", "city"]
    assert df["city"].tolist() == ["London, UK", "Wilmslow"]


@pytest.mark.parametrize("name", ["t.csv.gz", "T.CSV.GZ"])
def test_gzip_csv(tmp_path, name):
    df = small_frame()
    path = tmp_path / name
    df.to_csv(path, index=False, compression="gzip")
    pd.testing.assert_frame_equal(read_table(path), df)


def test_gzip_tsv(tmp_path):
    path = tmp_path / "t.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("a\tb\n1\tx\n")
    assert read_table(path).to_dict("list") == {"a": [1], "b": ["x"]}


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_table(small_frame(), tmp_path / "home.csv")
    assert read_table("~/home.csv").shape == (3, 3)


# --------------------------------------------------------------------------- Parquet


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_preserves_dtypes(tmp_path, suffix):
    df = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-01-01 10:00", "2024-02-29 23:59", None]),
            "flag": [True, False, True],
            "count": pd.array([1, None, 3], dtype="Int64"),
            "ratio": [0.1, np.nan, 0.3],
            "label": pd.array(["a", None, "c"], dtype="string"),
            "kind": pd.Categorical(["x", "y", "x"]),
        }
    )
    path = write_table(df, tmp_path / f"t{suffix}")
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df)
    assert back["when"].dtype.kind == "M"
    assert back["flag"].dtype == bool
    assert str(back["count"].dtype) == "Int64"


# --------------------------------------------------------------------------- SQLite


@pytest.mark.parametrize("suffix", [".db", ".sqlite", ".sqlite3"])
def test_sqlite_file_single_table_is_picked(tmp_path, suffix):
    path = make_sqlite(tmp_path / f"one{suffix}", {"people": small_frame()})
    pd.testing.assert_frame_equal(read_table(path), small_frame())


def test_sqlite_url_with_table_and_query(tmp_path):
    path = make_sqlite(tmp_path / "many.db", {"people": small_frame(), "other": pd.DataFrame({"z": [1, 2]})})
    url = f"sqlite:///{path}"
    pd.testing.assert_frame_equal(read_table(url, table="people"), small_frame())
    assert read_table(url, table="other")["z"].tolist() == [1, 2]
    result = read_table(url, query="SELECT age FROM people WHERE age > 38 ORDER BY age")
    assert result["age"].tolist() == [39, 50]


def test_sqlite_file_path_with_query(tmp_path):
    path = make_sqlite(tmp_path / "q.db", {"people": small_frame()})
    assert read_table(path, query="SELECT COUNT(*) AS n FROM people")["n"].tolist() == [3]


def test_sqlite_reads_a_view(tmp_path):
    path = make_sqlite(tmp_path / "v.db", {"people": small_frame()})
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE VIEW adults AS SELECT * FROM people WHERE age >= 39")
    conn.close()
    assert len(read_table(path, table="adults")) == 2


def test_sqlite_table_name_needing_quotes(tmp_path):
    path = make_sqlite(tmp_path / "q.db", {"my table": small_frame(), "select": small_frame()})
    assert read_table(path, table="my table").shape == (3, 3)
    assert read_table(path, table="select").shape == (3, 3)


def open_handles_to(path: Path) -> int:
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc to list open files")
    targets = [os.path.realpath(fd) for fd in fds.iterdir()]
    return sum(target == os.path.realpath(path) for target in targets)


def test_sqlite_engine_is_disposed(tmp_path):
    path = make_sqlite(tmp_path / "r.db", {"people": small_frame()})
    read_table(path)
    assert open_handles_to(path) == 0
    with pytest.raises(IngestError):
        read_table(path, table="missing")
    assert open_handles_to(path) == 0


# --------------------------------------------------------------------------- DuckDB


def test_duckdb_file_single_table_is_picked(tmp_path):
    path = make_duckdb(tmp_path / "one.duckdb", {"people": small_frame()})
    pd.testing.assert_frame_equal(read_table(path), small_frame())


def test_duckdb_url_with_table_and_query(tmp_path):
    events = pd.DataFrame({"at": pd.to_datetime(["2024-01-01", "2024-06-30"]), "ok": [True, False]})
    path = make_duckdb(tmp_path / "many.duckdb", {"people": small_frame(), "events": events})
    url = f"duckdb:///{path}"
    pd.testing.assert_frame_equal(read_table(url, table="people"), small_frame())
    back = read_table(url, table="events")
    assert back["at"].dtype.kind == "M" and back["ok"].dtype == bool
    assert read_table(url, query="SELECT max(age) AS oldest FROM people")["oldest"].tolist() == [50]


def test_duckdb_file_can_be_reopened_after_read(tmp_path):
    path = make_duckdb(tmp_path / "lock.duckdb", {"people": small_frame()})
    read_table(path)
    conn = duckdb.connect(str(path))  # the engine was disposed, so no lock is left behind
    assert conn.execute("SELECT count(*) FROM people").fetchone() == (3,)
    conn.close()


# --------------------------------------------------------------------------- database errors


@pytest.mark.parametrize("maker,suffix", [(make_sqlite, ".db"), (make_duckdb, ".duckdb")])
def test_several_tables_without_table_lists_them(tmp_path, maker, suffix):
    path = maker(tmp_path / f"many{suffix}", {"people": small_frame(), "orders": pd.DataFrame({"id": [1]})})
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "orders, people", "table=", "--table")


@pytest.mark.parametrize("maker,suffix", [(make_sqlite, ".db"), (make_duckdb, ".duckdb")])
def test_unknown_table_lists_available(tmp_path, maker, suffix):
    path = maker(tmp_path / f"db{suffix}", {"people": small_frame()})
    with pytest.raises(IngestError) as excinfo:
        read_table(path, table="peopel")
    assert_user_error(excinfo, "'peopel'", str(path), "available tables: people")


def test_unknown_table_via_url_names_url(tmp_path):
    path = make_sqlite(tmp_path / "db.db", {"people": small_frame()})
    with pytest.raises(IngestError) as excinfo:
        read_table(f"sqlite:///{path}", table="nope")
    assert_user_error(excinfo, f"sqlite:///{path}", "people")


def test_table_and_query_together_rejected(tmp_path):
    path = make_sqlite(tmp_path / "db.db", {"people": small_frame()})
    with pytest.raises(IngestError) as excinfo:
        read_table(path, table="people", query="SELECT 1")
    assert_user_error(excinfo, str(path), "not both")


def test_database_without_tables(tmp_path):
    path = tmp_path / "empty.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (a)")
        conn.execute("DROP TABLE t")  # a valid, non-empty file with no tables
    conn.close()
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "has no tables")


@pytest.mark.parametrize("maker,suffix", [(make_sqlite, ".db"), (make_duckdb, ".duckdb")])
def test_table_with_zero_rows(tmp_path, maker, suffix):
    path = maker(tmp_path / f"z{suffix}", {"people": small_frame().iloc[:0]})
    with pytest.raises(IngestError) as excinfo:
        read_table(path, table="people")
    assert_user_error(excinfo, "'people'", str(path), "has a header but no rows")


def test_query_with_zero_rows(tmp_path):
    path = make_sqlite(tmp_path / "db.db", {"people": small_frame()})
    with pytest.raises(IngestError) as excinfo:
        read_table(path, query="SELECT * FROM people WHERE age > 100")
    assert_user_error(excinfo, str(path), "no rows")


def test_query_with_duplicate_columns(tmp_path):
    path = make_sqlite(tmp_path / "db.db", {"people": small_frame()})
    with pytest.raises(IngestError) as excinfo:
        read_table(path, query="SELECT age, age FROM people")
    assert_user_error(excinfo, str(path), "duplicate column names: 'age'")


@pytest.mark.parametrize("maker,suffix", [(make_sqlite, ".db"), (make_duckdb, ".duckdb")])
def test_bad_query(tmp_path, maker, suffix):
    path = maker(tmp_path / f"db{suffix}", {"people": small_frame()})
    with pytest.raises(IngestError) as excinfo:
        read_table(path, query="SELECT * FROM missing_table")
    assert_user_error(excinfo, str(path), "query failed", "missing_table")


@pytest.mark.parametrize("scheme,suffix", [("sqlite", ".db"), ("duckdb", ".duckdb")])
def test_missing_database_url_file_is_not_created(tmp_path, scheme, suffix):
    path = tmp_path / f"absent{suffix}"
    with pytest.raises(IngestError) as excinfo:
        read_table(f"{scheme}:///{path}")
    assert_user_error(excinfo, str(path), "not found", "check the path")
    assert not path.exists()


@pytest.mark.parametrize("suffix", [".db", ".duckdb"])
def test_corrupt_database_file(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(b"this is not a database file " * 200)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path))


def test_table_argument_rejected_for_csv(tmp_path):
    path = write_table(small_frame(), tmp_path / "t.csv")
    with pytest.raises(IngestError) as excinfo:
        read_table(path, table="t")
    assert_user_error(excinfo, str(path), "database")


def test_unknown_url_scheme(tmp_path):
    with pytest.raises(IngestError) as excinfo:
        read_table("nosuchdb://host/db")
    assert_user_error(excinfo, "nosuchdb://host/db", "Unknown database type")


def test_http_url_is_not_fetched():
    with pytest.raises(IngestError) as excinfo:
        read_table("https://example.com/data.csv")
    assert_user_error(excinfo, "https://example.com/data.csv")


def test_malformed_url_masks_password():
    with pytest.raises(IngestError) as excinfo:
        read_table("postgresql://user:s3cret@host:notaport/db")
    message = assert_user_error(excinfo, "user:***@")
    assert "s3cret" not in message


def test_postgres_unreachable_or_driver_missing_is_ingest_error():
    port = unused_local_port()
    url = f"postgresql://tabtwin:s3cret@127.0.0.1:{port}/nodb"
    started = time.monotonic()
    with pytest.raises(IngestError) as excinfo:
        read_table(url, table="people")
    assert time.monotonic() - started < 15
    message = assert_user_error(excinfo, f"postgresql://tabtwin:***@127.0.0.1:{port}/nodb")
    assert "s3cret" not in message
    if importlib.util.find_spec("psycopg") is None:  # SQLAlchemy 2.1's default PostgreSQL driver
        assert "not installed" in message and "psycopg" in message


def test_postgres_explicit_driver_url_is_ingest_error():
    url = f"postgresql+psycopg2://u:s3cret@127.0.0.1:{unused_local_port()}/db"
    with pytest.raises(IngestError) as excinfo:
        read_table(url)
    message = assert_user_error(excinfo, "postgresql+psycopg2://u:***@127.0.0.1")
    assert "s3cret" not in message


# --------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, "not found", str(path), "check the path")


def test_directory(tmp_path):
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with pytest.raises(IngestError) as excinfo:
        read_table(folder)
    assert_user_error(excinfo, "directory", str(folder))


@pytest.mark.parametrize("name", ["notes.txt", "data.xls", "noext", "data.json.gz"])
def test_unsupported_suffix_lists_supported(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "Unsupported", ".csv", ".parquet", ".duckdb")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("name,age\nAda,36\n")
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "Parquet")


def test_truncated_parquet(tmp_path):
    good = write_table(small_frame(), tmp_path / "good.parquet")
    path = tmp_path / "cut.parquet"
    path.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path))


def test_binary_file_named_csv(tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "UTF-8")


def test_latin1_csv_is_read_as_windows_1252_and_says_so(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("city,n\nMünchen,1\nZürich,2\n".encode("latin-1"))
    df = read_table(path)
    assert df["city"].tolist() == ["München", "Zürich"]
    assert any("encoding cp1252" in note for note in read_notes(df))


def test_not_gzip_but_named_csv_gz(tmp_path):
    path = tmp_path / "fake.csv.gz"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path))


def test_malformed_csv_rows(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "CSV")


@pytest.mark.parametrize("name", ["empty.csv", "empty.tsv", "empty.parquet", "empty.db", "empty.duckdb"])
def test_zero_byte_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "empty")


def test_blank_lines_only_csv(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n\n")
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "no header")


@pytest.mark.parametrize("name,content", [("h.csv", "a,b,c\n"), ("h.tsv", "a\tb\n"), ("h2.csv", "a,b")])
def test_header_only_delimited(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "has a header but no rows")


def test_header_only_parquet(tmp_path):
    path = tmp_path / "h.parquet"
    small_frame().iloc[:0].to_parquet(path)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "has a header but no rows")


def test_parquet_without_columns(tmp_path):
    path = tmp_path / "nocols.parquet"
    pd.DataFrame(index=range(3)).to_parquet(path)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "has no columns")


@pytest.mark.parametrize(
    "name,content,duplicate",
    [
        ("d.csv", "a,b,a\n1,2,3\n", "'a'"),
        ("d.tsv", "x\tx\n1\t2\n", "'x'"),
        ("q.csv", '"name",name,n\n1,2,3\n', "'name'"),
    ],
)
def test_duplicate_column_names_delimited(tmp_path, name, content, duplicate):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "duplicate column names", duplicate)


def test_columns_looking_mangled_are_not_duplicates(tmp_path):
    path = tmp_path / "dots.csv"
    path.write_text("a,a.1,,\n1,2,3,4\n")
    assert list(read_table(path).columns) == ["a", "a.1", "Unnamed: 2", "Unnamed: 3"]  # blank names, but values


def test_duplicate_column_names_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]), path)
    with pytest.raises(IngestError) as excinfo:
        read_table(path)
    assert_user_error(excinfo, str(path), "duplicate column names: 'a'")


def test_non_path_source():
    with pytest.raises(IngestError) as excinfo:
        read_table(42)
    assert_user_error(excinfo, "int")


# --------------------------------------------------------------------------- write_table


@pytest.mark.parametrize("name", ["out.csv", "out.parquet", "out.pq"])
def test_write_leaves_no_temp_files(tmp_path, name):
    target = write_table(small_frame(), tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    pd.testing.assert_frame_equal(read_table(target), small_frame())


def test_write_creates_parent_and_accepts_str(tmp_path):
    target = write_table(small_frame(), str(tmp_path / "a" / "b" / "out.csv"))
    assert target == tmp_path / "a" / "b" / "out.csv"
    assert target.is_file()


def test_write_csv_has_no_index_column(tmp_path):
    target = write_table(small_frame().set_index("age"), tmp_path / "out.csv")
    assert target.read_text().splitlines()[0] == "workclass,score"


def test_write_replaces_existing_target_and_keeps_its_mode(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    write_table(small_frame(), target)
    assert read_table(target).shape == (3, 3)
    assert target.stat().st_mode & 0o777 == 0o640


def test_write_new_file_gets_umask_mode_not_0600(tmp_path):
    umask = os.umask(0o022)
    try:
        target = write_table(small_frame(), tmp_path / "out.parquet")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["out.txt", "out.tsv", "out", "out.json"])
def test_write_unsupported_suffix_writes_nothing(tmp_path, name):
    parent = tmp_path / "never_created"
    with pytest.raises(IngestError) as excinfo:
        write_table(small_frame(), parent / name)
    assert_user_error(excinfo, str(parent / name), ".csv", ".parquet")
    assert not parent.exists()


def _fail_midway(self, path, *args, **kwargs):
    Path(path).write_text("age,workclass\n39,State-")  # a partial file, then the crash
    raise RuntimeError("disk full")


@pytest.mark.parametrize("name,writer", [("out.csv", (pd.DataFrame, "to_csv")), ("out.parquet", (pq, "write_table"))])
def test_write_failure_leaves_no_partial_target(tmp_path, monkeypatch, name, writer):
    monkeypatch.setattr(*writer, _fail_midway)  # pyarrow writes Parquet (with tabtwin's mark in its metadata)
    with pytest.raises(RuntimeError, match="disk full"):
        write_table(small_frame(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_keeps_previous_target(tmp_path, monkeypatch):
    target = write_table(small_frame(), tmp_path / "out.csv")
    before = target.read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_csv", _fail_midway)
    with pytest.raises(RuntimeError):
        write_table(small_frame().iloc[:1], target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_write_unconvertible_parquet_cleans_up(tmp_path):
    df = pd.DataFrame({"mixed": [1, "two", 3.0]})  # pyarrow cannot type this column
    with pytest.raises(Exception):
        write_table(df, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(not ADULT_CSV.is_file(), reason="shared/data/adult.csv not present")
def test_adult_csv():
    df = read_table(ADULT_CSV)
    assert df.shape == (32_561, 15)
    assert df.loc[0, "workclass"] == " State-gov"
    assert df["age"].dtype.kind == "i"
