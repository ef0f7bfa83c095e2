"""The CUDA kernels compile with NVRTC for real GPU architectures (no GPU needed), and what
ptxas allocates fits the hardware the model assumes."""

import os

import pytest

from einsim.gpu_validate import nvrtc
from einsim.gpu_validate.kernels import launches
from einsim.simulator.gpu import (
    SPILL_TOLERANCE_BYTES,
    AttentionProblem,
    GpuMapping,
    KernelForm,
    Mask,
    load_gpu_architecture,
)

needs_nvrtc = pytest.mark.skipif(not nvrtc.available(), reason=nvrtc.INSTALL_HINT)
#: Compiling the kernels takes minutes; CI runs these (its default run keeps `slow`).
pytestmark = pytest.mark.slow

MAPPINGS = [
    GpuMapping(block_q=128, block_kv=64, stages=2, warps=4),  # FA2's hd128 forward tiling
    GpuMapping(block_q=64, block_kv=64, stages=3, warps=4),
    GpuMapping(block_q=128, block_kv=32, stages=3, warps=8),
    GpuMapping(block_q=64, block_kv=64, stages=1, warps=2, split_kv=3),
    GpuMapping(block_q=16, block_kv=16, stages=4, warps=1),
    GpuMapping(KernelForm.UNFUSED, block_q=64, block_kv=64, stages=2, warps=4),
]


def _names(dtype: str, head_dim: int) -> list[str]:
    names = []
    for mask in Mask:
        problem = AttentionProblem(1, 1, 1000, 1000, head_dim, head_dim, mask, 64, dtype=dtype)
        for mapping in MAPPINGS:
            names += [launch.name for launch in launches(problem, mapping)]
    return sorted(set(names))


def test_nvrtc_is_installed_where_ci_requires_it():
    if os.environ.get("EINSIM_REQUIRE_NVRTC") and not nvrtc.available():
        pytest.fail(f"EINSIM_REQUIRE_NVRTC is set but NVRTC is missing: {nvrtc.INSTALL_HINT}")


@needs_nvrtc
@pytest.mark.parametrize(
    ("arch", "dtype", "head_dim"), [("sm_90", "bf16", 128), ("sm_80", "fp16", 64)]
)
def test_every_kernel_a_mapping_launches_compiles(arch, dtype, head_dim):
    names = _names(dtype, head_dim)
    result = nvrtc.compile_kernels(names, arch=arch)
    assert result.cubin_bytes > 0
    assert [k.name for k in result.kernels] == names
    for kernel in result.kernels:
        assert 1 <= kernel.registers <= 255, kernel
        assert kernel.lowered_name.startswith("_Z"), kernel


@needs_nvrtc
@pytest.mark.parametrize(
    ("head_dim", "mapping"),
    [
        (128, GpuMapping(block_q=128, block_kv=64, stages=2, warps=4)),
        (64, GpuMapping(block_q=128, block_kv=128, stages=2, warps=4)),
    ],
)
@pytest.mark.parametrize("mask", list(Mask))
def test_fa2_tilings_keep_their_accumulators_in_registers(head_dim, mapping, mask):
    """FlashAttention-2's own forward tilings (hd64: 128 x 128, hd128: 128 x 64, 4 warps)
    hold S and O in registers, spilling at most a few words, under every mask."""
    problem = AttentionProblem(1, 1, 4096, 4096, head_dim, head_dim, mask, 256, dtype="bf16")
    (fused,) = nvrtc.compile_kernels([launches(problem, mapping)[0].name]).kernels
    assert fused.spill_store_bytes <= SPILL_TOLERANCE_BYTES, fused
    # the output and score fragments alone: Br·(F + Bc) FP32 words over the CTA's threads
    fragments = mapping.block_q * (head_dim + mapping.block_kv) // (32 * mapping.warps)
    assert fused.registers >= fragments


@needs_nvrtc
def test_every_launch_fits_the_shared_memory_of_its_gpu():
    h100 = load_gpu_architecture("h100_sxm")
    problem = AttentionProblem(1, 1, 2048, 2048, 128, 128, Mask.CAUSAL, 0, dtype="bf16")
    for mapping in MAPPINGS:
        for launch in launches(problem, mapping):
            assert launch.smem_bytes <= h100.smem_per_block_bytes, launch


@needs_nvrtc
def test_a_compile_error_is_one_line_naming_the_source_line():
    broken = "__global__ void k(float* x) { x[0] = INFINITY; }"
    with pytest.raises(nvrtc.CompileError) as error:
        nvrtc.compile_kernels(["k"], source=broken)
    message = str(error.value)
    assert "\n" not in message
    assert "attention.cu(1)" in message and "INFINITY" in message
