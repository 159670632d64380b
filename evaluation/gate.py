"""The pass/fail gate: each check of evaluation/checks.py against a threshold a reviewer can read.

`GateConfig` holds one threshold per check, under the check's gate key (`min_detection_score`), defaulting to
the value `CHECKS` declares with the reason for it; a JSON file of any of those keys overrides them
(`GateConfig.from_file`). `apply_gate` compares each check's value in the evaluation's results with its
threshold.

A section that could not be judged (too few real rows, as in a request for a rare segment, or no feature to
predict from) carries a `skipped` reason; its checks are listed as not judged (`judged: false`, with the
reason) and are not failures. The anonymeter risks (Giomi et al. 2023, PoPETs) are excess risks over the
holdout (0 = an attacker learns no more about training rows than about unseen ones); the gate checks the upper
bound of each confidence interval, so a risk is passed only when it is shown small, not when it is merely
estimated small on few attacks. Exact copies are counted at any size, so that check always applies.
"""

from __future__ import annotations

import json
from dataclasses import asdict, field, fields, make_dataclass
from pathlib import Path

from tabtwin.evaluation.checks import CHECKS
from tabtwin.pipeline.errors import TabtwinError


class GateFile:
    """Reading and writing `GateConfig`'s thresholds as a JSON object of gate keys."""

    @classmethod
    def from_file(cls, path: str | Path):
        """The thresholds of a JSON file holding any of the gate keys; TabtwinError for a missing or invalid file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TabtwinError(f"gate config not found: {path}; check the path") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TabtwinError(f"gate config {path} is not valid JSON ({err}); fix the file") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "gate config"):
        """The thresholds `data` sets, the defaults for the rest; TabtwinError for an unknown key or a non-number."""
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


GateConfig = make_dataclass(
    "GateConfig", [(check.key, float, field(default=check.default)) for check in CHECKS], bases=(GateFile,),
    frozen=True, namespace={
        "__module__": __name__,
        "__doc__": "The gate's thresholds, one per check of `evaluation.checks.CHECKS`: "
                   + ", ".join(f"{check.key} ({check.op} {check.default:g})" for check in CHECKS) + ".",
    })


def apply_gate(results: dict, config: GateConfig) -> dict:
    """{"passed", "failures", "not_judged", "checks"} for the sections present in `results`: every check is
    {section, check, value, op, threshold, passed, judged, message} (and a `reason` when not judged), in the
    order of `CHECKS`."""
    checks = []
    for check in CHECKS:
        threshold = getattr(config, check.key)
        for reading in check.read(results):
            name = reading.name or check.check
            checks.append(_judged(check.section, name, reading.value, threshold, check.op) if reading.reason is None
                          else _not_judged(check.section, name, reading.reason, threshold, check.op))
    failures = [check for check in checks if not check["passed"]]
    not_judged = [check for check in checks if not check["judged"]]
    return {"passed": not failures, "failures": failures, "not_judged": not_judged, "checks": checks}


def _judged(section, name, value, threshold, op) -> dict:
    passed = value is not None and (value >= threshold if op == ">=" else value <= threshold)
    shown = "missing" if value is None else f"{value:.3f}"
    return {
        "section": section, "check": name, "value": value, "op": op, "threshold": threshold,
        "passed": bool(passed), "judged": True, "message": f"{section}.{name} = {shown}, needs {op} {threshold:g}",
    }


def _not_judged(section, name, reason, threshold, op) -> dict:
    """A check its section could not run (the reason says why): listed, not a failure."""
    return {
        "section": section, "check": name, "value": None, "op": op, "threshold": threshold,
        "passed": True, "judged": False, "reason": reason, "message": f"{section}.{name} not judged: {reason}",
    }
