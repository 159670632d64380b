"""Train one generator and time it; runs in its own process (ours in .venv, the peer in bench/.peer-venv).

    python bench/generator_runner.py --side ours|peer --model ctgan|tvae --train T.parquet --discrete a b ...
        --epochs E --sample-rows N --out SYN.parquet

Prints one JSON line. Definitions, the same on both sides:
  preprocess_s  fitting the side's own encoder and encoding the training table, timed on its own
  fit_s         the whole fit call (it includes the same preprocessing)
  s_per_epoch   mean seconds per epoch of the training loop itself, clocked at each turn of the loop's own
                epoch iterator (the progress bar, wrapped the same way on both sides); s_per_epoch_median the
                median epoch
  sample_rows_per_s  sampling --sample-rows rows, decoded to a DataFrame
  peak_rss_mib  the process's peak resident memory
Only the peer side imports the ctgan package (Business Source License); it is never a dependency of tabtwin.
"""

import argparse
import importlib
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", choices=["ours", "peer"], required=True)
    ap.add_argument("--model", choices=["ctgan", "tvae"], required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--discrete", nargs="*", default=[])
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--sample-rows", type=int, default=100_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train = pd.read_parquet(args.train)
    torch.manual_seed(args.seed)
    run = _ours if args.side == "ours" else _peer
    figures = run(args, train)
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["torch"] = torch.__version__
    figures["threads"] = torch.get_num_threads()
    print(json.dumps(figures))


class EpochClock:
    """Wraps an epoch iterator (a tqdm bar) and records the time at the start of each epoch and at the end."""

    def __init__(self):
        self.stamps = []

    def wrap(self, bar):
        clock = self

        class Clocked:
            def __iter__(self):
                for item in bar:
                    clock.stamps.append(time.perf_counter())
                    yield item
                clock.stamps.append(time.perf_counter())

            def __getattr__(self, name):
                return getattr(bar, name)

        return Clocked()

    def seconds_per_epoch(self) -> float:
        return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)

    def median_epoch(self) -> float:
        """Robust to bursts of load from other tenants of a shared machine, which the mean is not."""
        gaps = sorted(b - a for a, b in zip(self.stamps, self.stamps[1:]))
        middle = len(gaps) // 2
        return gaps[middle] if len(gaps) % 2 else (gaps[middle - 1] + gaps[middle]) / 2


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _ours(args, train):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from generators import model_class
    from pipeline.encoding import TableEncoder
    from pipeline.schema import infer_schema

    schema = infer_schema(train)
    TableEncoder(schema, random_state=args.seed).fit(train)  # warm-up, as on the peer side
    _, preprocess = _timed(lambda: TableEncoder(schema, random_state=args.seed).fit(train).transform(train))
    model = model_class(args.model)(epochs=args.epochs, batch_size=args.batch_size, random_state=args.seed,
                                    verbose=False, device="cpu")
    clock = EpochClock()
    progress = model._progress
    model._progress = lambda: clock.wrap(progress())
    _, fit = _timed(lambda: model.fit(train, schema))
    synthetic, sample = _timed(lambda: model.sample(args.sample_rows, seed=args.seed))
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
    kwargs = dict(epochs=args.epochs, batch_size=args.batch_size, enable_gpu=False)
    if args.model == "ctgan":
        kwargs["verbose"] = False
    model = cls(**kwargs)
    model.set_random_state(args.seed)
    clock = EpochClock()
    for module in map(importlib.import_module, ("ctgan.synthesizers.ctgan", "ctgan.synthesizers.tvae")):
        module.tqdm = lambda iterable, _tqdm=module.tqdm, **kw: clock.wrap(_tqdm(iterable, **kw))
    _, fit = _timed(lambda: model.fit(train, args.discrete))
    synthetic, sample = _timed(lambda: model.sample(args.sample_rows))
    synthetic.to_parquet(args.out, index=False)
    return _figures(args, preprocess_s, fit, sample, clock, version=f"ctgan {ctgan.__version__}")


def _figures(args, preprocess, fit, sample, clock, version):
    return {
        "side": args.side, "model": args.model, "version": version, "epochs": args.epochs,
        "batch_size": args.batch_size, "preprocess_s": preprocess, "fit_s": fit,
        "s_per_epoch": clock.seconds_per_epoch(), "s_per_epoch_median": clock.median_epoch(),
        "sample_rows": args.sample_rows,
        "sample_rows_per_s": args.sample_rows / sample,
    }


if __name__ == "__main__":
    main()
