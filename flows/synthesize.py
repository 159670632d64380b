"""The `synthesize` and `request` flows, and the one pipeline sequence both runners call.

synthesize: ingest -> split -> fit (cached by data fingerprint + parameters) -> sample -> evaluate -> publish
(-> artifacts, -> register a passing model); a partitioned table runs `flows.large` instead (never read
whole; `runner` applies to it). `run_sequence` is that sequence, written once: the local flow runs
it with each step as a Prefect task (`TASKS`), and the Dask fan-out (`flows.scale`) runs it inside one task per
(table, model) pair with the plain steps (`PLAIN`). Either way a run publishes, creates the gate's artifacts and
registers a passing model. A failed gate keeps the report, withholds the data, and marks the run failed.
request: sample from a registered model (no training) under conditions, evaluate against the real rows that
meet the same conditions, and hand out the table only if the gate passes.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import MissingContextError
from prefect.runtime import deployment
from prefect.states import Completed, Failed
from pydantic import Field

from tabtwin.flows import cache, steps
from tabtwin.flows import publish as publishing
from tabtwin.flows import registry as reg
from tabtwin.flows.large import is_partitioned_run, run_partitioned
from tabtwin.flows.progress import TrainingProgress
from tabtwin.flows.spec import (Places, RunSpec, masked, run_parameters, spec_default, split_parameters,
                                with_absolute_paths)
from tabtwin.generators import load_model
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.ingest import read_notes


def retry_unless_user_error(task, task_run, state) -> bool:
    """Retry a failed I/O task unless it failed on bad input (a TabtwinError such as a missing file or an unknown
    table): reading a file that is not there again does not make it appear."""
    return not isinstance(state.result(raise_on_failure=False), TabtwinError)


# Results (DataFrames, models) stay in memory: nothing is pickled to Prefect's result storage.
quiet_task = task(cache_policy=NO_CACHE, persist_result=False)
io_task = task(cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=2,
               retry_condition_fn=retry_unless_user_error)


def fit_with_progress(train, schema, spec: RunSpec, cache_root: str):
    """`cache.fit_or_reuse`, reporting training progress on the run's logger every few seconds (epoch, losses,
    time left: at INFO, so it reaches the server under a deployment) and, in a terminal, as a progress bar."""
    progress = TrainingProgress(_logger(), bar=_show_bar(), label=f"{spec.model} training")
    try:
        return cache.fit_or_reuse(train, schema, spec, cache_root, progress=progress)
    finally:
        progress.finish()


fit_with_progress.__name__ = "fit_or_reuse"  # the name Prefect shows for the task: the step it runs


def _show_bar() -> bool:
    """A progress bar when a person is watching: stderr is a terminal and the run is not a deployment's."""
    return sys.stderr.isatty() and deployment.id is None


@dataclass(frozen=True)
class Steps:
    """The steps of the sequence: plain functions, or the same functions as Prefect tasks."""

    load_inputs: Callable
    fit_or_reuse: Callable
    sample_synthetic: Callable
    evaluate_run: Callable
    publish: Callable
    register_model: Callable


PLAIN = Steps(steps.load_inputs, cache.fit_or_reuse, steps.sample_synthetic, steps.evaluate_run, publishing.publish,
              reg.register_model)
TASKS = Steps(io_task(steps.load_inputs), quiet_task(fit_with_progress), quiet_task(steps.sample_synthetic),
              quiet_task(steps.evaluate_run), io_task(publishing.publish), io_task(reg.register_model))
# The tasks by name, for the request flow and for tests (Prefect shows them by function name).
load_inputs, fit_or_reuse, sample_synthetic, evaluate_run, publish, register_model = (
    TASKS.load_inputs, TASKS.fit_or_reuse, TASKS.sample_synthetic, TASKS.evaluate_run, TASKS.publish, TASKS.register_model)


def run_sequence(spec: RunSpec, places: Places, ops: Steps = PLAIN, artifact_key: str = "synthesize-report") -> dict:
    """The synthesize pipeline, once: load -> fit or reuse -> sample -> evaluate -> publish -> artifacts -> register.

    Returns the run's summary: data, model, folder, passed, synthetic (path or None), model_reused, model_dir, registered
    (registry entry or None), the gate's checks and failure messages, and the model's DP guarantee (or None).
    """
    reg.check_registry_names([spec], places.registry)
    gate = steps.gate_of(spec)
    train, holdout, schema = ops.load_inputs(spec)
    for note in read_notes(train):  # a detected dialect, dropped columns, a warning
        _logger().info("%s: %s", masked(spec.data), note)
    fitted = ops.fit_or_reuse(train, schema, spec, places.cache)
    model_dir, reused = fitted.folder, fitted.reused
    _logger().info("model %s (%s)", model_dir, "reused from cache" if reused else "trained")
    synthetic = ops.sample_synthetic(fitted.model, spec.rows or len(train), spec)
    privacy = steps.model_privacy(fitted.model)
    entry = Path(places.registry) / reg.registry_name(spec) if places.registry else None
    run = steps.run_record("run", spec, model_dir, entry, len(synthetic))
    results = ops.evaluate_run(train, holdout, synthetic, schema, spec, gate, run=run, dp=privacy)
    # Only a passing model is registered (after publishing): a failed run's report names no entry.
    results["run"] = {**run, "registry_entry": run["registry_entry"] if results["gate"]["passed"] else None}
    published = ops.publish(places.out, publishing.new_run_id(spec), results, train, synthetic, schema,
                            {"spec": {**asdict(spec), "data": masked(spec.data)}, "model_dir": str(model_dir),
                             "model_reused": reused})
    publish_artifacts(results, published.folder, key=artifact_key)
    registered = None
    if entry and published.passed:
        try:
            registered = ops.register_model(places.registry, entry.name, model_dir, with_absolute_paths(spec),
                                            reg.split_record(spec, train, holdout), privacy)
        except TabtwinError as err:  # e.g. another source registered that name while this run trained
            raise TabtwinError(f"published {published.folder}, but the model was not registered: {err}") from None
    return {"data": spec.data, "model": spec.model, "folder": str(published.folder), "passed": published.passed,
            "synthetic": str(published.synthetic) if published.synthetic else None, "model_reused": reused,
            "model_dir": str(model_dir),
            "registered": str(registered) if registered else None, **steps.gate_summary(results), "privacy": privacy}


def with_run_parameters(fn):
    """Give `fn(**parameters)` the signature `spec.run_parameters()` and an Args section with each parameter's help
    text from RunSpec and Places, which Prefect shows as the parameter's description in the deployment's form."""
    fn.__signature__ = run_parameters()
    fn.__annotations__ = {name: p.annotation for name, p in fn.__signature__.parameters.items()}
    helps = {f.name: f.metadata.get("help", "") for cls in (RunSpec, Places) for f in fields(cls)}
    lines = [f"    {name}: {helps[name]}" for name in fn.__signature__.parameters]
    fn.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\nArgs:\n" + "\n".join(lines)
    return fn


@flow(name="synthesize", log_prints=True)
@with_run_parameters
def synthesize(**parameters):
    """Parameters: the fields of `flows.spec.RunSpec` (bar conditions) and of `flows.spec.Places`."""
    spec, places = split_parameters(parameters)
    if is_partitioned_run(spec):  # one large table, never read whole (`flows.large`)
        summary, results = run_partitioned(spec, places, log=_logger().info)
        publish_artifacts(results, Path(summary["folder"]), key="synthesize-report")
        return outcome(summary)
    return outcome(run_sequence(spec, places, TASKS))


CONDITIONS_EXAMPLE = {"sex": "Female", "income": ">50K"}


@flow(name="request", log_prints=True)
def request(
    model: str,
    rows: Annotated[int, Field(gt=0)],
    conditions: Annotated[dict[str, str | int | float | bool] | None, Field(examples=[CONDITIONS_EXAMPLE])] = None,
    out: str | None = None,
    seed: int | None = None,
    device: str = spec_default("device"),
    registry: str | None = None,
    overwrite: bool = False,
):
    """Sample a synthetic table from a registered model (no retraining), evaluate it, and hand it out if it passes.

    The source is re-read and re-split with the registered split's own parameters and must give the rows the model
    was trained and judged on (`registry.check_source`), or the request is refused. The table is written to `out`
    only when the gate passes, together with its report in the folder `<out>.report` (which records the table's
    SHA-256); when the gate fails, only the report is written, and a table an earlier request wrote at `out` is
    removed, so nothing there is stale. A file at `out` that no request wrote is refused before any work, unless
    `overwrite`; even then a failed gate leaves it in place, and the model's source is never replaced.

    Args:
        model: the registered model: an entry of the registry (its plain name, e.g. adult-csv-autoregressive), or
            the path of a registry entry when no registry is given
        rows: how many synthetic rows to sample (a whole number above 0)
        conditions: only rows with these values, as a mapping of column to value (discrete and boolean columns;
            values match exactly, then ignoring case and surrounding spaces); empty for no conditions
        out: the .parquet or .csv file to write; empty for a new file per run,
            requests/<model>-<time>-<id>.parquet beside the registry
        seed: sampling seed; empty for the seed the model was trained with
        device: auto (CUDA when present), cpu or cuda
        registry: the registry folder that model names are looked up in; empty when model is a path
        overwrite: replace a file at `out` that tabtwin did not write (never the model's source)
    """
    registry, overwrite = pinned_by_deployment(registry, overwrite)
    entry = reg.entry_path(model, registry)
    registration = reg.read_registration(entry, registry)
    trained = registration.spec
    target = publishing.check_request_output(reg.fresh_request_path(entry) if out is None else out, overwrite,
                                             trained.data)
    spec = RunSpec(**{**asdict(trained), "conditions": conditions or {}, "device": device,
                      "seed": trained.seed if seed is None else seed})
    gate = steps.gate_of(spec)
    model = load_model(registration.model_dir, device=device)  # a damaged model is refused before the data is read
    train, holdout, schema = load_inputs(trained)  # the split the model was trained with, whatever the seed now
    reg.check_source(registration, train, holdout)
    synthetic = sample_synthetic(model, rows, spec)
    train, holdout = (steps.filter_rows(frame, spec.conditions) for frame in (train, holdout))
    privacy = steps.model_privacy(model)
    run = steps.run_record("request", spec, registration.model_dir, entry, rows)
    results = evaluate_run(train, holdout, synthetic, schema, spec, gate, run=run, dp=privacy)
    info = {"model": str(entry), "rows": rows, "conditions": spec.conditions, "out": str(target)}
    report = (target.parent, publishing.request_report_name(target), results, train, synthetic, schema)
    removed = None
    if results["gate"]["passed"]:
        # The table (the format the analyst asked for) and its report appear together, or neither does.
        with publishing.table_in_waiting(synthetic, target) as digest:
            published = publish(*report, {**info, "out_sha256": digest}, overwrite)
    else:
        written = publishing.request_digests(target)  # read before the new report replaces the old one
        published = publish(*report, info, overwrite)
        removed = str(target) if publishing.withdraw(target, written) else None
    publish_artifacts(results, published.folder, key="request-report")
    return outcome({"folder": str(published.folder), "passed": published.passed, "out": str(target),
                    "synthetic": str(published.synthetic) if published.synthetic else None, "removed": removed,
                    **steps.gate_summary(results), "privacy": privacy})


def pinned_by_deployment(registry: str | None, overwrite: bool) -> tuple[str | None, bool]:
    """Under a deployment, the registry its creator set and no `overwrite`: a request form's user can change any
    parameter of a run, and must not widen what it reads (another registry, any path as the model) or what it
    may replace. Outside a deployment (the CLI, a script) both are the caller's. Raises TabtwinError."""
    if deployment.id is None:
        return registry, overwrite
    if overwrite:
        raise TabtwinError("overwrite is not available to a deployment's requests; name a new out file")
    with get_client(sync_client=True) as client:
        pinned = client.read_deployment(deployment.id).parameters.get("registry")
    if pinned is None or registry != pinned:
        raise TabtwinError(f"this deployment serves the registry {pinned}; leave registry as it is and name a "
                           "model registered there")
    return pinned, False


def _logger():
    try:
        return get_run_logger()
    except MissingContextError:  # called outside a flow or task run
        return logging.getLogger("tabtwin.flows")


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


def outcome(summary: dict):
    """The flow's final state: Completed when the gate passed, Failed (report kept, data withheld) when not."""
    if summary["passed"]:
        return Completed(message=f"published {summary['folder']}", data=summary)
    failures = "; ".join(summary["failures"])
    removed = f"; removed the older table at {summary['removed']}" if summary.get("removed") else ""
    return Failed(message=f"gate failed ({failures}); report kept in {summary['folder']}, data withheld{removed}",
                  data=summary)
