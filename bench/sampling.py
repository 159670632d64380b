"""Benchmark sampling: 1,000,000 rows generated and decoded to a DataFrame, ours and the ctgan package's (issue #3).

    .venv/bin/python bench/sampling.py [--data ../shared/data/adult.csv] [--rows 1000000] [--epochs 5]
        [--models ctgan tvae] [--no-peer]

Each (model, side) trains for a few epochs on Adult's 80 % split (seed 0) in its own process (the same runner
as bench/generators.py, taking turns with the other side), then samples --rows rows in its turn; the time is
`sample(rows)` alone, decoding included. The
model's quality barely matters here: sampling costs the same network passes and decoding whatever the weights.
Results go to bench/results/sampling.json and the "Sampling" section of bench/RESULTS.md.
"""

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from sklearn.model_selection import train_test_split  # noqa: E402

from bench.generators import PYTHON, machine, replace_section, run_pair  # noqa: E402
from tabtwin.pipeline.ingest import read_table  # noqa: E402
from tabtwin.pipeline.schema import infer_schema  # noqa: E402

SECTION = "## Sampling (issue #3)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["ctgan", "tvae"])
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()

    train, _ = train_test_split(read_table(args.data), test_size=0.2, random_state=0)
    discrete = [s.name for s in infer_schema(train).of_kind("discrete", "boolean")]
    sides = ["ours", "peer"] if args.peer and PYTHON["peer"].exists() else ["ours"]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        train_path = Path(work) / "train.parquet"
        train.reset_index(drop=True).to_parquet(train_path, index=False)
        for model in args.models:
            pair = run_pair(sides, model, train_path, discrete, args.epochs, args.rows, Path(work))
            for side in sides:
                figures = pair[side]
                figures["sample_s"] = args.rows / figures["sample_rows_per_s"]
                rows.append(figures)
                print(f"{model:5s} {side:4s} {args.rows:,} rows in {figures['sample_s']:.1f} s "
                      f"({figures['sample_rows_per_s']:,.0f} rows/s)", flush=True)
    write_results(rows, args)


def write_results(rows, args) -> None:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (BENCH / "results").mkdir(exist_ok=True)
    payload = {"date": date, "machine": machine(), "rows_sampled": args.rows, "epochs": args.epochs, "rows": rows}
    (BENCH / "results" / "sampling.json").write_text(json.dumps(payload, indent=2))
    lines = [SECTION, "", f"- Date: {date}", f"- Machine: {machine()}, device cpu, torch threads {rows[0]['threads']}",
             f"- Protocol: each model trained {args.epochs} epochs on Adult's 80 % split in its own process, then "
             f"`sample({args.rows:,})` timed once, decoding to a DataFrame included", "",
             "| model | side | seconds | rows/s |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {r['model']} | {r['side']} | {r['sample_s']:.1f} | {r['sample_rows_per_s']:,.0f} |" for r in rows]
    lines.append("")
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
