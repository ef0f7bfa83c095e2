"""Which plan counts a mask and in which orientation (the cheaper one), with the counts
against a brute-force count over every point."""

import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_occupancy import _check, _head_cascade, _with_intervals

from einsim import attention, parse_cascade
from einsim.einsum import resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")

_PERIODIC_KEY_MASKS = (  # many intervals of m per row p, one of p per row m
    "m % R == 0 and m <= p",  # hip's selection levels
    "m % R == 1 and m + 2 <= p",
    "(m // R) % 2 == 0 and p >= m",
)


def _cascade(mask: str):
    return parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )


def _interval_plan_of(cascade, sizes, name):
    einsum = next(e for e in cascade.einsums if e.output == name)
    vars_ = occ._mask_vars_of(cascade, einsum, sizes, einsum.where)
    return occ._interval_plan(cascade, sizes, einsum.where, vars_)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_PERIODIC_KEY_MASKS),
    r=st.integers(2, 4),
    m=st.integers(24, 40),
    p=st.integers(24, 40),
    m0=st.integers(1, 5),
    data=st.data(),
)
def test_periodic_keys_are_planned_along_the_query(mask, r, m, p, m0, data):
    """A mask periodic in its key keeps many intervals of m per row p but one interval of
    p per row m: the plan is built with p along the rows' x (one interval a row), and its
    counts, both parts of the key's partition and odd tiles, equal brute force."""
    c = _cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "R": r})
    side = st.integers(1, 41)
    tilings = [{"P": data.draw(side), "M": data.draw(side)} for _ in range(3)]
    tilings += [{"P": data.draw(side), "M1": data.draw(st.integers(1, 9))}, {}]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        for name in ("QF", "QK"):
            plan = _interval_plan_of(c, sizes, name)
            assert plan is not None and plan.x == ("p",) and plan.kept.width == 1
            assert plan.y == (("m1", "m0") if name == "QK" else ("m",))
        _check(c, sizes, tilings)


@pytest.mark.parametrize(
    ("mask", "kind"),
    [
        ("m <= p and (h * 100 < RP * H or m < S or p - m < W)", "_UnionPlan"),
        ("m <= p and (h * 100 < RP * H or p - m < W or (p - m) % 4 == 0)", "_DifferencePlan"),
    ],
)
def test_head_classes_take_the_union_and_difference_plans(mask, kind):
    """A head class whose filter is sinks + window (razor attention's streaming heads) is
    counted by the union plan, one through p - m only by the difference plan, not by the
    intervals; counts equal brute force."""
    c = _head_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "H": 5, "M": 37, "P": 29, "M0": 4, "W": 5, "S": 2, "RP": 40})
    einsum = next(e for e in c.einsums if e.output == "QF")
    vars_ = occ._mask_vars_of(c, einsum, sizes, einsum.where)
    hp = occ._head_plan(c, sizes, einsum.where, vars_)
    plans = [occ._class_plan(hp, frozenset([k]), occ.Op.OR) for k in range(len(hp.filters))]
    assert kind in {type(p).__name__ for p in plans}
    assert "_IntervalPlan" not in {type(p).__name__ for p in plans}
    tilings = [{"P": 3, "M1": 2, "H": 2}, {"P": 5, "M": 7, "H": 1}, {"P": 1, "M": 1}, {}]
    _check(c, sizes, tilings)


def test_razor_attention_streaming_heads_take_the_union_plan():
    """Razor attention's heads: retrieval heads causal (the closed form), streaming heads
    sinks + window (the union plan); counts equal brute force."""
    cascade = attention("razor_attention", W=5, S=2, M0=4)
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "H": 5, "M": 40, "P": 40})
    qk = next(e for e in cascade.einsums if e.output == "QK")
    vars_ = occ._mask_vars_of(cascade, qk, sizes, qk.where)
    hp = occ._head_plan(cascade, sizes, qk.where, vars_)
    kinds = {
        type(occ._class_plan(hp, frozenset([k]), occ.Op.OR)).__name__
        for k in range(len(hp.filters))
    }
    assert kinds == {"_AffinePlan", "_UnionPlan"}
    tilings = [{"P": 3, "M1": 2, "H": 2}, {"P": 7, "M1": 1, "H": 5}, {}]
    _check(cascade, sizes, tilings, [e.output for e in cascade.einsums if e.where is not None])


def test_head_classes_one_implying_the_other_take_their_own_plans():
    """Razor's retrieval heads (`m <= p`) and streaming heads (`m <= p and (m < S or p - m
    < W)`): a tile over both counts non-empty by the weaker class's plan and full by the
    stronger's (the same plan objects, no third filter planned); counts equal brute force
    with H tiles straddling both classes."""
    cascade = attention("razor_attention", W=5, S=2, M0=4)
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "H": 5, "M": 40, "P": 40})
    qk = next(e for e in cascade.einsums if e.output == "QK")
    vars_ = occ._mask_vars_of(cascade, qk, sizes, qk.where)
    hp = occ._head_plan(cascade, sizes, qk.where, vars_)
    each = [occ._class_plan(hp, frozenset([k]), occ.Op.OR) for k in range(2)]
    both = frozenset([0, 1])
    union, meet = occ._class_plan(hp, both, occ.Op.OR), occ._class_plan(hp, both, occ.Op.AND)
    assert {id(union), id(meet)} == {id(p) for p in each}
    assert isinstance(union, occ._AffinePlan) and isinstance(meet, occ._UnionPlan)
    tilings = [{"P": 3, "M1": 2, "H": 5}, {"P": 7, "M1": 1, "H": 3}, {"H": 2}]
    _check(cascade, sizes, tilings, ["QK", "LM"])


@pytest.mark.parametrize(
    "mask",
    [
        # the weaker class first (h >= 2: no atom true sorts first)
        "(h * 100 < RP * H and m <= p and (m < S or p - m < W)) or (h * 100 >= RP * H and m <= p)",
        "m <= p and (h * 100 < RP * H or m < S or p - m < W)",  # the stronger class first
    ],
)
def test_head_tiles_over_both_classes_match_brute_force(mask):
    c = _head_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "H": 5, "M": 37, "P": 29, "M0": 4, "W": 5, "S": 2, "RP": 40})
    tilings = [{"P": 3, "M1": 2, "H": 5}, {"P": 5, "M": 7, "H": 4}, {"P": 1, "M": 1, "H": 3}]
    _check(c, sizes, tilings)
