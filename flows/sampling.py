"""`tabtwin sample MODEL --rows N --out DIR/`: a synthetic table of any size as a Parquet dataset, its parts drawn
in parallel on Dask workers (or one after the other in this process), memory bounded by the part size.

The dataset's layout, seeds, resume and manifest are `pipeline.parts`'s: part i holds rows [i * part_rows, ...)
drawn from the seed of (seed, i), so the same seed gives the same rows whatever the number of workers, and a
rerun after a crash writes only the parts that are missing. Every worker loads the model once and writes its
parts straight into the output folder, which must therefore be on storage every worker sees (any folder, for a
LocalCluster).
"""

from __future__ import annotations

import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

from tabtwin.flows.cluster import available_cores, cluster_shares, dask_client, limited_threads, worker_address
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.outputs import sha256
from tabtwin.pipeline.parts import PLAN, PartPlan, finish, prepare, read_json, write_part

DEFAULT_PART_ROWS = 1_000_000


def model_fingerprint(model_dir: str | Path) -> str:
    """SHA-256 of the model's config.json, which records the SHA-256 of every other file of the model."""
    return sha256(Path(model_dir) / "config.json")


def plan_for(model_dir, rows: int, out_dir, part_rows: int, seed: int | None, conditions: dict | None) -> PartPlan:
    """The dataset plan; without a seed, the seed of an unfinished dataset of the same plan at `out_dir` (so a
    rerun resumes it), else a fresh one."""
    model = model_fingerprint(model_dir)
    if seed is None:
        previous = read_json(Path(out_dir).expanduser() / PLAN) or {}
        same = {"rows": rows, "part_rows": part_rows, "model": model, "conditions": conditions}
        seed = previous["seed"] if all(previous.get(k) == v for k, v in same.items()) else secrets.randbits(62)
    return PartPlan(rows=rows, part_rows=part_rows, seed=seed, model=model, conditions=conditions)


@lru_cache(maxsize=2)
def _model(model_dir: str, fingerprint: str, device: str):
    """The model, loaded once per process (a worker writes many parts); the fingerprint keys the cache, so a
    replaced model folder is loaded again."""
    from tabtwin.generators import load_model

    return load_model(model_dir, device=device)


def sample_part(model_dir: str, out_dir: str, plan: PartPlan, index: int, device: str = "cpu",
                shares: dict | None = None, threads: int = 1) -> dict:
    """Draw and write part `index` of `plan` (on a worker or here); returns `pipeline.parts.write_part`'s record
    with the seconds it took."""
    start = time.perf_counter()
    with limited_threads((shares or {}).get(worker_address(), threads)):
        model = _model(model_dir, plan.model, device)
        frame = model.sample(plan.rows_of(index), conditions=plan.conditions, seed=plan.seed_of(index),
                             id_offset=plan.offset_of(index))
        record = write_part(out_dir, plan, index, frame)
    return {**record, "seconds": round(time.perf_counter() - start, 3)}


def sample_dataset(model_dir: str | Path, rows: int, out_dir: str | Path, part_rows: int = DEFAULT_PART_ROWS,
                   seed: int | None = None, conditions: dict | None = None, device: str = "cpu",
                   runner: str = "local", dask_address: str | None = None, workers: int = 2,
                   overwrite: bool = False, log=print) -> dict:
    """Write `rows` synthetic rows of the model at `model_dir` as a Parquet dataset in `out_dir`; returns the
    manifest. `runner` "dask" draws the parts on a Dask cluster (`dask_address`, or a LocalCluster of `workers`
    processes); "local" draws them here in turn. `log` gets one line per finished part.

    Raises TabtwinError (one line) for an output folder that holds anything but a tabtwin dataset (unless
    `overwrite`), a model folder that fails its checks, or conditions the model refuses: all before any part.
    """
    model_dir, out_dir = str(Path(model_dir).resolve()), str(Path(out_dir).expanduser().resolve())
    plan = plan_for(model_dir, rows, out_dir, part_rows, seed, conditions)
    # The model's checks and the conditions are refused here, before the folder is touched or a worker starts.
    _model(model_dir, plan.model, device).sample(0, conditions=conditions, seed=0)
    todo = prepare(out_dir, plan, overwrite=overwrite, inputs=[model_dir])
    start = time.perf_counter()
    done = plan.parts - len(todo)
    if done:
        log(f"resuming: {done} of {plan.parts} parts are already written")
    if runner == "dask" and todo:
        with dask_client(dask_address, workers) as client:
            shares = cluster_shares(client)
            futures = client.map(sample_part, [model_dir] * len(todo), [out_dir] * len(todo), [plan] * len(todo),
                                 todo, device=device, shares=shares, pure=False)
            from distributed import as_completed

            for future in as_completed(futures):
                done += 1
                _log_part(log, future.result(), done, plan, start)
    else:
        threads = available_cores()
        for index in todo:
            done += 1
            _log_part(log, sample_part(model_dir, out_dir, plan, index, device, threads=threads), done, plan, start)
    return finish(out_dir, plan)


def _log_part(log, record: dict, done: int, plan: PartPlan, start: float) -> None:
    seconds = time.perf_counter() - start
    log(f"part {record['index'] + 1}/{plan.parts}: {record['rows']:,} rows in {record['seconds']:.1f} s "
        f"({done}/{plan.parts} done, {seconds:.0f} s so far)")


def is_dataset_output(out: str) -> bool:
    """Whether `sample --out` names a dataset folder: a path ending in a separator (DIR/) or an existing folder."""
    return out.endswith(("/", os.sep)) or Path(out).expanduser().is_dir()


def sample_command(args, conditions: dict) -> int:
    """`tabtwin sample MODEL --rows N --out DIR/ [--part-rows K] [--runner dask ...]`: prints one line per part,
    then where the dataset is; TabtwinError (one line, exit 2) before any part for a refused folder or model."""
    if not is_dataset_output(args.out):
        raise TabtwinError(f"--runner dask writes a Parquet dataset in parts: give --out a folder ({args.out}/)")
    start = time.perf_counter()
    manifest = sample_dataset(args.model_dir, args.rows, args.out, part_rows=args.part_rows, seed=args.seed,
                              conditions=conditions or None, device=args.device, runner=args.runner,
                              dask_address=args.dask_address, workers=args.dask_workers, overwrite=args.overwrite,
                              log=lambda line: print(line, flush=True))
    print(f"{manifest['rows']:,} rows sampled in {time.perf_counter() - start:.1f} s and written to "
          f"{Path(args.out).expanduser().resolve()} ({len(manifest['parts_written'])} parts, seed {manifest['seed']})")
    return 0
