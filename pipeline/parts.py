"""A synthetic table written as a Parquet dataset: one file per part of a fixed number of rows, a manifest last.

    plan = PartPlan(rows=100_000_000, part_rows=1_000_000, seed=0, model="<sha256 of config.json>")
    todo = prepare(out_dir, plan)                 # checks the folder; the parts still to write (a rerun resumes)
    for index in todo: write_part(out_dir, plan, index, frame_of(index))   # on any worker, in any order
    finish(out_dir, plan)                         # checks every part, then writes _manifest.json

The folder holds `_plan.json` (what is being written), `part-00000.parquet`, ... and, once every part is there,
`_manifest.json` (parts with their rows and SHA-256, seed, model fingerprint, conditions). A reader takes the
folder for a finished dataset only when the manifest is there (`read_manifest`), so a half-written dataset is
never mistaken for one. Each part is written atomically (temporary name, then rename) and carries tabtwin's
Parquet mark, so after a crash the parts on disk are whole: a rerun with the same plan keeps them and writes only
the missing ones. Part i is drawn from its own seed (`PartPlan.seed_of`, from the run's seed and i), so the rows
depend on the seed alone, not on how many workers wrote them or in which order.

An output folder may be replaced only when it holds nothing but such a dataset (`pipeline.outputs` rules).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_file, write_json_atomic
from tabtwin.pipeline.outputs import MARK, check_folder, is_ours, sha256

PLAN = "_plan.json"
MANIFEST = "_manifest.json"
PART = re.compile(r"part-\d{5,}\.parquet")
# What a write cut short leaves: `pipeline.files.atomic_file`'s temporary names for a part, the plan or the manifest.
LEFTOVER = re.compile(r"\.(part-\d{5,}\.parquet|_plan\.json|_manifest\.json)\..+\.tmp")
MAX_PARTS = 10**7


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True)
class PartPlan:
    """What a partitioned sample writes: `rows` in parts of `part_rows` (the last may be shorter), from `seed`,
    by the model whose fingerprint is `model`, under `conditions` ({column: value} or None)."""

    rows: int
    part_rows: int
    seed: int
    model: str
    conditions: dict | None = field(default=None)

    def __post_init__(self):
        if self.rows < 0 or self.part_rows < 1:
            raise TabtwinError(f"a partitioned sample needs rows >= 0 and part rows >= 1, got {self.rows} and "
                               f"{self.part_rows}")
        if self.parts > MAX_PARTS:
            raise TabtwinError(f"{self.rows:,} rows in parts of {self.part_rows:,} make {self.parts:,} parts, more "
                               f"than {MAX_PARTS:,}; use larger parts")

    @property
    def parts(self) -> int:
        return -(-self.rows // self.part_rows)

    def rows_of(self, index: int) -> int:
        return min(self.part_rows, self.rows - index * self.part_rows)

    def offset_of(self, index: int) -> int:
        """Global position of the part's first row (regenerated ids count from it, so parts never share one)."""
        return index * self.part_rows

    def seed_of(self, index: int) -> int:
        """Part `index`'s seed: a 62-bit integer from numpy's SeedSequence of (seed, index), so streams of
        different parts are independent and do not depend on the number of parts or workers."""
        high, low = np.random.SeedSequence([self.seed, index]).generate_state(2, np.uint32)
        return (int(high) << 30) ^ int(low)

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(out_dir: str | os.PathLike, plan: PartPlan, overwrite: bool = False, inputs=()) -> list[int]:
    """Make `out_dir` ready for `plan` and return the indices of the parts still to write.

    A folder holding this plan's parts keeps the whole ones (resume); a folder holding another tabtwin dataset
    is cleared (its manifest first, so no reader sees a mixed dataset); anything else is refused as
    `pipeline.outputs.check_folder` refuses it (TabtwinError, one line), before any part is written.
    """
    out = Path(out_dir).expanduser()
    check_folder(out, _dataset_names(out), overwrite, inputs, what="output dataset")
    if out.exists() and not out.is_dir():  # only with overwrite: a file where the dataset goes
        out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for entry in out.iterdir():
        if LEFTOVER.fullmatch(entry.name):
            entry.unlink()
    previous = read_json(out / PLAN)
    if previous != plan.to_dict():
        (out / MANIFEST).unlink(missing_ok=True)
        for entry in out.iterdir():
            if PART.fullmatch(entry.name) or entry.name == PLAN:
                entry.unlink()
        write_json_atomic(plan.to_dict(), out / PLAN)
    return [i for i in range(plan.parts) if not _complete(out / part_name(i), plan.rows_of(i))]


def write_part(out_dir: str | os.PathLike, plan: PartPlan, index: int, frame: pd.DataFrame) -> dict:
    """Write part `index` (`frame`, exactly `plan.rows_of(index)` rows) atomically with tabtwin's mark; returns
    {"index", "file", "rows"}. Raises TabtwinError when the frame has another number of rows."""
    if len(frame) != plan.rows_of(index):
        raise TabtwinError(f"part {index} has {len(frame)} rows; the plan has {plan.rows_of(index)}")
    target = Path(out_dir).expanduser() / part_name(index)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), MARK: b"1"})
    with atomic_file(target) as tmp:
        pq.write_table(table, tmp)
    return {"index": index, "file": target.name, "rows": len(frame)}


def finish(out_dir: str | os.PathLike, plan: PartPlan) -> dict:
    """Check that every part of `plan` is in `out_dir` whole, then write the manifest (last); returns it.
    Raises TabtwinError naming the first missing or short part."""
    out = Path(out_dir).expanduser()
    parts = []
    for index in range(plan.parts):
        path = out / part_name(index)
        if not _complete(path, plan.rows_of(index)):
            raise TabtwinError(f"{path} is missing or incomplete; run the same command again to resume")
        parts.append({"file": path.name, "rows": plan.rows_of(index), "sha256": sha256(path)})
    manifest = {**plan.to_dict(), "format": "parquet", "parts_written": parts}
    write_json_atomic(manifest, out / MANIFEST)
    return manifest


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The manifest of a finished dataset, or None when the folder holds none (absent or still being written)."""
    return read_json(Path(out_dir).expanduser() / MANIFEST)


def _dataset_names(out: Path) -> list[str]:
    names = [PLAN, MANIFEST]
    if out.is_dir():
        names += [e.name for e in out.iterdir() if (PART.fullmatch(e.name) and is_ours(e)) or LEFTOVER.fullmatch(e.name)]
    return names


def _complete(path: Path, rows: int) -> bool:
    if not is_ours(path):
        return False
    try:
        return pq.ParquetFile(path).metadata.num_rows == rows
    except (pa.ArrowInvalid, OSError):
        return False


def read_json(path: Path):
    """The JSON at `path`, or None when it is absent or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
