"""Periodic plans (a filter reading its key and query only through residues: a repeated
pattern) against a brute-force count over every point."""

import importlib
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check, _with_intervals

from einsim import attention, parse_cascade
from einsim.einsum import occupancy, resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")

_PERIODIC_MASKS = (  # (mask, period of m, period of p) for a radix R
    ("m % R == p % R", lambda r: (r, r)),
    ("m // R % 3 == p // R % 3 and m % R <= p % R", lambda r: (3 * r, 3 * r)),  # a grid
    ("(m + p) % R != 1", lambda r: (r, r)),
    ("abs(m // R % 2 - p // 2 % 3) <= 1 or (m - p) % R == 0", lambda r: (2 * r, math.lcm(6, r))),
    ("(2 * m + 3) % R < (p + 1) // 2 % R", lambda r: (r, 2 * r)),
)

_NOT_PERIODIC = (
    "m <= p and m % 3 == 0",
    "m // 3 == p // 3",
    "m % 3 <= p",
)


def _cascade(mask: str):
    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(_PERIODIC_MASKS),
    r=st.integers(2, 5),
    m=st.integers(1, 40),
    p=st.integers(1, 40),
    m0=st.integers(1, 6),
    data=st.data(),
)
def test_periodic_masks_match_brute_force(case, r, m, p, m0, data):
    """Extents longer or shorter than the period and no multiple of it, tiles of every
    side (partial last tiles, tiles past the extent, sides sharing a factor with the
    period or not), both forms of the key: exact, and the periodic plan is the one used
    where the pattern is smaller than the space (the plans tried before it switched off)."""
    mask, periods = case
    c = _cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "R": r})
    side = st.integers(1, 42)
    draw = data.draw
    tilings = [{"P": draw(side), "M": draw(side)} for _ in range(3)]
    tilings += [{"P": draw(side), "M1": draw(st.integers(1, 8))}, {"P": 1, "M": 1}, {}]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        for earlier in ("_difference_plan", "_union_plan", "_kron_plan"):
            mp.setattr(occ, earlier, lambda *args: None)
        _check(c, sizes, tilings)
        einsum = next(e for e in c.einsums if e.output == "QF")
        plan = occ._periodic_plan(c, sizes, einsum.where, ("m", "p"))
        method = occupancy(c, sizes, {"P": 2, "M": 3}, ["QF"])["QF"].method
    period_m, period_p = periods(r)
    smaller = period_m < m or period_p < p  # else the pattern is the whole space
    assert (plan is not None) == smaller
    if smaller:
        assert method == "periodic"
        assert (plan.period_x, plan.period_y) == (min(period_m, m), min(period_p, p))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    grid=st.sampled_from([(3, 4, 3), (2, 5, 2), (4, 3, 3)]),
    periods=st.integers(1, 3),
    extra=st.integers(1, 11),
    m0=st.integers(1, 7),
    data=st.data(),
)
def test_neighborhood_longer_than_its_grid_takes_the_periodic_plan(grid, periods, extra, m0, data):
    """NATTEN 2D on a sequence that is no multiple of the X x Y grid (positions wrap
    around it): no radix divides the extents, the periodic plan counts it, exactly."""
    x, y, kw = grid
    cascade = attention("neighborhood_2d", X=x, Y=y, KW=kw, M0=m0)
    n = periods * x * y + extra
    if n % y == 0:
        n += 1
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "M": n, "P": n})
    filtered = [e.output for e in cascade.einsums if e.where is not None]
    got = occupancy(cascade, sizes, {"P": 3}, filtered)
    assert {o.method for o in got.values()} == {"periodic"}
    draw = data.draw
    tilings = [{"P": draw(st.integers(1, n + 1)), "M1": draw(st.integers(1, n))} for _ in range(3)]
    _check(cascade, sizes, [*tilings, {}], filtered)


@pytest.mark.parametrize("mask", _NOT_PERIODIC)
def test_masks_read_whole_get_no_periodic_plan(mask):
    c = _cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": 40, "P": 37, "M0": 4})
    einsum = next(e for e in c.einsums if e.output == "QF")
    assert occ._periodic_plan(c, sizes, einsum.where, ("m", "p")) is None


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), t=st.integers(1, 70), period=st.integers(1, 12))
def test_periodic_sides_classify_every_tile(n, t, period):
    """Each tile of side t over [0, n) in exactly one class of (start mod period, width)."""
    starts, width, count = occ._periodic_sides(n, min(t, n), period)
    want: dict = {}
    for s in range(0, n, t):
        key = (s % period, min(s + t, n) - s)
        want[key] = want.get(key, 0) + 1
    classes = list(zip(starts.tolist(), width.tolist(), strict=True))
    assert len(classes) == len(set(classes))  # one entry per class
    assert dict(zip(classes, count.tolist(), strict=True)) == want
