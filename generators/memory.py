"""Refuse, before training, a CTGAN or TVAE fit that cannot fit in memory, in one line that says what to do.

Both train on the one-hot encoded table held as one float32 tensor, and their first and last layers are as wide as
it. A discrete column of 50,000 values made TVAE try to allocate 18.6 GiB and die with a traceback; categories
are now capped (`max_categories`, `pipeline.categories`), but many wide columns over many rows can still exceed
the machine. `check_training_memory` estimates the bytes training needs from the table's size and the networks'
parameter count (built on torch's meta device: nothing allocated) and compares them with the memory available
on the training device (the GPU's free memory, or the host's available memory from psutil or /proc/meminfo).

The estimate (float32, 4 bytes a number), an upper bound rather than a measurement:
    MATRIX_COPIES x rows x width           the encoded table, its column-grouped and training-split copies and
                                           each epoch's shuffled copy
  + OPTIMIZER_COPIES x parameters          weights, gradients and Adam's two moments
  + ACTIVATION_COPIES x batch x width      a step's inputs, outputs, softmax, Gumbel noise and their gradients
  + PER_SAMPLE_COPIES x batch x parameters under DP (TVAE's dp_epsilon): opacus holds a gradient per row of the
                                           batch for every parameter before clipping and summing them

Sampling runs in batches of `sample_rows` rows: SAMPLE_BATCH, fewer when one batch of the widest matrix it makes
(the encoded rows, or the widest layer of the networks that generate them) would exceed SAMPLE_BYTES, so memory
per batch is bounded whatever widths a model file declares.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tabtwin.pipeline.errors import TabtwinError

# Rows generated and decoded per batch. A GPU wants large batches to stay busy; on a CPU, batches of a few
# thousand rows keep each intermediate in cache and sample Adult about 1.5x faster than 50,000-row batches.
SAMPLE_BATCH = {"cpu": 8192, "cuda": 50_000}
# One sampling batch's widest float32 matrix: a crafted encoder.json of allowed width asked for ~32 GB. Rows up to
# 8,192 numbers wide keep the CPU's full batch, up to 1,342 the GPU's, so seeded samples of such models are unchanged.
SAMPLE_BYTES = 2**28
MATRIX_COPIES = 4
OPTIMIZER_COPIES = 4
ACTIVATION_COPIES = 16
# opacus's per-sample gradients, doubled: a Poisson-sampled batch exceeds batch_size at random, and each layer's
# einsum that computes its per-sample gradients makes a temporary of their size.
PER_SAMPLE_COPIES = 2
_FLOAT = 4  # bytes
_NAMED = 3  # widest columns named in the refusal


def available_memory(device: torch.device) -> int | None:
    """Bytes free for training on `device`: the GPU's free memory, or the host's available memory (psutil, else
    /proc/meminfo's MemAvailable); None where neither can be read (then nothing is refused)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def training_bytes(rows: int, width: int, parameters: int, batch: int, private: bool = False) -> int:
    """Estimated bytes to train on `rows` x `width` encoded numbers with `parameters` weights in batches of
    `batch` rows, with DP-SGD's per-sample gradients when `private` (see the module docstring)."""
    per_sample = PER_SAMPLE_COPIES * batch * parameters if private else 0
    return _FLOAT * (MATRIX_COPIES * rows * width + OPTIMIZER_COPIES * parameters + ACTIVATION_COPIES * batch * width
                     + per_sample)


def sample_rows(device: torch.device, width: int) -> int:
    """Rows per sampling batch on `device` when the widest matrix sampling makes holds `width` numbers a row:
    SAMPLE_BATCH, fewer when a batch would exceed SAMPLE_BYTES, at least one."""
    return max(1, min(SAMPLE_BATCH[device.type], SAMPLE_BYTES // (_FLOAT * max(width, 1))))


def sampling_width(model) -> int:
    """Numbers a row in the widest matrix `model` makes while sampling: its encoded rows, or a layer of the
    networks that generate them (`model.sampling_modules`; a matrix or embedding's largest dimension)."""
    modules = model._modules()
    layers = [max(t.shape) for name in model.sampling_modules for t in modules[name].parameters() if t.dim() > 1]
    # The flagship's BinnedEncoder has no output_dim: its rows are a code per column, fewer than its embedded inputs.
    return max([getattr(model.encoder_, "output_dim", 0), *layers])


def check_training_memory(model, rows: int) -> None:
    """Refuse (TabtwinError, one line) to train `model` on `rows` rows when the estimate exceeds the memory
    available on its device, naming the widest columns and what to do. Runs after the encoder is fitted and
    before the encoded table or the networks exist."""
    width = model.encoder_.output_dim
    parameters = sum(t.numel() for state in model._meta_weights().values() for t in state.values())
    private = getattr(model, "dp_epsilon", None) is not None
    need = training_bytes(rows, width, parameters, min(int(getattr(model, "batch_size", rows)), rows), private=private)
    have = available_memory(model.device_)
    if have is None or need <= have:
        return
    widths: dict[str, int] = {}
    for span in model.encoder_.output_info:
        widths[span.column] = widths.get(span.column, 0) + span.dim
    widest = sorted(widths.items(), key=lambda item: -item[1])[:_NAMED]
    named = ", ".join(f"{column!r} ({dim:,})" for column, dim in widest)
    raise TabtwinError(
        f"training {model.model_name} on {rows:,} rows needs about {_gib(need)} but {_gib(have)} is available "
        f"({model.device_.type}): the encoded table is {width:,} columns wide, the widest being {named}; declare "
        "such a column an id or drop it (metadata), lower max_categories, or use --model autoregressive"
        + ("; under DP every row of a batch keeps its own gradients: a smaller --batch-size needs less" if private else "")
    )


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"
