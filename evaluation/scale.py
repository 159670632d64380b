"""The evaluation of tables too large to read whole: every check on seeded uniform samples whose sizes the report
states, and the exact-copy check over every row.

`evaluate_tables(train, holdout, synthetic, schema)` takes DataFrames or partitioned tables
(`pipeline.datasets.PartitionedTable`, read part by part). Each table is sampled to at most `rows` rows
(`uniform_sample`: how many rows each part gives is one multivariate hypergeometric draw over the parts' row
counts, so every row of the table is equally likely, then the rows within a part are drawn without replacement),
and `report.evaluate` runs on the samples: fidelity, utility, contracts, the distances and the attacks. The
exact copies are counted over every row of the tables instead (`exact_copies`: 128-bit row hashes, joined bucket
by bucket, on Dask workers when a client is given), since a sample of both sides would miss most copies: a
copy is found only when both its synthetic row and the training row it copies are drawn. The report's
`meta.samples` says, per table, how many rows it has and how many the checks read.
"""

from __future__ import annotations

import tempfile
from operator import getitem
from pathlib import Path

import numpy as np
import pandas as pd

from tabtwin.evaluation.gate import GateConfig, apply_gate
from tabtwin.pipeline.datasets import PartitionedTable
from tabtwin.pipeline.schema import Schema

EVALUATION_ROWS = 200_000  # rows per table the sampled checks read at most
BUCKETS = 64  # hash buckets of the exact-copy join: memory per bucket is 1 / BUCKETS of the hashes
# Two hash keys (pandas' hash_pandas_object takes a 16-character key) make a 128-bit row hash: with 1e9 rows on
# each side the chance of any false match is below 1e-20.
HASH_KEYS = ("tabtwin-row-0001", "tabtwin-row-0002")


def table_rows(table: pd.DataFrame | PartitionedTable) -> int:
    return len(table) if isinstance(table, pd.DataFrame) else table.count_rows()


def parts_of(table: pd.DataFrame | PartitionedTable) -> list:
    """What `read` takes: a DataFrame is one part; a partitioned table's parts are its files."""
    return [table] if isinstance(table, pd.DataFrame) else list(range(len(table.parts)))


def read(table: pd.DataFrame | PartitionedTable, part) -> pd.DataFrame:
    return table if isinstance(table, pd.DataFrame) else table.read_part(part)


def uniform_sample(table: pd.DataFrame | PartitionedTable, rows: int, seed: int) -> pd.DataFrame:
    """At most `rows` rows of `table`, each row equally likely, drawn without replacement with numpy's seeded
    generator; all of them, in order, when the table has no more. Memory: one part and the sample."""
    sizes = [len(table)] if isinstance(table, pd.DataFrame) else table.part_rows()
    if sum(sizes) <= rows:
        frames = [read(table, part) for part in parts_of(table)]
    else:
        rng = np.random.default_rng(seed)
        takes = rng.multivariate_hypergeometric(sizes, rows)
        frames = [read(table, part).iloc[np.sort(rng.choice(size, take, replace=False))]
                  for part, size, take in zip(parts_of(table), sizes, takes) if take]
    return pd.concat(frames, ignore_index=True) if len(frames) != 1 else frames[0].reset_index(drop=True)


def row_hashes(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """(rows, 2) uint64: a 128-bit hash of each row's modelled columns, normalised as `privacy.row_hashes`
    normalises them (equal values hash alike across tables and files)."""
    from tabtwin.evaluation.privacy import normalised_rows  # with torch: not at the command line's start

    normalised = normalised_rows(frame, schema)
    return np.column_stack([pd.util.hash_pandas_object(normalised, index=False, hash_key=key).to_numpy()
                            for key in HASH_KEYS])


def bucketed_hashes(table, part, schema: Schema) -> list[np.ndarray]:
    """The part's row hashes split into BUCKETS by their first word, each as a 1-d array of 16-byte values."""
    hashes = row_hashes(read(table, part), schema)
    bucket = hashes[:, 0] % BUCKETS
    return [np.ascontiguousarray(hashes[bucket == b]).view("V16").ravel() for b in range(BUCKETS)]


def count_in(rows: list[np.ndarray], reference: list[np.ndarray]) -> int:
    """How many of `rows` (arrays of 16-byte hashes) are in `reference`."""
    values = np.concatenate(rows) if rows else np.empty(0, "V16")
    known = np.unique(np.concatenate(reference)) if reference else np.empty(0, "V16")
    if not len(values) or not len(known):
        return 0
    found = np.searchsorted(known, values).clip(max=len(known) - 1)
    return int((known[found] == values).sum())


def exact_copies(tables: dict, reference, schema: Schema, client=None) -> dict:
    """{name: rows of `tables[name]` equal to some row of `reference` in every modelled column}, over every row.

    A hash join: each part's 128-bit row hashes are split into BUCKETS by value, then bucket b of each table is
    matched against bucket b of the reference. With a Dask `client` the parts are hashed on the workers and the
    buckets stay there (`client.map` / `client.submit` on futures); without one, each part's buckets are
    spilled to a temporary folder, so one process holds one part and one bucket, not every hash.
    """
    sources = {"reference": reference, **tables}
    if client is not None:
        hashed = {name: client.map(bucketed_hashes, [table] * len(parts_of(table)), parts_of(table),
                                   schema=schema, pure=False) for name, table in sources.items()}
        counts = {name: [client.submit(count_in, [client.submit(getitem, f, b) for f in futures],
                                       [client.submit(getitem, f, b) for f in hashed["reference"]])
                         for b in range(BUCKETS)] for name, futures in hashed.items() if name != "reference"}
        return {name: int(sum(client.gather(futures))) for name, futures in counts.items()}
    with tempfile.TemporaryDirectory(prefix="tabtwin-copies-") as tmp:
        folder = Path(tmp)
        for name, table in sources.items():
            for i, part in enumerate(parts_of(table)):
                for b, values in enumerate(bucketed_hashes(table, part, schema)):
                    np.save(folder / f"{name}-{i}-{b}.npy", values.view(np.uint64).reshape(-1, 2))

        def bucket(name, b):
            return [np.load(folder / f"{name}-{i}-{b}.npy").view("V16").ravel()
                    for i in range(len(parts_of(sources[name])))]

        return {name: sum(count_in(bucket(name, b), bucket("reference", b)) for b in range(BUCKETS))
                for name in tables}


def evaluate_tables(train, holdout, synthetic, schema: Schema, rows: int = EVALUATION_ROWS, client=None,
                    seed: int = 0, **options) -> tuple[dict, dict]:
    """`report.evaluate` on seeded uniform samples of at most `rows` rows of each table (DataFrames or partitioned
    tables), with the exact copies counted over every row (`exact_copies`, on Dask when `client` is given);
    `options` are `evaluate`'s (target, gate, device, run, dp). Returns `evaluate`'s results, with
    `meta.samples` ({table: {"rows", "sampled"}}) and the gate applied to the full-table copy shares, and the
    samples ({"train", "holdout", "synthetic"}: DataFrames) the checks read."""
    from tabtwin.evaluation.report import evaluate

    tables = {"train": train, "holdout": holdout, "synthetic": synthetic}
    samples = {name: uniform_sample(table, rows, seed + i) for i, (name, table) in enumerate(tables.items())}
    results = evaluate(samples["train"], samples["holdout"], samples["synthetic"], schema, seed=seed, **options)
    sizes = {name: table_rows(table) for name, table in tables.items()}
    copies = exact_copies({"synthetic": synthetic, "holdout": holdout}, train, schema, client=client)
    privacy = results["privacy"]
    privacy["exact_copy_share"] = copies["synthetic"] / sizes["synthetic"]
    privacy["holdout_exact_copy_share"] = copies["holdout"] / sizes["holdout"] if sizes["holdout"] else None
    privacy["exact_copy_rows"] = {"synthetic": copies["synthetic"], "holdout": copies["holdout"],
                                  "note": "over every row of the tables, not the samples"}
    results["gate"] = apply_gate(results, options.get("gate") or GateConfig())
    results["meta"]["samples"] = {name: {"rows": sizes[name], "sampled": len(samples[name])} for name in tables}
    return results, samples

