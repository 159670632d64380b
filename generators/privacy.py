"""Differentially private training (DP-SGD, Abadi et al. 2016, "Deep Learning with Differential Privacy") for a
generator, through opacus (https://opacus.ai), and the check of the record it leaves when a model is loaded.

`private_training` turns a model's per-row loss module into a `training.Training` that `training.train` runs like
any other: batches are Poisson samples of the training rows (each row in a batch independently with rate
batch_size / n), every row's gradient of its own loss is clipped to L2 norm `dp_max_grad_norm`, Gaussian noise of
std noise_multiplier x `dp_max_grad_norm` is added to the clipped sum, and opacus's RDP accountant (Mironov 2017;
orders `DP_ALPHAS`) picks the smallest noise multiplier that keeps the whole run (`epochs` epochs) within
(`dp_epsilon`, delta), then reports the epsilon actually spent, per epoch and in the model's `privacy_`. delta
defaults to 1 / n^1.1 (below 1/n, the usual bound). Per-sample gradients come from opacus's `GradSampleModule`
hooks (`opacus.accountants.utils.get_noise_multiplier`, then `PrivacyEngine.make_private`, inside `Training.wrap`).

The noise and the Poisson batch draws come from a secret seed (OS entropy, never saved): a seed an attacker can read
would let them replay the noise, so private fits are not reproducible by default. `dp_reproducible=True` seeds them
from `random_state` instead (tests, benchmarks), and `privacy_["noise_seed"]` says which was used.

The guarantee covers the network weights; what the encoder and the schema learn from the rows is listed in
`privacy_["not_covered"]` (`NOT_COVERED`). The report and the command line print the record's numbers, so a privacy
block that is malformed, or that a model trained without DP claims, is refused on load (`check_privacy`).
"""

from __future__ import annotations

import secrets
import warnings
from contextlib import contextmanager

import torch

from tabtwin.generators.training import Group, Training
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

# The privacy block `private_training` saves, field by field.
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


def private_training(model, trainer: torch.nn.Module, groups: dict[str, Group], rows: torch.Tensor, step,
                     notes: dict) -> Training:
    """The DP-SGD `Training` of `model` on `rows` (n, width), on their device.

    `model` holds dp_epsilon, dp_delta, dp_max_grad_norm, dp_reproducible, random_state, batch_size, epochs and
    `history_`; once training ends it gets `privacy_` (`PRIVACY_FIELDS`, with the `notes` "covered" and
    "conditional_sampling"), and `_private_module` / `_private_optimizer` (opacus's GradSampleModule and
    DPOptimizer, for inspection). `trainer` is the module whose forward gives the per-row losses, `groups` the
    one optimiser over exactly its parameters, and `step(module, x, update)` one step through opacus's wrapped
    `module` on the rows `x` of a Poisson batch (figures summed over its rows, returned with their count).
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from torch.utils.data import DataLoader, TensorDataset

    n = rows.shape[0]
    delta = model.dp_delta if model.dp_delta is not None else default_delta(n)
    # DP-SGD's guarantee assumes the attacker cannot replay the noise or the batch draws (see the module docstring).
    seeded = model.dp_reproducible and model.random_state is not None
    seed = model.random_state if seeded else secrets.randbits(62)
    sampler_rng = torch.Generator().manual_seed(seed)
    noise_rng = torch.Generator(device=rows.device).manual_seed(seed + 1)
    # Indices, not rows, go through the loader: the rows stay on the device and each batch is one gather.
    loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=min(model.batch_size, n), generator=sampler_rng)
    with warnings.catch_warnings():  # opacus warns that secure_mode is off (a CSPRNG for the noise): stated in privacy_
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=DP_ACCOUNTANT)
    wrapped = {}

    @contextmanager
    def make_private(optimizers):
        ((name, optimizer),) = optimizers.items()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            noise_multiplier = get_noise_multiplier(
                target_epsilon=float(model.dp_epsilon), target_delta=float(delta), sample_rate=1 / len(loader),
                epochs=model.epochs, accountant=DP_ACCOUNTANT, alphas=DP_ALPHAS,
            )
            module, dp_optimizer, wrapped["loader"] = engine.make_private(
                module=trainer, optimizer=optimizer, data_loader=loader, noise_multiplier=noise_multiplier,
                max_grad_norm=float(model.dp_max_grad_norm), poisson_sampling=True, noise_generator=noise_rng,
            )
        wrapped["module"] = module
        model._private_module, model._private_optimizer = module, dp_optimizer
        module.train()
        # opacus's Poisson sampler draws from the loader's generator (sampler_rng: make_private passes its
        # secure_rng, None outside secure_mode, and DPDataLoader.from_data_loader then falls back to the loader's),
        # and the noise from noise_rng. The global RNG (the model's own draws, such as a VAE's reparameterisation)
        # gets the same seed source, so a secret fit does not follow random_state anywhere in the private phase.
        torch.manual_seed(seed + 2)
        try:
            with warnings.catch_warnings():
                # torch notes that opacus's backward hooks fire on outputs when the input (the rows) needs no
                # gradient: that is the intended case.
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                yield {name: dp_optimizer}
        finally:
            module._close()  # removes opacus's hooks and per-sample attributes from the shared layers
        model.privacy_ = {
            "mechanism": "DP-SGD (Abadi et al. 2016) with opacus: Poisson sampling, per-row gradient clipping, Gaussian noise",
            "epsilon": float(engine.accountant.get_epsilon(delta, alphas=DP_ALPHAS)),
            "target_epsilon": float(model.dp_epsilon),
            "delta": float(delta),
            "delta_rule": "given" if model.dp_delta is not None else "1 / n^1.1",
            "noise_multiplier": float(dp_optimizer.noise_multiplier),
            "max_grad_norm": float(model.dp_max_grad_norm),
            "sample_rate": float(1 / len(loader)),
            "epochs": len(model.history_),
            "steps": int(sum(steps for _, _, steps in engine.accountant.history)),  # (noise, rate, steps) entries
            "rows": int(n),
            "accountant": f"opacus {DP_ACCOUNTANT} (Renyi DP, Mironov 2017; orders 1.25-256)",
            "secure_mode": False,
            "noise_seed": ("random_state (dp_reproducible): anyone who knows the seed can replay the noise, so the "
                           "guarantee does not hold for a release" if seeded else
                           "secret: drawn from OS entropy and never saved, so the run is not reproducible"),
            "covered": notes["covered"],
            "not_covered": list(NOT_COVERED),
            "conditional_sampling": notes["conditional_sampling"],
        }

    return Training(
        groups=groups,
        batches=lambda: (rows[index.to(rows.device)] for (index,) in wrapped["loader"]),
        step=lambda x, update: step(wrapped["module"], x, update),
        wrap=make_private,
        epoch_figures=lambda: {"epsilon": engine.accountant.get_epsilon(delta, alphas=DP_ALPHAS)},
    )


def check_privacy(privacy, dp_epsilon) -> dict | None:
    """`privacy` (a loaded privacy block, or None) once checked: every field of `PRIVACY_FIELDS`, present exactly
    when the model was trained with `dp_epsilon`, and naming it as its target. Raises StateError."""
    if privacy is not None:
        check_fields(privacy, PRIVACY_FIELDS, "privacy")
    if (privacy is None) != (dp_epsilon is None) or (privacy is not None and privacy["target_epsilon"] != dp_epsilon):
        fail("privacy", "a privacy block belongs to a model trained with dp_epsilon, and names its target")
    return privacy
