"""The literature variants of issue 16 (workloads/literature.py): structure against brute
force, parameter bounds, and the properties each paper states. Agreement of every form with
the direct formula on the registry cases is tests/workloads/test_variants.py."""

import math

import numpy as np
import pytest

from einsim import SpecError, attention, op_counts, passes
from einsim.workloads import direct, random_inputs
from einsim.workloads.literature import power_attention_keep

NAMES = (
    "power_attention",
    "duo_attention",
    "razor_attention",
    "combiner",
    "selective",
    "relative",
    "softplus",
    "titans_memory",
)


def test_power_attention_counts_powers_of_two_by_brute_force():
    for m, w, bs in [(50, 3, 1), (37, 1, 2), (64, 2, 4)]:
        counts = op_counts(
            attention("power_attention", W=w, BS=bs, form="stable_3pass"),
            dict(E=1, F=1, M=m, P=m),
        )
        keep = 0
        for p in range(m):
            for k in range(p + 1):
                d = p // bs - k // bs
                keep += d < w or d in {2**i for i in range(8)}
        assert list(counts["QK"].values()) == [keep]
        assert power_attention_keep(m, m, w, bs).sum() == keep


def test_power_attention_is_logarithmic():
    # W + log2(P) keys per late query (BS = 1): the exponentially growing receptive field.
    counts = power_attention_keep(4096, 4096, 4, 1)
    assert counts[-1] == 4 + sum(1 for i in range(13) if 2**i >= 4 and 2**i <= 4095)


@pytest.mark.parametrize("name", ["duo_attention", "razor_attention"])
def test_all_retrieval_heads_is_causal_attention(name, rng):
    shape = dict(H=3, E=3, F=2, M=9, P=9, M0=4)
    cascade = attention(name, RP=100, S=1, W=2)
    inputs = random_inputs(cascade, shape, rng)
    causal = np.stack(
        [direct("causal", {t: inputs[t][h] for t in ("Q", "K", "V")}) for h in range(shape["H"])]
    )
    np.testing.assert_allclose(cascade.evaluate(inputs, shape)["AV"], causal, atol=1e-12)


def test_duo_attention_streaming_heads_are_sinks_window(rng):
    shape = dict(H=4, E=3, F=2, M=10, P=10, M0=3)
    cascade = attention("duo_attention", RP=50, S=2, W=3)  # heads 0, 1 retrieval
    inputs = random_inputs(cascade, shape, rng)
    out = cascade.evaluate(inputs, shape)["AV"]
    for h in (2, 3):
        per_head = {t: inputs[t][h] for t in ("Q", "K", "V")}
        np.testing.assert_allclose(out[h], direct("sinks_window", per_head, S=2, W=3), atol=1e-12)


def test_duo_attention_work_scales_with_the_retrieval_fraction():
    shape = dict(H=8, E=1, F=1, M=64, P=64, M0=16)
    full = 64 * 65 // 2
    streaming = sum(sum(1 for m in range(p + 1) if m < 4 or p - m < 4) for p in range(64))
    for rp in (0, 25, 50, 100):
        counts = op_counts(attention("duo_attention", RP=rp, S=4, W=4), shape)
        retrieval = math.ceil(8 * rp / 100)
        assert list(counts["QK"].values()) == [retrieval * full + (8 - retrieval) * streaming]


def test_razor_compensation_token_is_the_dropped_spans_mean(rng):
    # One streaming head, one query whose dropped span is keys 1..5: the compensation token
    # is exactly a key equal to their mean, counted 5 times.
    shape = dict(H=1, E=3, F=2, M=8, P=8, M0=3)
    cascade = attention("razor_attention", RP=0, S=1, W=2)
    inputs = random_inputs(cascade, shape, rng)
    q, k, v = (inputs[t][0] for t in ("Q", "K", "V"))
    p = 7
    kept = [0, 6, 7]
    kbar, vbar = k[:, 1:6].mean(axis=1), v[:, 1:6].mean(axis=1)
    s = np.append(q[:, p] @ k[:, kept], q[:, p] @ kbar)
    w = np.exp(s - s.max()) * np.array([1, 1, 1, 5])
    expected = (np.column_stack([v[:, kept], vbar]) @ w) / w.sum()
    np.testing.assert_allclose(cascade.evaluate(inputs, shape)["AV"][0, :, p], expected)


def test_combiner_with_one_span_is_causal(rng):
    shape = dict(E=3, F=2, M=7, P=7, M0=3)
    cascade = attention("combiner", L=16)
    inputs = random_inputs(cascade, shape, rng)
    np.testing.assert_allclose(
        cascade.evaluate(inputs, shape)["AV"], direct("causal", inputs), atol=1e-12
    )


def test_selective_with_zero_projection_is_causal(rng):
    shape = dict(E=3, F=2, M=7, P=7, M0=3)
    cascade = attention("selective")
    inputs = random_inputs(cascade, shape, rng)
    inputs["WT"] = np.zeros_like(inputs["WT"])  # tanh(0) = 0: temperature 1
    np.testing.assert_allclose(
        cascade.evaluate(inputs, shape)["AV"], direct("causal", inputs), atol=1e-12
    )


def test_relative_with_constant_embedding_is_causal(rng):
    # Er[:, r] = c for every distance adds q . c to every score of a query: softmax unchanged.
    shape = dict(E=3, F=2, M=9, P=9, R=9, M0=4)
    cascade = attention("relative")
    inputs = random_inputs(cascade, shape, rng)
    inputs["ER"] = np.repeat(rng.normal(size=(3, 1)), 9, axis=1)
    np.testing.assert_allclose(
        cascade.evaluate(inputs, shape)["AV"], direct("causal", inputs), atol=1e-12
    )


def test_softplus_is_one_pass_and_rows_sum_to_one(rng):
    shape = dict(E=3, F=1, M=7, P=7)
    cascade = attention("softplus", POW=2)
    assert passes(cascade, "M") == 1
    inputs = random_inputs(cascade, shape, rng)
    inputs["V"] = np.ones_like(inputs["V"])  # a convex combination of ones is one
    np.testing.assert_allclose(cascade.evaluate(inputs, shape)["AV"], 1.0)


def _titans_token_loop(q, k, v, alpha, theta, chunk):
    # The paper's mini-batch model written token by token (Section 3.2): the gradient of
    # token t at the memory of its chunk's start.
    memory = np.zeros((v.shape[0], k.shape[0]))
    out = np.zeros((v.shape[0], q.shape[1]))
    for t in range(q.shape[1]):
        if t % chunk == 0:
            start = memory.copy()
        memory = (1 - alpha) * memory + theta * np.outer(v[:, t] - start @ k[:, t], k[:, t])
        out[:, t] = memory @ q[:, t]
    return out


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 16])
def test_titans_chunked_formula_is_the_token_loop_of_the_mini_batch_model(chunk, rng):
    from einsim.workloads.literature_direct import titans_chunked

    q, k, v = rng.normal(size=(3, 11)), rng.normal(size=(3, 11)), rng.normal(size=(2, 11))
    for alpha in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(
            titans_chunked(q, k, v, alpha, 0.4, chunk),
            _titans_token_loop(q, k, v, alpha, 0.4, chunk),
            atol=1e-12,
        )


def test_titans_recurrent_and_chunked_forms_agree_and_chunk_one_is_the_delta_rule(rng):
    shape = dict(E=3, F=2, M=11, P=11)
    params = dict(ALPHA=0.15, THETA=0.4)
    delta_rule = attention("titans_memory", **params)
    inputs = random_inputs(delta_rule, shape, rng)
    token = delta_rule.evaluate(inputs, shape)["AV"]
    for chunk in (1, 4):  # 11 = 4 + 4 + 3: a partial last chunk
        blocked = attention("titans_memory", form="blocked", CHUNK=chunk, **params)
        recurrent = attention("titans_memory", form="direct", CHUNK=chunk, **params)
        got = blocked.evaluate(inputs, shape)["AV"]
        np.testing.assert_allclose(got, recurrent.evaluate(inputs, shape)["AV"], atol=1e-12)
        if chunk == 1:
            np.testing.assert_allclose(got, token, atol=1e-12)


def test_titans_mini_batches_differ_from_the_delta_rule_at_second_order_in_theta(rng):
    # Gradients at the chunk's start instead of the current memory: the first-order terms
    # in THETA are the same, so halving THETA quarters the difference (ratio -> 4).
    q, k, v = rng.normal(size=(3, 12)), rng.normal(size=(3, 12)), rng.normal(size=(2, 12))

    def gap(theta):
        chunked = direct("titans_memory", {"Q": q, "K": k, "V": v}, THETA=theta, CHUNK=4)
        token = direct("titans_memory", {"Q": q, "K": k, "V": v}, THETA=theta, CHUNK=1)
        return np.abs(chunked - token).max()

    assert gap(1e-2) > 0
    assert 3.5 < gap(2e-3) / gap(1e-3) < 4.5


def test_titans_blocked_form_updates_the_memory_once_per_chunk():
    # The memory recurrence runs over chunks: ceil(M / CHUNK) F x E updates (adds), not M.
    from einsim.einsum import Op

    shape = dict(E=4, F=3, M=50, P=50)
    token = op_counts(attention("titans_memory"), shape)["MEM"]
    blocked = op_counts(attention("titans_memory", form="blocked", CHUNK=8), shape)["MEM"]
    assert token[Op.ADD] == 50 * 4 * 3
    assert blocked[Op.ADD] == math.ceil(50 / 8) * 4 * 3


def test_titans_without_decay_and_orthonormal_keys_recalls_values(rng):
    # theta = 1, alpha = 0, orthonormal keys: after writing (k_t, v_t) for all t, the memory
    # maps k_t to v_t exactly (delta rule), so querying key j at the last step returns v_j.
    e = 4
    keys = np.linalg.qr(rng.normal(size=(e, e)))[0]
    values = rng.normal(size=(2, e))
    shape = dict(E=e, F=2, M=e, P=e)
    cascade = attention("titans_memory", ALPHA=0.0, THETA=1.0)
    out = cascade.evaluate({"Q": keys, "K": keys, "V": values}, shape)["AV"]
    np.testing.assert_allclose(out[:, -1], values @ keys.T @ keys[:, -1], atol=1e-12)
    np.testing.assert_allclose(out[:, -1], values[:, -1], atol=1e-12)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("duo_attention", dict(RP=101), "RP \\(retrieval heads, percent\\) must be an integer"),
        ("razor_attention", dict(RP=-1), "in \\[0, 100\\]"),
        ("power_attention", dict(W=0), "W must be an integer >= 1"),
        ("power_attention", dict(BS=0), "BS must be an integer >= 1"),
        ("combiner", dict(L=0), "L must be an integer >= 1"),
        ("combiner", dict(form="stable_3pass"), "form must be one of online_2pass"),
        ("softplus", dict(POW=17), "POW must be an integer in \\[1, 16\\]"),
        ("softplus", dict(POW=10**30), "POW"),
        ("titans_memory", dict(ALPHA=1.5), "ALPHA must be a number in \\[0.0, 1.0\\]"),
        ("titans_memory", dict(THETA=-1.0), "THETA must be a number"),
        ("titans_memory", dict(CHUNK=0), "CHUNK must be an integer in \\[1, 65536\\]"),
        ("titans_memory", dict(CHUNK=10**30), "CHUNK"),
        ("selective", dict(causal="x"), "causal must be true or false"),
    ],
)
def test_bad_parameters_name_the_parameter(name, params, message):
    with pytest.raises(SpecError, match=message) as error:
        attention(name, **params)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_systems_name(name):
    assert attention(name).name == name
