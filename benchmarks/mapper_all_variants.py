"""Every registered attention variant mapped on fusemax_cloud at L = 1K, 16K, 64K, 1M
(B=64, H=12, E=F=64, M=P=L), greedy with its default budget, objective latency: the CPU
time in process (time.process_time of the child, space built included; the machine is
shared, so wall times, in parentheses, are inflated) and the gap of the best found to the
lower bound (`mapper.bound`). Target: under 1 s each in process.

    python benchmarks/mapper_all_variants.py [--lengths 1024,16384] [--variants a,b]
        [--timeout 10] [--repeat 3]

--repeat N runs each cell N times, each in a fresh child (nothing cached from the run
before), and prints the least CPU time (with its wall time): the search is deterministic,
and on a shared machine other jobs only add to a run's time (timeit's rule).

A variant that cannot be mapped on fusemax_cloud (an operator no unit runs) or priced (a
data-dependent selection without a declared density) prints why. Each run happens in a
child process limited to --timeout seconds of CPU (RLIMIT_CPU; and 6x that of wall time),
so one slow variant does not hold the table.
"""

import argparse
import math
import multiprocessing as mp
import resource
import signal
import time

import einsim
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names

BASE = dict(B=64, H=12, E=64, F=64, G=1, A=64, X=32, Y=32, T=4)


def shape_for(built, length: int) -> dict:
    """The issue's shape, plus a grid for 2D/3D neighborhoods (X x Y = L) where they need it."""
    every = BASE | {"M": length, "P": length, "R": length}
    side = 1 << (length.bit_length() - 1) // 2
    every |= {"X": side, "Y": length // side}
    return {k: v for k, v in every.items() if k in cascade_names(built) or k in DEFAULT_BATCH}


def one(variant: str, length: int, queue, cpu_limit_s: float) -> None:
    limit = math.ceil(cpu_limit_s)
    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 1))  # SIGXCPU past the limit
    from einsim.mapper import search
    from einsim.simulator import load_architecture

    try:
        built = einsim.attention(variant)
        arch = load_architecture("fusemax_cloud")
        shape = shape_for(built, length)
        start, cpu = time.perf_counter(), time.process_time()
        result = search(built, arch, shape, "latency", "greedy")
        seconds, wall = time.process_time() - cpu, time.perf_counter() - start
        queue.put(("ok", seconds, result.gap, wall, result.evaluated))
    except einsim.EinsimError as error:
        queue.put(("error", str(error).splitlines()[0][:90]))


def run_cell(context, variant: str, length: int, timeout_s: float) -> tuple:
    """One search of a cell in a fresh child: ("ok", cpu s, gap, wall s, evaluated),
    ("error", why) or ("timeout",)."""
    queue = context.Queue()
    child = context.Process(target=one, args=(variant, length, queue, timeout_s))
    child.start()
    child.join(6 * timeout_s)
    if child.is_alive():
        child.kill()
        child.join()
    if child.exitcode in (-signal.SIGXCPU, -signal.SIGKILL) and queue.empty():
        return ("timeout",)
    return queue.get() if not queue.empty() else ("error", "crashed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,16384,65536,1048576")
    parser.add_argument("--variants", default=None)
    parser.add_argument("--timeout", type=float, default=10.0, help="CPU seconds per cell")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the least CPU")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat: expected a positive integer, got {args.repeat}")
    lengths = [int(x) for x in args.lengths.split(",")]
    variants = args.variants.split(",") if args.variants else list(einsim.ATTENTION)
    context = mp.get_context("fork")  # the parent's imports are shared: times are in process
    header = "".join(f"{f'L={n:,}':>22}" for n in lengths)
    print(f"{'variant':<22}{header}")
    print(f"{'':<22}" + "".join(f"{'cpu (wall) s / gap':>22}" for _ in lengths))
    times, walls, over = [], [], 0
    for variant in variants:
        cells = []
        for length in lengths:
            runs = [run_cell(context, variant, length, args.timeout) for _ in range(args.repeat)]
            if any(found[0] == "timeout" for found in runs):
                cells.append(f"> {args.timeout:.0f} s")
                over += 1
                continue
            found = min(runs, key=lambda x: x[1] if x[0] == "ok" else math.inf)
            if found[0] == "ok":
                _, seconds, gap, wall, _ = found
                times.append(seconds)
                walls.append(wall)
                over += seconds >= 1.0
                cells.append(f"{seconds:.2f} ({wall:.2f}) / {gap:.0%}")
            else:
                cells.append("n/a")
                if length == lengths[0]:
                    print(f"  ({variant}: {found[1]})")
        print(f"{variant:<22}" + "".join(f"{c:>22}" for c in cells))
    if times:
        times.sort()
        print(
            f"{len(times)} mapped: CPU median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s"
            f" (wall max {max(walls):.2f} s); {over} at or over 1 s of CPU (target: under 1 s "
            "each in process)"
        )


if __name__ == "__main__":
    main()
