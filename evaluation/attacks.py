"""Attack-based privacy risks of a synthetic table, by anonymeter: singling out, linkability, inference."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from tabtwin.evaluation.distance import NUMERIC_KINDS, category_keys, finite_or_nan, modelled_columns
from tabtwin.evaluation.features import numeric_values
from tabtwin.evaluation.privacy import sample_rows
from tabtwin.pipeline.schema import Schema

ATTACK_ROWS = 10_000  # synthetic rows the attacker searches at most (a seeded sample past that): bounds the kNN cost
ATTACK_TARGETS = 500  # training rows attacked, and as many holdout (control) rows (anonymeter's default)
ATTACK_MIN_ROWS = 50  # training and holdout rows each below which the attacks are not judged
SINGLING_OUT_COLUMNS = 3  # predicates per multivariate singling-out query (anonymeter's default)
SINGLING_OUT_ATTEMPTS = 50  # query draws per wanted query before anonymeter stops (bounds the cost)
SENSITIVE_COLUMNS = 3  # secrets attacked by inference
CONFIDENCE = 0.95
# Column names that read as who a person is, not what they did: the linkability attacker's first view.
DEMOGRAPHIC_WORDS = (
    "age", "sex", "gender", "female", "male", "race", "ethnic", "marital", "married", "relationship", "partner",
    "spouse", "dependents", "children", "senior", "education", "country", "native", "nationality", "religion",
    "language", "birth", "born", "zip", "postcode", "postal", "city", "state", "region", "address",
)


def attack_risks(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: Schema,
    target: str | None = None,
    seed: int = 0,
) -> dict:
    """Singling-out, linkability and attribute-inference risks of the synthetic table, by anonymeter.

    Method: Giomi et al. 2023, "A Unified Framework for Quantifying Privacy Risk in Synthetic Data",
    Proceedings on Privacy Enhancing Technologies 2023(2) (anonymeter). Each attack is run against training
    rows and, as the control, against holdout rows the generator never saw; the risk is the excess success
    on training rows, (rate_train - rate_control) / (1 - rate_control), with its Wilson confidence interval at
    CONFIDENCE, so what any good model of the population reveals about unseen rows counts as no risk.

    - singling_out: multivariate, queries of SINGLING_OUT_COLUMNS predicates built from synthetic rows that
      isolate exactly one synthetic row; success when the query isolates exactly one training row.
    - linkability: the modelled columns split into two attacker views (`attacker_views`); a training row is
      linked when both halves have the same nearest synthetic row.
    - inference: for each secret (`sensitive_columns`), the attacker knows every other modelled column and
      guesses the secret from the nearest synthetic row.

    Cost is bounded by seeded samples: ATTACK_ROWS synthetic rows, ATTACK_TARGETS training and as many holdout
    rows (sizes in the result). With fewer than ATTACK_MIN_ROWS training or holdout rows, `skipped` says why.
    """
    columns = modelled_columns(schema)
    if min(len(train), len(holdout)) < ATTACK_MIN_ROWS or len(synthetic) < ATTACK_MIN_ROWS or len(columns) < 2:
        return {"skipped": (f"the attacks need at least {ATTACK_MIN_ROWS} training, holdout and synthetic rows and "
                            f"two modelled columns: got {len(train)}, {len(holdout)}, {len(synthetic)} rows and "
                            f"{len(columns)} column(s)"), "attacks": []}
    from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator

    rng = np.random.default_rng(seed)
    n_targets = min(ATTACK_TARGETS, len(train), len(holdout))
    # Whole real tables (the attacked rows are drawn from them); the synthetic table up to ATTACK_ROWS, which
    # dilutes a copy of a larger table (a copied row left out of the sample cannot be found). anonymeter draws the n_targets
    # attacked rows itself (seeded below) and corrects singling-out for the holdout's smaller size.
    ori, control = _attack_frame(train, train, schema), _attack_frame(holdout, train, schema)
    syn = _attack_frame(synthetic.iloc[sample_rows(len(synthetic), ATTACK_ROWS, rng)], train, schema)
    views = attacker_views(schema)
    secrets = sensitive_columns(train, schema, target)
    attacks = []
    # anonymeter logs a WARNING when it finds fewer singling-out queries than asked (mid-CLI output); the
    # report's n_attacks carries that figure instead.
    with _seeded_numpy(seed), _quiet_logger("anonymeter"):  # anonymeter draws its baselines from numpy's global generator
        start = time.perf_counter()
        evaluator = SinglingOutEvaluator(ori=ori, syn=syn, control=control, n_attacks=n_targets,
                                         n_cols=min(SINGLING_OUT_COLUMNS, len(columns)), seed=seed,
                                         max_attempts=SINGLING_OUT_ATTEMPTS * n_targets)
        attacks.append(_risk("singling_out", "multivariate", _evaluated(evaluator, mode="multivariate"), start))
        start = time.perf_counter()
        evaluator = LinkabilityEvaluator(ori=ori, syn=syn, control=control, aux_cols=views, n_attacks=n_targets)
        attacks.append(_risk("linkability", "views: " + " | ".join(", ".join(v) for v in views),
                             _evaluated(evaluator, n_jobs=1), start))
        for secret in secrets:
            start = time.perf_counter()
            evaluator = InferenceEvaluator(
                ori=ori, syn=syn, control=control, secret=secret, n_attacks=n_targets,
                aux_cols=[c for c in columns if c != secret], regression=_is_numeric(schema, secret),
            )
            attacks.append(_risk("inference", secret, _evaluated(evaluator, n_jobs=1), start))
    return {
        "method": "anonymeter (Giomi et al. 2023, PoPETs): excess success on training rows over holdout rows",
        "anonymeter_version": _package_version("anonymeter"),
        "confidence_level": CONFIDENCE,
        "attacks": attacks,
        "views": views,
        "secrets": secrets,
        "n_targets": n_targets,
        "n_control": n_targets,
        "n_synthetic_searched": len(syn),
    }


def attacker_views(schema: Schema) -> list[list[str]]:
    """The two column sets of the linkability attacker: columns whose names read as demographics
    (DEMOGRAPHIC_WORDS as a word of the name) against the rest; if either side would be empty, the modelled
    columns in schema order, first half against second half. Deterministic given the schema."""
    import re

    columns = modelled_columns(schema)
    words = set(DEMOGRAPHIC_WORDS)
    demographic = [c for c in columns if words & set(re.split(r"[^a-z]+", c.lower()))]
    rest = [c for c in columns if c not in demographic]
    if not demographic or not rest:
        half = (len(columns) + 1) // 2
        demographic, rest = columns[:half], columns[half:]
    return [demographic, rest]


def sensitive_columns(train: pd.DataFrame, schema: Schema, target: str | None = None) -> list[str]:
    """The secrets inference attacks: the target when given, then categorical (discrete, boolean) columns by
    the Shannon entropy of their training values, highest first (the most there is to learn; ties in schema
    order), up to SENSITIVE_COLUMNS; a table with no categorical column uses its numeric columns in schema
    order."""
    columns = modelled_columns(schema)
    chosen = [target] if target in columns else []
    kinds = {spec.name: spec.kind for spec in schema.columns}
    categorical = [c for c in columns if kinds[c] not in NUMERIC_KINDS and c not in chosen]

    def entropy(column: str) -> float:
        shares = pd.Series(category_keys(train[column])).value_counts(normalize=True).to_numpy()
        return float(-(shares * np.log(shares)).sum())

    ranked = sorted(categorical, key=lambda c: -entropy(c)) or [c for c in columns if c not in chosen]
    return (chosen + ranked)[:SENSITIVE_COLUMNS]


def _attack_frame(frame: pd.DataFrame, train: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The modelled columns in types anonymeter reads alike across tables: numerics (datetimes as
    nanoseconds) as float with nulls at the training median, categories as their text keys (null its own)."""
    out = {}
    for spec in schema.columns:
        if spec.kind == "id":
            continue
        if spec.kind in NUMERIC_KINDS:
            values = finite_or_nan(numeric_values(frame[spec.name], spec))
            reference = finite_or_nan(numeric_values(train[spec.name], spec))
            fill = float(np.nanmedian(reference)) if (~np.isnan(reference)).any() else 0.0
            out[spec.name] = np.nan_to_num(values, nan=fill)
        else:
            out[spec.name] = category_keys(frame[spec.name]).astype(str)
    return pd.DataFrame(out)


def _is_numeric(schema: Schema, column: str) -> bool:
    return next(spec.kind for spec in schema.columns if spec.name == column) in NUMERIC_KINDS


def _evaluated(evaluator, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anonymeter warns when few queries succeed; the CI says so
        return evaluator.evaluate(**kwargs)


def _risk(attack: str, detail: str, evaluator, start: float) -> dict:
    import warnings

    # anonymeter warns (on stderr, mid-CLI output) when the attack does no better than its random baseline; the
    # report carries that as a note instead.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        risk = evaluator.risk(confidence_level=CONFIDENCE)
        results = evaluator.results(confidence_level=CONFIDENCE)
    low, high = (float(v) for v in risk.ci)
    out = {
        "attack": attack, "detail": detail, "risk": float(risk.value), "ci_low": low, "ci_high": high,
        "attack_rate": float(results.attack_rate.value), "control_rate": float(results.control_rate.value),
        "baseline_rate": float(results.baseline_rate.value), "n_attacks": int(results.n_attacks_ori),
        "seconds": round(time.perf_counter() - start, 3),
    }
    notes = list(dict.fromkeys(str(w.message).split(".")[0] for w in caught))
    if notes:
        out["note"] = "; ".join(notes)
    return out


class _quiet_logger:
    """The named logger raised to ERROR inside the block, and put back after it."""

    def __init__(self, name: str):
        import logging

        self.logger = logging.getLogger(name)

    def __enter__(self):
        import logging

        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


class _seeded_numpy:
    """numpy's global generator seeded inside the block and restored after it."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.state = np.random.get_state()
        np.random.seed(self.seed)

    def __exit__(self, *exc):
        np.random.set_state(self.state)


def _package_version(package: str) -> str | None:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:
        return None
