"""A database table read in parts by ranges of a column (pipeline.sql_parts)."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tabtwin.evaluation.scale import uniform_sample
from tabtwin.pipeline.errors import IngestError
from tabtwin.pipeline.sql_parts import SqlPartitionedTable


def frame(n=1000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n),
        "amount": np.where(rng.random(n) < 0.05, np.nan, rng.exponential(100, n)),
        "day": (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")),
        "city": rng.choice(["a", "b"], n),
    })


@pytest.fixture(params=["sqlite", "duckdb"])
def database(request, tmp_path):
    url = f"{request.param}:///{tmp_path / 'db'}.{request.param}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        frame().to_sql("sales", conn, index=False)
    engine.dispose()
    return url


@pytest.mark.parametrize("column", ["id", "amount", "day"])
def test_every_row_is_in_exactly_one_part(database, column):
    table = SqlPartitionedTable(database, "sales", column, partitions=4)
    sizes = table.part_rows()
    parts = [table.read_part(i) for i in range(len(table.parts))]
    assert sum(sizes) == table.count_rows() == 1000 and [len(p) for p in parts] == sizes
    assert sorted(pd.concat(parts)["id"]) == list(range(1000))
    assert len(table.parts) == (5 if column == "amount" else 4)  # amount's nulls are a part of their own
    if column == "id":
        assert sizes == [250, 250, 250, 250]
    spread = table.spread(40)  # from every part alike: ceil(40 / parts) rows each, where a part has that many
    assert len(spread) == sum(min(-(-40 // len(sizes)), size) for size in sizes)
    assert list(spread.columns) == ["id", "amount", "day", "city"] and spread["amount"].dtype == "float64"


def test_a_partitioned_database_table_is_sampled_and_pickled_like_a_folder(database):
    table = SqlPartitionedTable(database, None, "id", partitions=3)  # the only table
    again = pickle.loads(pickle.dumps(table))  # what a Dask worker gets: settings, its own engine
    assert again.part_rows() == table.part_rows()
    sample = uniform_sample(table, 100, seed=1)
    assert len(sample) == 100 and sample["id"].is_unique


def test_a_column_of_one_value_is_one_part(tmp_path):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        frame(50).assign(day="2024-05-01", amount=2.5).to_sql("t", conn, index=False)
    engine.dispose()
    for column in ("day", "amount"):
        assert SqlPartitionedTable(url, "t", column, partitions=4).part_rows() == [50]


def test_a_part_reads_the_same_rows_in_the_same_order_whatever_order_they_were_stored_in(tmp_path):
    # The row split and the ranks' shares pick rows by position in a part: the order must not be the database's.
    reads = []
    for name, rows in (("kept", frame(300)), ("shuffled", frame(300).sample(frac=1, random_state=1))):
        url = f"sqlite:///{tmp_path / name}.db"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            rows.to_sql("t", conn, index=False)
        engine.dispose()
        reads.append(SqlPartitionedTable(url, "t", "day", partitions=3).read_part(1))
    pd.testing.assert_frame_equal(reads[0], reads[1])


def test_bad_partition_columns_are_one_line(database):
    with pytest.raises(IngestError, match="'nope' is not a column of sales"):
        SqlPartitionedTable(database, "sales", "nope").parts
    with pytest.raises(IngestError, match="'city' .*not numbers or dates|'city' must be numeric"):
        SqlPartitionedTable(database, "sales", "city").parts


def test_open_parts_names_the_partitioned_source(database, tmp_path):
    from tabtwin.pipeline.datasets import PartitionedTable, open_parts

    by_url = open_parts(database, "sales", "id", partitions=2)
    by_file = open_parts(database.split(":///", 1)[1], "sales", "id", partitions=2)
    assert by_url.part_rows() == by_file.part_rows() == [500, 500]
    (tmp_path / "lake").mkdir()
    frame().to_parquet(tmp_path / "lake" / "p0.parquet")
    assert isinstance(open_parts(tmp_path / "lake"), PartitionedTable)
    assert open_parts(tmp_path / "lake" / "p0.parquet") is None
    with pytest.raises(IngestError, match="not a SQLite or DuckDB file"):
        open_parts(tmp_path / "lake" / "p0.parquet", partition_column="id")
