"""tabtwin past one machine: seconds and peak memory per process against rows, one process against a LocalCluster of
2 single-threaded workers, in the same run (issue #22).

    taskset -c 0,1 .venv/bin/python bench/scale.py [--sizes 1000000 10000000 100000000] [--root /tmp/tabtwin-scale]
        [--stages statistics train sample evaluate] [--budgets 180 180 1200] [--solo-up-to 1000000] [--sample-rows N]

For each size, bench/tablegen.py writes an Adult-like table (its columns and pairwise dependencies) as parts of
1,000,000 rows (an eighth of a smaller table; the synthetic datasets' parts likewise) under --root, never whole in memory. Each
stage then runs in a fresh process (so its peak resident memory is its own), once in one process (sizes up to
--solo-up-to) and once on 2 workers:

- statistics: the schema from rows of every part, then the encoder statistics part by part, merged
  (`pipeline.streaming.table_statistics`; on the workers, a Dask reduction);
- train: `flows.fitting.fit_partitioned`, the flagship with `max_seconds` the size's --budgets (counted from the
  start: schema, statistics and encoding included, hence more at 100M rows): in one process the parts streamed into codes, on the cluster
  data-parallel (DDP over gloo, one rank per worker). Training rows a second = steps x batch rows x ranks over
  the seconds from the end of encoding to the end of training;
- sample: that size's model from `train` (the same runner's) writes --sample-rows rows (default: the table's
  rows) as a Parquet dataset (`flows.sampling`);
- evaluate: the detection test and sdmetrics' quality report on 200,000-row uniform samples of the table and the
  synthetic dataset (each test then takes its own 20,000 rows a side), and the exact copies over every row
  (`evaluation.scale`; DCR and the attacks, which cost
  the same at every size, are left to `tabtwin evaluate`).

Peak memory is `ru_maxrss` of the stage's process and, on the cluster, the largest of the workers'. Results go
to bench/results/scale.json, bench/results/scale.png (`bench/scale_plot.py`) and the "Past one machine" section
of bench/RESULTS.md, rewritten after every stage.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

SECTION = "## Past one machine (issue #22)"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_rows(rows: int) -> int:
    """Rows a part, of the table and of the synthetic dataset: 1,000,000, or an eighth of a smaller table (so
    that 2 workers have parts to share)."""
    return min(1_000_000, max(1, rows // 8))


def table_for(root: Path, rows: int) -> Path:
    from bench.tablegen import generate

    folder = root / f"table-{rows}"
    if not (folder / "_generated.json").exists():
        generate(rows, folder, part_rows=part_rows(rows), seed=0)
    return folder


def schema_of(table):
    from tabtwin.pipeline.streaming import partitioned_schema

    return partitioned_schema(table)


def stage_statistics(data: Path, client, args) -> dict:
    from tabtwin.pipeline.datasets import open_dataset
    from tabtwin.pipeline.streaming import table_statistics

    table = open_dataset(data)
    table_statistics(table, schema_of(table), client).finalise()
    return {"rows": table.count_rows()}


def stage_train(data: Path, client, args) -> dict:
    from tabtwin.flows.fitting import fit_partitioned
    from tabtwin.generators.autoregressive import AutoregressiveGenerator

    marks = []  # (seconds, line) of each stage the fit reports; training starts after the last one before it
    start = time.perf_counter()
    model = AutoregressiveGenerator(max_seconds=args.budget, device="cpu", verbose=False)
    model, rows = fit_partitioned(data, model, runner="local" if client is None else "dask",
                                  dask_address=client.scheduler.address if client else None,
                                  log=lambda line: marks.append((time.perf_counter() - start, line)))
    trained = time.perf_counter() - start
    # Training starts once every rank has its codes (each reports "rank r: ..." then) or, alone, once encoded.
    begun = max(t for t, line in marks if line.startswith(("encoded", "training on", "rank ")))
    world = len(client.scheduler_info()["workers"]) if client else 1
    steps = sum(record["steps"] for record in model.history_)
    model.save(args.model, overwrite=True)
    return {"rows": rows, "budget_s": args.budget, "training_seconds": round(trained - begun, 2), "steps": steps, "ranks": world,
            "batch_rows": model.batch_size, "training_rows_per_s": round(steps * model.batch_size * world / (trained - begun)),
            "epochs": len(model.history_), "stop_reason": model.stop_reason_,
            "validation_nll": next((r["validation_nll"] for r in reversed(model.history_) if "validation_nll" in r), None)}


def stage_sample(data: Path, client, args) -> dict:
    from tabtwin.flows.sampling import sample_dataset

    out = Path(args.root) / f"synthetic-{Path(data).name}-{args.label}"
    shutil.rmtree(out, ignore_errors=True)  # else an equal model's dataset from an earlier run is resumed, not timed
    rows = args.sample_rows or args.rows
    runner = "local" if client is None else "dask"
    # On the cluster this stage made (its address), whose workers' peak memory is then read.
    manifest = sample_dataset(args.model, rows, out, part_rows=part_rows(rows), seed=0, runner=runner,
                              dask_address=client.scheduler.address if client else None, overwrite=True,
                              log=lambda line: None)
    return {"rows": manifest["rows"], "out": str(out)}


def stage_evaluate(data: Path, client, args) -> dict:
    """Fidelity on 200,000-row uniform samples of the table and the synthetic dataset (the report's detection test and
    quality report), and the exact copies over every row (the hash join, on the workers with a client). DCR and
    the attacks on such samples cost ~10 minutes a core whatever the table's size (bench/RESULTS.md "Evaluation"),
    so this stage leaves them to `tabtwin evaluate`."""
    from tabtwin.evaluation.fidelity import detection_test, quality_report
    from tabtwin.evaluation.scale import EVALUATION_ROWS, exact_copies, uniform_sample
    from tabtwin.pipeline.datasets import open_dataset

    table, synthetic = open_dataset(data), open_dataset(args.synthetic)
    schema = schema_of(table)
    real_rows, synthetic_rows = uniform_sample(table, EVALUATION_ROWS, 0), uniform_sample(synthetic, EVALUATION_ROWS, 2)
    detection = detection_test(real_rows, synthetic_rows, schema)
    quality = quality_report(real_rows, synthetic_rows, schema)
    copies = exact_copies({"synthetic": synthetic}, table, schema, client)["synthetic"]
    return {"rows": table.count_rows(), "sampled": len(real_rows), "detection_score": detection["score"],
            "detection_score_ci95": detection["score_ci95"], "pair_trends": quality["column_pair_trends"],
            "column_shapes": quality["column_shapes"], "exact_copy_share": copies / synthetic.count_rows()}


STAGES = {"statistics": stage_statistics, "train": stage_train, "sample": stage_sample, "evaluate": stage_evaluate}


def run_stage(args) -> None:
    """One stage in this process (the child side): prints one JSON line."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.workers:
        from distributed import Client

        from tabtwin.flows.cluster import local_cluster

        with local_cluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None) as cluster, Client(cluster) as client:
            result = STAGES[args.stage](Path(args.data), client, args)
            workers = client.run(peak_mib)
        result["worker_peak_mib"] = max(workers.values())
    else:
        result = STAGES[args.stage](Path(args.data), None, args)
    result.update(seconds=round(time.perf_counter() - start, 2), peak_mib=round(peak_mib(), 1))
    print(json.dumps(result), flush=True)


def child(stage: str, data: Path, workers: int, **extra) -> dict:
    argv = [sys.executable, __file__, "stage", stage, "--data", str(data), "--workers", str(workers)]
    for key, value in extra.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{stage} ({workers} workers) failed: {result.stderr.strip()[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    ap.add_argument("--root", type=Path, default=Path("/tmp/tabtwin-scale"))
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--budgets", type=float, nargs="+", default=[180.0, 180.0, 1200.0],
                    help="the fit's time budget in seconds at each size (the last for any further sizes)")
    ap.add_argument("--solo-up-to", type=int, default=1_000_000, help="largest size also run in one process")
    ap.add_argument("--cluster-from", type=int, default=0, help="smallest size also run on the workers")
    ap.add_argument("--results", default="scale", help="bench/results/NAME.json and .png; a RESULTS.md section of "
                    "its own for any other name (another protocol, e.g. other budgets)")
    ap.add_argument("--sample-rows", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="keep bench/results/scale.json's records; run the rest")
    args = ap.parse_args()
    stored = BENCH / "results" / f"{args.results}.json"
    records = json.loads(stored.read_text())["records"] if args.resume and stored.exists() else []
    done = {(r["rows"], r["stage"], r["workers"]) for r in records}
    for size, rows in enumerate(args.sizes):
        args.budget = args.budgets[min(size, len(args.budgets) - 1)]
        data = table_for(args.root, rows)
        for workers in [w for w in (0, args.workers) if (rows <= args.solo_up_to if w == 0 else rows >= args.cluster_from)]:
            label = f"{workers}w" + ("" if args.results == "scale" else f"-{args.results}")
            synthetic = args.root / f"synthetic-{data.name}-{label}"
            model = args.root / f"model-{data.name}-{label}"
            for stage in args.stages:
                if (rows, stage, workers) in done:
                    continue
                result = child(stage, data, workers, rows=rows, model=model, synthetic=synthetic,
                               root=args.root, label=label, sample_rows=args.sample_rows, budget=args.budget)
                record = {"rows": rows, "stage": stage, "workers": workers, **result}
                print(json.dumps(record), flush=True)
                records.append(record)
                write_results(records, args)  # after every stage: a long run's figures survive its interruption


def speed(r: dict) -> float:
    """Rows a second of a stage: trained rows for `train`, the table's (or sampled) rows for the others."""
    return r["training_rows_per_s"] if r["stage"] == "train" else r["rows"] / r["seconds"]


def figures(r: dict) -> str:
    if r["stage"] == "train":
        return (f"{r['steps']:,} steps x {r['batch_rows']} rows x {r['ranks']} in {r['training_seconds']:.0f} s, "
                f"{r['epochs']} epochs ({r['stop_reason']}), validation NLL {r['validation_nll']:.3f}")
    return ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k in ("detection_score", "pair_trends",
                                                                     "column_shapes", "exact_copy_share") and v is not None)


def peak(r: dict) -> float:
    """The stage's largest process: the worker's on the cluster (the client only waits), else the process's."""
    return r.get("worker_peak_mib", r["peak_mib"])


def summary(records: list[dict]) -> list[str]:
    """2 workers' rows a second over one process's at each size, and each stage's peak memory from the smallest
    size to the largest on the cluster."""
    lines, by = [], {(r["rows"], r["stage"], r["workers"]): r for r in records}
    for (rows, stage, workers), r in by.items():
        solo = by.get((rows, stage, 0))
        if workers and solo:
            lines.append(f"- {rows:,} rows, {stage}: 2 workers {speed(r) / speed(solo):.2f}x one process's rows a second")
    sizes = sorted({r["rows"] for r in records if r["workers"]})
    for stage in dict.fromkeys(r["stage"] for r in records):
        ends = [by.get((rows, stage, 2)) for rows in (sizes[:1] + sizes[-1:])] if len(sizes) > 1 else []
        if len(ends) == 2 and all(ends):
            lines.append(f"- {stage}, peak memory per process from {sizes[0]:,} to {sizes[-1]:,} rows (2 workers): "
                         f"{peak(ends[0]):,.0f} -> {peak(ends[1]):,.0f} MiB ({peak(ends[1]) / peak(ends[0]) - 1:+.0%})")
    return lines


def write_results(records: list[dict], args) -> None:
    from bench.generators import machine, replace_section

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (BENCH / "results").mkdir(exist_ok=True)
    section = SECTION if args.results == "scale" else f"## Past one machine, {args.results} (issue #22)"
    (BENCH / "results" / f"{args.results}.json").write_text(json.dumps({"date": date, "machine": machine(), "budgets_s": args.budgets,
                                                             "records": records}, indent=2))
    lines = [section, "", f"- Date: {date}", f"- Machine: {machine()}; the machine otherwise quiet",
             "- `bench/scale.py` (its docstring): one process (1 torch thread) against a LocalCluster of 2 "
             f"single-threaded workers; the fit's budget at each size {', '.join(f'{b:.0f}' for b in args.budgets)} s from its start; peak = resident memory "
             "of the process and of the largest worker", "",
             "| rows | stage | workers | seconds | rows/s | peak MiB (process / worker) | figures |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in records:
        peaks = f"{r['peak_mib']:.0f}" + (f" / {r['worker_peak_mib']:.0f}" if "worker_peak_mib" in r else "")
        lines.append(f"| {r['rows']:,} | {r['stage']} | {r['workers'] or 1} | {r['seconds']:.1f} | {speed(r):,.0f} | "
                     f"{peaks} | {figures(r)} |")
    from bench.scale_plot import plot

    plot(records, BENCH / "results" / f"{args.results}.png")
    notes = ["", f"![seconds and peak memory per process against rows](results/{args.results}.png)", "",
             "What these figures say against issue #22's targets: README.md, Benchmarks, \"Past one machine\".", ""]
    replace_section(BENCH / "RESULTS.md", section, "\n".join(lines + [""] + summary(records) + notes))


if __name__ == "__main__":
    if sys.argv[1:2] == ["stage"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("marker")
        ap.add_argument("stage", choices=list(STAGES))
        for name in ("data", "model", "synthetic", "root", "label"):
            ap.add_argument(f"--{name}")
        for name in ("workers", "rows", "sample-rows"):
            ap.add_argument(f"--{name}", type=int, default=0)
        ap.add_argument("--budget", type=float)
        run_stage(ap.parse_args())
    else:
        main()
