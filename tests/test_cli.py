import json

import pandas as pd
import pytest

from tabtwin.flows.cli import main, parse_conditions
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.ingest import read_table, write_table
from tabtwin.pipeline.sample_data import make_sample_table


@pytest.fixture
def table(tmp_path):
    return write_table(make_sample_table(300, seed=2), tmp_path / "table.csv")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_writes_metadata(table, tmp_path, capsys):
    code, out, _ = run(capsys, "schema", table, "--out", tmp_path / "meta.json")
    assert code == 0 and "customer_id" in out and "id" in out
    assert json.loads((tmp_path / "meta.json").read_text())["primary_key"] == "customer_id"


def test_encode_reports_the_round_trip(table, tmp_path, capsys):
    code, out, _ = run(capsys, "encode", table, "--out", tmp_path / "enc")
    assert code == 0 and "exact match share" in out
    assert (tmp_path / "enc" / "encoder.json").is_file()


@pytest.mark.parametrize("model", ["ctgan", "tvae"])
def test_fit_then_sample_with_conditions(table, tmp_path, capsys, model, device):
    code, out, _ = run(capsys, "fit", table, "--model", model, "--epochs", 1, "--batch-size", 50, "--quiet",
                       "--device", device, "--out", tmp_path / "model")
    assert code == 0, out
    out_file = tmp_path / "synthetic.parquet"
    code, out, err = run(capsys, "sample", tmp_path / "model", "--rows", 123, "--out", out_file, "--seed", 1,
                         "--condition", "colour=red", "--condition", "grade=2")
    assert code == 0, err
    synthetic = read_table(out_file)
    assert len(synthetic) == 123 and (synthetic["colour"] == "red").all() and (synthetic["grade"] == 2).all()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["schema", "missing.csv"], ["missing.csv", "not found"]),
        (["sample", "no-model-dir", "--rows", "5", "--out", "x.csv"], ["no-model-dir"]),
        (["sample", "no-model-dir", "--rows", "5", "--out", "x.txt"], ["x.txt", ".csv"]),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err


def test_bad_metadata_and_bad_condition_exit_2(table, tmp_path, capsys):
    meta = tmp_path / "meta.json"
    meta.write_text('{"columns": {"nope": {"sdtype": "numerical"}}}')
    code, _, err = run(capsys, "schema", table, "--metadata", meta)
    assert code == 2 and "'nope'" in err
    run(capsys, "fit", table, "--epochs", 1, "--batch-size", 50, "--quiet", "--device", "cpu", "--out", tmp_path / "m")
    code, _, err = run(capsys, "sample", tmp_path / "m", "--rows", 5, "--out", tmp_path / "s.csv",
                       "--condition", "colour=purple")
    assert code == 2 and "'purple'" in err and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("flag", ["--batch-size", "--epochs"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_non_positive_sizes_are_one_line_errors(table, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", str(table), flag, value, "--out", str(tmp_path / "m")])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert flag in err and value in err and not (tmp_path / "m").exists()


def test_the_console_script_rejects_a_zero_batch_size(table, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("tabtwin")
    result = subprocess.run([str(script), "fit", str(table), "--batch-size", "0", "--out", str(tmp_path / "m")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--batch-size" in result.stderr and "positive" in result.stderr


def test_run_on_dask_keeps_the_registry(table, tmp_path, capsys, monkeypatch):
    import tabtwin.flows.scale as scale

    seen = {}

    def fake_run_many(specs, places, dask_address=None, workers=2):
        seen.update(specs=specs, places=places, address=dask_address, workers=workers)
        return [{"data": s.data, "model": s.model, "folder": str(tmp_path), "passed": True} for s in specs]

    monkeypatch.setattr(scale, "run_many", fake_run_many)
    code, out, _ = run(capsys, "run", table, "--runner", "dask", "--registry", tmp_path / "reg", "--out",
                       tmp_path / "runs", "--cache", tmp_path / "cache", "--epochs", 2, "--dask-workers", 3)
    assert code == 0
    assert seen["places"].registry == str(tmp_path / "reg") and seen["places"].out == str(tmp_path / "runs")
    assert seen["workers"] == 3 and [s.epochs for s in seen["specs"]] == [2]


def test_parse_conditions():
    assert parse_conditions(["sex= Female", "income=>50K", "a=b=c"]) == {"sex": " Female", "income": ">50K", "a": "b=c"}
    with pytest.raises(TabtwinError):
        parse_conditions(["sex"])
