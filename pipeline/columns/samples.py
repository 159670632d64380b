"""Row samples that merge: the first rows of a column and a seeded uniform sample of them, both chosen by each
row's global index (its position in the whole table), so that a table read whole or in chunks, and partition
results merged in any grouping, keep the same rows."""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_priorities(rows: np.ndarray, seed: int) -> np.ndarray:
    """(n,) uint64 pseudo-random priority of each global row index, a pure function of (row, seed): the
    splitmix64 finaliser (Steele, Lea and Flood 2014, "Fast splittable pseudorandom number generators")."""
    with np.errstate(over="ignore"):
        z = (np.asarray(rows).astype(np.uint64) + np.uint64(1)) * _GOLDEN + _mix(np.uint64(seed % 2**64))
        return _mix(z)


def _mix(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class RowSample:
    """The `size` rows with the smallest keys, with one value each: by row index (`Head`, the first rows) or by
    a seeded hash of it (`BottomK`, a uniform sample without replacement: Cohen and Kaplan 2007, "Summarizing
    data using bottom-k sketches"). Keys are unique per row, so the kept set is the same however the rows
    arrived. Memory: `size` rows."""

    def __init__(self, size: int):
        self.size = int(size)
        self.rows = np.zeros(0, dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.uint64)
        self.values = np.zeros(0)

    def key(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Offer `values` (n,) of global `rows` (n,) int64."""
        if self.size == 0:
            return
        rows = np.asarray(rows, dtype=np.int64)
        keys = self.key(rows)
        if len(self.rows) >= self.size and len(rows):  # only rows that beat the current last can enter
            beats = keys < self.keys.max()
            rows, keys, values = rows[beats], keys[beats], values[beats]
        if not len(rows):
            return
        rows = np.concatenate([self.rows, rows])
        keys = np.concatenate([self.keys, keys])
        values = np.concatenate([self.values.astype(np.asarray(values).dtype, copy=False), values]) \
            if len(self.values) else np.asarray(values)
        keep = np.argsort(keys, kind="stable")[: self.size]
        keep = keep[np.argsort(rows[keep], kind="stable")]  # kept in row order
        self.rows, self.keys, self.values = rows[keep], keys[keep], values[keep]

    def merge_from(self, other: RowSample) -> None:
        self.update(other.rows, other.values)

    def first(self, n: int) -> np.ndarray:
        """The values of the `n` kept rows with the smallest keys, in row order."""
        keep = np.sort(np.argsort(self.keys, kind="stable")[:n])
        return self.values[keep]


class Head(RowSample):
    """The first `size` rows by global row order."""

    def key(self, rows: np.ndarray) -> np.ndarray:
        return rows.astype(np.uint64)


class BottomK(RowSample):
    """A uniform sample of `size` rows, the same for the same `seed` whatever the chunking."""

    def __init__(self, size: int, seed: int):
        super().__init__(size)
        self.seed = int(seed)

    def key(self, rows: np.ndarray) -> np.ndarray:
        return row_priorities(rows, self.seed)
