"""The pass/fail gate: thresholds a reviewer can read, applied to the evaluation's figures.

Defaults (override any of them with a JSON file of the same keys, `GateConfig.from_file`):

| check | default | why |
| --- | --- | --- |
| min_quality | 0.80 | sdmetrics overall quality (shapes and pair trends) |
| min_pair_trends | 0.80 | correlations kept; independent columns score about 0.76 on Adult |
| min_detection_score | 0.10 | 1 - 2*(AUC - 0.5) of a boosted real-vs-synthetic classifier; independent columns score ~0.02 |
| max_dcr_share | 0.60 | share of synthetic rows closer to train than to holdout; 0.5 is ideal |
| max_close_share | 0.10 | share closer to train than 95 % of real unseen rows are; 0.05 is natural |
| max_exact_copy_excess | 0.01 | exact copies of train rows beyond the rate at which real unseen rows repeat train rows |
| max_mia_auc | 0.60 | distance-based membership inference; 0.5 is no leakage |
| max_singling_out_risk | 0.25 | upper 95 % bound of anonymeter's singling-out risk; its size correction leaves ~0.1 (bound ~0.15) on an independent sample of Adult |
| max_linkability_risk | 0.10 | upper 95 % bound of the linkability risk; an independent sample of Adult bounds at ~0.01, a copy scores ~0.3 |
| max_inference_risk | 0.50 | upper 95 % bound of each secret's inference risk; (rate - control) / (1 - control) is noisy when the control guesses well (Adult income: 0.78), so independent samples bound at up to ~0.38 (Adult, tests/test_report.py tables); a copy scores ~0.97 |
| min_utility_ratio | 0.85 | TSTR / TRTR on AUC (classification) or R2 (regression), when a target is given |
| min_contract_success | 0.95 | share of data-contract expectations the synthetic table meets |

A section that could not be judged (too few real rows, as in a request for a rare segment, or no feature to
predict from) carries a `skipped` reason; its checks are listed as not judged (`judged: false`, with the
reason) and are not failures. The anonymeter risks (Giomi et al. 2023, PoPETs) are excess risks over the
holdout (0 = an attacker learns no more about training rows than about unseen ones); the gate checks the upper
bound of each confidence interval, so a risk is passed only when it is shown small, not when it is merely
estimated small on few attacks. Exact copies are counted at any size, so that check always applies.

Each key is explained in plain words (what it measures, what good looks like, what to do when it fails) in
`evaluation.explain.EXPLANATIONS`, which the report's glossary and failed-check sentences and the command line
use; `explain.gate_key(check)` maps a check of `apply_gate`'s result (`detection_score`, `inference_risk[x]`)
to its key here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tabtwin.pipeline.errors import TabtwinError


@dataclass(frozen=True)
class GateConfig:
    min_quality: float = 0.80
    min_pair_trends: float = 0.80
    min_detection_score: float = 0.10
    max_dcr_share: float = 0.60
    max_close_share: float = 0.10
    max_exact_copy_excess: float = 0.01
    max_mia_auc: float = 0.60
    max_singling_out_risk: float = 0.25
    max_linkability_risk: float = 0.10
    max_inference_risk: float = 0.50
    min_utility_ratio: float = 0.85
    min_contract_success: float = 0.95

    @classmethod
    def from_file(cls, path: str | Path) -> GateConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TabtwinError(f"gate config not found: {path}; check the path") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TabtwinError(f"gate config {path} is not valid JSON ({err}); fix the file") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "gate config") -> GateConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known) if isinstance(data, dict) else None
        if unknown is None or unknown:
            raise TabtwinError(f"{source} has unknown keys {unknown}; known keys are {sorted(known)}")
        for key, value in data.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TabtwinError(f"{source}: {key} must be a number, got {value!r}")
        return cls(**{key: float(value) for key, value in data.items()})

    def to_dict(self) -> dict:
        return asdict(self)


def apply_gate(results: dict, config: GateConfig) -> dict:
    """{"passed", "failures", "not_judged", "checks"} for the sections present in `results`: every check is
    {section, check, value, op, threshold, passed, judged, message} (and a `reason` when not judged)."""
    checks = []
    fidelity, privacy = results.get("fidelity", {}), results.get("privacy", {})
    quality, detection = fidelity.get("quality", {}), fidelity.get("detection", {})
    if quality:
        checks.append(_at_least("fidelity", "quality", quality.get("score"), config.min_quality))
        if quality.get("column_pair_trends") is not None:
            checks.append(_at_least("fidelity", "pair_trends", quality["column_pair_trends"], config.min_pair_trends))
        # else: sdmetrics scores only pairs whose real association passes its threshold; with none, there is
        # no trend to keep and nothing to check (the detection test still sees broken dependence).
    if detection:
        if detection.get("skipped"):
            checks.append(_not_judged("fidelity", "detection_score", detection["skipped"], config.min_detection_score, ">="))
        else:
            checks.append(_at_least("fidelity", "detection_score", detection.get("score"), config.min_detection_score))
    if privacy:
        distance_checks = (
            ("dcr_share", privacy.get("dcr_share"), config.max_dcr_share),
            ("close_share", privacy.get("dcr_below_holdout_p5"), config.max_close_share),
        )
        for name, value, threshold in distance_checks:
            checks.append(_not_judged("privacy", name, privacy["skipped"], threshold, "<=") if privacy.get("skipped")
                          else _at_most("privacy", name, value, threshold))
        excess = _difference(privacy.get("exact_copy_share"), privacy.get("holdout_exact_copy_share"))
        checks.append(_at_most("privacy", "exact_copy_excess", excess, config.max_exact_copy_excess))
        checks.append(_not_judged("privacy", "mia_auc", privacy["skipped"], config.max_mia_auc, "<=") if privacy.get("skipped")
                      else _at_most("privacy", "mia_auc", privacy.get("mia_auc"), config.max_mia_auc))
        checks.extend(_attack_checks(privacy.get("attacks"), config))
    utility = results.get("utility")
    if utility:
        metric = "r2" if utility["task"] == "regression" else "auc"
        if utility.get("skipped"):
            checks.append(_not_judged("utility", f"{metric}_ratio", utility["skipped"], config.min_utility_ratio, ">="))
        else:
            checks.append(_at_least("utility", f"{metric}_ratio", utility["ratio"].get(metric), config.min_utility_ratio))
    contracts = results.get("contracts")
    if contracts:
        checks.append(_at_least("contracts", "success_rate", contracts.get("success_rate"), config.min_contract_success))
    failures = [check for check in checks if not check["passed"]]
    not_judged = [check for check in checks if not check["judged"]]
    return {"passed": not failures, "failures": failures, "not_judged": not_judged, "checks": checks}


def attack_check_name(attack: dict) -> str:
    """The gate check of one anonymeter attack: `singling_out_risk`, `linkability_risk`, `inference_risk[<secret>]`."""
    return f"{attack['attack']}_risk" + (f"[{attack['detail']}]" if attack["attack"] == "inference" else "")


def _attack_checks(attacks: dict | None, config: GateConfig) -> list[dict]:
    """One check per anonymeter attack on the upper bound of its risk's confidence interval."""
    if not attacks:
        return []
    thresholds = {"singling_out": config.max_singling_out_risk, "linkability": config.max_linkability_risk,
                  "inference": config.max_inference_risk}
    if attacks.get("skipped"):
        return [_not_judged("privacy", f"{name}_risk", attacks["skipped"], threshold, "<=")
                for name, threshold in thresholds.items()]
    checks = []
    for attack in attacks.get("attacks", []):
        checks.append(_at_most("privacy", attack_check_name(attack), attack.get("ci_high"), thresholds[attack["attack"]]))
    return checks


def _difference(a, b):
    return None if a is None else a - (b or 0.0)


def _at_least(section, name, value, threshold) -> dict:
    return _check(section, name, value, threshold, value is not None and value >= threshold, ">=")


def _at_most(section, name, value, threshold) -> dict:
    return _check(section, name, value, threshold, value is not None and value <= threshold, "<=")


def _check(section, name, value, threshold, passed, op) -> dict:
    shown = "missing" if value is None else f"{value:.3f}"
    message = f"{section}.{name} = {shown}, needs {op} {threshold:g}"
    return {
        "section": section, "check": name, "value": value, "op": op, "threshold": threshold,
        "passed": bool(passed), "judged": True, "message": message,
    }


def _not_judged(section, name, reason, threshold, op) -> dict:
    """A check its section could not run (the reason says why): listed, not a failure."""
    return {
        "section": section, "check": name, "value": None, "op": op, "threshold": threshold,
        "passed": True, "judged": False, "reason": reason, "message": f"{section}.{name} not judged: {reason}",
    }
