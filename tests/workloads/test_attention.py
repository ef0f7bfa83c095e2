"""The four plain-softmax algorithms against the direct formula softmax(QK^T) V.

Every other registered variant is checked against its own direct formula in
test_variants.py.
"""

import numpy as np
import pytest

from einsim import SpecError, attention
from einsim.workloads import parameters

# The plain (unmasked, single-head) softmax algorithms; test_variants.py covers the rest.
PLAIN = ["naive_2pass", "stable_3pass", "online_2pass", "fusemax_1pass"]


def softmax_attention(q, k, v):
    scores = k.T @ q  # [m, p]
    weights = np.exp(scores - scores.max(axis=0))
    weights /= weights.sum(axis=0)
    return v @ weights  # [f, p]


SHAPES = [
    dict(E=4, F=3, M=8, P=5, M0=4),  # M1 = 2
    dict(E=3, F=5, M=12, P=7, M0=3),  # M1 = 4
    dict(E=2, F=2, M=10, P=3, M0=4),  # partial last tile
    dict(E=5, F=4, M=1, P=1, M0=1),  # the smallest
]


@pytest.mark.parametrize("name", PLAIN)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{M}_M0{M0}".format(**s))
def test_variant_equals_direct_softmax(name, shape, rng):
    q = rng.normal(size=(shape["E"], shape["P"]))
    k = rng.normal(size=(shape["E"], shape["M"]))
    v = rng.normal(size=(shape["F"], shape["M"]))
    out = attention(name).evaluate({"Q": q, "K": k, "V": v}, shape)
    np.testing.assert_allclose(out["AV"], softmax_attention(q, k, v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", PLAIN)
def test_every_variant_declares_the_paper_layout(name):
    c = attention(name)
    assert {t.name: t.ranks for t in c.inputs} == {
        "Q": ("E", "P"),
        "K": ("E", "M"),
        "V": ("F", "M"),
    }
    assert c.outputs == ("AV",)


def test_tile_parameter_and_errors():
    assert parameters("fusemax") == {"M0": 256}
    assert dict(attention("online_2pass", M0=32).default_sizes) == {"M0": 32}
    with pytest.raises(SpecError, match="unknown parameter"):
        attention("stable_3pass", M0=4)
    with pytest.raises(SpecError, match=r"M0 .* positive integer"):
        attention("fusemax", M0=0)
    with pytest.raises(SpecError, match=r"unknown attention variant 'nope'; known: .*fusemax"):
        attention("nope")


def test_large_scores_stay_stable(rng):
    q = rng.normal(size=(4, 6)) * 40
    k = rng.normal(size=(4, 8)) * 40
    v = rng.normal(size=(3, 8))
    shape = dict(E=4, F=3, M=8, P=6, M0=2)
    for name in ("stable_3pass", "online_2pass", "fusemax_1pass"):
        out = attention(name).evaluate({"Q": q, "K": k, "V": v}, shape)
        np.testing.assert_allclose(out["AV"], softmax_attention(q, k, v), rtol=1e-9)
