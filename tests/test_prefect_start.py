"""Issue 20, items 0 and 7: `tabtwin run` on a machine without a Prefect home, and a killed run's clean-up.

Each test runs the console script as a user would, in a new Prefect home (as on a new machine) and without any
PREFECT_* variable of the test session, so it sees Prefect's own defaults.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tabtwin.evaluation.gate import GateConfig
from tabtwin.flows import server
from tabtwin.pipeline.ingest import write_table
from tabtwin.pipeline.sample_data import make_sample_table

TABTWIN = str(Path(sys.executable).with_name("tabtwin"))
LENIENT = {f.name: 0 if f.name.startswith("min_") else 1 for f in dataclasses.fields(GateConfig)}


def new_machine_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), **extra}


def servers_of(home: Path) -> list[psutil.Process]:
    """Prefect servers (uvicorn processes) started for the Prefect home `home`, whoever their parent is now."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "uvicorn" in " ".join(process.info["cmdline"] or []) and process.environ().get("PREFECT_HOME") == str(home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def workspace(tmp_path):
    data = write_table(make_sample_table(150, seed=5), tmp_path / "shop.csv")
    gate = tmp_path / "lenient.json"
    gate.write_text(json.dumps(LENIENT))
    places = ["--out", tmp_path / "runs", "--cache", tmp_path / "cache", "--registry", tmp_path / "registry"]
    return {"data": data, "gate": gate, "places": [str(p) for p in places], "home": tmp_path / "prefect-home"}


def run_args(workspace, *extra) -> list[str]:
    return [TABTWIN, "run", str(workspace["data"]), "--model", "tvae", "--batch-size", "50", "--device", "cpu",
            "--gate", str(workspace["gate"]), *workspace["places"], *map(str, extra)]


def test_the_first_run_on_a_new_machine_starts_prefect(workspace):
    assert not workspace["home"].exists()
    result = subprocess.run(run_args(workspace, "--epochs", 1), env=new_machine_env(workspace["home"]),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "published" in result.stdout
    assert list((workspace["home"]).glob("*.db"))  # Prefect created its database in the new home
    assert not servers_of(workspace["home"])  # and stopped its server at the end


def test_a_server_that_does_not_start_in_time_is_one_line_and_stopped(workspace):
    # The user's own setting wins over tabtwin's longer wait: 1 s is too short for any first start.
    env = new_machine_env(workspace["home"], **{server.SETTING: "1"})
    result = subprocess.run(run_args(workspace, "--epochs", 1), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "did not start within 1 s" in result.stderr and server.SETTING in result.stderr
    assert not servers_of(workspace["home"])
    assert not (Path(workspace["places"][1])).exists()  # no run was published


def test_the_startup_timeout_is_tabtwins_unless_the_user_set_one(monkeypatch, tmp_path):
    from prefect.settings import Settings

    monkeypatch.setattr("prefect.settings.get_current_settings", lambda: Settings())
    monkeypatch.delenv(server.SETTING, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert server.startup_timeout() == server.STARTUP_TIMEOUT_S
    monkeypatch.setenv(server.SETTING, "45")
    assert server.startup_timeout() == 45


def test_a_killed_run_stops_the_prefect_server_it_started(workspace):
    process = subprocess.Popen(run_args(workspace, "--epochs", 5000), env=new_machine_env(workspace["home"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not servers_of(workspace["home"]):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.5)
        started = servers_of(workspace["home"])
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "stopped by signal" in err
    gone, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, [p.pid for p in alive]
