"""Differential privacy benchmark (issue #14): what DP-SGD costs the TVAE on Adult, at epsilon 1, 3 and 10.

What it measures: the TVAE trained without privacy and with `dp_epsilon` 1, 3 and 10 (DP-SGD through opacus:
Poisson sampling, per-row gradient clipping at `dp_max_grad_norm` 1, Gaussian noise from the RDP accountant;
Abadi et al. 2016, see generators/tvae.py), each scored by tabtwin.evaluation.report.evaluate as in
bench/quality.py: column shapes and pair trends (sdmetrics), the boosted detection score (1 = indistinguishable),
TSTR next to TRTR (AUC on income), DCR share and MIA AUC; plus the epsilon actually spent, delta (the default
1 / n^1.1 of the training rows unless --delta), the noise multiplier the accountant chose, and fit/sample seconds.

Protocol: Adult (../shared/data/adult.csv), optionally capped to --max-rows random rows, schema inferred on the
whole table, split 80/20 with tabtwin.flows.steps.split_train_holdout(df, 0.2, seed); every setting fits on the
same training split with the same seed and epochs (--epochs, default 300, the TVAE's own: the noise multiplier is
chosen for exactly that many epochs, so fewer epochs mean less noise per step at the same epsilon), samples
len(train) rows and is scored against the holdout. Settings run one at a time, in one process, with --threads
torch threads. The encoder's statistics (category sets, mixture fits, forms) are not covered by the guarantee
(listed in each model's privacy block); the table says so.

Run (a private epoch of Adult takes 18-20 s on one core against ~0.6 s for a plain one, so 300 private epochs take
about 100 min per epsilon; the RESULTS table used 30 private epochs, and the non-private TVAE at 30 and at its own
300):

    taskset -c 0 .venv/bin/python bench/dp.py --threads 1 --epochs 30
    .venv/bin/python bench/dp.py --max-rows 2000 --epochs 2 --no-write        # smoke run

It rewrites bench/results/dp.json and the section between <!-- dp:start --> and <!-- dp:end --> in
bench/RESULTS.md (machine, date, commit, versions, the table).
"""

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from threads import pin_threads  # noqa: E402  (imports neither numpy nor torch)

START, END = "<!-- dp:start -->", "<!-- dp:end -->"
TABLE, TARGET = "adult", "income"
EPSILONS = (1.0, 3.0, 10.0)
COLUMNS = [("training", "setting", "{}"), ("epochs", "epochs", "{}"), ("epsilon spent", "epsilon", "{:.2f}"),
           ("delta", "delta", "{:.1e}"),
           ("noise", "noise_multiplier", "{:.2f}"), ("fit s", "fit_s", "{:.1f}"), ("sample s", "sample_s", "{:.1f}"),
           ("shapes", "shapes", "{:.3f}"), ("pair trends", "pair_trends", "{:.3f}"),
           ("detection", "detection_score", "{:.3f}"), ("TSTR", "tstr", "{:.3f}"), ("TRTR", "trtr", "{:.3f}"),
           ("DCR share", "dcr_share", "{:.3f}"), ("MIA AUC", "mia_auc", "{:.3f}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epsilons", nargs="+", type=float, default=list(EPSILONS))
    ap.add_argument("--epochs", type=int, default=300, help="TVAE epochs, private and not (default: the TVAE's own)")
    ap.add_argument("--baseline-epochs", type=int, default=300,
                    help="also train the non-private TVAE this long when it differs from --epochs (default: its own "
                         "300), so a short private run is compared with the default as well as with its own length")
    ap.add_argument("--delta", type=float, help="delta (default: 1 / n^1.1 of the training rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-rows", type=int, help="cap on rows (a random sample), for a quick run")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out-md", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only; write no JSON or markdown")
    args = ap.parse_args()
    pin_threads(args.threads)

    import torch

    from quality import machine, run_info, versions

    torch.set_num_threads(args.threads)
    run = run_info(args, datetime.now(timezone.utc))
    rows = run_settings(args)
    print(f"\n{markdown_table(rows)}\n", flush=True)
    if not args.no_write:
        import opacus

        result = {"run": run, "machine": machine(), "versions": {**versions(["tvae"]), "opacus": opacus.__version__},
                  "rows": rows}
        write(result, Path(args.out_md))


def run_settings(args) -> list[dict]:
    from quality import figures, load_split, match_dtypes, one_line

    from tabtwin.evaluation.report import evaluate
    from tabtwin.generators.tvae import TVAE

    df, schema, train, holdout = load_split(TABLE, args.max_rows, args.seed)
    print(f"{TABLE}: {len(df):,} rows, train {len(train):,}, holdout {len(holdout):,}, target {TARGET}", flush=True)
    rows = []
    settings = [(None, args.epochs)] + [(epsilon, args.epochs) for epsilon in args.epsilons]
    if args.baseline_epochs and args.baseline_epochs != args.epochs:
        settings.insert(1, (None, args.baseline_epochs))
    for epsilon, epochs in settings:
        setting = "non-private" if epsilon is None else f"DP, epsilon {epsilon:g}"
        row = {"setting": setting, "target_epsilon": epsilon, "epochs": epochs, "rows_train": len(train),
               "rows_holdout": len(holdout)}
        params = dict(epochs=epochs, device="cpu", random_state=args.seed, verbose=False)
        if epsilon is not None:
            # Reproducible noise for a rerunnable bench; a release keeps the default, a secret seed.
            params.update(dp_epsilon=epsilon, dp_reproducible=True, **({"dp_delta": args.delta} if args.delta else {}))
        try:
            start = time.perf_counter()
            model = TVAE(**params).fit(train, schema)
            row["fit_s"] = time.perf_counter() - start
            start = time.perf_counter()
            synthetic = match_dtypes(model.sample(len(train), seed=args.seed), train)
            row["sample_s"] = time.perf_counter() - start
            privacy = model.privacy_ or {}
            row.update(epsilon=privacy.get("epsilon"), delta=privacy.get("delta"),
                       noise_multiplier=privacy.get("noise_multiplier"), steps=privacy.get("steps"),
                       not_covered=privacy.get("not_covered"))
            start = time.perf_counter()
            report = evaluate(train, holdout, synthetic, schema, target=TARGET, seed=args.seed)
            row.update(figures(report), eval_s=time.perf_counter() - start, status="ok")
        except Exception as err:  # noqa: BLE001  (a failed setting is a result; the run goes on)
            row.update(status="failed", error=one_line(err))
        print(f"  {setting}, {epochs} epochs: " + (f"fit {row['fit_s']:.1f} s, epsilon spent {row['epsilon'] or 0:.3g}, detection "
                                  f"{row['detection_score']:.3f}, TSTR {row['tstr']}" if row["status"] == "ok"
                                  else f"FAILED: {row['error']}"), flush=True)
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    from quality import markdown_table as table

    return table(rows, COLUMNS)


def write(result: dict, out_md: Path) -> None:
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / "dp.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    m, v, run, rows = result["machine"], result["versions"], result["run"], result["rows"]
    not_covered = next((row["not_covered"] for row in rows if row.get("not_covered")), [])
    capped = f" capped to {run['max_rows']:,} rows" if run["max_rows"] else ""
    parts = [START, "## Differentially private training (issue #14)", "",
             f"- Machine: {m['cpu']}, {m['cores']} cores ({m['platform']}); date {run['date']}, commit "
             f"{run['commit']}, torch threads {run['threads']}, CPUs {run['cpus']}",
             "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
             f"- Protocol: `bench/dp.py`: Adult{capped}, "
             "80/20 split, TVAE epochs as listed (the noise multiplier is set for exactly that many), seed "
             f"{run['seed']}; DP-SGD "
             "(opacus; Poisson sampling, per-row clipping at norm 1, noise from the RDP accountant), delta 1/n^1.1 "
             "of the training rows unless stated; len(train) rows sampled and scored by "
             "`tabtwin.evaluation.report.evaluate` (TSTR/TRTR: AUC on income). Figures in `bench/results/dp.json`.",
             "- Not covered by the guarantee (computed from the rows by the encoder): " + "; ".join(not_covered), "",
             markdown_table(rows), "", END]
    from quality import replace_section

    replace_section(out_md, START, END, "\n".join(parts))
    print(f"wrote {results / 'dp.json'} and the dp section of {out_md}")


if __name__ == "__main__":
    main()
