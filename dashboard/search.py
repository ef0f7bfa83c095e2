"""Mapping searches run off the request thread, so the page never blocks.

`SearchJobs` starts `einsim.mapper.search` in a daemon thread per request (on a GPU preset
it searches the grid of GPU tilings, `mapper.gpu.search_gpu`) and answers
polls with a `JobStatus`; the page polls it with a `dcc.Interval` and shows the elapsed
time and the share of the budget costed so far (the mapper's `progress` callback) until
the result arrives. One `SearchJobs` lives in each app
(`create_app`), never at module level.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from einsim.einsum import EinsimError, SpecError

from .bounded import FORK_POINTS, filter_points
from .design import DesignSpec, build_architecture, build_workload, error_message
from .inputs import MAX_BUDGET, MAX_RUNNING_SEARCHES


def search_function() -> Callable | None:
    """`einsim.mapper.search`, or None while the mapper does not provide it."""
    try:
        from einsim import mapper
    except ImportError:
        return None
    found = getattr(mapper, "search", None)
    return found if callable(found) else None


def default_of(parameter: str, fallback: object = None) -> object:
    """The mapper's default for one of `search`'s parameters (strategy, objective, ...)."""
    import inspect

    found = search_function()
    if found is None:
        return fallback
    param = inspect.signature(found).parameters.get(parameter)
    if param is None or param.default is inspect.Parameter.empty:
        return fallback
    return param.default


def objectives() -> tuple[str, ...]:
    """The objectives the mapper optimizes (latency, energy, edp)."""
    try:
        from einsim.mapper.objectives import OBJECTIVES
    except ImportError:
        return ("latency", "energy", "edp")
    return tuple(OBJECTIVES)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """What to search: the design point's workload and architecture, and how."""

    spec: DesignSpec
    strategy: str
    objective: str
    budget: int
    seed: int = 0

    def target(self) -> tuple:
        """What the found mapping is valid for: the workload and the architecture."""
        s = self.spec
        return (s.model, s.seq_len, s.algorithm, s.attention, s.params, s.sizes, s.batch,
                s.phase, s.arch, s.arch_yaml, s.overrides)  # fmt: skip


@dataclass(frozen=True)
class JobStatus:
    """Where a search stands.

    Attributes:
        state: "running", "done" or "failed".
        elapsed_s: seconds since it started (until it ended, once it has).
        message: the error of a failed search.
        result: the mapper's `SearchResult` of a finished one.
        fraction: the share of the budget costed so far (0 to 1), None until the mapper
            reports (or when the search function takes no `progress` callback).
    """

    job: int
    request: SearchRequest
    state: str
    elapsed_s: float
    message: str = ""
    result: object = None
    fraction: float | None = None


def describe(status: JobStatus) -> str:
    """One line for the page: what runs and for how long, or what was found.

    Example:
        >>> request = SearchRequest(DesignSpec(), "greedy", "latency", 2000)
        >>> describe(JobStatus(1, request, "running", 1.25))
        'searching (greedy, latency, budget 2,000): 1.2 s'
        >>> describe(JobStatus(1, request, "running", 1.25, fraction=0.456))
        'searching (greedy, latency, budget 2,000): 1.2 s, 46% of the budget costed'
    """
    r = status.request
    what = f"{r.strategy}, {r.objective}, budget {r.budget:,}"
    if status.state == "running":
        share = ""
        if status.fraction is not None:
            share = f", {status.fraction:.0%} of the budget costed"
        return f"searching ({what}): {status.elapsed_s:.1f} s{share}"
    if status.state == "failed":
        return f"search failed ({what}): {status.message}"
    result = status.result
    strategy = getattr(result, "strategy", r.strategy)  # the strategy run, as asked
    if strategy != r.strategy:
        what = f"{strategy} of GPU tilings, {r.objective}, budget {r.budget:,}"
    evaluated = getattr(result, "evaluated", None)
    counted = f", {evaluated:,} candidates costed" if evaluated is not None else ""
    return f"found ({what}) in {status.elapsed_s:.1f} s{counted}"


def _takes_progress(search: Callable) -> bool:
    """Whether the search function accepts a `progress` callback (einsim's does)."""
    import inspect

    try:
        params = inspect.signature(search).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "progress" or p.kind is p.VAR_KEYWORD for p in params)


class SearchJobs:
    """Searches running in background threads, looked up by job number.

    Args:
        search: the search function (default `einsim.mapper.search`).
        keep: how many finished jobs to remember.
        running: how many searches may run at once (more are refused with a message).
    """

    def __init__(
        self, search: Callable | None = None, keep: int = 8, running: int = MAX_RUNNING_SEARCHES
    ):
        self._search = search
        self._keep = keep
        self._running = running
        self._lock = threading.Lock()
        self._jobs: dict[int, dict] = {}
        self._ids = itertools.count(1)

    @property
    def available(self) -> bool:
        return (self._search or search_function()) is not None

    def start(self, request: SearchRequest) -> int:
        """Start a search; returns its job number at once.

        Raises:
            SpecError: no mapper, a bad budget; EinsimError: a workload or architecture
                that cannot be built (checked before the thread starts).
        """
        search = self._search or search_function()
        if search is None:
            raise SpecError("the mapper (einsim.mapper.search) is not available")
        if isinstance(request.budget, bool) or not isinstance(request.budget, int):
            raise SpecError(f"budget must be a positive integer, got {request.budget!r}")
        if not 1 <= request.budget <= MAX_BUDGET:
            raise SpecError(
                f"budget must be a positive integer up to {MAX_BUDGET:,}, got {request.budget!r}"
            )
        with self._lock:
            running = sum(r["state"] == "running" for r in self._jobs.values())
        if running >= self._running:
            raise SpecError(
                f"{running} searches are running (at most {self._running} at once): wait for one"
            )
        cascade, shape = build_workload(request.spec)
        if filter_points(cascade, shape) > FORK_POINTS:
            raise SpecError(
                f"a search over masks spanning {filter_points(cascade, shape):,} points is "
                "beyond the dashboard (its masks are counted point by point for every "
                "tiling); use `einsim map` for it"
            )
        arch = build_architecture(request.spec)
        job = next(self._ids)
        record = {"request": request, "start": time.perf_counter(), "end": None,
                  "state": "running", "message": "", "result": None, "fraction": None}  # fmt: skip

        def report(done: int, total: int) -> None:
            with self._lock:
                record["fraction"] = min(1.0, done / total) if total else 1.0

        extra = {"progress": report} if _takes_progress(search) else {}

        def run():
            try:
                result = search(
                    cascade, arch, shape, objective=request.objective,
                    strategy=request.strategy, budget=request.budget, seed=request.seed,
                    **extra,
                )  # fmt: skip
                outcome = {"state": "done", "result": result}
            except EinsimError as error:
                outcome = {"state": "failed", "message": error_message(error)}
            except Exception as error:  # a bug in a strategy must not kill the server
                outcome = {"state": "failed", "message": error_message(error)}
            with self._lock:
                record.update(outcome, end=time.perf_counter())

        with self._lock:
            self._jobs[job] = record
            finished = [k for k, r in self._jobs.items() if r["state"] != "running"]
            for old in finished[: max(0, len(finished) - self._keep)]:
                del self._jobs[old]
        threading.Thread(target=run, name=f"einsim-search-{job}", daemon=True).start()
        return job

    def status(self, job: int) -> JobStatus:
        """The state of a job.

        Raises:
            SpecError: an unknown (or forgotten) job number.
        """
        if isinstance(job, bool) or not isinstance(job, int):
            raise SpecError(f"no search job {str(job)[:40]!r}")
        with self._lock:
            record = self._jobs.get(job)
            if record is None:
                raise SpecError(f"no search job {job!r} (it may have been forgotten)")
            end = record["end"] or time.perf_counter()
            return JobStatus(
                job=job,
                request=record["request"],
                state=record["state"],
                elapsed_s=end - record["start"],
                message=record["message"],
                result=record["result"],
                fraction=record["fraction"],
            )

    def wait(self, job: int, timeout_s: float = 60.0) -> JobStatus:
        """Poll until the job ends (for scripts and tests)."""
        deadline = time.perf_counter() + timeout_s
        while True:
            status = self.status(job)
            if status.state != "running" or time.perf_counter() > deadline:
                return status
            time.sleep(0.02)
