"""How long one evaluation takes, per section, on Adult and on a 200k-row generated table (issue #4).

    .venv/bin/python bench/evaluation_time.py [--data ../shared/data/adult.csv] [--rows 200000] [--device auto]

Adult: 80/20 split (seed 0), synthetic rows from our TVAE (30 epochs), target income. Generated: train and
synthetic tables of --rows rows each and a holdout a quarter that size (make_sample_table, different seeds),
no target. Figures: seconds per section (quality, detection, privacy, utility, contracts), total, peak RSS.
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
sys.path.insert(0, str(BENCH.parent))

from sklearn.model_selection import train_test_split  # noqa: E402

from bench.generators import machine, replace_section  # noqa: E402
from tabtwin.evaluation.report import evaluate  # noqa: E402
from tabtwin.generators.tvae import TVAE  # noqa: E402
from tabtwin.pipeline.ingest import read_table  # noqa: E402
from tabtwin.pipeline.sample_data import make_sample_table  # noqa: E402
from tabtwin.pipeline.schema import infer_schema  # noqa: E402

SECTION = "## Evaluation (issue #4)"


def timed_evaluation(name, train, holdout, synthetic, target, device) -> dict:
    schema = infer_schema(train)
    start = time.perf_counter()
    results = evaluate(train, holdout, synthetic, schema, target=target, device=device)
    total = time.perf_counter() - start
    row = {"case": name, "train": len(train), "holdout": len(holdout), "synthetic": len(synthetic),
           "total_s": total, **results["meta"]["seconds"], "gate_passed": results["gate"]["passed"],
           "device": results["privacy"]["device"],
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(BENCH.parent.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    rows = []
    adult = read_table(args.data)
    train, holdout = (f.reset_index(drop=True) for f in train_test_split(adult, test_size=0.2, random_state=0))
    synthetic = TVAE(epochs=30, random_state=0, verbose=False).fit(train).sample(len(train), seed=0)
    rows.append(timed_evaluation("adult", train, holdout, synthetic, "income", args.device))
    big_train, big_synthetic = make_sample_table(args.rows, seed=1), make_sample_table(args.rows, seed=2)
    big_holdout = make_sample_table(args.rows // 4, seed=3)
    rows.append(timed_evaluation(f"generated {args.rows:,}", big_train, big_holdout, big_synthetic, None, args.device))

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "evaluation.json").write_text(json.dumps({"date": date, "machine": machine(), "rows": rows}, indent=2))
    lines = [SECTION, "", f"- Date: {date}", f"- Machine: {machine()}",
             "- Adult: 80/20 split, synthetic = our TVAE (30 epochs), target income. Generated: make_sample_table, "
             "train and synthetic of the same size, holdout a quarter of it, no target.",
             "- Sections: quality = sdmetrics QualityReport on up to 20,000 rows per side; detection = boosted classifier, "
             "3-fold, up to 20,000 rows per side; privacy = every nearest-neighbour search on all rows (chunked matmuls in torch)",
             "", "| case | train | holdout | synthetic | quality s | detection s | privacy s | utility s | contracts s | total s | peak RSS MiB | device |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['train']:,} | {r['holdout']:,} | {r['synthetic']:,} | {r['quality']:.1f} | "
                     f"{r['detection']:.1f} | {r['privacy']:.1f} | {r.get('utility', 0):.1f} | {r['contracts']:.1f} | "
                     f"{r['total_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['device']} |")
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
