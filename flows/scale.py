"""Fan several tables and/or several models out over a Dask cluster (prefect-dask's DaskTaskRunner).

Each (table, model) pair is one task on a worker running the same pipeline sequence as the local flow
(`flows.synthesize.run_sequence`): it publishes, creates the gate's artifacts and registers a passing model.
`dask_address` names a running scheduler, otherwise a LocalCluster is started for the flow and closed after.

Each task limits torch's threads to its worker's share of the cores (`flows.cluster`), so workers do not
oversubscribe the CPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict

import dask
import torch
from distributed import Client
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner
from threadpoolctl import threadpool_limits

from tabtwin.flows.cluster import WORKER_CONFIG, available_cores, cluster_shares, local_cluster_options, worker_address
from tabtwin.flows.registry import check_registry_names
from tabtwin.flows.server import ensure_api
from tabtwin.flows.spec import Places, RunSpec, place_default
from tabtwin.flows.synthesize import PLAIN, run_sequence


@task(cache_policy=NO_CACHE, persist_result=False, retries=1, name="run-pipeline")
def run_one(spec: dict, places: dict, threads: int, shares: dict[str, int] | None = None) -> dict:
    """One (table, model) pair on a worker: the pipeline sequence with torch limited to the worker's share."""
    threads = (shares or {}).get(worker_address(), threads)
    torch.set_num_threads(threads)
    run = RunSpec(**spec)
    key = "synthesize-report-" + re.sub(r"[^a-z0-9]+", "-", f"{os.path.basename(run.data)}-{run.model}".lower()).strip("-")
    with threadpool_limits(limits=threads):
        summary = run_sequence(run, Places(**places), PLAIN, artifact_key=key)
    return {**summary, "torch_threads": torch.get_num_threads()}


@flow(name="synthesize-many")
def synthesize_many(
    specs: list[dict],
    out: str = place_default("out"),
    cache: str = place_default("cache"),
    registry: str | None = place_default("registry"),
    threads: int = 1,
    shares: dict[str, int] | None = None,
) -> list[dict]:
    places = {"out": out, "cache": cache, "registry": registry}
    futures = [run_one.submit(spec, places, threads, shares) for spec in specs]
    return [future.result() for future in futures]


def run_many(specs: list[RunSpec], places: Places | None = None, dask_address: str | None = None,
             workers: int = 2) -> list[dict]:
    places = places or Places()
    check_registry_names(specs, places.registry)  # two pairs that would register under one name: refused up front
    if dask_address:
        runner = DaskTaskRunner(address=dask_address)
        with Client(dask_address, timeout="30s") as client:
            shares, threads = cluster_shares(client), 1
    else:
        # Single-threaded worker processes, each task with cores // workers torch threads: no oversubscription.
        # The workers use this process's Prefect API rather than each starting a temporary server of its own.
        runner = DaskTaskRunner(cluster_kwargs=local_cluster_options(workers, env={"PREFECT_API_URL": ensure_api()}))
        shares, threads = None, max(1, available_cores() // workers)
    plain = [asdict(spec) for spec in specs]
    with dask.config.set(WORKER_CONFIG):  # the runner starts its LocalCluster inside the flow
        return synthesize_many.with_options(task_runner=runner)(plain, places.out, places.cache, places.registry,
                                                                threads, shares)
