"""The Prefect API that `tabtwin run` and `tabtwin request` talk to, ready before their flows start.

With PREFECT_API_URL set, the flows use that server, which must answer. Otherwise Prefect starts a temporary
("ephemeral") API server in a subprocess; on a machine without a Prefect home yet, that first start also creates
and migrates its database, which takes far longer than Prefect's default wait of 20 s on a slow or busy machine
(measured in bench/prefect_startup.py; figures in bench/RESULTS.md). So tabtwin starts that server itself, before
the flow, waiting up to `STARTUP_TIMEOUT_S` unless the user set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
(environment or Prefect profile), which wins. Prefect's own client then finds the server running and reuses it
(`SubprocessASGIServer` keeps one instance per port). A server that still does not start is one line with what
to do, and its process is stopped.

Prefect stops the temporary server when the Python process exits normally (atexit). `stop_on_signals` turns
SIGTERM and SIGHUP into an exception, so a killed run unwinds the same way and leaves no server behind; SIGKILL
cannot be caught by any process, so only the signals a process can handle are covered.

Prefect is imported inside the functions: the command line imports this module at start, before it sets
Prefect's defaults for its process (`prefect_defaults`).
"""

from __future__ import annotations

import os
import signal

from tabtwin.pipeline.errors import TabtwinError

# Seconds to wait for the temporary server's first start (database creation and migrations included): 3x the
# slowest first start measured on a 2-core machine with the other core busy.
STARTUP_TIMEOUT_S = 180
SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def prefect_defaults(level: str) -> None:
    """Prefect's settings for this process, each only where the user set none, before Prefect is imported: its
    log level (the CLI prints its own summary; `--verbose` asks for INFO) and no analytics, so a run never
    phones home. A library user calling the flows directly sets these themselves, or keeps Prefect's defaults."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


class Stopped(BaseException):
    """The process received SIGTERM or SIGHUP (`stop_on_signals`): unwind and exit with 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop_on_signals() -> None:
    """Raise `Stopped` in the main thread on SIGTERM and SIGHUP (Python's default ends the process without running
    its exit handlers, which stop Prefect's temporary server and close a Dask LocalCluster)."""

    def handler(signum, frame):
        raise Stopped(signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def startup_timeout() -> int:
    """Seconds to wait for the temporary server: the user's Prefect setting when set, else `STARTUP_TIMEOUT_S`."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    return ephemeral.startup_timeout_seconds if "startup_timeout_seconds" in ephemeral.model_fields_set else STARTUP_TIMEOUT_S


def ensure_api() -> str:
    """The Prefect API the flows will use, checked or started now; returns its URL.

    Raises TabtwinError (one line, what to do) when the configured server does not answer, when no server is
    configured and temporary ones are switched off, or when the temporary server does not start in time.
    """
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.api.url
    if url:
        _check_answers(str(url))
        return str(url)
    if not settings.server.ephemeral.enabled:
        raise TabtwinError("no Prefect API: PREFECT_API_URL is unset and temporary servers are switched off "
                           "(PREFECT_SERVER_EPHEMERAL_ENABLED); set one of them, e.g. `prefect server start` and "
                           "PREFECT_API_URL=http://127.0.0.1:4200/api")
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    timeout = startup_timeout()
    try:
        server.start(timeout=timeout)
    except Exception as err:  # Prefect raises RuntimeError on a timeout, httpx errors on a bad answer
        server.stop()
        first = str(err).strip().split(".")[0] or type(err).__name__
        raise TabtwinError(f"Prefect's temporary server did not start within {timeout} s ({first}); its first start "
                           "creates a database and is slow on a busy machine: run again, raise "
                           f"{SETTING}, or start a server (`prefect server start`) and set PREFECT_API_URL") from None
    return server.api_url


def _check_answers(url: str) -> None:
    """Prefect's own health check, so its API key, auth string and TLS settings apply."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()
    if error is not None:
        raise TabtwinError(f"the Prefect server at PREFECT_API_URL={url} does not answer ({type(error).__name__}); "
                           "start it (`prefect server start`), or unset PREFECT_API_URL to let tabtwin start a "
                           "temporary one")
