"""`tabtwin evaluate`: the report of a synthetic table against the real rows, from files or partitioned tables.

Files are read whole and judged as `evaluation.report.evaluate` judges them. When any of the three tables is a
partitioned one (a folder or glob: `pipeline.datasets`), `evaluation.scale.evaluate_tables` judges seeded uniform
samples of --sample-rows rows of each and counts exact copies over every row, on Dask workers with
--runner dask; the report states the sample sizes.
"""

from __future__ import annotations

from contextlib import nullcontext

import pandas as pd

from tabtwin.evaluation.gate import GateConfig
from tabtwin.evaluation.report import evaluate, write_report
from tabtwin.evaluation.scale import evaluate_tables
from tabtwin.flows.arguments import EXIT_GATE_FAILED
from tabtwin.flows.cluster import dask_client
from tabtwin.flows.publish import RUN_FILES
from tabtwin.flows.terminal import format_privacy, print_gate
from tabtwin.generators import load_model
from tabtwin.pipeline.datasets import is_partitioned, open_dataset
from tabtwin.pipeline.files import atomic_directory
from tabtwin.pipeline.ingest import read_table
from tabtwin.pipeline.outputs import check_folder
from tabtwin.pipeline.schema import infer_schema, load_metadata
from tabtwin.pipeline.streaming import partitioned_schema


def evaluate_command(args) -> int:
    """Exit 0 when the gate passes, EXIT_GATE_FAILED when it fails; TabtwinError (one line) for bad input."""
    inputs = [args.real, args.holdout, args.synthetic, args.metadata, args.gate, args.model_dir]
    check_folder(args.out, RUN_FILES, args.overwrite, inputs=inputs, what="report folder")
    gate = GateConfig.from_file(args.gate) if args.gate else GateConfig()
    metadata = load_metadata(args.metadata) if args.metadata else None
    # A bad model folder is refused before the work.
    privacy = getattr(load_model(args.model_dir, device="cpu"), "privacy_", None) if args.model_dir else None
    sources = (args.real, args.holdout, args.synthetic)
    options = dict(target=args.target, gate=gate, device=args.device, seed=args.seed, dp=privacy)
    if any(is_partitioned(source) for source in sources):
        real, holdout, synthetic = (open_dataset(s) if is_partitioned(s) else read_table(s) for s in sources)
        schema = infer_schema(real, metadata) if isinstance(real, pd.DataFrame) else partitioned_schema(real, metadata)
        with dask_client(args.dask_address, args.dask_workers) if args.runner == "dask" else nullcontext() as client:
            results, samples = evaluate_tables(real, holdout, synthetic, schema, rows=args.sample_rows,
                                               client=client, **options)
        real, synthetic = samples["train"], samples["synthetic"]  # the rows the report's figures describe
    else:
        real, holdout, synthetic = (read_table(s) for s in sources)
        schema = infer_schema(real, metadata)
        results = evaluate(real, holdout, synthetic, schema, **options)
    with atomic_directory(args.out, replaces=RUN_FILES, overwrite=args.overwrite) as staging:
        written = write_report(results, staging, real, synthetic, schema)
    paths = {kind: args.out / path.name for kind, path in written.items()}
    print(f"gate {'PASSED' if results['gate']['passed'] else 'FAILED'}")
    print_gate(results["gate"]["checks"], results=results)
    if privacy:
        print(format_privacy(privacy))
    for name, counts in results["meta"].get("samples", {}).items():
        if counts["sampled"] < counts["rows"]:
            print(f"{name}: checks read a uniform sample of {counts['sampled']:,} of {counts['rows']:,} rows "
                  "(exact copies: every row)")
    print(f"report: {paths['html']} and {paths['json']}")
    return 0 if results["gate"]["passed"] else EXIT_GATE_FAILED
