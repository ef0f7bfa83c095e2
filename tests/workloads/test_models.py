"""The model zoo: shapes as data, workloads that evaluate, clear errors."""

import dataclasses

import numpy as np
import pytest

from einsim import SpecError, passes
from einsim.workloads import MODELS, Model, direct, random_inputs, workload

FUSEMAX_SET = {"bert_base": (12, 64), "trxl": (16, 64), "t5_small": (8, 64), "xlm": (16, 128)}


@pytest.mark.parametrize("name", list(FUSEMAX_SET))
def test_fusemax_set_matches_the_reference_table(name):
    model = MODELS[name]
    assert (model.H, model.E, model.batch) == (*FUSEMAX_SET[name], 64)
    w = workload(name, "fusemax_1pass", 1024)
    assert w.cascade.name == "fusemax_1pass"
    assert w.sizes == dict(E=model.E, F=model.E, M=1024, P=1024)
    assert dict(w.outer) == {"B": 64, "H": model.H}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("variant", ["stable_3pass", "online_2pass", "fusemax_1pass"])
def test_every_model_builds_in_every_algorithm(name, variant):
    model = MODELS[name]
    seq = int(np.prod(model.grid)) if model.grid else 4096
    w = workload(name, variant, seq, batch=2)
    assert dict(w.outer)["B"] == 2
    assert w.sizes["M"] == seq and w.sizes["P"] == seq
    if variant == "fusemax_1pass":
        assert passes(w.cascade, "M")["M1"] == 1


def test_llama_and_mistral_are_causal_gqa():
    w = workload("llama3_70b", "online_2pass", 8192)
    assert w.cascade.name == "gqa" and (w.sizes["H"], w.sizes["G"]) == (64, 8)
    assert "where m1 * M0 + m0 <= p" in str(w.cascade) and dict(w.outer) == {"B": 1}
    mistral = workload("mistral_7b", "fusemax_1pass", 32768)
    assert dict(mistral.cascade.default_sizes)["W"] == 4096


@pytest.mark.parametrize("name", ["llama3_8b_duo", "llama3_8b_razor"])
def test_head_split_models_read_each_kv_group_once_in_prefill(name):
    w = workload(name, "fusemax_1pass", 64)
    model = MODELS[name]
    assert w.cascade.tensor_ranks["K"][0] == "G" and w.cascade.tensor_ranks["V"][0] == "G"
    assert (w.sizes["H"], w.sizes["G"]) == (model.H, model.G)
    # the grouped cascade equals its direct formula with K/V repeated over each group's heads
    small = {**w.sizes, "H": 4, "G": 2, "E": 3, "F": 3, "M": 12, "P": 12, "M0": 4}
    inputs = random_inputs(w.cascade, small, np.random.default_rng(0))
    params = dict(model.params) | {"S": 2, "W": 3}
    expected = direct(model.attention, inputs, **params)
    small_model = dataclasses.replace(model, params=tuple(params.items()))
    got = workload(small_model, "fusemax_1pass", 12).cascade.evaluate(inputs, small)["AV"]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_decode_is_one_query_against_the_cache():
    w = workload("mistral_7b", "fusemax_1pass", 10001, phase="decode")
    assert w.cascade.name == "decode" and w.sizes["P"] == 1 and w.sizes["M"] == 10001
    assert w.sizes["G"] == 8
    gpt = workload("gpt3_175b", "stable_3pass", 2048, phase="decode")
    assert "G" not in gpt.sizes and dict(gpt.outer)["H"] == 96


def test_a_small_decode_workload_evaluates_to_its_formula(rng):
    model = Model(
        "tiny",
        H=4,
        G=2,
        E=3,
        D=12,
        S=48,
        batch=1,
        attention="gqa",
        params=(("causal", True), ("W", 3)),
        decoder=True,
    )
    w = workload(model, "fusemax_1pass", 7, phase="decode")
    shape = {**w.sizes, "M0": 3}
    inputs = random_inputs(w.cascade, shape, rng)
    np.testing.assert_allclose(
        w.cascade.evaluate(inputs, shape)["AV"], direct("decode", inputs, W=3, grouped=True)
    )


def test_workload_is_frozen_with_named_fields():
    w = workload("bert_base", "stable_3pass", 512)
    with pytest.raises(AttributeError):
        w.variant = "x"
    assert w.model.name == "bert_base" and w.phase == "prefill"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("gpt5", "fusemax_1pass", 8), {}, "unknown model 'gpt5'; known: bert_base"),
        (("bert_base", "causal", 8), {}, "variant must be an algorithm"),
        (("bert_base", "fusemax_1pass", 8), {"phase": "train"}, "phase must be one of"),
        (("bert_base", "fusemax_1pass", 8), {"phase": "decode"}, "encoder; it has no decode"),
        (("llama3_8b", "naive_2pass", 8), {}, "no naive_2pass form"),
        (("hunyuan_video", "fusemax_1pass", 1000), {}, "seq_len must be 118800"),
        (("bert_base", "fusemax_1pass", 0), {}, "seq_len must be a positive integer"),
    ],
)
def test_workload_errors(args, kwargs, message):
    with pytest.raises(SpecError, match=message):
        workload(*args, **kwargs)


def test_an_attention_the_registry_lacks_fails_clearly():
    model = Model("future", H=8, G=8, E=64, D=512, S=2048, batch=1, attention="ring_mla")
    with pytest.raises(SpecError, match="needs attention 'ring_mla', which the ATTENTION"):
        workload(model, "fusemax_1pass", 1024)


def test_model_validation():
    with pytest.raises(SpecError, match="H=6 must be a multiple of G=4"):
        Model("bad", H=6, G=4, E=64, D=384, S=1536, batch=1, attention="gqa")
