"""`tabtwin` command line: a thin shell over the same functions the flows call (the top layer: it may import all).

User errors (TabtwinError, and bad arguments) print one line and exit 2; no traceback. Every --help shows every
default. The flags come from `flows.arguments`, built from `flows.spec`, the one declaration of a run's
parameters. Each command imports what it needs inside its handler, so `tabtwin schema` starts without torch,
sdmetrics or Prefect.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

from tabtwin.flows import deploy as deployment
from tabtwin.flows.arguments import (EXIT_GATE_FAILED, EXIT_USER_ERROR, Parser, add_input_arguments, add_overwrite_argument,
                                     add_places_arguments, add_runner_arguments,
                                     add_spec_arguments, parse_conditions, positive_int, spec_help)
from tabtwin.flows.registry import check_registry_names, entry_path, read_registration
from tabtwin.evaluation.scale import EVALUATION_ROWS
from tabtwin.flows.fitting import check_fits_codes, fit_command, streams
from tabtwin.flows.sampling import DEFAULT_PART_ROWS, is_dataset_output, sample_command
from tabtwin.flows.server import Stopped, ensure_api, prefect_defaults, stop_on_signals
from tabtwin.flows.spec import Places, RunSpec, spec_default
from tabtwin.flows.terminal import format_privacy, print_gate
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory
from tabtwin.pipeline.ingest import check_output_path, read_notes, read_table
from tabtwin.pipeline.outputs import check_file, check_folder
from tabtwin.pipeline.schema import infer_schema, load_metadata, save_metadata

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stop_on_signals()  # a killed run unwinds, so the Prefect server and workers it started stop with it
    try:
        code = args.handler(args) or 0
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except TabtwinError as err:
        print(f"tabtwin: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tabtwin: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"tabtwin: stopped by signal {stop.signum}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """The reader of stdout went away (`tabtwin schema DATA | head`): stop quietly, as `head`'s other writers do.

    stdout is pointed at /dev/null so that the flush at interpreter exit does not raise again.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing is left to flush
        pass
    return EXIT_BROKEN_PIPE


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tabtwin", description="Synthetic twins of tables, with proof.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help)

    schema = command("schema", "infer a table's schema and write it as SDV metadata JSON")
    add_input_arguments(schema)
    schema.add_argument("--out", type=Path, help="write the metadata JSON here")
    add_overwrite_argument(schema)
    schema.set_defaults(handler=_cmd_schema)

    encode = command("encode", "fit the reversible encoder and check the round trip")
    add_input_arguments(encode)
    encode.add_argument("--seed", type=int, default=spec_default("seed"), help="seed of the encoder's mixture fits")
    encode.add_argument("--out", type=Path, help="folder for metadata.json and encoder.json")
    add_overwrite_argument(encode)
    encode.set_defaults(handler=_cmd_encode)

    fit = command("fit", "train a generator on a table and save it to a model folder")
    add_input_arguments(fit)
    add_spec_arguments(fit, FIT_FIELDS)
    fit.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    fit.add_argument("--out", type=Path, required=True, help="model folder to write")
    add_overwrite_argument(fit)
    fit.set_defaults(handler=_cmd_fit)

    sample = command("sample", "sample rows from a saved model")
    sample.add_argument("model_dir", type=Path, help="model folder written by `tabtwin fit`")
    sample.add_argument("--rows", type=positive_int, required=True, help="rows to sample")
    sample.add_argument("--out", required=True,
                        help="output .parquet or .csv file, or a folder (DIR/) for a Parquet dataset written in parts")
    sample.add_argument("--part-rows", type=positive_int, default=DEFAULT_PART_ROWS,
                        help="rows per part of a dataset (memory per process is bounded by it)")
    add_runner_arguments(sample, "the parts are drawn in parallel")
    add_overwrite_argument(sample)
    sample.add_argument("--seed", type=int,
                        help="sampling seed (None: a fresh draw; a dataset left unfinished keeps its own, so a rerun resumes it)")
    sample.add_argument("--device", default=spec_default("device"), help=spec_help("device"))
    sample.add_argument(
        "--condition", action="append", default=[], metavar="COL=VALUE",
        help="only rows with this value (repeatable; discrete and boolean columns)",
    )
    sample.set_defaults(handler=_cmd_sample)

    evaluate = command(
        "evaluate", "fidelity, privacy, utility and contracts of a synthetic table; exit 3 if the gate fails"
    )
    evaluate.add_argument("--real", required=True, help="the real table the generator was trained on")
    evaluate.add_argument("--holdout", required=True, help="real rows the generator never saw")
    evaluate.add_argument("--synthetic", required=True, help="the synthetic table")
    evaluate.add_argument("--metadata", type=Path, help=spec_help("metadata"))
    evaluate.add_argument("--target", help=spec_help("target"))
    evaluate.add_argument("--gate", type=Path, help=spec_help("gate"))
    evaluate.add_argument("--device", default=spec_default("device"), help=spec_help("device"))
    evaluate.add_argument("--seed", type=int, default=spec_default("seed"), help="seed of the evaluation's samples and models")
    evaluate.add_argument("--model-dir", type=Path,
                          help="the saved model that produced the synthetic table: its DP guarantee goes into the report")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for report.json and report.html")
    add_overwrite_argument(evaluate)
    evaluate.add_argument("--sample-rows", type=positive_int, default=EVALUATION_ROWS,
                          help="rows per table the checks read from a partitioned table (a seeded uniform sample)")
    add_runner_arguments(evaluate, "the exact-copy check over every row runs")
    evaluate.set_defaults(handler=_cmd_evaluate)

    run = command("run", "the whole pipeline as a Prefect flow: ingest, fit, sample, evaluate, publish")
    run.add_argument("data", nargs="+", help="one or more tables (several fan out with --runner dask)")
    add_spec_arguments(run, [f.name for f in RunSpec.flow_fields() if f.name != "data"], many=("model",))
    add_places_arguments(run)
    run.add_argument("--verbose", action="store_true", help="Prefect's logs")
    run.set_defaults(handler=_cmd_run)

    request = command("request", "sample from a registered model, evaluate, hand out if it passes")
    request.add_argument("model", help="registry entry written by `tabtwin run` (e.g. out/registry/adult-ctgan)")
    request.add_argument("--rows", type=positive_int, required=True, help="rows to sample")
    request.add_argument("--condition", action="append", default=[], metavar="COL=VALUE",
                         help="only rows with this value (repeatable)")
    request.add_argument("--out", type=Path, required=True, help="output .parquet or .csv")
    add_overwrite_argument(request)
    request.add_argument("--seed", type=int, help="sampling seed (None: the seed the model was trained with)")
    request.add_argument("--device", default=spec_default("device"), help=spec_help("device"))
    request.add_argument("--verbose", action="store_true", help="Prefect's logs")
    request.set_defaults(handler=_cmd_request)

    deploy = command("deploy", "deploy both flows to a Prefect server: a nightly refresh and the analysts' request form")
    deployment.add_arguments(deploy)
    deploy.set_defaults(handler=_cmd_deploy)
    return parser


# The RunSpec fields that are `fit`'s flags.
FIT_FIELDS = ("model", "epochs", "batch_size", "max_seconds", "device", "seed", "dp_epsilon", "dp_delta",
              "partition_column", "partitions", "runner", "dask_address", "dask_workers")


def _load(args, notes_to=None):
    """(table, schema) of a data command's input; what reading it noted printed (to stderr unless `notes_to`)."""
    df = read_table(args.data, table=args.table, query=args.query)
    for note in read_notes(df):
        print(f"{args.data}: {note}", file=notes_to or sys.stderr)
    metadata = load_metadata(args.metadata) if args.metadata else None
    return df, infer_schema(df, metadata)


def _inputs(args) -> list:
    """The paths a data command reads (the data, its metadata): never replaced by its output."""
    return [args.data, args.metadata]


def _cmd_schema(args) -> int:
    if args.out:
        check_file(args.out, args.overwrite, inputs=_inputs(args))
    notes = io.StringIO()
    df, schema = _load(args, notes)
    written = save_metadata(schema, args.out) if args.out else None  # before printing: a closed pipe cannot stop it
    print(f"{args.data}: {len(df):,} rows x {df.shape[1]} columns")
    print(notes.getvalue(), end="")  # what was detected in reading it (a CSV's dialect), in the schema's output
    for spec in schema.columns:
        extra = " integer" if spec.integer else ""
        extra += f" format={spec.datetime_format}" if spec.datetime_format else ""
        extra += f" personal data ({spec.pii}): faked, not modelled" if spec.pii else ""
        print(f"  {spec.name:<24} {spec.kind:<11} nulls {spec.null_rate:6.1%}{extra}")
    if written:
        print(f"metadata written to {written}")
    return 0


def _cmd_encode(args) -> int:
    from tabtwin.pipeline.encoding import TableEncoder, round_trip_errors

    written = ("metadata.json", "encoder.json")
    if args.out:
        check_folder(args.out, written, args.overwrite, inputs=_inputs(args))
    df, schema = _load(args)
    start = time.perf_counter()
    encoder = TableEncoder(schema, random_state=args.seed).fit(df)
    fitted = time.perf_counter()
    encoded = encoder.transform(df)
    transformed = time.perf_counter()
    decoded = encoder.inverse_transform(encoded)
    inverted = time.perf_counter()
    print(f"{args.data}: {len(df):,} rows x {df.shape[1]} columns -> {encoded.shape[1]} encoded features")
    print(
        f"fit {fitted - start:.2f} s, transform {transformed - fitted:.2f} s, "
        f"inverse {inverted - transformed:.2f} s"
    )
    report = round_trip_errors(df, decoded, schema)
    print(report.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        with atomic_directory(args.out, replaces=written, overwrite=args.overwrite) as staging:
            save_metadata(schema, staging / written[0])
            encoder.save(staging / written[1])
        print(f"metadata and encoder written to {args.out}/")
    failed = report[~report["passed"]]
    if len(failed):
        # A lossy round trip is a fault of the encoder, not of the input: exit 1, naming the columns.
        named = "; ".join(
            f"{row.column} ({row.form if row.form != 'ok' else f'{row.measure} {row.value:.3g}'}"
            f"{'' if row.null_agreement == 1 else f', null agreement {row.null_agreement:.3g}'})"
            for row in failed.itertuples()
        )
        print(f"tabtwin: round trip FAILED for {len(failed)} column(s): {named}", file=sys.stderr)
        return 1
    return 0


def _cmd_fit(args) -> int:
    from tabtwin.generators import model_class
    from tabtwin.generators.persistence import MODEL_FILES

    # Refused before the data is read: a large table or database would be read for nothing.
    spec = RunSpec(data=args.data, **{name: getattr(args, name) for name in FIT_FIELDS})
    check_folder(args.out, MODEL_FILES, args.overwrite, inputs=_inputs(args), what="model folder")
    # A bar only for a person watching (as `run` does): in a pipe or a log its redraws are noise.
    model = model_class(args.model)(**spec.generator_params(), verbose=not args.quiet and sys.stderr.isatty())
    if streams(args, model):
        return fit_command(args, model)
    df, schema = _load(args)
    start = time.perf_counter()
    model.fit(df, schema)
    seconds = time.perf_counter() - start
    model.save(args.out, overwrite=args.overwrite)
    ended = getattr(model, "stop_reason_", None)
    epochs = len(model.history_)
    how = f", {epochs} epoch{'s' * (epochs != 1)}, ended by {ended}" if ended else ""
    print(f"{args.model} fitted on {len(df):,} rows in {seconds:.1f} s ({model.device_}{how}); model saved to {args.out}/")
    privacy = getattr(model, "privacy_", None)
    if privacy:
        print(format_privacy(privacy))
    return 0


def _cmd_sample(args) -> int:
    from tabtwin.generators import load_model
    from tabtwin.pipeline.ingest import write_table

    conditions = parse_conditions(args.condition)
    if args.runner == "dask" or is_dataset_output(args.out):
        return sample_command(args, conditions)
    args.out = Path(args.out)
    check_file(check_output_path(args.out), args.overwrite, inputs=[args.model_dir])
    model = load_model(args.model_dir, device=args.device)
    start = time.perf_counter()
    table = model.sample(args.rows, conditions=conditions or None, seed=args.seed)
    seconds = time.perf_counter() - start
    path = write_table(table, args.out)
    print(f"{len(table):,} rows sampled in {seconds:.1f} s and written to {path}")
    return 0


def _cmd_evaluate(args) -> int:
    from tabtwin.flows.evaluating import evaluate_command

    return evaluate_command(args)


def run_specs(args) -> tuple[list[RunSpec], Places]:
    """One RunSpec per (table, model) pair from `run`'s flags, and where the runs write."""
    shared = {f.name: getattr(args, f.name) for f in RunSpec.flow_fields() if f.name not in ("data", "model")}
    specs = [RunSpec(data=data, model=model, **shared) for data in args.data for model in args.model]
    return specs, Places(**{f.name: getattr(args, f.name) for f in fields(Places)})


def _cmd_run(args) -> int:
    from tabtwin.flows.large import is_partitioned_run
    from tabtwin.flows.steps import gate_of
    from tabtwin.generators import model_class

    specs, places = run_specs(args)  # a model without DP or without a time budget is refused here
    if len(specs) > 1 and any(map(is_partitioned_run, specs)):
        raise TabtwinError("a partitioned table (a folder, a glob or --partition-column) runs alone, with one --model: "
                           "run it in its own `tabtwin run`")
    for spec in filter(is_partitioned_run, specs):
        check_fits_codes(model_class(spec.model))  # before Prefect starts
    check_registry_names(specs, places.registry)
    for spec in specs:  # a bad gate file is refused before Prefect starts, not after training
        gate_of(spec)
    # Quiet by default: the CLI prints its own summary, and a user error its one line, not Prefect's log.
    prefect_defaults("INFO" if args.verbose else "CRITICAL")
    ensure_api()
    if args.runner == "dask" and not any(map(is_partitioned_run, specs)):
        from tabtwin.flows.scale import run_many

        summaries = run_many(specs, places, dask_address=args.dask_address, workers=args.dask_workers)
    else:
        summaries = [_run_synthesize(spec, places) for spec in specs]
    for summary in summaries:
        verdict = "published" if summary["passed"] else "gate FAILED, data withheld"
        print(f"{summary['data']} [{summary['model']}]: {verdict}")
        if summary.get("model_reused"):
            # Otherwise a rerun that trains nothing looks like one whose training was instant.
            print(f"  fit:    skipped, reused the cached model with the same rows and settings ({summary['model_dir']})")
        print_gate(summary.get("checks", []), indent=2,
                   results={"run": {"kind": "run", "model": summary["model"]}, "privacy": {"dp": summary.get("privacy")}})
        if summary.get("privacy"):
            print(format_privacy(summary["privacy"], indent="  "))
        print(f"  report: {summary['folder']}/report.html")
        if summary["passed"]:
            print(f"  data:   {summary.get('synthetic') or Path(summary['folder']) / 'synthetic.parquet'}")
        if summary.get("registered"):
            print(f"  model:  {summary['registered']}")
    return 0 if all(s["passed"] for s in summaries) else EXIT_GATE_FAILED


def _run_synthesize(spec: RunSpec, places: Places) -> dict:
    from tabtwin.flows.synthesize import synthesize

    parameters = {f.name: getattr(spec, f.name) for f in RunSpec.flow_fields()}
    state = synthesize(**parameters, **{f.name: getattr(places, f.name) for f in fields(Places)}, return_state=True)
    return {"data": spec.data, "model": spec.model, **_flow_outcome(state)}


def _flow_outcome(state) -> dict:
    """The summary a finished flow carries; a flow that crashed re-raises its error (user errors print one line)."""
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _cmd_request(args) -> int:
    from tabtwin.flows.publish import check_request_output

    # Bad input is refused before Prefect starts (seconds, and its shutdown lines after the error).
    registration = read_registration(entry_path(args.model, None))
    check_request_output(args.out, args.overwrite, registration.spec.data)
    prefect_defaults("INFO" if args.verbose else "CRITICAL")
    ensure_api()
    from tabtwin.flows.synthesize import request

    conditions = parse_conditions(args.condition) or None
    state = request(model=args.model, rows=args.rows, conditions=conditions,
                    out=str(args.out), seed=args.seed, device=args.device, overwrite=args.overwrite,
                    return_state=True)
    summary = _flow_outcome(state)
    removed = "; the older table there was removed" if summary.get("removed") else ""
    print(f"{args.rows:,} rows written to {args.out}" if summary["passed"] else
          f"gate FAILED: the table is withheld, nothing written to {args.out}{removed}")
    print_gate(summary["checks"], results={"run": {"kind": "request", "registry_entry": args.model,
                                                   "conditions": conditions},
                                           "privacy": {"dp": summary.get("privacy")}})
    if summary.get("privacy"):
        print(format_privacy(summary["privacy"]))
    print(f"report: {summary['folder']}/report.html")
    return 0 if summary["passed"] else EXIT_GATE_FAILED


def _cmd_deploy(args) -> int:
    # INFO: the runs this process serves inherit its level, and their logs are what the server shows.
    prefect_defaults("INFO")
    for name in deployment.deploy(args):
        print(f"deployed {name} (work pool {args.pool}); run `prefect worker start --pool {args.pool}` to execute it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
