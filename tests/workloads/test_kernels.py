"""The kernel cascades (`gemm`) against numpy, and the cascade lookup."""

import numpy as np
import pytest

from einsim.einsum import SpecError, parse_cascade
from einsim.einsum.executor import evaluate
from einsim.workloads import ATTENTION, KERNELS, cascade


def test_gemm_matches_numpy_matmul():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 3))  # A[k,m], B[k,n]
    out = evaluate(cascade("gemm"), {"A": a, "B": b}, {"K": 5, "M": 7, "N": 3})
    np.testing.assert_allclose(out["Z"], a.T @ b, rtol=1e-12)


def test_gemm_round_trips_through_text():
    assert parse_cascade(str(cascade("gemm")), name="gemm") == cascade("gemm")


def test_lookup_covers_both_registries_and_names_the_known():
    assert cascade("fusemax").name == "fusemax_1pass"
    assert set(KERNELS).isdisjoint(ATTENTION)
    with pytest.raises(SpecError, match=r"unknown cascade 'gemv'; known: .*gemm"):
        cascade("gemv")
    with pytest.raises(SpecError, match="takes no parameters"):
        cascade("gemm", M0=4)
