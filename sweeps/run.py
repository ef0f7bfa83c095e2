"""Run a sweep: chunk the points, evaluate the chunks on an Executor, write them as they end.

Backends are `concurrent.futures.Executor`s: the embedded default runs chunks in this
process (or on a local process pool with `workers`), `scheduler="tcp://HOST:PORT"` on a
Dask cluster through `distributed.Client(...).get_executor()`, and any Executor may be
passed. At most a few chunks are in flight per worker, so memory stays bounded and a
killed run loses only the chunks that had not finished.

A local pool whose worker process dies (killed, out of memory) breaks: every chunk in
flight fails with `BrokenProcessPool`. The chunks that finished are written, the lost ones
are resubmitted to a fresh pool with one `SweepWarning` line and run one at a time (so
a chunk that kills every worker is found alone), at most `MAX_WORKER_RETRIES` times per
chunk; past that the run stops with a one-line
`BackendUnavailable`, keeping every finished part (a rerun resumes). A chunk is written by
the parent only when its result arrives, so a retry never duplicates a point.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from einsim.einsum import BackendUnavailable, SpecError

from .spec import MAX_POINTS, SweepSpec, SweepWarning, load_spec, point_id
from .store import Store, evaluate_table, schema

#: Points per task when no axis is batchable: a few hundred (a chunk then takes ~0.3 s).
CHUNK_POINTS = 256
#: The largest chunk a batchable space gets (a template's points in one `evaluate_batch`).
MAX_CHUNK_POINTS = 8192
#: How many times a chunk is resubmitted after the pool running it lost a worker process.
MAX_WORKER_RETRIES = 3


@dataclass(frozen=True, slots=True)
class SweepProgress:
    """Where a running sweep stands, passed to a progress callback after each chunk."""

    done: int
    total: int
    invalid: int
    errors: int
    elapsed_s: float


@dataclass(frozen=True)
class SweepResult:
    """What `sweep` did. `to_pandas()` reads the results (the output, or kept in memory)."""

    spec: SweepSpec
    output: Path | None
    points: int
    evaluated: int
    skipped: int
    invalid: int
    errors: int
    wall_s: float
    table: pa.Table | None = field(default=None, repr=False)

    @property
    def failed(self) -> int:
        """Points of this run without a valid result (invalid or raised)."""
        return self.invalid + self.errors

    @property
    def all_failed(self) -> bool:
        """Whether this run evaluated points and none of them gave a valid result (the
        CLI then exits with status 1)."""
        return self.evaluated > 0 and self.failed == self.evaluated

    @property
    def points_per_s(self) -> float:
        return self.evaluated / self.wall_s if self.wall_s > 0 else 0.0

    def to_pandas(self):
        if self.table is not None:
            return self.table.to_pandas()
        import pandas as pd

        return pd.read_parquet(self.output)

    def summary(self) -> str:
        where = f" -> {self.output}" if self.output else ""
        done = f" ({self.skipped:,} already done)" if self.skipped else ""
        return (
            f"{self.spec.name}: {self.points:,} points{done}, {self.evaluated:,} evaluated in "
            f"{self.wall_s:.1f} s ({self.points_per_s:,.0f} points/s); {self.invalid:,} "
            f"invalid, {self.errors:,} errors{where}"
        )


class InlineExecutor(cf.Executor):
    """The embedded backend: runs each task in this process when it is submitted."""

    def submit(self, fn, /, *args, **kwargs):
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the caller through the future
            if not isinstance(error, Exception):
                raise
            future.set_exception(error)
        return future


def default_chunk_size(spec: SweepSpec) -> int:
    """A few hundred points, or one template's batch (up to `MAX_CHUNK_POINTS`)."""
    inner = 1
    for axis in spec.axes:
        if axis.batchable:
            inner *= len(axis)
    return max(CHUNK_POINTS, min(inner, MAX_CHUNK_POINTS))


def _chunks(spec: SweepSpec, done: set[str], size: int) -> Iterator[Sequence[int]]:
    """Point indices per task: plain ranges, or the indices not yet done when resuming."""
    if not done:
        for start in range(0, spec.size, size):
            yield range(start, min(start + size, spec.size))
        return
    chunk: list[int] = []
    for index, point in enumerate(spec.points()):
        if point_id(point) in done:
            continue
        chunk.append(index)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True, slots=True)
class _Backend:
    """An executor, how many tasks it runs at once, how to close it, how to replace it
    after a worker died (None: it cannot be), and the exceptions that mean a worker died."""

    executor: cf.Executor
    parallelism: int
    close: Callable[[], None]
    renew: Callable[[], _Backend] | None = None
    died: tuple[type[BaseException], ...] = (cf.BrokenExecutor,)


def _local_pool(workers: int) -> _Backend:
    pool = cf.ProcessPoolExecutor(max_workers=workers)
    return _Backend(
        pool,
        workers,
        lambda: pool.shutdown(cancel_futures=True),
        renew=lambda: _local_pool(workers),
    )


def _backend(scheduler, executor, workers) -> _Backend:
    """The requested backend: a given executor, a Dask cluster, a local pool, or inline."""
    if executor is not None:
        if scheduler is not None or workers:
            raise SpecError("sweep: give one of executor, scheduler and workers")
        return _Backend(executor, getattr(executor, "_max_workers", 4), lambda: None)
    if scheduler is not None:
        if workers:
            raise SpecError("sweep: workers is for the local pool; a Dask cluster has its own")
        try:
            from distributed import Client, KilledWorker
        except ImportError:
            raise BackendUnavailable(
                "a Dask scheduler needs dask.distributed: pip install 'einsim[dist]'"
            ) from None
        if hasattr(scheduler, "get_executor"):
            client = scheduler
        else:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as error:
                why = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise BackendUnavailable(
                    f"cannot reach the Dask scheduler at {scheduler}: {why}"
                ) from None
        threads = sum(client.nthreads().values()) or 1
        owned = client is not scheduler
        close = client.close if owned else lambda: None
        # Dask retries a task whose worker died itself; KilledWorker means it gave up.
        return _Backend(client.get_executor(), threads, close, died=(KilledWorker,))
    if workers is not None and workers > 1:
        return _local_pool(workers)
    return _Backend(InlineExecutor(), 1, lambda: None)


def _recover(backend: _Backend, lost, kept: int) -> _Backend:
    """A fresh backend after a worker died under `lost` chunks, with one warning line;
    one-line `BackendUnavailable` when it cannot be replaced or a chunk ran out of retries."""
    points = sum(len(chunk) for chunk, _ in lost)
    worst = max(retries for _, retries in lost)
    if backend.renew is None or worst > MAX_WORKER_RETRIES:
        why = (
            f"{worst} times on the same points"
            if backend.renew is not None
            else "and this executor cannot be restarted"
        )
        raise BackendUnavailable(
            f"sweep: a worker process died {why} ({points:,} points unfinished); the "
            f"{kept:,} finished points are kept: rerun to resume (without --workers to see "
            "the error in this process)"
        )
    warnings.warn(
        f"sweep: a worker process died (killed, or out of memory); retrying its "
        f"{points:,} unfinished points on a fresh pool (retry {worst} of {MAX_WORKER_RETRIES})",
        SweepWarning,
        stacklevel=3,
    )
    backend.close()
    return backend.renew()


def _reporter(progress, total: int):
    """A callable taking a `SweepProgress`, and one that closes it."""
    if callable(progress):
        return progress, lambda: None
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return (lambda _: None), lambda: None
    from tqdm import tqdm

    bar = tqdm(
        total=total, unit="pt", unit_scale=total >= 10_000, dynamic_ncols=True, file=sys.stderr
    )

    def update(state: SweepProgress) -> None:
        bar.update(state.done - bar.n)
        bar.set_postfix(invalid=state.invalid, errors=state.errors, refresh=False)

    return update, bar.close


def sweep(
    space: str | Path | Mapping | SweepSpec,
    output: str | Path | None = None,
    *,
    scheduler: str | object | None = None,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool | Callable[[SweepProgress], None] | None = None,
    overwrite: bool = False,
    max_points: int = MAX_POINTS,
) -> SweepResult:
    """Evaluate every point of a design space; write one row per point as Parquet parts.

    Args:
        space: a sweep spec: a YAML path, a bundled example name (`fusemax_pareto`), a dict
            of the same form, or a `SweepSpec`.
        output: a directory (e.g. `results.parquet`) to write the Parquet dataset to; a
            rerun into the same directory skips the points already there. None keeps the
            results in memory (`SweepResult.table`).
        scheduler: a Dask scheduler address (`tcp://HOST:PORT`) or a `distributed.Client`.
        executor: any `concurrent.futures.Executor` to run the chunks on.
        workers: run on a local process pool of this many processes (default: in-process).
        chunk_size: points per task (default `default_chunk_size`).
        progress: a callable receiving a `SweepProgress` after each chunk, True for a tqdm
            bar on stderr, False for none; None shows the bar when stderr is a terminal.
        overwrite: replace the results of a *different* sweep found in `output` (a
            directory holding anything else is always refused).
        max_points: refuse a spec of more points than this (default `MAX_POINTS`).

    Returns:
        A `SweepResult`: counts, wall time, and the table when `output` is None.

    Output: one writer per directory (a lock file, taken over when its run is dead), an
    atomic manifest, parts renamed into place when complete; see `store` and `lock`.

    Warns:
        SweepWarning: duplicate spec values merged, a stale lock taken over, a worker
            process that died and whose chunks are retried (one line each).

    Raises:
        SpecError: an invalid spec, or an output that is foreign, damaged, in use, or holds
            a different sweep (one line each).
        OSError: the output cannot be written (no space left, read-only): one line; the
            finished parts stay and a rerun resumes.
        BackendUnavailable: a scheduler without dask.distributed installed, or worker
            processes that kept dying (finished parts kept).

    Example:
        BERT at 16K tokens on FuseMax with 64, 128 and 256 columns: compute-bound, so
        twice the columns take half the time.

        >>> result = sweep({"fixed": {"arch": "fusemax_cloud", "mapping": "fusemax",
        ...     "model": "bert_base", "seq_len": 16384},
        ...     "axes": {"arch.units.2d.cols": [64, 128, 256]}}, progress=False)
        >>> result.points, result.invalid, result.errors
        (3, 0, 0)
        >>> [round(v * 1e3, 1) for v in result.to_pandas().latency_s]
        [1837.2, 920.3, 465.2]
    """
    spec = load_spec(space, max_points=max_points)
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise SpecError(f"sweep: chunk_size must be a positive integer, got {chunk_size!r}")
    size = chunk_size or default_chunk_size(spec)
    start = time.perf_counter()
    store = Store(output, spec, overwrite) if output is not None else None
    table_schema = store.schema if store else schema(spec)
    done_ids = store.done if store else set()
    total = spec.size - len(done_ids)
    report, close_report = _reporter(progress, total)
    kept: list[pa.Table] = []
    counts = {"done": 0, "invalid": 0, "errors": 0}

    def finish(future: cf.Future) -> None:
        table = future.result()
        if store:
            store.write(table)
        else:
            kept.append(table)
        errors = table.column("error").null_count
        errors = len(table) - errors
        valid = table.column("valid").to_numpy(zero_copy_only=False)
        counts["done"] += len(table)
        counts["errors"] += errors
        counts["invalid"] += int((~valid).sum()) - errors
        elapsed = time.perf_counter() - start
        report(SweepProgress(counts["done"], total, counts["invalid"], counts["errors"], elapsed))

    try:
        backend = _backend(scheduler, executor, workers)
    except BaseException:
        close_report()
        if store:
            store.close()
        raise
    pending: dict[cf.Future, tuple[Sequence[int], int]] = {}  # future -> (chunk, retries)
    retry: deque[tuple[Sequence[int], int]] = deque()
    chunks = _chunks(spec, done_ids, size)

    def fill() -> None:
        """Submit chunks: up to 2 per worker; after a worker died, the chunks it took down
        run one at a time, so a chunk that kills every worker it runs on (a crash, the OOM
        killer) uses up only its own retries and the others finish."""
        while True:
            if retry:
                if pending:
                    return
                task = retry.popleft()
            elif (
                any(retries for _, retries in pending.values())
                or len(pending) >= 2 * backend.parallelism
            ):
                return
            else:
                task = (next(chunks, None), 0)
                if task[0] is None:
                    return
            try:
                future = backend.executor.submit(evaluate_table, spec, task[0], table_schema)
            except backend.died as error:  # the pool broke before we saw it: lost too
                future = cf.Future()
                future.set_exception(error)
            pending[future] = task

    try:
        fill()
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            if any(isinstance(f.exception(), backend.died) for f in finished):
                # every chunk in flight on a broken pool fails: collect them all
                finished, _ = cf.wait(pending)
            lost: list[tuple[Sequence[int], int]] = []
            for future in finished:
                task = pending.pop(future)
                if isinstance(future.exception(), backend.died):
                    lost.append((task[0], task[1] + 1))
                else:
                    finish(future)
            if lost:
                backend = _recover(backend, lost, counts["done"] + len(done_ids))
                retry.extend(lost)
            fill()
    finally:
        for future in pending:
            future.cancel()
        backend.close()
        close_report()
        if store:
            store.close()
    return SweepResult(
        spec=spec,
        output=Path(output) if output is not None else None,
        points=spec.size,
        evaluated=counts["done"],
        skipped=len(done_ids),
        invalid=counts["invalid"],
        errors=counts["errors"],
        wall_s=time.perf_counter() - start,
        table=(pa.concat_tables(kept) if kept else table_schema.empty_table())
        if store is None
        else None,
    )
