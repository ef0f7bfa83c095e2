"""Filters with `==` affine in one variable (BiFormer's region of a position,
`f(p) == nq`): the union and interval plans take an `==` as its two bounds; their counts
equal a brute-force count, with keys whole or partitioned, tiles of every side."""

import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check, _with_intervals

from einsim import parse_cascade
from einsim.einsum import resolve_shape

_EQUAL_MASKS = (
    "p // 3 == m",
    "p // W % 3 * 2 + p % 2 == m",  # a region number per position, not monotone
    "m == p or m < S",
    "2 * m == p or p - m < W and m <= p",
    "m + 1 == p // 2 and m < W",
    "m * 3 == p + 1",
)


def _cascade(mask: str):
    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_EQUAL_MASKS),
    m=st.integers(1, 23),
    p=st.integers(1, 29),
    m0=st.integers(1, 5),
    w=st.integers(1, 6),
    s=st.integers(1, 4),
    data=st.data(),
)
def test_equal_masks_match_brute_force(mask, m, p, m0, w, s, data):
    side = st.integers(1, 31)
    draw = data.draw
    tilings = [
        {"P": draw(side), "M": draw(side)},
        {"P": draw(side), "M1": draw(st.integers(1, 7))},
        {"P": draw(side), "M1": draw(st.integers(1, 7)), "M0": draw(st.integers(1, 5))},
        {"P": 1, "M": 1},
        {},
    ]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)  # every space takes a plan, however small
        c = _cascade(mask)
        sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "W": w, "S": s})
        _check(c, sizes, tilings)


def test_an_equality_is_two_bounds_for_terms_only():
    """`==` gives the terms of unions and interval plans two bounds (`_affine_term_bounds`),
    and leaves the closed form's `_affine_bounds` without it (None, as before)."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    c = _cascade("p // 3 == m")
    where = c.einsums[-1].where
    found = occ._affine_term_bounds(where, "m", "p")
    assert found is not None and [op for _, _, op in found[0]] == [occ.Op.LE, occ.Op.GE]
    assert occ._affine_bounds(where, "m") is None
    assert occ._affine_term_bounds(where, "p", "m") is None  # `p // 3`: not linear in p
