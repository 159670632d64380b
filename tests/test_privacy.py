"""Privacy metrics: the distance against a brute-force reading of its definition, the chunked nearest-neighbour
search against brute force, and the metrics on the two reference cases (a copy of train, a fresh draw)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from tabtwin.evaluation.distance import distance_space, nearest_distances
from tabtwin.evaluation.privacy import exact_copy_share, privacy_metrics
from tabtwin.pipeline.device import resolve_device
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.sample_data import make_sample_table
from tabtwin.pipeline.schema import ColumnSpec, Schema, infer_schema

MIXED_SCHEMA = Schema(
    [
        ColumnSpec("key", "id"),
        ColumnSpec("income", "continuous"),
        ColumnSpec("when", "datetime"),
        ColumnSpec("colour", "discrete"),
        ColumnSpec("grade", "discrete"),
        ColumnSpec("flag", "boolean"),
    ]
)


def mixed_frame(n: int, seed: int) -> pd.DataFrame:
    """Every modelled kind with nulls, plus an id."""
    rng = np.random.default_rng(seed)
    when = pd.Series(pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D"))
    return pd.DataFrame(
        {
            "key": rng.permutation(n),
            "income": pd.Series(rng.lognormal(10, 1, n)).where(rng.random(n) > 0.2),
            "when": when.where(rng.random(n) > 0.2),
            "colour": pd.Series(rng.choice(["red", "green", "blue"], n)).where(rng.random(n) > 0.2),
            "grade": rng.choice([1, 2, 3], n),
            "flag": rng.random(n) < 0.4,
        }
    )


def brute_force_distances(a: pd.DataFrame, b: pd.DataFrame, train: pd.DataFrame) -> np.ndarray:
    """The documented distance, pair by pair in numpy, straight from the definition (no embedding)."""
    squared = np.zeros((len(a), len(b)))
    modelled = [spec for spec in MIXED_SCHEMA.columns if spec.kind != "id"]
    for spec in modelled:
        if spec.kind in ("continuous", "datetime"):
            x, y, t = (as_float(f[spec.name]) for f in (a, b, train))
            low, high = np.nanmin(t), np.nanmax(t)
            span = high - low if high > low else 1.0
            x, y = (x - low) / span, (y - low) / span
            mean = np.nanmean((t - low) / span)
            gap = np.where(np.isnan(x), mean, x)[:, None] - np.where(np.isnan(y), mean, y)[None, :]
            one_null = np.isnan(x)[:, None] != np.isnan(y)[None, :]
            squared += gap**2 + one_null  # a null against a value: 1, plus the gap to the mean where nulls sit
        else:
            x, y = (f[spec.name].astype(object).where(f[spec.name].notna(), "<null>").astype(str) for f in (a, b))
            x, y = x.to_numpy(), y.to_numpy()
            squared += x[:, None] != y[None, :]
    return np.sqrt(squared / len(modelled))


def as_float(column: pd.Series) -> np.ndarray:
    """Floats with NaN for nulls; datetimes as int64 nanoseconds."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return np.where(column.notna(), column.to_numpy("datetime64[ns]").astype("int64"), np.nan)
    return column.to_numpy(dtype=float, na_value=np.nan)


def test_the_matmul_distance_is_the_documented_distance():
    train, other = mixed_frame(30, seed=1), mixed_frame(25, seed=2)
    other = pd.concat([other, train.iloc[:5]], ignore_index=True)  # exact copies: distance 0
    u_other, u_train = distance_space([train, other], MIXED_SCHEMA)[::-1]
    values, index = nearest_distances(u_other, u_train, k=len(train), chunk_rows=7)
    expected = brute_force_distances(other, train, train)
    scale = 1 / math.sqrt(5)
    np.testing.assert_allclose(values.numpy() * scale, np.sort(expected, axis=1), atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(expected, index.numpy(), axis=1), values.numpy() * scale, atol=1e-5)
    assert (values[-5:, 0] == 0).all()


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_nearest_distances_top2_equals_brute_force(chunk_rows):
    generator = torch.Generator().manual_seed(0)
    queries, reference = torch.randn(50, 6, generator=generator), torch.randn(43, 6, generator=generator) + 0.5
    values, index = nearest_distances(queries, reference, k=2, chunk_rows=chunk_rows)
    brute = np.linalg.norm(queries.double().numpy()[:, None] - reference.double().numpy()[None], axis=2)
    expected_index = np.argsort(brute, axis=1)[:, :2]
    np.testing.assert_array_equal(index.numpy(), expected_index)
    np.testing.assert_allclose(values.numpy(), np.take_along_axis(brute, expected_index, axis=1), atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_nearest_distances_match_scikit_learn(k, device):
    """The torch search (the GPU path) finds the neighbour distances scikit-learn's exact search finds, on the
    privacy's own mixed distance space (range-scaled numerics, one-hots, null flags) with exact copies and ties."""
    from sklearn.neighbors import NearestNeighbors

    train, other = mixed_frame(400, seed=3), mixed_frame(300, seed=4)
    other = pd.concat([other, train.iloc[:20]], ignore_index=True)  # exact copies: distance 0
    u_train, u_other = distance_space([train, other], MIXED_SCHEMA)
    on = resolve_device(device)
    values, index = nearest_distances(u_other.to(on), u_train.to(on), k=k, chunk_rows=64)
    search = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(u_train.double().numpy())
    expected, _ = search.kneighbors(u_other.double().numpy())
    np.testing.assert_allclose(values.cpu().numpy(), expected, atol=1e-5)  # float32 against float64
    assert (values[-20:, 0] == 0).all()
    # The indices found are at those distances (ties may pick a different row of equal distance).
    found = np.linalg.norm(u_other.double().numpy()[:, None, :] - u_train.double().numpy()[index.cpu().numpy()], axis=2)
    np.testing.assert_allclose(found, expected, atol=1e-5)


def test_nearest_distances_needs_k_reference_rows():
    with pytest.raises(TabtwinError, match="at least 2 reference rows"):
        nearest_distances(torch.zeros(3, 2), torch.zeros(1, 2), k=2)


@pytest.fixture(scope="module")
def tables():
    train, holdout = make_sample_table(500, seed=1), make_sample_table(500, seed=2)
    return train, holdout, infer_schema(train)


def test_a_copy_of_train_is_flagged_everywhere(tables):
    train, holdout, schema = tables
    copy = train.sample(frac=1.0, random_state=0)  # same rows, another order
    result = privacy_metrics(train, holdout, copy, schema)
    assert result["exact_copy_share"] == 1.0
    assert result["dcr_share"] > 0.95
    assert result["dcr_below_holdout_p5"] > 0.95
    assert result["mia_auc"] > 0.9
    assert result["nndr_median"] == 0.0


def test_a_fresh_draw_from_the_same_distribution_looks_like_the_holdout(tables):
    train, holdout, schema = tables
    result = privacy_metrics(train, holdout, make_sample_table(500, seed=3), schema)
    assert 0.4 <= result["dcr_share"] <= 0.6
    assert 0.4 <= result["mia_auc"] <= 0.6
    assert result["exact_copy_share"] == 0.0 and result["holdout_exact_copy_share"] == 0.0
    assert result["dcr_below_holdout_p5"] < 0.15
    assert abs(result["nndr_median"] - result["holdout_nndr_median"]) < 0.1


def test_a_copy_fails_at_any_split_and_a_fresh_draw_does_not_move(tables):
    """The DCR share measures synthetic and holdout rows against the same training set, so the split ratio
    does not dilute a copy (the earlier equal-size-sample design scored a copy 0.625 at 80/20)."""
    train, holdout, schema = tables
    for size in (125, 500):
        copy = privacy_metrics(train, holdout.iloc[:size], train.copy(), schema)
        assert copy["n_compared"] == size and copy["dcr_share"] > 0.99
        fresh = privacy_metrics(train, holdout.iloc[:size], make_sample_table(500, seed=3), schema)
        assert 0.42 <= fresh["dcr_share"] <= 0.58


def test_closer_than_holdout_share_counts_pairs_and_halves_ties():
    from tabtwin.evaluation.privacy import closer_than_holdout_share

    # pairs (s, h): 0.1<0.2 yes, 0.1<0.3 yes, 0.3 vs 0.2 no, 0.3 vs 0.3 tie -> (1 + 1 + 0 + 0.5) / 4
    assert closer_than_holdout_share(np.array([0.1, 0.3]), np.array([0.2, 0.3])) == 0.625
    assert closer_than_holdout_share(np.zeros(3), np.ones(2)) == 1.0
    assert closer_than_holdout_share(np.ones(3), np.zeros(2)) == 0.0
    assert closer_than_holdout_share(np.array([0.5]), np.array([0.5 + 1e-8])) == 0.5  # within float32 resolution


def test_results_are_json_and_reproducible_for_a_seed(tables):
    import json

    train, holdout, schema = tables
    synthetic = make_sample_table(300, seed=4)
    first = privacy_metrics(train, holdout.iloc[:200], synthetic, schema, seed=5, chunk_rows=64)
    again = privacy_metrics(train, holdout.iloc[:200], synthetic, schema, seed=5, chunk_rows=64)
    assert json.loads(json.dumps(first)) == first == again
    assert set(first["distances"]) == {"synthetic_to_train", "synthetic_to_holdout", "holdout_to_train"}
    assert len(first["distances"]["synthetic_to_train"]) == 300
    assert (first["n_train"], first["n_holdout"], first["n_synthetic"], first["device"]) == (500, 200, 300, str(resolve_device("auto")))


def test_histogram_samples_are_capped():
    train, holdout = make_sample_table(2100, seed=1), make_sample_table(50, seed=2)
    result = privacy_metrics(train, holdout, make_sample_table(2100, seed=3), infer_schema(train))
    assert len(result["distances"]["synthetic_to_train"]) == 2000
    assert len(result["distances"]["holdout_to_train"]) == 50


def test_id_columns_are_ignored(tables):
    train, holdout, schema = tables
    renumbered = train.assign(customer_id=train["customer_id"] + 10_000)
    assert "customer_id" not in privacy_metrics(train, holdout, renumbered, schema)["columns"]
    assert privacy_metrics(train, holdout, renumbered, schema) == privacy_metrics(train, holdout, train, schema)


def test_exact_copies_survive_type_round_trips(tables):
    train, holdout, schema = tables
    round_trip = train.assign(grade=train["grade"].astype(float), count=train["count"].astype(float))
    round_trip["joined"] = round_trip["joined"].dt.strftime("%Y-%m-%d")
    assert exact_copy_share(round_trip, train, schema) == 1.0
    changed = train.assign(amount=train["amount"] + 1e-9)
    assert exact_copy_share(changed, train, schema) == 0.0


def test_holdout_duplicates_of_train_set_the_base_rate(tables):
    train, holdout, schema = tables
    with_duplicates = pd.concat([holdout.iloc[:450], train.iloc[:50]], ignore_index=True)
    assert privacy_metrics(train, with_duplicates, holdout, schema)["holdout_exact_copy_share"] == 0.1


def test_new_categories_and_nulls_in_synthetic_do_not_crash(tables):
    train, holdout, schema = tables
    odd = make_sample_table(100, seed=5)
    odd.loc[:9, "colour"] = "purple"
    odd.loc[10:19, "grade"] = 9
    odd["active"] = odd["active"].astype(object)
    odd.loc[20:29, "active"] = None
    odd.loc[30:39, "amount"] = np.nan  # train has no null amounts
    result = privacy_metrics(train, holdout, odd, schema)
    assert 0 <= result["dcr_share"] <= 1 and np.isfinite(result["nndr_median"])


def test_mixed_frame_with_nulls_runs_end_to_end():
    result = privacy_metrics(mixed_frame(80, 1), mixed_frame(60, 2), mixed_frame(70, 3), MIXED_SCHEMA, chunk_rows=16)
    assert result["columns"] == ["income", "when", "colour", "grade", "flag"]
    assert max(max(v) for v in result["distances"].values()) <= 1.5


def test_empty_or_incomplete_tables_are_clear_errors(tables):
    train, holdout, schema = tables
    with pytest.raises(TabtwinError, match="synthetic table has 0 rows"):
        privacy_metrics(train, holdout, train.iloc[:0], schema)
    with pytest.raises(TabtwinError, match="holdout table has 0 rows"):
        privacy_metrics(train, holdout.iloc[:0], train, schema)
    with pytest.raises(TabtwinError, match=r"synthetic table lacks the modelled column\(s\) \['colour'\]"):
        privacy_metrics(train, holdout, train.drop(columns="colour"), schema)
    with pytest.raises(TabtwinError, match="no modelled"):
        privacy_metrics(train, holdout, train, Schema([ColumnSpec("customer_id", "id")]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_cpu(tables):
    train, holdout, schema = tables
    synthetic = make_sample_table(400, seed=6)
    on_cpu = privacy_metrics(train, holdout, synthetic, schema, device="cpu")
    on_gpu = privacy_metrics(train, holdout, synthetic, schema, device="cuda")
    assert on_gpu["device"].startswith("cuda")
    for key in ("dcr_share", "dcr_below_holdout_p5", "mia_auc", "nndr_median", "exact_copy_share"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=1e-3)
