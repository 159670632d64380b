"""tabtwin past one machine: seconds and peak memory per process against rows, one process against a LocalCluster of
2 single-threaded workers, in the same run (issue #22).

    taskset -c 0,1 .venv/bin/python bench/scale.py [--sizes 1000000 10000000 100000000] [--root /tmp/tabtwin-scale]
        [--stages statistics sample evaluate] [--sample-rows N]

For each size, bench/tablegen.py writes an Adult-like table (its columns and pairwise dependencies) as parts of
1,000,000 rows under --root, never whole in memory, and a holdout of a tenth of the rows from another seed. Each
stage then runs in a fresh process (so its peak resident memory is its own), once in one process and once on 2
workers:

- statistics: the schema from rows of every part, then the encoder statistics (`pipeline.statistics`) part by
  part, merged;
- sample: the flagship (fitted once per size on 20,000 rows of the table: sampling costs the same whatever the
  weights) writes --sample-rows rows (default: the table's rows) as a Parquet dataset (`flows.sampling`);
- evaluate: `evaluation.scale.evaluate_tables` on 200,000-row samples of the table, the holdout and the synthetic
  dataset, with the exact copies over every row.

Peak memory is `ru_maxrss` of the stage's process and, on the cluster, the largest of the workers'. Results go
to bench/results/scale.json, the "Past one machine" section of bench/RESULTS.md and bench/results/scale.png.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

SECTION = "## Past one machine (issue #22)"
SCHEMA_ROWS = 100_000
MODEL_ROWS = 20_000


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table_for(root: Path, rows: int, seed: int) -> Path:
    from bench.tablegen import generate

    folder = root / f"{'holdout' if seed else 'table'}-{rows}"
    if not (folder / "_generated.json").exists():
        generate(rows, folder, seed=seed)
    return folder


def schema_of(table):
    from tabtwin.pipeline.schema import infer_schema

    return infer_schema(table.spread(SCHEMA_ROWS))


def part_statistics(table, index: int, offset: int, schema):
    from tabtwin.pipeline.statistics import TableStatistics

    return TableStatistics(schema).update(table.read_part(index), offset)


def stage_statistics(data: Path, client, args) -> dict:
    from tabtwin.pipeline.datasets import open_dataset

    table = open_dataset(data)
    schema = schema_of(table)
    sizes = table.part_rows()
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    if client is None:
        total = None
        for index, offset in enumerate(offsets):
            part = part_statistics(table, index, offset, schema)
            total = part if total is None else total.merge(part)
    else:
        futures = client.map(part_statistics, [table] * len(sizes), range(len(sizes)), offsets, schema=schema)
        total = None
        for part in client.gather(futures):
            total = part if total is None else total.merge(part)
    total.finalise()
    return {"rows": sum(sizes)}


def stage_sample(data: Path, client, args) -> dict:
    from tabtwin.flows.sampling import sample_dataset

    out = Path(args.root) / f"synthetic-{Path(data).name}-{args.label}"
    rows = args.sample_rows or args.rows
    runner = "local" if client is None else "dask"
    # On the cluster this stage made (its address), whose workers' peak memory is then read.
    manifest = sample_dataset(args.model, rows, out, seed=0, runner=runner,
                              dask_address=client.scheduler.address if client else None, overwrite=True,
                              log=lambda line: None)
    return {"rows": manifest["rows"], "out": str(out)}


def stage_evaluate(data: Path, client, args) -> dict:
    from tabtwin.evaluation.scale import evaluate_tables
    from tabtwin.pipeline.datasets import open_dataset

    table = open_dataset(data)
    results, _ = evaluate_tables(table, open_dataset(args.holdout), open_dataset(args.synthetic), schema_of(table),
                                 client=client, target="income", device="cpu")
    fidelity = results["fidelity"]
    return {"rows": table.count_rows(), "detection_score": fidelity["detection"]["score"],
            "detection_auc_ci95": fidelity["detection"]["auc_ci95"],
            "pair_trends": fidelity["quality"].get("column_pair_trends"),
            "exact_copy_share": results["privacy"]["exact_copy_share"], "samples": results["meta"]["samples"]}


STAGES = {"statistics": stage_statistics, "sample": stage_sample, "evaluate": stage_evaluate}


def run_stage(args) -> None:
    """One stage in this process (the child side): prints one JSON line."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.workers:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
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


def fit_model(data: Path, root: Path) -> Path:
    """The flagship on MODEL_ROWS rows from every part (sampling throughput does not depend on its quality)."""
    from tabtwin.generators.autoregressive import AutoregressiveGenerator
    from tabtwin.pipeline.datasets import open_dataset

    out = root / f"model-{data.name}"
    if not (out / "config.json").exists():
        AutoregressiveGenerator(epochs=3, device="cpu").fit(open_dataset(data).spread(MODEL_ROWS)).save(out, overwrite=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000, 100_000_000])
    ap.add_argument("--root", type=Path, default=Path("/tmp/tabtwin-scale"))
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--sample-rows", type=int)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    records = []
    for rows in args.sizes:
        data, holdout = table_for(args.root, rows, 0), table_for(args.root, rows // 10, 1)
        model = fit_model(data, args.root) if {"sample", "evaluate"} & set(args.stages) else None
        for workers in (0, args.workers):
            label = f"{workers}w"
            synthetic = args.root / f"synthetic-{data.name}-{label}"
            for stage in args.stages:
                result = child(stage, data, workers, rows=rows, model=model, holdout=holdout, synthetic=synthetic,
                               root=args.root, label=label, sample_rows=args.sample_rows)
                record = {"rows": rows, "stage": stage, "workers": workers, **result}
                print(json.dumps(record), flush=True)
                records.append(record)
    write_results(records)


def write_results(records: list[dict]) -> None:
    from bench.generators import machine, replace_section

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "scale.json").write_text(json.dumps({"date": date, "machine": machine(), "records": records},
                                                            indent=2))
    lines = [SECTION, "", f"- Date: {date}", f"- Machine: {machine()}", "- One process (1 torch thread) against a "
             "LocalCluster of 2 single-threaded workers; peak = resident memory of the process (and of the largest "
             "worker)", "", "| rows | stage | workers | seconds | rows/s | peak MiB (client / worker) | figures |",
             "| ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in records:
        speed = r["rows"] / r["seconds"]
        peaks = f"{r['peak_mib']:.0f}" + (f" / {r['worker_peak_mib']:.0f}" if "worker_peak_mib" in r else "")
        figures = ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k in ("detection_score", "pair_trends",
                                                                          "exact_copy_share") and v is not None)
        lines.append(f"| {r['rows']:,} | {r['stage']} | {r['workers'] or 1} | {r['seconds']:.1f} | {speed:,.0f} | "
                     f"{peaks} | {figures} |")
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["stage"]:
        ap = argparse.ArgumentParser()
        ap.add_argument("marker")
        ap.add_argument("stage", choices=list(STAGES))
        for name in ("data", "model", "holdout", "synthetic", "root", "label"):
            ap.add_argument(f"--{name}")
        for name in ("workers", "rows", "sample-rows"):
            ap.add_argument(f"--{name}", type=int, default=0)
        run_stage(ap.parse_args())
    else:
        main()
