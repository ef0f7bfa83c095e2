"""Evaluations whose work the input does not bound: run in a child process with a deadline.

Most design points cost milliseconds. A masked cascade whose filter has no closed form is
counted point by point (`einsum.occupancy`: the compiled or exact paths), so its work grows
with the product of the filter's rank sizes: sinks + window at 16K tokens is 2.7e8 points,
a 2D neighbourhood mask costs minutes at 4K. No field bound separates the cheap masks
(causal at 2^20 is a closed form) from the dear ones, so the dashboard bounds the time
instead: a point whose filter spans more than `FORK_POINTS` points is evaluated in a forked
child, killed after `DEADLINE_S` (and held to `CHILD_MEMORY_BYTES` of new memory); at most
`SLOTS` such children run at once. Smaller points run in the server process, where the
compiled kernels and caches persist.
"""

from __future__ import annotations

import math
import multiprocessing
import pickle
import threading
from collections.abc import Callable

from einsim.einsum import Cascade, SpecError
from einsim.einsum.ir import rank_of, variables
from einsim.einsum.shape import resolve_shape

#: Filter points above which an evaluation runs in a child process.
FORK_POINTS = 1 << 22
#: Wall-clock limit of one child evaluation, seconds.
DEADLINE_S = 10.0
#: Memory a child may allocate beyond what it inherits, bytes.
CHILD_MEMORY_BYTES = 4 << 30
#: Child evaluations at once (more wait up to `QUEUE_S`, then are refused).
SLOTS = 2
QUEUE_S = 2.0

_slots = threading.BoundedSemaphore(SLOTS)


def filter_points(cascade: Cascade, shape: dict[str, int]) -> int:
    """The largest product of rank sizes under one Einsum's filter: the points a mask
    without a closed form is counted over (0 for a cascade without filters).

    Example:
        >>> from einsim.workloads import cascade
        >>> c = cascade("causal")
        >>> filter_points(c, {"E": 64, "F": 64, "M": 1024, "P": 1024, "M0": 256}) >= 1024**2
        True
    """
    try:
        sizes = resolve_shape(cascade, shape)
    except SpecError:
        sizes = dict(shape)
    most = 0
    for einsum in cascade.einsums:
        if einsum.where is None:
            continue
        ranks = {rank_of(v) for v in variables(einsum.where)}
        most = max(most, math.prod(int(sizes.get(r, 1)) for r in ranks))
    return most


def _child(connection, function: Callable, args: tuple) -> None:  # pragma: no cover (child)
    import resource

    try:
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * resource.getpagesize()
        limit = used + CHILD_MEMORY_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):
        pass  # no /proc: the deadline still bounds the child
    try:
        outcome = ("ok", function(*args))
    except MemoryError:
        outcome = ("error", SpecError(f"needs more than {CHILD_MEMORY_BYTES >> 30} GiB"))
    except Exception as error:  # sent to the parent, which raises it in the callback
        outcome = ("error", error)
    try:
        connection.send_bytes(pickle.dumps(outcome))
    except Exception as error:  # an unpicklable result or error: its text goes instead
        connection.send_bytes(pickle.dumps(("error", SpecError(f"{type(error).__name__}"))))
    connection.close()


def run_bounded(function: Callable, *args, what: str = "this design point"):
    """`function(*args)` in a forked child: its result, or its exception raised here.

    Raises:
        SpecError: the child ran past `DEADLINE_S` (killed), died, or every slot was busy.
    """
    if not _slots.acquire(timeout=QUEUE_S):
        raise SpecError(
            f"{what}: {SLOTS} large evaluations are running; try again in a few seconds"
        )
    try:
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(send, function, args), daemon=True)
        child.start()
        send.close()
        try:
            if not receive.poll(DEADLINE_S):
                raise SpecError(
                    f"{what}: its masks are counted point by point and the count took longer "
                    f"than {DEADLINE_S:g} s, the dashboard's limit; use `einsim evaluate` for it"
                )
            data = receive.recv_bytes()
        except EOFError:
            raise SpecError(f"{what}: the evaluation died (out of memory?)") from None
        finally:
            child.kill()
            child.join(timeout=5)
            receive.close()
    finally:
        _slots.release()
    state, value = pickle.loads(data)
    if state == "error":
        raise value
    return value
