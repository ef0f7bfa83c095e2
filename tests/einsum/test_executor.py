"""The numpy reference executor against direct numpy formulas."""

import numpy as np
import pytest

from einsim import SpecError, attention, parse_cascade


def test_gemm_matches_numpy(rng):
    c = parse_cascade("inputs: A[k,m], B[k,n]\nZ[m,n] = A[k,m] * B[k,n]")
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 7))
    out = c.evaluate({"A": a, "B": b}, {"K": 5, "M": 3, "N": 7, "UNUSED": 9})
    np.testing.assert_allclose(out["Z"], a.T @ b)


def test_general_path_equals_contraction(rng):
    # The same product written so the executor cannot take the np.einsum fast path.
    fast = parse_cascade("inputs: A[k,m], B[k,n]\nZ[m,n] = A[k,m] * B[k,n]")
    slow = parse_cascade("inputs: A[k,m], B[k,n]\nZ[m,n] = (A[k,m] + 0) * B[k,n]")
    data = {"A": rng.normal(size=(4, 3)), "B": rng.normal(size=(4, 2))}
    shape = {"K": 4, "M": 3, "N": 2}
    np.testing.assert_allclose(fast.evaluate(data, shape)["Z"], slow.evaluate(data, shape)["Z"])


def test_iterative_rank_is_a_running_max(rng):
    c = parse_cascade(
        "inputs: X[t]\nR[0] = -inf\nR[t+1] = max(R[t], X[t])\nS[0] = 0\nS[t+1] = S[t] + X[t]"
    )
    x = rng.normal(size=6)
    out = c.evaluate({"X": x}, {"T": 6})
    np.testing.assert_allclose(out["R"][1:], np.maximum.accumulate(x))
    np.testing.assert_allclose(out["S"][1:], np.cumsum(x))
    assert out["R"][0] == -np.inf


def test_filter_masks_points_and_reductions(rng):
    c = parse_cascade(
        "inputs: Q[e,p], K[e,m]\nmask: m <= p\nQK[m,p] = Q[e,p] * K[e,m]\nGM[p] = max(m) QK[m,p]"
    )
    q, k = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    out = c.evaluate({"Q": q, "K": k}, {"E": 3, "M": 5, "P": 5})
    full = k.T @ q
    causal = np.where(np.tril(np.ones((5, 5))).T.astype(bool), full, 0.0)
    np.testing.assert_allclose(out["QK"], causal)
    masked = np.where(np.triu(np.ones((5, 5))).astype(bool), full, -np.inf)
    np.testing.assert_allclose(out["GM"], masked.max(axis=0))


def test_partition_with_partial_last_tile(rng):
    c = parse_cascade(
        "inputs: K[e,m]\npartition: M -> M1, M0\nBK[e,m1,m0] = K[e,m1*M0+m0]\n"
        "S[e] = sum(m1,m0) BK[e,m1,m0]"
    )
    k = rng.normal(size=(2, 10))
    out = c.evaluate({"K": k}, {"E": 2, "M": 10, "M0": 4})
    assert out["BK"].shape == (2, 3, 4)
    np.testing.assert_allclose(out["S"], k.sum(axis=1))
    np.testing.assert_allclose(out["BK"][:, 2, 2:], 0.0)  # padding is never computed


def test_values_may_use_index_variables():
    c = parse_cascade("inputs: S[h]\nranks: M, P\nB[h,m,p] = S[h] * (m - p)")
    out = c.evaluate({"S": np.array([1.0, 2.0])}, {"H": 2, "M": 3, "P": 2})
    np.testing.assert_allclose(out["B"][1], 2.0 * (np.arange(3)[:, None] - np.arange(2)))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"E": 3, "M": 5}, "missing size(s) P"),
        ({"E": 3, "M": 0, "P": 5}, "M must be a positive integer, got 0"),
        ({"E": 3, "M": 2.5, "P": 5}, "M must be a positive integer, got 2.5"),
        ({"E": 3, "M": "x", "P": 5}, "M must be a positive integer"),
    ],
)
def test_bad_shapes_are_named(shape, message):
    c = parse_cascade("inputs: Q[e,p], K[e,m]\nQK[m,p] = Q[e,p] * K[e,m]")
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        c.evaluate({"Q": np.ones((3, 5)), "K": np.ones((3, 5))}, shape)


def test_derived_sizes_and_contradictions():
    c = attention("fusemax", M0=4)
    from einsim import resolve_shape

    base = {"E": 2, "F": 2, "P": 3}
    assert resolve_shape(c, {**base, "M": 10})["M1"] == 3
    assert resolve_shape(c, {**base, "M": 12, "M1": 2})["M0"] == 6
    with pytest.raises(SpecError, match="M1=5 contradicts M/M0"):
        resolve_shape(c, {**base, "M": 12, "M0": 4, "M1": 5})


def test_bad_inputs_are_named(rng):
    c = attention("naive_2pass")
    shape = {"E": 2, "F": 2, "M": 3, "P": 4}
    with pytest.raises(SpecError, match="missing input V"):
        c.evaluate({"Q": np.ones((2, 4)), "K": np.ones((2, 3))}, shape)
    with pytest.raises(SpecError, match=r"input K has shape \(3, 2\), expected \(2, 3\)"):
        c.evaluate({"Q": np.ones((2, 4)), "K": np.ones((3, 2)), "V": np.ones((2, 3))}, shape)


def test_out_of_bounds_read_is_an_error():
    c = parse_cascade("inputs: X[t]\nY[t] = X[t+1]")
    with pytest.raises(SpecError, match="reads outside X"):
        c.evaluate({"X": np.ones(4)}, {"T": 4})
