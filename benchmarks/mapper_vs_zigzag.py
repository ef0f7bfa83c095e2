"""einsim's mapper beside ZigZag's (zigzag-dse) on one GEMM, and its strategies against budget.

    python benchmarks/mapper_vs_zigzag.py [--budget 100000] [--no-exhaustive] [--seeds 3]

1. Speed, GEMM M = N = 1024, K = 64 on the `systolic` preset (128 x 128 MACs, one buffer,
   DRAM): per strategy, candidates costed per second, wall time (space built included) and
   time to reach within 1% of the best latency (the exhaustive optimum, or the best of every
   run with --no-exhaustive), beside ZigZag's LOMA on the same GEMM and array run in its own
   venv (benchmarks/zigzag/run_zigzag.py; `python -m venv benchmarks/zigzag/.venv &&
   benchmarks/zigzag/.venv/bin/pip install zigzag-dse six`). Both rates come from this one
   run. The two tools' cost models differ, so each one's time-to-1% is to its own best.
2. Quality against budget: best latency of random, greedy, anneal and exhaustive at a few
   budgets (median over seeds for the seeded ones), as a ratio to the best known, on the
   GEMM and on FuseMax BERT 1K (fusemax_1pass on fusemax_cloud, B=64 H=12 E=F=64 M=P=1K).
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

from einsim.einsum import SpecError
from einsim.mapper import build_space, search
from einsim.simulator import evaluate, load_architecture, load_mapping
from einsim.workloads import cascade

HERE = Path(__file__).parent
ZIGZAG_PYTHON = HERE / "zigzag" / ".venv" / "bin" / "python"
GEMM = dict(M=1024, N=1024, K=64)
BERT_1K = dict(B=64, H=12, E=64, F=64, M=1024, P=1024)


def run_zigzag() -> dict | str:
    """ZigZag's JSON, or why it could not run."""
    if not ZIGZAG_PYTHON.exists():
        return (
            f"ZigZag not run: no venv at {ZIGZAG_PYTHON.parent.parent} (python -m venv "
            "benchmarks/zigzag/.venv && benchmarks/zigzag/.venv/bin/pip install zigzag-dse six)"
        )
    args = [str(ZIGZAG_PYTHON), str(HERE / "zigzag" / "run_zigzag.py")]
    args += [f"--{k}={v}" for k, v in GEMM.items()]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return "ZigZag not run: it took more than 30 minutes"
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return f"ZigZag failed (exit {out.returncode}): " + " | ".join(tail)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(cascade_, arch, shape, strategy, budget, seed=0):
    """A search with the time at which each simulator call returned: (result, wall s, stamps)."""
    stamps: list[tuple[float, int]] = []
    start = time.perf_counter()

    def progress(done: int, _total: int) -> None:
        stamps.append((time.perf_counter() - start, done))

    result = search(cascade_, arch, shape, "latency", strategy, budget, seed, progress=progress)
    return result, time.perf_counter() - start, stamps


def time_to(result, stamps, target_s: float) -> float | None:
    """Seconds until a candidate at most `target_s` latency was costed (None: never)."""
    c = result.candidates
    hits = c[c.valid & (c.latency_s <= target_s)]
    if hits.empty:
        return None
    first = int(hits.costed.min())
    return next(t for t, done in stamps if done > first)


def speed(args) -> None:
    arch = load_architecture("systolic")
    gemm = cascade("gemm")
    space = build_space(gemm, arch, GEMM)
    runs = []
    if not args.no_exhaustive:
        runs.append(("exhaustive", space.size))
    runs += [(s, args.budget) for s in ("random", "greedy", "anneal")]
    found = []
    for strategy, budget in runs:
        result, wall_s, stamps = timed(gemm, arch, GEMM, strategy, budget)
        found.append((strategy, budget, result, wall_s, stamps))
    best_s = min(r.report.latency_s for _, _, r, _, _ in found)
    source = "exhaustive optimum" if not args.no_exhaustive else "best of these runs"
    zz = run_zigzag()
    zz_rate = zz["rate_per_s"] if isinstance(zz, dict) else None
    print(
        f"GEMM M={GEMM['M']} N={GEMM['N']} K={GEMM['K']} on systolic 128x128 "
        f"({len(space.templates):,} templates, {space.size:,} candidates before pruning); "
        f"objective latency; reference: {source}, {best_s * 1e9:,.0f} cycles"
    )
    head = (
        f"{'tool / strategy':<22}{'budget':>12}{'costed':>12}{'wall s':>9}{'costed/s':>11}"
        f"{'x ZigZag':>10}{'best cycles':>13}{'to 1% s':>9}"
    )
    print(head)
    print("-" * len(head))
    for strategy, budget, result, wall_s, stamps in found:
        rate = result.evaluated / wall_s
        reach = time_to(result, stamps, 1.01 * best_s)
        print(
            f"{'einsim ' + strategy:<22}{budget:>12,}{result.evaluated:>12,}{wall_s:>9.2f}"
            f"{rate:>11,.0f}{(f'{rate / zz_rate:,.0f}x' if zz_rate else '-'):>10}"
            f"{result.report.latency_s * 1e9:>13,.0f}"
            f"{(f'{reach:.2f}' if reach is not None else 'never'):>9}"
        )
    if isinstance(zz, dict):
        print(
            f"{'ZigZag ' + zz['version'] + ' LOMA':<22}{'-':>12}{zz['evaluated']:>12,}"
            f"{zz['wall_s']:>9.2f}{zz['rate_per_s']:>11,.0f}{'1x':>10}"
            f"{zz['best_latency_cycles']:>13,.0f}{zz['time_to_1pct_s']:>9.2f}"
        )
        print(
            "(ZigZag: LOMA over loop-prime-factor orderings, lpf_limit "
            f"{zz['problem']['lpf_limit']}, spatial mapping fixed to M x N output-stationary; "
            "its best cycles come from its own model, its time-to-1% is to its own best)"
        )
    else:
        print(zz)


def quality(args) -> None:
    budgets = [1_000, 10_000, args.budget]
    seeds = range(args.seeds)
    fusemax_arch = load_architecture("fusemax_cloud")
    problems = [
        ("GEMM 1024x1024x64, systolic", cascade("gemm"), load_architecture("systolic"), GEMM),
        ("FuseMax BERT 1K, fusemax_cloud", cascade("fusemax_1pass"), fusemax_arch, BERT_1K),
    ]
    hand = evaluate(cascade("fusemax_1pass"), fusemax_arch, load_mapping("fusemax"), BERT_1K)
    for title, cascade_, arch, shape in problems:
        size = build_space(cascade_, arch, shape).size
        table: dict[tuple[str, int], object] = {}
        for strategy in ("random", "greedy", "anneal", "exhaustive"):
            for budget in budgets:
                if strategy == "exhaustive":
                    try:
                        r = search(cascade_, arch, shape, "latency", strategy, budget)
                        table[strategy, budget] = [r.report.latency_s]
                    except SpecError:
                        table[strategy, budget] = f"refused (space {size / 1e6:.1f}M)"
                    continue
                runs = [
                    search(cascade_, arch, shape, "latency", strategy, budget, seed)
                    for seed in seeds
                ]
                table[strategy, budget] = [r.report.latency_s for r in runs]
        best = min(v for cell in table.values() if isinstance(cell, list) for v in cell)
        print(f"\n{title}: best latency / best known ({best * 1e6:.4g} us), median of "
              f"{len(seeds)} seeds; exhaustive refuses a budget below the space")  # fmt: skip
        if cascade_.name == "fusemax_1pass":
            print(f"(hand-written FuseMax +Binding mapping: {hand.latency_s / best:.4f}x)")
        print(f"{'strategy':<12}" + "".join(f"{f'budget {b:,}':>26}" for b in budgets))
        for strategy in ("random", "greedy", "anneal", "exhaustive"):
            cells = []
            for budget in budgets:
                cell = table[strategy, budget]
                if isinstance(cell, str):
                    cells.append(cell)
                    continue
                ratios = [v / best for v in cell]
                text = f"{statistics.median(ratios):.4f}"
                if len(ratios) > 1:
                    text += f" (worst {max(ratios):.4f})"
                cells.append(text)
            print(f"{strategy:<12}" + "".join(f"{c:>26}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--no-exhaustive", action="store_true", help="skip the exhaustive GEMM run (19M, ~2 GB)"
    )
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    speed(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
