"""Publishing: a run's folder, and a request's table with its report, written whole or not at all.

A published run is a folder `OUT/RUN_ID/` holding `synthetic.parquet` (only when the gate passed), `report.json`,
`report.html`, `expectation_suite.json` and `run.json`; it is written to a hidden staging folder, then renamed
(`pipeline.files.atomic_directory`). A request's table goes to the analyst's `out` file, its report to
`<out>.report/`, which records the table's SHA-256: that is how a later request knows the file is tabtwin's.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tabtwin.evaluation.report import write_report
from tabtwin.flows.spec import RunSpec
from tabtwin.pipeline.files import atomic_directory, atomic_file, write_json_atomic
from tabtwin.pipeline.ingest import check_output_path, write_table
from tabtwin.pipeline.outputs import check_file, check_folder, is_ours, sha256
from tabtwin.pipeline.schema import Schema

# What tabtwin writes in a run's folder (and a request's `<out>.report` folder, an `evaluate --out` folder): the
# only names it replaces there (`pipeline.outputs`).
RUN_FILES = ("report.json", "report.html", "expectation_suite.json", "run.json", "synthetic.parquet")


def new_run_id(spec: RunSpec) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{Path(spec.data).stem}-{spec.model}-{uuid.uuid4().hex[:6]}"


@dataclass
class Published:
    folder: Path
    passed: bool
    synthetic: Path | None


def publish(
    out_root: str | Path,
    run_id: str,
    results: dict,
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    run_info: dict,
    overwrite: bool = False,
) -> Published:
    """Write the reports (always) and the synthetic table (only if the gate passed) as one atomic folder.

    An existing folder there is replaced only when it holds nothing but `RUN_FILES`, or with `overwrite`."""
    passed = bool(results["gate"]["passed"])
    with atomic_directory(Path(out_root) / run_id, replaces=RUN_FILES, overwrite=overwrite) as staging:
        write_report(results, staging, real, synthetic, schema)
        if passed:
            write_table(synthetic, staging / "synthetic.parquet")
        write_json_atomic({**run_info, "run_id": run_id, "gate_passed": passed, "published": passed}, staging / "run.json")
    target = Path(out_root) / run_id
    return Published(folder=target, passed=passed, synthetic=target / "synthetic.parquet" if passed else None)


def request_report_name(out: Path) -> str:
    """The report folder of a request writing `out`: `red.csv` -> `red.csv.report` (beside it; a request writing
    `red.parquet` gets its own)."""
    return f"{out.name}.report"


def check_request_output(out: str | Path, overwrite: bool = False, data: str | None = None) -> Path:
    """Refuse, before any work, a request output that would replace what tabtwin did not write: a file at `out`
    (unless a request wrote it) or a report folder `<out>.report` holding other files; `data` (the model's
    source) is never replaced, even with `overwrite`. Returns `out` as a Path."""
    target = check_file(check_output_path(out), overwrite, inputs=[data], written=request_digests(out), marked=False)
    check_folder(target.parent / request_report_name(target), RUN_FILES, overwrite, inputs=[data],
                 what="report folder")
    return target


def request_digests(out: str | Path) -> set[str]:
    """The SHA-256 a request recorded of the table it wrote at `out` (in `<out>.report/run.json`), if any."""
    out = Path(out).expanduser()
    try:
        record = json.loads((out.parent / request_report_name(out) / "run.json").read_text(encoding="utf-8"))
        return {record["out_sha256"]} if isinstance(record.get("out_sha256"), str) else set()
    except (OSError, ValueError, AttributeError):
        return set()


@contextmanager
def table_in_waiting(df: pd.DataFrame, target: Path) -> Iterator[str]:
    """Write `df` to a temporary file beside `target` and yield its SHA-256; when the block ends without an error
    the file replaces `target`, otherwise it is removed (a request's table appears only with its report)."""
    suffix = target.name[target.name.rfind("."):]
    with atomic_file(target, suffix=suffix) as tmp:
        write_table(df, tmp)
        yield sha256(tmp)


def withdraw(path: str | Path, written: Collection[str] = ()) -> bool:
    """Remove a table an earlier request left at a request's output path, so that no stale table sits beside a
    failed report: only one whose SHA-256 a request recorded (`written`), never a user's file or another
    tabtwin output. True when one was removed."""
    path = Path(path).expanduser()
    if is_ours(path, written, marked=False):
        path.unlink()
        return True
    return False
