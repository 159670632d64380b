"""A partitioned table's encoder and codes, computed part by part, so no process holds the whole table.

    encoder = fit_on_parts(BinnedEncoder(schema), table)            # or client=... : on Dask workers
    codes = encode_rows(table, encoder, 0, table.count_rows())      # (rows, columns) int16 where the codes fit

`table` is a `pipeline.datasets.PartitionedTable` or a `pipeline.sql_parts.SqlPartitionedTable` (`parts`,
`part_rows`, `read_part`). `table_statistics` computes each part's `TableStatistics` with the part's global row
offset and merges them, in this process or as a Dask reduction (`client.map` over the parts, then a tree of
pairwise merges on the workers; only the final statistics reach the client); every statistic is the one the whole
table gives (`pipeline.statistics`), so `fit_on_parts` fits the encoder `encoder.fit(table.read())` would.
`encode_rows` reads only the parts that overlap a range of rows (one at a time) and keeps only their codes: a
shard of a data-parallel fit (`row_ranges`), or with the full range a table larger than memory as codes (100M rows
of 15 columns are 3 GB as int16). Source: https://distributed.dask.org/en/stable/client.html (map, submit).
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np

from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import Schema, infer_schema
from tabtwin.pipeline.statistics import TableStatistics


SCHEMA_ROWS = 100_000  # rows of a partitioned table, from every part alike, its schema is inferred from


def partitioned_schema(table, metadata: dict | None = None) -> Schema:
    """The schema of partitioned `table`, inferred from SCHEMA_ROWS rows taken from every part alike
    (`spread`), `metadata` (SDV metadata) overriding it as in `infer_schema`."""
    return infer_schema(table.spread(SCHEMA_ROWS), metadata)


def part_offsets(table) -> list[int]:
    """The global index of each part's first row, in `parts` order."""
    return [0, *accumulate(table.part_rows())][:-1]


def part_statistics(table, schema: Schema, index: int, offset: int, options: dict) -> TableStatistics:
    """The statistics of part `index` of `table`, whose first row is the table's `offset`-th."""
    return TableStatistics(schema, **options).update(table.read_part(index), offset)


def merge_statistics(first: TableStatistics, second: TableStatistics) -> TableStatistics:
    return first.merge(second)


def table_statistics(table, schema: Schema, client=None, **options) -> TableStatistics:
    """The statistics of every row of `table` (`TableStatistics` `options`), part by part: here one part at a
    time, or with a Dask `client` on its workers (parts summarised by `client.map`, merged pairwise in a tree on
    the workers). The result does not depend on how the parts are grouped."""
    offsets = part_offsets(table)
    if client is None:
        stats = TableStatistics(schema, **options)
        for index, offset in enumerate(offsets):
            stats.update(table.read_part(index), offset)
        return stats
    level = client.map(part_statistics, [table] * len(offsets), [schema] * len(offsets), range(len(offsets)),
                       offsets, options=options, pure=False)
    while len(level) > 1:
        pairs = [client.submit(merge_statistics, level[i], level[i + 1], pure=False) for i in range(0, len(level) - 1, 2)]
        level = pairs + level[len(pairs) * 2 :]
    return level[0].result()


def fit_on_parts(encoder, table, client=None):
    """`encoder` (a `TableEncoder` or `BinnedEncoder`, not yet fitted) fitted on every row of `table` from
    `table_statistics` with the options it fits from; returns it. The same encoder as `encoder.fit(table.read())`.
    Raises EncodingError for a table without rows or lacking a schema column (naming the column)."""
    return encoder.fit_statistics(table_statistics(table, encoder.schema, client, **encoder.statistics_options()))


def row_ranges(rows: int, world: int) -> list[tuple[int, int]]:
    """[start, stop) of each of `world` shards of `rows` rows: consecutive, sizes differing by at most one."""
    cuts = [rows * rank // world for rank in range(world + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def code_dtype(encoder) -> np.dtype:
    """The smallest of int16 and int32 that holds every code of the fitted `BinnedEncoder`."""
    return np.dtype(np.int16 if max(encoder.cardinalities, default=1) <= np.iinfo(np.int16).max + 1 else np.int32)


def encode_rows(table, encoder, start: int, stop: int) -> np.ndarray:
    """(stop - start, columns) codes (`code_dtype`) of the table's rows [start, stop) in part order under the
    fitted `BinnedEncoder`, read one overlapping part at a time (memory: the codes and one part). Raises
    EncodingError for values the encoder never saw."""
    out = np.empty((stop - start, len(encoder.columns)), dtype=code_dtype(encoder))
    for index, (offset, rows) in enumerate(zip(part_offsets(table), table.part_rows())):
        low, high = max(start, offset), min(stop, offset + rows)
        if low < high:
            frame = table.read_part(index)
            if len(frame) != rows:
                raise TabtwinError(f"part {index + 1} of the table had {rows:,} rows and now has {len(frame):,}: "
                                   "the table changed during the run; rerun once it is written")
            frame = frame.iloc[low - offset : high - offset]
            out[low - start : high - start] = encoder.transform(frame)
    return out
