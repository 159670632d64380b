"""`tabtwin` command line: a thin shell over the same functions the flows call (the top layer: it may import all).

User errors (TabtwinError, and bad arguments) print one line and exit 2; no traceback. Every --help shows every
default. `run`'s flags are built from `flows.steps.RunSpec` and `flows.steps.Places`, the one declaration of a
run's parameters; `fit` takes its model, epochs, batch size, device and seed defaults from there too.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from dataclasses import MISSING, fields
from pathlib import Path

from tabtwin.flows.registry import check_registry_names
from tabtwin.flows.server import Stopped, ensure_api, stop_on_signals
from tabtwin.flows.steps import Places, RunSpec, generator_params, option_params, spec_default
from tabtwin.pipeline.errors import TabtwinError

EXIT_USER_ERROR = 2
EXIT_GATE_FAILED = 3


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
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing is left to flush
        pass
    return EXIT_BROKEN_PIPE


class Parser(argparse.ArgumentParser):
    """Every --help shows every default; a bad argument is one line on stderr and exit 2 (argparse's code)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tabtwin", description="Synthetic twins of tables, with proof.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help)

    schema = command("schema", "infer a table's schema and write it as SDV metadata JSON")
    _add_input_args(schema)
    schema.add_argument("--out", type=Path, help="write the metadata JSON here")
    add_overwrite_argument(schema)
    schema.set_defaults(handler=_cmd_schema)

    encode = command("encode", "fit the reversible encoder and check the round trip")
    _add_input_args(encode)
    encode.add_argument("--seed", type=int, default=0, help="seed of the encoder's mixture fits")
    encode.add_argument("--out", type=Path, help="folder for metadata.json and encoder.json")
    add_overwrite_argument(encode)
    encode.set_defaults(handler=_cmd_encode)

    fit = command("fit", "train a generator on a table and save it to a model folder")
    _add_input_args(fit)
    add_spec_arguments(fit, ("model", "epochs", "batch_size", "max_seconds", "device", "seed", "dp_epsilon", "dp_delta"))
    fit.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    fit.add_argument("--out", type=Path, required=True, help="model folder to write")
    add_overwrite_argument(fit)
    fit.set_defaults(handler=_cmd_fit)

    sample = command("sample", "sample rows from a saved model")
    sample.add_argument("model_dir", type=Path, help="model folder written by `tabtwin fit`")
    sample.add_argument("--rows", type=positive_int, required=True, help="rows to sample")
    sample.add_argument("--out", type=Path, required=True, help="output .parquet or .csv")
    add_overwrite_argument(sample)
    sample.add_argument("--seed", type=int, help="sampling seed (None: a fresh draw each time)")
    sample.add_argument("--device", default=spec_default("device"), help=_help("device"))
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
    evaluate.add_argument("--metadata", type=Path, help=_help("metadata"))
    evaluate.add_argument("--target", help=_help("target"))
    evaluate.add_argument("--gate", type=Path, help=_help("gate"))
    evaluate.add_argument("--device", default=spec_default("device"), help=_help("device"))
    evaluate.add_argument("--seed", type=int, default=spec_default("seed"), help="seed of the evaluation's samples and models")
    evaluate.add_argument("--model-dir", type=Path,
                          help="the saved model that produced the synthetic table: its DP guarantee goes into the report")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for report.json and report.html")
    add_overwrite_argument(evaluate)
    evaluate.set_defaults(handler=_cmd_evaluate)

    run = command("run", "the whole pipeline as a Prefect flow: ingest, fit, sample, evaluate, publish")
    run.add_argument("data", nargs="+", help="one or more tables (several fan out with --runner dask)")
    add_spec_arguments(run, [f.name for f in RunSpec.flow_fields() if f.name != "data"], many=("model",))
    add_places_arguments(run)
    run.add_argument("--runner", choices=["local", "dask"], default="local",
                     help="local: one flow, pairs in turn; dask: one task per (table, model) pair on a Dask cluster")
    run.add_argument("--dask-address", help="scheduler address (None: a LocalCluster of --dask-workers workers)")
    run.add_argument("--dask-workers", type=positive_int, default=2, help="workers of the LocalCluster")
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
    request.add_argument("--device", default=spec_default("device"), help=_help("device"))
    request.add_argument("--verbose", action="store_true", help="Prefect's logs")
    request.set_defaults(handler=_cmd_request)

    deploy = command("deploy", "deploy both flows to a Prefect server: a nightly refresh and the analysts' request form")
    from tabtwin.flows.deploy import add_arguments

    add_arguments(deploy)
    deploy.set_defaults(handler=_cmd_deploy)
    return parser


_parser = build_parser  # the old name


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that tabtwin did not write (never an input, the current "
                             "folder or a folder above it); without it only tabtwin's own outputs are replaced")


def positive_int(text: str) -> int:
    """argparse type: a whole number > 0 (a zero batch size or epoch count is refused here, in one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _help(name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(RunSpec) if f.name == name)


def add_spec_arguments(parser: argparse.ArgumentParser, names, many=()) -> None:
    """Flags for these RunSpec fields, with RunSpec's defaults, help texts, choices and checks.

    A field in `many` takes one or more values (`run --model ctgan tvae`), its default a one-item list.
    """
    by_name = {f.name: f for f in fields(RunSpec)}
    for name in names:
        f = by_name[name]
        default = None if f.default is MISSING else f.default
        options = {"help": f.metadata.get("help", ""), "default": default}
        kind = _base_type(f.type)
        if f.metadata.get("positive"):
            options["type"] = positive_float if kind is float else positive_int
        elif kind in (int, float):
            options["type"] = kind
        if "choices" in f.metadata:
            options["choices"] = list(f.metadata["choices"])
        if name in many:
            options.update(nargs="+", default=[default])
        parser.add_argument(flag(name), dest=name, **options)


def add_places_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(Places):
        parser.add_argument(flag(f.name), dest=f.name, default=f.default, help=f.metadata.get("help", ""))


def _base_type(annotation) -> type | None:
    """int for "int" or "int | None" (the annotations are strings under `from __future__ import annotations`)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    first = text.split("|")[0].strip()
    return {"int": int, "float": float, "str": str}.get(first)


def parse_conditions(items: list[str]) -> dict[str, str]:
    """["sex=Female", "income=>50K"] -> {"sex": "Female", "income": ">50K"} (split at the first '=')."""
    conditions = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise TabtwinError(f"condition {item!r} is not COLUMN=VALUE; write e.g. --condition sex=Female")
        conditions[column] = value
    return conditions


def _add_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="CSV, TSV, Parquet, SQLite/DuckDB file, or a SQLAlchemy URL")
    parser.add_argument("--table", help="table to read from a database source")
    parser.add_argument("--query", help="SQL query to read from a database source")
    parser.add_argument("--metadata", type=Path, help="SDV single-table metadata JSON that overrides inference")


def _load(args):
    from tabtwin.pipeline.ingest import read_table
    from tabtwin.pipeline.schema import infer_schema, load_metadata

    df = read_table(args.data, table=args.table, query=args.query)
    metadata = load_metadata(args.metadata) if args.metadata else None
    return df, infer_schema(df, metadata)


def _inputs(args) -> list:
    """The paths a data command reads (the data, its metadata): never replaced by its output."""
    return [args.data, args.metadata]


def _cmd_schema(args) -> int:
    from tabtwin.pipeline.outputs import check_file
    from tabtwin.pipeline.schema import save_metadata

    if args.out:
        check_file(args.out, args.overwrite, inputs=_inputs(args))
    df, schema = _load(args)
    written = save_metadata(schema, args.out) if args.out else None  # before printing: a closed pipe cannot stop it
    print(f"{args.data}: {len(df):,} rows x {df.shape[1]} columns")
    for spec in schema.columns:
        extra = " integer" if spec.integer else ""
        extra += f" format={spec.datetime_format}" if spec.datetime_format else ""
        print(f"  {spec.name:<24} {spec.kind:<11} nulls {spec.null_rate:6.1%}{extra}")
    if written:
        print(f"metadata written to {written}")
    return 0


def _cmd_encode(args) -> int:
    from tabtwin.pipeline.encoding import TableEncoder, round_trip_errors
    from tabtwin.pipeline.files import atomic_directory
    from tabtwin.pipeline.outputs import check_folder
    from tabtwin.pipeline.schema import save_metadata

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
    from tabtwin.generators.base import MODEL_FILES
    from tabtwin.pipeline.outputs import check_folder

    params = generator_params(args.epochs, args.batch_size, args.device, args.seed)
    # Refused before the data is read: a large table or database would be read for nothing.
    params.update(option_params(args.model, args.dp_epsilon, args.dp_delta, args.max_seconds))
    check_folder(args.out, MODEL_FILES, args.overwrite, inputs=_inputs(args), what="model folder")
    df, schema = _load(args)
    # A bar only for a person watching (as `run` does): in a pipe or a log its redraws are noise.
    model = model_class(args.model)(**params, verbose=not args.quiet and sys.stderr.isatty())
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


def format_privacy(privacy: dict, indent: str = "") -> str:
    """The DP budget a model spent, in two lines (`fit`, and `run`/`request`/`evaluate` of a DP model): the
    guarantee, then how it was trained and what it does not cover; each line starts with `indent`."""
    return (f"{indent}differential privacy: epsilon {privacy['epsilon']:.3g} spent (target "
            f"{privacy['target_epsilon']:g}), delta {privacy['delta']:.3g}\n"
            f"{indent}  noise multiplier {privacy['noise_multiplier']:.3g}, clipping norm {privacy['max_grad_norm']:g}; "
            f"not covered: the encoder's statistics in config.json")


def _cmd_sample(args) -> int:
    from tabtwin.generators import load_model
    from tabtwin.pipeline.ingest import check_output_path, write_table
    from tabtwin.pipeline.outputs import check_file

    check_file(check_output_path(args.out), args.overwrite, inputs=[args.model_dir])
    conditions = parse_conditions(args.condition)
    model = load_model(args.model_dir, device=args.device)
    start = time.perf_counter()
    table = model.sample(args.rows, conditions=conditions or None, seed=args.seed)
    seconds = time.perf_counter() - start
    path = write_table(table, args.out)
    print(f"{len(table):,} rows sampled in {seconds:.1f} s and written to {path}")
    return 0



def _cmd_evaluate(args) -> int:
    from tabtwin.evaluation.gate import GateConfig
    from tabtwin.evaluation.report import evaluate, write_report
    from tabtwin.flows.steps import RUN_FILES, model_privacy
    from tabtwin.pipeline.files import atomic_directory
    from tabtwin.pipeline.ingest import read_table
    from tabtwin.pipeline.outputs import check_folder
    from tabtwin.pipeline.schema import infer_schema, load_metadata

    inputs = [args.real, args.holdout, args.synthetic, args.metadata, args.gate, args.model_dir]
    check_folder(args.out, RUN_FILES, args.overwrite, inputs=inputs, what="report folder")
    gate = GateConfig.from_file(args.gate) if args.gate else GateConfig()
    metadata = load_metadata(args.metadata) if args.metadata else None
    privacy = model_privacy(args.model_dir) if args.model_dir else None  # a bad folder is refused before the work
    real, holdout, synthetic = (read_table(p) for p in (args.real, args.holdout, args.synthetic))
    schema = infer_schema(real, metadata)
    results = evaluate(real, holdout, synthetic, schema, target=args.target, gate=gate, device=args.device,
                       seed=args.seed, dp=privacy)
    with atomic_directory(args.out, replaces=RUN_FILES, overwrite=args.overwrite) as staging:
        written = write_report(results, staging, real, synthetic, schema)
    paths = {kind: args.out / path.name for kind, path in written.items()}
    print(f"gate {'PASSED' if results['gate']['passed'] else 'FAILED'}")
    print_gate(results["gate"]["checks"], results=results)
    if privacy:
        print(format_privacy(privacy))
    print(f"report: {paths['html']} and {paths['json']}")
    return 0 if results["gate"]["passed"] else EXIT_GATE_FAILED


def print_gate(checks: list[dict], indent: int = 0, results: dict | None = None) -> None:
    """The gate's checks as a short table (section, check, value, threshold, result), then each failed check's
    message (and what to do, where `evaluation.explain` says) and each not-judged check's reason. A threshold a
    gate file changed shows its default ("0.04 (default 0.1)"). `results` (evaluate's dict, or any with its
    "run" and "privacy": {"dp"}) fits the advice to what produced the table (`explain.fix_for`).

    rich draws the table: colours on a terminal, plain text without escape codes in a pipe or a file.
    """
    from rich import box
    from rich.console import Console
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    if not checks:
        return
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for name in ("section", "check", "value", "threshold", "result"):
        table.add_column(name, justify="right" if name in ("value", "threshold") else "left", overflow="fold")
    for check in checks:
        result = (Text("not judged", "dim") if not check["judged"] else
                  Text("pass", "green") if check["passed"] else Text("FAIL", "bold red"))
        value = "-" if check["value"] is None else _value_text(check["value"], check["threshold"])
        # Text, not markup: a check such as inference_risk[income] must not read as a style tag.
        table.add_row(Text(check["section"]), Text(check["check"]), value, f"{check['op']} {_threshold_text(check)}", result)
    # In a pipe rich assumes 80 columns and would cut long check names (inference_risk[<column>]) with "...":
    # there nothing limits the width, so give it room.
    console = Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=200)
    with console.capture() as captured:
        console.print(Padding(table, (0, 0, 0, indent)))
    print("\n".join(line.rstrip() for line in captured.get().splitlines()))  # no padding at the ends of lines
    pad = " " * (indent or 2)
    fix = _fixes(results)
    for check in checks:
        if not check["passed"]:
            print(f"{pad}FAIL {check['message']}")
            if text := fix(check):
                print(textwrap.fill(text, width=100, initial_indent=pad + "     ", subsequent_indent=pad + "     "))
    for check in checks:
        if not check["judged"]:
            print(f"{pad}{check['message']}")


def _value_text(value: float, threshold: float) -> str:
    """3 significant digits, more where fewer would read as the threshold (0.6004 against <= 0.6 beside FAIL)."""
    from tabtwin.evaluation.explain import value_text

    return value_text(value, threshold, kind="g")


def _threshold_text(check: dict) -> str:
    from tabtwin.evaluation.explain import threshold_text

    return threshold_text(check)


def _fixes(results: dict | None = None):
    """check -> what to do when it fails, in plain words (`evaluation.explain.fix_for`, fitted to `results`'
    run and DP blocks); nothing where that module is absent."""
    try:
        from tabtwin.evaluation.explain import fix_for
    except ImportError:
        return lambda check: None
    return lambda check: fix_for(check, results)


def _quiet_prefect(verbose: bool) -> None:
    import os

    from tabtwin import flows

    # Quiet by default: the CLI prints its own summary, and a user error its one line, not Prefect's traceback log.
    # (`tabtwin.flows` has already set WARNING as the library's default by now; a level the user set wins.)
    if flows.USER_LOGGING_LEVEL is None:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO" if verbose else "CRITICAL"


def run_specs(args) -> tuple[list[RunSpec], Places]:
    """One RunSpec per (table, model) pair from `run`'s flags, and where the runs write."""
    shared = {f.name: getattr(args, f.name) for f in RunSpec.flow_fields() if f.name not in ("data", "model")}
    specs = [RunSpec(data=data, model=model, **shared) for data in args.data for model in args.model]
    return specs, Places(**{f.name: getattr(args, f.name) for f in fields(Places)})


def _cmd_run(args) -> int:
    _quiet_prefect(args.verbose)
    specs, places = run_specs(args)
    check_registry_names(specs, places.registry)
    for spec in specs:  # a model without DP (or without a time budget) is refused before any pair runs
        option_params(spec.model, spec.dp_epsilon, spec.dp_delta, spec.max_seconds)
    ensure_api()
    if args.runner == "dask":
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
            print(f"  data:   {summary['folder']}/synthetic.parquet")
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
    from tabtwin.flows.registry import entry_path, read_registration
    from tabtwin.flows.steps import check_request_output

    # Bad input is refused before Prefect starts (seconds, and its shutdown lines after the error).
    registration = read_registration(entry_path(args.model, None))
    check_request_output(args.out, args.overwrite, registration.spec.data)
    _quiet_prefect(args.verbose)
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
    import os

    from tabtwin import flows
    from tabtwin.flows.deploy import deploy

    # INFO: the runs this process serves inherit its level, and their logs are what the server shows.
    if flows.USER_LOGGING_LEVEL is None:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    for name in deploy(args):
        print(f"deployed {name} (work pool {args.pool}); run `prefect worker start --pool {args.pool}` to execute it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
