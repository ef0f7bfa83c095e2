"""Star plans (two closed forms A(x1, y) and B(x2, y) sharing their rows y) and closed
forms through products by constants, against a brute-force count over every point."""

import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check, _with_intervals

from einsim import attention, parse_cascade
from einsim.einsum import occupancy, resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")

_STAR_MASKS = (
    "n * A <= q * B + B - 1 and n2 * C <= q * B + B - 1",  # FlexPrefill's block estimate
    "n <= q and n2 + 2 >= q and n2 <= q + 3",
    "q - n < A and n <= q and n2 * 2 <= q + C",
    "n >= q and n2 * A >= q * B and q < 5",  # a condition on the rows alone
    "n + 1 >= q and n <= q + A and n2 >= q - 2",
    "n <= q and n2 <= n",  # rows n shared by q and n2
)

_NOT_STAR = (
    "n <= q and n2 <= n and n2 + 1 >= q",  # each pair in one comparison: no shared rows
    "n % 2 == 0 and n2 <= q",  # not a closed form
    "n <= q",  # two variables only
)


def _cascade(mask: str, partitioned: bool):
    if partitioned:  # n2 read as both parts of a partition: n2 = u * U + v
        return parse_cascade(
            "inputs: A[n,q], B[n2,q]\npartition: N2 -> U1, U0\n"
            f"mask: {mask.replace('n2', '(u1 * U0 + u0)')}\n"
            "X[n,u1,u0,q] = A[n,q] * B[u1*U0+u0,q]\nY[n,n2,q] = A[n,q] * B[n2,q]"
        )
    return parse_cascade(f"inputs: A[n,q], B[n2,q]\nmask: {mask}\nY[n,n2,q] = A[n,q] * B[n2,q]")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_STAR_MASKS),
    n=st.integers(1, 13),
    n2=st.integers(1, 13),
    q=st.integers(1, 13),
    constants=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    partitioned=st.booleans(),
    data=st.data(),
)
def test_star_masks_match_brute_force(mask, n, n2, q, constants, partitioned, data):
    """Odd extents, tiles of every side on each of the three variables (partial last
    tiles, tiles past the extents, a partition's lower part whole or cut), the shared
    rows cut or whole: exact, and the star plan is the one used."""
    c = _cascade(mask, partitioned)
    a, b, cc = constants
    shape = {"N": n, "N2": n2, "Q": q, "A": a, "B": b, "C": cc, "U0": data.draw(st.integers(1, 4))}
    sizes = resolve_shape(c, shape)
    side = st.integers(1, 14)
    ranks = ("N", "N2", "Q") if not partitioned else ("N", "N2", "Q", "U1", "U0")
    tilings = [
        {r: data.draw(side) for r in data.draw(st.lists(st.sampled_from(ranks), unique=True))}
        for _ in range(4)
    ]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        _check(c, sizes, [*tilings, {}, {"N": 1, "N2": 1, "Q": 1}])
        name = "X" if partitioned else "Y"
        got = occupancy(c, sizes, {"Q": 2}, [name])[name]
    assert got.method == "star"


@pytest.mark.parametrize("mask", _NOT_STAR)
def test_masks_not_two_closed_forms_sharing_rows_get_no_star_plan(mask):
    c = _cascade(mask, False)
    sizes = resolve_shape(c, {"N": 9, "N2": 7, "Q": 8})
    einsum = c.einsums[0]
    vars_ = occ._mask_vars_of(c, einsum, sizes, einsum.where)
    assert occ._star_plan(c, sizes, einsum.where, vars_) is None


@pytest.mark.parametrize(
    "mask", ["n * 3 <= q * 2 + 1", "2 * n + 1 <= q", "n * B <= q * B + B - 1", "-(n * 2) >= -q"]
)
def test_products_by_constants_take_the_closed_form(mask):
    """`n * MB <= nq * PQ + PQ - 1` (sizes read) is affine in n and q: the closed form."""
    c = parse_cascade(f"inputs: A[n,q]\nmask: {mask}\nY[n,q] = A[n,q] * 2")
    sizes = resolve_shape(c, {"N": 23, "Q": 19, "B": 4})
    assert occupancy(c, sizes, {"Q": 2}, ["Y"])["Y"].method == "closed_form"
    _check(c, sizes, [{"Q": 2, "N": 3}, {"Q": 5}, {"N": 4}, {"N": 1, "Q": 1}, {}])


def test_flexprefill_block_estimate_takes_the_star_plan():
    """FlexPrefill's BAB (a block's key n and another block n2 against the query block
    nq) is counted by the star plan, its static part priced at the declared density."""
    cascade = attention("flexprefill")
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "H": 2, "M": 40, "P": 40, "MB": 4, "PQ": 4})
    got = occupancy(cascade, sizes, {"NQ": 3, "N": 2}, ["BAB"], density=0.5)["BAB"]
    assert got.method == "declared_density"
    static = occ._static_part(next(e for e in cascade.einsums if e.output == "BAB").where)
    vars_ = ("n", "n2", "nq")
    assert isinstance(occ._star_plan(cascade, sizes, static, vars_), occ._StarPlan)
