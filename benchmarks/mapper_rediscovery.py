"""The mapper, given no hints, against the hand-written mappings it should rediscover.

    python benchmarks/mapper_rediscovery.py [--strategy greedy] [--budget 100000]

FuseMax (MICRO 2024, Section 6.3): fusemax_1pass on fusemax_cloud at BERT 1K, 64K and 1M
(B=64, H=12, E=F=64), beside the bundled "+Binding" mapping (simulator/mappings/fusemax.yaml).
FLAT: stable_3pass on flat_cloud at BERT 1K with FLAT's pipelined subtract-and-exp
(chained_ops), beside the bundled FLAT mapping (simulator/mappings/flat.yaml). The same
checks run as tests (tests/mapper/test_search.py); this prints the numbers.
"""

import argparse
import time

from einsim.mapper import search
from einsim.simulator import evaluate, load_architecture, load_mapping
from einsim.workloads import cascade


def _row(name: str, hand, result, cpu_s: float, wall_s: float) -> None:
    speedup = hand.latency_s / result.report.latency_s
    energy = result.report.energy_pj / hand.energy_pj
    kernel = result.mapping.kernels[0]
    print(
        f"{name:<18}{hand.latency_s * 1e3:>14.4f}{result.report.latency_s * 1e3:>14.4f}"
        f"{speedup:>9.4f}x{energy:>11.4f}{len(kernel.stages):>8}{result.gap:>8.1%}"
        f"{cpu_s:>7.2f}{wall_s:>8.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="greedy")
    parser.add_argument("--budget", type=int, default=100_000)
    args = parser.parse_args()
    print(f"strategy {args.strategy}, budget {args.budget:,}, objective latency, no hints")
    print(
        f"{'problem':<18}{'hand ms':>14}{'mapper ms':>14}{'speedup':>10}{'energy x':>11}"
        f"{'stages':>8}{'gap':>8}{'cpu s':>7}{'wall s':>8}"
    )
    arch = load_architecture("fusemax_cloud")
    fusemax = cascade("fusemax_1pass")
    for seq, label in ((1024, "1K"), (65536, "64K"), (1 << 20, "1M")):
        shape = dict(B=64, H=12, E=64, F=64, M=seq, P=seq)
        hand = evaluate(fusemax, arch, load_mapping("fusemax"), shape)
        start, cpu = time.perf_counter(), time.process_time()
        result = search(fusemax, arch, shape, "latency", args.strategy, args.budget)
        wall = time.perf_counter() - start
        _row(f"FuseMax BERT {label}", hand, result, time.process_time() - cpu, wall)
    shape = dict(B=64, H=12, E=64, F=64, M=1024, P=1024)
    flat_arch = load_architecture("flat_cloud")
    stable = cascade("stable_3pass")
    hand = evaluate(stable, flat_arch, load_mapping("flat"), shape)
    start, cpu = time.perf_counter(), time.process_time()
    result = search(
        stable, flat_arch, shape, "latency", args.strategy, args.budget,
        constraints={"chained_ops": [["sub", "exp"]]},
    )  # fmt: skip
    _row("FLAT BERT 1K", hand, result, time.process_time() - cpu, time.perf_counter() - start)
    print(
        "(speedup: hand latency / mapper latency; energy x: mapper energy / hand energy; gap: "
        "mapper / lower bound - 1)"
    )


if __name__ == "__main__":
    main()
