"""The transposed interval plan built before the compiled kernel would load (its load
charged as time spent counting directly), or not where the kernel is loaded: both exact
against brute force."""

import functools
import itertools

import numpy as np
import pytest
from test_occupancy import _check, _with_intervals

from einsim import parse_cascade
from einsim.einsum import resolve_shape


@pytest.mark.parametrize("loaded", [False, True])
def test_transposed_plan_instead_of_a_kernel_load(monkeypatch, loaded):
    """Query tiles of 1 over 4103 rows (far more rows of query tiles than of key tiles),
    every count too large for numpy (INTERVAL_NUMPY_RANGES = 0): with the kernel not yet
    loaded the first count builds the transposed plan; with it loaded, the plan is counted
    directly (no time spent yet). The counts are exact either way."""
    occ = _with_intervals(monkeypatch)
    monkeypatch.setattr(
        occ,
        "_orientations",
        lambda w, groups, *_: [(*o, None) for o in itertools.permutations(groups)],
    )
    monkeypatch.setattr(occ, "INTERVAL_NUMPY_RANGES", 0)
    # a load charged far past any build time: whether the transposed plan is built hangs on
    # the charge alone, not on the measured CPU time of this plan's build (which a full test
    # run once inflated past KERNEL_LOAD_S / TRANSPOSE_AFTER = 0.6 s)
    monkeypatch.setattr(occ, "KERNEL_LOAD_S", 1e9)
    # every tiling through the union of ranges (not the single-row sums, no kernel there)
    monkeypatch.setattr(occ, "_single_rows", lambda plan, ty: np.zeros(len(ty), bool))
    real = occ._interval_rows_kernel
    kernel = functools.cache(lambda: real())  # this test's own record of a load
    if loaded:
        kernel()
    monkeypatch.setattr(occ, "_interval_rows_kernel", kernel)
    c = parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        "mask: m <= p + 4090 and (m < S or p + 4090 - m < W) and (m // W) % 3 != 1\n"
        "BK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]"
    )
    sizes = resolve_shape(c, {"E": 2, "M": 29, "P": 4103, "M0": 2, "W": 4, "S": 3})
    _check(c, sizes, [{"P": 1, "M1": 1}])
    (plan, memo) = next(iter(occ._PLAN_ROWS.values()))
    assert isinstance(plan, occ._IntervalPlan)
    assert (memo.get("transposed") is not None) == (not loaded)
    assert ("direct_s" in memo) == loaded
    _check(c, sizes, [{"P": 2, "M1": 3}, {"P": 1, "M1": 5}, {"P": 4103, "M1": 2}])


def test_loads_kernel_needs_many_ranges_and_no_kernel(monkeypatch):
    """`_loads_kernel`: true only past INTERVAL_NUMPY_RANGES and before the kernel loads."""
    occ = _with_intervals(monkeypatch)
    c = parse_cascade(
        "inputs: Q[e,p], K[e,m]\nmask: (m // W) % 3 != 1 and m <= p\nQK[m,p] = Q[e,p] * K[e,m]"
    )
    sizes = resolve_shape(c, {"E": 2, "M": 40, "P": 50, "W": 4})
    einsum = c.einsums[0]
    vars_ = occ._mask_vars_of(c, einsum, sizes, einsum.where)
    plan = occ._interval_plan(c, sizes, einsum.where, vars_)
    assert isinstance(plan, occ._IntervalPlan)
    tx, ty = np.array([1, 2]), np.array([1, 3])
    ranges = occ._interval_ranges(plan, ty[~occ._single_rows(plan, ty)])  # what would unite
    kernel = functools.cache(lambda: None)
    monkeypatch.setattr(occ, "_interval_rows_kernel", kernel)
    monkeypatch.setattr(occ, "INTERVAL_NUMPY_RANGES", ranges)
    assert not occ._loads_kernel(plan, tx, ty)
    monkeypatch.setattr(occ, "INTERVAL_NUMPY_RANGES", ranges - 1)
    assert occ._loads_kernel(plan, tx, ty)
    kernel()
    assert not occ._loads_kernel(plan, tx, ty)
