"""Benchmark the privacy metrics: privacy_metrics end to end, and the nearest-neighbour search alone.

    .venv/bin/python bench/evaluation_privacy.py [--rows 200000] [--device auto] [--chunk-rows N]
        [--threads N] [--out bench/results/evaluation_privacy.json]

Three mixed tables of --rows rows each (pipeline.sample_data.make_sample_table, seeds 1, 2, 3) play train,
holdout and a synthetic table drawn fresh from the same distribution. Timed once each, after a small warm-up
(CUDA start-up and first-call costs are not the search): encoding into the distance space, one
synthetic->train top-2 search (`nearest_distances`), and `privacy_metrics` end to end (six searches of
rows x rows pairs, plus exact-copy hashing). Peak RSS is the whole process's, data generation included.
On a CPU a 200k run is dominated by about 2.4e11 distance pairs: expect minutes per core; on a GPU, seconds.
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even if tabtwin is not installed

from bench.threads import pin_threads  # noqa: E402
RESULTS_JSON = BENCH / "results" / "evaluation_privacy.json"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="rows in each of train, holdout and synthetic")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--chunk-rows", type=int, default=None, help="default: evaluation.distance.default_chunk_rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: library default)")
    ap.add_argument("--out", default=str(RESULTS_JSON))
    return ap.parse_args()


ARGS = parse_args()
pin_threads(ARGS.threads)  # before torch loads

import torch  # noqa: E402

from tabtwin.evaluation.distance import default_chunk_rows, distance_space, nearest_distances  # noqa: E402
from tabtwin.evaluation.privacy import privacy_metrics  # noqa: E402
from tabtwin.pipeline.device import resolve_device  # noqa: E402
from tabtwin.pipeline.sample_data import make_sample_table  # noqa: E402
from tabtwin.pipeline.schema import infer_schema  # noqa: E402


def timed(fn, *args, **kwargs):
    """(result, seconds), waiting for queued GPU work so the time is the work's, not the launch's."""
    _synchronize()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    _synchronize()
    return result, time.perf_counter() - start


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_results_section(r: dict) -> None:
    from bench.generators import machine, replace_section

    section = "## Privacy search (issue #4)"
    lines = [section, "", f"- Date: {r['when']}", f"- Machine: {machine()}, device {r['device']}, torch threads "
             f"{r['torch_threads']}, blocks of {r['chunk_rows']} rows",
             f"- Three generated tables (make_sample_table) of {r['rows_each']:,} rows each as train, holdout and "
             f"synthetic; {r['modelled_columns']} modelled columns", "",
             "| step | seconds |", "| --- | ---: |",
             f"| encode train + synthetic into the distance space | {r['encode_s']:.2f} |",
             f"| one top-2 search, synthetic x train ({r['nearest_pairs_per_s'] / 1e6:.0f} M pairs/s) | "
             f"{r['nearest_top2_s']:.1f} |",
             f"| privacy_metrics end to end (every search, exact copies) | {r['privacy_metrics_s']:.1f} |", "",
             f"Peak RSS {r['peak_rss_mib']:.0f} MiB. On these independent draws: DCR share "
             f"{r['metrics']['dcr_share']:.3f}, MIA AUC {r['metrics']['mia_auc']:.3f}, exact copies "
             f"{r['metrics']['exact_copy_share']:.4f}."]
    replace_section(BENCH / "RESULTS.md", section, "\n".join(lines) + "\n")


def main() -> None:
    if ARGS.threads:
        torch.set_num_threads(ARGS.threads)
    device = resolve_device(ARGS.device)
    n = ARGS.rows
    (train, holdout, synthetic), generate_s = timed(lambda: [make_sample_table(n, seed=s) for s in (1, 2, 3)])
    schema = infer_schema(train)
    options = dict(device=str(device), chunk_rows=ARGS.chunk_rows, seed=ARGS.seed)
    warm = min(n, 256)
    privacy_metrics(train.iloc[:warm], holdout.iloc[:warm], synthetic.iloc[:warm], schema, **options)

    vectors, encode_s = timed(distance_space, [train, synthetic], schema)
    u_train, u_synthetic = (v.to(device) for v in vectors)
    _, nearest_s = timed(nearest_distances, u_synthetic, u_train, k=2, chunk_rows=ARGS.chunk_rows)
    del vectors, u_train, u_synthetic
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    metrics, end_to_end_s = timed(privacy_metrics, train, holdout, synthetic, schema, **options)

    for samples in ("distances", "dcr_histogram"):  # figures for the report, not the benchmark
        metrics.pop(samples)
    result = {
        "rows_each": n,
        "modelled_columns": len(metrics["columns"]),
        "device": metrics["device"],
        "device_name": _device_name(device),
        "chunk_rows": ARGS.chunk_rows or default_chunk_rows(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "generate_s": round(generate_s, 3),
        "encode_s": round(encode_s, 3),
        "nearest_top2_s": round(nearest_s, 3),
        "nearest_pairs_per_s": round(n * n / nearest_s),
        "privacy_metrics_s": round(end_to_end_s, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
        "metrics": metrics,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(ARGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if out == RESULTS_JSON:
        write_results_section(result)
    print(
        f"privacy metrics, {n:,} rows each x 3 tables, {result['modelled_columns']} modelled columns, "
        f"on {result['device']} ({result['device_name']})"
    )
    print(f"  encode (train + synthetic)          {encode_s:9.2f} s")
    print(f"  nearest_distances top-2 (syn->train) {nearest_s:9.2f} s   {result['nearest_pairs_per_s']:.3g} pairs/s")
    print(f"  privacy_metrics end to end          {end_to_end_s:9.2f} s")
    gpu = f", peak GPU {result['peak_gpu_mib']:.0f} MiB" if result["peak_gpu_mib"] is not None else ""
    print(f"  peak RSS {result['peak_rss_mib']:.0f} MiB{gpu}")
    print(
        f"  dcr_share {metrics['dcr_share']:.3f}, mia_auc {metrics['mia_auc']:.3f}, "
        f"exact copies {metrics['exact_copy_share']:.4f}"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
