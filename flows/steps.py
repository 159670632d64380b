"""Plain, tested functions the flows are made of (no Prefect in here): split, fingerprint, cache, publish.

A published run is a folder `OUT/RUN_ID/` holding `synthetic.parquet` (only when the gate passed),
`report.json`, `report.html`, `expectation_suite.json` and `run.json`; it appears whole or not at all
(written to a hidden staging folder, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tabtwin.pipeline.conditions import matches
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.files import atomic_directory, write_json_atomic
from tabtwin.pipeline.schema import Schema

REGISTRATION = "registration.json"

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
    rows: int | None = field(
        default=None, metadata={"help": "synthetic rows (None: as many as the training split)", "positive": True}
    )
    target: str | None = field(default=None, metadata={"help": "column to predict for the utility check"})
    holdout_fraction: float = field(default=0.2, metadata={"help": "share of rows kept out of training"})
    seed: int = field(default=0, metadata={"help": "seed of the split, the fit, sampling and evaluation"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda"})
    table: str | None = field(default=None, metadata={"help": "table to read from a database source"})
    metadata: str | None = field(default=None, metadata={"help": "SDV single-table metadata JSON that overrides inference"})
    gate: str | None = field(default=None, metadata={"help": "JSON file of gate thresholds (see evaluation/gate.py)"})
    conditions: dict = field(default_factory=dict, metadata={"help": "COLUMN: VALUE conditions on sampling", "flow": False})

    def model_params(self) -> dict:
        return {"model": self.model, "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed}

    @classmethod
    def flow_fields(cls) -> list:
        """The fields that are parameters of the `synthesize` flow (and flags of `tabtwin run`)."""
        return [f for f in fields(cls) if f.metadata.get("flow", True)]


def generator_params(epochs: int | None, batch_size: int | None, device: str, seed: int) -> dict:
    """A generator's constructor arguments from run parameters; None leaves the model's own default."""
    params = dict(epochs=epochs, batch_size=batch_size, device=device, random_state=seed)
    return {k: v for k, v in params.items() if v is not None or k == "random_state"}


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


def fit_or_reuse(train: pd.DataFrame, schema: Schema, spec: RunSpec, cache_root: str | Path) -> tuple[Path, bool]:
    """The model folder for these inputs, training only when no model with the same fingerprint is cached."""
    from tabtwin.generators import model_class

    model_dir = cached_model_dir(cache_root, fingerprint(train, schema, spec.model_params()))
    if is_cached(model_dir):
        return model_dir, True
    params = generator_params(spec.epochs, spec.batch_size, spec.device, spec.seed)
    model_class(spec.model)(**params, verbose=False).fit(train, schema).save(model_dir)
    return model_dir, False


def sample_synthetic(model_dir: Path, rows: int, spec: RunSpec) -> pd.DataFrame:
    from tabtwin.generators import load_model

    return load_model(model_dir, device=spec.device).sample(rows, conditions=spec.conditions or None, seed=spec.seed)


def evaluate_run(train, holdout, synthetic, schema: Schema, spec: RunSpec) -> dict:
    from tabtwin.evaluation.gate import GateConfig
    from tabtwin.evaluation.report import evaluate

    gate = GateConfig.from_file(spec.gate) if spec.gate else GateConfig()
    # A target fixed by a condition has one value: there is nothing to predict, so utility is skipped.
    target = None if spec.target in spec.conditions else spec.target
    return evaluate(train, holdout, synthetic, schema, target=target, gate=gate, device=spec.device, seed=spec.seed)


def registry_name(spec: RunSpec) -> str:
    """The registry entry a passing model of this spec is registered under: <table>-<model>."""
    return f"{Path(spec.data).stem}-{spec.model}"


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
) -> Published:
    """Write the reports (always) and the synthetic table (only if the gate passed) as one atomic folder."""
    from tabtwin.evaluation.report import write_report
    from tabtwin.pipeline.ingest import write_table

    passed = bool(results["gate"]["passed"])
    with atomic_directory(Path(out_root) / run_id) as staging:
        write_report(results, staging, real, synthetic, schema)
        if passed:
            write_table(synthetic, staging / "synthetic.parquet")
        write_json_atomic({**run_info, "run_id": run_id, "gate_passed": passed, "published": passed}, staging / "run.json")
    target = Path(out_root) / run_id
    return Published(folder=target, passed=passed, synthetic=target / "synthetic.parquet" if passed else None)


def register_model(registry: str | Path, name: str, model_dir: Path, spec: RunSpec) -> Path:
    """Copy a fitted model into the registry with what is needed to evaluate later requests against real data."""
    target = Path(registry) / name
    with atomic_directory(target) as staging:
        shutil.copytree(model_dir, staging / "model")
        write_json_atomic({"spec": asdict(spec), "registered": datetime.now(timezone.utc).isoformat()}, staging / REGISTRATION)
    return target


def read_registration(path: str | Path) -> tuple[Path, RunSpec]:
    """(model folder, the spec it was trained with) from a registry entry."""
    path = Path(path)
    file = path / REGISTRATION
    if not file.is_file():
        raise TabtwinError(f"{path} is not a registered model (no {REGISTRATION}); register it with `tabtwin run`")
    try:
        spec = RunSpec(**json.loads(file.read_text(encoding="utf-8"))["spec"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TabtwinError(f"{file} is corrupt ({err}); re-register the model") from None
    return path / "model", spec
