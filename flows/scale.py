"""Fan several tables and/or several models out over a Dask cluster (prefect-dask's DaskTaskRunner).

Each (table, model) pair is one task running the whole pipeline (`flows.steps.run_pipeline`) on a worker;
`dask_address` names a running scheduler, otherwise a LocalCluster is started for the flow and closed after.
"""

from __future__ import annotations

import tabtwin.flows  # noqa: F401  (quiet, offline defaults)

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tabtwin.flows import steps
from tabtwin.flows.steps import RunSpec

run_one = task(steps.run_pipeline, cache_policy=NO_CACHE, persist_result=False, retries=1, name="run-pipeline")


@flow(name="synthesize-many")
def synthesize_many(specs: list[dict], out: str = "out/runs", cache: str = "out/cache") -> list[dict]:
    futures = [run_one.submit(RunSpec(**spec), out, cache) for spec in specs]
    return [future.result() for future in futures]


def run_many(specs: list[RunSpec], out: str, cache: str, dask_address: str | None = None, workers: int = 2) -> list[dict]:
    from prefect_dask import DaskTaskRunner

    if dask_address:
        runner = DaskTaskRunner(address=dask_address)
    else:
        # One thread per worker process: torch and the GMM use all cores of a process already.
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "dashboard_address": None})
    plain = [spec.__dict__ for spec in specs]
    return synthesize_many.with_options(task_runner=runner)(plain, out, cache)
