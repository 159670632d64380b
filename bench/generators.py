"""Time to quality: tabtwin's CTGAN and TVAE (autograd training) against the ctgan package's, on Adult (issue #10).

    .venv/bin/python bench/generators.py [--data ../shared/data/adult.csv] [--models ctgan tvae] [--seeds 0]
        [--epochs N] [--compile | --no-compile] [--no-peer] [--sample-rows N] [--dry-run]

Without --epochs every side trains for its model's default length (300 epochs, both models, both sides):
performance is judged as the wall time of a whole fit against the quality it reaches, not seconds per epoch.
For each model and seed, on Adult's 80/20 split (seed 0):

- wall time of `fit` (encoder fit, setup and every epoch included; waiting for turns excluded) and the detection
  score (boosted real-vs-synthetic classifier, 1 = indistinguishable), Column Pair Trends and Column Shapes
  (sdmetrics QualityReport), all from tabtwin.evaluation.fidelity, plus TSTR AUC on the real 20 %;
- seconds per epoch, ours and the peer paired epoch by epoch (the two sides take turns, see
  bench/generator_runner.py), the headline being the median over pairs of peer / ours; and our median epoch
  against the hand-written version's figures (CTGAN 1.40 s/epoch, TVAE 0.35 s/epoch, bench/RESULTS.md,
  2026-11-25, 30 epochs, same machine);
- epoch time late vs early in the fit: the median of the last tenth of the epochs over that of the first tenth
  (after the first epoch); a ratio well above 1 is the subnormal-float slowdown of issue #10;
- with --compile (default on): a third side, ours with compile=True, run alone after the pair; its compile time
  is reported as its first epoch minus its median epoch, never hidden; if torch.compile fails on the machine,
  the table says so and the other sides are unaffected.

Results go to bench/results/generators.json and the "Generators: time to quality" section of bench/RESULTS.md.
--dry-run prints the table instead of writing either (for a quick check with --epochs 2).
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
SECTION = "## Generators: time to quality (issue #10)"
# The hand-written version's median seconds per epoch on Adult (bench/RESULTS.md, "Generators (issue #3)", the
# mean over its three seeds' medians, 2026-11-25, 2 cores, 2 torch threads, 30 epochs).
HAND_WRITTEN_S_PER_EPOCH = {"ctgan": 1.40, "tvae": 0.35}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--epochs", type=int, default=None, help="default: each model's default training length (300)")
    ap.add_argument("--models", nargs="+", default=["ctgan", "tvae"], choices=["ctgan", "tvae"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--sample-rows", type=int, default=None, help="rows to sample (default: as many as training rows)")
    ap.add_argument("--target", default="income")
    ap.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="also run ours with compile=True (alone, after the pair)")
    ap.add_argument("--dry-run", action="store_true", help="print only; write neither results file")
    args = ap.parse_args()

    df = read_table(args.data)
    train, test = train_test_split(df, test_size=0.2, random_state=0)
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    schema = infer_schema(train)
    discrete = [s.name for s in schema.of_kind("discrete", "boolean")]
    sample_rows = args.sample_rows or len(train)
    sides = ["ours", "peer"] if args.peer and PYTHON["peer"].exists() else ["ours"]
    if args.peer and "peer" not in sides:
        print("peer venv missing: run `bash bench/peer_setup.sh` first; measuring ours only", file=sys.stderr)

    rows, pairs = [], []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        train_path = work / "train.parquet"
        train.to_parquet(train_path, index=False)
        for model in args.models:
            for seed in args.seeds:
                figures = run_pair(sides, model, train_path, discrete, args.epochs, sample_rows, work, seed=seed)
                if args.compile:
                    try:
                        figures.update(run_pair(["compiled"], model, train_path, discrete, args.epochs, sample_rows,
                                                work, seed=seed))
                    except SystemExit as failure:  # torch.compile unavailable or failing here: say so
                        rows.append({"model": model, "side": "compiled", "seed": seed,
                                     "failed": str(failure).strip().splitlines()[-1][:300]})
                        print(f"{model} compiled seed {seed}: torch.compile failed: {rows[-1]['failed']}", flush=True)
                for side, figure in figures.items():
                    synthetic = pd.read_parquet(work / f"{side}.parquet").head(len(train))
                    figure.update(score(train, test, synthetic, schema, args.target), seed=seed)
                    figure.update(late_vs_early(figure["epoch_s"]))
                    if side != "peer":
                        figure["vs_hand_written"] = figure["s_per_epoch_median"] / HAND_WRITTEN_S_PER_EPOCH[model]
                    if side == "compiled":
                        figure["compile_s"] = figure["first_epoch_s"] - figure["s_per_epoch_median"]
                    rows.append(figure)
                    print(format_row(figure), flush=True)
                if "peer" in figures:
                    ratios = paired_ratios(figures["ours"]["epoch_s"], figures["peer"]["epoch_s"])
                    pairs.append({"model": model, "seed": seed, "paired": ratios})
                    print(f"{model} seed {seed}: peer/ours per paired epoch, median {statistics.median(ratios):.2f}x "
                          f"over {len(ratios)} pairs", flush=True)
    if args.dry_run:
        return
    baseline = utility_report(train, test, train, schema, args.target)["train_real"]["auc"]
    write_results(rows, pairs, baseline, args, len(df), df.shape[1], discrete, sample_rows)


def late_vs_early(epochs: list[float]) -> dict:
    """Median epoch of the last tenth of the fit over that of the first tenth (first epoch left out: warm-up,
    compile); at least 3 epochs each way."""
    body = epochs[1:]
    if len(body) < 6:
        return {"early_s": None, "late_s": None, "late_over_early": None}
    k = max(3, len(body) // 10)
    early, late = statistics.median(body[:k]), statistics.median(body[-k:])
    return {"early_s": early, "late_s": late, "late_over_early": late / early}


def run_pair(sides, model, train_path, discrete, epochs, sample_rows, work, seed=0, batch_size=500) -> dict:
    """Train and sample each side in its own process, handing out turns (see bench/generator_runner.py): all
    sides get ready, then each epoch runs on one side at a time, ours first, and sampling last. Returns each
    side's figures; the synthetic rows are in work/<side>.parquet. `epochs` None: the model's default, which
    must be the same on every side (300 for both models); it is looked up from ours."""
    if epochs is None:
        from tabtwin.generators import model_class

        epochs = model_class(model)().epochs
    runners = {}
    for side in sides:
        go_read, go_write = os.pipe()  # bench -> runner: "g", your turn
        said_read, said_write = os.pipe()  # runner -> bench: "r" ready, "d" turn done
        python = PYTHON["ours" if side == "compiled" else side]
        command = [str(python), str(BENCH / "generator_runner.py"), "--side", side, "--model", model,
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
    if r.get("failed"):
        return f"{r['model']:5s} {r['side']:8s} seed {r['seed']} FAILED: {r['failed']}"
    extra = f"  compile {f(r.get('compile_s'), '.1f')} s" if r["side"] == "compiled" else ""
    return (f"{r['model']:5s} {r['side']:8s} seed {r['seed']} {r['epochs']} epochs  fit {f(r['fit_s'], '.1f')} s  "
            f"detection {f(r['detection_score'])}  trends {f(r['trends'])}  shapes {f(r['shapes'])}  "
            f"TSTR AUC {f(r['tstr_auc'])}  median epoch {f(r['s_per_epoch_median'])} s  "
            f"late/early {f(r.get('late_over_early'), '.2f')}{extra}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.platform()}, {os.cpu_count()} cores ({cpu}), {memory:.1f} GiB RAM"


def write_results(rows, pairs, baseline, args, n_rows, n_cols, discrete, sample_rows) -> None:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (BENCH / "results").mkdir(exist_ok=True)
    for r in rows + pairs:
        r.setdefault("date", date)
    # A run of some models keeps the last results of the others (each row carries its own date).
    previous = BENCH / "results" / "generators.json"
    if previous.exists():
        old = json.loads(previous.read_text())
        kept = [r for r in old.get("rows", []) if r["model"] not in args.models]
        for r in kept:
            r.setdefault("date", old.get("date"))
        rows = kept + rows
        pairs = [p for p in old.get("pairs", []) if p["model"] not in args.models] + pairs
    payload = {"date": date, "machine": machine(), "epochs": args.epochs, "seeds": args.seeds, "rows": rows,
               "pairs": pairs, "real_baseline_auc": baseline, "hand_written_s_per_epoch": HAND_WRITTEN_S_PER_EPOCH}
    (BENCH / "results" / "generators.json").write_text(json.dumps(payload, indent=2))
    done = [r for r in rows if not r.get("failed")]
    length = "its default training length" if args.epochs is None else f"{args.epochs} epochs"
    lines = [SECTION, "", f"- Date: {date}",
             f"- Machine: {machine()}, device cpu, torch threads {done[0]['threads'] if done else 'n/a'}",
             f"- Data: `{Path(args.data).name}`, {n_rows} rows x {n_cols} columns, 80/20 split (seed 0); "
             f"{len(discrete)} discrete columns given to both sides",
             f"- Protocol: `{' '.join(['bench/generators.py', *sys.argv[1:]])}`; each model at {length}, batch 500, "
             f"seeds {', '.join(map(str, args.seeds))}; ours and the peer in their own processes taking turns epoch by "
             "epoch; `compiled` = ours with compile=True, run alone afterwards; fit s = the whole fit call (encoder, "
             "setup, every epoch); detection, trends, shapes from tabtwin.evaluation.fidelity on as many synthetic "
             f"rows as training rows ({sample_rows:,} sampled); late/early = median epoch of the last tenth over the "
             "first tenth; compile s = first epoch minus median epoch",
             f"- Versions: tabtwin vs {next((r['version'] for r in done if r['side'] == 'peer'), 'n/a')}, "
             f"sdmetrics {done[0]['sdmetrics'] if done else 'n/a'}, torch {done[0]['torch'] if done else 'n/a'}", "",
             "| model | side | seed | run | epochs | fit s | detection | pair trends | shapes | TSTR AUC | median s/epoch "
             "| vs hand-written | late/early | compile s |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r.get("failed"):
            lines.append(f"| {r['model']} | {r['side']} | {r['seed']} | {r.get('date', '')} | torch.compile failed: "
                         f"{r['failed']} | | | | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['side']} | {r['seed']} | {r.get('date', '')} | {r['epochs']} | {f(r['fit_s'], '.1f')} | "
                     f"{f(r['detection_score'])} | {f(r['trends'])} | {f(r['shapes'])} | {f(r['tstr_auc'])} | "
                     f"{f(r['s_per_epoch_median'])} | {f(r.get('vs_hand_written'), '.2f')}{'x' if r.get('vs_hand_written') else ''} | "
                     f"{f(r.get('late_over_early'), '.2f')} | {f(r.get('compile_s'), '.1f')} |")
    lines.append("")
    for model in dict.fromkeys(r["model"] for r in rows):
        every = [x for p in pairs if p["model"] == model for x in p["paired"]]
        if every:
            quartiles = statistics.quantiles(every, n=4)[::2] if len(every) > 1 else [every[0]] * 2
            lines.append(f"- {model}: peer/ours time per epoch {statistics.median(every):.2f}x (median of {len(every)} "
                         f"paired epochs, quartiles {quartiles[0]:.2f}x-{quartiles[1]:.2f}x); the issue asks for at "
                         "least 2x")
        ours = [r for r in done if r["model"] == model and r["side"] == "ours"]
        if ours:
            median = statistics.median(r["s_per_epoch_median"] for r in ours)
            lines.append(f"- {model}: our median epoch {median:.3f} s against the hand-written version's "
                         f"{HAND_WRITTEN_S_PER_EPOCH[model]:.2f} s: {median / HAND_WRITTEN_S_PER_EPOCH[model]:.2f}x "
                         "its time")
    lines += [f"- Train-on-real baseline AUC: {baseline:.3f}", ""]
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines))


def replace_section(path: Path, heading: str, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    parts = text.split("\n## ")
    kept = [parts[0]] + ["## " + p for p in parts[1:] if not ("## " + p).startswith(heading)]
    path.write_text("\n".join(s.rstrip("\n") + "\n" for s in kept) + "\n" + body)


if __name__ == "__main__":
    main()
