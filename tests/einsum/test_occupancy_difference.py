"""Difference plans (a filter reading its key and query only through y - x: diagonal
bands) against a brute-force count over every point."""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check

from einsim import attention, parse_cascade
from einsim.einsum import occupancy, resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")

_DIFFERENCE_MASKS = (
    "m <= p and (p - m < W or PW % max(p - m, 1) == 0)",  # power attention's
    "(p - m) % 3 == 0",
    "abs(p - m) <= W and p - m != 1",
    "m - p < W and (m - p) // 2 % 2 == 0",
    "p - m >= W or m > p + 2",
    "not(p + 1 - m == W) and p - (m - 2) >= 0",
    "max(p - m, 0) * 1 // 1 < W",  # units folded: still through p - m
    "m <= p",  # one band (the closed form takes it first; switched off here)
    "m > p + M",  # no band at all
)

_OTHER_MASKS = (
    "m + m <= p + 3",
    "p // 2 - m // 2 < W",
    "m <= p and m < W",
    "(p - m) % 3 == 0 or m == 1",
    "p - m * 2 < W",
)


def _cascade(mask: str):
    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )


def _plan(cascade, sizes, name):
    einsum = next(e for e in cascade.einsums if e.output == name)
    vars_ = occ._mask_vars_of(cascade, einsum, sizes, einsum.where)
    return occ._difference_plan(cascade, sizes, einsum.where, vars_)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_DIFFERENCE_MASKS),
    m=st.integers(1, 29),
    p=st.integers(1, 29),
    m0=st.integers(1, 6),
    w=st.integers(1, 9),
    pw=st.sampled_from([4, 12, 16, 30]),
    data=st.data(),
)
def test_difference_masks_match_brute_force(mask, m, p, m0, w, pw, data):
    """Odd extents (M no multiple of M0: a padded last block), tiles of every side
    including partial last tiles and tiles past the extents, both forms of the key (m,
    and m1 * M0 + m0 with M0 whole or cut: the cut ones are counted otherwise): exact,
    and the difference plan is the one used (the closed form, which takes the masks of
    one band first, switched off)."""
    c = _cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "W": w, "PW": pw})
    side = st.integers(1, 31)
    draw = data.draw
    tilings = [
        {"P": draw(side), "M": draw(side)},
        {"P": draw(side), "M": draw(side)},
        {"P": draw(side), "M1": draw(st.integers(1, 7))},
        {"P": draw(side), "M1": draw(st.integers(1, 7)), "M0": draw(st.integers(1, 6))},
        {"P": 1, "M": 1},
        {},
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(occ, "_affine_plan", lambda *args: None)  # one band: the closed form's
        _check(c, sizes, tilings)
        got = occupancy(c, sizes, {"P": 2, "M": 3}, ["QF"])["QF"]
    assert got.method == "difference"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    w=st.integers(1, 6),
    pw=st.sampled_from([8, 64, 2**30, 24]),
    m=st.integers(1, 70),
    p=st.integers(1, 70),
    m0=st.integers(1, 9),
    data=st.data(),
)
def test_power_attention_takes_the_difference_plan(w, pw, m, p, m0, data):
    """The registry's power attention (block size 1) reads keys and queries only through
    p - m: its filtered Einsums take the difference plan, exact against brute force."""
    cascade = attention("power_attention", W=w, M0=m0)
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "M": m, "P": p, "PW": pw})
    filtered = [e.output for e in cascade.einsums if e.where is not None]
    tilings = [
        {"P": data.draw(st.integers(1, p + 1)), "M1": data.draw(st.integers(1, m + 1))}
        for _ in range(3)
    ]
    got = occupancy(cascade, sizes, {"P": 3}, filtered)
    assert {o.method for o in got.values()} == {"difference"}
    _check(cascade, sizes, [*tilings, {}], filtered)


@pytest.mark.parametrize("mask", _OTHER_MASKS)
def test_masks_not_through_the_difference_get_no_difference_plan(mask):
    """A mask reading m or p apart from p - m (`m + m`, `p // 2`, `m < W`) is left to the
    other plans (its counts are checked in test_occupancy)."""
    c = _cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": 20, "P": 17, "M0": 4, "W": 3})
    assert _plan(c, sizes, "QF") is None
    assert occupancy(c, sizes, {"P": 2, "M": 3}, ["QF"])["QF"].method != "difference"


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 40),
    m=st.integers(1, 30),
    a=st.integers(0, 60),
    b=st.integers(0, 60),
)
def test_floor_sums_equal_the_sum(n, m, a, b):
    want = sum((a * k + b) // m for k in range(n))
    got = occ._floor_sums(np.array([n, n]), np.array([m, m]), np.array([a, a]), b)
    assert got.tolist() == [want, want]


@settings(max_examples=200, deadline=None)
@given(
    c=st.integers(-80, 80),
    count_x=st.integers(0, 9),
    count_y=st.integers(0, 9),
    tx=st.integers(1, 12),
    ty=st.integers(1, 12),
)
def test_lattice_below_counts_the_points(c, count_x, count_y, tx, ty):
    """The lattice points (i, j) of a count_x by count_y grid with j * ty - i * tx <= c."""
    want = sum(j * ty - i * tx <= c for i in range(count_x) for j in range(count_y))
    got = occ._lattice_below(np.array([c]), count_x, count_y, tx, ty)
    assert got.tolist() == [want]
