"""Device choice, shared by every layer (generators train on it, the privacy search runs on it).

"auto" means CUDA when present, else the CPU, unless the TABTWIN_DEVICE environment variable names a device:
then "auto" means that one (TABTWIN_DEVICE=cuda runs the test suite, and anything left on "auto", on the GPU,
and fails loudly where there is none). `default_device()` is the device name the tests use.
"""

from __future__ import annotations

import os

import torch

from tabtwin.pipeline.errors import TabtwinError

DEVICE_ENV = "TABTWIN_DEVICE"


def resolve_device(device: str) -> torch.device:
    """"auto" -> $TABTWIN_DEVICE if set, else CUDA when present, else CPU; "cpu" / "cuda" / "cuda:N" as given
    (CUDA must be present)."""
    if device == "auto":
        forced = os.environ.get(DEVICE_ENV, "").strip()
        if forced and forced != "auto":
            try:
                return resolve_device(forced)
            except TabtwinError as err:
                raise TabtwinError(f"{DEVICE_ENV}={forced}: {err}") from None
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TabtwinError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise TabtwinError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def default_device() -> str:
    """The device name tests and benches use unless told otherwise: $TABTWIN_DEVICE, or "auto"."""
    return os.environ.get(DEVICE_ENV, "").strip() or "auto"
