"""CPU time of the first count of a user-written filter, and where numpy stops paying.

Prints measured numbers (no assertions):

1. a fresh process per filter (numba not loaded, no kernel compiled): CPU time of the first
   `occupancy()` of a new, small (64 x 48 keys x queries) filter the closed form does not
   take, counted as occupancy does now (numpy while the structure's spaces stay under
   `NUMPY_POINTS`) and as before (`NUMPY_POINTS = 0`: numba imported and the kernel
   compiled on the first count).
2. warm (kernel compiled) against numpy on spaces of 2^8 .. 2^24 points: CPU time of one
   count each and the ratio, the measurement NUMPY_POINTS comes from.

Run: python benchmarks/occupancy_first_filter.py [--quick]   (--quick: 2^8 .. 2^20 in 2.)
"""

from __future__ import annotations

import subprocess
import sys
import time

FILTERS = (
    "(m // 3) % 2 == (p // 5) % 2 and m + p != 7",
    "m * m + p * p < 900 or (m - p) % 7 == 0",
    "max(m, p) - min(m, p) < 2.5 or m >= M - 1",
)


def _cascade(mask: str):
    from einsim import parse_cascade

    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]"
    )


def first_count(mask: str, numpy_points: int | None) -> None:
    """(in a child process) the CPU time of the first occupancy() of `mask`."""
    from einsim.einsum import occupancy, resolve_shape

    occ = sys.modules["einsim.einsum.occupancy"]
    if numpy_points is not None:
        occ.NUMPY_POINTS = numpy_points
    cascade = _cascade(mask)
    sizes = resolve_shape(cascade, {"E": 4, "M": 64, "P": 48, "M0": 8})
    start = time.process_time()
    got = occupancy(cascade, sizes, {"P": 4, "M1": 2})["QK"]
    cpu = time.process_time() - start
    print(f"{cpu:.4f} {int(got.points[0])} {'numba' in sys.modules}")


def _child(mask: str, numpy_points: int | None) -> tuple[float, int, bool]:
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import occupancy_first_filter as b; "
        f"b.first_count({mask!r}, {numpy_points!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    cpu, points, numba = out.stdout.split()
    return float(cpu), int(points), numba == "True"


def crossover(top: int) -> None:
    import numpy as np

    from einsim.einsum import resolve_shape
    from einsim.einsum.occupancy import _RUNS, _compiled_grid, _mask_vars_of, _numpy_grid

    occ = sys.modules["einsim.einsum.occupancy"]
    cascade = _cascade(FILTERS[0])
    qk = cascade.einsum("QK")
    t = {"P": 4, "M1": 2}
    occ.NUMPY_POINTS = 0  # the kernel on every count

    def cpu(fn) -> float:
        times = []
        for _ in range(3):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    for k in range(8, top + 1, 2):
        n = 2 ** (k // 2)
        sizes = resolve_shape(cascade, {"E": 4, "M": n, "P": n, "M0": 8})
        vars_ = _mask_vars_of(cascade, qk, sizes, qk.where)

        def kernel(sizes=sizes, vars_=vars_):
            _RUNS.clear()
            return _compiled_grid(cascade, qk, sizes, t, qk.where, vars_)

        def numpy(sizes=sizes, vars_=vars_):
            return _numpy_grid(cascade, qk, sizes, t, qk.where, vars_=vars_)

        a, b = kernel(), numpy()
        same = np.array_equal(a.kept, b.kept) and np.array_equal(a.valid, b.valid)
        tk, tn = cpu(kernel), cpu(numpy)
        print(
            f"   2^{k:<2} points: kernel {tk * 1e3:8.3f} ms, numpy {tn * 1e3:8.3f} ms, "
            f"numpy/kernel {tn / max(tk, 1e-9):5.1f}, equal: {same}"
        )


def main() -> None:
    quick = "--quick" in sys.argv
    print("1. first count of a new small user filter (fresh process each), CPU time")
    for mask in FILTERS:
        now, points, loaded = _child(mask, None)
        before, points_before, _ = _child(mask, 0)
        print(
            f"   {mask!r}: now {now:.3f} s (numba loaded: {loaded}), compiled as before "
            f"{before:.3f} s, {before / max(now, 1e-6):.0f}x; points {points} == {points_before}"
        )
    print("2. one count, kernel already compiled, against numpy (CPU time, best of 3)")
    crossover(20 if quick else 24)


if __name__ == "__main__":
    main()
