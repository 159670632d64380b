"""Quality benchmark (issue #11): every generator of ours and the peers, on the five tables, scored the same way.

What it measures: for each table and generator, the wall seconds to fit and to sample as many rows as the
training split, and the evaluation's figures: column shapes and pair trends (sdmetrics), the boosted detection
score (1 = indistinguishable) and its AUC, TSTR (AUC for classification, R2 for regression) next to TRTR, DCR
share, MIA AUC, exact copies, and the gate's verdict.

Protocol: each table (../shared/data, read at run time) is optionally capped to --max-rows random rows, its schema
inferred on the whole table (tabtwin.pipeline.schema.infer_schema), and split 80/20 with
tabtwin.flows.steps.split_train_holdout(df, 0.2, seed). Every generator fits on the same training split and
samples len(train) rows, then tabtwin.evaluation.report.evaluate(train, holdout, synthetic, schema, target)
scores it. Ours: tabtwin.generators.model_class(name) with default settings (device cpu, random_state seed;
--epochs sets tvae's and ctgan's), fit and sample timed here around the calls (the fit includes the encoder).
Peers: the ctgan package's CTGAN and TVAE (bench/.peer-venv, bench/peer_setup.sh) and MOSTLY AI's
mostlyai-engine TabularARGN with its defaults (bench/.argn-venv, bench/argn_setup.sh), each run by
bench/peer_quality.py in its own process, tables passed as Parquet, timed inside that process. Every model runs
alone, one after the other, with the same torch threads (--threads; torch.set_num_threads and OMP_NUM_THREADS).
A model that fails is recorded with its one-line error and the run goes on.

Run: `make bench` (all benches), or on its own after `bash bench/peer_setup.sh; bash bench/argn_setup.sh`:

    .venv/bin/python bench/quality.py --tables adult
    .venv/bin/python bench/quality.py --tables adult wa_churn --max-rows 2000 --epochs 2 --no-write   # smoke run

Time-matched rows: where a peer fits and samples faster than the flagship's defaults, `--max-seconds S` runs the
flagship with that training-time budget (its opt-in `max_seconds`), recorded as the generator
"autoregressive, max_seconds=S" beside the default row, to compare at no more wall time than the peer.

Runs accumulate: each row carries its own date, commit, threads and CPU affinity, and a run replaces only the
rows of the (table, generator) pairs it ran in bench/results/quality.json, so tables can be run one at a time.
From all stored rows it rewrites bench/results/quality.png (detection score against fit + sample seconds) and the
section between <!-- quality:start --> and <!-- quality:end --> in bench/RESULTS.md. `--fresh` drops the stored
rows first. To keep timings comparable on a shared machine, pin the run to a core, e.g.
`taskset -c 0 .venv/bin/python bench/quality.py --threads 1 ...`, and keep other work off that core.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from threads import pin_threads  # noqa: E402  (imports neither numpy nor torch)

DATA = ROOT.parent / "shared" / "data"
TABLES = {"adult": "income", "loans_full_schema": "loan_status", "wa_churn": "churn", "weather": "temp",
          "nassCDS": "dead"}
OURS = ["autoregressive", "tvae", "ctgan"]
PEERS = {"ctgan-peer": ("ctgan", ".peer-venv", "peer_setup.sh"), "tvae-peer": ("tvae", ".peer-venv", "peer_setup.sh"),
         "argn-peer": ("argn", ".argn-venv", "argn_setup.sh")}
MODELS = OURS + list(PEERS)
START, END = "<!-- quality:start -->", "<!-- quality:end -->"
COLUMNS = [("generator", "model", "{}"), ("fit s", "fit_s", "{:.1f}"), ("sample s", "sample_s", "{:.1f}"),
           ("shapes", "shapes", "{:.3f}"), ("pair trends", "pair_trends", "{:.3f}"),
           ("detection", "detection_score", "{:.3f}"), ("TSTR", "tstr", "{:.3f}"), ("TRTR", "trtr", "{:.3f}"),
           ("DCR share", "dcr_share", "{:.3f}"), ("MIA AUC", "mia_auc", "{:.3f}"), ("gate", "gate", "{}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    ap.add_argument("--models", nargs="+", choices=MODELS, default=MODELS)
    ap.add_argument("--epochs", type=int, help="epochs of our and the peer's ctgan/tvae (default: each package's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rows", type=int, help="cap on rows per table (a random sample), for a quick run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads, ours and every peer process")
    ap.add_argument("--out-md", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only; write no JSON, plot or markdown")
    ap.add_argument("--fresh", action="store_true", help="drop the rows stored by earlier runs")
    ap.add_argument("--peer-flush-denormal", action="store_true",
                    help="run the ctgan package with torch.set_flush_denormal(True), as mostlyai-engine trains; "
                         "recorded in the run")
    ap.add_argument("--max-seconds", type=float,
                    help="a training-time budget for the flagship (its opt-in max_seconds), for a time-matched row "
                         "against a faster peer; recorded as its own generator, 'autoregressive, max_seconds=S'")
    args = ap.parse_args()
    pin_threads(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    started = datetime.now(timezone.utc)
    run = run_info(args, started)
    rows = []
    with tempfile.TemporaryDirectory(prefix="quality-") as work:
        for table in args.tables:
            table_rows = [dict(row, run=run) for row in run_table(table, args, Path(work))]
            rows += table_rows
            print(f"\n### {table}\n\n{markdown_table(table_rows)}\n", flush=True)
    if not args.no_write:
        import fcntl

        # Runs pinned to different cores may finish together: merge and write one at a time.
        (BENCH / "results").mkdir(exist_ok=True)
        with open(BENCH / "results" / ".quality.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write(merge(rows, args.fresh), Path(args.out_md))


def merge(rows: list[dict], fresh: bool) -> dict:
    """Stored rows of other (table, generator) pairs, then this run's; tables keep the order of TABLES."""
    stored = BENCH / "results" / "quality.json"
    old = [] if fresh or not stored.exists() else json.loads(stored.read_text()).get("rows", [])
    ran = {(row["table"], row["model"]) for row in rows}
    kept = [row for row in old if (row["table"], row["model"]) not in ran and "run" in row]
    order = {(t, m): i for i, (t, m) in enumerate((t, m) for t in TABLES for m in MODELS)}
    merged = sorted(kept + rows, key=lambda row: (order.get((row["table"], row["model"].split(",")[0]), len(order)),
                                                  row["model"]))
    models = sorted({row["model"] for row in merged})
    return {"machine": machine(), "versions": versions(models), "rows": merged}


def run_table(table: str, args, work: Path) -> list[dict]:
    target = TABLES[table]
    df, schema, train, holdout = load_split(table, args.max_rows, args.seed)
    train_path = work / f"{table}-train.parquet"
    train.to_parquet(train_path, index=False)
    print(f"{table}: {len(df):,} rows, train {len(train):,}, holdout {len(holdout):,}, target {target}", flush=True)
    rows = []
    for model in args.models:
        label = f"{model}, max_seconds={args.max_seconds:g}" if args.max_seconds and model == "autoregressive" else model
        row = {"table": table, "model": label, "rows_train": len(train), "rows_holdout": len(holdout)}
        try:
            if model in PEERS:
                synthetic, timing = run_peer(model, train_path, train, schema, args, work)
            else:
                synthetic, timing = run_ours(model, train, schema, args)
            row.update(timing)
            synthetic = match_dtypes(synthetic, train)
            start = time.perf_counter()
            report = evaluate(train, holdout, synthetic, schema, target, args.seed)
            row.update(figures(report), eval_s=time.perf_counter() - start, status="ok")
        except Exception as err:  # noqa: BLE001  (a failed model is a result; the run goes on)
            row.update(status="failed", error=one_line(err))
        print(f"  {model}: " + (f"fit {row['fit_s']:.1f} s, sample {row['sample_s']:.1f} s, detection "
                                f"{row['detection_score']:.3f}, gate {row['gate']}"
                                + "".join(f"; {m}" for m in row["gate_failures"]) if row["status"] == "ok"
                                else f"FAILED: {row['error']}"), flush=True)
        rows.append(row)
    return rows


def run_ours(model: str, train, schema, args) -> tuple:
    from tabtwin.generators import model_class

    params = {"device": "cpu", "random_state": args.seed, "verbose": False}
    if args.max_seconds and model == "autoregressive":
        params["max_seconds"] = args.max_seconds
    if args.epochs and model in ("tvae", "ctgan"):
        params["epochs"] = args.epochs
    start = time.perf_counter()
    fitted = model_class(model)(**params).fit(train, schema)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    synthetic = fitted.sample(len(train), seed=args.seed)
    return synthetic, {"fit_s": fit_s, "sample_s": time.perf_counter() - start}


def run_peer(model: str, train_path: Path, train, schema, args, work: Path) -> tuple:
    import pandas as pd

    name, venv, setup = PEERS[model]
    python = BENCH / venv / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"bench/{venv} missing: run `bash bench/{setup}` first")
    out = work / f"{model}.parquet"
    cmd = [str(python), str(BENCH / "peer_quality.py"), "--model", name, "--train", str(train_path),
           "--rows", str(len(train)), "--out", str(out), "--seed", str(args.seed), "--threads", str(args.threads),
           "--discrete", *[s.name for s in schema.of_kind("discrete", "boolean")],
           "--datetime", *[f"{s.name}={s.datetime_format}" for s in schema.of_kind("datetime") if s.datetime_format]]
    if args.epochs and name != "argn":
        cmd += ["--epochs", str(args.epochs)]
    if args.peer_flush_denormal and name != "argn":
        cmd.append("--flush-denormal")
    # The peer's venv alone decides what it imports: no PYTHONPATH from this process.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(work))
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(lines[-1] if lines else f"exit code {done.returncode}")
    peer = json.loads(done.stdout.strip().splitlines()[-1])
    timing = {"fit_s": peer.pop("fit_seconds"), "sample_s": peer.pop("sample_seconds"), "peer": peer}
    return pd.read_parquet(out), timing


def match_dtypes(synthetic, train):
    """Same columns in the same order; text columns as object, as in the real table (pandas 3 reads them as str)."""
    synthetic = synthetic[list(train.columns)].copy()
    for column in train.columns:
        if train[column].dtype == object and synthetic[column].dtype != object:
            synthetic[column] = synthetic[column].astype(object).where(synthetic[column].notna(), None)
    return synthetic


def evaluate(train, holdout, synthetic, schema, target, seed):
    from tabtwin.evaluation.report import evaluate as tabtwin_evaluate

    return tabtwin_evaluate(train, holdout, synthetic, schema, target=target, seed=seed)


def figures(report: dict) -> dict:
    quality, detection = report["fidelity"]["quality"], report["fidelity"]["detection"]
    privacy, utility = report["privacy"], report["utility"] or {}
    metric = "auc" if utility.get("task") == "classification" else "r2"
    pairs = quality.get("pairs") or []
    return {
        "shapes": quality.get("column_shapes"), "pair_trends": quality.get("column_pair_trends"),
        "pairs_scored": sum(p.get("score") is not None for p in pairs), "pairs": len(pairs),
        "detection_score": detection.get("score"), "detection_auc": detection.get("auc"),
        "utility_metric": metric, "tstr": (utility.get("train_synthetic") or {}).get(metric),
        "trtr": (utility.get("train_real") or {}).get(metric),
        "dcr_share": privacy.get("dcr_share"), "mia_auc": privacy.get("mia_auc"),
        "exact_copies": privacy.get("exact_copy_share"), "holdout_exact_copies": privacy.get("holdout_exact_copy_share"),
        "gate": "pass" if report["gate"]["passed"] else "fail",
        "gate_failures": [f["message"] for f in report["gate"]["failures"]],
        "eval_seconds": report["meta"].get("seconds"),
    }


def one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    """One markdown row per result: `columns` are (heading, key, format); the first names the row, and a failed
    row shows its error instead of figures. A last column headed "gate" is left-aligned."""
    last = " --- |" if columns[-1][0] == "gate" else " ---: |"
    lines = ["| " + " | ".join(head for head, _, _ in columns) + " |",
             "| --- | " + " | ".join("---:" for _ in columns[1:-1]) + " |" + last]
    for row in rows:
        if row.get("status") != "ok":
            name = row[columns[0][1]]
            cells = [name, f"failed: {row.get('error', '')}".replace("|", "/")] + [""] * (len(columns) - 2)
        else:
            cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for _, key, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_info(args, started: datetime) -> dict:
    """What a row needs to be reproduced: date, threads, seed, epochs, row cap, pinned CPUs, commit."""
    return {"date": started.isoformat(timespec="seconds"), "threads": args.threads, "seed": args.seed,
            "epochs": args.epochs, "max_rows": args.max_rows, "cpus": sorted(os.sched_getaffinity(0)),
            "commit": commit(), **({"peer_flush_denormal": True} if args.peer_flush_denormal else {})}


def load_split(table: str, max_rows: int | None, seed: int):
    """The table from ../shared/data (optionally a seeded sample of max_rows), its inferred schema, and the
    80/20 split every bench uses: (df, schema, train, holdout)."""
    from tabtwin.flows.steps import split_train_holdout
    from tabtwin.pipeline.ingest import read_table
    from tabtwin.pipeline.schema import infer_schema

    df = read_table(str(DATA / f"{table}.csv"))
    if max_rows and len(df) > max_rows:
        df = df.sample(n=max_rows, random_state=seed).reset_index(drop=True)
    schema = infer_schema(df)
    train, holdout = split_train_holdout(df, 0.2, seed)
    return df, schema, train, holdout


def replace_section(out_md: Path, start: str, end: str, section: str) -> None:
    """Put `section` (which begins with `start` and ends with `end`) in place of that section of `out_md`, or
    append it."""
    text = out_md.read_text() if out_md.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    out_md.write_text(text)


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}


def commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        # The bench's own outputs do not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!bench/results", ":!bench/RESULTS.md"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        return None
    return (done.stdout.strip() + ("+dirty" if dirty else "")) or None


def versions(models: list[str]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "tabtwin", "sdmetrics"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    for package, venv in (("ctgan", ".peer-venv"), ("mostlyai-engine", ".argn-venv")):
        python = BENCH / venv / "bin" / "python"
        found[package] = None
        if python.exists():
            done = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                                  capture_output=True, text=True, cwd="/")
            found[package] = done.stdout.strip() or None
    return found


def write(result: dict, out_md: Path) -> None:
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / "quality.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    plot(result["rows"], results / "quality.png")
    m, v = result["machine"], result["versions"]
    parts = [START, "## Quality (issue #11)", "",
             f"- Machine: {m['cpu']}, {m['cores']} cores ({m['platform']})",
             "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
             "- Protocol: `bench/quality.py`: 80/20 split (split_train_holdout), schema inferred on the whole table, "
             "len(train) rows sampled, scored by `tabtwin.evaluation.report.evaluate` with the table's target; models "
             "run one at a time; fit and sample are wall seconds (peers timed in their own process, encoding "
             "included). TSTR/TRTR: AUC, R2 for weather. Each table's runs are listed under it (date, commit, torch "
             "threads, the cores the process was pinned to, epochs given to ctgan/tvae). Figures of every run in "
             "`bench/results/quality.json`.", ""]
    for table in dict.fromkeys(row["table"] for row in result["rows"]):
        table_rows = [row for row in result["rows"] if row["table"] == table]
        parts += [f"### {table} (target {TABLES[table]}, train {table_rows[0]['rows_train']:,} rows)", "",
                  markdown_table(table_rows), ""]
        for run, models in runs_of(table_rows):
            parts.append(f"- {', '.join(models)}: {describe(run)}")
        parts.append("")
    parts += ["![detection score against fit + sample seconds](results/quality.png)", "", END]
    replace_section(out_md, START, END, "\n".join(parts))
    print(f"wrote {results / 'quality.json'}, {results / 'quality.png'} and the quality section of {out_md}")


def runs_of(rows: list[dict]) -> list[tuple[dict, list[str]]]:
    grouped: dict[str, tuple[dict, list[str]]] = {}
    for row in rows:
        key = json.dumps(row["run"], sort_keys=True)
        grouped.setdefault(key, (row["run"], []))[1].append(row["model"])
    return list(grouped.values())


def describe(run: dict) -> str:
    cpus = run.get("cpus") or []
    where = ("not pinned" if len(cpus) >= (os.cpu_count() or 1)
             else f"pinned to core{'s' if len(cpus) > 1 else ''} {','.join(map(str, cpus))}")
    return (f"run {run['date']}, commit {run.get('commit') or '?'}, seed {run['seed']}, torch threads {run['threads']}, "
            f"{where}, "
            f"ctgan/tvae epochs {run.get('epochs') or 'package defaults'}"
            + (f", at most {run['max_rows']:,} rows" if run.get("max_rows") else "")
            + (", ctgan package with torch.set_flush_denormal(True)" if run.get("peer_flush_denormal") else ""))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    ok = [row for row in rows if row.get("status") == "ok"]
    models = list(dict.fromkeys(row["model"] for row in rows))
    tables = list(dict.fromkeys(row["table"] for row in rows))
    colours = {model: f"C{i}" for i, model in enumerate(models)}
    shapes = dict(zip(tables, "osD^vP*"))
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in ok:
        ax.scatter(row["fit_s"] + row["sample_s"], row["detection_score"], color=colours[row["model"]],
                   marker=shapes[row["table"]], s=60, edgecolors="black", linewidths=0.5)
    handles = [Line2D([], [], color=colours[m], marker="o", linestyle="", label=m) for m in models]
    handles += [Line2D([], [], color="grey", marker=shapes[t], linestyle="", label=t) for t in tables]
    ax.legend(handles=handles, fontsize=8, loc="best", ncol=2)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("wall seconds, fit + sample (log scale)")
    ax.set_ylabel("detection score (1 = indistinguishable)")
    ax.set_title("Quality against time: generators (colour) on each table (marker)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
