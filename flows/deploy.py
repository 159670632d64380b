"""Serve both flows as deployments: a nightly refresh for the data engineer, a parameter form for analysts.

    python -m tabtwin.flows.deploy --data warehouse.parquet --cron "0 2 * * *" --target income

needs a Prefect server (`prefect server start`, or PREFECT_API_URL pointing at one) and keeps running: it
creates the two deployments and executes their runs. In the Prefect UI, "synthesize-nightly" runs on the cron
schedule with the parameters given here, and "request" shows a form (model, rows, conditions, out) that
an analyst fills in to get a table from a registered model.

The flags are `tabtwin run`'s (built from `flows.steps.RunSpec` and `Places`, with the same defaults), and the
deployment's parameters are the `synthesize` flow's parameters of the same names.
"""

from __future__ import annotations

import tabtwin.flows  # noqa: F401  (quiet, offline defaults)

from dataclasses import fields

from tabtwin.flows.steps import Places, RunSpec

DEFAULT_CRON = "0 2 * * *"


def deployments(data: str, cron: str = DEFAULT_CRON, **parameters):
    """The nightly `synthesize` deployment for `data` (further parameters: RunSpec / Places fields) and `request`."""
    from tabtwin.flows.synthesize import request, synthesize

    known = {f.name for f in RunSpec.flow_fields()} | {f.name for f in fields(Places)}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise TypeError(f"unknown synthesize parameters {unknown}; known: {sorted(known)}")
    nightly = synthesize.to_deployment(
        name="synthesize-nightly",
        cron=cron,
        parameters={"data": data, **parameters},
        tags=["tabtwin", "nightly"],
        description="Refresh the synthetic twin: retrain only if the data changed, evaluate, publish if the gate passes.",
    )
    on_demand = request.to_deployment(
        name="request",
        tags=["tabtwin", "analyst"],
        description="Sample a synthetic table from a registered model under conditions, with a fresh evaluation.",
    )
    return nightly, on_demand


def build_parser():
    from tabtwin.flows.cli import Parser, add_places_arguments, add_spec_arguments

    parser = Parser(prog="python -m tabtwin.flows.deploy", description="Serve tabtwin's flows with a schedule.")
    parser.add_argument("--data", required=True, help="table to refresh nightly (path or SQLAlchemy URL)")
    parser.add_argument("--cron", default=DEFAULT_CRON, help="schedule of the refresh (02:00 daily)")
    add_spec_arguments(parser, [f.name for f in RunSpec.flow_fields() if f.name != "data"])
    add_places_arguments(parser)
    return parser


def parameters_from(args) -> dict:
    """The synthesize parameters the flags set (every RunSpec flow field and Places field)."""
    names = [f.name for f in RunSpec.flow_fields() if f.name != "data"] + [f.name for f in fields(Places)]
    return {name: getattr(args, name) for name in names}


def main(argv: list[str] | None = None) -> None:
    from prefect import serve

    args = build_parser().parse_args(argv)
    serve(*deployments(args.data, args.cron, **parameters_from(args)))


if __name__ == "__main__":
    main()
