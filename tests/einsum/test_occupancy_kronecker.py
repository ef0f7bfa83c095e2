"""Kronecker plans (a filter over x // R, x % R, y // R, y % R as a conjunction of a
high-part and a low-part filter) against a brute-force count over every point."""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check, _with_intervals

from einsim import attention, parse_cascade
from einsim.einsum import occupancy, resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")

_RADIX_MASKS = (
    "m // R == p // R and m % R <= p % R",  # block-diagonal causal: affine factors
    "m // R <= p // R and abs(m % R - p % R) <= W",  # an interval factor
    "(m // R) % 2 == (p // R) % 2 and m % R != p % R",
    "m % R < W and m // (2 * R) == p // (2 * R)",  # a multiple of the radix
    "m // R == p // R",  # the low parts unconstrained
    "m % R <= p % R and (m % R) % 2 == 0",  # the high parts unconstrained
    "m // R <= p // R and m % R + p % R < R and m % 1 == 0",
    "m <= p and m // R == p // R",  # causal blocks: m - p read as m % R - p % R
    "p // R == m // R and p - m < W and m - p <= 1",
    "m // R == p // R and m + m <= p + 3",  # not through m - p: the intervals take it
)


def _radix_cascade(mask: str):
    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )


def _near(r: int, draw) -> int:
    """A tile side: a divisor or multiple of the radix r (a box), or any."""
    return draw(
        st.sampled_from([1, r, 2 * r, 3 * r, max(1, r // 2), draw(st.integers(1, 4 * r + 1))])
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_RADIX_MASKS),
    r=st.integers(2, 6),
    bm=st.integers(1, 5),
    bp=st.integers(1, 5),
    m0=st.integers(1, 5),
    w=st.integers(1, 4),
    data=st.data(),
)
def test_radix_masks_match_brute_force(mask, r, bm, bp, m0, w, data):
    """Several blocks of rows (M = R * bm, P = R * bp, unequal), both parts of the
    partition, tiles that are boxes in the radix and tiles that are not (those counted
    on the whole filter's interval plan): exact, and the Kronecker plan is the one used."""
    c = _radix_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": r * bm, "P": r * bp, "M0": m0, "W": w, "R": r})
    draw = data.draw
    tilings = [
        {"P": _near(r, draw), "M": _near(r, draw)},
        {"P": _near(r, draw), "M": _near(r, draw)},
        {"P": _near(r, draw), "M1": draw(st.integers(1, bm * r))},
        {"P": draw(st.integers(1, r * bp + 1)), "M": draw(st.integers(1, r * bm + 1))},
        {},
    ]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        _check(c, sizes, tilings)
        if r < max(r * bm, r * bp) and "m + m" not in mask:
            got = occupancy(c, sizes, {"P": r, "M": r}, ["QF"])["QF"]
            assert got.method == "kronecker"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_neighborhoods_on_whole_grids_match_brute_force(data):
    """NATTEN 2D / 3D with M = P = the grid's size (dilation, stride, odd sides): split
    at the row radix (and again inside for 3D); tiles of the grid's rows and any others."""
    draw = data.draw
    three = draw(st.booleans())
    dil = draw(st.integers(1, 2))
    x, y = draw(st.integers(dil, 5)), draw(st.integers(dil, 5))
    t = draw(st.integers(dil, 3)) if three else 1
    params = {
        "X": x,
        "Y": y,
        "KW": draw(st.integers(1, min(x, y) // dil)),
        "DIL": dil,
        "STRIDE": draw(st.integers(1, 2)),
        "M0": draw(st.integers(1, 4)),
    }
    if three:
        params |= {"T": t, "KT": draw(st.integers(1, t // dil))}
    cascade = attention("neighborhood_3d" if three else "neighborhood_2d", **params)
    n = t * x * y
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "M": n, "P": n})
    filtered = [e.output for e in cascade.einsums if e.where is not None]
    tilings = [
        {"P": _near(y, draw), "M1": draw(st.integers(1, -(-n // params["M0"])))},
        {"P": _near(y, draw), "M1": 1},
        {"P": draw(st.integers(1, n + 1)), "M1": draw(st.integers(1, n))},
        {"P": 1},
    ]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        _check(cascade, sizes, tilings, filtered)


def test_the_interval_plan_is_built_only_for_tiles_that_are_not_boxes(monkeypatch):
    """A search whose tiles are all divisors or multiples of the row radix never extracts
    the whole filter's intervals; the first other tiling builds them once."""
    _with_intervals(monkeypatch)
    cascade = attention("neighborhood_2d", X=8, Y=8, KW=3, M0=4)
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "M": 64, "P": 64})
    built = []
    real = occ._oriented_plan
    spy = lambda w, x, y, *a: built.append(x) or real(w, x, y, *a)  # noqa: E731
    monkeypatch.setattr(occ, "_oriented_plan", spy)
    tile = {"P": np.array([1, 2, 8, 16, 64]), "M1": np.array([1, 2, 4, 8, 16])}
    got = occupancy(cascade, sizes, tile, ["QK"])["QK"]
    assert got.method == "kronecker" and "m" not in built and "p" not in built
    _check(cascade, sizes, [{"P": 3, "M1": 2}, {"P": 8, "M1": 2}], ["QK"])
    assert {"m", "p"} & set(built)


def test_causal_blocks_split_at_their_block_size():
    """Linear attention's chunks (`m <= p and m // M0 == p // M0`) split at M0, and only
    there: `m <= p` is read over the low parts under the block equality."""
    c = attention("linear", M0=4)
    sizes = resolve_shape(c, {"E": 2, "F": 2, "M": 96, "P": 96})
    filtered = [e.output for e in c.einsums if e.where is not None]
    got = occupancy(c, sizes, {"P": 8, "M": 2}, filtered)
    assert {o.method for o in got.values()} == {"kronecker"}
    _check(c, sizes, [{"P": 8, "M": 2}, {"P": 1, "M": 12}, {"P": 3, "M": 5}], filtered)


@pytest.mark.parametrize(
    "mask",
    [
        "m // R == p // R and m // R + m % R <= p % R",  # mixes the parts
        "m // R == p // R and m + m <= p + 3",  # reads m and p beyond m - p
    ],
)
def test_a_conjunct_over_high_and_low_parts_is_not_split(mask):
    """A conjunct that mixes high and low parts is not split (the intervals take it)."""
    c = _radix_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": 96, "P": 96, "M0": 1, "R": 8})
    assert occupancy(c, sizes, {"P": 8, "M": 8}, ["QF"])["QF"].method == "intervals"
    _check(c, sizes, [{"P": 8, "M": 8}, {"P": 3, "M": 16}], ["QF"])
