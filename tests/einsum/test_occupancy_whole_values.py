"""The int64 evaluation of one-variable index expressions (`_whole_values`) against the
executor's float evaluation, which the interval sets used before: equal wherever it
answers, and the float path whole and below 2**52 there."""

import importlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.einsum.executor import expression_value
from einsim.einsum.ir import Call, Const, Op, Size, Var

occ = importlib.import_module("einsim.einsum.occupancy")

_SIZES = {"Y": 7, "X": 3, "B": 1, "Z": 0}
_BINARY = [Op.ADD, Op.SUB, Op.MUL, Op.FLOORDIV, Op.MOD, Op.MAX, Op.MIN, Op.LT, Op.LE, Op.EQ]
_BINARY += [Op.NE, Op.GE, Op.GT, Op.AND, Op.OR, Op.DIV]

_leaf = st.one_of(
    st.just(Var("p")),
    st.sampled_from([Size(k) for k in _SIZES]),
    st.integers(-9, 9).map(lambda v: Const(float(v))),
    st.sampled_from([Const(0.5), Const(2.0**53)]),
)
_expr = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(_BINARY), inner, inner).map(lambda t: Call(t[0], (t[1], t[2]))),
        st.tuples(st.sampled_from([Op.NEG, Op.NOT]), inner).map(lambda t: Call(t[0], (t[1],))),
    ),
    max_leaves=8,
)


def _executor(expr, n):
    with np.errstate(all="ignore"):
        raw = expression_value(expr, {"p": np.arange(n)}, _SIZES)
    return np.broadcast_to(np.asarray(raw, dtype=float), (n,))


@settings(max_examples=400, deadline=None)
@given(expr=_expr, n=st.integers(1, 40))
def test_whole_values_equal_the_executors_where_they_answer(expr, n):
    found = occ._whole_values(expr, "p", n, _SIZES)
    if found is None:
        return
    raw = _executor(expr, n)
    assert np.all(np.isfinite(raw)) and np.all(np.abs(raw) < 2.0**52)
    assert found.dtype == np.int64 and found.shape == (n,)
    assert found.tolist() == raw.astype(np.int64).tolist()


def test_whole_values_take_a_block_index_and_leave_divisions_and_huge_products():
    p, y, x = Var("p"), Size("Y"), Size("X")
    block = Call(Op.ADD, (Call(Op.MUL, (Call(Op.FLOORDIV, (p, y)), x)), Call(Op.MOD, (p, y))))
    got = occ._whole_values(block, "p", 50, _SIZES)
    assert got.tolist() == [q // 7 * 3 + q % 7 for q in range(50)]
    assert occ._whole_values(Call(Op.DIV, (p, y)), "p", 5, _SIZES) is None
    assert occ._whole_values(Call(Op.FLOORDIV, (p, Var("q"))), "p", 5, _SIZES) is None
    assert occ._whole_values(Call(Op.MOD, (p, Size("Z"))), "p", 5, _SIZES) is None
    huge = Call(Op.MUL, (p, Const(2.0**50)))
    assert occ._whole_values(huge, "p", 5, _SIZES) is None  # 4 * 2**50 reaches 2**52
