"""`tabtwin deploy`: both flows as deployments on a Prefect server, a nightly refresh for the data engineer and a
parameter form for analysts.

    tabtwin deploy --data warehouse.parquet --cron "0 2 * * *" --timezone Europe/Berlin --target income

needs a Prefect server (`prefect server start`, and PREFECT_API_URL pointing at it); without one it refuses in
one line instead of serving into a throwaway server nobody sees. By default it keeps running and executes the
runs itself (`serve`); with `--pool NAME` it registers the deployments with a process work pool and exits, and
`prefect worker start --pool NAME` executes them. "synthesize-nightly" runs on the cron schedule, in the given
time zone, with the parameters given here; "request" is a form (model, rows, conditions, out, ...) whose `model`
is a choice among the models registered when the deployment was made.

The flags are `tabtwin run`'s (built from `flows.spec.RunSpec` and `Places`, with the same defaults). Paths
(the data file, metadata, gate, --out, --cache, --registry) are made absolute here: a worker runs elsewhere.
Prefect is imported inside the functions that use it: the command line builds its parser from this module at
start, before it sets Prefect's defaults for its process (`server.prefect_defaults`).
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

from tabtwin.flows.registry import REGISTRATION
from tabtwin.flows.arguments import add_places_arguments, add_spec_arguments
from tabtwin.flows.spec import Places, RunSpec, absolute, option_params, spec_default
from tabtwin.pipeline.errors import TabtwinError

DEFAULT_CRON = "0 2 * * *"
NIGHTLY, REQUEST = "synthesize-nightly", "request"
NO_API = ("no Prefect API is configured (PREFECT_API_URL is unset): start a server with `prefect server start` "
          "and set PREFECT_API_URL=http://127.0.0.1:4200/api, then deploy again (README, Flows)")


def local_timezone() -> str:
    """The machine's IANA time zone: $TZ, else /etc/timezone, else where /etc/localtime points; UTC if none."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name and _is_timezone(name):
            return name
    return "UTC"


def _is_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        return False


def check_timezone(name: str) -> str:
    if not _is_timezone(name):
        raise TabtwinError(f"unknown time zone {name!r}; pass an IANA name such as Europe/Berlin or UTC to --timezone")
    return name


def require_api() -> str:
    """The configured Prefect API URL (environment or profile), or a one-line TabtwinError saying how to get one."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise TabtwinError(NO_API)
    return str(url)


def registered_models(registry: str | None) -> list[str]:
    """Names of the entries in a registry folder (those holding a registration), sorted."""
    if not registry or not Path(registry).is_dir():
        return []
    return sorted(p.name for p in Path(registry).iterdir() if (p / REGISTRATION).is_file())


def deployments(data: str, cron: str = DEFAULT_CRON, timezone: str | None = None, **parameters):
    """The nightly `synthesize` deployment for `data` (further parameters: RunSpec / Places fields) and `request`.

    Paths become absolute; the nightly schedule carries `timezone` (None: the machine's). The request form's
    `model` is an enum of the models registered in the registry now (free text when there are none yet).
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from tabtwin.flows.synthesize import request, synthesize

    known = {f.name for f in RunSpec.flow_fields()} | {f.name for f in fields(Places)}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise TypeError(f"unknown synthesize parameters {unknown}; known: {sorted(known)}")
    parameters = {**{f.name: f.default for f in fields(Places)}, **parameters, "data": data}
    # Refused now, not at every scheduled run: a model without DP or without a time budget.
    option_params(parameters.get("model", spec_default("model")), parameters.get("dp_epsilon"),
                  parameters.get("dp_delta"), parameters.get("max_seconds"))
    for name in ("data", "metadata", "gate", "out", "cache", "registry"):
        parameters[name] = absolute(parameters.get(name))
    zone = check_timezone(timezone or local_timezone())
    nightly = synthesize.to_deployment(
        name=NIGHTLY,
        schedules=[Cron(cron, timezone=zone)],
        parameters=parameters,
        tags=["tabtwin", "nightly"],
        description="Refresh the synthetic twin: retrain only if the data changed, evaluate, publish if the gate passes.",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    registry = parameters["registry"]
    on_demand = request.to_deployment(
        name=REQUEST,
        parameters={"registry": registry},
        tags=["tabtwin", "analyst"],
        description="Sample a synthetic table from a registered model under conditions, with a fresh evaluation.",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    names = registered_models(registry)
    if names:
        on_demand._parameter_openapi_schema.properties["model"]["enum"] = names
    return nightly, on_demand


def add_arguments(parser) -> None:
    """`tabtwin deploy`'s flags: the data, the schedule, where runs execute, and `tabtwin run`'s flags."""
    parser.add_argument("--data", required=True, help="table to refresh nightly (path or SQLAlchemy URL)")
    parser.add_argument("--cron", default=DEFAULT_CRON, help="schedule of the refresh (02:00 daily)")
    parser.add_argument("--timezone", default=local_timezone(), help="IANA time zone of the schedule (the machine's)")
    parser.add_argument("--pool", help="register with this process work pool and exit (run `prefect worker start "
                                       "--pool NAME`); None: serve the deployments from this process")
    add_spec_arguments(parser, [f.name for f in RunSpec.flow_fields() if f.name != "data"])
    add_places_arguments(parser)


def parameters_from(args) -> dict:
    """The synthesize parameters the flags set (every RunSpec flow field and Places field)."""
    names = [f.name for f in RunSpec.flow_fields() if f.name != "data"] + [f.name for f in fields(Places)]
    return {name: getattr(args, name) for name in names}


def ensure_process_pool(name: str) -> None:
    """Create the process work pool `name` unless the server has a pool of that name already."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy(args) -> list[str]:
    """Create the deployments: registered with `args.pool` (returns their names), or served until interrupted."""
    require_api()
    check_timezone(args.timezone)
    built = deployments(args.data, args.cron, args.timezone, **parameters_from(args))
    if args.pool:
        ensure_process_pool(args.pool)
        for deployment in built:
            deployment.apply(work_pool_name=args.pool)
        return [f"{d.flow_name}/{d.name}" for d in built]
    from prefect import serve

    serve(*built)
    return []
