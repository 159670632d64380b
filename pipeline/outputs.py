"""What an output path may replace: only what tabtwin itself wrote there, never a user's file or folder.

Every command checks its output paths before any work (`check_folder`, `check_file`), and the atomic folder
writer (`pipeline.files.atomic_directory`) checks again at the moment it swaps the new folder in. The rules:

- a path that does not exist, or an empty folder, is free;
- an existing folder may be replaced when every entry in it is a name tabtwin writes in that kind of folder
  (a model folder holds config.json, encoder.json, weights.pt; the caller names them);
- an existing file may be replaced when tabtwin wrote it: a Parquet file tabtwin writes carries `MARK` in its
  schema metadata; a CSV file can carry no mark, so it is replaceable only where the caller recorded its
  SHA-256 when it wrote it (a request's report does);
- `overwrite=True` (`--overwrite`) lifts those two rules for a user who means it, never these: an output is
  never one of the inputs, a folder holding an input, the current folder or a folder above it, the home folder
  or the file system's root.

Each refusal is a `TabtwinError` of one line naming the path, what is in the way and what to do.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Iterable
from pathlib import Path

from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.sources import local_file

# The key of tabtwin's mark in the schema metadata of a Parquet file it wrote.
MARK = b"tabtwin"
OVERWRITE_HINT = "choose a new path, or pass --overwrite to replace it"


def check_folder(target: str | os.PathLike, replaces: Collection[str], overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = (), what: str = "output folder") -> Path:
    """Refuse `target` as a folder to (re)write unless it is free or holds only names in `replaces`.

    `inputs` are the sources the command reads (paths, or database URLs whose SQLite/DuckDB file counts; None is
    skipped): never replaced, nor a folder that holds one, even with `overwrite`. Returns `target` as a Path.
    Raises TabtwinError (one line).
    """
    target = Path(target).expanduser()
    _check_never(target, inputs, what)
    if not (target.exists() or target.is_symlink()):
        return target
    if target.is_symlink():  # a link's target is not ours to replace, even with --overwrite
        raise TabtwinError(f"{what} {target} is a symbolic link; name the folder itself or a new path")
    if not target.is_dir():
        if overwrite:
            return target
        raise TabtwinError(f"{what} {target} exists and is not a folder tabtwin wrote; {OVERWRITE_HINT}")
    foreign = sorted(entry.name for entry in target.iterdir() if entry.name not in replaces)
    if foreign and not overwrite:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise TabtwinError(f"{what} {target} holds files tabtwin did not write ({shown}) and would be replaced "
                           f"whole; {OVERWRITE_HINT}")
    return target


def check_file(target: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike | None] = (),
               written: Collection[str] = (), marked: bool = True, what: str = "output file") -> Path:
    """Refuse `target` as a file to (re)write unless it is absent or tabtwin wrote it (`is_ours`).

    `written`: SHA-256 digests of files the caller recorded writing there; `marked`: whether a Parquet file with
    tabtwin's mark counts too (a request's output accepts only what a request recorded). `inputs` as in
    `check_folder`. Returns `target` as a Path. Raises TabtwinError (one line).
    """
    target = Path(target).expanduser()
    _check_never(target, inputs, what)
    if target.is_dir():
        raise TabtwinError(f"{what} {target} is a folder; pass a file path (e.g. {target / 'synthetic.parquet'})")
    if target.exists() and not overwrite and not is_ours(target, written, marked):
        raise TabtwinError(f"{what} {target} exists and tabtwin cannot tell it wrote it (only its own Parquet files "
                           f"carry a mark); {OVERWRITE_HINT}")
    return target


def is_ours(path: str | os.PathLike, written: Collection[str] = (), marked: bool = True) -> bool:
    """Whether tabtwin wrote the file at `path`: a file whose SHA-256 is one of `written`, or (with `marked`) a
    Parquet file with tabtwin's mark."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return False
    if written and sha256(path) in written:
        return True
    if not marked:
        return False
    try:
        import pyarrow.parquet as pq

        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # not a Parquet file (pyarrow raises several kinds): it carries no mark
        return False
    return MARK in metadata


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_never(target: Path, inputs: Iterable[str | os.PathLike | None], what: str) -> None:
    """What no output may be, `--overwrite` or not: an input, a folder above an input or above the current
    folder, the home folder, the root."""
    resolved = target.resolve()
    protected = [Path.cwd().resolve(), Path.home().resolve(), Path(resolved.anchor)]
    if any(resolved == place or resolved in place.parents for place in protected):
        raise TabtwinError(f"{what} {target} is the current folder, the home folder or a folder above them, "
                           "which tabtwin never replaces; name a new folder inside it instead")
    for source in map(local_file, inputs):
        if source is None:
            continue
        source = source.resolve()
        if resolved == source or resolved in source.parents:
            raise TabtwinError(f"{what} {target} is or holds the input {source}, which tabtwin never replaces; "
                               "choose another path")
