"""Both encoders are fitted from a table's statistics (pipeline.statistics, pipeline.columns): a table fitted whole
and in chunks gives the same encoder, whatever order chunk statistics merge in; past the exact cap, a numeric
column's bins come from a uniform sample, within its stated rank error of the exact ones."""

import datetime as dt
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabtwin.pipeline.binning import SUB_BINS, BinnedEncoder, quantile_bins
from tabtwin.pipeline.encoding import TableEncoder
from tabtwin.pipeline.errors import EncodingError
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import infer_schema
from tabtwin.pipeline.statistics import TableStatistics

N_CHUNKS = 10


def every_type_table(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Every column type: ids (text and integer), a categorical with rare values past 50 categories, continuous
    with spikes, outliers, +-inf and nulls, integers (plain and nullable), datetimes (naive, zoned, dates, text
    with several UTC offsets, python dates), durations, booleans (plain and nullable)."""
    rng = np.random.default_rng(seed)
    amount = np.where(rng.random(n) < 0.5, 0.0, np.round(rng.lognormal(3, 1, n), 2))
    amount[rng.choice(n, 3, replace=False)] = [1e6, 2.5e6, -9e5]
    amount[rng.choice(n, 20, replace=False)] = np.inf
    amount[rng.choice(n, 5, replace=False)] = -np.inf
    stamps = pd.Timestamp("2023-03-20 08:00") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="min")
    offsets = rng.choice(["+05:00", "-03:30", "+00:00"], n, p=[0.6, 0.3, 0.1])
    texts = pd.Series([s.strftime("%Y-%m-%dT%H:%M:%S") + o for s, o in zip(stamps, offsets)], dtype=object)
    city = np.where(rng.random(n) < 0.6, rng.choice(["a", "b", "c"], n), [f"r{i}" for i in rng.integers(0, 400, n)])
    return pd.DataFrame({
        "user_id": [f"U{i:06d}" for i in range(n)],
        "num_id": np.arange(100, 100 + n),
        "city": pd.Series(city).mask(rng.random(n) < 0.02),
        "amount": pd.Series(amount).mask(rng.random(n) < 0.05),
        "count": rng.poisson(40, n),
        "level": pd.Series(rng.integers(0, 500, n)).astype("Int64").mask(rng.random(n) < 0.1),
        "seen": pd.Series(stamps).mask(rng.random(n) < 0.1),
        "aware": pd.Series(stamps).dt.tz_localize("UTC").dt.tz_convert("Europe/Paris"),
        "day": pd.Series(stamps.normalize()),
        "stamp_text": texts.mask(rng.random(n) < 0.05),
        "born": pd.Series([dt.date(1960, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 20_000, n)],
                          dtype=object),
        "wait": pd.Series(pd.to_timedelta(rng.integers(0, 10**5, n), unit="s")).mask(rng.random(n) < 0.05),
        "flag": pd.Series(rng.random(n) < 0.3).astype("boolean").mask(rng.random(n) < 0.05),
        "plain_flag": rng.random(n) < 0.5,
        "grade": rng.choice([1, 2, 3], n),
        "score": rng.normal(0, 1, n),
    })


@pytest.fixture(scope="module")
def table():
    df = every_type_table()
    return df, infer_schema(df)


def chunks(df: pd.DataFrame, n: int = N_CHUNKS) -> list[pd.DataFrame]:
    """`n` consecutive chunks of unequal length, keeping the table's index (as a chunked reader would not)."""
    cuts = np.sort(np.random.default_rng(0).choice(np.arange(1, len(df)), n - 1, replace=False))
    return [df.iloc[lo:hi] for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(df)])]


def chunk_statistics(df, schema, **options) -> list[TableStatistics]:
    parts, offset = [], 0
    for chunk in chunks(df):
        parts.append(TableStatistics(schema, **options).update(chunk, offset))
        offset += len(chunk)
    return parts


def tree(parts: list[TableStatistics]) -> TableStatistics:
    """A balanced tree reduction, as Dask's."""
    while len(parts) > 1:
        parts = [parts[i].merge(parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def dump(encoder) -> str:
    """The encoder's file as text: equal text, equal encoder (and -0.0 differs from 0.0)."""
    return json.dumps(jsonable(encoder.to_dict()), sort_keys=True)


ENCODERS = [
    (TableEncoder, dict(max_categories=50)),
    (TableEncoder, dict(max_categories=50, max_fit_rows=700)),  # the mixture fitted on a sample of every column
    (BinnedEncoder, dict(max_categories=50)),
]


@pytest.mark.parametrize("cls, params", ENCODERS)
def test_a_table_fitted_in_chunks_gives_the_encoder_fitted_whole(table, cls, params):
    df, schema = table
    whole = cls(schema, **params).fit(df)
    chunked = cls(schema, **params).fit_chunks(chunks(df))
    assert dump(chunked) == dump(whole)
    assert any(s.rare for s in whole.states_ if hasattr(s, "rare"))  # the rare code is exercised
    assert (chunked.transform(df) == whole.transform(df)).all()
    pd.testing.assert_frame_equal(chunked.inverse_transform(chunked.transform(df)),
                                  whole.inverse_transform(whole.transform(df)))


@pytest.mark.parametrize("cls, params", ENCODERS[1:])  # the mixture on a sample, to keep the four fits quick
def test_chunk_statistics_merged_in_any_order_give_the_same_encoder(table, cls, params):
    df, schema = table
    options = {"sample_rows": params.get("max_fit_rows", 50_000)} if cls is TableEncoder else {}
    whole = dump(cls(schema, **params).fit(df))
    parts = chunk_statistics(df, schema, **options)
    left_fold = parts[0]
    for part in parts[1:]:
        left_fold = left_fold.merge(part)
    shuffled = [parts[i] for i in np.random.default_rng(1).permutation(len(parts))]
    shipped = [pickle.loads(pickle.dumps(part)) for part in reversed(parts)]  # as Dask ships them
    for stats in (left_fold, tree(shuffled), tree(shipped)):
        assert dump(cls.from_statistics(stats, **params)) == whole


def test_merging_leaves_its_inputs_unchanged(table):
    df, schema = table
    a, b = chunk_statistics(df, schema)[:2]
    before = pickle.dumps((a, b))
    a.merge(b)
    assert pickle.dumps((a, b)) == before


def test_the_sample_is_the_same_rows_however_the_table_is_chunked(table):
    df, schema = table
    whole = TableStatistics(schema, sample_rows=500).update(df, 0).finalise().columns["score"].fit_sample(500)
    chunked = tree(chunk_statistics(df, schema, sample_rows=500)).finalise().columns["score"].fit_sample(500)
    assert len(whole) == 500 and np.array_equal(whole, chunked)
    assert set(whole) <= set(df["score"])
    # Every value when the column holds fewer than the sample size, in row order.
    everything = TableStatistics(schema).update(df, 0).finalise().columns["score"].fit_sample(50_000)
    assert np.array_equal(everything, df["score"].to_numpy())


# ---------------------------------------------------------------------------------------------- exactness


def reference_quantile_bins(rest: np.ndarray, n_bins: int) -> list[list[float]]:
    """The bins as computed on every row, sorted: np.quantile of each bin."""
    cuts = np.unique(np.searchsorted(rest, rest[np.linspace(0, len(rest), n_bins + 1).astype(int)[1:-1]], "left"))
    cuts = cuts[(cuts > 0) & (cuts < len(rest))]
    return [np.quantile(chunk, np.linspace(0, 1, SUB_BINS + 1)).tolist() for chunk in np.split(rest, cuts)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=300),
       st.integers(1, 70), st.integers(0, 3))
def test_bins_from_value_counts_equal_numpy_on_every_row_bit_for_bit(values, n_bins, rounding):
    # Rounding makes ties; -0.0 is read as 0.0 (pipeline.columns.numeric), as one value.
    rest = np.sort(np.round(np.asarray(values, dtype=np.float64), rounding) + 0.0)
    distinct, counts = np.unique(rest, return_counts=True)
    got = quantile_bins(distinct, counts, n_bins)
    want = reference_quantile_bins(rest, n_bins)
    assert json.dumps(got) == json.dumps(want)


# ---------------------------------------------------------------------------------------------- sampled path


def many_valued_table(n: int = 60_000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    value = rng.lognormal(3, 1, n)
    value[rng.random(n) < 0.3] = 0.0  # a spike of 30 %
    return pd.DataFrame({"value": value, "other": rng.normal(0, 1, n)})


def exact_ranks(rest: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(rest, edges, "left") / len(rest)


@pytest.mark.parametrize("quantile_rows", [4096, 20_000])
def test_sampled_bin_edges_lie_within_the_stated_rank_error_of_the_exact_ones(quantile_rows):
    df = many_valued_table()
    schema = infer_schema(df)
    exact = BinnedEncoder(schema).fit(df)
    parts = chunk_statistics(df, schema, exact_values=256, quantile_rows=quantile_rows)
    stats = tree([pickle.loads(pickle.dumps(part)) for part in parts])  # partials travel pickled, as Dask ships them
    summary = stats.finalise().columns["value"]
    assert not summary.exact and summary.rank_error > 0
    sampled = BinnedEncoder.from_statistics(stats)
    want, got = exact._state("value"), sampled._state("value")
    assert got.points == want.points == [0.0]  # the spike, found from the sample's counts
    # The sample is chosen by row, not by arrival: another chunking and merge order give the same encoder.
    again = TableStatistics(schema, exact_values=256, quantile_rows=quantile_rows).update(df, 0)
    assert BinnedEncoder.from_statistics(again).to_dict() == sampled.to_dict()
    values = df["value"].to_numpy()
    rest = np.sort(values[values != 0.0])
    # Ranks are among all finite values; among the rest (70 % of them) an error of e becomes e / 0.7.
    bound = summary.rank_error * len(values) / len(rest) + 1 / len(rest)
    want_edges, got_edges = np.asarray(want.edges), np.asarray(got.edges)
    assert got_edges.shape == want_edges.shape == (64, SUB_BINS + 1)
    assert np.abs(exact_ranks(rest, got_edges) - exact_ranks(rest, want_edges)).max() <= bound
    assert got_edges[-1, -1] == want_edges[-1, -1] == values.max()  # the column's extremes stay exact
    codes = sampled.transform(df)
    assert (sampled.transform(sampled.inverse_transform(codes, seed=0)) == codes).all()


def test_a_sampled_column_still_fits_the_table_encoder():
    df = many_valued_table(20_000)
    schema = infer_schema(df)
    stats = TableStatistics(schema, exact_values=256, quantile_rows=1024).update(df, 0)
    encoder = TableEncoder.from_statistics(stats)
    state = encoder._state("value")
    assert 0.0 in state.means and state.stds[state.means.index(0.0)] == 0  # the spike is an exact mode
    assert state.minimum == df["value"].min() and state.maximum == df["value"].max()
    decoded = encoder.inverse_transform(encoder.transform(df))
    assert decoded["value"].between(df["value"].min(), df["value"].max()).all()
    assert abs((decoded["value"] == 0).mean() - 0.3) < 0.02


def test_statistics_with_fewer_exact_values_than_max_exact_are_refused():
    df = many_valued_table(1000)
    stats = TableStatistics(infer_schema(df), exact_values=64).update(df, 0)
    with pytest.raises(EncodingError, match="max_exact"):
        BinnedEncoder.from_statistics(stats)
    assert BinnedEncoder.from_statistics(stats, max_exact=64).cardinalities


def test_no_rows_and_missing_columns_are_refused_in_one_line(table):
    df, schema = table
    with pytest.raises(EncodingError, match="no rows"):
        TableEncoder(schema).fit_chunks([])
    with pytest.raises(EncodingError, match="lacks column"):
        BinnedEncoder(schema).fit_chunks([df.iloc[:10], df.iloc[10:20].drop(columns="city")])
