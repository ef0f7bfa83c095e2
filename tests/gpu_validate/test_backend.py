"""Without CuPy (or a GPU) every GPU entry point says so in one line; the numpy path works."""

import subprocess
import sys

import pytest

import einsim
from einsim import BackendUnavailable
from einsim.gpu_validate import backend, kernels
from einsim.gpu_validate.tiles import problem_arrays
from einsim.simulator.gpu import AttentionProblem, GpuMapping, KernelForm, Mask

needs_no_gpu = pytest.mark.skipif(backend.available(), reason="a GPU is present here")


@needs_no_gpu
def test_entry_points_raise_backend_unavailable_in_one_line(rng):
    problem = AttentionProblem(1, 1, 32, 32, 16, 16, Mask.CAUSAL)
    arrays = problem_arrays(problem, rng)
    for call in (
        backend.cupy,
        backend.device_info,
        lambda: kernels.run_gpu(problem, GpuMapping(block_q=16, warps=1), arrays),
    ):
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert "\n" not in str(info.value) and "GPU validation needs" in str(info.value)


def test_launch_plans_need_no_gpu():
    problem = AttentionProblem(2, 4, 1000, 1000, 64, 64, Mask.CAUSAL)
    fused = kernels.launches(problem, GpuMapping(block_q=128, block_kv=64, warps=4, split_kv=2))
    assert fused[0].name == "attention_fused<__nv_bfloat16, 128, 64, 64, 64, 4, 2, 1>"
    assert fused[0].grid == (8, 2, 8) and fused[0].block == 128 and len(fused) == 2
    unfused = kernels.launches(problem, GpuMapping(KernelForm.UNFUSED, 64, 64, 2, 4))
    assert [k.name.split("<")[0] for k in unfused] == [
        "attention_qk",
        "attention_softmax",
        "attention_av",
    ]
    with pytest.raises(einsim.SpecError, match="bf16 or fp16"):
        kernels.launches(AttentionProblem(1, 1, 8, 8, 16, 16, dtype="fp64"), GpuMapping())


def test_kernel_source_is_package_data():
    source = backend.kernel_source()
    for name in ("attention_fused", "attention_combine", "attention_qk", "attention_softmax"):
        assert f" {name}(" in source or f"\n    {name}(" in source


def test_gpu_validate_imports_no_dash_plotly_or_cupy():
    code = (
        "import sys, einsim.gpu_validate, einsim.gpu_validate.kernels, "
        "einsim.gpu_validate.validate; "
        "print(sorted(m for m in ('dash', 'plotly', 'cupy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
