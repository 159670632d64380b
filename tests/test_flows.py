"""The flows, on small tables and tiny epoch counts, inside Prefect's test harness (no server to start)."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from tabtwin.evaluation.gate import GateConfig
from tabtwin.flows import registry, steps
from tabtwin.flows.cache import fingerprint
from tabtwin.flows.spec import DEFAULT_MODEL, RunSpec
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.ingest import read_table, write_table
from tabtwin.pipeline.sample_data import make_sample_table
from tabtwin.pipeline.schema import infer_schema

LENIENT = {field.name: 0 if field.name.startswith("min_") else 1 for field in dataclasses.fields(GateConfig)}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def workspace(tmp_path):
    data = write_table(make_sample_table(400, seed=5), tmp_path / "customers.csv")
    lenient = tmp_path / "lenient.json"
    lenient.write_text(json.dumps(LENIENT))
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({**LENIENT, "min_quality": 1.01}))
    return {"root": tmp_path, "data": str(data), "lenient": str(lenient), "strict": str(strict)}


# ---------------------------------------------------------------------------------------------- plain steps


def test_split_is_seeded_and_disjoint():
    df = make_sample_table(100, seed=1)
    train, holdout = steps.split_train_holdout(df, 0.2, seed=3)
    again, _ = steps.split_train_holdout(df, 0.2, seed=3)
    assert len(holdout) == 20 and len(train) == 80 and train.equals(again)
    assert not set(train["customer_id"]) & set(holdout["customer_id"])
    with pytest.raises(TabtwinError, match="between 0 and 1"):
        steps.split_train_holdout(df, 1.5, seed=0)
    with pytest.raises(TabtwinError, match="too few"):
        steps.split_train_holdout(df.head(2), 0.5, seed=0)


def test_fingerprint_changes_with_data_and_parameters():
    df = make_sample_table(50, seed=1)
    schema = infer_schema(df)
    base = fingerprint(df, schema, {"epochs": 1})
    assert base == fingerprint(df.copy(), schema, {"epochs": 1})
    assert base != fingerprint(df, schema, {"epochs": 2})
    changed = df.copy()
    changed.loc[0, "amount"] += 1
    assert base != fingerprint(changed, schema, {"epochs": 1})


def test_fingerprint_changes_with_the_model_format(monkeypatch):
    """A cached model saved in an older format would fail to load: a new format must miss the cache instead."""
    import tabtwin.generators.base

    df = make_sample_table(50, seed=1)
    schema = infer_schema(df)
    before = fingerprint(df, schema, {"epochs": 1})
    monkeypatch.setattr(tabtwin.generators.base, "FORMAT_VERSION", tabtwin.generators.base.FORMAT_VERSION + 1)
    assert before != fingerprint(df, schema, {"epochs": 1})


def test_dp_settings_enter_the_fingerprint_only_when_set():
    """Models cached before DP runs existed keep their fingerprints; a DP model never reuses a plain one."""
    df = make_sample_table(50, seed=1)
    schema = infer_schema(df)
    plain = RunSpec(data="x.csv", model="tvae")
    assert set(plain.model_params()) == {"model", "epochs", "batch_size", "seed"}
    keys = {fingerprint(df, schema, RunSpec(data="x.csv", model="tvae", **dp).model_params())
            for dp in ({}, {"dp_epsilon": 3.0}, {"dp_epsilon": 1.0}, {"dp_epsilon": 3.0, "dp_delta": 1e-6})}
    assert len(keys) == 4
    with pytest.raises(TabtwinError, match="supported by tvae only"):
        RunSpec(data="x.csv", model="ctgan", dp_epsilon=3.0).model_params()


def test_a_time_budget_enters_the_fingerprint_only_when_set_and_only_for_models_with_one():
    df = make_sample_table(50, seed=1)
    schema = infer_schema(df)
    plain = RunSpec(data="x.csv", model="autoregressive")
    assert "max_seconds" not in plain.model_params()  # models cached before budgets existed keep their keys
    keys = {fingerprint(df, schema, RunSpec(data="x.csv", model="autoregressive", **budget).model_params())
            for budget in ({}, {"max_seconds": 30.0}, {"max_seconds": 60.0})}
    assert len(keys) == 3
    budgeted = RunSpec(data="x.csv", model="autoregressive", max_seconds=30)
    assert budgeted.model_params() == RunSpec(data="x.csv", model="autoregressive", max_seconds=30.0).model_params()
    # how many epochs fit in a budget depends on the device: a CPU model is not reused for a CUDA run
    assert budgeted.model_params() != RunSpec(data="x.csv", model="autoregressive", max_seconds=30,
                                              device="cuda").model_params()
    with pytest.raises(TabtwinError, match="--max-seconds is supported by autoregressive only, not tvae"):
        RunSpec(data="x.csv", model="tvae", max_seconds=30.0).model_params()


def test_filter_rows_matches_like_the_generators():
    df = pd.DataFrame({"sex": [" Female", " Male", " Female"], "n": [1, 2, 3]})
    assert steps.filter_rows(df, {"sex": "female"})["n"].tolist() == [1, 3]
    with pytest.raises(TabtwinError, match="'nope'"):
        steps.filter_rows(df, {"nope": 1})


def test_registration_round_trip(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    spec = RunSpec(data="x.csv", epochs=3, target="y")
    df = make_sample_table(50, seed=1)
    source = registry.split_record(spec, df.iloc[:40], df.iloc[40:])
    entry = registry.register_model(tmp_path / "registry", "x-ctgan", model_dir, spec, source)
    registration = registry.read_registration(entry)
    assert registration.model_dir == entry / "model" and (registration.model_dir / "config.json").is_file()
    assert registration.spec == spec and registration.source == source and registration.folder == entry
    with pytest.raises(TabtwinError, match="not a registered model"):
        registry.read_registration(tmp_path)


# ---------------------------------------------------------------------------------------------- flows


def run_synthesize(workspace, gate, **extra):
    from tabtwin.flows.synthesize import synthesize
    from tabtwin.pipeline.device import default_device

    params = dict(data=workspace["data"], epochs=1, batch_size=50, out=str(workspace["root"] / "runs"),
                  cache=str(workspace["root"] / "cache"), registry=str(workspace["root"] / "registry"),
                  device=default_device(), gate=gate, target="colour")
    return synthesize(**{**params, **extra}, return_state=True)


def test_synthesize_publishes_and_caches_the_model(harness, workspace):
    first = run_synthesize(workspace, workspace["lenient"])
    assert first.is_completed()
    summary = first.result()
    folder = Path(summary["folder"])
    assert {p.name for p in folder.iterdir()} >= {"synthetic.parquet", "report.json", "report.html", "run.json"}
    synthetic = read_table(folder / "synthetic.parquet")
    assert len(synthetic) == 320  # as many rows as the training split
    run = json.loads((folder / "run.json").read_text())
    assert run["model_reused"] is False and run["gate_passed"] is True
    second = run_synthesize(workspace, workspace["lenient"])
    again = json.loads((Path(second.result()["folder"]) / "run.json").read_text())
    assert again["model_reused"] is True  # same data and parameters: no retraining
    # The model sampled in memory after training and the one loaded from the cache draw the same rows.
    pd.testing.assert_frame_equal(read_table(Path(second.result()["folder"]) / "synthetic.parquet"), synthetic)
    assert len(list((workspace["root"] / "cache").iterdir())) == 1
    assert (workspace["root"] / "registry" / f"customers-csv-{DEFAULT_MODEL}" / "registration.json").is_file()


def test_a_failed_gate_keeps_the_report_and_withholds_the_data(harness, workspace):
    state = run_synthesize(workspace, workspace["strict"], registry=None)
    assert state.is_failed() and "gate failed" in state.message
    folder = Path(state.result(raise_on_failure=False)["folder"])
    assert (folder / "report.html").is_file() and not (folder / "synthetic.parquet").exists()
    report = json.loads((folder / "report.json").read_text())
    assert report["gate"]["passed"] is False
    assert report["run"]["kind"] == "run" and report["run"]["registry_entry"] is None and report["privacy"]["dp"] is None


def test_report_becomes_prefect_artifacts(harness, workspace):
    from prefect.client.orchestration import get_client

    run_synthesize(workspace, workspace["lenient"])

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    import asyncio

    assert {"synthesize-report", "synthesize-report-checks"} <= asyncio.run(artifact_keys())


def test_request_samples_a_registered_model_under_conditions(harness, workspace, device, monkeypatch, tmp_path_factory):
    from tabtwin.flows.synthesize import request

    monkeypatch.chdir(workspace["root"])  # run with relative paths; the request runs from another folder
    assert run_synthesize(workspace, "lenient.json", data="customers.csv").is_completed()
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    out = workspace["root"] / "requests" / "red.csv"
    state = request(model=str(workspace["root"] / "registry" / f"customers-csv-{DEFAULT_MODEL}"), rows=77,
                    conditions={"colour": "red"}, out=str(out), device=device, return_state=True)
    assert state.is_completed(), state.message
    table = read_table(out)
    assert len(table) == 77 and (table["colour"] == "red").all()
    report = json.loads((workspace["root"] / "requests" / "red.csv.report" / "report.json").read_text())
    assert report["meta"]["rows"]["synthetic"] == 77
    assert report["meta"]["rows"]["train"] < 320  # evaluated against the real rows meeting the condition


def test_a_dp_run_reports_its_budget_registers_it_and_requests_name_their_model(harness, workspace, device):
    from tabtwin.flows.synthesize import request

    state = run_synthesize(workspace, workspace["lenient"], model="tvae", dp_epsilon=3.0, device="cpu")
    assert state.is_completed(), state.message
    summary = state.result()
    report = json.loads((Path(summary["folder"]) / "report.json").read_text())
    dp = report["privacy"]["dp"]
    assert 0 < dp["epsilon"] <= 3 and dp["target_epsilon"] == 3 and summary["privacy"] == dp
    entry = workspace["root"] / "registry" / "customers-csv-tvae-dp3"
    model_dir = report["run"].pop("model_dir")
    assert Path(model_dir).parent == workspace["root"] / "cache"
    assert report["run"] == {"kind": "run", "model": "tvae", "registry_entry": str(entry),
                             "data": str(Path(workspace["data"]).resolve()), "conditions": {}, "rows": 320}
    registration = json.loads((entry / "registration.json").read_text())
    assert registration["spec"]["dp_epsilon"] == 3.0 and registration["spec"]["dp_delta"] is None
    assert registration["privacy"] == dp
    assert {c["check"] for c in summary["checks"]} >= {"quality", "dcr_share"} and summary["failures"] == []

    out = workspace["root"] / "requests" / "red.parquet"
    state = request(model=str(entry), rows=40, conditions={"colour": "red"}, out=str(out), device=device,
                    return_state=True)
    assert state.is_completed(), state.message
    report = json.loads((workspace["root"] / "requests" / "red.parquet.report" / "report.json").read_text())
    assert report["run"] == {"kind": "request", "model": "tvae", "model_dir": str(entry / "model"),
                             "registry_entry": str(entry), "data": str(Path(workspace["data"]).resolve()),
                             "conditions": {"colour": "red"}, "rows": 40}
    assert report["privacy"]["dp"] == dp and state.result()["privacy"] == dp


def test_two_tables_on_a_local_dask_cluster(workspace, device):
    """The Dask fan-out runs the same sequence: it publishes, registers passing models and creates artifacts, and
    each worker's torch uses its share of the cores."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.testing.utilities import prefect_test_harness

    from tabtwin.flows.scale import available_cores, run_many
    from tabtwin.flows.spec import Places

    second = write_table(make_sample_table(300, seed=9), workspace["root"] / "accounts.parquet")
    specs = [RunSpec(data=d, epochs=1, batch_size=50, device=device, gate=workspace["lenient"])
             for d in (workspace["data"], str(second))]
    root = workspace["root"]
    places = Places(out=str(root / "runs"), cache=str(root / "cache"), registry=str(root / "registry"))

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts()}

    with prefect_test_harness(server_startup_timeout=120):
        summaries = run_many(specs, places, workers=2)
        keys = asyncio.run(artifact_keys())
    assert sorted(s["data"] for s in summaries) == sorted(spec.data for spec in specs)
    assert all(s["passed"] for s in summaries)
    runs = [json.loads((Path(s["folder"]) / "report.json").read_text())["run"] for s in summaries]
    assert sorted(r["registry_entry"] for r in runs) == sorted(s["registered"] for s in summaries)  # the same sequence
    assert len(list((root / "runs").iterdir())) == 2
    entries = sorted(p.name for p in (root / "registry").iterdir() if not p.name.startswith("."))  # not its lock
    assert entries == [f"accounts-parquet-{DEFAULT_MODEL}", f"customers-csv-{DEFAULT_MODEL}"]
    assert all(s["registered"] for s in summaries)
    assert {f"synthesize-report-customers-csv-{DEFAULT_MODEL}", f"synthesize-report-accounts-parquet-{DEFAULT_MODEL}"} <= keys
    assert [s["torch_threads"] for s in summaries] == [max(1, available_cores() // 2)] * 2
