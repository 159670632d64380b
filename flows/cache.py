"""The model cache: a fitted model is kept under `CACHE/<fingerprint>`, where the fingerprint hashes the training
rows, the schema, the fit parameters and the model format, so a run with the same inputs trains nothing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tabtwin.flows.spec import RunSpec
from tabtwin.generators import base, load_model, model_class
from tabtwin.generators.base import ModelError, SyntheticGenerator
from tabtwin.generators.persistence import MODEL_FILES
from tabtwin.pipeline.schema import Schema


def fingerprint(df: pd.DataFrame, schema: Schema, params: dict) -> str:
    """16 hex digits of SHA-256 over the training rows, their column names, the schema, the fit parameters and the
    model format (a new format must not reuse models saved in the old one): same inputs, same model."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    digest.update(json.dumps([list(map(str, df.columns)), schema.to_dict(), params, base.FORMAT_VERSION], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cached_model_dir(cache_root: str | Path, key: str) -> Path:
    return Path(cache_root) / key


def is_cached(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in MODEL_FILES)


@dataclass
class Fitted:
    """A run's model, in memory, with the folder it is saved in and whether it came from the cache."""

    model: SyntheticGenerator
    folder: Path
    reused: bool


def fit_or_reuse(train: pd.DataFrame, schema: Schema, spec: RunSpec, cache_root: str | Path,
                 progress=None) -> Fitted:
    """The model for these inputs: the cached one when a model with the same fingerprint is saved and loads,
    else a new one, trained and saved there (a damaged cached model is replaced, not reported).

    `progress` (optional) is the generator's progress callback (`flows.progress.TrainingProgress`), called once
    per epoch.
    """
    folder = cached_model_dir(cache_root, fingerprint(train, schema, spec.model_params()))
    if is_cached(folder):
        try:
            return Fitted(load_model(folder, device=spec.device), folder, reused=True)
        except ModelError:
            pass
    model = model_class(spec.model)(**spec.generator_params(), verbose=False)
    model.progress_callback = progress
    model.fit(train, schema).save(folder)
    return Fitted(model, folder, reused=False)
