"""Fits of partitioned tables: encoder statistics part by part (here and on Dask), the flagship trained on codes
streamed from the parts, and data-parallel training over 2 Dask worker processes (generators.sharded,
flows.fitting)."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tabtwin.flows import cli
from tabtwin.flows.fitting import fit_partitioned
from tabtwin.generators import load_model
from tabtwin.generators.autoregressive import AutoregressiveGenerator
from tabtwin.generators.sharded import Rows
from tabtwin.pipeline.binning import BinnedEncoder
from tabtwin.pipeline.datasets import open_dataset
from tabtwin.pipeline.encoding import TableEncoder
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.jsonable import jsonable
from tabtwin.pipeline.schema import infer_schema
from tabtwin.pipeline.streaming import encode_rows, fit_on_parts, row_ranges

SIZES = [150, 400, 51, 300, 100]  # uneven parts, an odd count (the tree's last merge has no pair), 1,001 rows
SMALL = dict(hidden=16, epochs=2, batch_size=64, device="cpu")


def frame(n: int = sum(SIZES), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c", None], n, p=[0.5, 0.3, 0.15, 0.05])
    return pd.DataFrame({
        "customer_id": np.arange(n),
        "group": group,
        "amount": np.where(group == "a", rng.normal(10, 2, n), rng.lognormal(3, 1, n)).round(2),
        "visits": rng.poisson(3, n),
        "joined": pd.to_datetime("2023-01-01") + pd.to_timedelta(rng.integers(0, 400, n), unit="D"),
        "active": rng.random(n) < 0.4,
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The table in memory, and written as a folder of Parquet parts of SIZES rows."""
    df = frame()
    folder = tmp_path_factory.mktemp("table") / "parts"
    folder.mkdir()
    for i, (start, stop) in enumerate(zip(np.r_[0, np.cumsum(SIZES)[:-1]], np.cumsum(SIZES))):
        pq.write_table(pa.Table.from_pandas(df.iloc[start:stop], preserve_index=False), folder / f"p{i}.parquet")
    return df, folder


@pytest.fixture(scope="module")
def cluster():
    from tabtwin.flows.cluster import local_cluster

    with local_cluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def dump(encoder) -> str:
    return json.dumps(jsonable(encoder.to_dict()), sort_keys=True)


def weights(model) -> dict:
    return {k: v.clone() for k, v in model.net_.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


ENCODERS = [(BinnedEncoder, dict(max_categories=2)), (TableEncoder, dict(max_fit_rows=300))]


def test_the_encoder_from_partitions_is_the_in_memory_one_in_one_process_and_on_dask(data, cluster):
    from distributed import Client

    df, folder = data
    parts, schema = open_dataset(folder), infer_schema(df)
    with Client(cluster) as client:
        for cls, params in ENCODERS:
            whole = dump(cls(schema, **params).fit(df))
            assert dump(fit_on_parts(cls(schema, **params), parts)) == whole
            assert dump(fit_on_parts(cls(schema, **params), parts, client)) == whole
    assert any(state.rare for state in BinnedEncoder(schema, max_categories=2).fit(df).modelled if hasattr(state, "rare"))


def test_row_ranges_cover_the_table_and_codes_of_a_range_cross_parts(data):
    df, folder = data
    parts, schema = open_dataset(folder), infer_schema(df)
    assert row_ranges(1001, 2) == [(0, 500), (500, 1001)] and row_ranges(5, 3) == [(0, 1), (1, 3), (3, 5)]
    encoder = fit_on_parts(BinnedEncoder(schema), parts)
    codes = encode_rows(parts, encoder, 120, 620)  # the end of part 0, all of part 1, the start of part 2
    assert codes.dtype == np.int16 and codes.shape == (500, len(encoder.columns))
    assert np.array_equal(codes, encoder.transform(df.iloc[120:620]))


def test_rows_select_lazily_what_indexing_the_tensor_selects():
    codes = torch.arange(60, dtype=torch.int16).view(20, 3)
    order, perm = torch.randperm(20), torch.randperm(15)
    lazy = Rows(codes)[order[5:]][perm][2:9]
    assert len(lazy) == 7 and lazy.shape == (7, 3)
    assert torch.equal(lazy.tensor(), codes[order[5:]][perm][2:9].long())
    assert lazy.tensor().dtype == torch.int64 and torch.equal(Rows(codes)[3:18:4].tensor(), codes[3:18:4].long())


def test_a_folder_streamed_into_codes_trains_the_model_fit_gives_on_the_whole_table(data):
    df, folder = data
    schema = infer_schema(df)
    whole = AutoregressiveGenerator(**SMALL).fit(df, schema)
    streamed, rows = fit_partitioned(folder, AutoregressiveGenerator(**SMALL), log=lambda _: None)
    assert rows == len(df) and streamed.encoder_.schema.to_dict() == schema.to_dict()
    assert same_weights(weights(streamed), weights(whole)) and streamed.history_ == whole.history_


def test_two_workers_train_data_parallel_a_model_that_loads_and_samples_here_and_repeats(data, cluster, tmp_path):
    df, folder = data
    lines = []
    fits = [fit_partitioned(folder, AutoregressiveGenerator(**SMALL, random_state=seed), runner="dask",
                            dask_address=cluster, log=lines.append)[0] for seed in (3, 3, 4)]
    # The ranks trained on different rows, yet end alike: DistributedDataParallel averaged their gradients.
    assert f"the 2 ranks ended with the same weights (sha256 {fits[0].weights_sha256()[:16]}...)" in lines
    first, again, other = (weights(model) for model in fits)
    assert same_weights(first, again) and fits[0].history_ == fits[1].history_
    assert not same_weights(first, other)
    history = fits[0].history_
    assert len(history) == 2 and all(np.isfinite(h["validation_nll"]) for h in history)
    fits[0].save(tmp_path / "model")
    loaded = load_model(tmp_path / "model", device="cpu")
    assert same_weights(weights(loaded), first)
    sample = loaded.sample(300, seed=1)
    assert list(sample.columns) == list(df.columns) and len(sample) == 300
    assert set(sample["group"].dropna()) <= {"a", "b", "c"} and sample["customer_id"].is_unique


def test_the_ranks_agree_on_the_time_budget(data, cluster):
    _, folder = data
    model, _ = fit_partitioned(folder, AutoregressiveGenerator(**{**SMALL, "epochs": 500}, max_seconds=0.5),
                               runner="dask", dask_address=cluster, log=lambda _: None)
    assert model.stop_reason_ == "time budget" and len(model.history_) < 500


def test_a_budget_spent_before_training_is_refused_not_saved(data):
    _, folder = data
    with pytest.raises(TabtwinError, match=r"^the time budget of 0.001 s was spent before training began"):
        fit_partitioned(folder, AutoregressiveGenerator(**SMALL, max_seconds=0.001), log=lambda _: None)


def test_fit_on_dask_from_the_command_line_and_its_refusals(data, cluster, tmp_path, capsys):
    df, folder = data
    code = cli.main(["fit", str(folder), "--out", str(tmp_path / "m"), "--epochs", "1", "--runner", "dask",
                     "--dask-address", cluster, "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "training on 2 workers" in printed and "data-parallel on Dask workers" in printed
    assert "epoch 1/1: steps " in printed and ", loss " in printed and len(load_model(tmp_path / "m", device="cpu").sample(10)) == 10
    df.to_csv(tmp_path / "one.csv", index=False)
    for argv, message in (
        (["fit", str(folder), "--model", "ctgan", "--runner", "dask"], "trains on one-hot rows"),
        (["fit", str(tmp_path / "one.csv"), "--runner", "dask"], "is one table file"),
    ):
        assert cli.main([*argv, "--out", str(tmp_path / "refused"), "--dask-address", cluster]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "refused").exists()
