"""Interval plans keeping at most one interval and one gap a row, counted on rows of
tiles one row tall (`_interval_single_rows`: sums over the stored intervals) against the
general union of tile ranges (`_interval_rows_numpy`) and a brute-force count."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check, _drawn_interval_plan, _with_intervals

from einsim import parse_cascade
from einsim.einsum import resolve_shape


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_single_rows_equal_the_union_of_ranges(data):
    """Every registry and user mask the intervals take, both orientations: where a plan
    keeps one interval and one gap a row at most, the sums equal the general count."""
    with pytest.MonkeyPatch.context() as mp:
        occ = _with_intervals(mp)
        plan = _drawn_interval_plan(data, occ)
        if plan is None:
            return
        flipped = occ._interval_transposed(plan)
        for p in (plan, flipped) if flipped is not None else (plan,):
            if p.kept.width > 1 or p.gaps.width > 1:
                continue
            n = data.draw(st.integers(1, 5))
            tx = np.array([data.draw(st.integers(1, p.extent_x + 2)) for _ in range(n)])
            ty = np.ones(n, dtype=np.int64)
            assert occ._single_rows(p, ty).all()
            got, want = np.zeros((n, 3), np.int64), np.zeros((n, 3), np.int64)
            occ._interval_single_rows(p, tx, ty, got)
            occ._interval_rows_numpy(p, tx, ty, want)
            np.testing.assert_array_equal(got, want)


def _small_plan(occ, mask: str):
    """(cascade, sizes, interval plan or None) of one QK[m,p] under `mask` at M=23, P=19."""
    c = parse_cascade(f"inputs: Q[e,p], K[e,m]\nmask: {mask}\nQK[m,p] = Q[e,p] * K[e,m]")
    sizes = resolve_shape(c, {"E": 2, "M": 23, "P": 19, "W": 3})
    einsum = c.einsums[0]
    vars_ = occ._mask_vars_of(c, einsum, sizes, einsum.where)
    return c, sizes, occ._interval_plan(c, sizes, einsum.where, vars_)


@pytest.mark.parametrize(
    "mask", ["m % 3 == 0 and m <= p", "p % 3 != 1 and m <= p + 2", "m % 4 == 1 and m + 2 <= p"]
)
def test_single_row_tilings_match_brute_force(monkeypatch, mask):
    """One interval a row (hip's `n % 8 == 0 and n <= nq` in small), query tiles of 1 mixed
    with taller ones in one call: exact, and the plan takes the single-row sums."""
    occ = _with_intervals(monkeypatch)
    c, sizes, plan = _small_plan(occ, mask)
    assert plan is not None and plan.kept.width <= 1 and plan.gaps.width <= 1
    counted = []
    real = occ._interval_single_rows
    monkeypatch.setattr(
        occ, "_interval_single_rows", lambda *a: counted.append(len(a[1])) or real(*a)
    )
    tilings = [{"P": 1, "M": 1}, {"P": 1, "M": 4}, {"P": 3, "M": 2}, {"P": 1, "M": 30}, {}]
    _check(c, sizes, tilings)
    assert sum(counted) >= 1


@pytest.mark.parametrize(
    "mask", ["m % 3 == 0 and m <= p", "m >= p and p % 2 == 0", "m + 2 <= p", "m >= p + 3"]
)
def test_one_sided_rows_match_brute_force(monkeypatch, mask):
    """Kept intervals (or gaps) that all start at 0 or all reach the last x (a causal row's
    keys and its gaps) unite a row of tiles' ranges without sorting (`_one_sided`): exact
    against brute force on tiles taller than one row, and equal to the sorted union."""
    occ = _with_intervals(monkeypatch)
    c, sizes, plan = _small_plan(occ, mask)
    assert plan is not None
    sides = {occ._one_sided(plan.kept, plan.extent_x), occ._one_sided(plan.gaps, plan.extent_x)}
    assert sides & {"prefix", "suffix"}
    tilings = [{"P": 3, "M": 2}, {"P": 4, "M": 5}, {"P": 19, "M": 1}, {"P": 2, "M": 30}, {}]
    _check(c, sizes, tilings)
    tx = np.array([1, 2, 5, 7, 23, 30])
    ty = np.array([2, 3, 4, 19, 5, 1])
    got, want = np.zeros((6, 3), np.int64), np.zeros((6, 3), np.int64)
    occ._interval_rows_numpy(plan, tx, ty, got)
    monkeypatch.setattr(occ, "_one_sided", lambda runs, n_x: "")
    occ._interval_rows_numpy(plan, tx, ty, want)
    np.testing.assert_array_equal(got, want)
