"""Serve both flows as deployments: a nightly refresh for the data engineer, a parameter form for analysts.

    python -m tabtwin.flows.deploy --data warehouse.parquet --cron "0 2 * * *" --target income

needs a Prefect server (`prefect server start`, or PREFECT_API_URL pointing at one) and keeps running: it
creates the two deployments and executes their runs. In the Prefect UI, "synthesize-nightly" runs on the cron
schedule with the parameters given here, and "request" shows a form (model, rows, conditions, out) that
an analyst fills in to get a table from a registered model.
"""

from __future__ import annotations

import argparse

import tabtwin.flows  # noqa: F401  (quiet, offline defaults)


def deployments(data: str, cron: str, model: str = "ctgan", epochs: int = 300, target: str | None = None,
                out: str = "out/runs", registry: str = "out/registry"):
    from tabtwin.flows.synthesize import request, synthesize

    nightly = synthesize.to_deployment(
        name="synthesize-nightly",
        cron=cron,
        parameters={"data": data, "model": model, "epochs": epochs, "target": target, "out": out, "registry": registry},
        tags=["tabtwin", "nightly"],
        description="Refresh the synthetic twin: retrain only if the data changed, evaluate, publish if the gate passes.",
    )
    on_demand = request.to_deployment(
        name="request",
        tags=["tabtwin", "analyst"],
        description="Sample a synthetic table from a registered model under conditions, with a fresh evaluation.",
    )
    return nightly, on_demand


def main(argv: list[str] | None = None) -> None:
    from prefect import serve

    parser = argparse.ArgumentParser(description="Serve tabtwin's flows with a schedule.")
    parser.add_argument("--data", required=True, help="table to refresh nightly (path or SQLAlchemy URL)")
    parser.add_argument("--cron", default="0 2 * * *", help="schedule of the refresh (default 02:00 daily)")
    parser.add_argument("--model", default="ctgan", choices=["ctgan", "tvae"])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--target")
    args = parser.parse_args(argv)
    serve(*deployments(args.data, args.cron, args.model, args.epochs, args.target))


if __name__ == "__main__":
    main()
