"""The text syntax: round trips, every documented error, and robustness on junk."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim import SpecError, attention, parse_cascade
from einsim.einsum import Op
from einsim.workloads import ATTENTION

GEMM = "inputs: A[k,m], B[k,n]\nZ[m,n] = A[k,m] * B[k,n]\n"


@pytest.mark.parametrize("name", list(ATTENTION))
def test_round_trip_of_every_registered_variant(name):
    cascade = attention(name)
    again = parse_cascade(str(cascade), name=cascade.name)
    assert again == cascade
    assert hash(again) == hash(cascade)


def test_implied_sum_and_explicit_reduce():
    c = parse_cascade(
        "inputs: QK[m,p]\nGM[p] = max(m) QK[m,p]\nSD[p] = QK[m,p]\nMX[p] = max(QK[0,p], GM[p])"
    )
    gm, sd, mx = c.einsums
    assert gm.reduce_op is Op.MAX and gm.reduced_vars == ("m",)
    assert sd.reduce_op is Op.ADD and sd.reduced_vars == ("m",)
    assert mx.reduced_vars == () and mx.expr.op is Op.MAX


def test_iterative_init_partition_and_filter():
    c = attention("fusemax")
    assert [str(i) for i in c.inits] == ["RM[0,p] = -inf", "RD[0,p] = 0", "RNV[0,f,p] = 0"]
    assert c.einsum("RM").iterative_var == "m1"
    assert [(s.loop_var, s.outputs) for s in c.loops] == [
        ("m1", ("RM",)),
        ("m1", ("SPD", "RD")),
        ("m1", ("SPNV", "RNV")),
    ]
    causal = parse_cascade("inputs: Q[e,p], K[e,m]\nQK[m,p] = Q[e,p] * K[e,m] where m <= p")
    assert str(causal.einsums[0].where) == "m <= p"


def test_mask_directive_attaches_where_expressible():
    c = parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\nmask: m <= p\n"
        "BK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nT[m1,p] = LM[m1,p] + 1"
    )
    # BK does not iterate p, T lacks m0: neither can express m <= p.
    assert [e.where is not None for e in c.einsums] == [False, True, True, False]


def test_dependency_graph_is_networkx_with_carried_edges():
    g = attention("fusemax").graph
    assert g.edges["RM", "RM"]["carried"]
    assert not g.edges["RM", "SLN"]["carried"]
    assert g.edges["RNV", "AV"]["terminal"]
    assert g.nodes["Q"]["kind"] == "input"


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("inputs: A[k,m]\nZ[m] = X[k,m]", "unknown tensor 'X'", 7),
        ("inputs: A[k,m]\nZ[m] = A[k,m]\nZ[m] = A[0,m]", "produced twice", 0),
        ("inputs: A[k,m]\nZ[m] = foo(A[k,m])", "unknown operator 'foo'", 7),
        ("inputs: A[k,m]\nZ[m] = A[k,m", "expected ']'", 12),
        ("inputs: A[k,m]\nZ[m] = (A[k,m]", "expected ')'", 14),
        ("inputs: A[k,m]\nZ[m] = A[x,m]", "rank 'x' is used but never bound", 0),
        ("inputs: A[k,m]\nZ[m] = A[k,m] + Y[m]\nY[m] = Z[m]", "cycle outside an iterative", 0),
        ("inputs: A[k,m]\nZ[m] = A[k,m] $ 2", "unexpected character '$'", 14),
        ("inputs: A[k,m]\nZ[m] = max(k) A[k,m] + max(m) A[k,m]", "max takes 2 argument", 23),
        ("inputs: A[k,m]\nZ[m] = max(m) A[k,m]", "reduces over (k)", 7),
        ("inputs: A[k,m]\nZ[m] = A[m]", "has 2 dimension(s), indexed with 1", 0),
        ("inputs: A[k,m]\nZ[m*2] = A[k,m]", "must be a rank variable", 0),
        ("inputs: A[k,m]\nZ[m] = A[k,m]\nQ[0] = x", "initial value must be a number", 7),
        ("inputz: A[k,m]", "unknown directive 'inputz'", 0),
        ("inputs: A[k,m]\nZ[m,m] = A[m,m]", "repeats in the output", 0),
        ("inputs: A[k,m]\nA[k,m] = A[k,m] * 2", "is an input", 0),
    ],
)
def test_errors_name_line_and_column_with_caret(text, message, column):
    with pytest.raises(SpecError) as info:
        parse_cascade(text)
    lines = str(info.value).splitlines()
    assert message in lines[0]
    assert "line " in lines[0]
    if column:
        assert f"column {column + 1}:" in lines[0]
        assert lines[2].index("^") - 4 == column


def test_missing_inputs_line():
    with pytest.raises(SpecError, match="no `inputs:` line"):
        parse_cascade("Z[m] = A[m]")


_ALPHABET = "ABQKVZmnpk[](),+-*/=<> :\n0123456789ex"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_junk_raises_spec_error_never_a_traceback(text):
    with contextlib.suppress(SpecError):
        parse_cascade("inputs: A[k,m], B[k,n]\n" + text)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(ATTENTION)), st.integers(0, 200), st.sampled_from("[]()*=,x#"))
def test_corrupting_one_character_of_a_variant_is_caught_or_valid(name, position, char):
    text = str(attention(name))
    position = min(position, len(text) - 1)
    with contextlib.suppress(SpecError):
        parse_cascade(text[:position] + char + text[position + 1 :])


def test_round_trip_keeps_extra_ranks_and_masks():
    text = "inputs: S[h]\nranks: M, P\nB[h,m,p] = S[h] * (m - p) where m <= p\n"
    c = parse_cascade(text)
    assert parse_cascade(str(c)) == c
