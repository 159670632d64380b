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


# ---------------------------------------------------------------------------------------------- the gate's table


CHECKS = [
    {"section": "fidelity", "check": "quality", "value": 0.93812, "op": ">=", "threshold": 0.8, "passed": True,
     "judged": True, "message": "fidelity.quality = 0.938, needs >= 0.8"},
    {"section": "privacy", "check": "inference_risk[income]", "value": 0.61, "op": "<=", "threshold": 0.5,
     "passed": False, "judged": True, "message": "privacy.inference_risk[income] = 0.610, needs <= 0.5"},
    {"section": "utility", "check": "auc_ratio", "value": None, "op": ">=", "threshold": 0.85, "passed": True,
     "judged": False, "reason": "too few rows", "message": "utility.auc_ratio not judged: too few rows"},
]


def test_the_gate_table_is_plain_text_off_a_terminal_and_coloured_on_one(capsys, monkeypatch):
    from tabtwin.flows.cli import print_gate

    monkeypatch.delenv("FORCE_COLOR", raising=False)
    print_gate(CHECKS)
    out = capsys.readouterr().out
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0].split() == ["section", "check", "value", "threshold", "result"]
    assert lines[2].split() == ["fidelity", "quality", "0.938", ">=", "0.8", "pass"]
    assert lines[3].split() == ["privacy", "inference_risk[income]", "0.61", "<=", "0.5", "FAIL"]  # no markup eaten
    assert lines[4].split() == ["utility", "auc_ratio", "-", ">=", "0.85", "not", "judged"]
    assert lines[5] == "  FAIL privacy.inference_risk[income] = 0.610, needs <= 0.5"
    assert lines[-1] == "  utility.auc_ratio not judged: too few rows"
    assert all(line.startswith("       ") for line in lines[6:-1])  # what to do, where evaluation.explain says
    assert all(line == line.rstrip() for line in lines)
    # A value that 3 digits would show as its own threshold gets the digits that tell them apart.
    print_gate([{**CHECKS[1], "check": "dcr_share", "value": 0.60004, "threshold": 0.6, "message": "m"}])
    assert capsys.readouterr().out.splitlines()[2].split()[:5] == ["privacy", "dcr_share", "0.60004", "<=", "0.6"]
    # A long check name is shown whole in a pipe (rich would assume 80 columns and cut it with an ellipsis).
    long = "inference_risk[" + "very_long_column_name_" * 4 + "]"
    print_gate([{**CHECKS[1], "check": long, "message": "m"}])
    assert long in capsys.readouterr().out
    monkeypatch.setenv("FORCE_COLOR", "1")  # what rich sees on a terminal
    print_gate(CHECKS)
    assert "\x1b[" in capsys.readouterr().out


@pytest.fixture
def split(tmp_path):
    frame = make_sample_table(300, seed=2)
    return {name: write_table(part, tmp_path / f"{name}.csv")
            for name, part in (("real", frame.iloc[:200]), ("holdout", frame.iloc[200:250]),
                               ("synthetic", make_sample_table(200, seed=3)))}


def test_evaluate_prints_the_table_the_failures_and_the_report_also_when_piped(split, tmp_path):
    """The console script with stdout a pipe, as `tabtwin evaluate ... | less` sees it: no escape codes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"min_quality": 1.01}))
    script = Path(sys.executable).with_name("tabtwin")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    result = subprocess.run([str(script), "evaluate", "--real", str(split["real"]), "--holdout", str(split["holdout"]),
                             "--synthetic", str(split["synthetic"]), "--gate", str(gate), "--device", "cpu",
                             "--out", str(tmp_path / "report")], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 3, result.stderr
    out = result.stdout
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == "gate FAILED" and lines[1].split() == ["section", "check", "value", "threshold", "result"]
    rows = {line.split()[1]: line.split()[-1] for line in lines[3:] if line.split()[:1] in (["fidelity"], ["privacy"],
                                                                                          ["contracts"])}
    assert rows["quality"] == "FAIL" and rows["detection_score"] in ("pass", "FAIL") and rows["exact_copy_excess"] == "pass"
    assert "  FAIL fidelity.quality = " in out and ", needs >= 1.01" in out
    assert lines[-1] == f"report: {tmp_path / 'report' / 'report.html'} and {tmp_path / 'report' / 'report.json'}"


def test_evaluate_with_a_model_dir_reports_its_dp_guarantee(split, tmp_path, capsys):
    code, _, err = run(capsys, "fit", split["real"], "--model", "tvae", "--epochs", 1, "--batch-size", 50,
                       "--dp-epsilon", 3, "--quiet", "--device", "cpu", "--out", tmp_path / "dp")
    assert code == 0, err
    lenient = tmp_path / "lenient.json"
    lenient.write_text(json.dumps({"min_quality": 0, "min_pair_trends": 0, "min_detection_score": 0}))
    code, out, err = run(capsys, "evaluate", "--real", split["real"], "--holdout", split["holdout"], "--synthetic",
                         split["synthetic"], "--model-dir", tmp_path / "dp", "--gate", lenient, "--device", "cpu",
                         "--out", tmp_path / "report")
    dp = json.loads((tmp_path / "report" / "report.json").read_text())["privacy"]["dp"]
    assert 0 < dp["epsilon"] <= 3 and dp["target_epsilon"] == 3
    assert f"differential privacy: epsilon {dp['epsilon']:.3g} spent (target 3)" in out
    code, _, err = run(capsys, "evaluate", "--real", split["real"], "--holdout", split["holdout"], "--synthetic",
                       split["synthetic"], "--model-dir", tmp_path / "nothing", "--out", tmp_path / "r2")
    assert code == 2 and "nothing" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, words", [
    (["--model", "ctgan", "--dp-epsilon", "3"], "supported by tvae only, not ctgan"),
    (["--model", "tvae", "autoregressive", "--dp-epsilon", "3"], "not autoregressive"),
    (["--model", "tvae", "--dp-delta", "1e-5"], "--dp-delta needs --dp-epsilon"),
    (["--model", "tvae", "--dp-epsilon", "3", "--dp-delta", "2"], "--dp-delta must lie between 0 and 1"),
])
def test_run_refuses_dp_it_cannot_give_before_any_work(table, tmp_path, capsys, argv, words):
    code, out, err = run(capsys, "run", table, *argv, "--out", tmp_path / "runs", "--cache", tmp_path / "cache",
                         "--registry", tmp_path / "reg")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err
    assert not any((tmp_path / d).exists() for d in ("runs", "cache", "reg"))


def test_request_refuses_an_unregistered_path_in_one_line_before_prefect_starts(tmp_path, capsys, monkeypatch):
    import tabtwin.flows.cli as cli_module

    started = []
    monkeypatch.setattr(cli_module, "prefect_defaults", lambda level: started.append(level))
    code, out, err = run(capsys, "request", tmp_path / "nope", "--rows", 10, "--out", tmp_path / "x.csv")
    assert code == 2 and err.count("\n") == 1 and "is not a registered model" in err and str(tmp_path / "nope") in err
    assert not started  # refused before the flow (and Prefect) was set up


def test_fit_draws_no_progress_bar_into_a_pipe(split, tmp_path, capsys):
    # capsys stands in for a pipe: stderr is no terminal, so no bar even without --quiet
    code, out, err = run(capsys, "fit", split["real"], "--model", "ctgan", "--epochs", 2, "--batch-size", 50,
                         "--device", "cpu", "--out", tmp_path / "m")
    assert code == 0 and "\r" not in err and "epoch" not in err, err
    assert "ctgan fitted on" in out


def test_commands_that_need_no_prefect_do_not_import_it(table):
    """`schema` starts without Prefect, torch, sdmetrics or GX, and importing the flows sets no environment."""
    import subprocess
    import sys

    schema = (f"import sys; from tabtwin.flows.cli import main; main(['schema', {str(table)!r}]); "
              f"print(sorted(m for m in ('prefect', 'torch', 'sdmetrics', 'great_expectations') if m in sys.modules))")
    flows = ("import os; before = dict(os.environ); import tabtwin.flows.synthesize, tabtwin.flows.cli; "
             # KMP_*: set by the OpenMP runtime torch loads, not by tabtwin
             "print(sorted(k for k, v in set(os.environ.items()) ^ set(before.items()) if not k.startswith('KMP_')))")
    for script in (schema, flows):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "[]", script


@pytest.mark.parametrize("argv, words", [(["--seed", "-1"], "--seed must be a whole number"),
                                         (["--gate", "GATE"], "min_quality must be a number")])
def test_run_refuses_a_bad_seed_or_gate_file_before_any_work(table, tmp_path, capsys, monkeypatch, argv, words):
    import tabtwin.flows.cli as cli_module

    gate = tmp_path / "gate.json"
    gate.write_text('{"min_quality": "high"}')
    started = []
    monkeypatch.setattr(cli_module, "ensure_api", lambda: started.append(True))
    code, out, err = run(capsys, "run", table, *[str(gate) if a == "GATE" else a for a in argv],
                         "--out", tmp_path / "runs", "--cache", tmp_path / "cache")
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not started and not (tmp_path / "cache").exists()
