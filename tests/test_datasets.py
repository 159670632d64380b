"""Partitioned tables in (pipeline.datasets) and partitioned synthetic datasets out (pipeline.parts)."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabtwin.pipeline.datasets import is_partitioned, open_dataset
from tabtwin.pipeline.errors import IngestError, TabtwinError
from tabtwin.pipeline.parts import MANIFEST, PLAN, PartPlan, finish, part_name, prepare, read_manifest, write_part


def write_parquet(frame: pd.DataFrame, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def test_hive_folder_reads_part_by_part_with_keys_as_columns(tmp_path):
    root = tmp_path / "lake"
    write_parquet(pd.DataFrame({"age": [30, 40], "city": ["a", "b"]}), root / "year=2024" / "p0.parquet")
    write_parquet(pd.DataFrame({"age": [50, None], "city": ["c", None]}), root / "year=2025" / "p1.parquet")
    (root / "_SUCCESS").write_text("")  # skipped, as pyarrow's discovery skips it
    table = open_dataset(root)
    assert is_partitioned(root) and table.format == "parquet" and len(table.parts) == 2
    assert table.count_rows() == 4 and table.part_rows() == [2, 2]
    first, second = table.frames()
    # A null in one part makes the column nullable in every part, so parts agree on dtypes.
    assert str(first["age"].dtype) == str(second["age"].dtype) == "Int64"
    assert first["year"].tolist() == [2024, 2024] and second["year"].tolist() == [2025, 2025]
    assert second["age"].isna().tolist() == [False, True]
    spread = table.spread(2)  # schema inference sees every part, not only the first one
    assert spread["year"].tolist() == [2024, 2025] and str(spread["age"].dtype) == "Int64"
    assert len(table.read()) == 4


def test_integer_column_without_nulls_stays_numpy_int(tmp_path):
    for i in range(3):
        write_parquet(pd.DataFrame({"n": np.arange(i * 5, i * 5 + 5)}), tmp_path / f"part-{i}.parquet")
    table = open_dataset(str(tmp_path / "part-*.parquet"))
    assert [str(f["n"].dtype) for f in table.frames()] == ["int64"] * 3
    assert pd.concat(table.frames())["n"].tolist() == list(range(15))


def test_csv_glob(tmp_path):
    for i in range(2):
        pd.DataFrame({"x": [i, i + 1], "y": ["u", "v"]}).to_csv(tmp_path / f"day-{i}.csv", index=False)
    table = open_dataset(str(tmp_path / "day-*.csv"))
    assert table.format == "csv" and table.count_rows() == 4
    assert pd.concat(table.frames())["y"].tolist() == ["u", "v", "u", "v"]


@pytest.mark.parametrize("files, message", [
    ({}, "no Parquet or CSV files"),
    ({"a.parquet": "parquet", "b.csv": "csv"}, "both Parquet and CSV"),
    ({"a.parquet": "parquet", "notes.txt": "text"}, "neither Parquet nor CSV"),
    ({"a.parquet": "broken"}, "check the files"),
])
def test_bad_folders_are_refused_in_one_line(tmp_path, files, message):
    for name, kind in files.items():
        path = tmp_path / name
        if kind == "parquet":
            write_parquet(pd.DataFrame({"x": [1]}), path)
        elif kind == "csv":
            pd.DataFrame({"x": [1]}).to_csv(path, index=False)
        else:
            path.write_text("not a table")
    with pytest.raises(IngestError, match=message) as err:
        open_dataset(tmp_path)
    assert "\n" not in str(err.value)


def frame_of(plan: PartPlan, index: int) -> pd.DataFrame:
    rng = np.random.default_rng(plan.seed_of(index))
    start = plan.offset_of(index)
    return pd.DataFrame({"id": np.arange(start, start + plan.rows_of(index)), "x": rng.random(plan.rows_of(index))})


def test_parts_manifest_written_last_and_resume_after_a_crash(tmp_path):
    out = tmp_path / "synthetic"
    plan = PartPlan(rows=25, part_rows=10, seed=7, model="abc")
    todo = prepare(out, plan)
    assert todo == [0, 1, 2] and json.loads((out / PLAN).read_text())["rows"] == 25
    write_part(out, plan, 2, frame_of(plan, 2))  # parts may come in any order
    assert read_manifest(out) is None  # not finished: no reader takes it for a dataset
    (out / ".part-00000.parquet.x1y2.tmp").write_bytes(b"half")  # a crash mid-write leaves its temporary file
    with pytest.raises(TabtwinError, match="part-00000.parquet is missing"):
        finish(out, plan)
    assert prepare(out, plan) == [0, 1]  # the rerun keeps the whole part and clears the leftover
    assert not list(out.glob(".*.tmp"))
    for index in (0, 1):
        write_part(out, plan, index, frame_of(plan, index))
    manifest = finish(out, plan)
    assert read_manifest(out) == manifest and [p["rows"] for p in manifest["parts_written"]] == [10, 10, 5]
    table = pd.read_parquet(out / part_name(0))
    assert len(pd.concat(open_dataset(out).frames())) == 25 and table["id"].tolist() == list(range(10))
    assert prepare(out, plan) == []  # a finished dataset with the same plan: nothing left to do


def test_parts_depend_on_seed_and_index_only():
    a, b = PartPlan(rows=100, part_rows=10, seed=3, model="m"), PartPlan(rows=1000, part_rows=10, seed=3, model="m")
    assert [a.seed_of(i) for i in range(10)] == [b.seed_of(i) for i in range(10)]
    assert len({a.seed_of(i) for i in range(10)}) == 10 and a.seed_of(0) != PartPlan(10, 10, 4, "m").seed_of(0)


def test_another_plan_replaces_a_dataset_but_never_a_foreign_folder(tmp_path):
    out = tmp_path / "synthetic"
    plan = PartPlan(rows=10, part_rows=5, seed=0, model="m")
    prepare(out, plan)
    for index in range(plan.parts):
        write_part(out, plan, index, frame_of(plan, index))
    finish(out, plan)
    other = PartPlan(rows=4, part_rows=5, seed=1, model="m")
    assert prepare(out, other) == [0]
    assert not (out / MANIFEST).exists() and not (out / part_name(1)).exists()
    (out / "customers.csv").write_text("a,b\n")
    with pytest.raises(TabtwinError, match="customers.csv"):
        prepare(out, plan)
    assert (out / "customers.csv").exists()


def test_a_part_of_the_wrong_size_is_refused(tmp_path):
    plan = PartPlan(rows=10, part_rows=5, seed=0, model="m")
    prepare(tmp_path / "d", plan)
    with pytest.raises(TabtwinError, match="has 4 rows"):
        write_part(tmp_path / "d", plan, 0, frame_of(plan, 0).head(4))
