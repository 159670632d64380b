"""What a source string names: a database URL or a file path, and the local file behind either.

Kept apart from `pipeline.ingest` (which reads sources) so that `pipeline.outputs` can tell which files a command
reads, a database file named by a URL included, without importing the readers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# "scheme://" where scheme may carry a driver ("postgresql+psycopg"); a Windows path
# such as C:\data.csv has no "//" after the colon, so it is not mistaken for a URL.
_URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(source: str | os.PathLike) -> bool:
    """True when ``source`` looks like a database URL (``scheme://...``) rather than a file path."""
    return isinstance(source, str) and bool(_URL_PATTERN.match(source))


def local_database_file(url: str) -> Path | None:
    """The database file a SQLite or DuckDB URL names on this machine; None for other databases, in-memory,
    URI-style and MotherDuck databases, and malformed URLs (the reader reports those)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() not in ("sqlite", "duckdb"):
        return None
    if not database or database.startswith(":") or database.startswith(("file:", "md:", "motherduck:")):
        return None
    return Path(database).expanduser()


def local_file(source: str | os.PathLike | None) -> Path | None:
    """The file on this machine a source reads: a path itself, a SQLite/DuckDB URL's database file; None for a
    server database or no source."""
    if source is None:
        return None
    if is_url(source):
        return local_database_file(str(source))
    return Path(source).expanduser()
