"""Train one generator and time it; runs in its own process (ours in .venv, the peer in bench/.peer-venv).

    python bench/generator_runner.py --side ours|compiled|peer --model ctgan|tvae --train T.parquet
        --discrete a b ... [--epochs E] --sample-rows N --out SYN.parquet [--turn-in FD --turn-out FD]

Sides: ours (tabtwin, eager autograd), compiled (tabtwin with compile=True: torch.compile on the training
modules; its first epoch carries the compile time), peer (the ctgan package). Without --epochs each side
trains for its model's default length (300 epochs for both models on both sides).

Prints one JSON line. Definitions, the same on both sides:
  preprocess_s  fitting the side's own encoder and encoding the training table, timed on its own
  fit_s         the whole fit call (it includes the same preprocessing), time spent waiting for turns excluded
  epoch_s       seconds of each epoch of the training loop itself, clocked around each turn of the loop's own
                epoch iterator (the progress bar, wrapped the same way on both sides); s_per_epoch their mean,
                s_per_epoch_median their median
  sample_rows_per_s  sampling --sample-rows rows, decoded to a DataFrame
  peak_rss_mib  the process's peak resident memory

Turns: with --turn-in/--turn-out (pipe descriptors from bench/generators.py), the runner says "r" when it is
ready to train, then waits for a "g" before each epoch and before sampling, and says "d" after each. The bench
hands turns to ours and the peer alternately, so the two sides' epochs run one after the other, seconds apart,
never at the same time: a shared machine's speed drifts by up to 2x within minutes, and this pairs each of our
epochs with a peer epoch run under the same conditions.
Only the peer side imports the ctgan package (Business Source License); it is never a dependency of tabtwin.
"""

import argparse
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["ours", "compiled", "peer"], required=True)
    ap.add_argument("--model", choices=["ctgan", "tvae"], required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--discrete", nargs="*", default=[])
    ap.add_argument("--epochs", type=int, default=None, help="default: the model's own default length")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--sample-rows", type=int, default=100_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--turn-in", type=int, help="pipe descriptor the bench writes turns to")
    ap.add_argument("--turn-out", type=int, help="pipe descriptor this runner reports on")
    args = ap.parse_args()
    args.turns = Turns(args.turn_in, args.turn_out)
    train = pd.read_parquet(args.train)
    torch.manual_seed(args.seed)
    run = _peer if args.side == "peer" else _ours
    figures = run(args, train)
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["torch"] = torch.__version__
    figures["threads"] = torch.get_num_threads()
    print(json.dumps(figures))


class Turns:
    """Take turns with the other side through the bench (see the module docstring); a no-op without pipes."""

    def __init__(self, fd_in: int | None, fd_out: int | None):
        self.fd_in, self.fd_out, self.started, self.waited = fd_in, fd_out, False, 0.0

    def wait(self) -> None:
        if self.fd_in is None:
            return
        start = time.perf_counter()
        if not self.started:
            os.write(self.fd_out, b"r")
            self.started = True
        if os.read(self.fd_in, 1) != b"g":
            raise SystemExit("the bench went away")
        self.waited += time.perf_counter() - start

    def done(self) -> None:
        if self.fd_out is not None:
            os.write(self.fd_out, b"d")


class EpochClock:
    """Wraps an epoch iterator (a tqdm bar): each epoch is a turn, timed from its start to the loop's next step."""

    def __init__(self, turns: Turns):
        self.turns, self.epochs = turns, []

    def wrap(self, bar):
        clock = self

        class Clocked:
            def __iter__(self):
                for item in bar:
                    clock.turns.wait()
                    start = time.perf_counter()
                    yield item
                    clock.epochs.append(time.perf_counter() - start)
                    clock.turns.done()

            def __getattr__(self, name):
                return getattr(bar, name)

        return Clocked()

    def seconds_per_epoch(self) -> float:
        return sum(self.epochs) / len(self.epochs)

    def median_epoch(self) -> float:
        """Robust to bursts of load from other tenants of a shared machine, which the mean is not."""
        gaps = sorted(self.epochs)
        middle = len(gaps) // 2
        return gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2


def _sample_in_turn(args, sample):
    args.turns.wait()
    try:
        return _timed(sample)
    finally:
        args.turns.done()


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _ours(args, train):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tabtwin.generators import model_class
    from tabtwin.pipeline.encoding import TableEncoder
    from tabtwin.pipeline.schema import infer_schema

    schema = infer_schema(train)
    TableEncoder(schema, random_state=args.seed).fit(train)  # warm-up, as on the peer side
    _, preprocess = _timed(lambda: TableEncoder(schema, random_state=args.seed).fit(train).transform(train))
    cls = model_class(args.model)
    epochs = cls().epochs if args.epochs is None else args.epochs
    model = cls(epochs=epochs, batch_size=args.batch_size, random_state=args.seed, verbose=False, device="cpu",
                compile=args.side == "compiled")
    args.epochs = epochs
    clock = EpochClock(args.turns)
    progress = model._progress
    model._progress = lambda: clock.wrap(progress())
    _, fit = _timed(lambda: model.fit(train, schema))
    fit -= args.turns.waited
    synthetic, sample = _sample_in_turn(args, lambda: model.sample(args.sample_rows, seed=args.seed))
    synthetic.to_parquet(args.out, index=False)
    return _figures(args, preprocess, fit, sample, clock, version="tabtwin")


def _peer(args, train):
    import ctgan
    from ctgan import CTGAN, TVAE
    from ctgan.data_transformer import DataTransformer

    def preprocess():
        transformer = DataTransformer()
        transformer.fit(train, args.discrete)
        return transformer.transform(train)

    preprocess()  # warm-up: the first call starts joblib workers; time the second, as fit's own call is warm too
    _, preprocess_s = _timed(preprocess)
    cls = CTGAN if args.model == "ctgan" else TVAE
    kwargs = dict(batch_size=args.batch_size, enable_gpu=False)
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    if args.model == "ctgan":
        kwargs["verbose"] = False
    model = cls(**kwargs)
    model.set_random_state(args.seed)
    args.epochs = model._epochs if hasattr(model, "_epochs") else model.epochs
    clock = EpochClock(args.turns)
    for module in map(importlib.import_module, ("ctgan.synthesizers.ctgan", "ctgan.synthesizers.tvae")):
        module.tqdm = lambda iterable, _tqdm=module.tqdm, **kw: clock.wrap(_tqdm(iterable, **kw))
    _, fit = _timed(lambda: model.fit(train, args.discrete))
    fit -= args.turns.waited
    synthetic, sample = _sample_in_turn(args, lambda: model.sample(args.sample_rows))
    synthetic.to_parquet(args.out, index=False)
    return _figures(args, preprocess_s, fit, sample, clock, version=f"ctgan {ctgan.__version__}")


def _figures(args, preprocess, fit, sample, clock, version):
    return {
        "side": args.side, "model": args.model, "version": version, "epochs": args.epochs,
        "batch_size": args.batch_size, "preprocess_s": preprocess, "fit_s": fit,
        "epoch_s": clock.epochs, "s_per_epoch": clock.seconds_per_epoch(), "s_per_epoch_median": clock.median_epoch(),
        "first_epoch_s": clock.epochs[0] if clock.epochs else None,
        "sample_rows": args.sample_rows,
        "sample_rows_per_s": args.sample_rows / sample,
    }


if __name__ == "__main__":
    main()
