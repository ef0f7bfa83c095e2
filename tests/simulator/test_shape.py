"""One rule for shape ranks (simulator/shape.py): a rank the cascade iterates is priced by
the cascade and never also a batch multiplier; an unknown rank is refused everywhere."""

import numpy as np
import pytest
from click.testing import CliRunner

from einsim import SpecError, attention, evaluate, load_architecture, load_mapping
from einsim.cli import main
from einsim.mapper import search
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names, split_shape
from einsim.sweeps import sweep

MHA = dict(B=1, H=32, E=128, F=128, M=4096, P=4096)
GQA = dict(MHA, G=8)


def _compute_cycles(report) -> float:
    return float(sum(kernel["compute_cycles"] for kernel in report.kernels))


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def test_a_rank_the_cascade_iterates_is_no_batch_rank():
    gqa = split_shape(attention("gqa"), DEFAULT_BATCH, GQA)
    assert gqa.outer == {"B": 1} and gqa.sizes["H"] == 32 and gqa.multiplier == 1
    mha = split_shape(attention("fusemax"), DEFAULT_BATCH, MHA)
    assert mha.outer == {"B": 1, "H": 32} and "H" not in mha.sizes and mha.multiplier == 32


def test_a_missing_batch_rank_counts_once_and_a_bad_one_is_refused():
    assert split_shape(attention("fusemax"), ("B", "H"), dict(E=4, F=4, M=8, P=8)).outer == {}
    with pytest.raises(SpecError, match="shape: B must be a positive integer, got 0"):
        split_shape(attention("fusemax"), ("B", "H"), dict(B=0, E=4, F=4, M=8, P=8))


def test_cascade_names_cover_parameters_and_partition_parts():
    names = cascade_names(attention("sliding_window", W=64))
    assert {"M", "M1", "M0", "P", "E", "F", "W"} <= names and "B" not in names


def test_gqa_costs_what_multi_head_attention_costs_in_compute(arch):
    """H = 32 heads sharing G = 8 K/V groups do the work of 32 heads: the same compute
    cycles as the per-head cascade run 32 times (within 1%), not 32 x that."""
    mapping = load_mapping("fusemax")
    gqa = evaluate(attention("gqa"), arch, mapping, GQA)
    mha = evaluate(attention("fusemax"), arch, mapping, MHA)
    one_head = evaluate(attention("fusemax"), arch, mapping, dict(MHA, H=1))
    assert _compute_cycles(gqa) == pytest.approx(_compute_cycles(mha), rel=0.01)
    assert _compute_cycles(mha) == pytest.approx(32 * _compute_cycles(one_head), rel=1e-12)
    # The op counts of the cascade's Einsums agree with 32 heads' (no batch multiplier).
    ops = dict(zip(gqa.per_einsum.einsum, gqa.per_einsum.ops, strict=True))
    assert ops["QK"] == 32 * 4096 * 4096 * 128


@pytest.mark.parametrize("rank", ["B", "H"])
def test_doubling_a_batch_rank_doubles_latency(arch, rank):
    mapping = load_mapping("fusemax")
    cascade = attention("fusemax")
    shape = dict(B=2, H=4, E=64, F=64, M=2048, P=2048)
    base = evaluate(cascade, arch, mapping, shape)
    doubled = evaluate(cascade, arch, mapping, dict(shape, **{rank: 2 * shape[rank]}))
    (kernel,) = base.kernels
    assert kernel["compute_cycles"] > kernel["memory_cycles"]  # compute-bound
    np.testing.assert_allclose(doubled.latency_s, 2 * base.latency_s, rtol=1e-12)
    np.testing.assert_allclose(doubled.energy_pj, 2 * base.energy_pj, rtol=1e-9)


def test_doubling_b_of_gqa_doubles_latency_and_h_is_priced_by_the_cascade(arch):
    mapping = load_mapping("fusemax")
    base = evaluate(attention("gqa"), arch, mapping, dict(GQA, M=1024, P=1024))
    doubled = evaluate(attention("gqa"), arch, mapping, dict(GQA, B=2, M=1024, P=1024))
    np.testing.assert_allclose(doubled.latency_s, 2 * base.latency_s, rtol=1e-12)


UNKNOWN = "shape: X=7 is no rank of cascade fusemax_1pass and no batch rank"


def test_evaluate_refuses_an_unknown_rank(arch):
    with pytest.raises(SpecError, match=UNKNOWN) as error:
        evaluate(attention("fusemax"), arch, load_mapping("fusemax"), dict(MHA, X=7))
    assert "known: B, E, F, H, M, M0, M1, P" in str(error.value)
    assert "\n" not in str(error.value)


def test_map_refuses_an_unknown_rank(arch):
    with pytest.raises(SpecError, match=UNKNOWN):
        search(attention("fusemax"), arch, dict(MHA, X=7), budget=10)


@pytest.mark.parametrize("command", ["evaluate", "map"])
def test_the_cli_refuses_an_unknown_rank(command):
    args = [command, "--variant", "fusemax", "--arch", "fusemax_cloud"]
    args += ["--shape", "B=1,H=2,X=7,E=64,F=64,M=512,P=512"]
    if command == "evaluate":
        args += ["--mapping", "fusemax"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert UNKNOWN in result.output


def test_a_sweep_point_with_an_unknown_rank_is_refused_with_the_reason():
    spec = {
        "name": "unknown_rank",
        "fixed": {"variant": "fusemax", "arch": "fusemax_cloud", "mapping": "fusemax"},
        "axes": {"shape.X": [7], "seq_len": [512]},
    }
    frame = sweep(spec, progress=False).to_pandas()
    assert not frame.valid.any()
    assert frame.error.str.contains("X=7 is no rank of cascade fusemax_1pass").all()


def test_a_mapping_may_name_its_own_batch_rank(arch):
    """A rank named by the mapping's batch (here N, copies of the cascade) multiplies."""
    from dataclasses import replace

    mapping = replace(load_mapping("fusemax"), batch=("B", "H", "N"))
    shape = dict(B=1, H=2, E=64, F=64, M=512, P=512)
    one = evaluate(attention("fusemax"), arch, mapping, shape)
    three = evaluate(attention("fusemax"), arch, mapping, dict(shape, N=3))
    np.testing.assert_allclose(three.latency_s, 3 * one.latency_s, rtol=1e-12)


def test_the_gpu_model_refuses_an_unknown_rank_and_prices_gqa_as_its_heads():
    from einsim.simulator import evaluate_gpu
    from einsim.simulator.gpu import parse_gpu_mapping

    gpu = load_architecture("h100_sxm")
    tiling = parse_gpu_mapping("fused:Br=128,Bc=64")
    with pytest.raises(SpecError, match=UNKNOWN):
        evaluate_gpu(attention("fusemax"), gpu, tiling, shape=dict(MHA, X=7))
    gqa = evaluate_gpu(attention("gqa"), gpu, tiling, shape=GQA)
    mha = evaluate_gpu(attention("fusemax"), gpu, tiling, shape=MHA)
    assert gqa.cycles == pytest.approx(mha.cycles, rel=0.01)
