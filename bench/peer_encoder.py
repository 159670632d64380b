"""Time ctgan's DataTransformer on a CSV; runs INSIDE bench/.peer-venv only.

ctgan is BSL-licensed, so tabtwin never imports it: bench/encoder.py runs this
script in a subprocess and reads the single JSON line it prints on stdout.
Everything else (warnings, library chatter) goes to stderr.

    python bench/peer_encoder.py CSV --discrete col1 col2 ... [--repeats 3] [--max-rows N]
        [--drop col ...] [--threads N]
"""

import argparse
import contextlib
import json
import sys
import time
from importlib.metadata import version

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--discrete", nargs="*", default=[])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-rows", type=int, default=None)
    ap.add_argument("--drop", nargs="*", default=[],
                    help="columns to drop first (e.g. id columns our schema excludes)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads(N); default: leave torch's default")
    args = ap.parse_args()

    # Keep stdout for the JSON line only: libraries may print while working.
    with contextlib.redirect_stdout(sys.stderr):
        import torch
        from ctgan.data_transformer import DataTransformer

        if args.threads:
            torch.set_num_threads(args.threads)

        df = pd.read_csv(args.csv)
        df = df.drop(columns=args.drop)
        if args.max_rows:
            df = df.head(args.max_rows)
        missing = set(args.discrete) - set(df.columns)
        if missing:
            sys.exit(f"discrete columns not in CSV: {sorted(missing)}")

        best = {"fit_s": float("inf"), "transform_s": float("inf"), "inverse_s": float("inf")}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            dt = DataTransformer()  # fresh per repeat so fit never reuses state
            dt.fit(df, discrete_columns=args.discrete)
            t1 = time.perf_counter()
            X = dt.transform(df)
            t2 = time.perf_counter()
            dt.inverse_transform(X)
            t3 = time.perf_counter()
            for key, dur in (("fit_s", t1 - t0), ("transform_s", t2 - t1), ("inverse_s", t3 - t2)):
                best[key] = min(best[key], dur)

    result = {
        **best,
        "output_dim": int(dt.output_dimensions),
        "rows": len(df),
        "cols": df.shape[1],
        "ctgan_version": version("ctgan"),
        "rdt_version": version("rdt"),
        "torch_version": torch.__version__,
        "sklearn_version": version("scikit-learn"),
        "numpy_version": version("numpy"),
        "pandas_version": version("pandas"),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
