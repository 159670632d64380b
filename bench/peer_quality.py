"""Fit one peer generator and sample from it, in the peer's own venv; driven by bench/quality.py.

    bench/.peer-venv/bin/python bench/peer_quality.py --model ctgan|tvae --train T.parquet --rows N --out S.parquet
        [--discrete COL ...] [--datetime COL=FORMAT ...] [--epochs E] [--seed S] [--threads T] [--flush-denormal]
    bench/.argn-venv/bin/python bench/peer_quality.py --model argn ...

Prints one JSON line: fit_seconds and sample_seconds, timed here around everything the peer needs (its own
encoding, training, sampling and decoding), plus the package version and torch threads.

The peers get the training table as bench/quality.py read it, with two adaptations, undone after sampling:
- --datetime columns (strings in the table) are parsed with the schema's format; the ctgan package gets them as
  numbers (nanoseconds), TabularARGN as datetimes. They go back as strings in the same format.
- ctgan/tvae only: a numeric column with nulls (which the ctgan package rejects) is filled with its median and
  gets a discrete null-indicator column, as SDV does; sampled rows whose indicator is set get a null.
TabularARGN gets everything else as is, with its default settings (device cpu). --flush-denormal runs the ctgan
package with `torch.set_flush_denormal(True)`, as mostlyai-engine's training and tabtwin's flagship do: it changes
no setting of the model, only the arithmetic of floats below 1e-38, and spares its TVAE the slowdown of late
epochs (8.4x on Adult without it, bench/RESULTS.md). The ctgan package (BSL) and
mostlyai-engine are never imported by tabtwin: only this script, in a throwaway venv, does.
"""

import argparse
import json
import os
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["ctgan", "tvae", "argn"], required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--discrete", nargs="*", default=[])
    ap.add_argument("--datetime", nargs="*", default=[], help="COL=FORMAT for datetime columns stored as strings")
    ap.add_argument("--epochs", type=int, help="ctgan/tvae only; default: the package's default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flush-denormal", action="store_true", help="ctgan/tvae: torch.set_flush_denormal(True)")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit("--flush-denormal: this CPU cannot flush subnormal floats (torch.set_flush_denormal)")
    train = pd.read_parquet(args.train)
    datetimes = dict(item.split("=", 1) for item in args.datetime)
    run = _argn if args.model == "argn" else _ctgan
    synthetic, figures = run(args, train, datetimes)
    synthetic = synthetic[list(train.columns)]
    synthetic.to_parquet(args.out, index=False)
    figures.update(model=args.model, rows=len(synthetic), torch=torch.__version__, threads=torch.get_num_threads(),
                   flush_denormal=args.flush_denormal)
    print(json.dumps(figures))


def _parse_datetimes(df, datetimes, as_numbers: bool):
    import pandas as pd

    df = df.copy()
    for column, fmt in datetimes.items():
        parsed = pd.to_datetime(df[column], format=fmt, utc="%z" in fmt or "%Z" in fmt)
        if as_numbers:
            parsed = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
            df[column] = parsed.astype("int64").where(parsed.notna()).astype("float64")
        else:
            df[column] = parsed
    return df


def _format_datetimes(df, datetimes, from_numbers: bool):
    import pandas as pd

    for column, fmt in datetimes.items():
        values = pd.to_datetime(df[column].round(), unit="ns") if from_numbers else pd.to_datetime(df[column])
        if ("%z" in fmt or "%Z" in fmt) and values.dt.tz is None:
            values = values.dt.tz_localize("UTC")
        df[column] = values.dt.strftime(fmt).astype(object).where(values.notna(), None)
    return df


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _ctgan(args, train, datetimes):
    import ctgan
    import pandas as pd
    from ctgan import CTGAN, TVAE

    def fit():
        df = _parse_datetimes(train, datetimes, as_numbers=True)
        discrete = list(args.discrete)
        indicators = {}
        for column in df.columns:
            if column not in discrete and df[column].isna().any():
                flag = f"{column}__is_null"
                indicators[column] = flag
                df[flag] = df[column].isna().map({True: "null", False: "value"})
                df[column] = df[column].fillna(df[column].median() if df[column].notna().any() else 0.0)
                discrete.append(flag)
        kwargs = {"enable_gpu": False}
        if args.epochs:
            kwargs["epochs"] = args.epochs
        model = (CTGAN if args.model == "ctgan" else TVAE)(**kwargs)
        model.set_random_state(args.seed)
        model.fit(df, discrete)
        return model, indicators

    (model, indicators), fit_s = _timed(fit)

    def sample():
        df = model.sample(args.rows)
        for column, flag in indicators.items():
            df[column] = df[column].where(df[flag] != "null")
            df = df.drop(columns=flag)
        return _format_datetimes(df, datetimes, from_numbers=True)

    synthetic, sample_s = _timed(sample)
    epochs = model.epochs if hasattr(model, "epochs") else getattr(model, "_epochs", None)
    return synthetic, {"fit_seconds": fit_s, "sample_seconds": sample_s, "package": "ctgan",
                       "version": ctgan.__version__, "epochs": epochs,
                       "null_indicators": sorted(indicators)}


def _argn(args, train, datetimes):
    import mostlyai.engine
    from mostlyai.engine import TabularARGN

    with tempfile.TemporaryDirectory(prefix="argn-") as workspace:

        def fit():
            df = _parse_datetimes(train, datetimes, as_numbers=False)
            return TabularARGN(workspace_dir=workspace, device="cpu", random_state=args.seed).fit(df)

        model, fit_s = _timed(fit)

        def sample():
            return _format_datetimes(model.sample(n_samples=args.rows), datetimes, from_numbers=False)

        synthetic, sample_s = _timed(sample)
    return synthetic, {"fit_seconds": fit_s, "sample_seconds": sample_s, "package": "mostlyai-engine",
                       "version": mostlyai.engine.__version__}


if __name__ == "__main__":
    sys.exit(main())
