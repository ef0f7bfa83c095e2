"""Map the fused QK-softmax-AV chain of one head (M = P = 1024, E = F = 64; fusemax_1pass on
fusemax_cloud) end to end, building the map space included, beside AccelForge's
Fast-and-Fusiest mapper (about 20 s for this problem, as the mapper issue reports it).
CPU time of this process (time.process_time: the machine is shared) and wall time.

    python benchmarks/mapper_one_head.py [--strategy greedy] [--budget 100000]
"""

import argparse
import time

from einsim.mapper import search
from einsim.simulator import load_architecture
from einsim.workloads import cascade

ACCELFORGE_S = 20.0
TARGET_S = 0.2  # the mapper issue's target (100x AccelForge)
SHAPE = dict(B=1, H=1, E=64, F=64, M=1024, P=1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="greedy")
    parser.add_argument("--budget", type=int, default=100_000)
    args = parser.parse_args()
    start, cpu = time.perf_counter(), time.process_time()
    arch = load_architecture("fusemax_cloud")
    result = search(
        cascade("fusemax_1pass"), arch, SHAPE, "latency", args.strategy, args.budget, seed=0
    )
    seconds, wall = time.process_time() - cpu, time.perf_counter() - start
    print(
        f"one head, {args.strategy} (budget {args.budget:,}): {seconds:.2f} s of CPU "
        f"({wall:.2f} s wall) end to end ({len(result.space.templates):,} templates, "
        f"{result.evaluated:,} costed, {result.pruned:,} pruned); AccelForge ~{ACCELFORGE_S:.0f} s "
        f"({ACCELFORGE_S / seconds:.0f}x); target <= {TARGET_S} s of CPU: "
        f"{'met' if seconds <= TARGET_S else 'NOT met'}"
    )
    print(
        f"best latency {result.report.latency_s * 1e6:.2f} us, stages: "
        f"{len(result.mapping.kernels[0].stages)}"
    )


if __name__ == "__main__":
    main()
