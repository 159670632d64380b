#!/usr/bin/env bash
# GPU check: the test suite with the device set to CUDA, then one timed fit per model on Adult. Figures go to
# stdout (paste them into bench/RESULTS.md). Run it from the checkout on a machine with an NVIDIA GPU:
#
#   bash bench/gpu_check.sh                 # tests on CUDA, then one fit per model at its default epochs
#   EPOCHS=30 bash bench/gpu_check.sh       # shorter fits
#   SKIP_TESTS=1 bash bench/gpu_check.sh    # fits only
#
# TABTWIN_DEVICE=cuda makes "auto" mean CUDA everywhere (pipeline/device.py) and is the tests' device fixture
# (tests/conftest.py), so the suite trains and searches on the GPU. Without CUDA the script stops at once with
# exit code 1 and says why.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
PYTEST="${PYTEST:-.venv/bin/pytest}"
DATA="${DATA:-../shared/data/adult.csv}"
EPOCHS="${EPOCHS:-}"
export TABTWIN_DEVICE=cuda

if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    "$PYTHON" -c 'import torch; print(f"gpu_check: error: CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda}); run this on a machine with an NVIDIA GPU and a CUDA build of torch", file=__import__("sys").stderr)' \
        || echo "gpu_check: error: CUDA is not available (torch could not be imported with $PYTHON)" >&2
    exit 1
fi
if [ ! -f "$DATA" ]; then
    echo "gpu_check: error: $DATA not found; set DATA=path/to/adult.csv" >&2
    exit 1
fi

"$PYTHON" - <<'PY'
import platform, torch
print(f"# gpu_check {platform.node()}: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

if [ -z "${SKIP_TESTS:-}" ]; then
    echo "## test suite with TABTWIN_DEVICE=cuda"
    start=$(date +%s)
    status=0
    "$PYTEST" -q -p no:cacheprovider || status=$?
    echo "tests: exit $status in $(( $(date +%s) - start )) s"
else
    status=0
fi

echo "## one fit per model on $DATA"
DATA="$DATA" EPOCHS="$EPOCHS" "$PYTHON" - <<'PY'
import os, time

import pandas as pd
import torch

from tabtwin.flows.steps import MODEL_NAMES
from tabtwin.generators import model_class
from tabtwin.pipeline.ingest import read_table
from tabtwin.pipeline.schema import infer_schema

df = read_table(os.environ["DATA"])
schema = infer_schema(df)
epochs = os.environ.get("EPOCHS")
print(f"{len(df):,} rows x {df.shape[1]} columns")
print(f"{'model':<10} {'epochs':>6} {'fit s':>8} {'s/epoch':>8} {'peak GiB':>9}  device")
for name in MODEL_NAMES:
    cls = model_class(name)
    params = dict(device="cuda", random_state=0, verbose=False)
    if epochs:
        params["epochs"] = int(epochs)
    model = cls(**params)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model.fit(df, schema)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    n = int(getattr(model, "epochs", 0) or 0)
    peak = torch.cuda.max_memory_allocated() / 2**30
    per_epoch = f"{seconds / n:8.3f}" if n else f"{'n/a':>8}"
    print(f"{name:<10} {n:>6} {seconds:8.1f} {per_epoch} {peak:9.2f}  {model.device_}", flush=True)
PY
exit "$status"
