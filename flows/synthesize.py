"""The `synthesize` and `request` flows: a few lines each over `flows.steps`.

synthesize: ingest -> split -> fit (cached by data fingerprint + parameters) -> sample -> evaluate -> publish.
A failed gate keeps the report, withholds the data, and marks the run failed.
request: sample from a registered model (no training) under conditions, evaluate against the real rows that
meet the same conditions, and hand out the table only if the gate passes.
"""

from __future__ import annotations

import tabtwin.flows  # noqa: F401  (quiet, offline Prefect defaults before Prefect is imported)

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from tabtwin.flows import steps
from tabtwin.flows.steps import RunSpec

# Results (DataFrames, models) stay in memory: nothing is pickled to Prefect's result storage.
quiet_task = task(cache_policy=NO_CACHE, persist_result=False)
io_task = task(cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=2)

load_inputs = io_task(steps.load_inputs)
fit_or_reuse = quiet_task(steps.fit_or_reuse)
sample_synthetic = quiet_task(steps.sample_synthetic)
evaluate_run = quiet_task(steps.evaluate_run)
publish = io_task(steps.publish)
register_model = io_task(steps.register_model)


@flow(name="synthesize", log_prints=True)
def synthesize(
    data: str,
    model: str = "ctgan",
    epochs: int = 300,
    batch_size: int = 500,
    rows: int | None = None,
    target: str | None = None,
    out: str = "out/runs",
    cache: str = "out/cache",
    registry: str | None = "out/registry",
    holdout_fraction: float = 0.2,
    seed: int = 0,
    device: str = "auto",
    table: str | None = None,
    metadata: str | None = None,
    gate: str | None = None,
):
    spec = RunSpec(data=data, model=model, epochs=epochs, batch_size=batch_size, rows=rows, target=target,
                   holdout_fraction=holdout_fraction, seed=seed, device=device, table=table, metadata=metadata, gate=gate)
    train, holdout, schema = load_inputs(spec)
    model_dir, reused = fit_or_reuse(train, schema, spec, cache)
    get_run_logger().info("model %s (%s)", model_dir, "reused from cache" if reused else "trained")
    synthetic = sample_synthetic(model_dir, rows or len(train), spec)
    results = evaluate_run(train, holdout, synthetic, schema, spec)
    published = publish(out, steps.new_run_id(spec), results, train, synthetic, schema,
                        {"spec": asdict(spec), "model_dir": str(model_dir), "model_reused": reused})
    publish_artifacts(results, published.folder, key="synthesize-report")
    if registry and published.passed:
        register_model(registry, f"{Path(data).stem}-{model}", model_dir, spec)
    return _outcome(published, results)


@flow(name="request", log_prints=True)
def request(
    model: str,
    rows: int,
    conditions: dict | None = None,
    out: str = "out/requests/request.parquet",
    seed: int | None = None,
    device: str = "auto",
):
    """`model` is a registry entry (as written by `synthesize`): sampling needs no retraining."""
    model_dir, trained = steps.read_registration(model)
    spec = RunSpec(**{**asdict(trained), "conditions": conditions or {}, "device": device,
                      "seed": trained.seed if seed is None else seed})
    train, holdout, schema = load_inputs(spec)
    synthetic = sample_synthetic(model_dir, rows, spec)
    train, holdout = (steps.filter_rows(frame, spec.conditions) for frame in (train, holdout))
    results = evaluate_run(train, holdout, synthetic, schema, spec)
    target = Path(out)
    published = publish(target.parent, target.stem, results, train, synthetic, schema,
                        {"model": str(model), "rows": rows, "conditions": spec.conditions})
    if published.passed:
        from tabtwin.pipeline.ingest import write_table

        write_table(synthetic, target)  # the format the analyst asked for, beside the report folder
    publish_artifacts(results, published.folder, key="request-report")
    return _outcome(published, results)


def publish_artifacts(results: dict, folder: Path, key: str) -> None:
    """The gate and headline figures as Prefect artifacts (markdown + table), linking to the HTML report."""
    gate = results["gate"]
    headline = [
        f"# Synthetic data {'PASSED' if gate['passed'] else 'FAILED'} the gate",
        f"Report: `{folder / 'report.html'}`",
        "",
        *(f"- {'✅' if c['passed'] else '❌'} {c['message']}" for c in gate["checks"]),
    ]
    create_markdown_artifact("\n".join(headline), key=key, description="tabtwin evaluation gate")
    rows = [{k: c[k] for k in ("section", "check", "value", "op", "threshold", "passed")} for c in gate["checks"]]
    create_table_artifact(rows, key=f"{key}-checks", description="every gate check")


def _outcome(published: steps.Published, results: dict):
    summary = {"folder": str(published.folder), "passed": published.passed, "synthetic": str(published.synthetic)}
    if published.passed:
        return Completed(message=f"published {published.folder}", data=summary)
    failures = "; ".join(f["message"] for f in results["gate"]["failures"])
    return Failed(message=f"gate failed ({failures}); report kept in {published.folder}, data withheld", data=summary)

