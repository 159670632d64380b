"""Partitioned sampling (flows.sampling): a synthetic dataset drawn part by part, locally or on Dask workers."""

import json

import numpy as np
import pandas as pd
import pytest

from tabtwin.flows import cli
from tabtwin.flows.sampling import sample_dataset
from tabtwin.generators.autoregressive import AutoregressiveGenerator
from tabtwin.pipeline import parts as parts_module
from tabtwin.pipeline.datasets import open_dataset
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.parts import MANIFEST, PLAN, read_manifest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 400
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame({
        "customer_id": np.arange(n),
        "group": group,
        "amount": np.where(group == "a", rng.normal(10, 2, n), rng.normal(50, 5, n)).round(2),
        "active": rng.random(n) < 0.4,
    })
    path = tmp_path_factory.mktemp("model") / "model"
    AutoregressiveGenerator(epochs=2, hidden=32, device="cpu").fit(frame).save(path)
    return path


def dataset(folder) -> pd.DataFrame:
    return open_dataset(folder).read()


def test_parts_make_one_dataset_with_a_manifest_and_ids_that_never_repeat(model_dir, tmp_path):
    out = tmp_path / "synthetic"
    lines = []
    manifest = sample_dataset(model_dir, 250, out, part_rows=100, seed=7, log=lines.append)
    assert [p["rows"] for p in manifest["parts_written"]] == [100, 100, 50]
    assert manifest["rows"] == 250 and manifest["seed"] == 7 and read_manifest(out) == manifest
    assert len(lines) == 3 and lines[-1].startswith("part ")
    table = dataset(out)
    assert len(table) == 250 and list(table.columns) == ["customer_id", "group", "amount", "active"]
    assert table["customer_id"].is_unique and sorted(table["customer_id"]) == list(range(400, 650))  # past the real 0..399
    # Each part is its own seed stream, not a copy of the first part's.
    first, second = (pd.read_parquet(out / p["file"]) for p in manifest["parts_written"][:2])
    assert not first.drop(columns="customer_id").equals(second.drop(columns="customer_id"))


def test_the_same_seed_gives_the_same_parts_on_one_process_and_on_two_dask_workers(model_dir, tmp_path):
    local = sample_dataset(model_dir, 300, tmp_path / "local", part_rows=100, seed=3, log=lambda _: None)
    on_dask = sample_dataset(model_dir, 300, tmp_path / "dask", part_rows=100, seed=3, runner="dask", workers=2,
                             log=lambda _: None)
    assert [p["sha256"] for p in local["parts_written"]] == [p["sha256"] for p in on_dask["parts_written"]]
    other = sample_dataset(model_dir, 300, tmp_path / "other", part_rows=100, seed=4, log=lambda _: None)
    assert other["parts_written"][0]["sha256"] != local["parts_written"][0]["sha256"]


def test_a_sample_cut_short_resumes_from_its_whole_parts(model_dir, tmp_path, monkeypatch):
    whole = sample_dataset(model_dir, 300, tmp_path / "whole", part_rows=100, seed=5, log=lambda _: None)
    out = tmp_path / "cut"
    real_write = parts_module.write_part
    written = []

    def dies_on_the_third_part(out_dir, plan, index, frame):
        if index == 2:
            (out / ".part-00002.parquet.123.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
            raise KeyboardInterrupt
        written.append(index)
        return real_write(out_dir, plan, index, frame)

    monkeypatch.setattr("tabtwin.flows.sampling.write_part", dies_on_the_third_part)
    with pytest.raises(KeyboardInterrupt):
        sample_dataset(model_dir, 300, out, part_rows=100, seed=5, log=lambda _: None)
    assert written == [0, 1] and not (out / MANIFEST).exists() and (out / PLAN).exists()
    monkeypatch.setattr("tabtwin.flows.sampling.write_part", real_write)
    lines = []
    resumed = sample_dataset(model_dir, 300, out, part_rows=100, seed=None, log=lines.append)  # the plan's seed
    assert lines[0] == "resuming: 2 of 3 parts are already written" and len(lines) == 2
    assert resumed["seed"] == 5 and resumed["parts_written"] == whole["parts_written"]
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, PLAN, "part-00000.parquet", "part-00001.parquet",
                                                     "part-00002.parquet"]


def test_conditions_hold_in_every_part(model_dir, tmp_path):
    sample_dataset(model_dir, 200, tmp_path / "b", part_rows=70, seed=1, conditions={"group": "b"},
                   log=lambda _: None)
    assert set(dataset(tmp_path / "b")["group"]) == {"b"}
    with pytest.raises(TabtwinError, match="group"):
        sample_dataset(model_dir, 200, tmp_path / "z", part_rows=70, seed=1, conditions={"group": "z"})
    assert not (tmp_path / "z").exists()  # refused before the folder is made


def test_sample_command_writes_a_dataset_folder_and_refuses_a_folder_it_did_not_write(model_dir, tmp_path,
                                                                                      capsys):
    out = tmp_path / "syn"
    code = cli.main(["sample", str(model_dir), "--rows", "120", "--out", f"{out}/", "--part-rows", "50",
                     "--seed", "2", "--condition", "active=True"])
    printed = capsys.readouterr().out
    assert code == 0 and "120 rows sampled" in printed and "3 parts, seed 2" in printed
    assert json.loads((out / MANIFEST).read_text())["rows"] == 120 and dataset(out)["active"].all()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert cli.main(["sample", str(model_dir), "--rows", "10", "--out", str(mine), "--seed", "2"]) == 2
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(mine) in error
    file_out = tmp_path / "one.parquet"
    assert cli.main(["sample", str(model_dir), "--rows", "10", "--out", str(file_out), "--runner", "dask"]) == 2
    assert "give --out a folder" in capsys.readouterr().err and not file_out.exists()
