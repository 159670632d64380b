"""Training from codes held in memory (`SyntheticGenerator.fit_codes`): one process's rows, alone or as one rank
of a data-parallel fit over torch.distributed.

- `Rows`: the code matrix (rows, columns) in the small integer type it was stored in (int16), selected lazily: a
  selection by an index or a slice keeps the index, not a copy, and `tensor()` gathers the selected rows as int64
  (what embeddings and losses take). The validation split and each epoch's permutation are then indices over the
  codes (8 bytes a row each) instead of copies of them.
- `TorchRanks`: `training.OneProcess`'s agreement over an initialised process group (all-reduce of one number or
  of a tensor); gradients are all-reduced by `DistributedDataParallel` itself (`data_parallel`).
- `process_group`: the group of `world` ranks, gloo on CPU and NCCL on CUDA, met at a TCP address.

Source: https://pytorch.org/docs/stable/distributed.html (init_process_group, all_reduce) and
https://pytorch.org/docs/stable/notes/ddp.html (DistributedDataParallel).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tabtwin.generators.training import OneProcess

GROUP_TIMEOUT = dt.timedelta(minutes=10)  # how long a rank waits for the others at a collective
# Steps an epoch takes at most on codes: at 512 rows a batch, a validation pass (early stopping, the plateau
# decay) after every 512,000 rows a rank trains on, however large the table.
EPOCH_STEPS = 1000


class Rows:
    """Rows of the (n, columns) integer tensor `codes` chosen by `selections` (index tensors or slices, each
    applied to the rows the ones before it chose). Behaves as the tensors `training.shuffled_batches` and the
    validation split take: `len`, `shape`, `device`, indexing; `tensor()` gives the rows as int64."""

    def __init__(self, codes: torch.Tensor, selections: tuple = ()):
        self.codes, self.selections = codes, selections
        self.lengths = [len(codes)]  # of the rows each selection chooses from, then of the chosen rows
        for selection in selections:
            length = self.lengths[-1]
            self.lengths.append(len(range(*selection.indices(length))) if isinstance(selection, slice) else len(selection))
        self.length = self.lengths[-1]

    def __len__(self) -> int:
        return self.length

    @property
    def shape(self) -> tuple[int, int]:
        return (self.length, self.codes.shape[1])

    @property
    def device(self) -> torch.device:
        return self.codes.device

    def __getitem__(self, selection) -> Rows:
        return Rows(self.codes, (*self.selections, selection))

    def tensor(self) -> torch.Tensor:
        """(len, columns) int64: the selected rows, gathered (the selections are composed on the chosen rows only,
        from the last one back)."""
        index = torch.arange(self.length, device=self.device)
        for selection, length in zip(reversed(self.selections), reversed(self.lengths[:-1])):
            if isinstance(selection, slice):
                start, _, step = selection.indices(length)
                index = start + index * step
            else:
                index = selection.to(self.device)[index]
        return self.codes[index].long()


def rows_of(batch) -> torch.Tensor:
    """A batch as a tensor: `Rows` gathered, a tensor as it is."""
    return batch.tensor() if isinstance(batch, Rows) else batch


class TorchRanks(OneProcess):
    """Agreement of the ranks of the default process group (see the module docstring); values travel on
    `device` (CUDA for NCCL)."""

    def __init__(self, device: torch.device):
        self.rank, self.world, self.device = dist.get_rank(), dist.get_world_size(), device

    def _reduce(self, tensor: torch.Tensor, op) -> torch.Tensor:
        tensor = tensor.to(self.device).clone()
        dist.all_reduce(tensor, op=op)
        return tensor.cpu()

    def mean(self, value: float) -> float:
        return float(self._reduce(torch.tensor([value], dtype=torch.float64), dist.ReduceOp.SUM)) / self.world

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._reduce(tensor, dist.ReduceOp.MAX).to(tensor.device)

    def min(self, value: int) -> int:
        return int(self._reduce(torch.tensor([value]), dist.ReduceOp.MIN))

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._reduce(tensor, dist.ReduceOp.SUM).to(tensor.device)


def weights_digest(modules: dict[str, torch.nn.Module]) -> str:
    """SHA-256 of the modules' state_dicts (names, dtypes, shapes and bytes): equal on every rank of a fit whose
    gradients were all-reduced."""
    digest = hashlib.sha256()
    for name, module in modules.items():
        for key, tensor in module.state_dict().items():
            digest.update(f"{name}.{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rank_seed(seed: int, rank: int, world: int) -> int:
    """The seed of rank `rank`'s draws (split, batches, orders): `seed` itself alone, else one of its own, derived
    from (seed, rank) by numpy's SeedSequence."""
    if world == 1:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0]) >> 1


@contextmanager
def data_parallel(model, modules: list[torch.nn.Module], device: torch.device, optimizers: dict):
    """`Training.wrap` of a data-parallel fit, yielding `optimizers`: each of `modules` wrapped in
    DistributedDataParallel inside the block, in the attribute of `model` that holds it, so the model's training
    step runs through the wrapper (which all-reduces the gradients in the backward pass); the bare modules back
    afterwards. Buffers are not broadcast at each forward: every rank computes the same ones."""
    held = {name: value for name, value in vars(model).items() if any(value is m for m in modules)}
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    try:
        for name, module in held.items():
            setattr(model, name, DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False))
        yield optimizers
    finally:
        for name, module in held.items():
            setattr(model, name, module)


@contextmanager
def process_group(host: str, port: int, rank: int, world: int, device: torch.device):
    """The default process group of `world` ranks, this one `rank`, meeting at tcp://host:port (rank 0 listens):
    NCCL for a CUDA `device`, else gloo; destroyed after the block."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=rank, world_size=world,
                            timeout=GROUP_TIMEOUT)
    try:
        yield TorchRanks(device)
    finally:
        dist.destroy_process_group()
