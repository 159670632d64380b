"""`tabtwin fit` of a partitioned table: streamed into codes in this process, or data-parallel on Dask workers.

A partitioned table (a folder or glob of Parquet or CSV files, or a database table read in ranges of
`--partition-column`) is never read whole. Its schema comes from rows taken from every part alike, the encoder
from statistics computed part by part and merged (`pipeline.streaming`: here, or as a Dask reduction), and
training runs on the codes alone (`SyntheticGenerator.fit_codes`, 2 bytes a value):

- in this process (no `--runner dask`): every part is encoded in turn into one code matrix;
- with `--runner dask` (a running scheduler at `--dask-address`, or a LocalCluster of `--dask-workers`
  single-threaded processes): every worker is one rank of a torch.distributed group (gloo on CPU, NCCL on CUDA),
  encodes only its consecutive share of the rows (`streaming.row_ranges`: the parts it overlaps) and keeps only
  their codes, and trains the modules in DistributedDataParallel; rank 0 sends the fitted model back, which is
  saved in the single-process format. Seeded fits repeat for a given number of workers. Rank 0 reports each
  epoch through Dask's event log.

The flagship only (`fits_codes`); CTGAN and TVAE train on one-hot rows, and a folder given to them is read whole.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from tabtwin.flows.cluster import cluster_shares, dask_client, limited_threads
from tabtwin.pipeline.datasets import is_partitioned, open_parts
from tabtwin.pipeline.errors import TabtwinError
from tabtwin.pipeline.schema import load_metadata
from tabtwin.pipeline.streaming import encode_rows, fit_on_parts, partitioned_schema, row_ranges

EVENTS = "tabtwin-fit"  # the Dask event topics ranks report on start with this


def from_parts(data, partition_column: str | None, model) -> bool:
    """Whether a table is fitted from its parts' codes rather than read whole: a database table in ranges, or a
    folder or glob for a model (class or instance) that `fits_codes` (CTGAN and TVAE read a folder whole)."""
    return partition_column is not None or (model.fits_codes and is_partitioned(data))


def streams(args, model) -> bool:
    """Whether `fit` trains from codes (this module) rather than on the table read whole: on Dask, or
    `from_parts`."""
    return args.runner == "dask" or from_parts(args.data, args.partition_column, model)


def fit_partitioned(source, model, table: str | None = None, partition_column: str | None = None,
                    partitions: int = 8, metadata: dict | None = None, runner: str = "local",
                    dask_address: str | None = None, workers: int = 2, log=print):
    """`model` (not fitted) fitted on the partitioned table `source` names (`pipeline.datasets.open_parts`), as
    the module docstring says; returns (the model, the table's rows). Raises TabtwinError (one line) for a source
    that is one file, a model that does not fit from codes, or a scheduler that does not answer."""
    start = time.time()
    check_fits_codes(model)
    parts = open_parts(source, table, partition_column, partitions)
    if parts is None:
        raise TabtwinError(f"{source} is one table file: --runner dask fits a partitioned table (a folder or glob "
                           "of files, or a database table with --partition-column); drop --runner dask to fit it here")
    schema = partitioned_schema(parts, metadata)
    if runner != "dask":
        return fit_table(parts, schema, model, log=log, start=start), parts.count_rows()
    with dask_client(dask_address, workers) as client:
        return fit_table(parts, schema, model, client, log, start), parts.count_rows()


def check_fits_codes(model) -> None:
    """A TabtwinError (one line) for a model that does not train from codes."""
    if not model.fits_codes:
        raise TabtwinError(f"the {model.model_name} model trains on one-hot rows, not on codes, so it is not fitted "
                           "part by part or data-parallel: use --model autoregressive, or drop --runner dask and "
                           "--partition-column to fit it in one process on the table read whole")


def fit_table(parts, schema, model, client=None, log=print, start: float | None = None):
    """`model` (not fitted, `fits_codes`) fitted on the partitioned table `parts` (any object with its interface,
    e.g. `pipeline.splits.RowSplit`) under `schema`: in this process, or data-parallel on `client`'s workers;
    returns it. `start`: the `time.time()` the time budget counts from (default: now)."""
    start = time.time() if start is None else start
    check_fits_codes(model)
    encoder = model.codes_encoder(schema)
    rows = parts.count_rows()
    where = "" if client is None else " on the workers"
    encoder = fit_on_parts(encoder, parts, client)
    log(f"encoder fitted on {rows:,} rows in {len(parts.part_rows())} parts{where} ({time.time() - start:.1f} s)")
    if client is not None:
        return data_parallel_fit(client, model, encoder, parts, start, log)
    codes = encode_rows(parts, encoder, 0, rows)
    log(f"encoded: {codes.nbytes / 2**20:,.0f} MiB of {codes.dtype} codes ({time.time() - start:.1f} s)")
    own = model.progress_callback is None
    if own:  # each epoch a line, as rank 0's on a cluster
        model.progress_callback = lambda epoch, epochs, record: log(epoch_line(epoch, epochs, record))
    try:
        return model.fit_codes(encoder, codes, start=start, clock=time.time)
    finally:
        if own:
            del model.progress_callback  # a function: not part of the model


def data_parallel_fit(client, model, encoder, parts, start: float, log=print):
    """Train `model` on `parts` encoded by `encoder`, one rank per worker of `client`'s cluster (ranks in the
    order of the workers' addresses); returns rank 0's model, on the CPU, once every rank's weights are seen to
    be the same. `start` is the `time.time()` the time budget counts from. A rank's failure is raised here (the
    others stop at their next collective, within `sharded.GROUP_TIMEOUT`)."""
    from distributed import as_completed
    from distributed.comm import get_address_host

    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise TabtwinError(f"the Dask cluster at {client.scheduler.address} has no workers; start some "
                           "(`dask worker ADDRESS`) or drop --dask-address for a LocalCluster")
    world, shares = len(workers), cluster_shares(client)
    topic = f"{EVENTS}-{uuid.uuid4().hex[:8]}"  # this fit's: another fit on the cluster reports on its own
    hosts = [get_address_host(address) for address in workers]
    local = [hosts[:rank].count(host) for rank, host in enumerate(hosts)]  # a rank's index on its machine
    port = client.submit(free_port, workers=[workers[0]], pure=False).result()
    client.subscribe_topic(topic, lambda event: log(event[1]))
    log(f"training on {world} worker{'s' * (world != 1)}, data-parallel")
    verbose = model.verbose
    model.set_params(verbose=False)  # the epochs are reported as events, not drawn in the workers' logs
    futures = [client.submit(fit_rank, model, encoder, parts, span, rank, world, hosts[0], port, start,
                             shares.get(address, 1), local[rank], topic, workers=[address],
                             allow_other_workers=False, pure=False)
               for rank, (address, span) in enumerate(zip(workers, row_ranges(parts.count_rows(), world)))]
    try:
        for future in as_completed(futures):
            future.result()  # the first failure, as it happens
    finally:
        client.unsubscribe_topic(topic)
    (fitted, digest), *others = client.gather(futures)
    if any(other != digest for other in others):
        raise TabtwinError("the ranks of the data-parallel fit ended with different weights; refit (a worker's "
                           "torch differs from the others'?)")
    log(f"the {world} ranks ended with the same weights (sha256 {digest[:16]}...)")
    return fitted.set_params(verbose=verbose)


def free_port() -> int:
    """A TCP port free now on this machine (rank 0 listens on it)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def fit_rank(model, encoder, parts, span: tuple[int, int], rank: int, world: int, host: str, port: int,
             start: float, threads: int, local_rank: int, topic: str):
    """One rank, on its worker: the codes of rows `span`, then `fit_codes` in the process group. Returns (the
    fitted model on the CPU, its `weights_sha256`) on rank 0, the digest alone on the others."""
    import torch

    from tabtwin.generators.sharded import process_group
    from tabtwin.pipeline.device import resolve_device

    with limited_threads(threads):
        if torch.cuda.is_available():  # one GPU per rank on a machine with several
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        codes = encode_rows(parts, encoder, *span)
        report(topic, f"rank {rank}: {len(codes):,} rows, {codes.nbytes / 2**20:,.0f} MiB of {codes.dtype} codes")
        if "MALLOC_TRIM_THRESHOLD_" in os.environ and rank == 0:  # `flows.cluster.WORKER_CONFIG`
            report(topic, "this cluster's workers run with MALLOC_TRIM_THRESHOLD_ set, which slows torch down about "
                          "1.4x: start them with the Dask setting in the README's \"One large table, end to end\"")
        if rank == 0:
            model.progress_callback = lambda epoch, epochs, record: report(topic, epoch_line(epoch, epochs, record))
        with process_group(host, port, rank, world, resolve_device(model.device)) as ranks:
            model.fit_codes(encoder, codes, ranks, start=start, clock=time.time)
    digest = model.weights_sha256()
    if rank:
        return digest
    del model.progress_callback
    return model.to("cpu"), digest


def report(topic: str, message: str) -> None:
    from distributed import get_worker

    get_worker().log_event(topic, message)


def epoch_line(epoch: int, epochs: int, record: dict) -> str:
    return f"epoch {epoch}/{epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items())


def fit_command(args, model) -> int:
    """`tabtwin fit DATA ...` from codes (`streams`), its output folder already checked: prints the stages, then
    what was fitted and where it was saved. TabtwinError (one line) for --query, which reads no parts."""
    if args.query is not None:
        raise TabtwinError("--query reads a table whole; a partitioned fit reads --table in ranges of "
                           "--partition-column, or a folder of files")
    metadata = load_metadata(args.metadata) if args.metadata else None
    start = time.perf_counter()
    model, rows = fit_partitioned(args.data, model, table=args.table, partition_column=args.partition_column,
                                  partitions=args.partitions, metadata=metadata, runner=args.runner,
                                  dask_address=args.dask_address, workers=args.dask_workers,
                                  log=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start
    model.save(args.out, overwrite=args.overwrite)
    epochs = len(model.history_)
    how = "data-parallel on Dask workers" if args.runner == "dask" else "streamed from its parts"
    print(f"{model.model_name} fitted on {rows:,} rows in {seconds:.1f} s ({how}, {epochs} epoch{'s' * (epochs != 1)}, "
          f"ended by {model.stop_reason_}); model saved to {Path(args.out)}/")
    return 0
