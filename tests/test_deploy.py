"""`tabtwin deploy` against a real Prefect server, the request form, schedules, retries, and training progress.

The server test (`-m "not prefect_server"` deselects it) starts `prefect server start` on a free port of
127.0.0.1 with its home in tmp_path and telemetry off, deploys with `tabtwin deploy --pool`, runs both
deployments through the API with a process worker in a subprocess, and reads the runs, artifacts and logs back
through the API.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tabtwin.flows import deploy
from tabtwin.flows.cli import build_parser
from tabtwin.flows.progress import TrainingProgress, duration
from tabtwin.flows.registry import entry_path, fresh_request_path
from tabtwin.flows.spec import DEFAULT_MODEL
from tabtwin.pipeline.ingest import write_table
from tabtwin.pipeline.sample_data import make_sample_table

BIN = Path(sys.executable).parent
SERVER_START_LIMIT = 90  # seconds for the server to answer /health
RUN_LIMIT = 150  # seconds for a deployment's run to finish


def lenient_gate() -> dict:
    """Every threshold of the gate at its loosest: these tests check the plumbing, not the quality."""
    from dataclasses import fields

    from tabtwin.evaluation.gate import GateConfig

    return {f.name: 0 if f.name.startswith("min_") else 1 for f in fields(GateConfig)}


def shell_env(home: Path, api_url: str | None = None) -> dict:
    """The environment of a user's shell: no Prefect settings this test process picked up, Prefect's home in tmp,
    telemetry off, one thread per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               OMP_NUM_THREADS="1", TABTWIN_DEVICE="cpu")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


# ---------------------------------------------------------------------------------------------- no server


def test_deploy_without_an_api_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([str(BIN / "tabtwin"), "deploy", "--data", "t.csv"], env=shell_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"tabtwin: error: {deploy.NO_API}\n"
    assert "PREFECT_API_URL" in deploy.NO_API and "prefect server start" in deploy.NO_API


def test_deployments_carry_absolute_paths_and_the_timezone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nightly, request = deploy.deployments("data.csv", "0 3 * * *", "Europe/Berlin", out="o/runs", cache="o/cache",
                                          registry="o/registry", gate="g.json", epochs=2)
    assert {k: nightly.parameters[k] for k in ("data", "out", "cache", "registry", "gate")} == {
        "data": str(tmp_path / "data.csv"), "out": str(tmp_path / "o/runs"), "cache": str(tmp_path / "o/cache"),
        "registry": str(tmp_path / "o/registry"), "gate": str(tmp_path / "g.json")}
    assert nightly.parameters["epochs"] == 2
    (schedule,) = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * *", "Europe/Berlin")
    assert request.parameters == {"registry": str(tmp_path / "o/registry")}
    assert nightly.entrypoint == "tabtwin.flows.synthesize.synthesize"  # a worker imports it wherever it runs
    url, _ = deploy.deployments("postgresql://u@h/db", "0 3 * * *", "UTC")
    assert url.parameters["data"] == "postgresql://u@h/db"


def test_an_unknown_timezone_is_refused_by_name():
    from tabtwin.pipeline.errors import TabtwinError

    with pytest.raises(TabtwinError, match="unknown time zone 'Mars/Olympus'"):
        deploy.deployments("d.csv", timezone="Mars/Olympus")


def test_the_default_timezone_is_the_machines(monkeypatch):
    monkeypatch.setenv("TZ", "America/Chicago")
    assert deploy.local_timezone() == "America/Chicago"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert deploy.local_timezone() != "Not/AZone"
    (commands,) = [a for a in build_parser()._actions if a.dest == "command"]
    assert commands.choices["deploy"].parse_args(["--data", "d.csv"]).timezone == deploy.local_timezone()


def test_the_request_form_describes_every_parameter_and_offers_the_registered_models(tmp_path):
    registry = tmp_path / "registry"
    for name in ("b-csv-ctgan", "a-csv-tvae"):
        (registry / name).mkdir(parents=True)
        (registry / name / "registration.json").write_text("{}")
    (registry / "not-an-entry").mkdir()
    _, request = deploy.deployments("d.csv", registry=str(registry))
    schema = request._parameter_openapi_schema.model_dump()
    properties = schema["properties"]
    assert properties["model"]["enum"] == ["a-csv-tvae", "b-csv-ctgan"]
    assert all(p.get("description") for p in properties.values()), [n for n, p in properties.items() if not p.get("description")]
    assert properties["conditions"]["examples"] == [{"sex": "Female", "income": ">50K"}]
    assert "mapping of column to value" in properties["conditions"]["description"]
    assert properties["rows"]["exclusiveMinimum"] == 0
    assert properties["out"]["default"] is None and "new file per run" in " ".join(properties["out"]["description"].split())
    assert schema["required"] == ["model", "rows"]
    _, empty = deploy.deployments("d.csv", registry=str(tmp_path / "none"))
    assert "enum" not in empty._parameter_openapi_schema.properties["model"]  # nothing registered yet: free text


def test_every_synthesize_parameter_has_a_description():
    from prefect.utilities.callables import parameter_schema

    from tabtwin.flows.synthesize import synthesize

    properties = parameter_schema(synthesize.fn).properties
    assert properties["registry"]["description"] == "where passing models are registered for requests"
    assert all(p.get("description") for p in properties.values())


def test_a_request_without_out_gets_a_fresh_file(tmp_path):
    entry = entry_path("t-csv-tvae", tmp_path / "registry")
    assert entry == tmp_path / "registry" / "t-csv-tvae"
    assert entry_path(str(entry), None) == entry
    first, second = fresh_request_path(entry), fresh_request_path(entry)
    assert first != second and first.parent == second.parent == tmp_path / "requests"
    assert first.name.startswith("t-csv-tvae-") and first.suffix == ".parquet"


# ---------------------------------------------------------------------------------------------- retries


def test_io_retries_transient_errors_but_not_a_missing_file(tmp_path, monkeypatch):
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from tabtwin.flows import steps, synthesize
    from tabtwin.flows.spec import RunSpec
    from tabtwin.pipeline.errors import IngestError

    data = write_table(make_sample_table(60, seed=1), tmp_path / "t.csv")
    calls = []
    real = steps.load_inputs

    def flaky(spec):
        calls.append(spec.data)
        if spec.data == str(data) and len(calls) == 1:
            raise OSError("the network share blinked")
        return real(spec)

    monkeypatch.setattr(steps, "load_inputs", flaky)
    task = synthesize.io_task(lambda spec: steps.load_inputs(spec)).with_options(retry_delay_seconds=0)

    @flow
    def load(path: str):
        return task(RunSpec(data=path))

    with prefect_test_harness(server_startup_timeout=120):
        train, _, _ = load(str(data))
        assert len(train) == 48 and calls == [str(data), str(data)]  # retried once, then read
        calls.clear()
        with pytest.raises(IngestError, match="not found"):
            load(str(tmp_path / "missing.csv"))
        assert calls == [str(tmp_path / "missing.csv")]  # tried once: a missing file is not retried


# ---------------------------------------------------------------------------------------------- progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_training_progress_logs_every_few_seconds_with_the_time_left(caplog):
    clock = Clock()
    logger = logging.getLogger("tabtwin.test.progress")
    progress = TrainingProgress(logger, every=5, clock=clock, label="ctgan training")
    with caplog.at_level(logging.INFO, logger="tabtwin.test.progress"):
        for epoch in range(1, 11):
            clock.now = 2.0 * epoch
            progress(epoch, 100, {"loss": 1.0 / epoch, "seconds": clock.now})
        progress.finish()
    assert [r.getMessage() for r in caplog.records] == [
        "ctgan training epoch 1/100: loss 1; 2 s so far, at most 3 min left",
        "ctgan training epoch 4/100: loss 0.25; 8 s so far, at most 3 min left",
        "ctgan training epoch 7/100: loss 0.1429; 14 s so far, at most 3 min left",
        "ctgan training epoch 10/100: loss 0.1; 20 s so far, at most 3 min left",
        "ctgan training: 10 epochs in 20 s",
    ]
    assert (duration(42), duration(600), duration(3900 * 2)) == ("42 s", "10 min", "2 h 10 min")


def test_progress_bar_shows_no_rate_before_a_second_epoch(capsys):
    # The bar starts after the first epoch; timing that epoch as an instant showed thousands of epochs a second.
    progress = TrainingProgress(logging.getLogger("tabtwin.test.progress"), bar=True, label="tvae training")
    progress(1, 10, {"loss": 1.0})
    first = str(progress.bar)
    time.sleep(0.2)
    progress(2, 10, {"loss": 0.5})
    second = str(progress.bar)
    progress.finish()
    assert "1/10" in first and "?epoch/s" in first
    rate = float(second.split("epoch/s")[0].split()[-1])
    assert "2/10" in second and 0 < rate < 10  # one epoch in at least 0.2 s: at most 5 a second


@pytest.mark.parametrize("model", ["autoregressive", "ctgan"])
def test_generators_report_each_epoch_to_the_progress_callback(model):
    from tabtwin.generators import model_class

    seen = []
    generator = model_class(model)(epochs=2, batch_size=50, device="cpu", random_state=0, verbose=False)
    generator.progress_callback = lambda epoch, epochs, record: seen.append((epoch, epochs, sorted(record)))
    generator.fit(make_sample_table(200, seed=3))
    assert [s[:2] for s in seen] == [(1, 2), (2, 2)]
    assert all(any("loss" in name for name in names) for _, _, names in seen)
    assert "progress_callback" not in generator.get_params()


# ---------------------------------------------------------------------------------------------- real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop a process we started, and its children, by its pid (it leads its own session)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free port of 127.0.0.1, home in tmp, telemetry off; stopped by its pid."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    log = open(home / "server.log", "w")
    env = {**shell_env(home), "PREFECT_UI_ENABLED": "false"}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + SERVER_START_LIMIT
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Prefect server did not start in {SERVER_START_LIMIT} s: "
                            f"{(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"url": url, "home": home}
    finally:
        stop(server)
        log.close()


def api(url: str, path: str, body: dict | None = None):
    """One call to the server's REST API. A 503 (the server's SQLite busy under a loaded CI core) is retried a few
    times with back-off, as Prefect's own client does; any other error is the test's answer."""
    for attempt in range(5):
        request = urllib.request.Request(f"{url}{path}", data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"},
                                         method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or "null")
        except urllib.error.HTTPError as error:
            if error.code != 503 or attempt == 4:
                raise
            time.sleep(2 ** attempt)


def wait_for_final_state(url: str, run_id: str, worker: subprocess.Popen, worker_log: Path) -> dict:
    deadline = time.monotonic() + RUN_LIMIT
    while time.monotonic() < deadline:
        run = api(url, f"/flow_runs/{run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        assert worker.poll() is None, worker_log.read_text()[-3000:]
        time.sleep(1)
    pytest.fail(f"flow run {run_id} did not finish in {RUN_LIMIT} s: {worker_log.read_text()[-3000:]}")


def logs_of(url: str, run_id: str) -> list[str]:
    return [entry["message"] for entry in api(url, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})]


@pytest.mark.prefect_server
def test_deploy_and_run_both_deployments_on_a_real_server(prefect_server, tmp_path):
    url, home = prefect_server["url"], prefect_server["home"]
    env = shell_env(home, url)
    data = write_table(make_sample_table(300, seed=5), tmp_path / "customers.csv")
    (tmp_path / "lenient.json").write_text(json.dumps(lenient_gate()))
    settings = api(url, "/admin/settings")
    assert settings["server"]["analytics_enabled"] is False  # telemetry off, as the README starts it

    def tabtwin_deploy():
        result = subprocess.run(
            [str(BIN / "tabtwin"), "deploy", "--data", data.name, "--pool", "tabtwin-test", "--timezone", "Europe/Berlin",
             "--epochs", "2", "--batch-size", "50", "--device", "cpu", "--target", "colour", "--gate", "lenient.json",
             "--out", "o/runs", "--cache", "o/cache", "--registry", "o/registry"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "deployed synthesize/synthesize-nightly (work pool tabtwin-test)" in tabtwin_deploy()
    nightly = api(url, "/deployments/name/synthesize/synthesize-nightly")
    assert {k: nightly["parameters"][k] for k in ("data", "out", "cache", "registry")} == {
        "data": str(data), "out": str(tmp_path / "o/runs"), "cache": str(tmp_path / "o/cache"),
        "registry": str(tmp_path / "o/registry")}
    (schedule,) = nightly["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["schedule"]["timezone"] == "Europe/Berlin"

    worker_log = tmp_path / "worker.log"
    with open(worker_log, "w") as log:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "tabtwin-test"], cwd=tmp_path,
                                  env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # The nightly refresh, now: trains (its progress logged to the server), publishes, registers.
            run = api(url, f"/deployments/{nightly['id']}/create_flow_run", {})
            finished = wait_for_final_state(url, run["id"], worker, worker_log)
            assert finished["state"]["type"] == "COMPLETED", (finished["state"], worker_log.read_text()[-3000:])
            messages = logs_of(url, run["id"])
            assert any(m.startswith(f"{DEFAULT_MODEL} training epoch 1/2: steps ") and ", loss " in m for m in messages), messages
            assert any(m.startswith(f"{DEFAULT_MODEL} training: ") and " epochs in " in m for m in messages), messages
            entry = f"customers-csv-{DEFAULT_MODEL}"
            assert (tmp_path / "o" / "registry" / entry / "registration.json").is_file()

            # Deploying again refreshes the form's choice of models from the registry.
            tabtwin_deploy()
            request = api(url, "/deployments/name/request/request")
            assert request["parameter_openapi_schema"]["properties"]["model"]["enum"] == [entry]
            assert request["enforce_parameter_schema"] is True
            # The analyst fills in the form: the server enforces the choice, then the worker runs the request.
            with pytest.raises(urllib.error.HTTPError) as refused:
                api(url, f"/deployments/{request['id']}/create_flow_run", {"parameters": {"model": "nope", "rows": 5}})
            assert refused.value.code == 409
            run = api(url, f"/deployments/{request['id']}/create_flow_run",
                      {"parameters": {"model": entry, "rows": 40, "conditions": {"colour": "red"}}})
            finished = wait_for_final_state(url, run["id"], worker, worker_log)
        finally:
            stop(worker)
    assert finished["state"]["type"] == "COMPLETED", (finished["state"], worker_log.read_text()[-3000:])
    (table,) = (tmp_path / "o" / "requests").glob(f"{entry}-*.parquet")  # a fresh file, beside the registry
    from tabtwin.pipeline.ingest import read_table

    synthetic = read_table(table)
    assert len(synthetic) == 40 and (synthetic["colour"] == "red").all()
    assert (table.parent / f"{table.name}.report" / "report.html").is_file()
    artifacts = api(url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    assert {a["key"] for a in artifacts} >= {"request-report", "request-report-checks"}
    messages = logs_of(url, run["id"])
    assert any("Finished in state Completed" in m for m in messages), messages


@pytest.mark.prefect_server
def test_prefect_yaml_deploys_to_a_process_pool_with_absolute_paths(prefect_server):
    url, home = prefect_server["url"], prefect_server["home"]
    root = Path(__file__).resolve().parents[1]
    env = {**shell_env(home, url), "PWD": str(root)}
    created = subprocess.run([str(BIN / "prefect"), "work-pool", "create", "tabtwin", "--type", "process",
                              "--overwrite"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr
    result = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    nightly = api(url, "/deployments/name/synthesize/synthesize-nightly")
    assert nightly["work_pool_name"] == "tabtwin"
    assert {k: nightly["parameters"][k] for k in ("data", "out", "cache", "registry")} == {
        "data": str(root / "out/sample.csv"), "out": str(root / "out/runs"), "cache": str(root / "out/cache"),
        "registry": str(root / "out/registry")}
    assert nightly["schedules"][0]["schedule"]["timezone"] == "UTC"
    request = api(url, "/deployments/name/request/request")
    assert request["parameters"] == {"registry": str(root / "out/registry")}
    assert request["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(root)}}]
    assert all(p.get("description") for p in request["parameter_openapi_schema"]["properties"].values())


@pytest.mark.prefect_server
def test_run_in_a_terminal_shows_a_training_bar_and_no_logs(prefect_server, tmp_path):
    """`tabtwin run` with its stderr on a terminal: a progress bar for training, and Prefect quiet (no --verbose)."""
    import pty

    data = write_table(make_sample_table(300, seed=5), tmp_path / "t.csv")
    (tmp_path / "lenient.json").write_text(json.dumps(lenient_gate()))
    import threading

    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # a bar needs a width
    chunks: list[bytes] = []

    def drain():  # read while the command runs: a terminal holds only a few KiB
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [str(BIN / "tabtwin"), "run", str(data), "--epochs", "3", "--batch-size", "50", "--device", "cpu",
             "--gate", "lenient.json", "--out", "runs", "--cache", "cache", "--registry", "registry"],
            cwd=tmp_path, env=shell_env(prefect_server["home"], prefect_server["url"]), stdout=subprocess.PIPE,
            stderr=follower, timeout=300)
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    terminal = b"".join(chunks)
    assert result.returncode == 0, terminal.decode(errors="replace")[-2000:]
    text = terminal.decode(errors="replace")
    assert f"{DEFAULT_MODEL} training" in text and "3/3" in text and ("epoch/s" in text or "s/epoch" in text), text
    assert "training epoch 1/3:" not in text and "INFO" not in text, text  # Prefect's logs stay quiet
    assert "published" in result.stdout.decode()
