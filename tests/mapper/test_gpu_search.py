"""GPU tilings searched like any other map space (`einsim.mapper.gpu.search_gpu`)."""

import pytest

from einsim import SpecError, attention
from einsim.mapper.gpu import GPU_GRID, search_gpu
from einsim.simulator import load_architecture
from einsim.simulator.gpu import GpuMapping, KernelForm, evaluate_gpu

H100 = load_architecture("h100_sxm")
PREFILL = dict(B=2, H=8, E=64, F=64, M=4096, P=4096)


def test_the_best_tiling_beats_every_single_tiling_evaluated_on_its_own():
    """The winner of the vectorized grid is no slower than hand-picked tilings, each costed
    by the scalar `evaluate_gpu` path (FlashAttention-2's defaults among them)."""
    cascade = attention("fusemax")
    result = search_gpu(cascade, H100, PREFILL)
    assert (
        result.report.latency_s
        == evaluate_gpu(cascade, H100, result.mapping, shape=PREFILL).latency_s
    )
    for tiling in (
        GpuMapping(),
        GpuMapping(block_q=128, block_kv=128, warps=8),
        GpuMapping(block_q=64, block_kv=64, stages=3),
        GpuMapping(KernelForm.UNFUSED, block_q=128, block_kv=128),
    ):
        report = evaluate_gpu(cascade, H100, tiling, shape=PREFILL)
        if report.valid:
            assert result.report.latency_s <= report.latency_s * (1 + 1e-12)
    assert result.evaluated == 5 * 5 * 4 * 4 * 5 + 5 * 5 * 4 * 4  # fused with splits, unfused
    assert set(result.candidates.block_q) == set(GPU_GRID["block_q"])
    assert result.pareto.valid.all()


def test_decoding_one_query_splits_the_keys_over_ctas():
    """One query row per head leaves most SMs idle unless the keys are split (the
    flash-decoding argument): the search must find a split."""
    result = search_gpu(attention("fusemax"), H100, dict(B=1, H=8, E=128, F=128, M=65536, P=1))
    assert result.mapping.split_kv > 1
    no_split = result.candidates[(result.candidates.split_kv == 1) & result.candidates.valid]
    assert result.report.latency_s < no_split.latency_s.min()


def test_a_budget_samples_deterministically_and_bad_input_is_named():
    cascade = attention("causal")
    first = search_gpu(cascade, H100, PREFILL, budget=300, seed=3)
    again = search_gpu(cascade, H100, PREFILL, budget=300, seed=3)
    assert first.evaluated == 300 and first.mapping == again.mapping
    assert "kernel" in first.explain()
    with pytest.raises(SpecError, match="objective 'speed' is not one of"):
        search_gpu(cascade, H100, PREFILL, objective="speed")


def test_einsim_search_and_map_dispatch_to_the_gpu_grid(tmp_path):
    import subprocess
    import sys

    import einsim

    result = einsim.search(attention("fusemax"), H100, PREFILL, strategy="random", budget=200)
    assert isinstance(result.mapping, GpuMapping) and result.evaluated == 200
    assert isinstance(result, einsim.mapper.SearchResult) and result.strategy == "random"
    shape = ",".join(f"{k}={v}" for k, v in PREFILL.items())
    run = [sys.executable, "-m", "einsim.cli", "map", "--variant", "fusemax", "--arch", "h100_sxm"]
    out = subprocess.run(
        [*run, "--shape", shape, "--budget", "200", "--strategy", "random"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"mapping      {result.mapping.name}" in out.stdout
    bad = subprocess.run(
        [*run, "--shape", shape, "-o", str(tmp_path / "m.yaml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "the mapping is the tiling this command prints" in bad.stderr


def test_grouped_decode_splits_the_keys_and_reads_each_group_once():
    """Decode with GQA heads (Llama-3-8B: 32 query heads, 8 K/V heads): the search splits
    the keys over CTAs, and its best tiling moves less HBM data than multi-head attention."""
    shape = dict(B=1, H=32, E=128, F=128, M=32768, P=1)
    gqa = search_gpu(attention("decode", grouped=True), H100, dict(shape, G=8), budget=400)
    mha = search_gpu(attention("decode", grouped=True), H100, dict(shape, G=32), budget=400)
    assert gqa.mapping.split_kv > 1
    assert gqa.report.dram_bytes < mha.report.dram_bytes
    assert gqa.report.latency_s <= mha.report.latency_s


def test_a_variant_the_kernels_cannot_run_is_refused_with_the_missing_capability():
    # sigmoid (gated) runs lowered and a bias is read as an extra input; attention without
    # a softmax is refused, naming what the GPU kernels need.
    for name in ("gated", "bias"):
        assert search_gpu(attention(name), H100, PREFILL, budget=10).report.valid
    with pytest.raises(SpecError, match="no exp over the keys"):
        search_gpu(attention("sigmoid"), H100, PREFILL, budget=10)
