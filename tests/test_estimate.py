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
    ("llama3_8b_duo", "fusemax_cloud", "decode", 4096, 1),
    ("llama3_8b_razor", "h100_sxm", "decode", 8192, 2),
    ("wan2_1_3b_vmoba", "h100_sxm", "prefill", 13440, 1),
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
    """Every zoo model (not the video models, whose grids fix seq_len at 13K-119K tokens)
    prices every operator on a spatial array and on a GPU, or (a GPU kernel that masks by
    key and query position only, before per-head masks) refuses a per-head attention
    (DuoAttention, RazorAttention) on the attention rows alone, saying why."""
    spec = MODELS[model]
    for target in ("fusemax_cloud", "h100_sxm"):
        e = estimate(model, target, "prefill", 512, 1)
        if not e.valid and target == "h100_sxm" and spec.attention.endswith("_attention"):
            bad = e.breakdown[~e.breakdown.valid]
            assert set(bad.operator) == {"attention"} and len(bad) == spec.layers
            assert "depends on h" in e.reasons[0] and len(e.reasons) == 1
            continue
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


# ------------------------------------------------------------- the literature's model configs


def test_vmoba_layers_cycle_their_partitions():
    """Wan2.1-1.3B with VMoBA: layers cycle 1D / 2D / 3D key blocks (7, 40, 60 blocks, own +
    TOPK of 0, 6, 10): layers three apart cost the same, neighbours differ. The 1D layer's
    blocks are runs of 3 whole frames, contiguous in token order, so with 1 of 7 kept its
    attention computes well under dense; 2D tiles span every frame and 3D cubes are strided,
    so their kept keys touch nearly every GPU tile (priced whole: tile granularity)."""
    e = estimate("wan2_1_3b_vmoba", "h100_sxm", "prefill", 13440, 1)
    assert e.valid, e.reasons
    att = e.breakdown[e.breakdown.operator == "attention"].set_index("layer")
    latency, flops = att.latency_s.to_numpy(), att.flops.to_numpy()
    assert len(latency) == 30
    np.testing.assert_array_equal(latency[3:], latency[:-3])
    assert len(set(latency[:3])) == 3 and len(set(flops[:3])) == 3
    # dense attention: QK and AV, 2 FLOPs per multiply-add, E = F = 128, 12 heads
    dense = 2 * 2 * 128 * 13440**2 * 12
    assert flops[0] < dense / 2 and latency[0] < latency[1:3].min()


def _with_params(model: str, **params):
    spec = MODELS[model]
    merged = dict(spec.params) | params
    return dataclasses.replace(spec, name=f"{model}_x", params=tuple(merged.items()))


@pytest.mark.parametrize("target", ["h100_sxm", "flat_cloud"])
def test_head_split_decode_at_the_extremes_is_full_or_windowed_attention(target):
    """DuoAttention's decode with every K/V group retrieving (RP = 100) is Llama-3-8B's full
    decode; with none (RP = 0) it is a window of S + W keys (Mistral-style GQA decode)."""
    full = estimate("llama3_8b", target, "decode", 8192, 1)
    every = estimate(_with_params("llama3_8b_duo", RP=100), target, "decode", 8192, 1)
    np.testing.assert_allclose(every.latency_s, full.latency_s, rtol=1e-12)
    assert every.kv_cache_bytes == full.kv_cache_bytes
    windowed = dataclasses.replace(
        MODELS["llama3_8b"], name="llama3_8b_w320", params=(("causal", True), ("W", 64 + 256))
    )
    none = estimate(_with_params("llama3_8b_duo", RP=0), target, "decode", 8192, 1)
    np.testing.assert_allclose(
        none.latency_s, estimate(windowed, target, "decode", 8192, 1).latency_s, rtol=1e-12
    )


def test_duo_and_razor_kv_caches_closed_form():
    """KV cache = layers x 2 x E x (retrieval groups x seq + other groups x (S + W)) words:
    DuoAttention keeps 4 of Llama-3-8B's 8 K/V groups whole (RP 50%), 64 + 256 keys in the
    rest; RazorAttention ceil(15% of 8) = 2 groups whole, 4 + 4000 keys in the rest."""
    seq, word = 32768, 2
    duo = estimate("llama3_8b_duo", "h100_sxm", "decode", seq, 1)
    assert duo.kv_cache_bytes == 32 * 2 * 128 * (4 * seq + 4 * 320) * word
    razor = estimate("llama3_8b_razor", "h100_sxm", "decode", seq, 1)
    assert razor.kv_cache_bytes == 32 * 2 * 128 * (2 * seq + 6 * 4004) * word
    full = estimate("llama3_8b", "h100_sxm", "decode", seq, 1)
    assert full.kv_cache_bytes == 32 * 2 * 128 * 8 * seq * word
    # decode reads the retrieval groups' whole cache and the rest's kept keys
    for e in (duo, razor):
        rows = e.breakdown[e.breakdown.layer == 0]
        assert set(rows.operator) >= {"attention", "attention_streaming"}
