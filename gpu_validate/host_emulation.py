"""Run the fused CUDA kernels of `kernels/attention.cu` on the CPU, without a GPU.

The kernel source is compiled by g++ with `kernels/host_emulation.h` force-included: every
CUDA thread of a block becomes an OS thread, and mma.sync, ldmatrix, __shfl_xor_sync and
the barriers are emulated from their PTX ISA definitions. The same launches as on the GPU
(`kernels.launches`: grid, block, template arguments) run, so a wrong fragment index, a
wrong ldmatrix address, a wrong mask interval or wrong split-KV bookkeeping shows as a
wrong answer against the numpy tile executor in CI. It measures nothing about speed, and
cp.async copies complete at once. The unfused (wmma) kernels are not emulated.

Builds are cached by source hash under `$EINSIM_CACHE` (default: the temp folder).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from einsim.einsum import BackendUnavailable, SpecError
from einsim.simulator.gpu import AttentionProblem, GpuMapping, KernelForm

from .kernels import _check, bf16_bits, bf16_values, from_kernel_layout, launches, to_kernel_layout

COMPILER = os.environ.get("CXX", "g++")
_CTYPE = {"bf16": "__nv_bfloat16", "fp16": "__half"}


def available() -> bool:
    """Whether a C++20 compiler is on the PATH (never raises)."""
    return shutil.which(COMPILER) is not None


def _harness(fused: str, combine: str | None, ctype: str) -> str:
    call = (
        f"  using T = {ctype};\n"
        "  emu::launch({gx, gy, gz}, threads, [&] {\n"
        f"    {fused}((const T*)q, (const T*)k, (const T*)v, (T*)o, opart, ml, P, M, W, split,"
        " scale);\n  });\n"
    )
    out = (
        'extern "C" void run_fused(const void* q, const void* k, const void* v, void* o,'
        " float* opart, float* ml, int P, int M, int W, int split, float scale, unsigned gx,"
        " unsigned gy, unsigned gz, int threads) {\n" + call + "}\n"
    )
    if combine:
        out += (
            'extern "C" void run_combine(const float* opart, const float* ml, void* o, long rows,'
            " int split, unsigned gx, int threads) {\n"
            f"  using T = {ctype};\n"
            "  emu::launch({gx, 1, 1}, threads, [&] {"
            f" {combine}(opart, ml, (T*)o, rows, split); }});\n}}\n"
        )
    return out


def _kernel_source() -> str:
    return resources.files("einsim.gpu_validate").joinpath("kernels", "attention.cu").read_text()


@functools.lru_cache(maxsize=32)
def _library(kernel_source: str, fused: str, combine: str | None, ctype: str) -> ctypes.CDLL:
    if not available():
        raise BackendUnavailable(f"emulating the CUDA kernels on the CPU needs {COMPILER}")
    kernels = resources.files("einsim.gpu_validate").joinpath("kernels")
    source = kernel_source + "\n" + _harness(fused, combine, ctype)
    header = kernels.joinpath("host_emulation.h").read_text()
    key = hashlib.sha256((header + source).encode()).hexdigest()[:16]
    folder = Path(os.environ.get("EINSIM_CACHE", tempfile.gettempdir())) / "einsim-emulation"
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"{key}.so"
    if not library.exists():
        (folder / f"{key}.h").write_text(header)
        (folder / f"{key}.cpp").write_text(source)
        command = [COMPILER, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread",
                   "-DEINSIM_HOST_EMULATION", "-Wno-unknown-pragmas", "-include",
                   str(folder / f"{key}.h"), "-x", "c++", str(folder / f"{key}.cpp"),
                   "-o", str(library) + ".tmp"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "error" in line]
            raise SpecError(f"host emulation build failed: {(errors or [result.stderr])[0]}")
        os.replace(str(library) + ".tmp", library)
    return ctypes.CDLL(str(library))


def run_emulated(
    problem: AttentionProblem, mapping: GpuMapping, arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """AV[b, h, f, p] (float64) of `problem` from the fused CUDA kernel run on the CPU, from
    einsim-layout inputs (`tiles.problem_arrays`), rounded to the problem's dtype on the way
    in as on the GPU.

    Raises:
        BackendUnavailable: no C++ compiler.
        SpecError: an unfused mapping, or a dtype, head dim or tile shape the kernels refuse.
    """
    _check(problem, mapping)
    if mapping.kernel is not KernelForm.FUSED:
        raise SpecError(
            "host emulation runs the fused kernel only (the wmma GEMMs are not emulated)"
        )
    plan = launches(problem, mapping)
    fused, combine = plan[0], (plan[1] if len(plan) > 1 else None)
    combine_name = combine.name if combine else None
    lib = _library(_kernel_source(), fused.name, combine_name, _CTYPE[problem.dtype])

    def words(array):
        rows = to_kernel_layout(problem, array)
        return bf16_bits(rows) if problem.dtype == "bf16" else rows.astype(np.float16)

    q, k, v = (words(arrays[name]) for name in ("Q", "K", "V"))
    bh, P, M, F = problem.batch * problem.heads, problem.seq_q, problem.seq_kv, problem.head_dim_v
    split = mapping.split_kv
    o = np.zeros((bh, P, F), dtype=q.dtype)
    opart = np.zeros(split * bh * P * F, dtype=np.float32)
    ml = np.zeros(split * bh * P * 2, dtype=np.float32)

    def ptr(a):
        return a.ctypes.data_as(ctypes.c_void_p)

    i32 = ctypes.c_int
    lib.run_fused(ptr(q), ptr(k), ptr(v), ptr(o), ptr(opart), ptr(ml), i32(P), i32(M),
                  i32(problem.window), i32(split), ctypes.c_float(1.0),
                  *(ctypes.c_uint(g) for g in fused.grid), i32(fused.block))  # fmt: skip
    if combine is not None:
        lib.run_combine(ptr(opart), ptr(ml), ptr(o), ctypes.c_long(bh * P), i32(split),
                        ctypes.c_uint(combine.grid[0]), i32(combine.block))  # fmt: skip
    return from_kernel_layout(problem, bf16_values(o) if problem.dtype == "bf16" else o)
