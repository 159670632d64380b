"""Outputs and operations (issue 12, items 10-15): what `run` and `request` leave on disk and print.

10 a failed request leaves nothing at its output path; 11 a request whose source changed is refused; 12 inputs
sharing a stem register under distinct names, and a real clash is refused; 13 published folders and files get
the umask's modes; 14 a closed stdout pipe ends quietly; 15 `run` and `request` print the failing checks.
"""

import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tabtwin.evaluation.gate import GateConfig
from tabtwin.flows import registry, steps
from tabtwin.flows.cli import EXIT_BROKEN_PIPE, main
from tabtwin.flows.spec import DEFAULT_MODEL, Places, RunSpec
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory, write_json_atomic
from tabtwin.pipeline.ingest import read_table, write_table
from tabtwin.pipeline.sample_data import make_sample_table

LENIENT = {field.name: 0 if field.name.startswith("min_") else 1 for field in dataclasses.fields(GateConfig)}
STRICT = {**LENIENT, "min_quality": 1.01, "min_detection_score": 1.01}


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_gate(path: Path, gate: dict) -> str:
    path.write_text(json.dumps(gate))
    return str(path)


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def shop(harness, tmp_path_factory, device):
    """`shop.csv` and `shop.parquet` (the same 200 rows) run and registered once for the module's tests."""
    root = tmp_path_factory.mktemp("shop")
    table = make_sample_table(200, seed=4)
    csv = write_table(table, root / "shop.csv")
    parquet = write_table(read_table(csv), root / "shop.parquet")  # the same frame read back: one fit, reused
    lenient = write_gate(root / "lenient.json", LENIENT)
    places = ["--out", root / "runs", "--cache", root / "cache", "--registry", root / "registry"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([str(a) for a in ["run", csv, parquet, "--epochs", 1, "--batch-size", 50, "--device", device,
                                      "--gate", lenient, *places]])
    assert code == 0
    return {"root": root, "printed": printed.getvalue(), "csv": csv, "parquet": parquet, "table": table, "places": places, "device": device,
            "entry": root / "registry" / f"shop-csv-{DEFAULT_MODEL}"}


def edited_entry(shop, name: str, **spec_changes) -> Path:
    """A copy of the registered csv entry whose registration says something else (another gate or data file)."""
    entry = shop["root"] / "edited" / name
    shutil.copytree(shop["entry"], entry)
    record = json.loads((entry / registry.REGISTRATION).read_text())
    record["spec"].update(spec_changes)
    (entry / registry.REGISTRATION).write_text(json.dumps(record))
    return entry


# ------------------------------------------------------------------------ 12: one registry entry per source


def test_inputs_sharing_a_stem_register_under_distinct_names(shop):
    entries = sorted(p.name for p in (shop["root"] / "registry").iterdir() if not p.name.startswith("."))
    assert entries == [f"shop-csv-{DEFAULT_MODEL}", f"shop-parquet-{DEFAULT_MODEL}"]
    assert len(list((shop["root"] / "cache").iterdir())) == 1  # the same rows: the second reused the first's model
    # ... and the terminal says so, under the second run only.
    csv_part, parquet_part = shop["printed"].split(str(shop["parquet"]) + " [")
    assert "reused the cached model" not in csv_part
    assert "fit:    skipped, reused the cached model" in parquet_part and str(shop["root"] / "cache") in parquet_part
    sources = {json.loads((shop["root"] / "registry" / e / "registration.json").read_text())["source"]["data"]
               for e in entries}
    assert sources == {str(shop["csv"].resolve()), str(shop["parquet"].resolve())}


def test_registry_names_tell_formats_and_tables_apart():
    names = {registry.registry_name(RunSpec(data=d, table=t, model="tvae"))
             for d, t in [("a.sqlite", None), ("a.parquet", None), ("a.csv", None), ("a.db", "orders"),
                          ("a.db", "users"), ("sqlite:///a.db", "users")]}
    assert names == {"a-sqlite-tvae", "a-parquet-tvae", "a-csv-tvae", "a-db-orders-tvae", "a-db-users-tvae"}
    # A private model gets its own entry: a later plain run must not replace one signed off as private.
    assert registry.registry_name(RunSpec(data="a.csv", model="tvae", dp_epsilon=3.0)) == "a-csv-tvae-dp3"
    assert registry.registry_name(RunSpec(data="a.csv", model="tvae", dp_epsilon=0.5)) == "a-csv-tvae-dp0-5"


def test_same_file_name_in_two_folders_is_refused_before_any_work(tmp_path, capsys):
    for folder in ("x", "y"):
        write_table(make_sample_table(30, seed=1), tmp_path / folder / "a.csv")
    code, out, err = cli(capsys, "run", tmp_path / "x" / "a.csv", tmp_path / "y" / "a.csv", "--out", tmp_path / "runs",
                         "--cache", tmp_path / "cache", "--registry", tmp_path / "reg")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(tmp_path / "x" / "a.csv") in err and str(tmp_path / "y" / "a.csv") in err
    assert f"a-csv-{DEFAULT_MODEL}" in err and "--registry" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_an_entry_of_another_source_is_not_replaced(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    first, second = RunSpec(data=str(tmp_path / "x" / "a.csv")), RunSpec(data=str(tmp_path / "y" / "a.csv"))
    df = make_sample_table(20, seed=1)
    registry.register_model(tmp_path / "reg", registry.registry_name(first), model_dir, first,
                         registry.split_record(first, df.iloc[:15], df.iloc[15:]))
    registry.check_registry_names([first], tmp_path / "reg")  # the same source again: it may replace its entry
    with pytest.raises(TabtwinError, match=f"holds the model of {tmp_path / 'x' / 'a.csv'}, not of {tmp_path / 'y' / 'a.csv'}"):
        registry.check_registry_names([second], tmp_path / "reg")
    registry.check_registry_names([second], None)  # no registry: nothing to clash with


# ------------------------------------------------------------------------ 10 and 15: a failed request


def test_a_failed_request_removes_the_older_table_and_prints_the_failing_checks(shop, capsys):
    out = shop["root"] / "requests" / "red.csv"
    code, stdout, err = cli(capsys, "request", shop["entry"], "--rows", 25, "--condition", "colour=red", "--seed", 7,
                            "--device", shop["device"], "--out", out)
    assert code == 0, err
    assert len(read_table(out)) == 25  # last week's table, from a passing request
    strict = edited_entry(shop, "strict", gate=write_gate(shop["root"] / "strict.json", STRICT))

    code, stdout, err = cli(capsys, "request", strict, "--rows", 25, "--condition", "colour=red",
                            "--device", shop["device"], "--out", out)
    assert code == 3, err
    assert not out.exists()  # nothing at the path that a passing run of this request did not write
    report_dir = shop["root"] / "requests" / "red.csv.report"
    failures = [f["message"] for f in json.loads((report_dir / "report.json").read_text())["gate"]["failures"]]
    assert len(failures) >= 2
    lines = stdout.splitlines()
    assert lines[0] == f"gate FAILED: the table is withheld, nothing written to {out}; the older table there was removed"
    assert lines[1].split() == ["section", "check", "value", "threshold", "result"]  # the gate's table, then
    assert [line for line in lines if line.startswith("  FAIL ")] == [f"  FAIL {message}" for message in failures]
    assert lines[-1] == f"report: {report_dir}/report.html" and (report_dir / "report.html").is_file()
    assert not (report_dir / "synthetic.parquet").exists()


def test_a_failed_run_prints_the_failing_checks_and_the_report(shop, capsys):
    strict = write_gate(shop["root"] / "strict-run.json", STRICT)
    code, stdout, err = cli(capsys, "run", shop["csv"], "--epochs", 1, "--batch-size", 50, "--device", shop["device"],
                            "--gate", strict, *shop["places"])
    assert code == 3, err
    lines = stdout.splitlines()
    assert lines[0] == f"{shop['csv']} [{DEFAULT_MODEL}]: gate FAILED, data withheld"
    report = Path(lines[-1].removeprefix("  report: "))
    failures = [f["message"] for f in json.loads((report.parent / "report.json").read_text())["gate"]["failures"]]
    assert lines[1].startswith("  fit:    skipped, reused the cached model")  # the module's model, another gate
    assert lines[2].split() == ["section", "check", "value", "threshold", "result"]  # the gate's table, then
    assert len(failures) >= 2 and [line for line in lines if line.startswith("  FAIL ")] == [
        f"  FAIL {message}" for message in failures]
    assert report.name == "report.html" and report.is_file()


# ------------------------------------------------------------------------ 11: the source must still split the same


def test_a_request_on_a_grown_source_is_refused(shop, tmp_path):
    """The console script, in a fresh process as a user runs it: one line on stderr (no Prefect log), exit 2."""
    data = shop["root"] / "grown.csv"
    entry = edited_entry(shop, "grown", data=str(data))
    write_table(pd.concat([shop["table"], make_sample_table(30, seed=9)], ignore_index=True), data)
    out = tmp_path / "grown.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # as in a user's shell
    from prefect.settings import get_current_settings

    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_API_URL=str(get_current_settings().api.url))  # the harness's
    script = Path(sys.executable).with_name("tabtwin")
    result = subprocess.run([str(script), "request", str(entry), "--rows", "10", "--device", shop["device"],
                             "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"tabtwin: error: {data} has changed since {entry} was registered (200 rows then, 230 now), "
                             f"so its holdout would no longer be unseen by the model; re-register it with "
                             f"`tabtwin run {data}`\n")
    assert not out.exists() and not (tmp_path / "grown.csv.report").exists()


@pytest.fixture
def registration(tmp_path):
    df = make_sample_table(100, seed=3)
    spec = RunSpec(data="t.csv")
    train, holdout = steps.split_train_holdout(df, spec.holdout_fraction, spec.seed)
    entry = registry.register_model(tmp_path / "reg", "t", _model_dir(tmp_path), spec, registry.split_record(spec, train, holdout))
    return df, registry.read_registration(entry)


def _model_dir(root: Path) -> Path:
    (root / "m").mkdir(exist_ok=True)
    return root / "m"


def _refusal(registration, df) -> str:
    train, holdout = steps.split_train_holdout(df, registration.spec.holdout_fraction, registration.spec.seed)
    with pytest.raises(TabtwinError) as caught:
        registry.check_source(registration, train, holdout)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"t.csv has changed since {registration.folder} was registered (")
    return message[message.index("(") + 1:message.index(")")]


def test_check_source_names_what_changed(registration):
    df, reg = registration
    train, holdout = steps.split_train_holdout(df, reg.spec.holdout_fraction, reg.spec.seed)
    registry.check_source(reg, train, holdout)  # unchanged: accepted
    assert _refusal(reg, df.head(90)) == "100 rows then, 90 now"
    assert _refusal(reg, df.assign(extra=1).drop(columns="colour")) == "columns added: extra; columns removed: colour"
    assert _refusal(reg, df[list(df.columns[::-1])]) == "columns reordered"
    in_holdout = df.sample(n=len(holdout), random_state=reg.spec.seed).index[0]  # as split_train_holdout draws it
    edited = df.copy()
    edited.loc[in_holdout, "amount"] += 1
    assert _refusal(reg, edited) == "its holdout rows differ"
    edited = df.copy()
    edited.loc[df.index.difference([in_holdout])[0], "amount"] += 1
    assert _refusal(reg, edited) == "its training rows differ"
    assert _refusal(reg, df.sample(frac=1, random_state=1)) == "its training rows differ; its holdout rows differ"


def test_an_entry_without_a_recorded_split_is_refused(registration):
    df, reg = registration
    legacy = registry.Registration(folder=reg.folder, model_dir=reg.model_dir, spec=reg.spec, source=None)
    train, holdout = steps.split_train_holdout(df, reg.spec.holdout_fraction, reg.spec.seed)
    with pytest.raises(TabtwinError, match=r"registered without a fingerprint .* re-register it with `tabtwin run t.csv`"):
        registry.check_source(legacy, train, holdout)


# ------------------------------------------------------------------------ 13: modes follow the umask


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root.parent)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_published_folders_and_files_take_the_umask(tmp_path, umask):
    for round_ in range(2):  # a new folder, then one replacing an existing one
        with atomic_directory(tmp_path / "run", replaces=["report.json", "plots"]) as staging:
            write_json_atomic({"round": round_}, staging / "report.json")
            (staging / "plots").mkdir()
            (staging / "plots" / "a.txt").write_text("x")
    entry = registry.register_model(tmp_path / "reg", "e", tmp_path / "run", RunSpec(data="t.csv"), {})
    dirs, files = 0o777 & ~umask, 0o666 & ~umask
    assert modes(tmp_path / "run") == {"run": dirs, "run/report.json": files, "run/plots": dirs, "run/plots/a.txt": files}
    assert modes(entry) == {"e": dirs, "e/model": dirs, "e/model/report.json": files, "e/model/plots": dirs,
                            "e/model/plots/a.txt": files, "e/registration.json": files}
    assert sorted(os.listdir(tmp_path)) == ["reg", "run"]  # no staging or retired folder left behind
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == {"round": 1}


def test_a_failed_replacement_keeps_the_old_folder(tmp_path):
    with atomic_directory(tmp_path / "run") as staging:
        (staging / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "run", replaces=["old.txt", "new.txt"]) as staging:
        (staging / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["run"] and os.listdir(tmp_path / "run") == ["old.txt"]


# ------------------------------------------------------------------------ 14: a reader that goes away


def test_a_closed_pipe_ends_quietly(tmp_path):
    table = write_table(make_sample_table(50, seed=2), tmp_path / "t.csv")
    script = Path(sys.executable).with_name("tabtwin")
    proc = subprocess.Popen([str(script), "schema", str(table), "--out", str(tmp_path / "meta.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes a line (`| head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE and err == ""
    assert json.loads((tmp_path / "meta.json").read_text())["primary_key"] == "customer_id"  # the work was done


# ------------------------------------------------------------------------ issue 20: what a request may replace


def test_a_request_never_removes_or_replaces_a_users_table(shop, capsys):
    """Issue 20, item 2: `--out my_real_customers.csv` once removed the real table when the gate failed."""
    users = write_table(shop["table"], shop["root"] / "mine" / "my_real_customers.csv")
    before = users.read_bytes()
    strict = edited_entry(shop, "strict-users", gate=write_gate(shop["root"] / "strict-users.json", STRICT))
    request = ["request", strict, "--rows", 20, "--device", shop["device"], "--out", users]
    code, stdout, err = cli(capsys, *request)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot tell it wrote it" in err and stdout == ""
    code, stdout, err = cli(capsys, *request, "--overwrite")  # the user allows replacing it; the gate fails
    assert code == 3, err
    assert users.read_bytes() == before and "removed" not in stdout
    assert sorted(os.listdir(users.parent)) == ["my_real_customers.csv", "my_real_customers.csv.report"]


def test_a_request_is_confined_to_its_registry(shop):
    """Issue 20, item 3: a model name of `../other/entry` served a model from outside the registry."""
    from tabtwin.flows.synthesize import request

    edited_entry(shop, "outside")
    state = request(model="../edited/outside", rows=5, registry=str(shop["root"] / "registry"), return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, TabtwinError) and "not a registry entry name" in str(error)


def test_a_run_whose_name_was_taken_meanwhile_is_not_told_it_registered(shop, tmp_path):
    """Issue 20, item 4: two runs of same-named files from two folders both said they registered one entry."""
    from tabtwin.flows.synthesize import PLAIN, run_sequence

    data = write_table(shop["table"], tmp_path / "shop.csv")  # shop.csv of another folder
    spec = RunSpec(data=str(data), epochs=1, batch_size=50, device=shop["device"], gate=str(shop["root"] / "lenient.json"))
    places = Places(out=str(tmp_path / "runs"), cache=str(shop["root"] / "cache"), registry=str(tmp_path / "reg"))
    other = RunSpec(data=str(tmp_path / "elsewhere" / "shop.csv"))

    def fit_while_another_registers(train, schema, run_spec, cache):
        fitted = PLAIN.fit_or_reuse(train, schema, run_spec, cache)
        registry.register_model(places.registry, registry.registry_name(spec), fitted.folder, other,
                                {"data": str(other.data)})
        return fitted

    ops = dataclasses.replace(PLAIN, fit_or_reuse=fit_while_another_registers)
    with pytest.raises(TabtwinError, match="published .*, but the model was not registered: .* holds the model of"):
        run_sequence(spec, places, ops)
    entry = Path(places.registry) / registry.registry_name(spec)
    assert json.loads((entry / registry.REGISTRATION).read_text())["source"]["data"] == other.data
