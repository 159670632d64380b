"""Every value comes back in the form it came in (issue 12, items 1-3): labels, dtypes, decimals, special values,
nulls and datetime text, through both encoders, their JSON files, the three generators and `tabtwin encode`."""

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tabtwin.flows.cli import main
from tabtwin.generators import model_class
from tabtwin.pipeline.binning import BinnedEncoder
from tabtwin.pipeline.encoding import TableEncoder, round_trip_errors
from tabtwin.pipeline.errors import EncodingError, SchemaError
from tabtwin.pipeline.ingest import read_table, write_table
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import infer_schema

ENCODERS = (TableEncoder, BinnedEncoder)
QUICK = {"autoregressive": dict(hidden=32, epochs=3), "ctgan": dict(epochs=2, batch_size=20), "tvae": dict(epochs=3, batch_size=20)}


def round_trip(cls, df, metadata=None, through_json=True):
    """Fit `cls` on `df`, encode, (save to JSON text and load,) decode."""
    encoder = cls(infer_schema(df, metadata)).fit(df)
    encoded = encoder.transform(df)
    if through_json:
        text = json.dumps(jsonable(encoder.to_dict()), allow_nan=False)
        encoder = cls.from_dict(json.loads(text))
    return encoder.inverse_transform(encoded)


def fit_model(name, df, device, metadata=None):
    return model_class(name)(**QUICK[name], device=device, random_state=0, verbose=False).fit(
        df, infer_schema(df, metadata)
    )


# ---------------------------------------------------------------------------------------------- property test


LABEL_TEXT = st.text(alphabet="abcXYZ.1 ßé", min_size=1, max_size=6)
LABELS = st.one_of(LABEL_TEXT, st.integers(-5, 50))


@st.composite
def column(draw, n):
    """(values as a Series, kind of form) for one column of n rows. Numbers span at most about 1e5 of their
    last digit (or unit), where TableEncoder's float32 matrix is still exact."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nulls = draw(st.booleans()) and n >= 4
    null_mask = np.zeros(n, bool)
    if nulls:
        null_mask[rng.choice(n, max(1, n // 5), replace=False)] = True
    kind = draw(st.sampled_from([
        "int", "int_blank", "decimals", "float32", "specials", "bool", "text", "category", "naive", "aware",
        "text_offset", "text_fraction", "dates", "duration",
    ]))
    if kind == "int":
        dtype = draw(st.sampled_from(["int8", "int16", "int64", "uint16"]))
        series = pd.Series(rng.integers(0, 100, n), dtype=dtype)
    elif kind == "int_blank":  # whole numbers with blanks: pandas Int64
        series = pd.Series(rng.integers(-1000, 1000, n)).astype("Int64").mask(null_mask | (np.arange(n) == 0))
    elif kind == "decimals":
        d = draw(st.integers(0, 3))
        scale = draw(st.sampled_from([1.0, 100.0]))
        series = pd.Series(np.round(rng.uniform(-scale, scale, n), d)).mask(null_mask)
    elif kind == "float32":
        series = pd.Series(np.round(rng.uniform(0, 50, n), 2), dtype="float32").mask(null_mask)
    elif kind == "specials":
        values = np.round(rng.normal(0, 10, n), 3)
        values[rng.choice(n, max(1, n // 8), replace=False)] = draw(st.sampled_from([np.inf, -np.inf]))
        values[0] = -np.inf if draw(st.booleans()) else values[0]
        series = pd.Series(values).mask(null_mask)
    elif kind == "bool":
        series = pd.Series(rng.random(n) < 0.5)
        series = series.astype("boolean").mask(null_mask) if nulls else series
    elif kind == "text":
        series = pd.Series(rng.choice(["a", "β", " x", "1"], n), dtype=object).mask(null_mask)
    elif kind == "category":
        series = pd.Series(pd.Categorical(rng.choice(["lo", "mid"], n), categories=["hi", "mid", "lo"],
                                          ordered=draw(st.booleans()))).mask(null_mask)
    elif kind in ("naive", "aware"):
        stamps = pd.Timestamp("2023-03-20 08:00") + pd.to_timedelta(rng.integers(0, 10**5, n), unit="min")
        series = pd.Series(stamps)
        if kind == "aware":
            series = series.dt.tz_localize("UTC").dt.tz_convert(draw(st.sampled_from(["Europe/Paris", "Asia/Kolkata"])))
        series = series.mask(null_mask)
    elif kind in ("text_offset", "text_fraction"):
        span = 10**5 if kind == "text_offset" else 60  # seconds; a fraction makes the unit finer
        stamps = pd.Timestamp("2024-01-01 23:59") + pd.to_timedelta(rng.integers(0, span, n), unit="s")
        offset = draw(st.sampled_from(["+05:00", "-0330", "Z", "+00:00", ""]))
        if kind == "text_fraction":
            digits = 3
            fraction = ["." + str(v).zfill(digits) for v in rng.integers(0, 10**digits, n)]
        else:
            fraction = [""] * n
        sep = draw(st.sampled_from([" ", "T"]))
        texts = [s.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + f + offset for s, f in zip(stamps, fraction)]
        series = pd.Series(texts, dtype=object).mask(null_mask)
    elif kind == "dates":
        series = pd.Series([dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 900, n)],
                           dtype=object).mask(null_mask)
    else:
        series = pd.Series(pd.to_timedelta(rng.integers(0, 10**5, n), unit="s")).mask(null_mask)
    return series, kind
    return series, kind


@st.composite
def tables(draw):
    n = draw(st.integers(8, 40))
    labels = draw(st.lists(LABELS, min_size=1, max_size=4, unique_by=str))
    columns = [draw(column(n)) for _ in labels]
    df = pd.DataFrame({i: series for i, (series, _) in enumerate(columns)})
    df.columns = labels
    return df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from(ENCODERS))
def test_every_column_comes_back_in_its_form(df, cls):
    """Labels (text, unicode, numbers), dtypes, decimals, nulls, +-inf and datetime text survive an exact round
    trip through either encoder and its JSON file. These tables are small enough (<= 40 rows, few decimals) for
    both encoders to be exact, so the frames must be equal, value for value."""
    back = round_trip(cls, df)
    assert list(back.columns) == list(df.columns)
    assert [type(c) for c in back.columns] == [type(c) for c in df.columns]
    pd.testing.assert_frame_equal(back, df, check_exact=True)


# ---------------------------------------------------------------------------------------------- item 1


def _rooms_csv(path):
    rng = np.random.default_rng(3)
    lines = ["rooms,x"] + [f"{'' if i % 5 == 0 else rng.integers(1, 300)},{rng.normal():.3f}" for i in range(30)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_integers_with_blanks_are_read_as_int64(tmp_path):
    df = read_table(_rooms_csv(tmp_path / "rooms.csv"))
    assert str(df["rooms"].dtype) == "Int64"
    assert df["rooms"].isna().tolist() == [i % 5 == 0 for i in range(30)]
    assert str(df["x"].dtype) == "float64"
    # A column written with decimals stays float even when every value is whole.
    (tmp_path / "f.csv").write_text("a\n1.0\n\n2.0\n")
    assert str(read_table(tmp_path / "f.csv")["a"].dtype) == "float64"
    # Parquet integers with nulls: pyarrow would give float64.
    df.to_parquet(tmp_path / "rooms.parquet")
    assert str(read_table(tmp_path / "rooms.parquet")["rooms"].dtype) == "Int64"


@pytest.mark.parametrize("name", ["tvae", "ctgan", "autoregressive"])
def test_integers_with_blanks_are_written_as_integers(tmp_path, device, name):
    df = read_table(_rooms_csv(tmp_path / "rooms.csv"))
    out = write_table(fit_model(name, df, device).sample(200, seed=0), tmp_path / "synthetic.csv")
    rooms = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert all(re.fullmatch(r"\d*", value) for value in rooms), rooms[:10]
    assert "" in rooms and any(rooms)


def test_metadata_int64_makes_a_float_column_whole_numbers_with_blanks():
    df = pd.DataFrame({"rooms": [np.nan, 153.0, 81.0, 4.0] * 5, "x": np.arange(20.0)})
    metadata = {"columns": {"rooms": {"sdtype": "numerical", "computer_representation": "Int64"}}}
    for cls in ENCODERS:
        back = round_trip(cls, df, metadata)
        assert str(back["rooms"].dtype) == "Int64"
        assert back["rooms"].tolist() == [pd.NA, 153, 81, 4] * 5
    df.loc[1, "rooms"] = 2.5
    with pytest.raises(SchemaError, match=r"'rooms' is declared Int64 in the metadata but holds 2.5"):
        infer_schema(df, metadata)


# ---------------------------------------------------------------------------------------------- item 2


@pytest.mark.parametrize("cls", ENCODERS)
@pytest.mark.parametrize("offset", ["+05:00", "Z", "-0330"])
def test_datetimes_keep_their_utc_offset_and_format(cls, offset):
    texts = [f"2024-01-{d:02d}T{h:02d}:31:00{offset}" for d in range(1, 29) for h in (0, 12)]
    df = pd.DataFrame({"t": texts})
    assert round_trip(cls, df)["t"].tolist() == texts


@pytest.mark.parametrize("cls", ENCODERS)
def test_mixed_offsets_are_utc_instants_written_at_the_commonest_offset(cls):
    offsets = ["+05:00", "+05:00", "-03:00", "+00:00"] * 10
    texts = [f"2024-02-{1 + i % 28:02d} 10:{i:02d}:00{o}" for i, o in enumerate(offsets)]
    back = round_trip(cls, pd.DataFrame({"t": texts}))["t"]
    assert back.str.endswith("+05:00").all()
    assert (pd.to_datetime(back, utc=True) == pd.to_datetime(pd.Series(texts), utc=True, format="mixed")).all()
    assert back[2] == "2024-02-03 18:02:00+05:00"  # 10:02 at -03:00 is 13:02 UTC


@pytest.mark.parametrize("name", ["tvae", "ctgan", "autoregressive"])
def test_generators_write_offsets_decimals_specials_and_labels_back(device, name):
    """Sampled (not copied) values keep the form: +05:00 text, 2 decimals, inf, and integer column labels."""
    rng = np.random.default_rng(0)
    n = 200
    values = rng.normal(0, 5, n)
    values[::10] = np.inf
    df = pd.DataFrame({
        0: [f"2024-01-{1 + i % 28:02d} {i % 24:02d}:00:00+05:00" for i in range(n)],
        1: np.round(rng.lognormal(3, 1, n), 2),
        2: values,
    })
    synthetic = fit_model(name, df, device).sample(300, seed=1)
    assert list(synthetic.columns) == [0, 1, 2]
    assert synthetic[0].str.fullmatch(r"2024-01-\d\d \d\d:00:00\+05:00").all()
    prices = synthetic[1].to_numpy()
    assert np.array_equal(prices, np.round(prices, 2)) and np.isfinite(prices).all()
    specials = synthetic[2][np.isinf(synthetic[2])]
    assert (specials == np.inf).all() and 0 < len(specials) < 300


# ---------------------------------------------------------------------------------------------- item 3


@pytest.mark.parametrize("cls", ENCODERS)
def test_prices_keep_two_decimals(cls):
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"price": np.round(rng.uniform(1, 100, 2000), 2)})
    encoder = cls(infer_schema(df)).fit(df)
    back = encoder.inverse_transform(encoder.transform(df))["price"]
    assert np.array_equal(back, np.round(back, 2))
    if cls is TableEncoder:  # the mode-specific encoding is exact: every price comes back as itself
        assert back.tolist() == df["price"].tolist()


def test_other_dtypes_keep_their_form():
    n = 60
    rng = np.random.default_rng(2)
    df = pd.DataFrame({
        "wait": pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        "level": pd.Categorical(rng.choice(["low", "high"], n), categories=["low", "mid", "high"], ordered=True),
        "day": [dt.date(2024, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 300, n)],
        "score": np.r_[np.full(5, np.inf), np.round(rng.normal(size=n - 5), 4)],
    })
    for cls in ENCODERS:
        back = round_trip(cls, df)
        pd.testing.assert_frame_equal(back, df, check_exact=True)
        assert isinstance(back["day"][0], dt.date) and back["level"].cat.categories.tolist() == ["low", "mid", "high"]


def test_labels_that_clash_as_text_or_are_tuples_are_refused_by_name():
    for df, words in [(pd.DataFrame([[1, 2]], columns=[1, "1"]), r"\['1'\] are the same as text"),
                      (pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")])), "tuple")]:
        with pytest.raises(EncodingError, match=words):
            TableEncoder(infer_schema(df.set_axis(["p", "q"], axis=1))).fit(df)


def test_an_encoder_file_without_forms_is_refused_clearly(tmp_path):
    df = pd.DataFrame({"x": np.arange(30.0)})
    for cls in ENCODERS:
        data = cls(infer_schema(df)).fit(df).to_dict()
        del data["forms"]
        with pytest.raises(EncodingError, match="no column forms .* refit the model"):
            cls.from_dict(data)


# ---------------------------------------------------------------------------------------------- tabtwin encode


def test_round_trip_errors_flag_each_kind_of_loss():
    df = pd.DataFrame({"n": np.r_[np.arange(29) * 1.5, np.inf], "t": ["2024-01-01 10:00:00+05:00"] * 30,
                       7: list("ab") * 15})
    schema = infer_schema(df)
    assert schema["n"].kind == "continuous"
    assert round_trip_errors(df, df, schema)["passed"].all()
    broken = df.copy()
    broken["n"] = np.r_[np.arange(29) * 1.5, 1e308]  # inf decoded as a number
    broken["t"] = "2024-01-01 05:00:00"  # offset dropped
    broken.columns = ["n", "t", "7"]  # integer label became text
    report = round_trip_errors(df, broken, schema).set_index("column")
    assert report.loc["n", "form"] == "special values (inf) differ"
    assert report.loc["t", "value"] == 0.0
    assert report.loc["7", "form"] == "label 7 not kept"
    assert not report["passed"].any()


def _offset_csv(tmp_path):
    path = tmp_path / "t.csv"
    lines = ["t,price,v"] + [f"2024-01-{1 + i % 28:02d} 10:{i:02d}:00+05:00,{1 + i * 0.37:.2f},{'inf' if i % 9 == 0 else i * 1.5}"
                             for i in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_encode_passes_offsets_decimals_and_inf(tmp_path, capsys):
    assert main(["encode", str(_offset_csv(tmp_path))]) == 0
    assert "FAILED" not in capsys.readouterr().err


def test_encode_exits_1_naming_the_columns_when_the_round_trip_is_wrong(tmp_path, capsys, monkeypatch):
    original = TableEncoder.inverse_transform

    def drop_offsets(self, data, id_offset=0):
        back = original(self, data, id_offset)
        back["t"] = back["t"].str.slice(0, 19)
        return back

    monkeypatch.setattr(TableEncoder, "inverse_transform", drop_offsets)
    assert main(["encode", str(_offset_csv(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "round trip FAILED for 1 column(s): t (exact match share 0)" in err
