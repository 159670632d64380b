"""Issue 20, items 1-4: an output path replaces only what tabtwin wrote; the registry is confined and atomic.

Each test reproduces a reported loss or leak on a generated table in a temporary folder (no network).
"""

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from tabtwin.flows import registry
from tabtwin.flows.cli import main
from tabtwin.flows.publish import check_request_output, request_digests, table_in_waiting, withdraw
from tabtwin.flows.spec import RunSpec
from tabtwin.pipeline import ingest, outputs
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory
from tabtwin.pipeline.ingest import write_table
from tabtwin.pipeline.sample_data import make_sample_table


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> bool:
    return "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def data_folder(tmp_path):
    """A user's folder: the input table and a README of theirs."""
    folder = tmp_path / "data"
    folder.mkdir()
    write_table(make_sample_table(120, seed=3), folder / "customers.csv")
    (folder / "README").write_text("my notes")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def no_reading(monkeypatch):
    """Reading the data fails loudly: a refusal must come before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the data was read before the output path was checked")

    monkeypatch.setattr(ingest, "read_table", refuse)


# ---------------------------------------------------------------------------------------------- 1: fit --out


def test_fit_into_a_users_folder_is_refused_before_any_work_and_loses_nothing(data_folder, capsys, monkeypatch):
    before = contents(data_folder)
    no_reading(monkeypatch)
    code, out, err = cli(capsys, "fit", data_folder / "customers.csv", "--model", "tvae", "--epochs", 1,
                         "--out", data_folder)
    assert code == 2 and one_line(err), err
    assert "holds the input" in err and "customers.csv" in err
    other = data_folder.parent / "customers.csv"
    other.write_bytes(before["customers.csv"])  # the same table read from elsewhere: the folder is still the user's
    code, out, err = cli(capsys, "fit", other, "--model", "tvae", "--epochs", 1, "--out", data_folder)
    assert code == 2 and one_line(err), err
    assert "README, customers.csv" in err and "--overwrite" in err
    assert contents(data_folder) == before


def test_overwrite_never_replaces_the_input_or_the_current_folder(data_folder, tmp_path, capsys, monkeypatch):
    before = contents(data_folder)
    no_reading(monkeypatch)
    code, _, err = cli(capsys, "fit", data_folder / "customers.csv", "--epochs", 1, "--out", data_folder, "--overwrite")
    assert code == 2 and one_line(err) and "input" in err, err
    monkeypatch.chdir(data_folder)
    for out in (".", "..", str(Path.home())):
        code, _, err = cli(capsys, "fit", "customers.csv", "--epochs", 1, "--out", out, "--overwrite")
        assert code == 2 and one_line(err) and "never replaces" in err, err
    assert contents(data_folder) == before


def test_a_model_folder_is_replaced_and_a_users_file_in_it_needs_overwrite(data_folder, tmp_path, capsys, device):
    fit = ["fit", data_folder / "customers.csv", "--model", "tvae", "--epochs", 1, "--batch-size", 40, "--quiet",
           "--device", device, "--out", tmp_path / "model"]
    assert cli(capsys, *fit)[0] == 0
    first = contents(tmp_path / "model")
    assert cli(capsys, *fit, "--seed", 5)[0] == 0  # tabtwin's own model folder: replaced
    assert contents(tmp_path / "model") != first
    (tmp_path / "model" / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, *fit)
    assert code == 2 and one_line(err) and "notes.txt" in err
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"
    assert cli(capsys, *fit, "--overwrite")[0] == 0  # the user says so
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "encoder.json", "weights.pt"]


def test_atomic_directory_refuses_at_the_swap_too(tmp_path):
    """A folder that filled with a user's files while tabtwin worked is not replaced either."""
    target = tmp_path / "model"
    with pytest.raises(TabtwinError, match="mine.csv"):
        with atomic_directory(target, replaces=["config.json"]) as staging:
            (staging / "config.json").write_text("{}")
            target.mkdir()
            (target / "mine.csv").write_text("a\n1\n")
    assert os.listdir(target) == ["mine.csv"] and sorted(os.listdir(tmp_path)) == ["model"]


@pytest.mark.parametrize("argv", [["schema", "--out", "meta.json"], ["encode", "--out", "enc"]])
def test_schema_and_encode_refuse_a_users_output(data_folder, tmp_path, capsys, monkeypatch, argv):
    command, flag, name = argv
    target = tmp_path / name
    if name.endswith(".json"):
        target.write_text('{"hand": "edited"}')
    else:
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    no_reading(monkeypatch)
    code, _, err = cli(capsys, command, data_folder / "customers.csv", flag, target)
    assert code == 2 and one_line(err), err
    if name.endswith(".json"):
        assert target.read_text() == '{"hand": "edited"}'
    else:
        assert os.listdir(target) == ["keep.txt"]


def test_evaluate_refuses_a_report_folder_holding_other_files(data_folder, tmp_path, capsys, monkeypatch):
    table = tmp_path / "t.csv"
    table.write_bytes((data_folder / "customers.csv").read_bytes())
    no_reading(monkeypatch)
    code, _, err = cli(capsys, "evaluate", "--real", table, "--holdout", table, "--synthetic", table,
                       "--out", data_folder)
    assert code == 2 and one_line(err) and "README" in err, err


# ---------------------------------------------------------------------------------------------- 1: sample --out


def test_sample_replaces_its_own_parquet_but_not_a_users_file(data_folder, tmp_path, capsys, device):
    model = tmp_path / "model"
    assert cli(capsys, "fit", data_folder / "customers.csv", "--model", "ctgan", "--epochs", 1, "--batch-size", 40,
               "--quiet", "--device", device, "--out", model)[0] == 0
    sample = ["sample", model, "--rows", 30, "--device", device]
    ours = tmp_path / "synthetic.parquet"
    assert cli(capsys, *sample, "--out", ours)[0] == 0 and outputs.is_ours(ours)
    assert cli(capsys, *sample, "--out", ours, "--rows", 31)[0] == 0  # its own file: replaced
    assert len(pd.read_parquet(ours)) == 31

    users = {"real.csv": data_folder / "customers.csv", "real.parquet": tmp_path / "real.parquet"}
    make_sample_table(20, seed=1).to_parquet(users["real.parquet"])  # written by pandas, not tabtwin
    for path in users.values():
        before = path.read_bytes()
        code, _, err = cli(capsys, *sample, "--out", path)
        assert code == 2 and one_line(err) and "cannot tell it wrote it" in err, err
        assert path.read_bytes() == before
    assert cli(capsys, *sample, "--out", users["real.parquet"], "--overwrite")[0] == 0


# ---------------------------------------------------------------------------------------------- 2: request --out


def test_a_request_output_that_no_request_wrote_is_refused(tmp_path):
    users = write_table(make_sample_table(20, seed=1), tmp_path / "my_real_customers.csv")
    with pytest.raises(TabtwinError, match="cannot tell it wrote it"):
        check_request_output(users, data=str(tmp_path / "source.csv"))
    with pytest.raises(TabtwinError, match="input"):  # the model's own source, even with --overwrite
        check_request_output(users, overwrite=True, data=str(users))
    check_request_output(users, overwrite=True, data=str(tmp_path / "source.csv"))
    (tmp_path / "out.csv.report").mkdir()
    (tmp_path / "out.csv.report" / "mine.txt").write_text("x")
    with pytest.raises(TabtwinError, match="mine.txt"):
        check_request_output(tmp_path / "out.csv")


def test_a_requests_csv_is_recognised_by_the_digest_its_report_records(tmp_path):
    target = tmp_path / "red.csv"
    with table_in_waiting(make_sample_table(10, seed=1), target) as digest:
        assert not target.exists()  # the table appears only once the block (its report) is done
        report = tmp_path / "red.csv.report"
        report.mkdir()
        (report / "run.json").write_text(json.dumps({"out_sha256": digest}))
    assert request_digests(target) == {outputs.sha256(target)}
    check_request_output(target)  # a request's own table: replaceable
    users = write_table(make_sample_table(10, seed=2), tmp_path / "mine.csv")
    assert not withdraw(users, request_digests(target)) and users.exists()  # never a user's file
    assert withdraw(target, request_digests(target)) and not target.exists()


# ---------------------------------------------------------------------------------------------- 3: confinement


@pytest.fixture
def entry(tmp_path):
    """A registry with one entry (a stand-in model folder), and a folder outside it."""
    model = tmp_path / "fitted"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = RunSpec(data=str(tmp_path / "t.csv"))
    df = make_sample_table(20, seed=1)
    path = registry.register_model(tmp_path / "reg", "t-csv-tvae", model, spec,
                                   registry.split_record(spec, df.iloc[:15], df.iloc[15:]))
    (tmp_path / "other" / "entry").mkdir(parents=True)
    return path


@pytest.mark.parametrize("name", ["../other/entry", "..", "a/b", "/etc", ".hidden", "", "x" * 300])
def test_a_request_names_a_plain_entry_only(entry, name):
    with pytest.raises(TabtwinError, match="not a registry entry name"):
        registry.entry_path(name, entry.parent)


def test_links_out_of_the_registry_are_refused(entry, tmp_path):
    reg = entry.parent
    (reg / "escape").symlink_to(tmp_path / "other" / "entry", target_is_directory=True)
    (tmp_path / "other" / "entry" / registry.REGISTRATION).write_text((entry / registry.REGISTRATION).read_text())
    with pytest.raises(TabtwinError, match="outside the registry"):
        registry.read_registration(registry.entry_path("escape", reg), reg)
    os.replace(entry / "model" / "config.json", tmp_path / "moved.json")
    (entry / "model" / "config.json").symlink_to(Path("/etc/hostname"))
    with pytest.raises(TabtwinError, match="outside the registry"):
        registry.read_registration(entry, reg)


@pytest.mark.parametrize("change, words", [
    ({"metadata": "/etc/passwd"}, "metadata"),
    ({"gate": "/etc/shadow"}, "gate"),
    ({"data": "/etc/passwd"}, "table file"),
    ({"model": "../../bin/sh"}, "unknown model"),
    ({"epochs": "1e9"}, "epochs"),
    ({"seed": True}, "seed"),
    ({"hidden": 5}, "unknown spec field"),
])
def test_a_tampered_registration_is_refused_before_any_value_is_used(entry, change, words):
    file = entry / registry.REGISTRATION
    record = json.loads(file.read_text())
    record["spec"].update(change)
    file.write_text(json.dumps(record))
    with pytest.raises(TabtwinError, match=words):
        registry.read_registration(entry, entry.parent)


@pytest.mark.parametrize("source", [{"data": "/x.csv"}, {"columns": "abc"}, 7])
def test_a_tampered_split_record_is_refused_in_one_line(entry, source):
    file = entry / registry.REGISTRATION
    record = json.loads(file.read_text())
    record["source"] = source if not isinstance(source, dict) else {**record["source"], **source, "rows": None}
    file.write_text(json.dumps(record))
    with pytest.raises(TabtwinError, match="is corrupt .*source"):
        registry.read_registration(entry, entry.parent)


def test_a_database_url_input_is_never_replaced(tmp_path, capsys):
    """A SQLite URL names a local file: `--overwrite` must not turn it into the output."""
    import sqlite3

    database = tmp_path / "db" / "data.sqlite"
    database.parent.mkdir()
    with sqlite3.connect(database) as connection:
        make_sample_table(30, seed=1).to_sql("t", connection, index=False)
    before = database.read_bytes()
    for argv in (["schema", f"sqlite:///{database}", "--out", database, "--overwrite"],
                 ["fit", f"sqlite:///{database}", "--epochs", 1, "--out", database.parent, "--overwrite"]):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and one_line(err) and "input" in err, err
    assert database.read_bytes() == before


def test_a_request_replaces_only_what_a_request_wrote(tmp_path):
    """Another tabtwin output (a `sample` table, a run's synthetic.parquet) at a request's --out is kept."""
    sampled = write_table(make_sample_table(10, seed=1), tmp_path / "kept.parquet")  # carries tabtwin's mark
    assert outputs.is_ours(sampled)
    with pytest.raises(TabtwinError, match="cannot tell it wrote it"):
        check_request_output(sampled)
    assert not withdraw(sampled, request_digests(sampled)) and sampled.exists()


# ---------------------------------------------------------------------------------------------- 4: atomic


def test_two_sources_registering_one_name_together_one_is_refused(tmp_path):
    model = tmp_path / "fitted"
    model.mkdir()
    reg, name = tmp_path / "reg", "small-csv-tvae"
    sources = [str(tmp_path / side / "small.csv") for side in ("a", "b")]
    specs = [RunSpec(data=source) for source in sources]
    registry.check_registry_names(specs[:1], reg)  # both pass the early check: the registry is empty
    registry.check_registry_names(specs[1:], reg)
    start, results = threading.Barrier(2), {}

    def register(spec, source):
        start.wait()
        try:
            results[source] = registry.register_model(reg, name, model, spec, {"data": source})
        except TabtwinError as err:
            results[source] = err

    threads = [threading.Thread(target=register, args=pair) for pair in zip(specs, sources)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [source for source, result in results.items() if isinstance(result, Path)]
    lost = [result for result in results.values() if isinstance(result, TabtwinError)]
    assert len(won) == 1 and len(lost) == 1 and "holds the model of" in str(lost[0])
    assert json.loads((reg / name / registry.REGISTRATION).read_text())["source"]["data"] == won[0]
    assert sorted(os.listdir(reg)) == [registry.LOCK, name]  # no staging folder left behind


# ---------------------------------------------------------------------------------------------- 3: a form's run


class _Deployment:
    def __init__(self, registry):
        self.parameters = {"registry": registry}


class _Client:
    def __init__(self, registry):
        self.registry = registry

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_deployment(self, deployment_id):
        return _Deployment(self.registry)


def test_a_deployments_form_cannot_widen_the_registry_or_overwrite(monkeypatch, tmp_path):
    """A form user can change any parameter of a run: the registry and overwrite stay the deployment's."""
    from types import SimpleNamespace

    from tabtwin.flows import synthesize

    assert synthesize.pinned_by_deployment(None, True) == (None, True)  # the CLI or a script: the caller's
    served = str(tmp_path / "registry")
    monkeypatch.setattr(synthesize, "deployment", SimpleNamespace(id="d1"))
    monkeypatch.setattr(synthesize, "get_client", lambda sync_client: _Client(served))
    assert synthesize.pinned_by_deployment(served, False) == (served, False)
    for registry, overwrite, words in ((None, False, "serves the registry"), ("/", False, "serves the registry"),
                                       (served, True, "overwrite is not available")):
        with pytest.raises(TabtwinError, match=words):
            synthesize.pinned_by_deployment(registry, overwrite)
