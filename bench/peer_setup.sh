#!/usr/bin/env bash
# Create bench/.peer-venv with ctgan for benchmarking only.
# ctgan is BSL-licensed: it lives in this throwaway venv and is only ever
# driven through a subprocess (bench/peer_encoder.py), never imported by tabtwin.
# Idempotent: does nothing if ctgan already imports in the venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.peer-venv"
PY="$VENV/bin/python"
TORCH_VERSION="2.13.0"
WHEEL_DIR="${WHEEL_DIR:-/opt/wheels}"
CTGAN_VERSION="0.12.1"   # latest on the index when pinned (pip index versions ctgan)

if [[ -x "$PY" ]] && "$PY" -c "import ctgan" 2>/dev/null; then
    echo "peer venv ready: $VENV" >&2
else
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    # Pin torch for every pip call below, so ctgan's own torch requirement can
    # never pull another build (a CUDA torch from the index is several GB).
    CONSTRAINTS="$VENV/torch-constraint.txt"
    echo "torch==$TORCH_VERSION+cpu" > "$CONSTRAINTS"
    # Torch first, from the local CPU wheel file (its small pure-Python deps
    # come from the index).
    WHEEL="$(ls "$WHEEL_DIR"/torch-"$TORCH_VERSION"+cpu-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$WHEEL" ]]; then
        echo "ERROR: no torch $TORCH_VERSION+cpu wheel in $WHEEL_DIR (set WHEEL_DIR)" >&2
        exit 1
    fi
    "$PY" -m pip install -c "$CONSTRAINTS" "$WHEEL"
    "$PY" -m pip install -c "$CONSTRAINTS" "ctgan==$CTGAN_VERSION"
    "$PY" -m pip install -c "$CONSTRAINTS" pyarrow  # the generator bench exchanges tables as Parquet
fi

# Verify the torch build really is the CPU one, then report versions.
torch_line="$("$PY" -m pip list 2>/dev/null | awk '$1 == "torch" {print $2}')"
if [[ "$torch_line" != "$TORCH_VERSION+cpu" ]]; then
    echo "ERROR: peer venv torch is '$torch_line', expected $TORCH_VERSION+cpu" >&2
    exit 1
fi
if "$PY" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "ERROR: CUDA (nvidia-*) packages found in the peer venv" >&2
    exit 1
fi
"$PY" -m pip list 2>/dev/null | awk 'tolower($1) ~ /^(ctgan|rdt|torch)$/ {print $1, $2}'
