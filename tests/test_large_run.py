"""One partitioned table end to end (flows.large): the seeded row split, the synthesize flow that fits from codes,
samples to a dataset and evaluates on samples, on a LocalCluster of 2 workers too, and `run`'s refusals."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabtwin.evaluation.gate import GateConfig
from tabtwin.flows import cli
from tabtwin.flows.large import run_partitioned
from tabtwin.flows.spec import Places, RunSpec
from tabtwin.pipeline.datasets import open_dataset
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.parts import MANIFEST
from tabtwin.pipeline.sample_data import make_sample_table
from tabtwin.pipeline.splits import RowSplit, split_parts

LENIENT = {field.name: 0 if field.name.startswith("min_") else 1 for field in dataclasses.fields(GateConfig)}
SIZES = [120, 200, 80]


@pytest.fixture
def workspace(tmp_path):
    df = make_sample_table(sum(SIZES), seed=5)
    folder = tmp_path / "lake"
    folder.mkdir()
    for i, (start, stop) in enumerate(zip(np.r_[0, np.cumsum(SIZES)[:-1]], np.cumsum(SIZES))):
        pq.write_table(pa.Table.from_pandas(df.iloc[start:stop], preserve_index=False), folder / f"p{i}.parquet")
    gates = {}
    for name, gate in (("lenient", LENIENT), ("strict", {**LENIENT, "min_quality": 1.01})):
        gates[name] = tmp_path / f"{name}.json"
        gates[name].write_text(json.dumps(gate))
    return {"root": tmp_path, "df": df, "data": str(folder), **{k: str(v) for k, v in gates.items()}}


def spec_of(workspace, gate: str, **extra) -> tuple[RunSpec, Places]:
    root = workspace["root"]
    spec = RunSpec(data=workspace["data"], epochs=1, batch_size=50, device="cpu", gate=workspace[gate],
                   target="colour", **extra)
    return spec, Places(out=str(root / "runs"), cache=str(root / "cache"), registry=None)


def test_the_row_split_is_seeded_disjoint_covering_and_read_part_by_part(workspace):
    df, table = workspace["df"], open_dataset(workspace["data"])
    train, holdout = split_parts(table, 0.25, seed=3)
    assert train.count_rows() + holdout.count_rows() == len(df) and 60 < holdout.count_rows() < 140
    for index, size in enumerate(SIZES):
        taken, kept = holdout.mask(index), train.mask(index)
        assert len(taken) == size and not (taken & kept).any() and (taken | kept).all()
        assert len(holdout.read_part(index)) == holdout.part_rows()[index] == taken.sum()
    again = RowSplit(open_dataset(workspace["data"]), 0.25, 3, holdout=True)
    assert all(np.array_equal(again.mask(i), holdout.mask(i)) for i in range(len(SIZES)))
    assert not np.array_equal(RowSplit(table, 0.25, 4, True).mask(1), holdout.mask(1))
    with pytest.raises(TabtwinError, match="holdout fraction must be between 0 and 1"):
        RowSplit(table, 1.5, 0, True)
    # A part that lost rows after it was counted (a table written to during the run): one line, not rows of the
    # wrong side.
    class Shrinking:
        parts, part_rows = [0], staticmethod(lambda: [120])
        read_part = staticmethod(lambda index: df.iloc[:100])

    with pytest.raises(TabtwinError, match="part 1 of the table had 120 rows and now has 100: the table changed"):
        RowSplit(Shrinking(), 0.25, 3, holdout=True).read_part(0)


def test_a_partitioned_run_publishes_a_dataset_when_the_gate_passes_and_nothing_when_it_fails(workspace):
    summary, results = run_partitioned(*spec_of(workspace, "lenient"), log=lambda _: None)
    folder = Path(summary["folder"])
    assert summary["passed"] and summary["synthetic"] == str(folder / "synthetic")
    manifest = json.loads((folder / "synthetic" / MANIFEST).read_text())
    train_rows = results["meta"]["samples"]["train"]["rows"]
    assert manifest["rows"] == train_rows == open_dataset(folder / "synthetic").count_rows()
    assert train_rows + results["meta"]["samples"]["holdout"]["rows"] == len(workspace["df"])
    assert {"report.json", "report.html", "run.json"} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / "run.json").read_text())["gate_passed"] is True
    failed, _ = run_partitioned(*spec_of(workspace, "strict"), log=lambda _: None)
    assert not failed["passed"] and failed["synthetic"] is None
    assert not (Path(failed["folder"]) / "synthetic").exists() and (Path(failed["folder"]) / "report.html").is_file()
    # Only the two run folders: no withheld or half-written dataset is left beside them.
    assert sorted(p.name for p in (workspace["root"] / "runs").iterdir()) == sorted(
        Path(s["folder"]).name for s in (summary, failed))


def test_a_partitioned_run_on_two_dask_workers(workspace):
    from tabtwin.flows.cluster import local_cluster

    lines = []
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        spec, places = spec_of(workspace, "lenient", runner="dask", dask_address=cluster.scheduler_address, rows=500)
        summary, results = run_partitioned(spec, places, log=lines.append)
    assert summary["passed"] and open_dataset(summary["synthetic"]).count_rows() == 500
    assert "training on 2 workers, data-parallel" in lines and any(line.startswith("sampled 500 rows") for line in lines)
    assert results["meta"]["samples"]["synthetic"] == {"rows": 500, "sampled": 500}


def test_run_refuses_a_partitioned_table_beside_others_and_a_model_that_does_not_fit_codes(workspace, capsys):
    """Before Prefect starts. (CTGAN and TVAE read a folder whole, as before; a table in ranges they cannot fit.)"""
    root = workspace["root"]
    places = ["--out", str(root / "runs"), "--cache", str(root / "cache")]
    for argv, message in (([workspace["data"], workspace["data"]], "runs alone"),
                          ([workspace["data"], "--model", "ctgan", "--partition-column", "id"], "trains on one-hot rows")):
        assert cli.main(["run", *argv, *places]) == 2
        assert message in capsys.readouterr().err
    assert not (root / "runs").exists()
