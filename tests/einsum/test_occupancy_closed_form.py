"""The closed form of affine masks per piece of rows (sums of floors of arithmetic
progressions) against the row-by-row count and a brute-force count over every point."""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _MASKS, _check

from einsim import parse_cascade
from einsim.einsum import occupancy, resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 40), m=st.integers(1, 30), a=st.integers(-50, 50), b=st.integers(-90, 90))
def test_floor_sum_is_the_sum_of_floors(n, m, a, b):
    assert occ._floor_sum(n, m, a, b) == sum((a * k + b) // m for k in range(n))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from((*_MASKS[:-1], "p - m < W and m <= p + 3 and 3 * m >= p - W")),
    m=st.integers(1, 70),
    p=st.integers(1, 70),
    w=st.integers(1, 30),
    data=st.data(),
)
def test_pieces_equal_the_row_by_row_count(mask, m, p, w, data):
    """Both orientations of every affine plan (several pieces: the window's ramp, a
    shifted causal edge, slopes of 3, dead rows before and after), any tiles."""
    c = parse_cascade(f"inputs: Q[e,p], K[e,m]\nmask: {mask}\nQF[m,p] = Q[e,p] * K[e,m]")
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "W": w})
    qf = c.einsums[0]
    plan = occ._affine_plan(c, qf, sizes, qf.where, ("m", "p"))
    if plan is None:
        return
    for each in (plan, occ._transposed(plan)):
        if each is None or occ._affine_pieces(each) is None:
            continue
        n = data.draw(st.integers(1, 6))
        tx = np.array([data.draw(st.integers(1, each.extent_x + 2)) for _ in range(n)])
        ty = np.array([data.draw(st.integers(1, each.extent_y + 2)) for _ in range(n)])
        got, want = np.zeros((n, 3), np.int64), np.zeros((n, 3), np.int64)
        occ._affine_pieces_rows(each, occ._affine_pieces(each), tx, ty, got)
        occ._affine_rows(each.lo, each.hi, each.ya, each.yb, each.extent_x, each.extent_y,
                         tx, ty, want)  # fmt: skip
        np.testing.assert_array_equal(got, want)


def _mask_cascade(mask: str):
    """QK over partitioned keys (M1, M0), its max LM, and QF over whole keys, all masked."""
    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_MASKS),
    m=st.integers(1, 19),
    p=st.integers(1, 19),
    m0=st.integers(1, 6),
    w=st.integers(1, 9),
    tiles=st.lists(st.integers(1, 20), min_size=4, max_size=4),
)
def test_closed_form_counts_match_brute_force(mask, m, p, m0, w, tiles):
    """Every affine mask counted in closed form whatever its rows (partitioned keys too)."""
    c = _mask_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "W": w, "S": 2})
    a, b, d, f = tiles
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(occ, "AFFINE_CLOSED_ROWS", -1)
        occ._PLAN_ROWS.clear()
        _check(c, sizes, [{"P": a, "M1": b}, {"P": d, "M": f}, {"M": a}, {"P": 1, "M": 1}, {}])
    occ._PLAN_ROWS.clear()


# ------------------------------------------------- unions of affine staircases

_UNION_MASKS = (
    "m <= p and (m < S or p - m < W)",  # sinks + window: the terms overlap in early rows
    "(m < S and m <= p) or (p - m < W and m <= p) or m >= p + W",
    "m < S or m >= M - S",
    "(p - m < W and m <= p) or (m - p < W and m >= p + 2 * W)",
    "m <= p and (m < S or p - m < W or 2 * m < p - 3)",  # a term with slope 1/2
    "m <= p and (m < S or p - m < W) or m < 0",  # a dead term
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_UNION_MASKS),
    m=st.integers(1, 30),
    p=st.integers(1, 30),
    m0=st.integers(1, 5),
    w=st.integers(1, 9),
    s=st.integers(1, 6),
    tiles=st.lists(st.integers(1, 32), min_size=5, max_size=5),
)
def test_union_counts_match_brute_force(mask, m, p, m0, w, s, tiles):
    """An `or` of affine conjunctions counted by pieces: overlapping and disjoint terms,
    dead terms, odd sizes, partial tiles, rows of tiles crossing the cuts."""
    c = _mask_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "W": w, "S": s})
    a, b, d, f, g = tiles
    tilings = [{"P": a, "M": b}, {"P": d, "M1": f}, {"P": 1, "M": g}, {"P": g, "M": 1}, {}]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(occ, "INTERVAL_POINTS", 0)
        occ._union_plan_cached.cache_clear()
        occ._PLAN_ROWS.clear()
        _check(c, sizes, tilings)
    occ._union_plan_cached.cache_clear()
    occ._PLAN_ROWS.clear()


def test_sinks_and_window_take_the_union_of_staircases():
    """The registry's sinks + window mask is planned as a union (from its structure), on
    a space large enough for the plans, and its counts equal brute force."""
    c = _mask_cascade(_UNION_MASKS[0])
    sizes = resolve_shape(c, {"E": 2, "M": 97, "P": 97, "M0": 4, "W": 9, "S": 3})
    got = occupancy(c, sizes, {"P": 5, "M": 7}, ["QF"])["QF"]
    assert got.method == "union"
    _check(c, sizes, [{"P": 5, "M": 7}, {"P": 1, "M": 1}, {"P": 32, "M1": 2}], ["QF", "QK"])


def test_a_declared_density_callable_is_evaluated_once_per_sizes():
    """The declared density of a data filter is a function of the sizes: asked at every
    batch of tilings, it is computed once per sizes and its value used unchanged."""
    from einsim.einsum import declare_density

    c = parse_cascade("inputs: S[m,p], Q[m,p]\nX[m,p] = Q[m,p] where m <= p and S[m,p] > 0")
    calls = []
    declare_density(c, lambda sizes: calls.append(dict(sizes)) or 0.5)
    for _ in range(3):
        half = occupancy(c, {"M": 8, "P": 8}, {"P": 4, "M": 4})["X"]
        assert half.points.tolist() == [18]  # 36 points kept by m <= p, half priced
    occupancy(c, {"M": 8, "P": 6}, {"P": 4})
    assert [(d["M"], d["P"]) for d in calls] == [(8, 8), (8, 6)]
