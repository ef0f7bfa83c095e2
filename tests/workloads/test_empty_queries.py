"""A query with no key gets AV = 0 in every form (never NaN), on odd sizes and partial tiles.

Which queries are empty is decided here from the variant's definition (brute force over
m, p), independently of the cascades and of `direct`.
"""

import numpy as np
import pytest

from einsim import attention, parse_cascade
from einsim.workloads import direct, random_inputs
from einsim.workloads.variants import SOFTMAX_FORMS

SHAPE = dict(E=3, F=2, M=5, P=9, M0=2)  # 5 keys in 3 tiles of 2 (the last partial)
GQA = dict(SHAPE, H=4, G=2)


def _keys(m, p):
    return np.arange(m)[:, None], np.arange(p)[None, :]


# (variant, params, shape, keep[m, p] from the variant's definition)
CASES = [
    ("sliding_window", {"W": 2}, SHAPE, lambda m, p: (m <= p) & (p - m < 2)),
    ("sliding_window", {"W": 2, "causal": False}, SHAPE, lambda m, p: 2 * abs(p - m) <= 2),
    ("decode", {}, SHAPE, lambda m, p: m <= 5 - 9 + p),
    ("decode", {"W": 2, "grouped": True}, GQA, lambda m, p: (m <= p - 4) & (p - 4 - m < 2)),
    ("gqa", {"causal": True, "W": 2}, GQA, lambda m, p: (m <= p) & (p - m < 2)),
    ("block_topk", {"BS": 2, "TOPK": 0}, SHAPE, lambda m, p: (m <= p) & (m // 2 == p // 2)),
]


@pytest.mark.parametrize(
    ("name", "params", "shape", "keep"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
@pytest.mark.parametrize("form", [f.value for f in SOFTMAX_FORMS])
def test_a_query_without_keys_gets_zero(name, params, shape, keep, form, rng):
    empty = ~keep(*_keys(shape["M"], shape["P"])).any(axis=0)
    assert empty.any() and not empty.all()  # the case has empty and non-empty queries
    cascade = attention(name, form=form, **params)
    inputs = random_inputs(cascade, shape, rng)
    got = cascade.evaluate(inputs, shape)["AV"]
    reference = direct(name, inputs, **params)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got[..., empty], 0.0)
    np.testing.assert_array_equal(reference[..., empty], 0.0)
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-12)


def test_the_denominator_floor_is_what_avoids_nan(rng):
    # The same 1-pass cascade with RD starting at 0 divides 0 by 0 for an empty query.
    cascade = attention("sliding_window", form="fusemax_1pass", W=2)
    text = str(cascade)
    assert "RD[0,p] = 1e-30" in text
    zero = parse_cascade(text.replace("RD[0,p] = 1e-30", "RD[0,p] = 0"), name="zero")
    inputs = random_inputs(cascade, SHAPE, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(zero.evaluate(inputs, SHAPE)["AV"]).any()


def test_unmasked_forms_keep_the_published_initial_values():
    # The floor is only for masked forms: FuseMax's plain cascade is unchanged.
    text = str(attention("fusemax_1pass"))
    assert "RD[0,p] = 0" in text and "RM[0,p] = -inf" in text


def test_block_topk_runs_where_the_last_key_tile_pads_past_the_last_block(rng):
    """The smallest case of the crash (`einsim check moba --param BS=1 --param TOPK=1
    --param M0=2`), then every form over block sizes, tiles and key counts whose last key
    tile reaches past the last block, against the direct formula."""
    from einsim.workloads.direct import check

    assert check("moba", BS=1, TOPK=1, M0=2).ok
    for bs, m0, m, topk, causal in [(1, 4, 10, 1, True), (2, 3, 7, 1, False), (3, 5, 7, 2, True)]:
        shape = dict(E=3, F=2, M=m, P=m, M0=m0)
        assert (-(-m // m0)) * m0 > -(-m // bs) * bs  # the padding reaches past block N-1
        params = dict(BS=bs, TOPK=topk, causal=causal)
        for form in SOFTMAX_FORMS:
            cascade = attention("block_topk", form=form.value, **params)
            inputs = random_inputs(cascade, shape, rng)
            got = cascade.evaluate(inputs, shape)["AV"]
            want = direct("block_topk", inputs, **params)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
