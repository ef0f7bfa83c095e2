"""Where the certificate's gap comes from: for the variants with the largest gaps in
`mapper_all_variants.py`, the greedy default's best beside a better mapping the model can
cost (found with constraints, or composed from kernels the space builds) and the lower
bound (`mapper.bound`). fusemax_cloud, B=64, H=12, E=F=64, M=P=L, objective latency.

    python benchmarks/bound_gaps.py [--cases biformer,moh,naive] [--thorough]

Each row prints the greedy best, the other mapping, the bound and both gaps. A better
mapping than greedy's means a search or space weakness (the row says which); the same
best from every strategy at a large budget (--thorough: anneal and random with 1,000,000
candidates on the scaled naive softmax) means the rest of the gap is the bound's.
"""

import argparse
import dataclasses
import time

import einsim
from einsim.mapper import search
from einsim.mapper.bound import lower_bound
from einsim.simulator import Kernel, Overlap, evaluate, load_architecture

SHAPE = dict(B=64, H=12, E=64, F=64)


def _row(case: str, greedy: float, other: float, bound: float, note: str) -> None:
    print(
        f"{case:<24}{greedy:>12.5g}{other:>12.5g}{bound:>12.5g}"
        f"{greedy / bound - 1:>10.1%}{other / bound - 1:>10.1%}  {note}"
    )


def biformer(length: int) -> None:
    """The space forces every fused kernel to keep each intermediate over P on chip with P
    whole, because the whole cascade traverses P twice (QS sums over p, QK iterates it
    again; `mapper.space._kernel_memory` reads `pass_analysis` of the cascade, not of the
    kernel): the attention kernel, which traverses P once, never tiles P, so greedy spills
    QK and SLN. Composed: three routing kernels (QS/QC/QR over NQ x P, KS/KC/KR over
    N x M, AR and the top-k over N x NQ) and fusemax_1pass's best fused kernel."""
    arch = load_architecture("fusemax_cloud")
    built = einsim.attention("biformer")
    side = 1 << (length.bit_length() - 1) // 2  # as mapper_all_variants: X x Y = L
    shape = SHAPE | dict(M=length, P=length, X=side, Y=length // side)
    found = search(built, arch, shape, "latency", "greedy")
    dense = search(
        einsim.attention("fusemax_1pass"), arch, SHAPE | dict(M=length, P=length), "latency"
    )

    def kernel(name, einsums, spatial, on_1d=()):
        return Kernel(
            name=name,
            einsums=tuple(einsums),
            binding=tuple((e, "1d" if e in on_1d else "2d") for e in einsums),
            spatial=(("2d", spatial), ("1d", (spatial[1],))),
            overlap=Overlap.SERIAL,
        )

    routing = (
        kernel("rq", ["QS", "QC", "QR"], ("NQ", "P"), on_1d=["QR"]),
        kernel("rk", ["KS", "KC", "KR"], ("N", "M"), on_1d=["KR"]),
        kernel("rt", ["AR", "T1", "T2", "T3", "T4"], ("N", "NQ")),
    )
    composed = dataclasses.replace(
        dense.mapping, kernels=(*routing, *dense.mapping.kernels), cascade="biformer"
    )
    report = evaluate(built, arch, composed, shape)
    assert report.valid, report.reasons
    note = "(c) space: per-kernel passes; routing | fusemax kernel"
    _row(f"biformer L={length:,}", found.best_value, report.latency_s, found.lower_bound, note)


def moh(length: int) -> None:
    """Greedy settles on the off-chip order M1 outside P, re-reading Q and writing AV per
    key block; forbidding that order (a constraint) finds the causal-like mapping."""
    arch = load_architecture("fusemax_cloud")
    built = einsim.attention("moh")
    shape = SHAPE | dict(M=length, P=length)
    found = search(built, arch, shape, "latency", "greedy")
    other = search(
        built, arch, shape, "latency", "greedy", constraints={"forbid_orders": [["M1", "P"]]}
    )
    note = "(b) search: forbid_orders [[M1, P]]"
    _row(f"moh L={length:,}", found.best_value, other.best_value, found.lower_bound, note)


def naive(thorough: bool) -> None:
    """naive softmax scaled down (L=4096, a 1 MiB buffer: the row/buffer ratio of 64K on
    16 MiB): greedy's best is what anneal and random find with 1,000,000 candidates."""
    arch = load_architecture("fusemax_cloud", {"levels.GB.capacity_bytes": 1 << 20})
    built = einsim.attention("naive_2pass")
    shape = SHAPE | dict(M=4096, P=4096)
    found = search(built, arch, shape, "latency", "greedy")
    best, strategies = found.best_value, ["greedy"]
    if thorough:
        for strategy in ("anneal", "random"):
            start = time.process_time()
            other = search(built, arch, shape, "latency", strategy, budget=1_000_000)
            best = min(best, other.best_value)
            strategies.append(f"{strategy} {time.process_time() - start:.0f} s")
    note = "(a) bound: best of " + ", ".join(strategies)
    _row("naive_2pass 4096/1MiB", found.best_value, best, found.lower_bound, note)
    full = load_architecture("fusemax_cloud")
    for length in (65536, 1048576):
        shape = SHAPE | dict(M=length, P=length)
        found = search(built, full, shape, "latency", "greedy")
        bound = lower_bound(built, full, shape).latency_s
        _row(f"naive_2pass L={length:,}", found.best_value, found.best_value, bound, "greedy")


CASES = {"biformer": lambda t: biformer(65536), "moh": lambda t: moh(65536), "naive": naive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--thorough", action="store_true")
    args = parser.parse_args()
    print(f"{'case':<24}{'greedy s':>12}{'other s':>12}{'bound s':>12}{'gap':>10}{'other':>10}")
    for case in args.cases.split(","):
        CASES[case](args.thorough)


if __name__ == "__main__":
    main()
