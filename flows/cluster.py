"""The Dask cluster a command works on: a running scheduler (`--dask-address`) or a LocalCluster of
`--dask-workers` single-threaded worker processes, and each worker's share of its machine's cores.

No oversubscription: work on a worker sets torch's threads (and the BLAS pools the mixture fit and
scikit-learn use) to the worker's share of the cores of its machine: cores / task slots on that machine. A
LocalCluster of n workers gives each cores // n; for a running cluster the shares are read from the workers
themselves (their cores, and how many task slots share each host). Source: https://distributed.dask.org
(Client, LocalCluster, Client.run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tabtwin.pipeline.errors import TabtwinError


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_address() -> str | None:
    """The address of the Dask worker running the caller, or None outside a worker."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return None


def cluster_shares(client) -> dict[str, int]:
    """Threads per task for each worker of the cluster `client` talks to: its host's cores / the task slots on
    that host."""
    cores = client.run(available_cores)  # {worker address: cores}
    workers = client.scheduler_info()["workers"]
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info["nthreads"])
    return {addr: max(1, cores.get(addr, 1) // max(1, slots[info["host"]])) for addr, info in workers.items()}


# Dask's nanny starts each worker with MALLOC_TRIM_THRESHOLD_=65536 (its `pre-spawn-environ`), which also fixes
# glibc's mmap threshold at 128 KiB: every tensor past it is a fresh mmap and page faults, so torch ran 1.4x
# slower in a worker than in a plain process (a (512 x 256) @ (256 x 1024) loop: 2.2 s against 1.6 s); None
# unsets it (https://distributed.dask.org/en/stable/worker-memory.html#automatically-trim-memory).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def local_cluster(**options):
    """A LocalCluster (`options`: its keywords) whose workers allocate as a plain process does (WORKER_CONFIG)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(WORKER_CONFIG):
        return LocalCluster(**options)


def local_cluster_options(workers: int, env: dict | None = None) -> dict:
    """LocalCluster keywords: `workers` single-threaded processes, no dashboard (nothing listens beyond the
    scheduler), `env` set in each worker."""
    return {"n_workers": workers, "threads_per_worker": 1, "dashboard_address": None, **({"env": env} if env else {})}


@contextmanager
def dask_client(address: str | None = None, workers: int = 2) -> Iterator:
    """A distributed.Client on the scheduler at `address`, or on a LocalCluster of `workers` processes started
    for the block and closed after it. Raises TabtwinError (one line) when the scheduler does not answer."""
    from distributed import Client

    if address:
        try:
            client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise TabtwinError(f"the Dask scheduler at {address} did not answer ({err}); check --dask-address "
                               "and that the scheduler runs") from None
        with client:
            yield client
        return
    with local_cluster(**local_cluster_options(workers)) as cluster, Client(cluster) as client:
        yield client


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """torch's and the BLAS pools' threads capped at `threads` inside the block, restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
