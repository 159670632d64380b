"""Tables as model inputs for the evaluation's classifiers: numbers as floats, categories with shared codes."""

from __future__ import annotations

import pandas as pd

from tabtwin.pipeline.keys import category_key
from tabtwin.pipeline.schema import Schema, parse_datetimes


# HistGradientBoosting takes at most 255 categories per feature (scikit-learn's limit); past that, the rarest
# values are grouped into one, for the classifiers only.
MAX_CATEGORIES = 255
OTHER = "(other values)"


def model_frames(
    frames: list[pd.DataFrame], schema: Schema, exclude: tuple[str, ...] = (), grouped: dict | None = None,
    reference: int | None = None,
) -> list[pd.DataFrame]:
    """The modelled columns of each frame, ready for HistGradientBoosting with categorical_features="from_dtype".

    Categories share one vocabulary across the frames (so a code means the same value in real and synthetic
    data); datetimes become int64 nanoseconds; ids and `exclude` are dropped. A column with more than
    MAX_CATEGORIES values keeps its MAX_CATEGORIES - 1 most frequent (over all frames) and groups the rest as
    one value; `grouped`, when given, receives {column: number of values grouped} so a report can say so.
    `reference` (None: all): only the first `reference` frames decide the vocabulary and the grouping; a value
    of the others outside it becomes the grouped value, or missing when nothing was grouped. Utility passes the
    real frames, so that train-on-real (TRTR) does not change with the synthetic table it is compared with.
    """
    columns = [s for s in schema.columns if s.kind != "id" and s.name not in exclude]
    # Columns collect in dicts and become frames once: adding them one by one fragments a wide frame.
    out: list[dict] = [{} for _ in frames]
    for spec in columns:
        if spec.kind in ("continuous", "datetime"):
            for target, frame in zip(out, frames):
                target[spec.name] = numeric_values(frame[spec.name], spec)
            continue
        keys = [frame[spec.name].astype(object).map(category_key) for frame in frames]
        counts = pd.concat(keys[:reference], ignore_index=True).value_counts()  # [:None]: every frame
        if len(counts) > MAX_CATEGORIES:
            kept = set(counts.index[: MAX_CATEGORIES - 1])
            keys = [k.where(k.isna() | k.isin(kept), OTHER) for k in keys]
            if grouped is not None:
                grouped[spec.name] = int(len(counts) - len(kept))
        vocabulary = sorted(set().union(*(set(k.dropna()) for k in keys[:reference])))
        for target, key, frame in zip(out, keys, frames):
            target[spec.name] = pd.Series(pd.Categorical(key, categories=vocabulary), index=frame.index)
    return [pd.DataFrame(target, index=frame.index) for target, frame in zip(out, frames)]


def numeric_values(series: pd.Series, spec) -> pd.Series:
    """Floats for a continuous or datetime column (datetimes as nanoseconds since the epoch), NaN for nulls."""
    if spec.kind == "datetime":
        stamps = series if pd.api.types.is_datetime64_any_dtype(series) else parse_datetimes(series, spec.datetime_format)
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        nanos = stamps.astype("datetime64[ns]").astype("int64").astype(float)
        return nanos.where(stamps.notna())
    return pd.to_numeric(series, errors="coerce").astype(float)
