"""The model registry: passing models kept for requests, one entry folder per name.

An entry `REGISTRY/NAME/` holds `model/` (the model folder) and `registration.json` (the run's spec, the split the
model was trained and judged on, its DP guarantee). Two rules keep a registry trustworthy:

- Confined. A request names an entry by its plain name; every path read through an entry (the entry itself, its
  registration, its model folder and the files in it) must resolve inside the registry folder, so neither a name
  such as `../other/entry` nor a symbolic link leads out of it; and a registration's values are checked (types,
  model name, kinds of file) before any of them is used.
- Atomic. An entry is written whole (`pipeline.files.atomic_directory`), and the check that its name is free or
  holds the same source's model and the swap happen under one lock (`filelock`, a well-kept cross-platform
  lock), so of two runs that finish together at most one is told it registered a name, and only truthfully.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from tabtwin.flows.spec import MODEL_NAMES, RunSpec, source_of
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory, write_json_atomic
from tabtwin.pipeline.ingest import SUPPORTED_SUFFIXES, is_url

REGISTRATION = "registration.json"
ENTRY_FILES = ("model", REGISTRATION)  # what an entry holds: the only names registering replaces there
LOCK = ".registry.lock"
# A plain entry name, as `registry_name` makes them: no separator, no "..", nothing hidden.
ENTRY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
# Seconds a registration waits for another one in the same registry (it holds the lock for a folder copy).
LOCK_WAIT_S = 600


def registry_name(spec: RunSpec) -> str:
    """The registry entry a passing model of this spec is registered under: <file name>[-<table>]-<model>[-dp<eps>].

    The file's suffix is part of the name (`a-sqlite-ctgan`, `a-parquet-ctgan`), and so is a database table, so
    two inputs sharing a stem get distinct entries. Two files of the same name in different folders would still
    share one: `check_registry_names` refuses that clash before any work. A private model's epsilon is part of the
    name (`adult-csv-tvae-dp3`), so a later non-private run never replaces an entry signed off as private.
    """
    parts = [Path(spec.data.rstrip("/")).name or "data"] + ([spec.table] if spec.table else []) + [spec.model]
    if spec.dp_epsilon is not None:
        parts.append(f"dp{spec.dp_epsilon:g}")
    return "-".join(_slug(part) for part in parts)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "-", str(text)).strip("-") or "x"


def check_registry_names(specs: list[RunSpec], registry: str | Path | None) -> None:
    """Refuse, before any work, two sources that would register under one name: two of these specs, or a spec and
    the model already registered there from another source (a re-run of the same source replaces its entry).
    `register_model` checks the second again under the registry's lock, for runs that finish together."""
    if not registry:
        return
    claimed: dict[str, str] = {}
    for spec in specs:
        name, source = registry_name(spec), source_of(spec)
        entry = entry_path(name, registry)  # a name too long for an entry is refused now, not after the run
        if claimed.setdefault(name, source) != source:
            raise TabtwinError(f"{claimed[name]} and {source} would both register as {entry}; "
                               "rename one file or run them with different --registry folders")
        _check_free(entry, source)


def _check_free(entry: Path, source: str) -> None:
    """Refuse `entry` when it holds the model of a source other than `source` (TabtwinError, one line)."""
    registered = _registered_source(entry)
    if registered is not None and registered != source:
        raise TabtwinError(f"{entry} holds the model of {registered}, not of {source}; pass another --registry "
                           f"folder, or delete {entry} to replace it")


def _registered_source(entry: Path) -> str | None:
    try:
        return json.loads((entry / REGISTRATION).read_text(encoding="utf-8"))["source"]["data"]
    except (OSError, ValueError, KeyError, TypeError):  # no entry, or one from before sources were recorded
        return None


def _rows_digest(df: pd.DataFrame) -> str:
    digest = hashlib.sha256(json.dumps([str(c) for c in df.columns]).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()



def split_record(spec: RunSpec, train: pd.DataFrame, holdout: pd.DataFrame) -> dict:
    """What a registration records of the data a model was trained on: the source, its columns and row count,
    and a fingerprint of the training rows and of the holdout rows (no rows themselves)."""
    return {"data": source_of(spec), "columns": [str(c) for c in train.columns], "rows": len(train) + len(holdout),
            "train": {"rows": len(train), "sha256": _rows_digest(train)},
            "holdout": {"rows": len(holdout), "sha256": _rows_digest(holdout)}}


def check_source(registration: "Registration", train: pd.DataFrame, holdout: pd.DataFrame) -> None:
    """Refuse a request whose re-read, re-split source is not the split the model was trained and judged on.

    A grown, shrunk or edited source splits differently: rows the model trained on would land in the holdout
    and the privacy checks would pass on leaked rows. The error names what changed.
    """
    data, entry, recorded = registration.spec.data, registration.folder, registration.source
    table = f" --table {registration.spec.table}" if registration.spec.table else ""
    rerun = f"re-register it with `tabtwin run {data}{table}`"
    if recorded is None:
        raise TabtwinError(f"{entry} was registered without a fingerprint of its training and holdout rows, so a "
                           f"request cannot prove its holdout unseen; {rerun}")
    now = split_record(registration.spec, train, holdout)
    changes = []
    added = [c for c in now["columns"] if c not in recorded["columns"]]
    removed = [c for c in recorded["columns"] if c not in now["columns"]]
    if added:
        changes.append(f"columns added: {', '.join(added)}")
    if removed:
        changes.append(f"columns removed: {', '.join(removed)}")
    if not (added or removed) and now["columns"] != recorded["columns"]:
        changes.append("columns reordered")
    if now["rows"] != recorded["rows"]:
        changes.append(f"{recorded['rows']:,} rows then, {now['rows']:,} now")
    if not changes:
        for part, label in (("train", "training"), ("holdout", "holdout")):
            if now[part]["sha256"] != recorded[part]["sha256"]:
                changes.append(f"its {label} rows differ")
    if changes:
        raise TabtwinError(f"{data} has changed since {entry} was registered ({'; '.join(changes)}), so its holdout "
                           f"would no longer be unseen by the model; {rerun}")



def register_model(registry: str | Path, name: str, model_dir: Path, spec: RunSpec, source: dict,
                   privacy: dict | None = None) -> Path:
    """Copy a fitted model into the registry entry `name` with what is needed to evaluate later requests.

    `source` is `split_record(spec, train, holdout)`: requests check the source still splits into those rows.
    `privacy` (the model's `privacy_`, for a DP model) is recorded beside the spec's dp_epsilon and dp_delta, so
    the entry says what guarantee it carries without loading the model. Under the registry's lock the entry must
    be free or hold this source's model (else a TabtwinError, and nothing is registered); it is then replaced
    whole. Returns the entry's folder.
    """
    target = entry_path(name, registry)
    Path(registry).mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(Path(registry) / LOCK, timeout=LOCK_WAIT_S):
            _check_free(target, source_of(spec))
            with atomic_directory(target, replaces=ENTRY_FILES) as staging:
                shutil.copytree(model_dir, staging / "model")
                write_json_atomic({"spec": asdict(spec), "source": source,
                                   "registered": datetime.now(timezone.utc).isoformat(),
                                   **({"privacy": privacy} if privacy else {})}, staging / REGISTRATION)
    except Timeout:
        raise TabtwinError(f"another run held {Path(registry) / LOCK} for {LOCK_WAIT_S} s, so {target} was not "
                           "registered; run again once it has finished") from None
    return target


@dataclass
class Registration:
    """A registry entry: its folder, its model folder, the spec it was trained with, and the split it recorded
    (None for an entry registered before splits were recorded)."""

    folder: Path
    model_dir: Path
    spec: RunSpec
    source: dict | None


def entry_path(model: str, registry: str | Path | None) -> Path:
    """The registry entry a request names: `model` under `registry` (a plain entry name), or, with no registry,
    `model` itself (the path of an entry). A name that is not plain (a separator, "..", hidden) is refused."""
    if registry is None:
        return Path(model).expanduser()
    if not isinstance(model, str) or not ENTRY_NAME.fullmatch(model) or ".." in model:
        raise TabtwinError(f"{model!r} is not a registry entry name: a request names an entry of {registry} by its "
                           "plain name (letters, digits, '-', '_', '.'; at most 200), such as adult-csv-autoregressive")
    return Path(registry, model)


def read_registration(path: str | Path, registry: str | Path | None = None) -> Registration:
    """The registry entry at `path` (as written by `register_model`), confined and checked.

    Every path read through it resolves inside `registry` (None: the folder that holds the entry), and the
    recorded spec has the types and values a run could have written. Raises TabtwinError (one line) otherwise.
    """
    path = Path(path).expanduser()
    file = path / REGISTRATION
    if not file.is_file():
        raise TabtwinError(f"{path} is not a registered model (no {REGISTRATION}); register it with `tabtwin run`")
    root = Path(registry if registry is not None else path.absolute().parent).resolve()
    model_dir = path / "model"
    for inside in [path, file, model_dir, *(model_dir.rglob("*") if model_dir.is_dir() else ())]:
        if not inside.resolve().is_relative_to(root):
            raise TabtwinError(f"{inside} leads outside the registry {root} (a link or a renamed path); the entry "
                               "is not trusted: delete it and re-register the model with `tabtwin run`")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        spec = checked_spec(record["spec"])
        source = checked_source(record.get("source"))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise TabtwinError(f"{file} is corrupt ({err}); re-register the model with `tabtwin run`") from None
    return Registration(folder=path, model_dir=model_dir, spec=spec, source=source)


SHA256 = re.compile(r"[0-9a-f]{64}")


def checked_source(source: dict | None) -> dict | None:
    """A registration's record of its split (`split_record`), each field of its type; None for an entry
    registered before splits were recorded (`check_source` refuses those). Raises TypeError naming the field."""
    if source is None:
        return None
    if not (isinstance(source, dict) and isinstance(source.get("data"), str)
            and isinstance(source.get("columns"), list) and all(isinstance(c, str) for c in source["columns"])
            and _count(source.get("rows"))):
        raise TypeError("source needs data (text), columns (a list of names) and rows (a count)")
    for part in ("train", "holdout"):
        record = source.get(part)
        if not (isinstance(record, dict) and _count(record.get("rows"))
                and isinstance(record.get("sha256"), str) and SHA256.fullmatch(record["sha256"])):
            raise TypeError(f"source.{part} needs rows (a count) and sha256 (64 hex digits)")
    return source


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# RunSpec's annotations (strings under `from __future__ import annotations`) -> the JSON types a value may have.
_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "dict": (dict,), "bool": (bool,)}


def checked_spec(record: dict) -> RunSpec:
    """A RunSpec from a registration's record, each value of its field's type; a source that is a URL or a
    table file tabtwin reads, metadata and gate files that are JSON files. Raises TypeError/ValueError naming the field."""
    if not isinstance(record, dict):
        raise TypeError("spec is not an object")
    known = {f.name: f for f in fields(RunSpec)}
    for name, value in record.items():
        if name not in known:
            raise ValueError(f"unknown spec field {name!r}")
        types = [t.strip() for t in str(known[name].type).split("|")]
        allowed = tuple(k for t in types for k in _JSON_TYPES.get(t, ()))
        if not ((value is None and "None" in types) or
                (isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed))):
            raise TypeError(f"spec field {name!r} is {type(value).__name__}, expected {known[name].type}")
    spec = RunSpec(**record)
    if spec.model not in MODEL_NAMES:
        raise ValueError(f"unknown model {spec.model!r}")
    if not is_url(spec.data) and not spec.data.lower().endswith(SUPPORTED_SUFFIXES):
        raise ValueError(f"data {spec.data!r} is neither a database URL nor a table file")
    for name in ("metadata", "gate"):
        value = getattr(spec, name)
        if value is not None and not value.lower().endswith(".json"):
            raise ValueError(f"{name} {value!r} is not a .json file")
    return spec


def fresh_request_path(entry: Path) -> Path:
    """A new output file for a request that names none: requests/<entry>-<UTC time>-<random>.parquet in the folder
    that holds the registry (never one shared file, so two runs never overwrite each other)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return Path(entry).expanduser().absolute().parent.parent / "requests" / f"{entry.name}-{stamp}-{uuid.uuid4().hex[:6]}.parquet"



