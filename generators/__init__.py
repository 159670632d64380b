"""Generators on one small base: the flagship any-order autoregressive model (the default), a CTGAN-style
conditional GAN and a TVAE-style VAE.

The models are found, not listed (as synthcity finds its plugins): every module of this package that is not one of
`SUPPORT` holds one model, a `SyntheticGenerator` subclass whose `model_name` is the module's name. Adding a model
is adding its module and its test; the command line's choices, `flows.spec.RunSpec`, the report's advice, the
README's synopsis and the Makefile all read `MODEL_NAMES` and `DEFAULT_MODEL` from here. The names come from the
file names, so reading them imports no torch; a model's module is imported when the model is used.
"""

from __future__ import annotations

import importlib
import pkgutil

from tabtwin.pipeline.errors import TabtwinError

DEFAULT_MODEL = "autoregressive"
# Every model's default seed, and a run's (flows.spec.RunSpec): an unseeded fit repeats, whichever model it is.
DEFAULT_SEED = 0
# The modules every model shares, which are not models themselves.
SUPPORT = frozenset({"base", "conditions", "heads", "latent", "memory", "onehot", "params", "persistence", "privacy",
                     "sharded", "subnormals", "tables", "training"})
MODEL_NAMES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in SUPPORT))


def model_class(name: str):
    """The generator class of model `name` (one of `MODEL_NAMES`); a TabtwinError for any other name."""
    if name not in MODEL_NAMES:
        raise TabtwinError(f"unknown model {name!r}; use one of {', '.join(MODEL_NAMES)}")
    importlib.import_module(f"{__name__}.{name}")  # the class registers itself with the base when defined
    from tabtwin.generators.base import SyntheticGenerator

    return SyntheticGenerator.registry[name]


def load_model(path, device: str = "auto"):
    """The model saved in folder `path` (`SyntheticGenerator.load`), whichever model it is."""
    for name in MODEL_NAMES:
        model_class(name)
    from tabtwin.generators.base import SyntheticGenerator

    return SyntheticGenerator.load(path, device=device)


__all__ = ["DEFAULT_MODEL", "DEFAULT_SEED", "MODEL_NAMES", "SUPPORT", "load_model", "model_class"]
