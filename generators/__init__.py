"""Generators on one small base: the flagship any-order autoregressive model, a CTGAN-style conditional GAN and
a TVAE-style VAE."""

from tabtwin.generators.base import ModelError, SyntheticGenerator


def model_class(name: str) -> type[SyntheticGenerator]:
    """The generator class registered under `name` ("autoregressive", "ctgan" or "tvae")."""
    import tabtwin.generators.autoregressive  # noqa: F401  (registers itself)
    import tabtwin.generators.ctgan  # noqa: F401
    import tabtwin.generators.tvae  # noqa: F401

    try:
        return SyntheticGenerator.registry[name]
    except KeyError:
        from tabtwin.pipeline.errors import TabtwinError

        known = sorted(SyntheticGenerator.registry)
        raise TabtwinError(f"unknown model {name!r}; use one of {known}") from None


def load_model(path, device: str = "auto") -> SyntheticGenerator:
    model_class("ctgan")  # make sure every model type is registered before reading the directory
    return SyntheticGenerator.load(path, device=device)


__all__ = ["ModelError", "SyntheticGenerator", "load_model", "model_class"]
