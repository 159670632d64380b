"""Subnormal floats in training: zeroed at their source once an epoch (`zero_subnormals_`), flushed in the
stepping thread meanwhile (`flush_denormals`). `training.train` calls both.

Measured on Adult (bench/RESULTS.md "Subnormal floats"). Weights that get no gradient from the
data (rows of dead ReLU units, latent dimensions the KL term switched off) are pulled to zero by weight decay
alone; once their gradient is far below Adam's eps, each step shrinks them by a near-constant factor (about 0.95)
into the subnormal range, where rounding stalls them instead of reaching zero, and every op touching them takes
the CPU's slow path (~250x slower). Long before that, at 1e-30, they are normal but their products in the backward
pass are not: the TVAE's gradient with respect to the encoder's last hidden layer had a column of 500 subnormal
values per dead unit, 2,485 per step by epoch 160, and its epochs grew from 0.4 s to 4.4 s over 300
(bench/generators.py, 1 thread). The fix at the source is `zero_subnormals_` once an epoch: a weight or Adam first
moment below FLUSH_BELOW (1e-20) moves no float32 sum of terms near 1, so it is set to the zero it was converging
to (one that is exactly zero with no data gradient stays zero: its decay gradient is zero too); once an epoch is
enough, since at 0.95 a step going from 1e-20 to the subnormal range takes about 760 steps. `flush_denormals`
(`torch.set_flush_denormal`) is a mitigation only: its FTZ/DAZ flags belong to the calling thread, not to torch's
other intra-op threads, so with 2 threads a matmul on subnormal weights ran only 2x faster with it.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

# Below this magnitude a weight or an Adam first moment changes no float32 result that matters, yet its products
# with gradients land in the subnormal range (see the module docstring).
FLUSH_BELOW = 1e-20


def zero_subnormals_(*optimizers: torch.optim.Optimizer) -> None:
    """Set every negligible float (|x| < FLUSH_BELOW; subnormal, for Adam's second moments) in the optimizers'
    parameters and state to zero, in place (see the module docstring)."""
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    state = optimizer.state.get(param, {})
                    for name, tensor in [("param", param), *((k, v) for k, v in state.items() if torch.is_tensor(v))]:
                        if tensor.is_floating_point() and tensor.dtype == torch.float32 and tensor.dim():
                            floor = tiny if name in ("exp_avg_sq", "max_exp_avg_sq") else FLUSH_BELOW
                            tensor.masked_fill_(tensor.abs() < floor, 0.0)


@contextmanager
def flush_denormals(enabled: bool = True):
    """Flush subnormal floats to zero in the calling thread inside the block (`torch.set_flush_denormal(True)`),
    restoring the previous mode afterwards; a mitigation only (see the module docstring)."""
    if not enabled:
        yield
        return
    before = _flush_mode()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def _flush_mode() -> bool:
    """Whether the calling thread flushes subnormals now: half the smallest normal float32 is then 0."""
    tiny = torch.tensor([torch.finfo(torch.float32).tiny], dtype=torch.float32)
    return bool((tiny * 0.5 == 0).item())
