"""Map the fused QK-softmax-AV chain of one head (M = P = 1024, E = F = 64; fusemax_1pass on
fusemax_cloud) end to end, building the map space included, beside AccelForge's
Fast-and-Fusiest mapper (about 20 s for this problem, as the mapper issue reports it).

    python benchmarks/mapper_one_head.py [--strategy greedy] [--budget 100000]
"""

import argparse
import time

from einsim.mapper import search
from einsim.simulator import load_architecture
from einsim.workloads import cascade

ACCELFORGE_S = 20.0
SHAPE = dict(B=1, H=1, E=64, F=64, M=1024, P=1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="greedy")
    parser.add_argument("--budget", type=int, default=100_000)
    args = parser.parse_args()
    start = time.perf_counter()
    arch = load_architecture("fusemax_cloud")
    result = search(
        cascade("fusemax_1pass"), arch, SHAPE, "latency", args.strategy, args.budget, seed=0
    )
    seconds = time.perf_counter() - start
    print(
        f"one head, {args.strategy} (budget {args.budget:,}): {seconds:.2f} s end to end "
        f"({len(result.space.templates):,} templates, {result.evaluated:,} costed, "
        f"{result.pruned:,} pruned); AccelForge ~{ACCELFORGE_S:.0f} s "
        f"({ACCELFORGE_S / seconds:.0f}x); target <= 1 s: {'met' if seconds <= 1 else 'NOT met'}"
    )
    print(
        f"best latency {result.report.latency_s * 1e6:.2f} us, stages: "
        f"{len(result.mapping.kernels[0].stages)}"
    )


if __name__ == "__main__":
    main()
