"""Pass counts (the paper's), op counts (against brute-force enumeration) and footprints."""

import itertools

import numpy as np
import pytest
import sympy

from einsim import SpecError, attention, footprints, op_counts, parse_cascade, passes
from einsim.einsum import Op, iteration_points, resolve_shape


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("stable_3pass", 3),
        ("naive_2pass", 2),
        ("online_2pass", {"M1": 2, "M0": 3}),
        ("fusemax_1pass", {"M1": 1, "M0": 2}),
    ],
)
def test_pass_counts_of_the_paper(name, expected):
    assert passes(attention(name), "M") == expected


def test_passes_of_a_part_and_unknown_rank():
    c = attention("online_2pass")
    assert passes(c, "M1") == 2
    assert passes(c, "E") == 1
    with pytest.raises(SpecError, match="no rank 'X'"):
        passes(c, "X")


def _brute_points(cascade, einsum, sizes):
    """Count by enumerating every point and evaluating the mask in pure Python."""
    from einsim.einsum.executor import mask_of

    names = einsum.iter_vars
    total = 0
    for point in itertools.product(*(range(int(sizes[v.upper()])) for v in names)):
        env = {v: np.asarray(i) for v, i in zip(names, point, strict=True)}
        mask, _ = mask_of(cascade, einsum, env, sizes)
        total += 1 if mask is None else int(bool(mask))
    return total


@pytest.mark.parametrize(
    "mask",
    [
        "m <= p",
        "p - m < W and m <= p",
        "p - m <= W / 2 and m - p <= W / 2",
        "2*m > p + 1",
        "m >= W",
    ],
)
@pytest.mark.parametrize("m0", [3, 4])
def test_masked_counts_equal_enumeration(mask, m0):
    text = (
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "QF[m,p] = Q[e,p] * K[e,m]"
    )
    c = parse_cascade(text)
    sizes = resolve_shape(c, {"E": 2, "M": 10, "P": 9, "M0": m0, "W": 4})
    for einsum in c.einsums:
        assert iteration_points(c, einsum, sizes) == _brute_points(c, einsum, sizes), einsum


def test_causal_count_is_the_closed_form_at_scale():
    c = parse_cascade("inputs: Q[e,p], K[e,m]\nQK[m,p] = Q[e,p] * K[e,m] where m <= p")
    n = 1 << 20
    assert op_counts(c, {"E": 64, "M": n, "P": n})["QK"] == {Op.MAC: 64 * n * (n + 1) // 2}


def test_op_counts_of_fusemax_per_einsum():
    e, f, m, p, m0 = 64, 64, 1024, 512, 256
    counts = op_counts(attention("fusemax", M0=m0), dict(E=e, F=f, M=m, P=p))
    m1 = m // m0
    assert counts["QK"] == {Op.MAC: e * m * p}
    assert counts["LM"] == {Op.MAX: m * p}
    assert counts["RM"] == {Op.MAX: m1 * p}
    assert counts["SLN"] == {Op.SUB: m * p, Op.EXP: m * p}
    assert counts["SLNV"] == {Op.MAC: f * m * p}
    assert counts["AV"] == {Op.DIV: f * p}
    assert counts["BK"] == {}


def test_partial_tile_counts_only_real_points():
    counts = op_counts(attention("fusemax", M0=256), dict(E=64, F=64, M=1000, P=8))
    assert counts["QK"] == {Op.MAC: 64 * 1000 * 8}


def test_symbolic_counts_and_footprints():
    E, M, P = sympy.symbols("E M P", positive=True, integer=True)
    c = attention("stable_3pass")
    counts = op_counts(c, {"E": E, "F": E, "M": M, "P": P})
    assert sympy.simplify(counts["QK"][Op.MAC] - E * M * P) == 0
    assert sympy.simplify(counts["GM"][Op.MAX] - M * P) == 0
    M0 = sympy.Symbol("M0", positive=True, integer=True)
    fp = footprints(attention("fusemax"), {"E": E, "F": E, "M": M, "P": P, "M0": M0})
    assert sympy.simplify(fp["RM"] - (M / M0 + 1) * P) == 0
    assert fp["Q"] == E * P


def test_numeric_footprints():
    fp = footprints(attention("fusemax", M0=4), dict(E=2, F=3, M=8, P=5))
    assert fp["RNV"] == 3 * 3 * 5 and fp["QK"] == 2 * 4 * 5 and fp["AV"] == 15


def test_data_dependent_filter_count_is_refused():
    c = parse_cascade("inputs: S[m,p], Q[m,p]\nX[m,p] = Q[m,p] where S[m,p] > 0")
    with pytest.raises(SpecError, match="depends on the data"):
        op_counts(c, {"M": 2, "P": 2})


def test_data_dependent_counts_from_inputs_are_exact(rng):
    """MoBA's selection priced from data: QK's MACs are E times the points its filter keeps
    on these inputs, enumerated with the reference executor's tensors."""
    from einsim.einsum.executor import mask_of

    c = attention("block_topk", BS=3, TOPK=1, M0=4, form="stable_3pass")
    shape = dict(E=3, F=2, M=10, P=10)
    inputs = {k: rng.standard_normal((3 if k != "V" else 2, 10)) for k in ("Q", "K", "V")}
    tensors = c.evaluate(inputs, shape, method="materialize")
    qk = c.einsum("QK")
    env = {"m": np.arange(10)[:, None], "p": np.arange(10)[None, :], "e": np.zeros((1, 1), int)}
    keep, _ = mask_of(c, qk, env, resolve_shape(c, shape), tensors)
    assert op_counts(c, shape, inputs=inputs)["QK"] == {Op.MAC: 3 * int(np.count_nonzero(keep))}


def test_data_dependent_counts_from_a_density():
    c = parse_cascade("inputs: S[m,p], Q[m,p]\nX[m,p] = Q[m,p] where m <= p and S[m,p] > 0")
    # The static conjunct m <= p keeps 10 of 16 points; a density 0.5 prices 5 of them.
    assert op_counts(c, {"M": 4, "P": 4}, density=0.5)["X"] == {}
    assert iteration_points(c, c.einsum("X"), {"M": 4, "P": 4}, density=0.5) == 5


def test_block_topk_declares_its_selection():
    """Without data, MoBA is priced at TOPK + 1 blocks of BS keys per query over the causal
    prefix: E * sum_p min(p + 1, (TOPK + 1) * BS) MACs in QK."""
    e, p, bs, topk = 4, 50, 4, 2
    c = attention("block_topk", BS=bs, TOPK=topk, M0=8)
    want = e * sum(min(q + 1, (topk + 1) * bs) for q in range(p))
    assert op_counts(c, dict(E=e, F=2, M=p, P=p))["QK"] == {Op.MAC: want}
