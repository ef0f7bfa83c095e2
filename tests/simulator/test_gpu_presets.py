"""GPU presets: they load, the dispatch from load_architecture works, bad keys are named."""

from importlib import resources

import pytest
import yaml

from einsim import SpecError
from einsim.simulator import Architecture, GpuArchitecture, load_architecture
from einsim.simulator.gpu import load_gpu_architecture

PRESETS = {"h100_sxm": 132, "h200": 132, "a100_sxm": 108}


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_through_load_architecture(name):
    arch = load_architecture(name)
    assert isinstance(arch, GpuArchitecture)
    assert arch.sms == PRESETS[name]
    assert arch.mma_flops_per_s("bf16") > 10 * arch.fp32_ops_per_s
    assert arch.smem_per_block_bytes <= arch.smem_per_sm_bytes
    assert arch.hbm_bytes_per_s < arch.l2_bytes_per_s


def test_datasheet_consistency():
    # The tensor peak is SMs x 4096 FLOP/clk x the clock (Hopper whitepaper); the SFU rate
    # is what FlashAttention-3 quotes for the H100 SXM5 (3.9 TFLOPS of special functions).
    h100 = load_gpu_architecture("h100_sxm")
    peak = dict(h100.tensor_flops_per_clock_per_sm)["bf16"] * h100.sms * h100.clock_hz
    assert peak == pytest.approx(132 * 4096 * h100.clock_hz, rel=1e-3)
    # The modelled kernels issue mma.sync, about 2/3 of that peak on Hopper (the peak needs
    # wgmma) [FlashAttention-3, Section 2.2]; on the A100 mma.sync is the peak.
    assert h100.mma_flops_per_s("bf16") == pytest.approx(peak * 2 / 3, rel=1e-3)
    assert h100.sfu_ops_per_s == pytest.approx(3.9e12, rel=0.01)
    a100 = load_gpu_architecture("a100_sxm")
    assert a100.mma_flops_per_s("fp16") == pytest.approx(108 * 2048 * a100.clock_hz, rel=1e-3)
    # fp32 inputs run on the CUDA cores
    assert h100.mma_flops_per_s("fp32") == pytest.approx(132 * 256 * 1.83e9)


def test_accelerator_presets_are_unchanged():
    assert isinstance(load_architecture("fusemax_cloud"), Architecture)


def _write(tmp_path, mutate):
    text = resources.files("einsim.simulator").joinpath("gpus/h100_sxm.yaml")
    data = yaml.safe_load(text.read_text())
    mutate(data)
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_named_with_the_known_ones(tmp_path):
    path = _write(tmp_path, lambda d: d["gpu"].update(smem_per_sm_kib=228))
    with pytest.raises(SpecError, match="unknown key 'smem_per_sm_kib'; known keys: sms"):
        load_architecture(path)


def test_unknown_dtype_and_missing_key(tmp_path):
    path = _write(tmp_path, lambda d: d["gpu"]["tensor_flops_per_clock_per_sm"].update(fp4=1e15))
    with pytest.raises(SpecError, match="unknown key 'fp4'"):
        load_architecture(path)
    path = _write(tmp_path, lambda d: d["gpu"].pop("l2_bytes"))
    with pytest.raises(SpecError, match="missing required key 'l2_bytes'"):
        load_architecture(path)


def test_overrides_and_non_gpu_refusal():
    assert load_architecture("h100_sxm", {"gpu.sms": 66}).sms == 66
    with pytest.raises(SpecError, match="no key 'smss'"):
        load_architecture("h100_sxm", {"gpu.smss": 66})
    with pytest.raises(SpecError, match="not a GPU architecture"):
        load_gpu_architecture(resources.files("einsim.simulator") / "architectures/systolic.yaml")
    with pytest.raises(SpecError, match=r"bundled: flat_cloud.*; GPUs: a100_sxm, h100_sxm, h200"):
        load_architecture("h300")


def test_the_fa2_style_prediction_stays_under_what_mma_sync_delivers_on_hopper():
    """Issue 14: at 16K tokens, head dim 128, the best H100 tiling's useful TFLOP/s (the
    FlashAttention-2 count) is at most mma.sync's rate, 2/3 of the wgmma peak."""
    import einsim
    from einsim.mapper.gpu import search_gpu
    from einsim.simulator.gpu import attention_kernel, useful_flops

    h100 = load_gpu_architecture("h100_sxm")
    shape = dict(B=1, H=16, E=128, F=128, M=16384, P=16384)
    cascade = einsim.attention("fusemax")
    best = search_gpu(cascade, h100, shape, strategy="exhaustive")
    achieved = useful_flops(attention_kernel(cascade, shape, "bf16")) / best.report.latency_s
    wgmma_peak = 132 * 4096 * h100.clock_hz
    assert achieved <= wgmma_peak * 2 / 3
