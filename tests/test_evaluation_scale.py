"""The evaluation of partitioned tables (evaluation.scale): uniform samples, exact copies over every row."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tabtwin.evaluation.fidelity import auc_interval
from tabtwin.evaluation.privacy import exact_copy_share
from tabtwin.evaluation.scale import exact_copies, uniform_sample
from tabtwin.flows import cli
from tabtwin.pipeline.datasets import open_dataset
from tabtwin.pipeline.schema import infer_schema


def write_parts(frame: pd.DataFrame, folder, sizes) -> None:
    folder.mkdir(parents=True)
    for i, (start, stop) in enumerate(zip(np.r_[0, np.cumsum(sizes)[:-1]], np.cumsum(sizes))):
        pq.write_table(pa.Table.from_pandas(frame.iloc[start:stop], preserve_index=False), folder / f"p{i}.parquet")


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "city": rng.choice(["a", "b", "c", None], n),
        "amount": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0, 1, n).round(1)),
        "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 50, n), unit="D"),
        "flag": rng.random(n) < 0.5,
        "row": np.arange(n) + seed * 10_000,  # where a row came from (an id column: not compared)
    })


def test_a_uniform_sample_draws_from_every_part_in_proportion_and_repeats_with_its_seed(tmp_path):
    frame = table(1000, 0)
    write_parts(frame, tmp_path / "t", [100, 300, 600])
    parts = open_dataset(tmp_path / "t")
    sample = uniform_sample(parts, 500, seed=3)
    assert len(sample) == 500 and sample["row"].is_unique
    per_part = np.histogram(sample["row"], bins=[0, 100, 400, 1000])[0]
    assert np.all(np.abs(per_part - [50, 150, 300]) < 40), per_part  # hypergeometric: sd about 5-11
    assert uniform_sample(parts, 500, seed=3).equals(sample)
    assert not uniform_sample(parts, 500, seed=4).equals(sample)
    whole = uniform_sample(parts, 5000, seed=3)
    assert whole["row"].tolist() == list(range(1000))


def test_exact_copies_count_every_row_alike_in_one_process_on_dask_and_in_memory(tmp_path):
    train = table(900, 0)
    synthetic = table(700, 1)
    synthetic.iloc[:37] = train.iloc[100:137].to_numpy()  # planted copies, nulls included
    synthetic = synthetic.astype(train.dtypes.to_dict())
    holdout = table(300, 2)
    holdout.iloc[:4] = train.iloc[800:804].to_numpy()
    holdout = holdout.astype(train.dtypes.to_dict())
    schema = infer_schema(train)
    for name, frame, sizes in (("train", train, [300, 300, 300]), ("synthetic", synthetic, [350, 350]),
                               ("holdout", holdout, [300])):
        write_parts(frame, tmp_path / name, sizes)
    parts = {name: open_dataset(tmp_path / name) for name in ("train", "synthetic", "holdout")}
    expected = {"synthetic": round(exact_copy_share(synthetic, train, schema) * 700),
                "holdout": round(exact_copy_share(holdout, train, schema) * 300)}
    local = exact_copies({"synthetic": parts["synthetic"], "holdout": parts["holdout"]}, parts["train"], schema)
    assert local == expected and local["synthetic"] >= 37 and local["holdout"] >= 4
    in_memory = exact_copies({"synthetic": synthetic, "holdout": holdout}, train, schema)
    assert in_memory == expected
    from distributed import Client

    from tabtwin.flows.cluster import local_cluster

    with local_cluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        assert exact_copies({"synthetic": parts["synthetic"], "holdout": parts["holdout"]}, parts["train"], schema,
                            client=client) == expected


def test_the_auc_interval_is_hanley_and_mcneils():
    low, high = auc_interval(0.5, 1000, 1000)
    # At AUC 0.5 their standard error is the Mann-Whitney statistic's under the null: sqrt((n+m+1) / (12 n m)).
    assert (high - low) / 2 == pytest.approx(1.959964 * np.sqrt(2001 / (12 * 1000 * 1000)), rel=1e-3)
    narrow, wide = auc_interval(0.8, 20_000, 20_000), auc_interval(0.8, 200, 200)
    assert narrow[0] < 0.8 < narrow[1] and narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5
    assert auc_interval(1.0, 50, 50) == (1.0, 1.0)


def test_evaluate_reads_partitioned_tables_and_states_its_samples(tmp_path, capsys):
    train, holdout, synthetic = table(1200, 0), table(400, 2), table(1200, 1)
    synthetic.iloc[:30] = train.iloc[:30].to_numpy()
    synthetic = synthetic.astype(train.dtypes.to_dict())
    write_parts(train.drop(columns="row"), tmp_path / "train", [600, 600])
    write_parts(synthetic.drop(columns="row"), tmp_path / "syn", [400, 400, 400])
    holdout.drop(columns="row").to_parquet(tmp_path / "holdout.parquet")
    code = cli.main(["evaluate", "--real", str(tmp_path / "train"), "--holdout", str(tmp_path / "holdout.parquet"),
                     "--synthetic", str(tmp_path / "syn"), "--sample-rows", "500", "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    assert code in (0, 3) and "train: checks read a uniform sample of 500 of 1,200 rows" in printed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["meta"]["samples"] == {"train": {"rows": 1200, "sampled": 500},
                                         "holdout": {"rows": 400, "sampled": 400},
                                         "synthetic": {"rows": 1200, "sampled": 500}}
    copies = report["privacy"]["exact_copy_rows"]["synthetic"]
    assert copies >= 30 and report["privacy"]["exact_copy_share"] == copies / 1200
    low, high = report["fidelity"]["detection"]["auc_ci95"]
    assert low <= report["fidelity"]["detection"]["auc"] <= high
