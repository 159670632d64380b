"""Plain words for the gate's checks: what each measures, what good looks like, what to do when it fails.

One entry per `GateConfig` field (the key a gate JSON file sets the threshold with), so that the report's
glossary, its failed-check sentences and the command line all name a check the same way:

    EXPLANATIONS["min_detection_score"].fix  -> "Train longer, or use the flagship model ..." (generic)
    fix_for(check_or_key, results)           -> that advice fitted to what produced the table (results["run"],
                                                results["privacy"]["dp"]): the flagship, a DP model, a request
    gate_key(check)                          -> "min_detection_score" for the gate's check "detection_score"
    explain_failure(check, results)          -> one paragraph with this run's figures
    threshold_text(check)                    -> "0.04 (default 0.1)" for a threshold a gate file changed

The check names in `apply_gate`'s results (`detection_score`, `inference_risk[income]`, ...) stay as they are
in report.json; `gate_key` maps each to its threshold's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from tabtwin.evaluation.gate import GateConfig
from tabtwin.generators import DEFAULT_MODEL as FLAGSHIP


@dataclass(frozen=True)
class Explanation:
    """`title`: a few words; `measures`: what the figure is; `good`: what a good value looks like; `fix`: what
    to do when the check fails."""

    check: str
    section: str
    title: str
    measures: str
    good: str
    fix: str


_TRAIN_BETTER = (f"Train longer (more epochs), or use the flagship model ({FLAGSHIP}), which models each column "
                 f"given the others; a model fitted for a few epochs is the usual cause.")
_MEMORISES = ("The generator memorises training rows: train for fewer epochs, use a smaller model, train with "
              "differential privacy (tabtwin fit --model tvae --dp-epsilon 3), or drop columns that make rows "
              "unique (ids, exact timestamps, free text).")

# What else to do, by who reads the report and what produced the table (`fix_for`): the flagship cannot be
# "switched to", a DP model should not be told to drop its privacy, an analyst's request cannot retrain.
_TRAIN_FLAGSHIP = (f"The model is already the flagship ({FLAGSHIP}): train it longer (more epochs, a longer "
                   f"training budget), and check the data: id columns and free-text columns it cannot learn should be "
                   f"marked as ids or dropped.")
_TRAIN_DP = ("The model was trained with differential privacy, whose noise costs fidelity: train longer (more "
             "epochs), or retrain with a larger epsilon (--dp-epsilon), which keeps more of the data's structure "
             "at the price of a weaker privacy guarantee (a trade-off for the data's owner to make).")
_MEMORISES_DP = ("The generator keeps too much of its training rows even with differential privacy{eps}: retrain "
                 "with a smaller epsilon (--dp-epsilon) or for fewer epochs, or drop columns that make rows unique "
                 "(ids, exact timestamps, free text).")

EXPLANATIONS: dict[str, Explanation] = {
    "min_quality": Explanation(
        "quality", "fidelity", "overall quality (sdmetrics)",
        "sdmetrics' quality score: the mean of column shapes (each synthetic column's distribution against the "
        "real one) and pair trends (how pairs of columns move together).",
        "Close to 1; the default threshold is 0.8.",
        _TRAIN_BETTER + " The per-column and pair figures show which columns lag."),
    "min_pair_trends": Explanation(
        "pair_trends", "fidelity", "column pair trends (sdmetrics)",
        "How well the synthetic table keeps the correlation (numeric pairs) or contingency table (other pairs) "
        "of each pair of columns. sdmetrics scores only pairs whose real correlation exceeds 0.5 or whose real "
        "association (Cramér's V) exceeds 0.3; the others do not count.",
        "Close to 1; the default threshold is 0.8. Columns drawn independently of each other score about 0.76 on Adult.",
        _TRAIN_BETTER + " The association matrices show which pairs the model loses."),
    "min_detection_score": Explanation(
        "detection_score", "fidelity", "detection (real vs synthetic classifier)",
        "A boosted classifier tries to tell synthetic rows from real ones (3-fold, out-of-fold ROC AUC). The "
        "score is 1 - 2 x (AUC - 0.5): 1 when it cannot tell them apart, 0 when it always can.",
        "As high as possible; the default threshold is 0.1 (AUC 0.95). Independent columns score about 0.02.",
        _TRAIN_BETTER + " The columns the classifier relied on most are where the synthetic rows give themselves "
        "away: check their per-column figures and their pairs."),
    "max_dcr_share": Explanation(
        "dcr_share", "privacy", "distance to closest record (DCR) share",
        "The chance that a synthetic row lies closer to its nearest training row than a real unseen (holdout) "
        "row does.",
        "About 0.5: synthetic rows sit no closer to the training data than fresh data; near 1 means copying; "
        "the default threshold is 0.6.",
        _MEMORISES),
    "max_close_share": Explanation(
        "close_share", "privacy", "share of very close rows",
        "The share of synthetic rows closer to a training row than 95 % of real unseen rows are.",
        "About 0.05, as for fresh data; the default threshold is 0.10.",
        _MEMORISES),
    "max_exact_copy_excess": Explanation(
        "exact_copy_excess", "privacy", "exact copies of training rows",
        "The share of synthetic rows that repeat a training row in every column, less the share of real unseen "
        "rows that do so by chance (duplicates in the data).",
        "0; the default threshold is 0.01.",
        _MEMORISES + " Removing the exact copies alone does not fix the model."),
    "max_mia_auc": Explanation(
        "mia_auc", "privacy", "membership inference",
        "How well an attacker tells training rows from unseen rows by how close the nearest synthetic row lies "
        "(ROC AUC).",
        "0.5, a coin toss; the default threshold is 0.6.",
        _MEMORISES),
    "max_singling_out_risk": Explanation(
        "singling_out_risk", "privacy", "singling-out risk (anonymeter)",
        "How much more often than on unseen rows a query built from the synthetic rows picks out exactly one "
        "real training person; the upper end of the 95 % interval is checked.",
        "0 (no more than on unseen rows); the default threshold on the upper bound is 0.25.",
        _MEMORISES + " Rare combinations of values are what single people out: coarsen or drop them."),
    "max_linkability_risk": Explanation(
        "linkability_risk", "privacy", "linkability risk (anonymeter)",
        "How much more often than on unseen rows an attacker who holds two halves of a person's record joins "
        "them through the synthetic rows; the upper end of the 95 % interval is checked.",
        "0; the default threshold on the upper bound is 0.10.",
        _MEMORISES),
    "max_inference_risk": Explanation(
        "inference_risk", "privacy", "attribute inference risk (anonymeter)",
        "How much more often than on unseen rows an attacker who knows every other column of a training person "
        "guesses a secret column from the synthetic rows; one check per secret column, upper end of the 95 % "
        "interval.",
        "0; the default threshold on the upper bound is 0.50 (the estimate is noisy when the secret is easy to guess).",
        _MEMORISES),
    "min_utility_ratio": Explanation(
        "auc_ratio", "utility", "utility (train on synthetic, test on real)",
        "A model trained on the synthetic rows predicts the target on real unseen rows; its AUC "
        "(classification, check auc_ratio) or R² (regression, check r2_ratio) divided by that of the same model "
        "trained on the real rows.",
        "Close to 1; the default threshold is 0.85.",
        _TRAIN_BETTER + " Utility fails when the synthetic rows lose how the other columns relate to the target."),
    "min_contract_success": Explanation(
        "success_rate", "contracts", "data contracts",
        "The share of the expectations learned from the real table (columns, types, ranges, value sets, null "
        "rates, unique ids; for columns with rare values, their shapes, lengths and counts) that the synthetic "
        "table meets.",
        "1; the default threshold is 0.95.",
        "Read the failed expectations below: values outside the real range or unseen categories come from a "
        "decoder that does not clip, wrong types from a changed schema, extra nulls from the null model."),
}

_BY_CHECK = {(entry.section, entry.check): key for key, entry in EXPLANATIONS.items()}


def gate_key(check: dict) -> str | None:
    """The `GateConfig` field that sets `check`'s threshold ({section, check} from `apply_gate`), or None."""
    name = check["check"].split("[")[0]
    if check["section"] == "utility":
        name = "auc_ratio"  # r2_ratio for a regression target: the same threshold
    return _BY_CHECK.get((check["section"], name))


def value_text(value, threshold, digits: int = 3, kind: str = "f") -> str | None:
    """A check's value with `digits` digits (format `kind`: "f" decimals, "g" significant), more where fewer
    would read as the threshold itself: 0.6004 against <= 0.6 shows 0.6004, not 0.600 beside FAIL. None stays
    None."""
    if value is None:
        return None
    for more in range(digits, digits + 8):
        text = f"{value:.{more}{kind}}"
        if value == threshold or threshold is None or float(text) != threshold:
            return text
    return repr(value)


def explain_failure(check: dict, results: dict) -> str:
    """One paragraph in plain words for a failed (or not judged) gate check: what this run's figure says, the
    threshold, and what to do. `results` is `evaluate(...)`'s dict; figures it lacks are left out. The gate key
    is not repeated in it: callers show `gate_key(check)` beside it."""
    key = gate_key(check)
    entry = EXPLANATIONS.get(key)
    if entry is None:
        return check.get("message", "")
    if not check.get("judged", True):
        return f"{entry.title}: not judged ({check.get('reason')}); nothing to do unless more real rows exist."
    need = f"needs {'≥' if check['op'] == '>=' else '≤'} {threshold_text(check)}"
    detail = _DETAILS.get(key, _plain)(check, results, need)
    return f"{detail} {fix_for(key, results)}"


def fix_for(check_or_key, results: dict | None = None) -> str | None:
    """What to do when a check fails, fitted to who reads it and what produced the table: `check_or_key` is a
    gate check ({section, check}) or its gate key; `results` is `evaluate(...)`'s dict (or any dict with its
    "run" and "privacy": {"dp"}), read for `run.kind`, `run.model`, `run.registry_entry`, `run.conditions` and
    the DP block. A request gets what an analyst can do (conditions, rows, the model's owner); a DP model a
    larger or smaller epsilon, never "train with differential privacy"; the flagship a longer training, not
    itself. Without a run or DP block: the generic `EXPLANATIONS[key].fix`. None for an unknown check."""
    key = check_or_key if isinstance(check_or_key, str) else gate_key(check_or_key)
    entry = EXPLANATIONS.get(key)
    if entry is None:
        return None
    results = results or {}
    run = results.get("run") or {}
    dp = (results.get("privacy") or {}).get("dp")
    if entry.fix.startswith(_TRAIN_BETTER):
        base, tail = _TRAIN_BETTER, entry.fix[len(_TRAIN_BETTER):]
    elif entry.fix.startswith(_MEMORISES):
        base, tail = _MEMORISES, entry.fix[len(_MEMORISES):]
    else:
        return entry.fix
    if run.get("kind") == "request":
        return _request_fix(base is _MEMORISES, run, dp) + tail
    if base is _TRAIN_BETTER:
        if dp:
            return _TRAIN_DP + tail
        if run.get("model") == FLAGSHIP:
            return _TRAIN_FLAGSHIP + tail
        return entry.fix
    if dp:
        return _MEMORISES_DP.format(eps=_epsilon(dp)) + tail
    return entry.fix


def _epsilon(dp: dict) -> str:
    return f" (ε = {dp['epsilon']:.2f})" if isinstance(dp.get("epsilon"), (int, float)) else ""


def _request_fix(privacy: bool, run: dict, dp: dict | None) -> str:
    """An analyst's request to a registered model cannot retrain it: what the analyst can do, and whom to ask."""
    conditions = run.get("conditions")
    if isinstance(conditions, dict):
        conditions = ", ".join(f"{k} = {v}" for k, v in conditions.items())
    entry = run.get("registry_entry")
    owner = f"registry entry {PurePath(str(entry)).name}" if entry else "the registered model"
    broader = "ask for fewer or broader conditions" + (f" than {conditions}" if conditions else "")
    if privacy:
        spent = f"ε = {dp['epsilon']:.2f}" if dp and isinstance(dp.get("epsilon"), (int, float)) else "epsilon"
        retrain = (f"with a smaller epsilon (--dp-epsilon) than the {spent} it was trained with" if dp
                   else "with differential privacy (--dp-epsilon) or for fewer epochs")
        return (f"The synthetic rows of this request sit too close to real training rows, and a request cannot "
                f"retrain the model: {broader} (a narrow segment has few real rows to hide among), and ask the "
                f"owner of {owner} to retrain it {retrain}.")
    retrain = ("more epochs, or a larger epsilon with --dp-epsilon: a privacy trade-off for the owner to make" if dp
               else "more epochs, a longer training budget")
    return (f"This table answers a request to a registered model, which cannot be retrained from here: {broader} "
            f"(a narrow segment leaves the model few real rows to match), ask for more rows, or ask the owner of "
            f"{owner} to retrain it ({retrain}).")


def default_threshold(check_or_key) -> float | None:
    """The `GateConfig` default of a check's threshold (a check or its gate key); None for an unknown one."""
    key = check_or_key if isinstance(check_or_key, str) else gate_key(check_or_key)
    return GateConfig().to_dict().get(key)


def _differs(value, default) -> bool:
    return value is not None and default is not None and abs(float(value) - float(default)) > 1e-12


def threshold_text(check_or_key, threshold=None) -> str:
    """A check's threshold as "0.1", or "0.04 (default 0.1)" when a gate file set another than the default;
    `check_or_key` a gate check (its own threshold) or a gate key with `threshold`."""
    if not isinstance(check_or_key, str):
        threshold = check_or_key["threshold"]
    default = default_threshold(check_or_key)
    text = f"{threshold:g}" if isinstance(threshold, (int, float)) else str(threshold)
    return f"{text} (default {default:g})" if _differs(threshold, default) else text


def changed_thresholds(gate_config: dict | None) -> list[str]:
    """The gate keys whose threshold in `gate_config` (report.json's meta.gate_config) differs from the default."""
    defaults = GateConfig().to_dict()
    return [key for key, value in (gate_config or {}).items() if _differs(value, defaults.get(key))]


def _n(value, digits: int = 2) -> str:
    return "missing" if value is None else f"{value:.{digits}f}"


def _plain(check, results, need) -> str:
    return f"{EXPLANATIONS[gate_key(check)].title}: {_n(check['value'], 3)}, {need}."


def _quality(check, results, need) -> str:
    quality = results["fidelity"]["quality"]
    worst = sorted(((name, c["score"]) for name, c in (quality.get("columns") or {}).items() if c.get("score") is not None),
                   key=lambda item: item[1])[:3]
    columns = ", ".join(f"{name} ({score:.2f})" for name, score in worst)
    return (f"sdmetrics rates the synthetic table's likeness {_n(check['value'])}, {need}: column shapes "
            f"{_n(quality.get('column_shapes'))}, pair trends {_n(quality.get('column_pair_trends'))}."
            + (f" Columns with the lowest shape scores: {columns}." if columns else ""))


def _pair_trends(check, results, need) -> str:
    quality = results["fidelity"]["quality"]
    pairs = [p for p in quality.get("pairs") or [] if p.get("score") is not None]
    worst = sorted(pairs, key=lambda p: p["score"])[:3]
    named = ", ".join(f"{' / '.join(p['columns'])} ({p['score']:.2f})" for p in worst)
    return (f"Pairs of columns do not move together as in the real data: pair trends {_n(check['value'])}, {need}, "
            f"on the {len(pairs)} of {quality.get('pairs_total', len(quality.get('pairs') or []))} pairs sdmetrics "
            f"scores." + (f" Worst pairs: {named}." if named else ""))


def _detection(check, results, need) -> str:
    detection = results["fidelity"]["detection"]
    top = ", ".join(f"{c['column']} (shuffling it costs {c['importance']:.2f} AUC)" for c in detection.get("top_columns") or [])
    return (f"A boosted classifier tells synthetic rows from real ones at AUC {_n(detection.get('auc'))} (score "
            f"{_n(check['value'])}, {need})." + (f" The columns it relied on most: {top}." if top else ""))


def _utility(check, results, need) -> str:
    utility = results["utility"]
    metric = "r2" if utility.get("task") == "regression" else "auc"
    label = "R²" if metric == "r2" else "AUC"
    synthetic = utility.get("train_synthetic") or {}
    return (f"A model trained on the synthetic rows predicts {utility.get('target')} on real unseen rows with "
            f"{label} {_n(synthetic.get(metric))}, against "
            f"{_n((utility.get('train_real') or {}).get(metric))} when trained on the real rows (ratio "
            f"{_n(check['value'])}, {need})." + (f" The model on the synthetic rows {synthetic['note']}." if synthetic.get("note") else ""))


def _contracts(check, results, need) -> str:
    contracts = results["contracts"]
    failed = contracts.get("failed") or []
    first = failed[0].get("sentence") if failed else None
    return (f"The synthetic table breaks {contracts.get('n_failed')} of {contracts.get('n_expectations')} data-contract "
            f"expectations learned from the real table (success {_n(check['value'])}, {need})."
            + (f" First: {first}." if first else ""))


def _privacy(check, results, need) -> str:
    entry = EXPLANATIONS[gate_key(check)]
    secret = check["check"][len("inference_risk["):-1] if check["check"].startswith("inference_risk[") else None
    return (f"{entry.title}{f' of {secret}' if secret else ''}: {_n(check['value'], 3)} this run, {need}. "
            f"{entry.measures} Good: {entry.good}")


_DETAILS = {
    "min_quality": _quality,
    "min_pair_trends": _pair_trends,
    "min_detection_score": _detection,
    "min_utility_ratio": _utility,
    "min_contract_success": _contracts,
    **{key: _privacy for key, entry in EXPLANATIONS.items() if entry.section == "privacy"},
}


def describe_run(run: dict | None) -> list[tuple[str, str]]:
    """What produced the synthetic table, as (label, text) rows for the report's header; [] without `run`.
    `run`: {kind, model, model_dir, registry_entry, data, conditions, rows}, any key may be missing."""
    if not run:
        return []
    conditions = run.get("conditions")
    if isinstance(conditions, dict):
        conditions = ", ".join(f"{k} = {v}" for k, v in conditions.items()) or "none"
    elif isinstance(conditions, (list, tuple)):
        conditions = ", ".join(map(str, conditions)) or "none"
    rows = run.get("rows")
    fields = [("produced by", {"request": "a request to a registered model", "run": "a run (fit, sample, evaluate)"}
               .get(run.get("kind"), run.get("kind"))),
              ("model", run.get("model")), ("registry entry", run.get("registry_entry")),
              ("model folder", run.get("model_dir")), ("real data", run.get("data")),
              ("conditions", conditions), ("rows", f"{rows:,}" if isinstance(rows, int) else rows)]
    return [(label, str(value)) for label, value in fields if value not in (None, "")]


def explain_dp(dp: dict | None) -> str | None:
    """One sentence a reviewer can read aloud about a DP model's guarantee (`privacy_` of generators/tvae.py:
    epsilon, delta, noise_multiplier, max_grad_norm, epochs, steps, not_covered ...); None without one."""
    if not dp:
        return None
    import math

    epsilon, delta = dp.get("epsilon"), dp.get("delta")
    if epsilon is None:
        return "The model was trained with differential privacy, but its spent epsilon is not recorded."
    target = dp.get("target_epsilon")
    training = ", ".join(part for part in (
        f"noise multiplier {dp['noise_multiplier']:.3g}" if dp.get("noise_multiplier") is not None else "",
        f"gradients clipped to norm {dp['max_grad_norm']:g}" if dp.get("max_grad_norm") is not None else "",
        f"{dp['epochs']} epochs" if dp.get("epochs") is not None else "",
        f"{dp['steps']:,} steps" if dp.get("steps") is not None else "") if part)
    factor = f"e^{epsilon:.2f} ≈ {math.exp(epsilon):.3g}" if epsilon < 50 else f"e^{epsilon:.0f}"
    not_covered = dp.get("not_covered") or []
    return (f"The generator's weights were trained with differential privacy ({str(dp.get('mechanism') or 'DP-SGD').split()[0]}), "
            f"spending ε = {epsilon:.2f}" + (f" of a target of {target:g}" if target is not None else "")
            + (f" at δ = {delta:.2g}" if delta is not None else "") + (f" ({training})" if training else "")
            + f": adding or removing any one training row changes the chance of any trained model by a factor of at most "
            f"{factor}" + (", except with probability δ" if delta is not None else "") + "."
            + (f" What the encoder learned from the data is not covered ({len(not_covered)} items, listed below)."
               if not_covered else "")
            + (" The noise was drawn from a known seed (reproducible), so the guarantee does not hold for a release."
               if str(dp.get("noise_seed", "")).startswith("random_state") else ""))
