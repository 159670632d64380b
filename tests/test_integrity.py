"""Model folders are checksummed and every loaded value is validated (issue 20, item 5); CTGAN and TVAE cap a
column's categories and refuse, before training, a table that cannot fit in memory (item 8).

Each tampering case edits a copy of a tiny saved model the way the issue did, then writes fresh checksums
(`seal`, as anyone able to edit the files could): validation alone must refuse it, in one line naming the file
and the field, and `tabtwin sample` must exit 2 with that line and no traceback.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

import tabtwin.generators.memory as memory
from tabtwin.flows.cli import main
from tabtwin.generators import load_model, model_class
from tabtwin.generators.autoregressive import AutoregressiveGenerator
from tabtwin.generators.base import FORMAT_VERSION, ModelError
from tabtwin.generators.ctgan import CTGAN
from tabtwin.generators.persistence import MODEL_FILES, seal
from tabtwin.generators.tvae import TVAE
from tabtwin.pipeline.encoding import TableEncoder
from tabtwin.pipeline.errors import EncodingError, TabtwinError
from tabtwin.pipeline.sample_data import make_sample_table
from tabtwin.pipeline.schema import infer_schema

TINY = {
    "tvae": dict(epochs=1, embedding_dim=8, compress_dims=(16,), decompress_dims=(16,), batch_size=50),
    "ctgan": dict(epochs=1, embedding_dim=8, generator_dim=(16,), discriminator_dim=(16,), batch_size=50),
    "autoregressive": dict(epochs=1, hidden=16, batch_size=64),
}
MIXTURE_MODELS = ("tvae", "ctgan")  # TableEncoder: mixtures of continuous columns, one-hot categories


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny fitted model of each generator on the sample table (every column kind, nulls), saved once."""
    root = tmp_path_factory.mktemp("models")
    table = make_sample_table(200, seed=7)
    for name, params in TINY.items():
        model_class(name)(**params, random_state=0, verbose=False, device="cpu").fit(table).save(root / name)
    return root


def copy(saved, name, tmp_path):
    return shutil.copytree(saved / name, tmp_path / name)


def edit(path, change):
    """Apply `change` (a function changing the parsed data in place) to the JSON in `path`."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def state(data, name):
    """The state of column `name` in an encoder's JSON (a categorical column's `base` holds its name)."""
    return next(c for c in data["columns"] if c.get("name", c.get("base", {}).get("name")) == name)


def form(data, name):
    return next(f for f in data["forms"]["columns"] if f["name"] == name)


def refusal(folder) -> str:
    """The one-line ModelError that loading `folder` raises."""
    with pytest.raises(ModelError) as info:
        load_model(folder, device="cpu")
    message = str(info.value)
    assert "\n" not in message
    return message


def sample_exits_2(folder, tmp_path, capsys) -> str:
    """`tabtwin sample` on `folder`: exit 2, one line on stderr, no traceback; returns the line."""
    capsys.readouterr()
    assert main(["sample", str(folder), "--rows", "5", "--out", str(tmp_path / "rows.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------- cases

DEEP = "[" * 100_000 + "1" + "]" * 100_000
ALL = tuple(TINY)


def _swap_range(data):
    column = state(data, "amount")
    column["minimum"], column["maximum"] = column["maximum"], column["minimum"]


def _datetime_far(data):
    state(data, "joined")["maximum"] = 1e300


# (id, models, file, change of the parsed JSON, words the refusal must hold)
ENCODER_CASES = [
    ("decimals -3", ALL, lambda d: form(d, "amount").update(decimals=-3), "decimals"),
    ("decimals 1e6", ALL, lambda d: form(d, "amount").update(decimals=1e6), "decimals"),
    ("decimals 10**6", ALL, lambda d: form(d, "amount").update(decimals=10**6), "decimals"),
    ("decimals on an integer column", ALL, lambda d: form(d, "count").update(decimals=2), "decimals"),
    ("nested category", ALL, lambda d: state(d, "colour")["base"].update(categories=[[[["red"]]], "blue", "green"]),
     "categories"),
    ("truncated categories", ALL, lambda d: state(d, "colour")["base"]["categories"].pop(), "kept and rare"),
    ("repeated category", ALL, lambda d: state(d, "colour")["base"].update(categories=["red", "red", "blue"]),
     "categories"),
    ("kept index out of range", ALL, lambda d: state(d, "colour").update(kept=[0, 1, 7]), "kept and rare"),
    ("label that is not the column", ALL, lambda d: form(d, "amount").update(label="other"), "label"),
    ("unknown dtype", ALL, lambda d: form(d, "amount").update(dtype="float1024"), "dtype"),
    ("column kind changed", ALL, lambda d: d["schema"]["columns"][1].update(kind="discrete"), "state"),
    ("extra field", ALL, lambda d: state(d, "amount").update(evil=1), "unknown"),
    ("unknown time zone", ALL, lambda d: state(d, "joined").update(timezone="Mars/Olympus"), "time zone"),
    ("id width", ALL, lambda d: state(d, "customer_id").update(width=10**6), "width"),
    ("fraction digits", ALL, lambda d: form(d, "born").update(fraction_digits=99), "fraction_digits"),
    ("schema column twice", ALL, lambda d: d["schema"]["columns"][2].update(name="amount"), "twice"),
    ("swapped min and max", MIXTURE_MODELS, _swap_range, "minimum"),
    ("truncated means", MIXTURE_MODELS, lambda d: state(d, "amount")["means"].pop(), "same length"),
    ("weights not summing to 1", MIXTURE_MODELS, lambda d: state(d, "amount")["weights"].__setitem__(0, 0.9),
     "sum to 1"),
    ("negative std", MIXTURE_MODELS, lambda d: state(d, "amount")["stds"].__setitem__(0, -1.0), "stds"),
    ("too many modes", MIXTURE_MODELS, lambda d: state(d, "score").update(
        **{k: state(d, "score")[k] * 50 for k in ("means", "weights", "stds", "scales")}), "same length"),
    ("datetime beyond int64 nanoseconds", MIXTURE_MODELS, _datetime_far, "datetimes"),
    ("max_modes", MIXTURE_MODELS, lambda d: d["params"].update(max_modes=10**9), "max_modes"),
    ("points out of order", ("autoregressive",), lambda d: state(d, "count")["points"].reverse(), "ascending"),
    ("a bin's edges truncated", ("autoregressive",), lambda d: state(d, "amount")["edges"][0].pop(), "edges[0]"),
    ("more bins than n_bins", ("autoregressive",), lambda d: d["params"].update(n_bins=2), "n_bins"),
    ("specials that the form lacks", ("autoregressive",), lambda d: state(d, "amount").update(specials=["inf"]),
     "specials"),
    # Integers too large for a float: out of range, not an OverflowError.
    ("minimum 10**400", MIXTURE_MODELS, lambda d: state(d, "amount").update(minimum=10**400), "minimum"),
    ("a mean of 10**400", MIXTURE_MODELS, lambda d: state(d, "amount")["means"].__setitem__(0, -10**400), "means"),
    ("weight_threshold 10**400", MIXTURE_MODELS, lambda d: d["params"].update(weight_threshold=10**400),
     "weight_threshold"),
    ("a point of 10**400", ("autoregressive",), lambda d: state(d, "count")["points"].__setitem__(-1, 10**400),
     "points"),
    ("spike_share 10**400", ("autoregressive",), lambda d: d["params"].update(spike_share=10**400), "spike_share"),
    ("a category of 10**400", ALL, lambda d: state(d, "grade")["base"]["categories"].__setitem__(0, 10**400),
     "categories"),
    ("a label of 10**400", ALL, lambda d: form(d, "amount").update(label=10**400), "label"),
    # Numbers beyond an integer column's dtype: numpy casts them to -2**63 or raises OverflowError.
    ("a category beyond int64", ALL, lambda d: state(d, "grade")["base"]["categories"].__setitem__(0, 2**63),
     "fit the column's dtype int64"),
    ("an integer column's maximum beyond int64", MIXTURE_MODELS, lambda d: state(d, "count").update(maximum=1e300),
     "fit the column's dtype int64"),
    ("a point beyond int64", ("autoregressive",), lambda d: state(d, "count")["points"].__setitem__(0, -1e300),
     "fit the column's dtype int64"),
]
CONFIG_CASES = [
    ("hidden 1e9", ("autoregressive",), lambda c: c["params"].update(hidden=10**9), "hidden"),
    ("hidden 1e9 as a float", ("autoregressive",), lambda c: c["params"].update(hidden=1e9), "hidden"),
    ("compress_dims 1e9", ("tvae",), lambda c: c["params"].update(compress_dims=[10**9]), "compress_dims"),
    ("generator_dim 1e9", ("ctgan",), lambda c: c["params"].update(generator_dim=[10**9]), "generator_dim"),
    ("a thousand layers", ("tvae",), lambda c: c["params"].update(decompress_dims=[8] * 1000), "decompress_dims"),
    ("embedding_dim", ("ctgan",), lambda c: c["params"].update(embedding_dim=10**7), "embedding_dim"),
    ("unknown parameter", ALL, lambda c: c["params"].update(evil=1), "parameters"),
    ("random_state as text", ALL, lambda c: c["params"].update(random_state="x"), "random_state"),
    ("verbose as text", ALL, lambda c: c["params"].update(verbose="yes"), "verbose"),
    ("unknown state", ALL, lambda c: c["state"].update(evil=1), "state"),
    ("unknown top-level key", ALL, lambda c: c.update(evil=1), "exactly"),
    ("negative category count", ("ctgan",), lambda c: c["state"]["category_counts"][0].__setitem__(0, -5.0),
     "category_counts"),
    ("a count beyond float32", ("ctgan",), lambda c: c["state"]["category_counts"][0].__setitem__(0, 1e300),
     "category_counts"),
    ("fractional category count", ("ctgan",), lambda c: c["state"]["category_counts"][0].__setitem__(0, 0.5),
     "category_counts"),
    ("count in the padding", ("ctgan",), lambda c: c["state"]["category_counts"][0].__setitem__(-1, 7.0),
     "category_counts"),
    ("privacy claimed by a plain model", ("tvae",), lambda c: c["state"].update(privacy={"epsilon": 1.0}), "privacy"),
    ("latent position outside the categories", ("tvae",),
     lambda c: c["state"]["latent_by_value"]["position"].__setitem__(0, 0), "position"),
    ("latent variance 0", ("tvae",), lambda c: c["state"]["latent_by_value"]["var"][0].__setitem__(0, 0.0), "var"),
    ("latent mean 1e300", ("tvae",), lambda c: c["state"]["latent_by_value"]["mean"][0].__setitem__(0, 1e300), "mean"),
    ("latent mean 10**400", ("tvae",), lambda c: c["state"]["latent_by_value"]["mean"][0].__setitem__(0, 10**400),
     "mean"),
    ("a count of 10**400", ("ctgan",), lambda c: c["state"]["category_counts"][0].__setitem__(0, 10**400),
     "category_counts"),
]


def _cases(cases, file):
    return [pytest.param(model, file, change, words, id=f"{model}-{name}")
            for name, models, change, words in cases for model in models]


@pytest.mark.parametrize("model, file, change, words", _cases(ENCODER_CASES, "encoder.json") + _cases(CONFIG_CASES, "config.json"))
def test_a_tampered_value_is_refused_in_one_line_even_with_fresh_checksums(saved, tmp_path, model, file, change, words):
    folder = copy(saved, model, tmp_path)
    edit(folder / file, change)
    assert "does not match its checksum" in refusal(folder) and file in refusal(folder)  # the checksum first
    seal(folder)
    message = refusal(folder)
    assert file in message and words in message, message


@pytest.mark.parametrize("model", TINY)
def test_deeply_nested_json_is_refused_not_a_recursion_error(saved, tmp_path, model):
    folder = copy(saved, model, tmp_path)
    text = (folder / "encoder.json").read_text()
    (folder / "encoder.json").write_text(text.replace('"label": "amount"', f'"label": {DEEP}', 1))
    seal(folder)
    assert "nested too deeply" in refusal(folder)
    (folder / "config.json").write_text((folder / "config.json").read_text().replace('"state": {', f'"evil": {DEEP}, "state": {{', 1))
    assert "config.json" in refusal(folder) and "nested too deeply" in refusal(folder)


@pytest.mark.parametrize("model", MIXTURE_MODELS)
def test_nan_tokens_in_an_encoder_file_are_refused(saved, tmp_path, model):
    folder = copy(saved, model, tmp_path)
    text = (folder / "encoder.json").read_text()
    minimum = json.dumps(state(json.loads(text), "amount")["minimum"])
    (folder / "encoder.json").write_text(text.replace(f'"minimum": {minimum}', '"minimum": NaN', 1))
    seal(folder)
    assert "not valid JSON" in refusal(folder)


@pytest.mark.parametrize("model", TINY)
@pytest.mark.parametrize("file", MODEL_FILES)
def test_a_changed_byte_in_any_file_fails_its_checksum(saved, tmp_path, capsys, model, file):
    folder = copy(saved, model, tmp_path)
    data = bytearray((folder / file).read_bytes())
    if file.endswith(".json"):  # a digit of a value, so that the JSON stays valid and only the checksum can tell
        start = data.find(b'"params"') if file == "config.json" else len(data) // 2
        at = next(i for i in range(start, len(data)) if chr(data[i]).isdigit())
        data[at] = ord("9") if data[at] != ord("9") else ord("8")
    else:
        data[len(data) // 2] ^= 0xFF
    (folder / file).write_bytes(bytes(data))
    message = refusal(folder)
    assert f"{file} does not match its checksum" in message and "refit" in message
    assert "does not match its checksum" in sample_exits_2(folder, tmp_path, capsys)


@pytest.mark.parametrize("model", TINY)
def test_a_missing_file_an_older_format_and_missing_checksums_are_refused(saved, tmp_path, model):
    folder = copy(saved, model, tmp_path)
    (folder / "encoder.json").unlink()
    assert "encoder.json is missing" in refusal(folder)
    folder = copy(saved, model, tmp_path / "older")
    edit(folder / "config.json", lambda c: c.update(format=FORMAT_VERSION - 1))
    assert "another tabtwin model format" in refusal(folder)
    edit(folder / "config.json", lambda c: (c.update(format=FORMAT_VERSION), c.pop("sha256")))
    assert "lacks the checksums" in refusal(folder)


@pytest.mark.parametrize("model", TINY)
def test_tampered_weights_are_refused_before_use(saved, tmp_path, model):
    folder = copy(saved, model, tmp_path)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    module, tensors = next(iter(weights.items()))
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel())
    tensors[key] = tensors[key].clone().fill_(float("nan"))
    torch.save(weights, folder / "weights.pt")
    seal(folder)
    assert "NaN" in refusal(folder) and "weights.pt" in refusal(folder)
    tensors[key] = tensors[key].nan_to_num()
    tensors["evil"] = torch.zeros(3)
    torch.save(weights, folder / "weights.pt")
    seal(folder)
    assert "not the model's" in refusal(folder)
    buffer = io.BytesIO()
    torch.save([1, 2, 3], buffer)
    (folder / "weights.pt").write_bytes(buffer.getvalue())
    seal(folder)
    assert "weights.pt does not fit" in refusal(folder)


@pytest.mark.parametrize("model, key, value", [("autoregressive", "positions", 3.0), ("ctgan", "running_var", -1.0)])
def test_weights_outside_their_range_are_refused(saved, tmp_path, model, key, value):
    folder = copy(saved, model, tmp_path)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    name = next(k for tensors in weights.values() for k in tensors if k.endswith(key))
    next(t for t in weights.values() if name in t)[name].fill_(value)
    torch.save(weights, folder / "weights.pt")
    seal(folder)
    assert "outside" in refusal(folder)


@pytest.mark.parametrize("model", TINY)
def test_weights_that_overflow_while_sampling_are_one_line_not_a_traceback(saved, tmp_path, capsys, model):
    """Finite weights of the right shapes load, yet can overflow float32; sampling says so instead of failing
    inside torch.multinomial or decoding NaN to silent nulls."""
    folder = copy(saved, model, tmp_path)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    for tensors in weights.values():
        for key, tensor in tensors.items():
            if tensor.is_floating_point() and not key.endswith(("running_var", "positions")):
                tensor.fill_(3e38)
    torch.save(weights, folder / "weights.pt")
    seal(folder)
    loaded = load_model(folder, device="cpu")
    with pytest.raises(TabtwinError, match="NaN or infinite values while sampling") as info:
        loaded.sample(20, seed=0)
    assert "\n" not in str(info.value)
    assert "refit" in sample_exits_2(folder, tmp_path, capsys)


@pytest.mark.parametrize("model, params", [("autoregressive", dict(hidden=60_000)), ("tvae", dict(embedding_dim=60_000)),
                                           ("ctgan", dict(generator_dim=[60_000]))])
def test_networks_are_shaped_on_the_meta_device_before_any_is_allocated(saved, tmp_path, monkeypatch, model, params):
    """Sizes within the parameters' bounds that do not fit weights.pt: refused after a build on the meta device
    only (the issue's hidden=1e9 tried to allocate 252 GB)."""
    cls = model_class(model)
    builds = []
    original = cls._build
    monkeypatch.setattr(cls, "_build", lambda self: (builds.append(self.device_.type), original(self))[1])
    folder = copy(saved, model, tmp_path)
    edit(folder / "config.json", lambda c: c["params"].update(params))
    seal(folder)
    assert "weights.pt does not fit" in refusal(folder)
    assert builds == ["meta"]
    builds.clear()
    load_model(copy(saved, model, tmp_path / "sound"), device="cpu").sample(5, seed=0)
    assert builds == ["meta", "cpu"]


@pytest.mark.parametrize("model, file, change", [
    ("autoregressive", "config.json", lambda c: c["params"].update(hidden=10**9)),
    ("tvae", "encoder.json", _swap_range),
    ("ctgan", "encoder.json", lambda d: form(d, "amount").update(decimals=-3)),
])
def test_tabtwin_sample_refuses_a_resealed_tampered_model_in_one_line(saved, tmp_path, capsys, model, file, change):
    folder = copy(saved, model, tmp_path)
    edit(folder / file, change)
    seal(folder)
    assert file in sample_exits_2(folder, tmp_path, capsys)
    assert not (tmp_path / "rows.csv").exists()


@pytest.mark.parametrize("model", TINY)
def test_a_sound_model_still_loads_and_samples_as_saved(saved, tmp_path, model):
    folder = copy(saved, model, tmp_path)
    seal(folder)  # fresh checksums of unchanged files change nothing
    first = load_model(folder, device="cpu").sample(50, seed=3)
    pd.testing.assert_frame_equal(first, load_model(saved / model, device="cpu").sample(50, seed=3))


def _parameters(model):
    return [pytest.param(model, name, id=f"{model}-{name}") for name in model_class(model)().get_params()
            if name != "device"]  # load takes the device from its caller


@pytest.mark.parametrize("model, name", [p for model in TINY for p in _parameters(model)])
def test_a_parameter_too_large_for_a_float_is_refused_in_one_line(saved, tmp_path, model, name):
    """10**400 fits no float (np.isfinite raised TypeError, math.isfinite OverflowError): out of range."""
    folder = copy(saved, model, tmp_path)
    edit(folder / "config.json", lambda c: c["params"].update({name: 10**400}))
    seal(folder)
    message = refusal(folder)
    assert "config.json" in message and name in message, message


@pytest.mark.parametrize("model, name", [("tvae", "lr"), ("ctgan", "generator_lr"), ("autoregressive", "learning_rate"),
                                         ("autoregressive", "decay")])
def test_a_huge_integer_parameter_loads_or_is_refused_in_one_line(saved, tmp_path, capsys, model, name):
    """2**70 is a float (1.2e21): a rate without an upper bound takes it like any large float, a bounded one
    refuses it; neither ends in a traceback."""
    folder = copy(saved, model, tmp_path)
    edit(folder / "config.json", lambda c: c["params"].update({name: 2**70}))
    seal(folder)
    if name == "decay":
        assert name in refusal(folder) and name in sample_exits_2(folder, tmp_path, capsys)
    else:
        assert len(load_model(folder, device="cpu").sample(5, seed=0)) == 5


def test_an_encoder_minimum_too_large_for_a_float_is_one_line_from_tabtwin_sample(saved, tmp_path, capsys):
    folder = copy(saved, "tvae", tmp_path)
    edit(folder / "encoder.json", lambda d: state(d, "amount").update(minimum=10**400))
    seal(folder)
    assert "minimum" in sample_exits_2(folder, tmp_path, capsys)


def test_numbers_are_checked_one_way_for_files_and_parameters():
    from tabtwin.generators.params import EPOCHS, POSITIVE, check
    from tabtwin.pipeline.rules import Int, Num, is_number

    assert is_number(1) and is_number(2.5) and is_number(np.float32(1)) and is_number(10**400)
    assert not (is_number(True) or is_number(np.bool_(True)) or is_number("1") or is_number(None))
    assert Num().check(10**400) and Num().check(float("nan")) and Num(0.0, 1.0).check(2**70)
    assert Num().check(1e308) is None and Num().check(-(10**300)) is None and Num(0.0).check(np.float64(3)) is None
    assert Int(0, 9).check(np.int64(3)) is None and Int(0, 9).check(10**400) and Int().check(3.0)
    check("lr", 2**70, POSITIVE)
    check("epochs", np.int64(3), EPOCHS)
    for rule, value in [(POSITIVE, 10**400), (POSITIVE, np.bool_(True)), (Int(1), 2**70), (Int(1), 1.0)]:
        with pytest.raises(TabtwinError, match="^rate must be"):
            check("rate", value, rule)


# ---------------------------------------------------------------------------------------------- weights.pt as an archive


def rezipped(path, compression=zipfile.ZIP_STORED, extra: dict | None = None):
    """Rewrite the zip archive at `path` with its entries `compression`-compressed and `extra` ({name: bytes})
    added beside them."""
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    prefix = entries[0][0].split("/")[0]
    with zipfile.ZipFile(path, "w", compression=compression) as target:
        for name, data in entries + [(f"{prefix}/{k}", v) for k, v in (extra or {}).items()]:
            target.writestr(name, data)


@pytest.fixture
def no_torch_load(monkeypatch):
    """Records each torch.load call (load turns any error inside it into a ModelError, so it cannot raise)."""
    calls = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: calls.append(args))
    yield calls
    assert calls == [], "torch.load read weights.pt before its archive was checked"


@pytest.mark.parametrize("model", TINY)
def test_a_compressed_weights_file_is_refused_before_torch_reads_it(saved, tmp_path, model, no_torch_load):
    """The review's decompression bomb: 390 KB of deflated zeros expanding to 400 MB inside torch.load. torch.save
    stores its records uncompressed, so a compressed entry is refused without inflating anything."""
    folder = copy(saved, model, tmp_path)
    rezipped(folder / "weights.pt", zipfile.ZIP_DEFLATED, {"data/999": bytes(8 * 2**20)})
    assert (folder / "weights.pt").stat().st_size < 2**20  # 8 MiB inside
    seal(folder)
    message = refusal(folder)
    assert "weights.pt holds compressed entries" in message, message


@pytest.mark.parametrize("model", TINY)
def test_a_weights_file_larger_than_the_networks_is_refused_before_torch_reads_it(saved, tmp_path, model,
                                                                                no_torch_load):
    folder = copy(saved, model, tmp_path)
    rezipped(folder / "weights.pt", extra={"data/999": bytes(8 * 2**20)})
    seal(folder)
    message = refusal(folder)
    assert "weights.pt is larger than the networks" in message, message
    (folder / "weights.pt").write_bytes(b"not a zip archive")
    seal(folder)
    assert "weights.pt does not fit" in refusal(folder)


# ---------------------------------------------------------------------------------------------- sampling memory


def test_a_sampling_batch_stays_within_a_fixed_memory_budget():
    """However wide the rows, one batch's generated numbers stay within SAMPLE_BYTES; up to the widths of real
    models the batch stays SAMPLE_BATCH rows, so seeded samples do not change."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory.sample_rows(cpu, 8192) == memory.SAMPLE_BATCH["cpu"] == 8192
    assert memory.sample_rows(cuda, 1000) == memory.SAMPLE_BATCH["cuda"] == 50_000
    assert memory.sample_rows(cpu, 10**6) * 10**6 * 4 <= memory.SAMPLE_BYTES
    assert memory.sample_rows(cuda, 10**12) == 1  # at least one row


@pytest.mark.parametrize("model", TINY)
def test_sampling_splits_wide_rows_into_smaller_batches(saved, monkeypatch, model):
    loaded = load_model(saved / model, device="cpu")
    assert memory.sampling_width(loaded) >= max(getattr(loaded.encoder_, "output_dim", 0), 16)  # 16: hidden widths
    decode, batches = loaded.encoder_.inverse_transform, []
    monkeypatch.setattr(loaded.encoder_, "inverse_transform",
                        lambda data, **kw: (batches.append(len(data)), decode(data, **kw))[1])
    expected = loaded.sample(25, seed=3)
    assert batches == [25]
    monkeypatch.setattr(memory, "SAMPLE_BYTES", 1)  # less than a row: batches of one row
    batches.clear()
    rows = loaded.sample(25, seed=3)
    assert batches == [1] * 25
    assert len(rows) == 25 and list(rows.columns) == list(expected.columns)


def test_encoder_files_are_validated_on_their_own(tmp_path):
    table = make_sample_table(100, seed=1)
    encoder = TableEncoder(infer_schema(table)).fit(table)
    data = json.loads(json.dumps(encoder.to_dict()))
    state(data, "amount")["minimum"] = state(data, "amount")["maximum"] + 1
    with pytest.raises(EncodingError, match=r"the encoder description is invalid: column 'amount': minimum .* refit"):
        TableEncoder.from_dict(data)
    (tmp_path / "encoder.json").write_text(json.dumps(data))
    with pytest.raises(EncodingError, match="encoder.json is invalid"):
        TableEncoder.load(tmp_path / "encoder.json")


# ---------------------------------------------------------------------------------------------- categories, memory


def wide_table(n_values: int, rows: int, seed: int = 0) -> pd.DataFrame:
    """A `code` column with `n_values` distinct values (a thousand of them common), and a numeric column."""
    rng = np.random.default_rng(seed)
    codes = np.r_[np.arange(n_values), rng.integers(0, 1000, rows - n_values)]
    return pd.DataFrame({"code": [f"c{i:05d}" for i in rng.permutation(codes)], "x": rng.normal(size=rows)})


SMALL_NETS = {
    "tvae": dict(embedding_dim=8, compress_dims=(16,), decompress_dims=(16,)),
    "ctgan": dict(embedding_dim=8, generator_dim=(16,), discriminator_dim=(16,)),
}


@pytest.fixture(scope="module")
def fifty_thousand():
    return wide_table(50_000, 60_000)


@pytest.mark.parametrize("model", ["tvae", "ctgan"])
def test_a_column_of_50000_values_trains_with_capped_codes(fifty_thousand, tmp_path, model):
    table = fifty_thousand
    fitted = model_class(model)(epochs=1, batch_size=500, random_state=0, verbose=False, device="cpu",
                                **SMALL_NETS[model]).fit(table)
    (span,) = fitted.encoder_.spans_of("code")
    assert span.dim == fitted.max_categories + 1  # the kept values and one shared rare code
    rows = fitted.sample(3000, seed=0)
    assert set(rows["code"]) <= set(table["code"])
    values = fitted.encoder_.category_values("code")
    rare = next(v for i, v in enumerate(values) if fitted.encoder_.is_rare("code", i))
    conditioned = fitted.sample(40, conditions={"code": rare}, seed=1)
    assert (conditioned["code"] == rare).all()
    fitted.save(tmp_path / "m")  # a capped encoder passes its own validation
    pd.testing.assert_frame_equal(load_model(tmp_path / "m", device="cpu").sample(100, seed=2), fitted.sample(100, seed=2))


def test_rare_codes_decode_to_rare_values_by_frequency():
    table = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 300 + ["c"] * 100 + ["d"] * 60 + ["e"] * 40})
    encoder = TableEncoder(infer_schema(table), max_categories=3).fit(table)
    (span,) = encoder.spans_of("c")
    assert span.dim == 4 and encoder.code_of_value("c", 4) == 3 and encoder.is_rare("c", 3)
    encoded = encoder.transform(table)
    assert (encoded[-100:, 3] == 1).all()
    decoded = encoder.inverse_transform(np.tile(np.eye(4, dtype=np.float32)[3], (10_000, 1)), seed=0)["c"]
    assert set(decoded) == {"d", "e"} and (decoded == "d").mean() == pytest.approx(0.6, abs=0.03)


@pytest.mark.parametrize("model", ["tvae", "ctgan"])
def test_training_that_cannot_fit_in_memory_is_refused_before_it_starts(monkeypatch, model):
    table = wide_table(3000, 4000)
    monkeypatch.setattr(memory, "available_memory", lambda device: 64 * 2**20)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the table was encoded before the memory check")

    monkeypatch.setattr(TableEncoder, "transform", no_encoding)
    generator = model_class(model)(epochs=1, random_state=0, verbose=False, device="cpu")
    generator.max_categories = 3000  # an attribute of the one-hot generators, not a hyper-parameter
    with pytest.raises(TabtwinError) as info:
        generator.fit(table)
    message = str(info.value)
    assert "\n" not in message and "0.1 GiB is available" in message
    assert "'code' (3,000)" in message and "id" in message and "--model autoregressive" in message


def test_the_memory_estimate_counts_the_table_and_the_networks():
    assert memory.training_bytes(rows=1000, width=10, parameters=0, batch=0) == 4 * memory.MATRIX_COPIES * 10_000
    assert memory.training_bytes(0, 0, parameters=100, batch=0) == 4 * memory.OPTIMIZER_COPIES * 100
    assert memory.available_memory(torch.device("cpu")) > 0


def test_the_memory_estimate_counts_dp_per_sample_gradients(monkeypatch):
    """DP-SGD holds a gradient per row of the batch: batch x parameters numbers."""
    plain = memory.training_bytes(0, 0, parameters=1000, batch=50)
    private = memory.training_bytes(0, 0, parameters=1000, batch=50, private=True)
    assert private - plain == 4 * memory.PER_SAMPLE_COPIES * 50 * 1000
    seen = []

    def estimate(*args, **kwargs):
        seen.append(kwargs.get("private", False))
        raise TabtwinError("stop after the estimate")

    monkeypatch.setattr(memory, "training_bytes", estimate)
    table = make_sample_table(60, seed=2)
    for dp_epsilon in (None, 2.0):
        with pytest.raises(TabtwinError, match="stop after the estimate"):
            TVAE(epochs=1, verbose=False, dp_epsilon=dp_epsilon, **SMALL_NETS["tvae"]).fit(table)
    assert seen == [False, True]


def test_parameter_bounds_hold_at_fit_too():
    table = make_sample_table(60, seed=2)
    for model, params in [(TVAE, dict(compress_dims=[10**9])), (CTGAN, dict(pac=10**6)),
                          (AutoregressiveGenerator, dict(hidden=10**9)), (AutoregressiveGenerator, dict(max_categories=0))]:
        with pytest.raises(TabtwinError, match=next(iter(params))):
            model(epochs=1, verbose=False, **params).fit(table)
    capped = TVAE(epochs=1, verbose=False)
    capped.max_categories = 0
    with pytest.raises(TabtwinError, match="max_categories"):
        capped.fit(table)
