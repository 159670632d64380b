"""Atomic writes: a reader sees the old file or folder, or the new one whole, never half of one.

Every writer in tabtwin goes through here. Data is written to a temporary name beside the target, flushed to
disk (fsync), then renamed over the target (os.replace), and the parent folder is synced so the rename survives
a crash. Without the fsync a crash just after the rename can leave an empty or truncated target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.outputs import check_folder


@contextmanager
def atomic_file(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `target` to write; on success it is synced and replaces `target`.

    On any error the temporary file is removed and `target` is left as it was. The new file gets the mode an
    existing target had, or the umask default (a plain open()'s), not NamedTemporaryFile's 0600.
    """
    target = Path(target).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(delete=False, dir=target.parent, prefix=f".{target.name}.", suffix=suffix) as tmp:
        tmp_path = Path(tmp.name)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.chmod(tmp_path, _target_mode(target))
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


@contextmanager
def atomic_directory(target: str | Path, replaces: Collection[str] = (), overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden staging folder beside `target`; on success its files are synced and it replaces `target`.

    An existing `target` is replaced only when `pipeline.outputs.check_folder` allows it: it is empty or holds
    only names in `replaces` (what tabtwin writes in such a folder), or `overwrite` is set. That is checked before
    the work (so nothing is computed for a refused path) and again at the swap (a folder may have filled since).
    Raises TabtwinError (one line) when refused; the staging folder is removed and `target` left as it was.
    """
    target = Path(target).expanduser()
    check_folder(target, replaces, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    # mkdtemp makes the folder 0700; a published folder gets what a plain mkdir would give (the umask decides).
    os.chmod(staging, 0o777 & ~current_umask())
    retired = None
    try:
        yield staging
        for path in sorted(staging.rglob("*")):
            if path.is_file() and not path.is_symlink():
                fsync_file(path)
        for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            fsync_directory(folder)
        check_folder(target, replaces, overwrite)
        if target.exists() or target.is_symlink():
            # Moved aside, not deleted first: the target is absent only between two renames.
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.replace(target, retired / target.name)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None and (retired / target.name).exists() and not target.exists():
            os.replace(retired / target.name, target)  # put the old folder back
        raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    fsync_directory(target.parent)


def write_text_atomic(text: str, path: str | Path) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path).expanduser()


def write_json_atomic(data, path: str | Path) -> Path:
    """`data`, cleaned by `pipeline.jsonable.jsonable` (NaN -> null, numpy -> Python), as indented JSON."""
    return write_text_atomic(json.dumps(jsonable(data), indent=2, ensure_ascii=False, allow_nan=False), path)


def fsync_file(path: str | Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _target_mode(target: Path) -> int:
    """Keep an existing target's permissions; otherwise the umask default for new files."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0)  # os.umask can only be read by setting it; restore it at once
    os.umask(umask)
    return umask
