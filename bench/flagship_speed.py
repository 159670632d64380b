"""Benchmark the flagship's speed on one core: training rows a second, main's forward against ours, and sampling
rows a second, the table sampler against the matmul path, with the sampler's ratio to the arithmetic limit.

    taskset -c 0 .venv/bin/python bench/flagship_speed.py [--data ../shared/data/adult.csv] [--epochs 2]
        [--rows 100000 1000000] [--repeats 2]

One torch thread. Training: `AutoregressiveGenerator(epochs=--epochs)` (default parameters otherwise, early
stopping's validation pass included) fitted on Adult's 80 % split (seed 0), alternately with the network's
forward as main had it (`MainForward`: one masked matmul for every head, then each head's state selected from
the (B, D, H) tensor, the shape terms added after the output layer) and as it is now, --repeats times each;
rows a second = epochs x training rows / fit seconds (encoding included), the best of the repeats. Both fits
start from the same weights and see the same batches and orders, so their losses agree to float rounding (the
largest relative difference is reported).

Sampling, on the model just fitted: each of --rows drawn as codes only (`_sample_batch` in `sample`'s batches)
and through `sample` (decoded to a DataFrame), from the tables and on the matmul path (the tables' cache given a
limit of 0 bytes), the best of --repeats (one run for the matmul path at 1M rows). The arithmetic limit is the
measured float32 matmul rate of this core (a (1024 x 256) by (256 x 1024) product, best of 20) over the
sampler's floating-point operations per row: 2 H K_j per head for the output layer, H adds per column already
drawn for the embedding bag, 2 H^2 per residual block and head (GELU, softmax and search not counted).
Results go to bench/results/flagship_speed.json and the "Flagship speed" section of bench/RESULTS.md.
"""

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from bench.generators import machine, replace_section  # noqa: E402
from tabtwin.generators import autoregressive  # noqa: E402
from tabtwin.generators.base import MIN_VALIDATION_ROWS, VALIDATION_FRACTION  # noqa: E402
from tabtwin.generators.heads import ColumnAR, order_mask  # noqa: E402
from tabtwin.generators.memory import sample_rows, sampling_width  # noqa: E402
from tabtwin.generators.tables import TableCache  # noqa: E402
from tabtwin.pipeline.ingest import read_table  # noqa: E402

SECTION = "## Flagship speed (issue #22)"


class MainForward(ColumnAR):
    """The network with main's forward (before the per-head one): the same parameters and function."""

    def embed_codes(self, codes, permutation=None):
        position = self.positions[codes + self.offsets]
        return torch.cat([e(codes[:, i]) + position[:, i, None] * self.ordinal[i] for i, e in enumerate(self.embeddings)],
                         dim=1)

    def forward(self, codes, order):
        x = self.hidden_states(codes, order_mask(order, len(order), codes.device))
        return [self.logits(x[:, j], j) for j in range(len(self.out))]


def fit(train, epochs: int, network) -> tuple[autoregressive.AutoregressiveGenerator, float]:
    autoregressive.ColumnAR = network
    try:
        start = time.perf_counter()
        model = autoregressive.AutoregressiveGenerator(epochs=epochs, device="cpu", random_state=0).fit(train)
        return model, time.perf_counter() - start
    finally:
        autoregressive.ColumnAR = ColumnAR


def codes_only(model, n: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    batch = sample_rows(model.device_, sampling_width(model))
    with torch.no_grad():
        for start in range(0, n, batch):
            model._sample_batch(min(batch, n - start), None, generator)


def best_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_rate() -> float:
    """float32 FLOP/s of this core on a (1024 x 256) @ (256 x 1024) product, best of 20."""
    a, b = torch.randn(1024, 256), torch.randn(256, 1024)
    a @ b
    return 2 * 1024 * 256 * 1024 / best_seconds(lambda: a @ b, 20)


def sampler_flops(net) -> int:
    """Floating-point operations per row of the table sampler, unconditional (see the module docstring)."""
    h, d = net.hidden, len(net.cardinalities)
    return 2 * h * sum(net.cardinalities) + h * d * (d - 1) // 2 + 2 * h * h * len(net.blocks) * d


def matmul_path_flops(net) -> int:
    """The same for the matmul path: every head multiplies all n_in embedded inputs (masked)."""
    h, d = net.hidden, len(net.cardinalities)
    return 2 * len(net.w1) * h * d + 2 * h * sum(net.cardinalities) + 4 * h * d + 2 * h * h * len(net.blocks) * d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "adult.csv"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, _ = train_test_split(read_table(args.data), test_size=0.2, random_state=0)
    train = train.reset_index(drop=True)

    training = {"main": [], "new": []}
    for _ in range(args.repeats):
        for side, network in (("main", MainForward), ("new", ColumnAR)):
            model, seconds = fit(train, args.epochs, network)
            training[side].append((seconds, model))
            print(f"fit {side}: {seconds:.1f} s", flush=True)
    model = training["new"][0][1]
    rows_trained = args.epochs * (len(train) - max(int(len(train) * VALIDATION_FRACTION), MIN_VALIDATION_ROWS))
    losses = [(a["loss"], b["loss"]) for a, b in zip(training["main"][0][1].history_, model.history_)]
    fits = {side: {"seconds": min(s for s, _ in runs), "rows_per_s": rows_trained / min(s for s, _ in runs)}
            for side, runs in training.items()}
    fits["loss_max_relative_difference"] = max(abs(a - b) / abs(a) for a, b in losses)

    sampling = []
    for n in args.rows:
        for path in ("tables", "matmul"):
            repeats = 1 if path == "matmul" and n >= 1_000_000 else args.repeats
            model.tables_ = TableCache(limit=0 if path == "matmul" else None)
            for mode, run in (("codes", lambda: codes_only(model, n)), ("decoded", lambda: model.sample(n, seed=0))):
                seconds = best_seconds(run, repeats)
                sampling.append({"rows": n, "path": path, "mode": mode, "seconds": seconds, "rows_per_s": n / seconds})
                print(f"sample {n:,} {path} {mode}: {seconds:.1f} s ({n / seconds:,.0f} rows/s)", flush=True)
    model.tables_ = TableCache()
    rate = matmul_rate()
    arithmetic = {"matmul_flop_per_s": rate, "sampler_flop_per_row": sampler_flops(model.net_),
                  "matmul_path_flop_per_row": matmul_path_flops(model.net_)}
    arithmetic["limit_rows_per_s"] = rate / arithmetic["sampler_flop_per_row"]
    write_results(fits, sampling, arithmetic, args)


def write_results(fits, sampling, arithmetic, args) -> None:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = sorted(os.sched_getaffinity(0))
    payload = {"date": date, "machine": machine(), "cores": cores, "threads": torch.get_num_threads(),
               "epochs": args.epochs, "training": fits, "sampling": sampling, "arithmetic": arithmetic}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "flagship_speed.json").write_text(json.dumps(payload, indent=2))
    limit = arithmetic["limit_rows_per_s"]
    speed = {(r["rows"], r["path"], r["mode"]): r["rows_per_s"] for r in sampling}
    lines = [SECTION, "", f"- Date: {date}", f"- Machine: {machine()}; pinned to core(s) {cores}, torch threads "
             f"{torch.get_num_threads()}. Other work shared this machine's cores during the run, so figures vary by "
             "a few tens of percent between runs; each side's best of its repeats, both sides in the same run.",
             f"- Protocol: `bench/flagship_speed.py` (its docstring); Adult's 80 % split, default parameters, "
             f"{args.epochs} epochs per fit.", "",
             "| training | fit s | rows/s |", "| --- | ---: | ---: |"]
    lines += [f"| {side} forward | {fits[side]['seconds']:.1f} | {fits[side]['rows_per_s']:,.0f} |" for side in ("main", "new")]
    lines += ["", f"Training: {fits['new']['rows_per_s'] / fits['main']['rows_per_s']:.2f}x main's rows a second; "
              f"epoch losses agree to a relative {fits['loss_max_relative_difference']:.1e}.", "",
              "| rows | path | codes only s | rows/s | decoded s | rows/s |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for n in args.rows:
        for path in ("tables", "matmul"):
            codes, decoded = speed[(n, path, "codes")], speed[(n, path, "decoded")]
            lines.append(f"| {n:,} | {path} | {n / codes:.1f} | {codes:,.0f} | {n / decoded:.1f} | {decoded:,.0f} |")
    n = max(args.rows)
    lines += ["", f"Sampling: the tables draw {speed[(n, 'tables', 'decoded')] / speed[(n, 'matmul', 'decoded')]:.1f}x "
              f"the matmul path's rows a second at {n:,} rows, decoding included. Arithmetic: "
              f"{arithmetic['sampler_flop_per_row'] / 1e6:.2f} MFLOP a row for the tables "
              f"({arithmetic['matmul_path_flop_per_row'] / 1e6:.2f} on the matmul path); at this core's measured "
              f"matmul rate of {arithmetic['matmul_flop_per_s'] / 1e9:.1f} GFLOP/s that bounds the sampler at "
              f"{limit:,.0f} rows/s, of which the codes-only rate at {n:,} rows is "
              f"{speed[(n, 'tables', 'codes')] / limit:.0%}.", ""]
    replace_section(BENCH / "RESULTS.md", SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
