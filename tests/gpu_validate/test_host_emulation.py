"""The CUDA kernels, run on the CPU under host emulation (no GPU), against the numpy tile
executor and the IR executor."""

import numpy as np
import pytest

import einsim
from einsim.gpu_validate import host_emulation
from einsim.gpu_validate.kernels import bf16_bits, bf16_values
from einsim.gpu_validate.tiles import problem_arrays, run_tiles
from einsim.simulator.gpu import AttentionProblem, GpuMapping, KernelForm, Mask

pytestmark = [  # compiling and running the emulated kernels takes minutes; CI runs them
    pytest.mark.slow,
    pytest.mark.skipif(not host_emulation.available(), reason="needs g++ (C++20)"),
]

MAPPINGS = [
    GpuMapping(block_q=64, block_kv=64, stages=2, warps=4),
    GpuMapping(block_q=64, block_kv=32, stages=3, warps=2),  # two MMA row tiles per warp
    GpuMapping(block_q=32, block_kv=16, stages=1, warps=1, split_kv=3),  # + the combine
    GpuMapping(block_q=128, block_kv=48, stages=4, warps=8),  # Bc not a power of two
    GpuMapping(KernelForm.UNFUSED, block_q=64, block_kv=32, stages=2, warps=4),
]
PROBLEMS = [
    (Mask.NONE, 0, 70, 101),  # ragged query and key tiles
    (Mask.CAUSAL, 0, 150, 150),
    (Mask.WINDOW, 40, 150, 150),
    (Mask.SYMMETRIC_WINDOW, 37, 90, 90),
]


def _rounded(problem, array):
    """The inputs as the kernel sees them: rounded to bf16 / fp16."""
    if problem.dtype == "bf16":
        return bf16_values(bf16_bits(array)).astype(np.float64)
    return array.astype(np.float16).astype(np.float64)


def _relative_error(got, expected):
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)


@pytest.mark.parametrize(("mask", "window", "P", "M"), PROBLEMS, ids=lambda x: str(x))
@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: m.name)
def test_fused_kernel_matches_the_tile_executor(mapping, mask, window, P, M, rng):
    problem = AttentionProblem(1, 2, P, M, 32, 48, mask, window, dtype="bf16")
    arrays = problem_arrays(problem, rng)
    arrays["Q"] = arrays["Q"] / np.sqrt(32)
    got = host_emulation.run_emulated(problem, mapping, arrays)
    assert np.isfinite(got).all()
    q, k, v = (_rounded(problem, arrays[name]) for name in ("Q", "K", "V"))
    expected = run_tiles(problem, mapping, q, k, v)
    # what is left: P and O rounded to bf16 (2^-9 relative each), fp32 sums in another order
    assert _relative_error(got, expected) < 6e-3


def test_fp16_kernel_matches_the_ir_executor(rng):
    cascade = einsim.attention("causal")
    shape = dict(B=1, H=2, E=32, F=32, M=120, P=120)
    problem = einsim.simulator.gpu.problem_from_cascade(cascade, shape, dtype="fp16")
    arrays = problem_arrays(problem, rng)
    arrays["Q"] = arrays["Q"] / 8.0
    mapping = GpuMapping(block_q=64, block_kv=32, stages=2, warps=4)
    got = host_emulation.run_emulated(problem, mapping, arrays)
    for h in range(2):
        inputs = {name: _rounded(problem, a[0, h]) for name, a in arrays.items()}
        expected = cascade.evaluate(inputs, shape)["AV"]
        assert _relative_error(got[0, h], expected) < 1e-3  # fp16: 2^-12 relative rounding


def test_a_wrong_fragment_index_is_caught(rng, monkeypatch):
    """The check can fail: the kernel with P's two 8-column halves swapped gives wrong AV."""
    from importlib import resources

    source = resources.files("einsim.gpu_validate").joinpath("kernels", "attention.cu").read_text()
    swapped = source.replace("s[mt][k / 8 + 1]", "s[mt][k / 8 + 2 - 2]").replace(
        "s[mt][k / 8];", "s[mt][k / 8 + 1];", 1
    )
    assert swapped != source
    monkeypatch.setattr(host_emulation, "_kernel_source", lambda: swapped)
    problem = AttentionProblem(1, 1, 64, 64, 32, 32, Mask.NONE, 0, dtype="bf16")
    arrays = problem_arrays(problem, rng)
    mapping = GpuMapping(block_q=64, block_kv=32, stages=2, warps=4)
    got = host_emulation.run_emulated(problem, mapping, arrays)
    expected = run_tiles(problem, mapping, *(arrays[n] for n in ("Q", "K", "V")))
    assert _relative_error(got, expected) > 0.05
