"""Device choice, shared by every layer (generators train on it, the privacy search runs on it).

`default_device()` is what "auto" means in the tests and benches: the TABTWIN_DEVICE environment variable when
set (e.g. TABTWIN_DEVICE=cuda to run the test suite on a GPU), otherwise "auto".
"""

from __future__ import annotations

import os

import torch

from tabtwin.pipeline.errors import TabtwinError

DEVICE_ENV = "TABTWIN_DEVICE"


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when present, else CPU; "cpu" / "cuda" / "cuda:N" as given (CUDA must be present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TabtwinError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise TabtwinError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def default_device() -> str:
    """The device name tests and benches use unless told otherwise: $TABTWIN_DEVICE, or "auto"."""
    return os.environ.get(DEVICE_ENV, "").strip() or "auto"
