"""IR extensions used by the attention variants: `//` and `%`, filters on partitioned
ranks, and large constants that print readably."""

import numpy as np
import pytest

from einsim import SpecError, parse_cascade
from einsim.einsum import Const, op_counts


def test_floor_division_and_modulo_in_indices_and_filters(rng):
    c = parse_cascade(
        "inputs: Q[h,e,p], K[g,e,m]\nZ[h,m,p] = Q[h,e,p] * K[h//(H//G),e,m] where m % 2 == 0"
    )
    q, k = rng.normal(size=(6, 3, 4)), rng.normal(size=(2, 3, 5))
    out = c.evaluate({"Q": q, "K": k}, dict(H=6, G=2, E=3, M=5, P=4))["Z"]
    expected = np.einsum("hem,hep->hmp", k[np.arange(6) // 3], q)
    expected[:, 1::2, :] = 0
    np.testing.assert_allclose(out, expected)
    assert parse_cascade(str(c)) == c
    (macs,) = op_counts(c, dict(H=6, G=2, E=3, M=5, P=4))["Z"].values()
    assert macs == 6 * 3 * 3 * 4  # only the even keys are iterated


def test_floor_division_as_a_value():
    c = parse_cascade("inputs: A[m]\nB[m] = A[m] + m // 3 + m % 3")
    out = c.evaluate({"A": np.zeros(7)}, dict(M=7))["B"]
    np.testing.assert_allclose(out, np.arange(7) // 3 + np.arange(7) % 3)


def test_a_division_in_an_index_is_still_refused():
    with pytest.raises(SpecError, match=r"\+ - \* // %"):
        parse_cascade("inputs: A[m]\nB[m] = A[m/2]")


def test_a_filter_on_the_original_rank_is_written_in_its_parts(rng):
    c = parse_cascade(
        "inputs: K[e,m], Q[e,p]\npartition: M -> M1, M0\nsizes: M0=3\n"
        "mask: m <= p\nQK[m1,m0,p] = Q[e,p] * K[e,m1*M0+m0]"
    )
    qk = c.einsum("QK")
    assert "m" not in qk.iter_vars and str(qk.where) == "m1 * M0 + m0 <= p"
    q, k = rng.normal(size=(2, 7)), rng.normal(size=(2, 7))
    out = c.evaluate({"Q": q, "K": k}, dict(E=2, M=7, P=7))["QK"].reshape(-1, 7)[:7]
    np.testing.assert_allclose(out, np.triu(k.T @ q))


def test_large_constants_print_in_exponent_form():
    assert str(Const(-1e30)) == "-1e+30" and str(Const(256.0)) == "256"
    c = parse_cascade("inputs: A[m]\nB[m] = max(A[m], -1e30)")
    assert parse_cascade(str(c)) == c and "-1e+30" in str(c)
