"""Every registered (variant, form, parameter set) against its direct numpy formula.

The cases (parameters and odd shapes: M = 7, partial key tiles, P = 1, M != P) live with
each variant in `ATTENTION.entry(name).meta["cases"]`, so a new variant is checked here
without a new test.
"""

import numpy as np
import pytest

from einsim import SpecError, attention, op_counts, parse_cascade, passes
from einsim.workloads import ATTENTION, DIRECT, Form, direct, random_inputs
from einsim.workloads.variants import SOFTMAX_FORMS

VARIANTS = [e.name for e in ATTENTION.entries() if "cases" in e.meta]


def _cases():
    for name in VARIANTS:
        entry = ATTENTION.entry(name)
        for i, (params, shapes) in enumerate(entry.meta["cases"]):
            for form in entry.meta["forms"]:
                for j, shape in enumerate(shapes):
                    yield pytest.param(name, form, params, shape, id=f"{name}-{form.value}-{i}-{j}")


@pytest.mark.parametrize(("name", "form", "params", "shape"), list(_cases()))
def test_variant_equals_direct_formula(name, form, params, shape, rng):
    cascade = attention(name, form=form.value, **params)
    inputs = random_inputs(cascade, shape, rng)
    out = cascade.evaluate(inputs, shape)["AV"]
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, direct(name, inputs, **params), rtol=1e-10, atol=1e-12)


def test_every_variant_has_a_direct_formula_and_cases():
    for name in ATTENTION:
        assert name in DIRECT
    assert len(VARIANTS) == len(ATTENTION) - 4  # all but the four plain algorithms


@pytest.mark.parametrize("name", VARIANTS)
def test_every_form_round_trips_and_keeps_the_layout(name):
    for form in ATTENTION.entry(name).meta["forms"]:
        cascade = attention(name, form=form.value)
        assert parse_cascade(str(cascade), name=cascade.name) == cascade
        ranks = {t.name: t.ranks for t in cascade.inputs}
        assert ranks["Q"][-2:] == ("E", "P") and ranks["K"][-2:] == ("E", "M")
        assert ranks["V"][-2:] == ("F", "M")
        assert cascade.outputs == ("AV",)
        assert cascade.tensor_ranks["AV"][-2:] == ("F", "P")


EXPECTED_PASSES = {
    Form.STABLE_3PASS: 3,
    Form.ONLINE_2PASS: {"M1": 2, "M0": 3},
    Form.FUSEMAX_1PASS: {"M1": 1, "M0": 2},
}


#: Selections with their own pass counts (a gate pass, blocks of M): test_literature_routed.py.
_OWN_PASSES = ("hyper_attention", "hip", "landmark", "vmoba", "biformer", "flexprefill")


@pytest.mark.parametrize(
    "name", [n for n in VARIANTS if n not in ("agent", "block_topk", *_OWN_PASSES)]
)
def test_softmax_forms_keep_their_pass_counts(name):
    for form in ATTENTION.entry(name).meta["forms"]:
        if form in SOFTMAX_FORMS:
            assert passes(attention(name, form=form.value), "M") == EXPECTED_PASSES[form]


def test_pass_counts_of_the_other_forms():
    assert passes(attention("sigmoid"), "M") == 1
    assert passes(attention("linear", form="direct"), "M") == 1
    assert passes(attention("linear", form="blocked"), "M") == {"M1": 1, "M0": 1}
    # MoBA: the gate is a pass over the key blocks before the attention itself.
    assert passes(attention("block_topk", form="fusemax_1pass"), "M") == {"M1": 1, "M0": 2}
    assert passes(attention("agent", form="fusemax_1pass"), "M") == {"M1": 1, "M0": 2}


def test_causal_op_counts_are_exact():
    shape = dict(E=8, F=8, M=1000, P=1000, M0=256)
    full = op_counts(attention("cross", form="fusemax_1pass"), shape)
    causal = op_counts(attention("causal", form="fusemax_1pass"), shape)
    (full_macs,) = full["QK"].values()
    (causal_macs,) = causal["QK"].values()
    assert full_macs == 1000 * 1000 * 8
    assert causal_macs == 1000 * 1001 // 2 * 8  # about half, exactly
    stable = op_counts(attention("causal", form="stable_3pass"), shape)
    assert stable["QK"] == causal["QK"] and stable["AV"] == causal["SLNV"]


def test_window_op_counts_are_exact():
    m, p = np.arange(50)[:, None], np.arange(50)[None, :]
    for params, keep in [
        (dict(W=7), (m <= p) & (p - m < 7)),
        (dict(W=6, causal=False), np.abs(p - m) <= 3),
    ]:
        counts = op_counts(attention("sliding_window", **params), dict(E=2, F=2, M=50, P=50, M0=8))
        assert counts["QK"] == {next(iter(counts["QK"])): int(keep.sum()) * 2}


def test_neighborhood_counts_k_squared_keys_per_query():
    shape = dict(E=1, F=1, M=35, P=35)
    counts = op_counts(attention("neighborhood_2d", form="stable_3pass", X=7, Y=5, KW=3), shape)
    assert list(counts["QK"].values()) == [35 * 9]


def test_a_fully_masked_first_tile_needs_the_finite_floor(rng):
    # W = 2 with tiles of 2: query 9 sees no key of tiles 0..3. With RM[0] = -inf the
    # correction exp(-inf - -inf) is NaN; the cascade's finite floor keeps it exact.
    params, shape = dict(W=2), dict(E=2, F=2, M=10, P=10, M0=2)
    cascade = attention("sliding_window", form="fusemax_1pass", **params)
    assert "RM[0,p] = -1e+30" in str(cascade)
    inputs = random_inputs(cascade, shape, rng)
    with_inf = parse_cascade(str(cascade).replace("-1e+30", "-inf"))
    assert np.isnan(with_inf.evaluate(inputs, shape)["AV"]).any()
    np.testing.assert_allclose(
        cascade.evaluate(inputs, shape)["AV"], direct("sliding_window", inputs, **params)
    )


def test_unmasked_forms_keep_the_paper_initial_value():
    assert "RM[0,p] = -inf" in str(attention("cross", form="online_2pass"))


def test_large_scores_stay_stable_with_masks(rng):
    shape = dict(E=4, F=3, M=9, P=9, M0=2)
    cascade = attention("sinks_window", S=1, W=3)
    inputs = random_inputs(cascade, shape, rng)
    inputs["Q"] *= 40
    np.testing.assert_allclose(
        cascade.evaluate(inputs, shape)["AV"], direct("sinks_window", inputs, S=1, W=3), rtol=1e-9
    )


def test_aliases():
    assert attention("moba", BS=4) == attention("block_topk", BS=4)
    assert attention("mqa") == attention("gqa")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("causal", dict(form="naive"), "form must be one of stable_3pass, online_2pass"),
        ("sigmoid", dict(form="stable_3pass"), "form must be one of direct"),
        ("sliding_window", dict(W=0), "W must be an integer >= 1, got 0"),
        ("sliding_window", dict(causal="yes"), "causal must be true or false"),
        ("gqa", dict(W=8), "W \\(a window\\) needs causal=1"),
        ("bias", dict(kind="rope"), "kind must be one of tensor, alibi, lowrank"),
        ("linear", dict(phi="relu"), "phi must be one of identity, elu1"),
        ("neighborhood_2d", dict(X=4, KW=5), "KW=5 needs X // DIL >= KW"),
        ("block_topk", dict(TOPK=-1), "TOPK must be an integer >= 0"),
        ("sigmoid", dict(b="x"), "b must be a number"),
        ("causal", dict(W=3), "unknown parameter\\(s\\) W"),
    ],
)
def test_bad_parameters_name_the_parameter(name, params, message):
    with pytest.raises(SpecError, match=message) as error:
        attention(name, **params)
    assert "\n" not in str(error.value)


def test_direct_rejects_unknown_parameters():
    with pytest.raises(SpecError, match="unknown parameter"):
        direct("causal", {}, W=3)
