"""The one-line errors of reading a table, shared by files (`pipeline.ingest`) and databases
(`pipeline.databases`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tabtwin.pipeline.errors import IngestError



def reject_duplicates(names: Sequence, where: str | Path) -> None:
    """IngestError naming the repeated column names, if any."""
    repeated = [str(name) for name, count in Counter(names).items() if count > 1]
    if repeated:
        listed = ", ".join(f"'{name}'" for name in repeated)
        raise ingest_error(f"{where} has duplicate column names: {listed}; rename them so every column is unique")


def reject_empty(df: pd.DataFrame, what: str) -> None:
    """IngestError for a table without columns or rows; `what` names it."""
    if df.shape[1] == 0:
        raise ingest_error(f"{what} has no columns; it needs a header and at least one data row")
    if df.shape[0] == 0:
        raise ingest_error(f"{what} has a header but no rows; it needs at least one data row")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def ingest_error(message: str) -> IngestError:
    """An IngestError of `message` on one line."""
    # The CLI prints the message as a single line, so fold any newline a reason carried in.
    return IngestError(" ".join(message.splitlines()))
