"""Prefect flows: thin wrappers over the plain functions in `flows.steps`, `pipeline`, `generators` and `evaluation`.

Prefect is quiet by default (warnings only; `tabtwin --verbose` turns its logs on) and never phones home.
These defaults are set before Prefect is imported and yield to anything the user set. A deployment's flow run (a
process a worker or `tabtwin deploy` started for the run, which Prefect marks with PREFECT__FLOW_RUN_ID) logs at
INFO instead, so its logs, the training progress among them, reach the server.
"""

import os

# The level the user set, if any: the CLI quiets Prefect further (`flows.cli._quiet_prefect`), never over this.
USER_LOGGING_LEVEL = os.environ.get("PREFECT_LOGGING_LEVEL")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if os.environ.get("PREFECT__FLOW_RUN_ID") else "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
