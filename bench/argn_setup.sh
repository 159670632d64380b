#!/usr/bin/env bash
# Create bench/.argn-venv with MOSTLY AI's mostlyai-engine (TabularARGN, Apache-2.0) for benchmarking only.
# It lives in this throwaway venv and is only ever driven through a subprocess (bench/peer_quality.py),
# never imported by tabtwin. Idempotent: does nothing if mostlyai.engine already imports in the venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.argn-venv"
PY="$VENV/bin/python"
TORCH_VERSION="2.13.0"
WHEEL_DIR="${WHEEL_DIR:-/opt/wheels}"
ENGINE_VERSION="2.7.3"

if [[ -x "$PY" ]] && "$PY" -c "import mostlyai.engine" 2>/dev/null; then
    echo "argn venv ready: $VENV" >&2
else
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    # Pin torch for every pip call below, so the engine's own torch requirement can never
    # replace it (a CUDA torch from the index is several GB).
    CONSTRAINTS="$VENV/torch-constraint.txt"
    echo "torch==$TORCH_VERSION+cpu" > "$CONSTRAINTS"
    WHEEL="$(ls "$WHEEL_DIR"/torch-"$TORCH_VERSION"+cpu-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$WHEEL" ]]; then
        echo "ERROR: no torch $TORCH_VERSION+cpu wheel in $WHEEL_DIR (set WHEEL_DIR)" >&2
        exit 1
    fi
    "$PY" -m pip install -c "$CONSTRAINTS" "$WHEEL"
    "$PY" -m pip install -c "$CONSTRAINTS" "mostlyai-engine==$ENGINE_VERSION" pyarrow
    # Their wheels do not load against the CPU torch, and the tabular engine does not need them.
    "$PY" -m pip uninstall -y torchvision torchaudio || true
fi

torch_line="$("$PY" -m pip list 2>/dev/null | awk '$1 == "torch" {print $2}')"
if [[ "$torch_line" != "$TORCH_VERSION+cpu" ]]; then
    echo "ERROR: argn venv torch is '$torch_line', expected $TORCH_VERSION+cpu" >&2
    exit 1
fi
if "$PY" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "ERROR: CUDA (nvidia-*) packages found in the argn venv" >&2
    exit 1
fi
"$PY" -c "import mostlyai.engine"  # fails loudly if the engine does not load
"$PY" -m pip list 2>/dev/null | awk 'tolower($1) ~ /^(mostlyai-engine|torch)$/ {print $1, $2}'
