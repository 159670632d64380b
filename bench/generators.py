"""Benchmark tabtwin's CTGAN and TVAE against the ctgan package's, on Adult, in one run (issue #3).

    .venv/bin/python bench/generators.py [--data ../shared/data/adult.csv] [--epochs 30] [--models ctgan tvae]
        [--sample-rows 100000] [--rounds 1] [--no-peer]

Adult is split 80/20 (seed 0). Each (model, side) trains in its own process (bench/generator_runner.py; the
peer side in bench/.peer-venv, see bench/peer_setup.sh) with the same epochs, batch size, CPU threads and
discrete columns. Every synthetic table (as many rows as the training split) is then scored here, the same
way: sdmetrics QualityReport (shapes, trends) and the boosted detection test against the training split, and
the test AUC on the real 20 % of a HistGradientBoosting classifier trained on the synthetic rows to predict
income (next to the same classifier trained on the real rows). Results go to bench/results/generators.json and
the "Generators" section of bench/RESULTS.md.

Speed: ours and the peer train side by side and take turns, epoch by epoch (ours, peer, ours, ...; each waits
while the other runs), then sample in turn. A shared machine's speed drifts by up to 2x within minutes; taking
turns pairs each of our epochs with a peer epoch seconds away, so the ratio of the pair is measured under the
same conditions. The headline is the median over pairs of peer epoch / our epoch. --rounds (3) repeats the
whole comparison with seeds 0, 1, 2: quality moves by about 0.01-0.02 between seeds, more than between versions.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from tabtwin.evaluation.fidelity import detection_test, quality_report  # noqa: E402
from tabtwin.evaluation.utility import utility_report  # noqa: E402
from tabtwin.pipeline.ingest import read_table  # noqa: E402
from tabtwin.pipeline.schema import infer_schema  # noqa: E402

PYTHON = {"ours": ROOT / ".venv" / "bin" / "python", "peer": BENCH / ".peer-venv" / "bin" / "python"}
SECTION = "## Generators (issue #3)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["ctgan", "tvae"])
    ap.add_argument("--sample-rows", type=int, default=100_000)
    ap.add_argument("--target", default="income")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per model, with seeds 0, 1, ...; each is timed and scored")
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()

    df = read_table(args.data)
    train, test = train_test_split(df, test_size=0.2, random_state=0)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    schema = infer_schema(train)
    discrete = [s.name for s in schema.of_kind("discrete", "boolean")]
    sides = ["ours", "peer"] if args.peer and PYTHON["peer"].exists() else ["ours"]
    if args.peer and "peer" not in sides:
        print("peer venv missing: run `bash bench/peer_setup.sh` first; measuring ours only", file=sys.stderr)

    rows, rounds = [], []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        train_path = work / "train.parquet"
        train.to_parquet(train_path, index=False)
        for model in args.models:
            for round_ in range(1, args.rounds + 1):
                seed = round_ - 1
                figures = run_pair(sides, model, train_path, discrete, args.epochs, args.sample_rows, work, seed=seed)
                for side in sides:
                    synthetic = pd.read_parquet(work / f"{side}.parquet").head(len(train))
                    figures[side].update(score(train, test, synthetic, schema, args.target), seed=seed)
                    rows.append(figures[side])
                    print(format_row(figures[side]), flush=True)
                timing = {"model": model, "round": round_, **{side: figures[side]["s_per_epoch_median"] for side in sides}}
                if "peer" in figures:
                    timing["paired"] = paired_ratios(figures["ours"]["epoch_s"], figures["peer"]["epoch_s"])
                rounds.append(timing)
                print(f"{model} round {round_}: median epoch {[f'{side} {timing[side]:.3f} s' for side in sides]}"
                      + (f", peer/ours over paired epochs {statistics.median(timing['paired']):.2f}x" if "paired" in timing
                         else ""), flush=True)
    baseline = utility_report(train, test, train, schema, args.target)["train_real"]["auc"]
    write_results(rows, rounds, baseline, args, len(df), df.shape[1], discrete)


def run_pair(sides, model, train_path, discrete, epochs, sample_rows, work, seed=0, batch_size=500) -> dict:
    """Train and sample each side in its own process, handing out turns (see bench/generator_runner.py): all
    sides get ready, then each epoch runs on one side at a time, ours first, and sampling last. Returns each
    side's figures; the synthetic rows are in work/<side>.parquet."""
    runners = {}
    for side in sides:
        go_read, go_write = os.pipe()  # bench -> runner: "g", your turn
        said_read, said_write = os.pipe()  # runner -> bench: "r" ready, "d" turn done
        command = [str(PYTHON[side]), str(BENCH / "generator_runner.py"), "--side", side, "--model", model,
                   "--train", str(train_path), "--discrete", *discrete, "--epochs", str(epochs),
                   "--batch-size", str(batch_size), "--sample-rows", str(sample_rows), "--seed", str(seed),
                   "--out", str(work / f"{side}.parquet"),
                   "--turn-in", str(go_read), "--turn-out", str(said_write)]
        stdout, stderr = open(work / f"{side}.out", "w+"), open(work / f"{side}.err", "w+")
        process = subprocess.Popen(command, pass_fds=(go_read, said_write), stdout=stdout, stderr=stderr,
                                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
        os.close(go_read)
        os.close(said_write)
        runners[side] = (process, go_write, said_read, stdout, stderr)

    def expect(side, message):
        if os.read(runners[side][2], 1) != message:
            runners[side][0].wait()
            runners[side][4].seek(0)
            raise SystemExit(f"{side} {model} failed:\n{runners[side][4].read()[-3000:]}")

    try:
        for side in sides:
            expect(side, b"r")
        for _ in range(epochs + 1):  # every epoch, then sampling
            for side in sides:
                os.write(runners[side][1], b"g")
                expect(side, b"d")
        figures = {}
        for side, (process, _, _, stdout, stderr) in runners.items():
            if process.wait() != 0:
                stderr.seek(0)
                raise SystemExit(f"{side} {model} failed:\n{stderr.read()[-3000:]}")
            stdout.seek(0)
            figures[side] = json.loads(stdout.read().strip().splitlines()[-1])
        return figures
    finally:
        for process, go_write, said_read, stdout, stderr in runners.values():
            if process.poll() is None:
                process.kill()
            for handle in (go_write, said_read):
                os.close(handle)
            stdout.close()
            stderr.close()


def paired_ratios(ours: list[float], peer: list[float]) -> list[float]:
    """peer / ours for each pair of epochs that ran back to back."""
    return [p / o for o, p in zip(ours, peer)]


def score(train, test, synthetic, schema, target) -> dict:
    quality = quality_report(train, synthetic, schema)
    detection = detection_test(train, synthetic, schema)
    utility = utility_report(train, test, synthetic, schema, target)
    return {"quality": quality["score"], "shapes": quality["column_shapes"], "trends": quality["column_pair_trends"],
            "detection_score": detection["score"], "tstr_auc": utility["train_synthetic"]["auc"],
            "sdmetrics": quality["sdmetrics_version"]}


def f(value, spec=".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_row(r) -> str:
    return (f"{r['model']:5s} {r['side']:4s} seed {r['seed']} {f(r['s_per_epoch'])} s/epoch  fit {f(r['fit_s'], '.1f')} s  "
            f"sample {f(r['sample_rows_per_s'], '.0f')} rows/s  peak {f(r['peak_rss_mib'], '.0f')} MiB  "
            f"quality {f(r['quality'])} (shapes {f(r['shapes'])}, trends {f(r['trends'])})  "
            f"detection {f(r['detection_score'])}  TSTR AUC {f(r['tstr_auc'])}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {memory:.1f} GiB RAM"


def write_results(rows, rounds, baseline, args, n_rows, n_cols, discrete) -> None:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (BENCH / "results").mkdir(exist_ok=True)
    summary = {model: summarise(rows, rounds, model) for model in args.models}
    payload = {"date": date, "machine": machine(), "epochs": args.epochs, "rows": rows, "rounds": rounds,
               "summary": summary, "real_baseline_auc": baseline}
    (BENCH / "results" / "generators.json").write_text(json.dumps(payload, indent=2))
    seeds = sorted({r["seed"] for r in rows})
    lines = [SECTION, "", f"- Date: {date}", f"- Machine: {machine()}, device cpu, torch threads {rows[0]['threads']}",
             f"- Data: `{Path(args.data).name}`, {n_rows} rows x {n_cols} columns, 80/20 split (seed 0); "
             f"{len(discrete)} discrete columns given to both sides",
             f"- Protocol: {args.epochs} epochs, batch 500, seeds {', '.join(map(str, seeds))}, each side in its own process; "
             "the two sides take turns epoch by epoch (each waits while the other runs), so each of our epochs is paired "
             "with a peer epoch run seconds later on the same machine, whose speed was seen to drift by up to 2x within "
             "minutes; an epoch is clocked around one turn of the training loop's own epoch iterator, the same way on "
             "both sides; s/epoch = mean and median epoch; fit s = the whole fit call without the waits (encoder fit and "
             f"setup included); sampling ({args.sample_rows:,} rows, decoded) also in turn; quality = sdmetrics "
             "QualityReport on 20,000 rows per side of as many synthetic rows as training rows; detection = boosted "
             "real-vs-synthetic classifier (1 = indistinguishable); TSTR AUC = HistGradientBoosting trained on "
             "synthetic, tested on the real 20 %",
             f"- Versions: {rows[0]['version']} vs {next((r['version'] for r in rows if r['side'] == 'peer'), 'n/a')}, "
             f"sdmetrics {rows[0]['sdmetrics']}, torch {rows[0]['torch']}", "",
             "| model | side | seed | s/epoch mean | s/epoch median | fit s | sample rows/s | peak RSS MiB | quality | shapes "
             "| trends | detection | TSTR AUC |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['side']} | {r['seed']} | {f(r['s_per_epoch'])} | {f(r['s_per_epoch_median'])} | "
                     f"{f(r['fit_s'], '.1f')} | "
                     f"{f(r['sample_rows_per_s'], ',.0f')} | {f(r['peak_rss_mib'], '.0f')} | {f(r['quality'])} | "
                     f"{f(r['shapes'])} | {f(r['trends'])} | {f(r['detection_score'])} | {f(r['tstr_auc'])} |")
    lines.append("")
    for model, s in summary.items():
        if s:
            lines.append(f"- {model}: peer/ours time per epoch {s['speed']:.2f}x (median of {s['pairs']} paired epochs, "
                         f"quartiles {s['speed_quartiles'][0]:.2f}x-{s['speed_quartiles'][1]:.2f}x; per seed "
                         f"{', '.join(f'{x:.2f}x' for x in s['speed_per_seed'])}), sampling ours/peer {s['sampling']:.1f}x, "
                         f"quality ours {s['quality_ours']:.3f} vs peer {s['quality_peer']:.3f} (means over seeds; ours - "
                         f"peer per seed {', '.join(f'{d:+.3f}' for d in s['quality_gaps'])})")
    lines += [f"- Train-on-real baseline AUC: {baseline:.3f}", ""]
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines))


def summarise(rows, rounds, model) -> dict | None:
    """The comparison with the peer for one model: speed over every pair of back-to-back epochs, sampling and
    quality averaged over seeds, and the quality gap seed by seed."""
    paired = [r["paired"] for r in rounds if r["model"] == model and "paired" in r]
    by_seed = {}
    for r in rows:
        if r["model"] == model:
            by_seed.setdefault(r["seed"], {})[r["side"]] = r
    pairs = [sides for sides in by_seed.values() if {"ours", "peer"} <= sides.keys()]
    if not paired or not pairs:
        return None
    every = [ratio for p in paired for ratio in p]
    mean = statistics.fmean
    return {
        "speed": statistics.median(every), "pairs": len(every),
        "speed_quartiles": statistics.quantiles(every, n=4)[::2] if len(every) > 1 else [every[0]] * 2,
        "speed_per_seed": [statistics.median(p) for p in paired],
        "sampling": mean(p["ours"]["sample_rows_per_s"] / p["peer"]["sample_rows_per_s"] for p in pairs),
        "quality_ours": mean(p["ours"]["quality"] for p in pairs), "quality_peer": mean(p["peer"]["quality"] for p in pairs),
        "quality_gaps": [p["ours"]["quality"] - p["peer"]["quality"] for p in pairs],
    }


def replace_section(path: Path, heading: str, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    parts = text.split("\n## ")
    kept = [parts[0]] + ["## " + p for p in parts[1:] if not ("## " + p).startswith(heading)]
    path.write_text("\n".join(s.rstrip("\n") + "\n" for s in kept) + "\n" + body)


if __name__ == "__main__":
    main()
