"""Run a sweep: chunk the points, evaluate the chunks on an Executor, write them as they end.

Backends are `concurrent.futures.Executor`s: the embedded default runs chunks in this
process (or on a local process pool with `workers`), `scheduler="tcp://HOST:PORT"` on a
Dask cluster through `distributed.Client(...).get_executor()`, and any Executor may be
passed. At most a few chunks are in flight per worker, so memory stays bounded and a
killed run loses only the chunks that had not finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from einsim.einsum import BackendUnavailable, SpecError

from .spec import SweepSpec, load_spec, point_id
from .store import Store, evaluate_table, schema

#: Points per task when no axis is batchable: a few hundred (a chunk then takes ~0.3 s).
CHUNK_POINTS = 256
#: The largest chunk a batchable space gets (a template's points in one `evaluate_batch`).
MAX_CHUNK_POINTS = 8192


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


def _backend(scheduler, executor, workers):
    """(executor, parallelism, close) for the requested backend."""
    if executor is not None:
        if scheduler is not None or workers:
            raise SpecError("sweep: give one of executor, scheduler and workers")
        return executor, getattr(executor, "_max_workers", 4), lambda: None
    if scheduler is not None:
        if workers:
            raise SpecError("sweep: workers is for the local pool; a Dask cluster has its own")
        try:
            from distributed import Client
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
        return client.get_executor(), threads, (client.close if owned else lambda: None)
    if workers is not None and workers > 1:
        pool = cf.ProcessPoolExecutor(max_workers=workers)
        return pool, workers, lambda: pool.shutdown(cancel_futures=True)
    return InlineExecutor(), 1, lambda: None


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

    Returns:
        A `SweepResult`: counts, wall time, and the table when `output` is None.

    Raises:
        SpecError: an invalid spec, or an output that is foreign, damaged, in use, or holds
            a different sweep (one line each).
        BackendUnavailable: a scheduler without dask.distributed installed.

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
    spec = load_spec(space)
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
        pool, parallelism, close_pool = _backend(scheduler, executor, workers)
    except BaseException:
        close_report()
        if store:
            store.close()
        raise
    pending: set[cf.Future] = set()
    try:
        for chunk in _chunks(spec, done_ids, size):
            while len(pending) >= 2 * parallelism:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    finish(future)
            pending.add(pool.submit(evaluate_table, spec, chunk, table_schema))
        while pending:
            finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                finish(future)
    finally:
        for future in pending:
            future.cancel()
        close_pool()
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
