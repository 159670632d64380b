"""Model folders: what `SyntheticGenerator.save` writes, and every check `load` makes before it trusts a value.

A folder holds `config.json` (format, model type, parameters, learned state beyond the weights, checksums),
`encoder.json` (the fitted encoder) and `weights.pt` (the networks' state_dicts, read with
`torch.load(weights_only=True)`: tensors and containers only, never a pickle of code).

Integrity: `config.json`'s "sha256" block holds the SHA-256 of every file of the folder: of `encoder.json` and
`weights.pt` as written, and of `config.json` itself as canonical JSON without that block (sorted keys, no
spaces: a file cannot hold its own digest). `load` checks all three before it reads any value; a mismatch is one
line naming the file. Checksums catch damage and casual edits, not someone who rewrites them (`seal` shows how
little that takes), so every value is validated as well, each refusal one line (`ModelError`) naming the file and
the field:

- config.json: exactly its keys, the model type, every parameter (types, ranges, upper bounds on sizes:
  `_check_params`), the learned state (`_load_extra_state`);
- encoder.json: every field of every column, against each other and the schema (`pipeline.validation`);
- weights.pt: the networks are first built on torch's meta device (shapes only, no memory); before torch reads
  the file, it must be a zip archive of stored (uncompressed) records, as torch.save writes, no larger than those
  networks' bytes plus `ARCHIVE_MARGIN` (a deflated record of zeros expands inside torch.load: 390 KB reached
  784 MB); then it must hold exactly their tensors, with the same shapes and dtypes, finite, within
  `WEIGHT_BOUNDS`, before any real module is allocated: a `hidden` of 1e9 in config.json is refused instead of
  allocating 252 GB.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import torch

from tabtwin.generators.base import FORMAT_VERSION, ModelError, SyntheticGenerator
from tabtwin.pipeline.device import resolve_device
from tabtwin.pipeline.errors import EncodingError, TabtwinError
from tabtwin.pipeline.files import atomic_directory, write_json_atomic
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.outputs import sha256
from tabtwin.pipeline.rules import StateError, read_json, shown

# What `save_model` writes in a model folder: the only names it replaces there (`pipeline.outputs`).
MODEL_FILES = ("config.json", "encoder.json", "weights.pt")
CONFIG_KEYS = ("format", "model", "params", "state", "sha256")
# Ranges some saved tensors must keep, by the last part of their name: a negative running variance would make
# BatchNorm's output NaN; the flagship's code positions are mid-CDF ranks scaled to [-1, 1].
WEIGHT_BOUNDS = {"running_var": (0.0, float("inf")), "num_batches_tracked": (0, float("inf")), "positions": (-1.0, 1.0)}
# What weights.pt holds beyond the tensors' bytes: the pickled structure (data.pkl, ~200 bytes a tensor), a few
# small records (version, byteorder, serialization id), and each record's zip headers and alignment padding.
ARCHIVE_MARGIN, ARCHIVE_MARGIN_PER_TENSOR = 2**20, 1024


# ---------------------------------------------------------------------------------------------- save


def save_model(model: SyntheticGenerator, path, overwrite: bool = False) -> Path:
    """Write the fitted `model` into folder `path` (weights.pt, encoder.json, then config.json with every file's
    checksum), replacing it only once all are written, and only a model folder (nothing in it but
    `MODEL_FILES`) or an empty one unless `overwrite` (`pipeline.outputs`; else a TabtwinError)."""
    target = Path(path)
    with atomic_directory(target, replaces=MODEL_FILES, overwrite=overwrite) as staging:
        # Clones: torch.save writes a view's whole storage, and a parameter may be a view of a larger buffer.
        weights = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in model._modules().items()}
        torch.save(weights, staging / "weights.pt")
        model.encoder_.save(staging / "encoder.json")
        config = {"format": FORMAT_VERSION, "model": model.model_name, "params": model.get_params(),
                  "state": model._extra_state()}
        write_json_atomic(_sealed(jsonable(config), staging), staging / "config.json")
    return target


def seal(path) -> None:
    """Rewrite the checksums in `path`/config.json for the folder's files as they are now.

    For tests and tools that change a model's files on purpose: it is all an editor needs to get past the
    checksums, which is why `load` validates every value as well.
    """
    path = Path(path)
    config = read_json(path / "config.json", "model file")
    config.pop("sha256", None)
    write_json_atomic(_sealed(config, path), path / "config.json")


def _sealed(config: dict, folder: Path) -> dict:
    digests = {"config.json": _json_digest(config)}
    digests.update({name: sha256(folder / name) for name in MODEL_FILES[1:]})
    return {**config, "sha256": digests}


def _json_digest(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# ---------------------------------------------------------------------------------------------- load


def load_model_dir(cls: type[SyntheticGenerator], path, device: str = "auto") -> SyntheticGenerator:
    """The model in folder `path` as a `cls` (any registered model for the base class), its networks on `device`.

    Order: the config's format, every file's checksum, the config's keys, model type and parameters, the encoder,
    the networks' shapes on the meta device against weights.pt (its archive, then its tensors), and only then the real networks and the learned
    state. Raises ModelError (one line naming the file and what to do) at the first check that fails.
    """
    path = Path(path)
    config = _read_config(path)
    _verify_checksums(path, config)
    model = _construct(cls, path, config, device)
    try:
        model.encoder_ = type(model)._load_encoder(path / "encoder.json")
    except EncodingError as err:  # names the file, the column and the field
        raise ModelError(str(err)) from None
    model.device_ = resolve_device(device)
    model._prepare_loaded()
    expected = model._meta_weights()
    _check_archive(path / "weights.pt", expected)
    weights = _read_weights(path / "weights.pt", model.device_)
    _check_weights(weights, expected, path / "weights.pt")
    model._build()
    for name, module in model._modules().items():
        module.load_state_dict(weights[name])
        module.eval()
    try:
        model._load_extra_state(config["state"])
    except TabtwinError as err:
        raise ModelError(f"{path / 'config.json'} holds invalid learned state ({err}); refit the model") from None
    return model


def _read_config(path: Path) -> dict:
    if not path.is_dir():
        raise ModelError(f"model directory not found: {path}; check the path or fit a model first")
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json; it is not a tabtwin model directory")
    try:
        config = read_json(path / "config.json", "model file")
    except EncodingError as err:
        raise ModelError(str(err)) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_VERSION:
        raise ModelError(f"{path} was written by another tabtwin model format; refit the model")
    return config


def _verify_checksums(path: Path, config: dict) -> None:
    """Every file of the folder against the SHA-256 config.json recorded for it."""
    recorded = config.get("sha256")
    if not isinstance(recorded, dict) or sorted(recorded) != sorted(MODEL_FILES):
        raise ModelError(f"{path / 'config.json'} lacks the checksums of the model's files; refit the model")
    try:
        actual = {"config.json": _json_digest({k: v for k, v in config.items() if k != "sha256"})}
    except (RecursionError, ValueError):
        actual = {"config.json": None}
    for name in MODEL_FILES[1:]:
        if not (path / name).is_file():
            raise ModelError(f"{path / name} is missing; the model directory is incomplete: copy it again or refit")
        actual[name] = sha256(path / name)
    for name in MODEL_FILES:
        if actual[name] != recorded[name]:
            raise ModelError(
                f"{path / name} does not match its checksum; the file was changed or damaged: refit the model or "
                "copy the folder again"
            )


def _construct(cls: type[SyntheticGenerator], path: Path, config: dict, device: str) -> SyntheticGenerator:
    """The model config.json describes, its parameters checked (`_check_params`, with upper bounds on sizes)."""
    where = path / "config.json"
    if sorted(config) != sorted(CONFIG_KEYS):
        raise ModelError(f"{where} must hold exactly {list(CONFIG_KEYS)}; refit the model")
    name = config["model"]
    model_cls = SyntheticGenerator.registry.get(name) if isinstance(name, str) else None
    if model_cls is None or (cls is not SyntheticGenerator and model_cls is not cls):
        raise ModelError(f"{path} holds a {shown(name)} model, not {cls.model_name or 'a known one'}")
    params, names = config["params"], model_cls._get_param_names()
    if not isinstance(params, dict) or sorted(params) != sorted(names):
        raise ModelError(f"{where} must hold exactly the parameters of {model_cls.model_name}; refit the model")
    model = model_cls(**{**params, "device": device})
    try:
        model._check_params()
    except TabtwinError as err:
        raise ModelError(f"{where} holds an invalid parameter: {err}; refit the model") from None
    if not isinstance(config["state"], dict):
        raise ModelError(f"{where}: state must be a mapping, got {shown(config['state'])}; refit the model")
    return model


def _check_archive(path: Path, expected: dict[str, dict[str, torch.Tensor]]) -> None:
    """Refuse `path` unless it is a zip archive of stored records, as torch.save writes, no larger than the
    meta-device networks `expected` need: torch.load would inflate a compressed record before any tensor could be
    checked."""
    tensors = [t for state in expected.values() for t in state.values()]
    limit = sum(t.numel() * t.element_size() for t in tensors) + ARCHIVE_MARGIN + ARCHIVE_MARGIN_PER_TENSOR * len(tensors)
    size = path.stat().st_size
    if size <= limit:  # else not even the archive's directory is read
        try:
            with zipfile.ZipFile(path) as archive:
                entries = archive.infolist()
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile):
            raise ModelError(f"{path} does not fit this model (it is not a zip archive as torch.save writes); refit "
                             "the model") from None
        if any(entry.compress_type != zipfile.ZIP_STORED or entry.compress_size != entry.file_size for entry in entries):
            raise ModelError(f"{path} holds compressed entries, which torch.save never writes; refit the model")
        size = sum(entry.file_size for entry in entries)  # what torch.load allocates for the records
    if size > limit:
        raise ModelError(f"{path} is larger than the networks that config.json and encoder.json describe ({size:,} "
                         f"bytes where they need at most {limit:,}); refit the model")


def _read_weights(path: Path, device: torch.device):
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a damaged file fails in many ways inside torch; all mean the same to a user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path} does not fit this model ({first}); refit or use the matching version") from None


def _check_weights(weights, expected: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """The tensors read from `path` against the meta-device networks: the same modules and names, shapes and
    dtypes, finite floats, and `WEIGHT_BOUNDS`. Nothing real has been allocated for the networks yet."""

    def refuse(detail: str):
        raise ModelError(f"{path} does not fit the model that config.json and encoder.json describe ({detail}); "
                         "refit the model")

    if not isinstance(weights, dict) or sorted(map(str, weights)) != sorted(expected):
        refuse(f"it holds {shown(weights)} where the model has modules {sorted(expected)}")
    for module, shapes in expected.items():
        state = weights[module]
        if not isinstance(state, dict) or sorted(map(str, state)) != sorted(shapes):
            refuse(f"{module}'s tensors are not the model's")
        for key, meta in shapes.items():
            tensor, name = state[key], f"{module}.{key}"
            if not torch.is_tensor(tensor) or tensor.shape != meta.shape or tensor.dtype != meta.dtype:
                got = f"{tuple(tensor.shape)} {tensor.dtype}" if torch.is_tensor(tensor) else shown(tensor)
                refuse(f"{name} is {got} where the parameters give {tuple(meta.shape)} {meta.dtype}")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                refuse(f"{name} holds NaN or infinite values")
            low, high = WEIGHT_BOUNDS.get(key.rsplit(".", 1)[-1], (None, None))
            if low is not None and tensor.numel() and not (low <= float(tensor.min()) and float(tensor.max()) <= high):
                refuse(f"{name} holds values outside [{low}, {high}]")


__all__ = ["MODEL_FILES", "StateError", "load_model_dir", "save_model", "seal"]
