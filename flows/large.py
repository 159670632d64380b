"""`tabtwin run` and the `synthesize` flow on one partitioned table, end to end, never reading it whole.

A run whose data is a partitioned table (a folder or glob of Parquet or CSV files, or a database `--table` read in
`--partitions` ranges of `--partition-column`) goes through `run_partitioned` instead of the in-memory sequence:

1. split: a seeded row split (`pipeline.splits`), so the holdout is real rows the model never sees;
2. fit: the flagship from codes (`flows.fitting.fit_table`): streamed in this process, or data-parallel on the
   Dask cluster of `--runner dask` (`--dask-address`, or a LocalCluster of `--dask-workers`);
3. sample: `--rows` rows (default: as many as the training side) as a Parquet dataset in parts, on the same
   cluster (`flows.sampling.sample_dataset`), into a hidden folder beside the run's;
4. evaluate: `evaluation.scale.evaluate_tables` on uniform samples (the report states their sizes), the exact
   copies counted over every row;
5. publish: the run folder `OUT/RUN_ID/` (report.json, report.html, expectation_suite.json, run.json) appears
   whole, with the dataset moved in as `synthetic/` only when the gate passed; otherwise the dataset is deleted.

Each stage reports a line to `log` (the flow's logger: the run's logs on the Prefect server). The model is saved
under `CACHE/partitioned/RUN_ID/` and not reused by a later run (the in-memory cache fingerprints every row; a
lake table is not re-hashed for it), and it is not registered for requests (a request re-reads its source whole).
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

from tabtwin.evaluation.report import write_report
from tabtwin.evaluation.scale import EVALUATION_ROWS, evaluate_tables
from tabtwin.flows import publish as publishing
from tabtwin.flows import steps
from tabtwin.flows.cluster import dask_client
from tabtwin.flows.fitting import check_fits_codes, fit_table, from_parts
from tabtwin.flows.sampling import sample_dataset
from tabtwin.flows.spec import Places, RunSpec, masked
from tabtwin.generators import model_class
from tabtwin.pipeline.datasets import open_dataset, open_parts
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory, write_json_atomic
from tabtwin.pipeline.schema import load_metadata
from tabtwin.pipeline.splits import split_parts
from tabtwin.pipeline.streaming import partitioned_schema


def is_partitioned_run(spec: RunSpec) -> bool:
    """Whether the spec's data is a partitioned table fitted from codes (this module's run) rather than read
    whole: a database table in ranges, or a folder or glob for a model that `fits_codes` (CTGAN and TVAE read a
    folder whole, as `fit` does)."""
    return from_parts(spec.data, spec.partition_column, model_class(spec.model))


def run_partitioned(spec: RunSpec, places: Places, log=print) -> tuple[dict, dict]:
    """The run of the module docstring; returns (the run's summary, as `synthesize.run_sequence` returns it,
    and the evaluation's results). Raises TabtwinError (one line) for bad input, before any training where it
    can be known then (a model that does not fit from codes, a bad gate file, a source that is one file)."""
    start = time.time()
    gate = steps.gate_of(spec)
    model = model_class(spec.model)(**spec.generator_params(), verbose=False)
    check_fits_codes(model)
    table = open_parts(spec.data, spec.table, spec.partition_column, spec.partitions)
    if table is None:
        raise TabtwinError(f"{spec.data} is one table file, not a partitioned table; drop --partition-column")
    train, holdout = split_parts(table, spec.holdout_fraction, spec.seed)
    schema = partitioned_schema(table, load_metadata(spec.metadata) if spec.metadata else None)
    log(f"{masked(spec.data)}: {table.count_rows():,} rows in {len(table.part_rows())} parts, "
        f"{train.count_rows():,} to train on and {holdout.count_rows():,} held out")
    run_id = publishing.new_run_id(spec)
    model_dir = Path(places.cache) / "partitioned" / run_id
    Path(places.out).mkdir(parents=True, exist_ok=True)
    dataset = Path(places.out) / f".{run_id}.synthetic"  # beside the run folder: moved in by a rename
    rows = spec.rows or train.count_rows()
    try:
        with dask_client(spec.dask_address, spec.dask_workers) if spec.runner == "dask" else nullcontext() as client:
            model = fit_table(train, schema, model, client, log, start)
            model.save(model_dir)
            log(f"fitted in {time.time() - start:.0f} s ({len(model.history_)} epochs, ended by "
                f"{model.stop_reason_}); model saved to {model_dir}")
            address = client.scheduler.address if client is not None else None
            sample_dataset(model_dir, rows, dataset, seed=spec.seed, conditions=spec.conditions or None,
                           device=spec.device, runner=spec.runner, dask_address=address, log=log)
            log(f"sampled {rows:,} rows ({time.time() - start:.0f} s)")
            privacy = steps.model_privacy(model)
            run = steps.run_record("run", spec, model_dir, None, rows)
            results, samples = evaluate_tables(train, holdout, open_dataset(dataset), schema, rows=EVALUATION_ROWS,
                                               client=client, target=spec.target, gate=gate, device=spec.device,
                                               seed=spec.seed, run=run, dp=privacy)
        passed = bool(results["gate"]["passed"])
        log(f"evaluated ({time.time() - start:.0f} s): gate {'PASSED' if passed else 'FAILED'}")
        folder = Path(places.out) / run_id
        with atomic_directory(folder, replaces=publishing.RUN_FILES) as staging:
            write_report(results, staging, samples["train"], samples["synthetic"], schema)
            if passed:
                os.replace(dataset, staging / "synthetic")
            info = {"spec": {**asdict(spec), "data": masked(spec.data)}, "model_dir": str(model_dir),
                    "model_reused": False, "run_id": run_id, "gate_passed": passed, "published": passed}
            write_json_atomic(info, staging / "run.json")
    finally:
        shutil.rmtree(dataset, ignore_errors=True)  # a withheld (or unfinished) dataset leaves nothing behind
    summary = {"data": spec.data, "model": spec.model, "folder": str(folder), "passed": passed,
               "synthetic": str(folder / "synthetic") if passed else None, "model_reused": False,
               "model_dir": str(model_dir), "registered": None, **steps.gate_summary(results), "privacy": privacy}
    return summary, results

