"""The plain, tested steps the flows are made of (no Prefect in here): read and split, sample, evaluate.

The run's parameters live in `flows.spec`, the model cache in `flows.cache`, publishing in `flows.publish`, the
registry in `flows.registry`; `flows.synthesize` strings them together as Prefect tasks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tabtwin.evaluation.gate import GateConfig
from tabtwin.evaluation.report import evaluate
from tabtwin.flows.spec import RunSpec, source_of
from tabtwin.generators.base import SyntheticGenerator
from tabtwin.pipeline.conditions import matches
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.ingest import read_table
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import Schema, infer_schema, load_metadata


def split_train_holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split; the holdout is real data the generator never sees (privacy needs it)."""
    if not 0 < fraction < 1:
        raise TabtwinError(f"holdout fraction must be between 0 and 1, got {fraction}")
    holdout_rows = max(1, round(len(df) * fraction))
    if len(df) - holdout_rows < 2:
        raise TabtwinError(f"the table has {len(df)} rows: too few to keep a holdout of {fraction:.0%} and train on the rest")
    holdout = df.sample(n=holdout_rows, random_state=seed)
    return df.drop(holdout.index).reset_index(drop=True), holdout.reset_index(drop=True)


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
    df = read_table(spec.data, table=spec.table)
    schema = infer_schema(df, load_metadata(spec.metadata) if spec.metadata else None)
    train, holdout = split_train_holdout(df, spec.holdout_fraction, spec.seed)
    return train, holdout, schema


def sample_synthetic(model: SyntheticGenerator, rows: int, spec: RunSpec) -> pd.DataFrame:
    """`rows` rows from `model` under the spec's conditions and seed."""
    return model.sample(rows, conditions=spec.conditions or None, seed=spec.seed)


def model_privacy(model: SyntheticGenerator) -> dict | None:
    """The DP guarantee a model was trained under (its `privacy_`: epsilon spent, delta, what is not covered), or
    None for a model trained without DP."""
    return getattr(model, "privacy_", None)


def run_record(kind: str, spec: RunSpec, model_dir: str | Path, entry: str | Path | None, rows: int) -> dict:
    """What produced a synthetic table, for the top of its report (`evaluate(run=...)`): "run" or "request", the
    generator, its folder, the registry entry (None when there is none), the source, the conditions, the rows."""
    return {"kind": kind, "model": spec.model, "model_dir": str(Path(model_dir).absolute()),
            "registry_entry": str(Path(entry).absolute()) if entry else None, "data": source_of(spec),
            "conditions": dict(spec.conditions), "rows": rows}


def gate_of(spec: RunSpec) -> GateConfig:
    """The spec's gate thresholds (its gate file over the defaults); a TabtwinError for a missing or bad file.
    Read before any work, so a bad file is refused before training, not after."""
    return GateConfig.from_file(spec.gate) if spec.gate else GateConfig()


def evaluate_run(train, holdout, synthetic, schema: Schema, spec: RunSpec, gate: GateConfig, run: dict | None = None,
                 dp: dict | None = None) -> dict:
    """`evaluation.report.evaluate` with `gate` and the spec's target, device and seed; `run` and `dp` go to the
    report as they are (`run_record`, `model_privacy`)."""
    # A target fixed by a condition has one value: there is nothing to predict, so utility is skipped.
    target = None if spec.target in spec.conditions else spec.target
    return evaluate(train, holdout, synthetic, schema, target=target, gate=gate, device=spec.device, seed=spec.seed,
                    run=run, dp=dp)



def gate_summary(results: dict) -> dict:
    """The gate's checks (plain JSON types: the summary travels through Prefect and Dask) and failure messages."""
    gate = results["gate"]
    return {"checks": jsonable(gate["checks"]), "failures": [f["message"] for f in gate["failures"]]}
