"""Whole-model head-to-head speed (issue 15): the `einsim compare` target, timed.

Target: `einsim compare llama3_70b --targets fusemax_cloud,h100_sxm --seq 8192,131072`
(80 layers, 2 phases, 2 targets, mapping included) under 5 s. Each command runs in a fresh
interpreter (import and numba compilation included), three times; wall and CPU seconds
(user + system of the child) are printed, and the median of each. On the shared
development machine CPU time is the steadier number (wall ~ CPU on an idle machine).

Also timed: the same with `--mapping bundled` (no mapper search for masked layers), and the
README's proposed first command, `einsim compare llama3_8b --seq 8192`.

Usage: python benchmarks/estimate_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "target (llama3_70b, 2 targets, 2 seqs, 2 phases)": [
        "compare", "llama3_70b", "--targets", "fusemax_cloud,h100_sxm", "--seq", "8192,131072",
    ],
    "same, --mapping bundled": [
        "compare", "llama3_70b", "--targets", "fusemax_cloud,h100_sxm", "--seq", "8192,131072",
        "--mapping", "bundled",
    ],
    "README first command (llama3_8b, 3 targets)": ["compare", "llama3_8b", "--seq", "8192"],
}  # fmt: skip
TARGET_S = 5.0


def timed(args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of `einsim ARGS` in a child interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "einsim.cli", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, command in COMMANDS.items():
        runs = [timed(command) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"{label}: median wall {wall:.2f} s, CPU {cpu:.2f} s over {args.repeats} runs "
            f"(target {TARGET_S:g} s: CPU {cpu / TARGET_S:.2f}x of it)"
        )


if __name__ == "__main__":
    main()
