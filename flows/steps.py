"""Plain, tested functions the flows are made of (no Prefect in here): split, fingerprint, cache, publish.

A published run is a folder `OUT/RUN_ID/` holding `synthetic.parquet` (only when the gate passed),
`report.json`, `report.html`, `expectation_suite.json` and `run.json`; it appears whole or not at all
(written to a hidden staging folder, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from tabtwin.pipeline.conditions import matches
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory, atomic_file, write_json_atomic
from tabtwin.pipeline.outputs import check_file, check_folder, is_ours, sha256
from tabtwin.pipeline.schema import Schema

# What tabtwin writes in a run's folder (and a request's `<out>.report` folder, an `evaluate --out` folder): the
# only names it replaces there (`pipeline.outputs`).
RUN_FILES = ("report.json", "report.html", "expectation_suite.json", "run.json", "synthetic.parquet")

# The one place the default generator is named: RunSpec, the CLI (`run`, `fit`), the flows and the deployment
# all read it from here.
DEFAULT_MODEL = "autoregressive"
MODEL_NAMES = ("autoregressive", "ctgan", "tvae")


@dataclass
class RunSpec:
    """Everything that decides what a run produces (and so what its cached model depends on).

    This is the one declaration of a run's parameters: `tabtwin run`'s flags, the `synthesize` flow's parameters
    and the nightly deployment's parameters are built from these fields (their defaults and help texts);
    tests/test_params.py proves the three agree. A field's metadata holds its help text; "positive" marks a
    whole number that must be > 0; "flow": False marks one that only the `request` flow sets.
    """

    data: str = field(metadata={"help": "table: CSV, TSV, Parquet, SQLite/DuckDB file, or a SQLAlchemy URL"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "generator", "choices": MODEL_NAMES})
    epochs: int | None = field(
        default=None, metadata={"help": "training epochs (None: the model's own; the flagship's is a cap, early stopping ends it)", "positive": True}
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "rows per training step (None: the model's own)", "positive": True}
    )
    max_seconds: float | None = field(
        default=None, metadata={"help": "training-time budget in seconds from the start of the fit, encoding included, checked after each "
                                        "epoch (None: none; autoregressive only). Opt-in: where it stops training, a seeded run "
                                        "depends on the machine's speed", "positive": True}
    )
    rows: int | None = field(
        default=None, metadata={"help": "synthetic rows (None: as many as the training split)", "positive": True}
    )
    target: str | None = field(default=None, metadata={"help": "column to predict for the utility check"})
    holdout_fraction: float = field(default=0.2, metadata={"help": "share of rows kept out of training"})
    seed: int = field(default=0, metadata={"help": "seed of the split, the fit, sampling and evaluation"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda"})
    dp_epsilon: float | None = field(
        default=None, metadata={"help": "train with DP-SGD within this epsilon (opt-in; models with DP only: tvae)", "positive": True}
    )
    dp_delta: float | None = field(
        default=None, metadata={"help": "delta of the DP guarantee, below 1 (None: 1 / training rows^1.1); needs --dp-epsilon", "positive": True}
    )
    table: str | None = field(default=None, metadata={"help": "table to read from a database source"})
    metadata: str | None = field(default=None, metadata={"help": "SDV single-table metadata JSON that overrides inference"})
    gate: str | None = field(default=None, metadata={"help": "JSON file of gate thresholds (see evaluation/gate.py)"})
    conditions: dict = field(default_factory=dict, metadata={"help": "COLUMN: VALUE conditions on sampling", "flow": False})

    def model_params(self) -> dict:
        """What the cached model depends on. DP settings and a time budget enter only when set, so that models
        cached before they existed keep their fingerprints. A budgeted model also depends on the device: how many
        epochs fit in the budget does."""
        options = option_params(self.model, self.dp_epsilon, self.dp_delta, self.max_seconds)
        return {"model": self.model, "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
                **options, **({"device": self.device} if "max_seconds" in options else {})}

    @classmethod
    def flow_fields(cls) -> list:
        """The fields that are parameters of the `synthesize` flow (and flags of `tabtwin run`)."""
        return [f for f in fields(cls) if f.metadata.get("flow", True)]


def generator_params(epochs: int | None, batch_size: int | None, device: str, seed: int) -> dict:
    """A generator's constructor arguments from run parameters; None leaves the model's own default."""
    params = dict(epochs=epochs, batch_size=batch_size, device=device, random_state=seed)
    return {k: v for k, v in params.items() if v is not None or k == "random_state"}


def option_params(model: str, dp_epsilon: float | None = None, dp_delta: float | None = None,
                  max_seconds: float | None = None) -> dict:
    """The opt-in constructor arguments of `model` (DP, time budget) from run parameters: `dp_params` and
    `budget_params` together, so every caller refuses the same things before any work."""
    return {**dp_params(model, dp_epsilon, dp_delta), **budget_params(model, max_seconds)}


def models_with(parameter: str) -> list[str]:
    """The generators that take `parameter` (e.g. "dp_epsilon", "max_seconds")."""
    from tabtwin.generators import model_class

    return [name for name in MODEL_NAMES if parameter in model_class(name)._get_param_names()]


def budget_params(model: str, max_seconds: float | None) -> dict:
    """`max_seconds` as a constructor argument of `model`; a user error for a model without a time budget or a
    budget that is not a positive number."""
    if max_seconds is None:
        return {}
    having = models_with("max_seconds")
    if model not in having:
        raise TabtwinError(f"--max-seconds is supported by {', '.join(having)} only, not {model}; "
                           f"use --epochs to shorten {model}'s training")
    if not (_is_number(max_seconds) and math.isfinite(max_seconds) and max_seconds > 0):
        raise TabtwinError(f"--max-seconds must be a positive number of seconds, got {max_seconds}")
    return {"max_seconds": float(max_seconds)}  # 30 and 30.0: one cache key


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def dp_models() -> list[str]:
    """The generators that train with differential privacy (those with a `dp_epsilon` parameter)."""
    return models_with("dp_epsilon")


def dp_params(model: str, epsilon: float | None, delta: float | None) -> dict:
    """The DP constructor arguments of `model`; a user error for a model without DP or a delta without epsilon."""
    if epsilon is None:
        if delta is not None:
            raise TabtwinError("--dp-delta needs --dp-epsilon")
        return {}
    private = dp_models()
    if model not in private:
        raise TabtwinError(f"--dp-epsilon is supported by {', '.join(private)} only, not {model}; use --model {private[0]}")
    # The CLI's parser checks this too; a flow or a deployment's parameters arrive without it.
    if not (_is_number(epsilon) and math.isfinite(epsilon) and epsilon > 0):
        raise TabtwinError(f"--dp-epsilon must be a positive number, got {epsilon}; smaller is more private (1-10 is usual)")
    if delta is not None and not 0 < delta < 1:
        raise TabtwinError(f"--dp-delta must lie between 0 and 1, got {delta}; it is the chance the guarantee fails")
    return {"dp_epsilon": float(epsilon), **({"dp_delta": float(delta)} if delta is not None else {})}


def spec_default(name: str):
    """A RunSpec field's default (so a signature elsewhere can say `epochs: int = spec_default("epochs")`)."""
    (found,) = [f for f in fields(RunSpec) if f.name == name]
    return found.default


@dataclass
class Places:
    """Where a run writes: published runs, the model cache, the registry (None: register nothing)."""

    out: str = field(default="out/runs", metadata={"help": "folder that receives one sub-folder per run"})
    cache: str = field(default="out/cache", metadata={"help": "fitted models, keyed by data fingerprint + parameters"})
    registry: str | None = field(default="out/registry", metadata={"help": "where passing models are registered for requests"})


def place_default(name: str):
    (found,) = [f for f in fields(Places) if f.name == name]
    return found.default


def split_train_holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split; the holdout is real data the generator never sees (privacy needs it)."""
    if not 0 < fraction < 1:
        raise TabtwinError(f"holdout fraction must be between 0 and 1, got {fraction}")
    holdout_rows = max(1, round(len(df) * fraction))
    if len(df) - holdout_rows < 2:
        raise TabtwinError(f"the table has {len(df)} rows: too few to keep a holdout of {fraction:.0%} and train on the rest")
    holdout = df.sample(n=holdout_rows, random_state=seed)
    return df.drop(holdout.index).reset_index(drop=True), holdout.reset_index(drop=True)


def fingerprint(df: pd.DataFrame, schema: Schema, params: dict) -> str:
    """Hash of the training rows, the schema and the fit parameters: same inputs, same model."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    from tabtwin.generators.base import FORMAT_VERSION  # a new model format must not reuse models saved in the old one

    digest.update(json.dumps([list(map(str, df.columns)), schema.to_dict(), params, FORMAT_VERSION], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cached_model_dir(cache_root: str | Path, key: str) -> Path:
    return Path(cache_root) / key


def is_cached(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and (model_dir / "weights.pt").is_file()


def filter_rows(df: pd.DataFrame, conditions: dict) -> pd.DataFrame:
    """Real rows meeting the conditions, matched as the generators match them (`pipeline.conditions`)."""
    mask = pd.Series(True, index=df.index)
    for column, value in conditions.items():
        if column not in df.columns:
            raise TabtwinError(f"condition names unknown column {column!r}; columns are {list(df.columns)}")
        mask &= matches(df[column], value)
    return df[mask].reset_index(drop=True)


def load_inputs(spec: RunSpec) -> tuple[pd.DataFrame, pd.DataFrame, Schema]:
    """(train, holdout, schema) for a run: read, infer (metadata overrides), split."""
    from tabtwin.pipeline.ingest import read_table
    from tabtwin.pipeline.schema import infer_schema, load_metadata

    df = read_table(spec.data, table=spec.table)
    schema = infer_schema(df, load_metadata(spec.metadata) if spec.metadata else None)
    train, holdout = split_train_holdout(df, spec.holdout_fraction, spec.seed)
    return train, holdout, schema


def fit_or_reuse(train: pd.DataFrame, schema: Schema, spec: RunSpec, cache_root: str | Path,
                 progress=None) -> tuple[Path, bool]:
    """The model folder for these inputs, training only when no model with the same fingerprint is cached.

    `progress` (optional) is the generator's progress callback (`flows.progress.TrainingProgress`), called once
    per epoch.
    """
    from tabtwin.generators import model_class

    model_dir = cached_model_dir(cache_root, fingerprint(train, schema, spec.model_params()))
    if is_cached(model_dir):
        return model_dir, True
    params = generator_params(spec.epochs, spec.batch_size, spec.device, spec.seed)
    params.update(option_params(spec.model, spec.dp_epsilon, spec.dp_delta, spec.max_seconds))
    model = model_class(spec.model)(**params, verbose=False)
    model.progress_callback = progress
    model.fit(train, schema).save(model_dir)
    return model_dir, False


def sample_synthetic(model_dir: Path, rows: int, spec: RunSpec) -> pd.DataFrame:
    from tabtwin.generators import load_model

    return load_model(model_dir, device=spec.device).sample(rows, conditions=spec.conditions or None, seed=spec.seed)


def model_privacy(model_dir: str | Path) -> dict | None:
    """The DP guarantee a saved model was trained under (its `privacy_`: epsilon spent, delta, what is not
    covered), or None for a model trained without DP."""
    from tabtwin.generators import load_model

    return getattr(load_model(model_dir, device="cpu"), "privacy_", None)


def run_record(kind: str, spec: RunSpec, model_dir: str | Path, entry: str | Path | None, rows: int) -> dict:
    """What produced a synthetic table, for the top of its report (`evaluate(run=...)`): "run" or "request", the
    generator, its folder, the registry entry (None when there is none), the source, the conditions, the rows."""
    return {"kind": kind, "model": spec.model, "model_dir": str(Path(model_dir).absolute()),
            "registry_entry": str(Path(entry).absolute()) if entry else None, "data": source_of(spec),
            "conditions": dict(spec.conditions), "rows": rows}


def evaluate_run(train, holdout, synthetic, schema: Schema, spec: RunSpec, run: dict | None = None,
                 dp: dict | None = None) -> dict:
    """`evaluation.report.evaluate` with the spec's gate, target, device and seed; `run` and `dp` go to the
    report as they are (`run_record`, `model_privacy`)."""
    from tabtwin.evaluation.gate import GateConfig
    from tabtwin.evaluation.report import evaluate

    gate = GateConfig.from_file(spec.gate) if spec.gate else GateConfig()
    # A target fixed by a condition has one value: there is nothing to predict, so utility is skipped.
    target = None if spec.target in spec.conditions else spec.target
    return evaluate(train, holdout, synthetic, schema, target=target, gate=gate, device=spec.device, seed=spec.seed,
                    run=run, dp=dp)


def source_of(spec: RunSpec) -> str:
    """The source a spec reads, as one comparable string: a local file's absolute path, else the URL (password
    masked), with the database table after a '#'."""
    from tabtwin.pipeline.ingest import is_url

    if is_url(spec.data):
        data = re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", spec.data)
    else:
        data = str(Path(spec.data).expanduser().resolve())
    return f"{data}#{spec.table}" if spec.table else data


def absolute(path: str | None) -> str | None:
    """A local path made absolute (None and SQLAlchemy URLs stay as they are)."""
    from tabtwin.pipeline.ingest import is_url

    if path is None or is_url(path):
        return path
    return str(Path(path).expanduser().absolute())


def with_absolute_paths(spec: RunSpec) -> RunSpec:
    """The spec with its data, metadata and gate files as absolute paths: what a registration records, so that a
    request finds them from any working folder."""
    return replace(spec, data=absolute(spec.data), metadata=absolute(spec.metadata), gate=absolute(spec.gate))


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
    from tabtwin.evaluation.report import write_report
    from tabtwin.pipeline.ingest import write_table

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
    from tabtwin.pipeline.ingest import check_output_path

    target = check_file(check_output_path(out), overwrite, inputs=[data], written=request_digests(out))
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
    from tabtwin.pipeline.ingest import write_table

    suffix = target.name[target.name.rfind("."):]
    with atomic_file(target, suffix=suffix) as tmp:
        write_table(df, tmp)
        yield sha256(tmp)


def withdraw(path: str | Path, written: Collection[str] = ()) -> bool:
    """Remove a table an earlier request left at a request's output path, so that no stale table sits beside a
    failed report; only one tabtwin wrote (`pipeline.outputs.is_ours`, `written`: digests it recorded), never a
    user's file. True when one was removed."""
    path = Path(path).expanduser()
    if is_ours(path, written):
        path.unlink()
        return True
    return False
