"""What a differentially private fit (TVAE's DP-SGD, `generators.tvae`) records about its guarantee, and the check
of that record when a model is loaded: the report and the command line print its numbers, so a privacy block
that is malformed, or that a model trained without DP claims, is refused instead of shown.
"""

from __future__ import annotations

from tabtwin.pipeline.rules import Flag, Int, Items, Num, OneOf, Text, check_fields, fail

# What the encoder and the schema learn from the rows outside DP-SGD: not covered by the guarantee (saved in the
# model's privacy block and shown with it).
NOT_COVERED = (
    "column kinds inferred from the data (schema), unless given as metadata",
    "category sets of discrete and boolean columns (every value seen, including rare ones) and null categories",
    "mixture fits of continuous and datetime columns: modes' weights, means and standard deviations, "
    "spikes (exact values holding a share of the rows) and so each column's observed range",
    "column forms: labels, dtypes, decimals, datetime text formats, special values (+inf, -inf)",
)
DP_ACCOUNTANT = "rdp"  # opacus's Renyi-DP accountant (Mironov 2017; Mironov, Talwar, Zhang 2019 for subsampling)
# Renyi orders the accountant optimises over: integers only. opacus's defaults add fractional orders 1.1-10.9,
# whose series cost ~0.7 s of pure Python per epsilon evaluation (measured: 9 of the 13 s of a 2-epoch fit on 400
# rows went to the noise search); an integer order's series has order+1 terms, and three fractional orders below 2
# serve large epsilons (where the best order is small). Any set of orders gives a valid bound; fewer orders can
# only make it marginally looser.
DP_ALPHAS = (1.25, 1.5, 1.75, *range(2, 64), 80, 96, 128, 192, 256)

# The privacy block `TVAE._train_private` saves, field by field.
_POSITIVE = Num(0.0, open_low=True)
PRIVACY_FIELDS = {
    "mechanism": Text(), "epsilon": _POSITIVE, "target_epsilon": _POSITIVE, "delta": Num(0.0, 1.0, open_low=True),
    "delta_rule": OneOf(("given", "1 / n^1.1")), "noise_multiplier": Num(0.0), "max_grad_norm": _POSITIVE,
    "sample_rate": Num(0.0, 1.0), "epochs": Int(0), "steps": Int(0), "rows": Int(0), "accountant": Text(),
    "secure_mode": Flag(), "noise_seed": Text(), "covered": Text(), "not_covered": Items(Text()),
    "conditional_sampling": Text(),
}


def default_delta(n: int) -> float:
    """delta when none is given: 1 / n^1.1, below 1/n (a mechanism with delta >= 1/n may publish a whole row)."""
    return 1.0 / max(n, 2) ** 1.1


def check_privacy(privacy, dp_epsilon) -> dict | None:
    """`privacy` (a loaded privacy block, or None) once checked: every field of `PRIVACY_FIELDS`, present exactly
    when the model was trained with `dp_epsilon`, and naming it as its target. Raises StateError."""
    if privacy is not None:
        check_fields(privacy, PRIVACY_FIELDS, "privacy")
    if (privacy is None) != (dp_epsilon is None) or (privacy is not None and privacy["target_epsilon"] != dp_epsilon):
        fail("privacy", "a privacy block belongs to a model trained with dp_epsilon, and names its target")
    return privacy
