"""Plain words for the gate's checks (declared in evaluation/checks.py), fitted to a run's figures and reader.

    fix_for(check_or_key, results)   -> the check's advice fitted to what produced the table (results["run"],
                                        results["privacy"]["dp"]): the flagship, a DP model, a request
    gate_key(check)                  -> "min_detection_score" for the gate's check "detection_score"
    explain_failure(check, results)  -> one paragraph with this run's figures
    threshold_text(check)            -> "0.04 (default 0.1)" for a threshold a gate file changed

The check names in `apply_gate`'s results (`detection_score`, `inference_risk[income]`, ...) stay as they are
in report.json; `gate_key` maps each to its threshold's key.
"""

from __future__ import annotations

from pathlib import PurePath

from tabtwin.evaluation.checks import MEMORISES, REMEDIES, UNDERFITS, attack_check_name, check_of
from tabtwin.generators import DEFAULT_MODEL as FLAGSHIP

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


def gate_key(check: dict) -> str | None:
    """The `GateConfig` field that sets `check`'s threshold ({section, check} from `apply_gate`), or None."""
    declared = check_of(check)
    return declared.key if declared else None


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
    declared = check_of(check)
    if declared is None:
        return check.get("message", "")
    if not check.get("judged", True):
        return f"{declared.title}: not judged ({check.get('reason')}); nothing to do unless more real rows exist."
    need = f"needs {'≥' if check['op'] == '>=' else '≤'} {threshold_text(check)}"
    detail = _DETAILS.get(declared.key, _plain if declared.section != "privacy" else _privacy)(check, results, need)
    return f"{detail} {fix_for(declared.key, results)}"


def fix_for(check_or_key, results: dict | None = None) -> str | None:
    """What to do when a check fails, fitted to who reads it and what produced the table: `check_or_key` is a
    gate check ({section, check}) or its gate key; `results` is `evaluate(...)`'s dict (or any dict with its
    "run" and "privacy": {"dp"}), read for `run.kind`, `run.model`, `run.registry_entry`, `run.conditions` and
    the DP block. A request gets what an analyst can do (conditions, rows, the model's owner); a DP model a
    larger or smaller epsilon, never "train with differential privacy"; the flagship a longer training, not
    itself. Without a run or DP block: the check's generic `fix`. None for an unknown check."""
    declared = check_of(check_or_key)
    if declared is None:
        return None
    results = results or {}
    run = results.get("run") or {}
    dp = (results.get("privacy") or {}).get("dp")
    if declared.remedy is None:
        return declared.fix
    if run.get("kind") == "request":
        base = _request_fix(declared.remedy == MEMORISES, run, dp)
    elif declared.remedy == UNDERFITS:
        base = _TRAIN_DP if dp else _TRAIN_FLAGSHIP if run.get("model") == FLAGSHIP else REMEDIES[UNDERFITS]
    else:
        base = _MEMORISES_DP.format(eps=_epsilon(dp)) if dp else REMEDIES[MEMORISES]
    return " ".join(part for part in (base, declared.hint) if part)


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
    """The declared default of a check's threshold (a check or its gate key); None for an unknown one."""
    declared = check_of(check_or_key)
    return declared.default if declared else None


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
    return [key for key, value in (gate_config or {}).items() if _differs(value, default_threshold(key))]


def _n(value, digits: int = 2) -> str:
    return "missing" if value is None else f"{value:.{digits}f}"


def _plain(check, results, need) -> str:
    return f"{check_of(check).title}: {_n(check['value'], 3)}, {need}."


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
    declared = check_of(check)
    secret = check["check"].partition("[")[2][:-1] or None
    attacks = ((results.get("privacy") or {}).get("attacks") or {}).get("attacks") or []
    attack = next((a for a in attacks if attack_check_name(a) == check["check"]),
                  {"attack": "inference", "detail": secret} if secret else None)
    return (f"{declared.title}{f' of {secret}' if secret else ''}: {_n(check['value'], 3)} this run, {need}. "
            f"{declared.describe(results, attack)} Good: {declared.good}")


_DETAILS = {
    "min_quality": _quality,
    "min_pair_trends": _pair_trends,
    "min_detection_score": _detection,
    "min_utility_ratio": _utility,
    "min_contract_success": _contracts,
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
