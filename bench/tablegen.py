"""A table with Adult's columns and dependencies at any size, written as a partitioned Parquet dataset without
ever being whole in memory (the scale bench's input, bench/scale.py).

    .venv/bin/python bench/tablegen.py --rows 10000000 --out /tmp/adult10m [--part-rows 1000000] [--seed 0]

The generator is a Chow-Liu tree (Chow & Liu 1968) learned from ../shared/data/adult.csv: every column is
discretised (numeric columns into at most 32 quantile bins, categories as themselves), the tree maximises the
summed mutual information between neighbouring columns, and each column is drawn given its parent's code from
the real conditional frequencies. A numeric code is turned into a value drawn uniformly between two neighbouring
real values of its bin (whole numbers stay whole), so values are new while the marginals and the tree's
pairwise dependencies follow Adult's. Each part is drawn from its own seed (the seed and the part's index), so a
part is the same whatever else is generated, and parts are written one at a time: memory is bounded by
--part-rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
ADULT = BENCH.parent.parent / "shared" / "data" / "adult.csv"
NUMERIC_BINS = 32


class TreeTable:
    """The Chow-Liu tree of a table: `sample(n, rng)` draws n rows (a DataFrame with the source's columns)."""

    def __init__(self, real: pd.DataFrame):
        self.columns = list(real.columns)
        self.numeric = {c: pd.api.types.is_numeric_dtype(real[c]) for c in self.columns}
        self.integer = {c: pd.api.types.is_integer_dtype(real[c]) for c in self.columns}
        codes, self.values = {}, {}
        for c in self.columns:
            if self.numeric[c]:
                ranked = real[c].rank(method="first").to_numpy() - 1
                bins = np.minimum((ranked * NUMERIC_BINS / len(real)).astype(int), NUMERIC_BINS - 1)
                codes[c] = bins
                # Per bin, its sorted real values: a drawn value lies between two neighbours of them.
                self.values[c] = [np.sort(real[c].to_numpy()[bins == b]).astype(float) for b in range(NUMERIC_BINS)]
            else:
                cats, code = np.unique(real[c].astype(str), return_inverse=True)
                codes[c], self.values[c] = code, cats
        self.cardinality = {c: int(codes[c].max()) + 1 for c in self.columns}
        self.parent = self._tree(codes)
        self.order = self._topological()
        self.tables = {}
        for c in self.columns:
            parent = self.parent[c]
            if parent is None:
                counts = np.bincount(codes[c], minlength=self.cardinality[c])[None, :].astype(float)
            else:
                counts = np.zeros((self.cardinality[parent], self.cardinality[c]))
                np.add.at(counts, (codes[parent], codes[c]), 1.0)
            counts += 1e-9  # a parent code no child value follows still gets a distribution
            self.tables[c] = np.cumsum(counts / counts.sum(axis=1, keepdims=True), axis=1)

    def _tree(self, codes: dict) -> dict:
        """The maximum spanning tree of pairwise mutual information, rooted at the first column (Prim)."""
        n = len(self.columns)
        info = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                info[i, j] = info[j, i] = _mutual_information(codes[self.columns[i]], codes[self.columns[j]])
        parent = {self.columns[0]: None}
        while len(parent) < n:
            best = max(((info[i, j], i, j) for i, a in enumerate(self.columns) if a in parent
                        for j, b in enumerate(self.columns) if b not in parent))
            parent[self.columns[best[2]]] = self.columns[best[1]]
        return parent

    def _topological(self) -> list[str]:
        order = [c for c, p in self.parent.items() if p is None]
        while len(order) < len(self.columns):
            order += [c for c, p in self.parent.items() if p in order and c not in order]
        return order

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        codes = {}
        for c in self.order:
            parent = self.parent[c]
            cumulative = self.tables[c][np.zeros(n, dtype=int) if parent is None else codes[parent]]
            codes[c] = np.minimum((cumulative < rng.random(n)[:, None]).sum(axis=1), self.cardinality[c] - 1)
        out = {}
        for c in self.columns:
            if self.numeric[c]:
                out[c] = self._numbers(c, codes[c], rng)
            else:
                out[c] = self.values[c][codes[c]]  # plain strings, as a warehouse export holds them
        return pd.DataFrame(out, columns=self.columns)

    def _numbers(self, column: str, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        values = np.empty(len(bins))
        for b in np.unique(bins):
            at = np.flatnonzero(bins == b)
            real = self.values[column][b]
            k = rng.integers(0, max(len(real) - 1, 1), len(at))
            high = real[np.minimum(k + 1, len(real) - 1)]
            values[at] = real[k] + rng.random(len(at)) * (high - real[k])
        return np.round(values).astype(np.int64) if self.integer[column] else values


def _mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())


def part_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed stream of part `index`: independent of how many parts there are and of which are generated."""
    return np.random.SeedSequence([seed, index])


def generate(rows: int, out: Path, part_rows: int = 1_000_000, seed: int = 0, source: Path = ADULT) -> dict:
    """Write `rows` rows as out/part-00000.parquet, ... (each at most `part_rows` rows), and out/_generated.json
    (rows, parts, seed, seconds) last. Parts already there with the right row count are kept (a rerun resumes)."""
    model = TreeTable(pd.read_csv(source, skipinitialspace=False))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    parts = -(-rows // part_rows)
    for index in range(parts):
        n = min(part_rows, rows - index * part_rows)
        path = out / f"part-{index:05d}.parquet"
        if path.exists() and pq.ParquetFile(path).metadata.num_rows == n:
            continue
        frame = model.sample(n, np.random.default_rng(part_seed(seed, index)))
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        tmp.replace(path)
    info = {"rows": rows, "parts": parts, "part_rows": part_rows, "seed": seed, "source": source.name,
            "seconds": round(time.perf_counter() - start, 1)}
    (out / "_generated.json").write_text(json.dumps(info, indent=2))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--part-rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    info = generate(args.rows, args.out, args.part_rows, args.seed)
    print(json.dumps(info), file=sys.stdout)


if __name__ == "__main__":
    main()
