"""Thread pinning for the benchmarks. It must run before numpy or torch load, so this module imports neither."""

import os


def pin_threads(threads: int | None) -> None:
    """Pin OpenMP, MKL and OpenBLAS to `threads` (None leaves the library defaults); subprocesses inherit it."""
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
