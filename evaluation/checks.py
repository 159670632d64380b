"""The gate's checks, each declared once: where its value is read, its threshold and why, and its plain words.

`CHECKS` lists every check of the gate. The rest is derived from it: `gate.GateConfig` (one threshold per
check under its gate key, defaulting to the value declared here), `gate.apply_gate` (each check reads its
value, or the reason it is not judged, from `evaluate(...)`'s results), the plain-words explanations and the
report's glossary (`evaluation.explain`), the report's privacy sentences and the side tables beside its
figures (`report.render_html`), and the command line's table (flows/terminal.py).

A gate key is the check's name with `min_` (the value must be at least the threshold) or `max_` (at most);
its direction is read from that prefix. A check's `measures` is a template: the glossary fills its fields
with general words (`terms()`), a report row with that run's sizes (`terms(results, attack)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from tabtwin.generators import DEFAULT_MODEL


class Reading(NamedTuple):
    """One check's figure in a results dict: `value`, or `reason` when its section could not judge it; `name`
    where it is not the check's own (one check per secret column, r2_ratio for a regression target)."""

    value: float | None = None
    reason: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Check:
    """`key`: the gate file's key of the threshold; `section` and `check`: the check's place and name in the
    gate's results (`<name>[<item>]` for one check per item); `default` and `why`: the default threshold and
    why it has that value; `read`: its readings in a results dict (none: the check does not apply);
    `remedy` and `hint`: what to do when it fails (the advice of its kind, then its own); `title`,
    `measures`, `ideal`: what it measures and what a good value is; `figure`: the id of the report's figure
    that shows it; `also`: other names it goes by; `digits`: decimals the report shows; `reads_as`: the
    threshold in other units."""

    key: str
    section: str
    check: str
    default: float
    read: Callable[[dict], list[Reading]]
    remedy: str | None = None
    why: str = ""
    title: str = ""
    measures: str = ""
    ideal: str = ""
    hint: str = ""
    figure: str | None = None
    also: tuple[str, ...] = ()
    digits: int = 3
    reads_as: Callable[[float], str] | None = None

    @property
    def op(self) -> str:
        return ">=" if self.key.startswith("min_") else "<="

    @property
    def names(self) -> tuple[str, ...]:
        """The check names it goes by in the gate's results, without an item: ("inference_risk",)."""
        return (self.check.split("[")[0], *self.also)

    @property
    def good(self) -> str:
        """What a good value is, with the default threshold and why it has that value."""
        other = f", that is {self.reads_as(self.default)}" if self.reads_as else ""
        return f"{self.ideal}; the default threshold is {self.default:g}{other} ({self.why})."

    @property
    def fix(self) -> str:
        """What to do when the check fails, for any reader (`explain.fix_for` fits it to what produced the table)."""
        return " ".join(part for part in (REMEDIES.get(self.remedy), self.hint) if part)

    def describe(self, results: dict | None = None, attack: dict | None = None) -> str:
        """`measures` in general words, or with the sizes of the run in `results` (and of its `attack`)."""
        return self.measures.format_map(terms(results, attack))


UNDERFITS, MEMORISES = "underfits", "memorises"
REMEDIES = {
    UNDERFITS: (f"Train longer (more epochs), or use the flagship model ({DEFAULT_MODEL}), which models each "
                f"column given the others; a model fitted for a few epochs is the usual cause."),
    MEMORISES: ("The generator memorises training rows: train for fewer epochs, use a smaller model, train with "
                "differential privacy (tabtwin fit --model tvae --dp-epsilon 3), or drop columns that make rows "
                "unique (ids, exact timestamps, free text)."),
}


def terms(results: dict | None = None, attack: dict | None = None) -> dict[str, str]:
    """The fields of the `measures` templates: general words, or this run's sizes where `results` has them."""
    privacy = (results or {}).get("privacy") or {}
    m, n_train = privacy.get("n_compared"), privacy.get("n_train")
    attack = attack or {}
    views = attack.get("detail", "").removeprefix("views: ") if attack.get("attack") == "linkability" else ""
    return {
        "training": f"the {n_train} training rows" if n_train else "its nearest training row",
        "members": f"{m} training rows" if m else "training rows",
        "non_members": f"{m} unseen rows" if m else "unseen rows",
        "attacks": f" ({attack['n_attacks']} attacks)" if attack.get("n_attacks") is not None else "",
        "views": f" ({views})" if views else "",
        "secret": attack["detail"] if attack.get("attack") == "inference" else "secret column (one check per secret)",
    }


def attack_check_name(attack: dict) -> str:
    """The check of one anonymeter attack: `singling_out_risk`, `linkability_risk`, `inference_risk[<secret>]`."""
    return f"{attack['attack']}_risk" + (f"[{attack['detail']}]" if attack["attack"] == "inference" else "")


# ---------------------------------------------------------------------------------------------- readings


def _block(results: dict, *path: str) -> dict:
    for part in path:
        results = (results or {}).get(part) or {}
    return results


def _field(path: tuple[str, ...], field: str) -> Callable[[dict], list[Reading]]:
    """`field` of the block at `path`: no check without the block, not judged where the block was skipped."""
    def read(results: dict) -> list[Reading]:
        block = _block(results, *path)
        if not block:
            return []
        return [Reading(reason=block["skipped"])] if block.get("skipped") else [Reading(block.get(field))]
    return read


def _pair_trends(results: dict) -> list[Reading]:
    # sdmetrics scores only pairs whose real association passes its threshold; with none there is no trend to
    # keep and nothing to check (the detection test still sees broken dependence).
    trends = _block(results, "fidelity", "quality").get("column_pair_trends")
    return [] if trends is None else [Reading(trends)]


def _copy_excess(results: dict) -> list[Reading]:
    """Exact copies beyond the holdout's own repeat rate, counted at any size: never skipped."""
    privacy = _block(results, "privacy")
    if not privacy:
        return []
    copies = privacy.get("exact_copy_share")
    return [Reading(None if copies is None else copies - (privacy.get("holdout_exact_copy_share") or 0.0))]


def _attack(kind: str) -> Callable[[dict], list[Reading]]:
    """The upper end of the risk's confidence interval, one reading per attack of `kind`."""
    def read(results: dict) -> list[Reading]:
        attacks = _block(results, "privacy", "attacks")
        if not attacks:
            return []
        if attacks.get("skipped"):
            return [Reading(reason=attacks["skipped"], name=f"{kind}_risk")]
        return [Reading(a.get("ci_high"), name=attack_check_name(a)) for a in attacks.get("attacks", [])
                if a["attack"] == kind]
    return read


def _utility(results: dict) -> list[Reading]:
    utility = results.get("utility")
    if not utility:
        return []
    metric = "r2" if utility["task"] == "regression" else "auc"
    if utility.get("skipped"):
        return [Reading(reason=utility["skipped"], name=f"{metric}_ratio")]
    return [Reading(utility["ratio"].get(metric), name=f"{metric}_ratio")]


# ---------------------------------------------------------------------------------------------- the checks


CHECKS: tuple[Check, ...] = (
    Check("min_quality", "fidelity", "quality", 0.80, _field(("fidelity", "quality"), "score"), UNDERFITS,
          why="a model that keeps the column shapes but loses their pairs can still pass it; the pair trends and "
              "detection checks catch that",
          title="overall quality (sdmetrics)", ideal="Close to 1", figure="column-figures",
          measures="sdmetrics' quality score: the mean of column shapes (each synthetic column's distribution "
                   "against the real one) and pair trends (how pairs of columns move together).",
          hint="The per-column and pair figures show which columns lag."),
    Check("min_pair_trends", "fidelity", "pair_trends", 0.80, _pair_trends, UNDERFITS,
          why="columns drawn independently of each other score about 0.76 on Adult",
          title="column pair trends (sdmetrics)", ideal="Close to 1", figure="pair-figures",
          measures="How well the synthetic table keeps the correlation (numeric pairs) or contingency table (other "
                   "pairs) of each pair of columns. sdmetrics scores only pairs whose real correlation exceeds 0.5 "
                   "or whose real association (Cramér's V) exceeds 0.3; the others do not count.",
          hint="The association matrices show which pairs the model loses."),
    Check("min_detection_score", "fidelity", "detection_score", 0.10, _field(("fidelity", "detection"), "score"),
          UNDERFITS, why="independent columns score about 0.02 on Adult, the flagship about 0.94",
          title="detection (real vs synthetic classifier)", ideal="As high as possible",
          reads_as=lambda score: f"AUC {0.5 + (1 - score) / 2:g}",
          measures="A boosted classifier tries to tell synthetic rows from real ones (3-fold, out-of-fold ROC "
                   "AUC). The score is 1 - 2 x (AUC - 0.5): 1 when it cannot tell them apart, 0 when it always can.",
          hint="The columns the classifier relied on most are where the synthetic rows give themselves away: check "
               "their per-column figures and their pairs."),
    Check("max_dcr_share", "privacy", "dcr_share", 0.60, _field(("privacy",), "dcr_share"), MEMORISES,
          why="an independent sample scores about 0.5 and a verbatim copy about 1, on Adult and wa_churn",
          title="distance to closest record (DCR) share", figure="distance-figures",
          measures="The chance that a synthetic row lies closer to {training} than a real unseen (holdout) row does.",
          ideal="About 0.5, no closer to the training rows than fresh data; near 1 means copying"),
    Check("max_close_share", "privacy", "close_share", 0.10, _field(("privacy",), "dcr_below_holdout_p5"), MEMORISES,
          title="share of very close rows", ideal="About 0.05, as for fresh data", figure="distance-figures",
          measures="The share of synthetic rows closer to a training row than 95 % of real unseen rows are.",
          why="fresh data scores about 0.05 by construction: the 5th percentile is the holdout's own"),
    Check("max_exact_copy_excess", "privacy", "exact_copy_excess", 0.01, _copy_excess, MEMORISES, digits=4,
          why="the rate at which real unseen rows repeat training rows is already taken off",
          title="exact copies of training rows", ideal="0, no copying", figure="distance-figures",
          measures="The share of synthetic rows that repeat a training row in every column, less the share of real "
                   "unseen rows that do so by chance (duplicates in the data).",
          hint="Removing the exact copies alone does not fix the model."),
    Check("max_mia_auc", "privacy", "mia_auc", 0.60, _field(("privacy",), "mia_auc"), MEMORISES,
          title="membership inference", ideal="0.5, a coin toss; 1 is certain membership", figure="distance-figures",
          why="0.5 means the synthetic rows leak no membership",
          measures="How well an attacker tells {members} from {non_members} by how close the nearest synthetic row "
                   "lies (ROC AUC)."),
    Check("max_singling_out_risk", "privacy", "singling_out_risk", 0.25, _attack("singling_out"), MEMORISES,
          why="anonymeter's size correction leaves about 0.1 (bound about 0.15) on an independent sample of Adult",
          title="singling-out risk (anonymeter)", ideal="0, no more than on unseen rows", figure="attack-figures",
          measures="How much more often than on unseen rows a query built from the synthetic rows picks out exactly "
                   "one real training person{attacks}; the upper end of the 95 % interval is checked.",
          hint="Rare combinations of values are what single people out: coarsen or drop them."),
    Check("max_linkability_risk", "privacy", "linkability_risk", 0.10, _attack("linkability"), MEMORISES,
          title="linkability risk (anonymeter)", ideal="0, no more than on unseen rows", figure="attack-figures",
          why="an independent sample of Adult bounds at about 0.01, a copy scores about 0.3",
          measures="How much more often than on unseen rows an attacker who holds two halves of a person's "
                   "record{views} joins them through the synthetic rows{attacks}; the upper end of the 95 % "
                   "interval is checked."),
    Check("max_inference_risk", "privacy", "inference_risk[<secret>]", 0.50, _attack("inference"), MEMORISES,
          why="(rate - control) / (1 - control) is noisy when the control guesses well (Adult income: 0.78), so "
              "independent samples bound at up to about 0.38 (Adult, tests/test_report.py tables); a copy scores "
              "about 0.97",
          title="attribute inference risk (anonymeter)", ideal="0, no more than on unseen rows", figure="attack-figures",
          measures="How much more often than on unseen rows an attacker who knows every other column guesses a "
                   "training person's {secret} from the synthetic rows{attacks}; the upper end of the 95 % interval "
                   "is checked."),
    Check("min_utility_ratio", "utility", "auc_ratio", 0.85, _utility, UNDERFITS, also=("r2_ratio",),
          why="the flagship keeps about 0.99 on Adult (TSTR AUC 0.914 against 0.926)",
          title="utility (train on synthetic, test on real)", ideal="Close to 1",
          measures="A model trained on the synthetic rows predicts the target on real unseen rows; its AUC "
                   "(classification, check auc_ratio) or R² (regression, check r2_ratio) divided by that of the "
                   "same model trained on the real rows.",
          hint="Utility fails when the synthetic rows lose how the other columns relate to the target."),
    Check("min_contract_success", "contracts", "success_rate", 0.95, _field(("contracts",), "success_rate"),
          title="data contracts", ideal="1",
          why="a decoder that keeps to the real ranges and value sets meets nearly every expectation",
          measures="The share of the expectations learned from the real table (columns, types, ranges, value sets, "
                   "null rates, unique ids; for columns with rare values, their shapes, lengths and counts) that the "
                   "synthetic table meets.",
          hint="Read the failed expectations below: values outside the real range or unseen categories come from a "
               "decoder that does not clip, wrong types from a changed schema, extra nulls from the null model."),
)

BY_KEY: dict[str, Check] = {check.key: check for check in CHECKS}
_BY_NAME = {(check.section, name): check for check in CHECKS for name in check.names}


def check_of(check: dict | str) -> Check | None:
    """The declared check of a gate key, or of a gate result's check ({section, check}); None for neither."""
    if isinstance(check, str):
        return BY_KEY.get(check)
    return _BY_NAME.get((check["section"], check["check"].split("[")[0]))
