"""The routed systems of issue 16 (`workloads.literature_routed`): registration, parameter
bounds, pass counts, and the pricing of their selections (from data against a brute-force
count of the keys each query reads, and from the declared density).

Every (variant, form, case) is also checked against its direct formula by
tests/workloads/test_variants.py, which iterates the registry."""

import numpy as np
import pytest

from einsim import SpecError, attention, op_counts, passes
from einsim.einsum import Op, occupancy
from einsim.workloads import ATTENTION, DIRECT, check, random_inputs

ROUTED = (
    "routing",
    "hyper_attention",
    "hip",
    "landmark",
    "moh",
    "vmoba",
    "biformer",
    "flexprefill",
)


@pytest.mark.parametrize("name", ROUTED)
def test_registered_with_a_direct_formula_and_checks(name):
    assert name in ATTENTION and name in DIRECT
    result = check(name)
    assert result.ok, result.max_error


@pytest.mark.parametrize("name", ROUTED)
def test_tiled_forms_keep_their_pass_counts(name):
    assert passes(attention(name, form="online_2pass"), "M") == {"M1": 2, "M0": 3}
    assert passes(attention(name, form="fusemax_1pass"), "M") == {"M1": 1, "M0": 2}


def test_stable_pass_counts():
    # Routing's and MoH's selections read no full traversal of the keys: 3 passes, as
    # softmax. VMoBA's and BiFormer's block means are a pass over the keys before it.
    assert passes(attention("routing", form="stable_3pass"), "M") == 3
    assert passes(attention("moh", form="stable_3pass"), "M") == 3
    assert passes(attention("vmoba", form="stable_3pass"), "M") == 4
    assert passes(attention("biformer", form="stable_3pass"), "M") == 4


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("landmark", dict(TOPK=10**30), "TOPK: expected an integer <= 64"),
        ("hip", dict(TOPK=65), "TOPK: expected an integer <= 64"),
        ("hip", dict(DEPTH=7), "DEPTH must be an integer in \\[0, 6\\], got 7"),
        ("hip", dict(TOPK=0), "TOPK must be an integer in \\[1, 64\\], got 0"),
        ("routing", dict(C=0), "C must be an integer in \\[1, 4096\\], got 0"),
        ("routing", dict(W=4, causal=False), "W \\(a window\\) needs causal=1"),
        ("hyper_attention", dict(R=17), "R must be an integer in \\[1, 16\\], got 17"),
        ("moh", dict(HS=0, TOPK=0), "HS \\+ TOPK must be >= 1"),
        ("vmoba", dict(layout="4d"), "layout must be one of 1d, 2d, 3d"),
        ("vmoba", dict(X=10**6), "X must be an integer in \\[1, 4096\\]"),
        ("biformer", dict(RX=0), "RX must be an integer in \\[1, 4096\\], got 0"),
        ("flexprefill", dict(GAMMA=1.5), "GAMMA must be a number in \\[0.01, 1.0\\], got 1.5"),
        ("flexprefill", dict(pattern="a_shape"), "pattern must be one of auto, query_aware"),
    ],
)
def test_bad_parameters_are_refused_with_the_range(name, params, message):
    with pytest.raises(SpecError, match=message) as error:
        attention(name, **params)
    assert "\n" not in str(error.value)


def _qk_points(cascade, shape, **kw) -> int:
    (count,) = op_counts(cascade, shape, **kw)["QK"].values()
    return count // shape["E"]


def test_moh_prices_the_active_heads_from_data(rng):
    shape = dict(H=6, E=3, F=2, M=9, P=9, M0=4)
    cascade = attention("moh", HS=1, TOPK=2)
    inputs = random_inputs(cascade, shape, rng)
    # Brute force: per token, head 0 (shared) and its 2 best routed heads read m <= p.
    score = np.einsum("hep,he->hp", inputs["Q"], inputs["RT"])
    keys = np.arange(shape["P"]) + 1
    active = 0
    for p in range(shape["P"]):
        routed = np.argsort(-score[1:, p])[:2] + 1
        active += (1 + len(routed)) * keys[p]
    assert _qk_points(cascade, shape, inputs=inputs) == active
    # Without data: the declared (HS + TOPK) / H of the causal points.
    assert _qk_points(cascade, shape) == round(3 / 6 * shape["H"] * keys.sum())


def test_biformer_prices_the_routed_regions_from_data(rng):
    shape = dict(E=3, F=2, M=20, P=20, M0=6)
    params = dict(X=4, Y=5, RX=2, RY=2, TOPK=2)
    cascade = attention("biformer", **params)
    inputs = random_inputs(cascade, shape, rng)
    x, y = np.divmod(np.arange(20), 5)
    region = (x // 2) * 3 + y // 2
    size = np.bincount(region)
    q_mean = np.stack([inputs["Q"][:, region == r].mean(1) for r in range(6)], 1)
    k_mean = np.stack([inputs["K"][:, region == r].mean(1) for r in range(6)], 1)
    affinity = q_mean.T @ k_mean  # [query region, key region]
    expected = sum(size[np.argsort(-affinity[region[p]])[:2]].sum() for p in range(20))
    assert _qk_points(cascade, shape, inputs=inputs) == expected
    found = occupancy(cascade, shape, {})
    assert found["QK"].method == "declared_density"


def test_routing_prices_the_clusters_from_data(rng):
    shape = dict(E=3, F=2, M=12, P=12, M0=5)
    cascade = attention("routing", C=3)
    inputs = random_inputs(cascade, shape, rng)
    cq = np.argmax(inputs["Q"].T @ inputs["MU"], axis=1)
    ck = np.argmax(inputs["K"].T @ inputs["MU"], axis=1)
    m, p = np.arange(12)[:, None], np.arange(12)[None, :]
    expected = int(((ck[:, None] == cq[None, :]) & (m <= p)).sum())
    assert _qk_points(cascade, shape, inputs=inputs) == expected


def test_selection_work_is_priced_as_einsums():
    # HyperAttention's sorted ranks compare every pair of keys (and of queries): M^2 and
    # P^2 points of [a >= b + 1] = max(0, 1 - max(0, b + 1 - a)) summed, without data.
    shape = dict(E=4, F=4, M=64, P=48, M0=16)
    counts = op_counts(attention("hyper_attention", R=4, BS=8), shape)
    per_point = {Op.MAX: 2, Op.SUB: 2, Op.ADD: 2}  # one add is the reduction
    assert counts["RK"] == {op: n * 64 * 64 for op, n in per_point.items()}
    assert counts["RQ"] == {op: n * 48 * 48 for op, n in per_point.items()}
    # Routing: the centroid scores are C x M x E MACs.
    counts = op_counts(attention("routing", C=5), shape)
    assert list(counts["SCK"].values()) == [5 * 64 * 4]


@pytest.mark.parametrize("name", ROUTED)
def test_priced_without_inputs_at_a_declared_density(name):
    cascade = attention(name)
    shape = dict(H=8, E=8, F=8, M=4096, P=4096)
    dense = 4096 * 4096 * (8 if name in ("moh", "flexprefill") else 1)
    points = _qk_points(cascade, {**shape, "E": 8})
    assert 0 < points < dense


def test_flexprefill_auto_picks_a_pattern_per_head(rng):
    # With TAU = 0.3 some heads pass the JS test: each head's output is that of the fixed
    # pattern the cascade's QA chose for it, and both patterns occur.
    shape, params = dict(H=6, E=2, F=3, M=9, P=9, M0=2), dict(BS=2, GAMMA=0.8, TAU=0.3)
    auto = attention("flexprefill", **params)
    inputs = random_inputs(auto, shape, rng)
    got = auto.evaluate(inputs, shape, keep=("QA", "AV"))
    qa = got["QA"] > 0
    assert qa.any() and not qa.all()
    fixed = {}
    for pattern in ("query_aware", "vertical_slash"):
        cascade = attention("flexprefill", pattern=pattern, **params)
        kept = {t.name: inputs[t.name] for t in cascade.inputs}
        fixed[pattern] = cascade.evaluate(kept, shape)["AV"]
    expected = np.where(qa[:, None, None], fixed["query_aware"], fixed["vertical_slash"])
    np.testing.assert_allclose(got["AV"], expected, rtol=1e-12, atol=1e-14)
