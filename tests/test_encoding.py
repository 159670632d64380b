import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabtwin.pipeline.encoding import TableEncoder
from tabtwin.pipeline.errors import EncodingError, SchemaError
from tabtwin.pipeline.schema import infer_schema


def fit(df, metadata=None, **params):
    return TableEncoder(infer_schema(df, metadata), **params).fit(df)


def assert_round_trip(df, encoder):
    back = encoder.inverse_transform(encoder.transform(df))
    assert list(back.columns) == list(df.columns)
    for spec in encoder.schema.columns:
        got, want = back[spec.name], df[spec.name]
        assert got.isna().tolist() == want.isna().tolist(), spec.name
        if spec.kind == "id":
            continue
        if spec.kind == "continuous":
            np.testing.assert_allclose(
                got.to_numpy(float), want.to_numpy(float), rtol=1e-3, atol=1e-9, equal_nan=True, err_msg=spec.name
            )
        else:
            pd.testing.assert_series_equal(got, want, check_names=False, obj=spec.name)
    return back


def test_adult_round_trip_is_exact(adult):
    encoder = fit(adult)
    back = assert_round_trip(adult, encoder)
    for column in ["age", "fnlwgt", "capital-gain"]:
        assert back[column].dtype == np.int64
        assert (back[column] == adult[column]).all()  # integers come back whole and exact


def test_mixed_frame_round_trip(mixed_frame):
    encoder = fit(mixed_frame)
    back = assert_round_trip(mixed_frame, encoder)
    assert back["joined"].dtype == "datetime64[ns]" and back["active"].dtype == bool
    assert back["born"].tolist() == mixed_frame["born"].tolist()  # date strings come back in their format


def test_ids_are_regenerated_not_copied(mixed_frame):
    encoder = fit(mixed_frame)
    back = encoder.inverse_transform(encoder.transform(mixed_frame))
    assert back["customer_id"].is_unique
    assert back["customer_id"].dtype == mixed_frame["customer_id"].dtype
    assert not set(back["customer_id"]) & set(mixed_frame["customer_id"])
    assert all(span.column != "customer_id" for span in encoder.output_info)
    shifted = encoder.inverse_transform(encoder.transform(mixed_frame), id_offset=len(mixed_frame))
    assert not set(shifted["customer_id"]) & set(back["customer_id"])


def test_string_ids_keep_their_shape():
    df = pd.DataFrame({"key": [f"user_{i:04d}" for i in range(30)], "x": np.arange(30) % 3})
    encoder = fit(df, {"columns": {"key": {"sdtype": "id"}}})
    ids = encoder.inverse_transform(encoder.transform(df))["key"]
    assert ids.str.fullmatch(r"user_\d{4}").all() and ids.is_unique


def test_edge_frames_round_trip():
    rng = np.random.default_rng(3)
    frames = {
        "single row": pd.DataFrame({"a": [1.5], "b": ["x"], "c": [True], "d": pd.to_datetime(["2020-01-01"])}),
        "constant": pd.DataFrame({"a": [4.0] * 50, "b": ["k"] * 50, "c": [7] * 50}),
        "unicode names": pd.DataFrame({"größe (cm)": rng.normal(170, 10, 60), "市": rng.choice(["東京", "大阪"], 60)}),
        "all null numeric": pd.DataFrame({"a": [np.nan] * 30, "b": rng.normal(size=30)}),
        "bool with nulls": pd.DataFrame({"flag": pd.array([True, False, None] * 20, dtype="boolean")}),
        "tz datetimes": pd.DataFrame({"t": pd.date_range("2024-01-01", periods=40, freq="37min", tz="Europe/Zurich")}),
        "negative and tiny floats": pd.DataFrame({"v": rng.normal(0, 1e-4, 200) - 3e-4}),
    }
    for name, df in frames.items():
        # Force constant / few-valued columns through the continuous path too.
        metadata = {"columns": {c: {"sdtype": "numerical"} for c in df.columns if df[c].dtype.kind in "fi"}}
        assert_round_trip(df, fit(df, metadata))


def test_wide_range_float_round_trip_within_tolerance():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"heavy": np.concatenate([rng.lognormal(3, 2, 2000), [1e9, -1e6]])})
    assert_round_trip(df, fit(df))


def test_datetimes_at_second_resolution_round_trip(mixed_frame):
    encoder = fit(mixed_frame)
    back = encoder.inverse_transform(encoder.transform(mixed_frame))
    delta = (back["seen_at"] - mixed_frame["seen_at"]).abs().dropna()
    assert delta.max() <= pd.Timedelta(seconds=1)


def test_output_info_describes_contiguous_spans(mixed_frame):
    encoder = fit(mixed_frame)
    spans = encoder.output_info
    assert spans[0].start == 0 and spans[-1].stop == encoder.output_dim
    assert all(a.stop == b.start for a, b in zip(spans, spans[1:]))
    roles = {(s.column, s.role) for s in spans}
    assert ("score", "null") in roles and ("amount", "null") not in roles  # null channel only where needed
    assert ("city", "category") in roles and encoder.category_values("city")[-1] is None
    assert {s.activation for s in spans if s.role == "value"} == {"tanh"}
    assert all(1 <= s.dim <= 10 for s in spans if s.role == "mode")


def test_encoded_matrix_is_tanh_and_one_hot(mixed_frame):
    encoder = fit(mixed_frame)
    data = encoder.transform(mixed_frame)
    assert data.dtype == np.float32 and data.shape == (len(mixed_frame), encoder.output_dim)
    for span in encoder.output_info:
        block = data[:, span.start : span.stop]
        if span.activation == "tanh":
            assert np.abs(block).max() <= 0.99 + 1e-6
        else:
            assert set(np.unique(block)) <= {0.0, 1.0} and (block.sum(axis=1) == 1).all()


def test_bimodal_column_uses_both_modes(mixed_frame):
    encoder = fit(mixed_frame)
    state = encoder._state("amount")
    heavy = np.array(state.means)[np.array(state.weights) > 0.2]
    assert len(heavy) >= 2 and heavy.min() < 0 < heavy.max()


def test_random_generator_output_decodes_within_bounds(mixed_frame):
    encoder = fit(mixed_frame)
    noise = np.random.default_rng(0).uniform(-3, 3, size=(5000, encoder.output_dim)).astype(np.float32)
    fake = encoder.inverse_transform(noise)
    for column in ["amount", "count", "score"]:
        real = mixed_frame[column].dropna()
        values = fake[column].dropna()
        assert real.min() <= values.min() and values.max() <= real.max()  # clipped to the seen range
    assert (fake["count"] == fake["count"].round()).all()
    assert set(fake["colour"]) <= set(mixed_frame["colour"])  # categories never invented
    assert set(fake["city"].dropna()) <= set(mixed_frame["city"].dropna())


def test_null_rate_comes_back(mixed_frame):
    encoder = fit(mixed_frame)
    back = encoder.inverse_transform(encoder.transform(mixed_frame))
    for column in ["score", "city", "seen_at"]:
        assert back[column].isna().mean() == mixed_frame[column].isna().mean()


def test_transform_is_reproducible_per_seed(adult):
    sample = adult.head(3000)
    a, b = fit(sample, random_state=1), fit(sample, random_state=1)
    np.testing.assert_array_equal(a.transform(sample), b.transform(sample))
    c = fit(sample, random_state=2)
    assert not np.array_equal(a.transform(sample), c.transform(sample))  # the mode draw is random


def test_json_round_trip_gives_the_same_encoder(mixed_frame, tmp_path):
    encoder = fit(mixed_frame)
    path = tmp_path / "encoder.json"
    encoder.save(path)
    loaded = TableEncoder.load(path)
    np.testing.assert_array_equal(loaded.transform(mixed_frame), encoder.transform(mixed_frame))
    noise = np.random.default_rng(1).normal(size=(100, encoder.output_dim))
    pd.testing.assert_frame_equal(loaded.inverse_transform(noise), encoder.inverse_transform(noise))
    assert json.loads(path.read_text())["schema"]["columns"][0]["name"] == "customer_id"


def test_fit_samples_large_tables():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=30_000)})
    encoder = fit(df, max_fit_rows=2_000)
    assert_round_trip(df, encoder)  # rows outside the sample still decode exactly


def test_bad_input_is_named(mixed_frame):
    encoder = fit(mixed_frame)
    with pytest.raises(EncodingError, match="colour"):
        encoder.transform(mixed_frame.drop(columns="colour"))
    unseen = mixed_frame.copy()
    unseen.loc[0, "colour"] = "purple"
    with pytest.raises(EncodingError, match="'purple'"):
        encoder.transform(unseen)
    gained_nulls = mixed_frame.copy()
    gained_nulls.loc[0, "colour"] = None
    with pytest.raises(EncodingError, match="nulls"):
        encoder.transform(gained_nulls)
    with pytest.raises(EncodingError, match="columns"):
        encoder.inverse_transform(np.zeros((3, encoder.output_dim + 1)))
    with pytest.raises(EncodingError, match="not fitted"):
        TableEncoder(encoder.schema).transform(mixed_frame)
    with pytest.raises(EncodingError, match="no rows"):
        TableEncoder(encoder.schema).fit(mixed_frame.iloc[:0])


def test_corrupt_encoder_file_is_refused(tmp_path):
    path = tmp_path / "encoder.json"
    path.write_text('{"schema": {"columns": []}}')
    with pytest.raises(EncodingError, match="incomplete"):
        TableEncoder.load(path)
    path.write_text("garbage")
    with pytest.raises(EncodingError, match="encoder.json"):
        TableEncoder.load(path)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=1, max_size=60),
    st.data(),
)
def test_round_trip_holds_for_arbitrary_columns(values, data):
    n = len(values)
    words = data.draw(st.lists(st.sampled_from(["a", "β", "", " x", None]), min_size=n, max_size=n))
    counts = data.draw(st.lists(st.integers(-(10**6), 10**6), min_size=n, max_size=n))
    df = pd.DataFrame({"f": values, "w": pd.Series(words, dtype=object), "i": counts})
    df["w"] = df["w"].where(df["w"].notna(), np.nan)
    metadata = {"columns": {"f": {"sdtype": "numerical"}, "i": {"sdtype": "numerical"}, "w": {"sdtype": "categorical"}}}
    encoder = fit(df, metadata)
    back = encoder.inverse_transform(encoder.transform(df))
    scale = max(np.ptp(values), 1.0)
    np.testing.assert_allclose(back["f"], df["f"], rtol=1e-3, atol=1e-6 * scale)
    assert (back["i"] == df["i"]).all()
    pd.testing.assert_series_equal(back["w"], df["w"])


@pytest.mark.parametrize("real", [
    pd.Series(range(1_200), name="user_id"),  # integers from 0, as regenerated ids would be numbered
    pd.Series([f"REF-{i:05d}" for i in range(3, 1_203)], name="ref"),
    pd.Series([f"u{i}" for i in range(7, 1_207)], name="ref"),  # no zero padding
])
def test_regenerated_ids_never_equal_a_real_id(real):
    """Ids are numbered past the largest number among the real ones."""
    df = pd.DataFrame({real.name: real, "x": np.arange(len(real)) % 7})
    encoder = fit(df)
    for offset in (0, 600):  # a partitioned sample's later part too
        back = encoder.inverse_transform(encoder.transform(df), id_offset=offset)
        assert back[real.name].is_unique and not set(back[real.name]) & set(real)


def test_a_declared_primary_key_that_repeats_or_has_blanks_is_refused():
    df = pd.DataFrame({"user_id": [1, 2, 2, 3, 3, 3], "x": list("abcdef")})
    with pytest.raises(SchemaError, match=r"declares 'user_id' the primary key, but 2 of its values repeat \(in 5 "
                                          r"rows\); a primary key holds each value once"):
        infer_schema(df, {"columns": {}, "primary_key": "user_id"})
    blanks = pd.DataFrame({"user_id": [1.0, None, 3.0], "x": list("abc")})
    with pytest.raises(SchemaError, match="but 1 row has no value in it"):
        infer_schema(blanks, {"columns": {}, "primary_key": "user_id"})


def test_a_column_of_zeros_and_one_outlier_keeps_its_zeros_exact():
    """799 zeros and one 1e6: the median of the two counts (400) would hide the spike, and one wide mode would
    move the zeros off zero."""
    df = pd.DataFrame({"amount": [0.0] * 799 + [1e6], "g": ["a", "b"] * 400})
    encoder = fit(df, {"columns": {"amount": {"sdtype": "numerical"}}})
    (state,) = [s for s in encoder.columns_ if s.name == "amount"]
    assert list(zip(state.means, state.stds)) == [(0.0, 0.0), (1e6, 0.0)]  # two exact modes
    noisy = encoder.transform(df)
    value = encoder.spans_of("amount")[0].start
    noisy[:, value] += np.random.default_rng(0).normal(0, 0.3, len(df)).astype(np.float32)  # a generator's noise
    back = encoder.inverse_transform(noisy)
    assert (back["amount"] == 0).sum() == 799 and (back["amount"] == 1e6).sum() == 1


def test_a_column_with_infinities_and_no_nulls_never_decodes_a_null():
    """The null span of a column with +-inf but no NaN has a "missing" slot a generator may pick."""
    values = np.r_[np.linspace(0, 1, 290), [np.inf] * 6, [-np.inf] * 4]
    df = pd.DataFrame({"x": values})
    encoder = fit(df)
    data = encoder.transform(df)
    (null,) = [s for s in encoder.spans_of("x") if s.role == "null"]
    data[:, null.start + 1] = 5.0  # every row's "missing" slot the largest
    back = encoder.inverse_transform(data)
    assert not back["x"].isna().any()
    assert (np.isfinite(back["x"]) == np.isfinite(values)).all()  # the next slot decides: present, or an infinity


def test_ids_of_rows_split_off_before_the_fit_are_not_reproduced():
    """The schema reads the whole table, so a holdout's ids (here the largest) stay out of reach too."""
    df = pd.DataFrame({"user_id": np.arange(1_000), "x": np.arange(1_000) % 5})
    schema = infer_schema(df)
    train = df.iloc[:600]
    encoder = TableEncoder(schema).fit(train)
    back = encoder.inverse_transform(encoder.transform(train))
    assert back["user_id"].min() >= 1_000
