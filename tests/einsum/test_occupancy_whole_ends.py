"""`_whole_ends_into` (the closed form's ends of `a*x + rest(y) op 0` in int64 arithmetic)
against the float64 path it replaces (the executor's floats, floor and ceil of -rest / a),
for whole values up to 2**52 and any integer coefficient."""

import importlib
import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.einsum.ir import Op

occ = importlib.import_module("einsim.einsum.occupancy")

_LIMIT = 2**52 - 1  # `_whole_values` hands over values below 2**52 in magnitude


def _ends(a, whole, op, lo, hi):
    """`_whole_ends_into` on copies of lo and hi: the new (lo, hi)."""
    lo, hi = lo.copy(), hi.copy()
    occ._whole_ends_into(a, whole, op, lo, hi, np.empty_like(lo))
    return lo, hi


def _float_ends(a, value, op, lo, hi):
    """The float path of `_affine_ends` for one bound (the reference)."""
    if a == 0:
        return lo, np.where(occ._HOLDS[op](value.astype(float), 0.0), hi, -1)
    t = -value.astype(float) / a
    op = occ._FLIP[op] if a < 0 else op
    if op is Op.LE:
        return lo, np.minimum(hi, np.floor(t).astype(np.int64))
    if op is Op.LT:
        return lo, np.minimum(hi, np.ceil(t).astype(np.int64) - 1)
    if op is Op.GE:
        return np.maximum(lo, np.ceil(t).astype(np.int64)), hi
    return np.maximum(lo, np.floor(t).astype(np.int64) + 1), hi


@settings(max_examples=300, deadline=None)
@given(
    a=st.one_of(st.integers(-9, 9), st.integers(-(2**40), 2**40)),
    values=st.lists(
        st.one_of(st.integers(-50, 50), st.integers(-_LIMIT, _LIMIT)), min_size=1, max_size=20
    ),
    op=st.sampled_from([Op.LT, Op.LE, Op.GT, Op.GE]),
    n_x=st.integers(1, 2**40),
)
def test_whole_ends_equal_the_float_path(a, values, op, n_x):
    whole = np.array(values, dtype=np.int64)
    lo = np.zeros(len(values), dtype=np.int64)
    hi = np.full(len(values), n_x - 1, dtype=np.int64)
    got = _ends(a, whole, op, lo, hi)
    want = _float_ends(a, whole, op, lo, hi)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_whole_ends_of_a_quotient_near_a_whole_number():
    """-rest / a a hair off a whole number (rest = k * a +- 1, large k): floor and ceil
    still those of the exact quotient."""
    for a in (3, -3, 7, 1 << 20, -(1 << 20) - 1):
        k = np.array([(2**52 - 1) // abs(a) - 1, -((2**52 - 1) // abs(a)) + 1, 0, 1, -1])
        whole = np.concatenate([k * a + 1, k * a - 1, k * a])
        for op in (Op.LT, Op.LE, Op.GT, Op.GE):
            lo = np.full(len(whole), -(2**60), dtype=np.int64)
            hi = np.full(len(whole), 2**60, dtype=np.int64)
            got = _ends(a, whole, op, lo, hi)
            quotients = [Fraction(-int(w), a) for w in whole]  # exact rationals
            exact_floor = np.array([math.floor(q) for q in quotients])
            exact_ceil = np.array([math.ceil(q) for q in quotients])
            sense = occ._FLIP[op] if a < 0 else op
            if sense is Op.LE:
                np.testing.assert_array_equal(got[1], exact_floor)
            elif sense is Op.LT:
                np.testing.assert_array_equal(got[1], exact_ceil - 1)
            elif sense is Op.GE:
                np.testing.assert_array_equal(got[0], exact_ceil)
            else:
                np.testing.assert_array_equal(got[0], exact_floor + 1)
