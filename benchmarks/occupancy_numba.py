"""Tile occupancy speed: the closed form over many tilings, and numba against plain numpy.

Prints measured numbers (no assertions):

1. occupancy of a 64K x 64K causal mask for 10^4 random tilings (query tile 16..1024, key
   tile 1..8 tiles of M0 = 128), closed form in one compiled call: first call (plan built,
   kernel loaded) and best of 5 warm calls; the issue's target is under 50 ms.
2. the same mask counted point by point, 128 x 128 tiles at 64K x 64K: the compiled numba
   kernel against the plain numpy evaluation of the filter (the reference executor's
   mask over chunks of whole tile rows, tile sums by np.add.reduceat); both must agree.
3. the same comparison for a mask without a closed form: NATTEN 2D, 128 x 128 grid
   (16K tokens), 13 x 13 window, 128 x 128 tiles.

4. masks without a closed form counted from their kept intervals per query row (the
   `intervals` method) at L = 16K, 64K (and 1M unless --quick): CPU time of the plan (one
   per mask and sizes), of 9 log2(L) mapper-like tilings (query tiles 1 .. L, key tiles
   256 .. 64K; the first call in a process also loads or compiles the counting kernel),
   and, at 16K, the compiled point loop for one tiling (kernel compiled outside the
   timing) with a check that both give the same tile counts.

Run: python benchmarks/occupancy_numba.py [--quick]   (--quick: 16K instead of 64K in 2.,
no 1M in 4.)
"""

from __future__ import annotations

import sys
import time

import numpy as np

from einsim import attention
from einsim.einsum import occupancy, resolve_shape
from einsim.einsum.occupancy import _RUNS, _compiled_grid, _mask_vars_of, _numpy_grid
from einsim.simulator.shape import cascade_names


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _best_cpu(fn, repeat: int) -> float:
    """Best process CPU time: the figure that a loaded shared machine distorts least."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def many_tilings(n_tilings: int = 10_000, n: int = 65_536) -> None:
    cascade = attention("causal", M0=128)
    shape = dict(E=64, F=64, M=n, P=n)
    rng = np.random.default_rng(0)
    tile = {"P": rng.integers(16, 1025, n_tilings), "M1": rng.integers(1, 9, n_tilings)}
    distinct = len({(int(a), int(b)) for a, b in zip(tile["P"], tile["M1"], strict=True)})
    first = _best(lambda: occupancy(cascade, shape, tile, ["QK"]), 1)
    warm = _best(lambda: occupancy(cascade, shape, tile, ["QK"]), 5)
    cpu = _best_cpu(lambda: occupancy(cascade, shape, tile, ["QK"]), 5)
    few = {r: v[:100] for r, v in tile.items()}
    whole = _best(lambda: occupancy(cascade, shape, few), 1)
    got = occupancy(cascade, shape, tile, ["QK"])["QK"]
    print(f"1. causal {n} x {n}, {n_tilings} tilings ({distinct} distinct), method {got.method}")
    print(
        f"   QK only: first call {first * 1e3:.1f} ms, warm {warm * 1e3:.1f} ms wall, "
        f"{cpu * 1e3:.1f} ms CPU (target < 50 ms)"
    )
    print(
        f"   all {len(cascade.einsums)} Einsums (kernel semantics, unfiltered ones per "
        f"tiling), first 100 tilings: {whole:.2f} s"
    )


def numba_vs_numpy(name: str, params: dict, n: int, tile: int) -> None:
    cascade = attention(name, form="stable_3pass", **params)
    sizes = resolve_shape(cascade, dict(E=64, F=64, M=n, P=n))
    qk = cascade.einsum("QK")
    t = {"M": tile, "P": tile}
    vars_ = _mask_vars_of(cascade, qk, sizes, qk.where)
    small = dict(sizes, M=64, P=64)
    _compiled_grid(cascade, qk, small, t, qk.where, vars_)  # compile outside the timing

    def run():
        _RUNS.clear()  # time the kernel, not the cache of recent runs
        return _compiled_grid(cascade, qk, sizes, t, qk.where, vars_)

    compiled = _best(run, 2)
    a = _compiled_grid(cascade, qk, sizes, t, qk.where, vars_)
    start = time.perf_counter()
    b = _numpy_grid(cascade, qk, sizes, t, qk.where)
    numpy_s = time.perf_counter() - start
    same = np.array_equal(a.kept, b.kept) and np.array_equal(a.valid, b.valid)
    closed = occupancy(cascade, sizes, t, ["QK"])["QK"]
    print(f"   {name} {n} x {n}, {tile} x {tile} tiles ({a.kept.size} tiles), equal: {same}")
    print(
        f"   numba {compiled:.2f} s, numpy {numpy_s:.2f} s: numba {numpy_s / compiled:.1f}x "
        f"faster (occupancy() itself uses: {closed.method})"
    )


def intervals(name: str, params: dict, n: int, check: bool) -> None:
    """Plan and 9 log2(L) tilings through the intervals; the point loop for one tiling."""
    occ = sys.modules["einsim.einsum.occupancy"]
    cascade = attention(name, **params)
    side = 1 << (n.bit_length() - 1) // 2
    shape = {"E": 64, "F": 64, "M": n, "P": n, "X": side, "Y": n // side}
    names = cascade_names(cascade)
    sizes = resolve_shape(cascade, {k: v for k, v in shape.items() if k in names})
    qk = cascade.einsum("QK")
    vars_ = _mask_vars_of(cascade, qk, sizes, qk.where)
    occ._interval_plan_cached.cache_clear()
    start = time.process_time()
    plan = occ._interval_plan(cascade, sizes, qk.where, vars_)
    plan_s = time.process_time() - start
    if plan is None:  # more than INTERVALS_STORED intervals (kept and gaps, all rows)
        print(f"   {name} L={n}: no interval plan ({plan_s:.2f} s CPU to find out); the point "
              "loop would visit every point: not run")  # fmt: skip
        return
    m0 = int(sizes["M0"])
    ty = np.repeat(2 ** np.arange(n.bit_length()), 9)
    tx = np.tile(2 ** np.arange(9), n.bit_length())  # M1 tiles: 256 .. 64K keys
    tile = {"P": np.minimum(ty, n), "M1": np.minimum(tx, n // m0)}
    start = time.process_time()
    got = occupancy(cascade, sizes, tile, ["QK"])["QK"]
    count_s = time.process_time() - start
    runs = (len(plan.kept.y0), len(plan.gaps.y0))
    stored = len(plan.kept.lo) + len(plan.gaps.lo)
    print(
        f"   {name} L={n}: method {got.method}, runs (kept, gaps) {runs}, {stored} intervals; plan "
        f"{plan_s:.3f} s CPU, {len(ty)} tilings {count_s:.3f} s CPU (transposed plan if built)"
    )
    if check:
        t = {"P": 128, "M1": 1}
        start = time.process_time()
        _RUNS.clear()
        grid = occ._direct_grid(cascade, qk, sizes, t, qk.where, vars_)
        loop_s = time.process_time() - start
        one = occupancy(cascade, sizes, t, ["QK"])["QK"]
        stats = (one.tiles, one.empty, one.partial, one.full, one.points, one.busy_points)
        same = tuple(int(a[0]) for a in stats) == occ._totals(qk, sizes, t, grid)
        print(f"   point loop, one tiling (128 x {m0}): {loop_s:.2f} s CPU; same counts: {same}")


def main() -> None:
    quick = "--quick" in sys.argv
    many_tilings()
    print("2. point-by-point count, numba vs plain numpy")
    numba_vs_numpy("causal", {}, 16_384 if quick else 65_536, 128)
    print("3. a mask without a closed form")
    numba_vs_numpy("neighborhood_2d", dict(X=128, Y=128, KW=13), 16_384, 128)
    print("4. kept intervals per query row (the intervals method)")
    for n in (16_384, 65_536) if quick else (16_384, 65_536, 1_048_576):
        for name in ("sinks_window", "neighborhood_2d", "power_attention"):
            intervals(name, {}, n, check=n == 16_384)


if __name__ == "__main__":
    main()
