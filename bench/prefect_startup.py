"""What Prefect costs a run (issue 20, item 0): the temporary server's first and later starts, and `tabtwin run`
against `fit` + `sample` + `evaluate` doing the same work as three commands.

    taskset -c 0 .venv/bin/python bench/prefect_startup.py [--data ../shared/data/adult.csv] [--rows 5000]

Every figure is the wall time of a fresh process, as a user's command pays it, with no PREFECT_* variable set
and torch at one thread. "first" starts in a new Prefect home (a new machine: the server creates and migrates
its database), "later" in the home the first one left. The pipeline case: --rows rows of --data, the flagship
at --epochs epochs, target --target; `run` splits 80/20 itself; the three commands get the same split, written to
files by the same function.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bench.generators import machine, replace_section  # noqa: E402

SECTION = "## Prefect's cost to a run (issue #20)"
BIN = Path(sys.executable).parent
START = ("import time; t = time.perf_counter(); from tabtwin.flows.server import ensure_api; ensure_api(); "
         "print(time.perf_counter() - t)")


def env_for(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def timed(argv: list, home: Path) -> tuple[float, str]:
    """(wall seconds, stdout) of one command in a fresh process; a failure stops the bench."""
    start = time.perf_counter()
    result = subprocess.run([str(a) for a in argv], env=env_for(home), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 3):  # 3: the gate failed, the work was done
        raise SystemExit(f"{argv[:2]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return seconds, result.stdout


def server_starts(root: Path, repeats: int) -> dict:
    first, later = [], []
    for i in range(repeats):
        home = root / f"home-{i}"
        for bucket in (first, later):
            wall, out = timed([sys.executable, "-c", START], home)
            bucket.append({"wall_s": wall, "start_s": float(out.strip().splitlines()[-1])})
    return {"first": first, "later": later}


def pipeline(root: Path, args) -> dict:
    from tabtwin.flows.steps import split_train_holdout
    from tabtwin.pipeline.ingest import read_table, write_table

    df = read_table(args.data)
    df = df.sample(n=min(args.rows, len(df)), random_state=0).reset_index(drop=True)
    data = write_table(df, root / "table.csv")
    train, holdout = split_train_holdout(df, 0.2, 0)
    train_file, holdout_file = write_table(train, root / "train.csv"), write_table(holdout, root / "holdout.csv")
    tabtwin = BIN / "tabtwin"
    model = ["--model", "autoregressive", "--epochs", args.epochs, "--device", "cpu"]
    home = root / "home-pipeline"
    steps = {
        "fit": timed([tabtwin, "fit", train_file, *model, "--quiet", "--out", root / "model"], home)[0],
        "sample": timed([tabtwin, "sample", root / "model", "--rows", len(train), "--seed", 0,
                         "--out", root / "synthetic.parquet"], home)[0],
        "evaluate": timed([tabtwin, "evaluate", "--real", train_file, "--holdout", holdout_file, "--synthetic",
                           root / "synthetic.parquet", "--target", args.target, "--out", root / "report"], home)[0],
    }
    runs = {}
    for label in ("first", "later"):  # the pipeline's home is new for the first run
        places = ["--out", root / f"runs-{label}", "--cache", root / f"cache-{label}", "--registry", root / f"reg-{label}"]
        runs[label] = timed([tabtwin, "run", data, *model, "--target", args.target, *places], root / "home-run")[0]
    return {"rows": len(df), "train": len(train), "epochs": args.epochs, "steps_s": steps,
            "three_commands_s": sum(steps.values()), "run_s": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(BENCH.parent.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--target", default="income")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        starts = server_starts(Path(tmp), args.repeats)
        print(json.dumps(starts), flush=True)
        flow = pipeline(Path(tmp), args)
        print(json.dumps(flow), flush=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    record = {"date": date, "machine": machine(), "cores": sorted(cores or []), "starts": starts, "pipeline": flow}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "prefect_startup.json").write_text(json.dumps(record, indent=2))

    def spread(rows, key):
        values = sorted(r[key] for r in rows)
        return f"{values[len(values) // 2]:.1f} ({values[0]:.1f}-{values[-1]:.1f})"

    steps = flow["steps_s"]
    lines = [SECTION, "", f"- Date: {date}", f"- Machine: {machine()}; pinned to cores {record['cores']}, one torch thread",
             f"- Temporary Prefect server, {args.repeats} new homes: median (min-max) seconds",
             "", "| start | server up s | whole process s |", "| --- | ---: | ---: |",
             f"| first (new home: database created) | {spread(starts['first'], 'start_s')} | {spread(starts['first'], 'wall_s')} |",
             f"| later (same home) | {spread(starts['later'], 'start_s')} | {spread(starts['later'], 'wall_s')} |",
             "", f"- Pipeline: {flow['rows']:,} rows of {Path(args.data).name} (train {flow['train']:,}), the flagship at "
             f"{flow['epochs']} epochs, target {args.target}",
             "", "| how | seconds |", "| --- | ---: |",
             f"| fit + sample + evaluate (three commands) | {flow['three_commands_s']:.1f} (fit {steps['fit']:.1f}, "
             f"sample {steps['sample']:.1f}, evaluate {steps['evaluate']:.1f}) |",
             f"| run, new Prefect home | {flow['run_s']['first']:.1f} |",
             f"| run, later | {flow['run_s']['later']:.1f} |"]
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
