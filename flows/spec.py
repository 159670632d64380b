"""A run's parameters, declared once: `RunSpec` (what a run produces) and `Places` (where it writes).

`tabtwin run`'s flags, the `synthesize` flow's parameters and the deployments' parameters are built from these
fields (their defaults, help texts and checks); tests/test_params.py proves they agree. A RunSpec checks its
opt-in options (DP, time budget) when it is made, so every caller, CLI, flow or deployment, refuses the same
things before any work, once.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from tabtwin.generators import DEFAULT_MODEL, DEFAULT_SEED, MODEL_NAMES, model_class
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.rules import as_float
from tabtwin.pipeline.sources import is_url

RUNNERS = ("local", "dask")


@dataclass
class RunSpec:
    """Everything that decides what a run produces (and so what its cached model depends on).

    This is the one declaration of a run's parameters: `tabtwin run`'s flags, the `synthesize` flow's parameters
    and the nightly deployment's parameters are built from these fields (their defaults and help texts);
    tests/test_params.py proves the three agree. A field's metadata holds its help text; "positive" marks a
    whole number that must be > 0; "flow": False marks one that only the `request` flow sets.
    """

    data: str = field(metadata={"help": "table: CSV, TSV, Parquet, .xlsx, JSON Lines, SQLite/DuckDB file, or a SQLAlchemy URL"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "generator", "choices": MODEL_NAMES})
    epochs: int | None = field(
        default=None, metadata={"help": "training epochs (None: the model's own; the flagship's is a cap, early stopping ends it)", "positive": True}
    )
    batch_size: int | None = field(
        default=None, metadata={"help": "rows per training step (None: the model's own)", "positive": True}
    )
    max_seconds: float | None = field(
        default=None, metadata={"help": "training-time budget in seconds from the start of the fit, encoding included, checked after each "
                                        "step, about each second on several workers (None: none; autoregressive only). Opt-in: where it stops training, a seeded run "
                                        "depends on the machine's speed", "positive": True}
    )
    rows: int | None = field(
        default=None, metadata={"help": "synthetic rows (None: as many as the training split)", "positive": True}
    )
    target: str | None = field(default=None, metadata={"help": "column to predict for the utility check"})
    holdout_fraction: float = field(default=0.2, metadata={"help": "share of rows kept out of training"})
    seed: int = field(default=DEFAULT_SEED, metadata={"help": "seed of the split, the fit, sampling and evaluation"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda"})
    dp_epsilon: float | None = field(
        default=None, metadata={"help": "train with DP-SGD within this epsilon (opt-in; models with DP only: tvae)", "positive": True}
    )
    dp_delta: float | None = field(
        default=None, metadata={"help": "delta of the DP guarantee, below 1 (None: 1 / training rows^1.1); needs --dp-epsilon", "positive": True}
    )
    table: str | None = field(default=None, metadata={"help": "table to read from a database source, or sheet of an .xlsx workbook"})
    metadata: str | None = field(default=None, metadata={"help": "SDV single-table metadata JSON that overrides inference"})
    gate: str | None = field(default=None, metadata={"help": "JSON file of gate thresholds (see evaluation/gate.py)"})
    conditions: dict = field(default_factory=dict, metadata={"help": "COLUMN: VALUE conditions on sampling", "flow": False})
    # One large table (a folder or glob of files, or a database table in ranges): `flows.large`.
    partition_column: str | None = field(
        default=None, metadata={"help": "read the database --table in ranges of this numeric or date column, part by part "
                                        "(a partitioned table, as a folder or glob of files is)"})
    partitions: int = field(default=8, metadata={"help": "ranges of --partition-column", "positive": True})
    runner: str = field(default="local", metadata={
        "help": "local: this process does the work; dask: on a Dask cluster, a partitioned table is trained data-parallel "
                "(one rank per worker) and sampled in parts, and several tables fan out one task per (table, model) pair",
        "choices": RUNNERS})
    dask_address: str | None = field(default=None, metadata={"help": "scheduler address (None: a LocalCluster of --dask-workers workers)"})
    dask_workers: int = field(default=2, metadata={"help": "workers of the LocalCluster", "positive": True})

    def __post_init__(self):
        # Checked once, where a run's parameters are made: a flow or a deployment's parameters never pass the
        # CLI's parser, and nothing is read or trained for a spec that would be refused later.
        if self.model not in MODEL_NAMES:
            raise TabtwinError(f"unknown model {self.model!r}; choose one of {', '.join(MODEL_NAMES)}")
        # numpy's generators take seeds in [0, 2**32): the split and the evaluation would fail only after training
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise TabtwinError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}")
        if self.runner not in RUNNERS:
            raise TabtwinError(f"unknown runner {self.runner!r}; choose local or dask")
        for name in ("partitions", "dask_workers"):  # the CLI's parser checks these; a flow's parameters skip it
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise TabtwinError(f"--{name.replace('_', '-')} must be a whole number above 0, got {getattr(self, name)!r}")
        self._options = option_params(self.model, self.dp_epsilon, self.dp_delta, self.max_seconds)

    def generator_params(self) -> dict:
        """The generator's constructor arguments: epochs and batch size where set (None leaves the model's own),
        device, seed, and the opt-in options (DP, time budget) where set."""
        params = {"epochs": self.epochs, "batch_size": self.batch_size, "device": self.device}
        return {**{k: v for k, v in params.items() if v is not None}, "random_state": self.seed, **self._options}

    def model_params(self) -> dict:
        """What the cached model depends on. DP settings and a time budget enter only when set, so that models
        cached before they existed keep their fingerprints. A budgeted model also depends on the device: how many
        epochs fit in the budget does."""
        return {"model": self.model, "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
                **self._options, **({"device": self.device} if "max_seconds" in self._options else {})}

    @classmethod
    def flow_fields(cls) -> list:
        """The fields that are parameters of the `synthesize` flow (and flags of `tabtwin run`)."""
        return [f for f in fields(cls) if f.metadata.get("flow", True)]


def option_params(model: str, dp_epsilon: float | None = None, dp_delta: float | None = None,
                  max_seconds: float | None = None) -> dict:
    """The opt-in constructor arguments of `model` (DP, time budget) from run parameters: `dp_params` and
    `budget_params` together, so every caller refuses the same things before any work."""
    return {**dp_params(model, dp_epsilon, dp_delta), **budget_params(model, max_seconds)}


def models_with(parameter: str) -> list[str]:
    """The generators that take `parameter` (e.g. "dp_epsilon", "max_seconds")."""
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
    if not (as_float(max_seconds) or 0) > 0:
        raise TabtwinError(f"--max-seconds must be a positive number of seconds, got {max_seconds}")
    return {"max_seconds": float(max_seconds)}  # 30 and 30.0: one cache key


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
    if not (as_float(epsilon) or 0) > 0:
        raise TabtwinError(f"--dp-epsilon must be a positive number, got {epsilon}; smaller is more private (1-10 is usual)")
    if delta is not None and not 0 < (as_float(delta) or 0) < 1:
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


def run_parameters() -> inspect.Signature:
    """The `synthesize` flow's signature, built from `RunSpec.flow_fields()` then the `Places` fields (keyword-only,
    with their types and defaults), so that a new run parameter is one RunSpec field: Prefect reads this signature
    for the deployment's form and for checking a run's parameters."""
    def parameters(cls, wanted):
        hints = typing.get_type_hints(cls)
        return [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                  **({} if f.default is MISSING else {"default": f.default})) for f in wanted]
    return inspect.Signature(parameters(RunSpec, RunSpec.flow_fields()) + parameters(Places, fields(Places)))


def split_parameters(parameters: dict) -> tuple[RunSpec, Places]:
    """A `synthesize` flow's parameters as the RunSpec and the Places they describe (unnamed ones at defaults)."""
    places = {f.name for f in fields(Places)}
    return (RunSpec(**{k: v for k, v in parameters.items() if k not in places}),
            Places(**{k: v for k, v in parameters.items() if k in places}))


def masked(source: str) -> str:
    """A database URL with its password replaced by ***, for anything written where others read it; a path
    unchanged."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", source) if is_url(source) else source


def source_of(spec: RunSpec) -> str:
    """The source a spec reads, as one comparable string: a local file's absolute path, else the URL (password
    masked), with the database table after a '#'."""
    if is_url(spec.data):
        data = masked(spec.data)
    else:
        data = str(Path(spec.data).expanduser().resolve())
    return f"{data}#{spec.table}" if spec.table else data


def absolute(path: str | None) -> str | None:
    """A local path made absolute (None and SQLAlchemy URLs stay as they are)."""
    if path is None or is_url(path):
        return path
    return str(Path(path).expanduser().absolute())


def with_absolute_paths(spec: RunSpec) -> RunSpec:
    """The spec with its data, metadata and gate files as absolute paths: what a registration records, so that a
    request finds them from any working folder."""
    return replace(spec, data=absolute(spec.data), metadata=absolute(spec.metadata), gate=absolute(spec.gate))


