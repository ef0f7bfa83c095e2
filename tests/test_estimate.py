"""Whole-model estimates (`einsim.estimate`): totals against their breakdown, identical layers
against one layer, parameter counts and KV caches against published and closed-form
numbers, and the uncalibrated GPU estimate beside published whole-model measurements."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import einsim
from einsim.einsum import SpecError
from einsim.model_estimate import _attention_cost, cache_clear, estimate
from einsim.workloads import MODELS

CASES = [
    ("bert_base", "fusemax_cloud", "prefill", 512, 2),
    ("llama3_8b", "flat_cloud", "decode", 2048, 1),
    ("mixtral_8x7b", "h100_sxm", "prefill", 1024, 1),
    ("gemma2_9b", "a100_sxm", "decode", 8192, 2),
]


@pytest.mark.parametrize(("model", "target", "phase", "seq", "batch"), CASES)
def test_total_is_the_sum_of_the_breakdown(model, target, phase, seq, batch):
    e = estimate(model, target, phase, seq, batch)
    rows = e.breakdown
    assert e.valid, e.reasons
    np.testing.assert_allclose(e.latency_s, rows.latency_s.sum(), rtol=1e-12)
    np.testing.assert_allclose(e.dram_bytes, rows.dram_bytes.sum(), rtol=1e-12)
    if e.energy_pj is None:
        assert target.endswith("sxm")  # GPUs: energy not modelled, and said so
        assert any("energy not modelled" in note for note in e.notes)
    else:
        np.testing.assert_allclose(e.energy_pj, rows.energy_pj.sum(), rtol=1e-12)
    spec = MODELS[model]
    assert (rows.block == "layer").sum() % spec.layers == 0
    assert set(rows.layer[rows.block == "layer"]) == set(range(spec.layers))
    produced = batch * (seq if phase == "prefill" else 1)
    np.testing.assert_allclose(e.tokens_per_s, produced / e.latency_s)


@pytest.mark.parametrize("target", ["fusemax_cloud", "h100_sxm"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_identical_layers_cost_layers_times_one(target, phase):
    one = dataclasses.replace(MODELS["llama3_8b"], name="llama3_8b_1", layers=1)
    many = dataclasses.replace(one, name="llama3_8b_7", layers=7)
    a = estimate(one, target, phase, 1024, 1)
    b = estimate(many, target, phase, 1024, 1)
    outside = a.breakdown[a.breakdown.block != "layer"].latency_s.sum()
    layer = a.latency_s - outside
    np.testing.assert_allclose(b.latency_s, outside + 7 * layer, rtol=1e-12)
    np.testing.assert_allclose(b.dram_bytes - a.dram_bytes, 6 * (a.dram_bytes - _outside(a)))


def _outside(e) -> float:
    return float(e.breakdown[e.breakdown.block != "layer"].dram_bytes.sum())


def test_eighty_identical_layers_map_their_attention_once():
    cache_clear()
    before = _attention_cost.cache_info().misses
    estimate("llama3_70b", "h100_sxm", "decode", 4096, 1)
    assert _attention_cost.cache_info().misses - before == 1


def test_gemma2_local_and_global_layers_differ():
    """Gemma-2 alternates a sliding window of 4096 (even layers) with global attention."""
    e = estimate("gemma2_9b", "h100_sxm", "prefill", 16384, 1)
    att = e.breakdown[e.breakdown.operator == "attention"].set_index("layer").latency_s
    assert (att.iloc[0::2].to_numpy() < att.iloc[1::2].to_numpy()).all()
    spec = MODELS["gemma2_9b"]
    # KV cache, closed form: 21 local layers keep 4096 keys, 21 global keep 16384; bf16.
    keys = spec.layers // 2 * (4096 + 16384)
    assert e.kv_cache_bytes == 2 * spec.G * spec.E * keys * 2


# Published parameter counts (total): Llama 3 8B 8.03e9 and 70B 70.6e9 (Meta model card);
# Mixtral 8x7B 46.7e9 (Jiang et al. 2024, Sec. 2: "47B parameters"; Mistral AI's release
# note: 46.7B); Gemma 2 9B 9.24e9 (Gemma 2 report, Table 2: 8.32e9 non-embedding +
# 917,504,000 embedding); Llama 2 7B 6.74e9 (Hugging Face model card).
PARAMETERS = {
    "llama3_8b": 8.03e9,
    "llama3_70b": 70.6e9,
    "mixtral_8x7b": 46.7e9,
    "gemma2_9b": 9.24e9,
    "llama2_7b": 6.74e9,
}


@pytest.mark.parametrize(("model", "published"), PARAMETERS.items())
def test_weight_bytes_match_published_parameter_counts(model, published):
    e = estimate(model, "h100_sxm", "decode", 128, 1)
    params = e.weight_bytes / 2  # bf16
    # Gemma ties its embedding and LM head; the estimate reads both (counted twice).
    if model == "gemma2_9b":
        params -= MODELS[model].vocab * MODELS[model].D
    assert abs(params / published - 1) < 0.02, params


def test_moe_routes_tokens_to_top_k_experts():
    """Decode of one token reads 2 of Mixtral's 8 experts: its FFN products move the
    weights of 2 experts (3 matrices of D x S each, bf16) on a GPU."""
    spec = MODELS["mixtral_8x7b"]
    e = estimate(spec, "h100_sxm", "decode", 1024, 1)
    ffn = e.breakdown[e.breakdown.operator.str.startswith("FFN") & (e.breakdown.layer == 0)]
    weights = 2 * 3 * spec.D * spec.S * 2
    np.testing.assert_allclose(ffn.dram_bytes.sum(), weights, rtol=1e-3)
    dense = dataclasses.replace(spec, name="dense", experts=1, experts_per_token=1)
    d = estimate(dense, "h100_sxm", "decode", 1024, 1)
    assert e.latency_s > d.latency_s


def test_memory_fit_is_reported():
    big = estimate("llama3_70b", "h100_sxm", "decode", 8192, 1)
    assert big.fits_memory is False and not big.weights_fit_on_chip  # 141 GB > 80 GB
    small = estimate("llama3_8b", "h100_sxm", "decode", 8192, 1)
    assert small.fits_memory is True
    spatial = estimate("bert_base", "fusemax_cloud", "prefill", 256, 1)
    assert spatial.fits_memory is None  # the spec bounds no DRAM
    assert spatial.energy_pj > 0 and spatial.energy_per_token_pj > 0


def test_substituted_attention_is_priced():
    own = estimate("llama3_8b", "h100_sxm", "prefill", 16384, 1)
    window = estimate("llama3_8b", "h100_sxm", "prefill", 16384, 1, attention="sliding_window")
    assert window.attention == "sliding_window"
    att = {
        name: e.breakdown[e.breakdown.operator == "attention"].latency_s.sum()
        for name, e in (("own", own), ("window", window))
    }
    assert att["window"] < att["own"]  # a 4096-key window at 16K keys


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(model="llama9"), "unknown model"),
        (dict(phase="train"), "phase"),
        (dict(attention="nope"), "neither a form"),
        (dict(batch=0), "batch"),
        (dict(model="bert_base", phase="decode"), "encoder"),
    ],
)
def test_bad_inputs_raise_spec_error(kwargs, message):
    args = dict(model="llama3_8b", target="h100_sxm", phase="prefill", seq_len=128) | kwargs
    with pytest.raises(SpecError, match=message):
        estimate(**args)


def test_public_face():
    e = einsim.estimate("llama3_8b", "h100_sxm", "decode", 1024, 1)
    assert math.isnan(e.ttft_s) and e.tpot_s == e.latency_s


# --------------------------------------------------------------- published measurements

# NVIDIA NeMo Framework user guide, "Performance" -> Llama-2 inference
# (https://docs.nvidia.com/nemo-framework/user-guide/latest/performance/llama.html),
# "Chatbot conversation" case: 128 input tokens, 20 output tokens, TP = PP = 1, one GPU,
# average latency of a request (ms). A100 80GB SXM4 and H100 80GB HBM3.
PUBLISHED = [
    # (model, target, batch, input, output, latency_s, source)
    ("llama2_7b", "a100_sxm", 1, 128, 20, 0.2340, "NeMo perf. page, Llama-2-7B, BS 1, A100"),
    ("llama2_7b", "h100_sxm", 1, 128, 20, 0.1538, "NeMo perf. page, Llama-2-7B, BS 1, H100"),
    ("llama2_7b", "h100_sxm", 8, 128, 20, 0.1992, "NeMo perf. page, Llama-2-7B, BS 8, H100"),
]


def request_latency_s(model, target, batch, prompt, output) -> float:
    """A request: prefill of the prompt (its first output token), then output - 1 decode
    steps at contexts prompt + 1 ... prompt + output - 1."""
    total = estimate(model, target, "prefill", prompt, batch).latency_s
    for step in range(1, output):
        total += estimate(model, target, "decode", prompt + step, batch).latency_s
    return total


@pytest.mark.parametrize(
    ("model", "target", "batch", "prompt", "output", "published", "source"), PUBLISHED
)
def test_uncalibrated_gpu_estimate_beside_published(
    model, target, batch, prompt, output, published, source
):
    ours = request_latency_s(model, target, batch, prompt, output)
    error = ours / published - 1
    print(f"{source}: published {published * 1e3:.1f} ms, einsim {ours * 1e3:.1f} ms, {error:+.0%}")
    assert math.isfinite(error)
    assert 0.1 < ours / published < 10  # uncalibrated: a sanity bound, not a tolerance


@pytest.mark.parametrize("model", [name for name, m in MODELS.items() if not m.grid])
def test_every_zoo_model_is_estimated_on_both_kinds_of_target(model):
    """Every zoo model (not the video model, whose 3D-neighbourhood mask at its 118,800-token
    grid takes minutes to count) prices every operator on a spatial array and on a GPU."""
    spec = MODELS[model]
    for target in ("fusemax_cloud", "h100_sxm"):
        e = estimate(model, target, "prefill", 512, 1)
        assert e.valid, e.reasons
        operators = set(e.breakdown.operator)
        assert {"attention", "Q", "K", "V", "O", "FFN_up", "FFN_down", "norm"} <= operators
        assert ("FFN_gate" in operators) == spec.gated_ffn
        assert ("router" in operators) == (spec.experts > 1)
        assert ("lm_head" in operators) == (spec.vocab > 0)


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_mapping_modes_order(phase):
    """'best' takes the faster of the bundled mappings and the mapper, so it is never
    slower than 'bundled' or the default (which asks the mapper only sometimes)."""
    runs = {
        mode: estimate("mistral_7b", "flat_cloud", phase, 8192, 1, mapping=mode).latency_s
        for mode in ("bundled", None, "best")
    }
    assert runs["best"] <= runs[None] <= runs["bundled"]
