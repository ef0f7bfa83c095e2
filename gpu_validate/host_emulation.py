"""Run the CUDA kernels of `kernels/attention.cu` on the CPU, without a GPU.

The kernel source is compiled by g++ with `kernels/host_emulation.h` force-included: every
CUDA thread of a block becomes an OS thread, and mma.sync, ldmatrix, __shfl_xor_sync and
the barriers are emulated from their PTX ISA definitions (wmma from the CUDA C++ guide's
semantics). The same launches as on the GPU
(`kernels.launches`: grid, block, template arguments) run, so a wrong fragment index, a
wrong ldmatrix address, a wrong mask interval or wrong split-KV bookkeeping shows as a
wrong answer against the numpy tile executor in CI. It measures nothing about speed, and
cp.async copies complete at once.

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

from .kernels import _check, from_kernel_words, kernel_words, launches

COMPILER = os.environ.get("CXX", "g++")
_CTYPE = {"bf16": "__nv_bfloat16", "fp16": "__half"}


def available() -> bool:
    """Whether a C++20 compiler is on the PATH (never raises)."""
    return shutil.which(COMPILER) is not None


# extern "C" entry points, one per kernel kind: (C parameters, the kernel's arguments).
_ENTRIES = {
    "attention_fused": (
        "const void* q, const void* k, const void* v, void* o, float* opart, float* ml, int P,"
        " int M, int W, int split, float scale",
        "(const T*)q, (const T*)k, (const T*)v, (T*)o, opart, ml, P, M, W, split, scale",
    ),
    "attention_combine": (
        "const float* opart, const float* ml, void* o, long rows, int split",
        "opart, ml, (T*)o, rows, split",
    ),
    "attention_qk": (
        "const void* q, const void* k, float* s, int P, int M, float scale",
        "(const T*)q, (const T*)k, s, P, M, scale",
    ),
    "attention_softmax": (
        "const float* s, void* a, long rows, int P, int M, int W",
        "s, (T*)a, rows, P, M, W",
    ),
    "attention_av": (
        "const void* a, const void* v, void* o, int P, int M",
        "(const T*)a, (const T*)v, (T*)o, P, M",
    ),
}


def _harness(names: tuple[str, ...], ctype: str) -> str:
    """C entry points `run_<kind>(..., gx, gy, gz, threads)` launching each named kernel."""
    out = []
    for name in names:
        kind = name.partition("<")[0]
        params, args = _ENTRIES[kind]
        out.append(
            f'extern "C" void run_{kind}({params}, unsigned gx, unsigned gy, unsigned gz,'
            f" int threads) {{\n  using T = {ctype};\n"
            f"  emu::launch({{gx, gy, gz}}, threads, [&] {{ {name}({args}); }});\n}}\n"
        )
    return "".join(out)


def _kernel_source() -> str:
    return resources.files("einsim.gpu_validate").joinpath("kernels", "attention.cu").read_text()


@functools.lru_cache(maxsize=32)
def _library(kernel_source: str, names: tuple[str, ...], ctype: str) -> ctypes.CDLL:
    if not available():
        raise BackendUnavailable(f"emulating the CUDA kernels on the CPU needs {COMPILER}")
    kernels = resources.files("einsim.gpu_validate").joinpath("kernels")
    source = kernel_source + "\n" + _harness(names, ctype)
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
    """AV[b, h, f, p] (float64) of `problem` from the CUDA kernels of `mapping` (fused, with
    the split-KV combine, or the three unfused ones) run on the CPU, from einsim-layout
    inputs (`tiles.problem_arrays`) rounded to the problem's dtype as on the GPU.

    Raises:
        BackendUnavailable: no C++ compiler.
        SpecError: a dtype, head dim or tile shape the kernels refuse.
    """
    _check(problem, mapping)
    plan = launches(problem, mapping)
    lib = _library(_kernel_source(), tuple(x.name for x in plan), _CTYPE[problem.dtype])

    q, k, v = (kernel_words(problem, arrays[name]) for name in ("Q", "K", "V"))
    bh, P, M, F = problem.batch * problem.heads, problem.seq_q, problem.seq_kv, problem.head_dim_v
    split = mapping.split_kv
    o = np.zeros((bh, P, F), dtype=q.dtype)
    opart = np.zeros(split * bh * P * F, dtype=np.float32)
    ml = np.zeros(split * bh * P * 2, dtype=np.float32)
    s = np.zeros((bh, P, M), dtype=np.float32) if mapping.kernel is KernelForm.UNFUSED else None
    a = np.zeros((bh, P, M), dtype=q.dtype) if s is not None else None

    def ptr(x):
        return x.ctypes.data_as(ctypes.c_void_p)

    i32, rows, scale = ctypes.c_int, ctypes.c_long(bh * P), ctypes.c_float(1.0)
    P_, M_, W_, split_ = i32(P), i32(M), i32(problem.window), i32(split)
    args = {
        "attention_fused": (ptr(q), ptr(k), ptr(v), ptr(o), ptr(opart), ptr(ml), P_, M_, W_,
                            split_, scale),
        "attention_combine": (ptr(opart), ptr(ml), ptr(o), rows, split_),
    }  # fmt: skip
    if s is not None:
        args |= {
            "attention_qk": (ptr(q), ptr(k), ptr(s), P_, M_, scale),
            "attention_softmax": (ptr(s), ptr(a), rows, P_, M_, W_),
            "attention_av": (ptr(a), ptr(v), ptr(o), P_, M_),
        }
    for launch in plan:
        kind = launch.name.partition("<")[0]
        grid = (ctypes.c_uint(g) for g in launch.grid)
        getattr(lib, f"run_{kind}")(*args[kind], *grid, i32(launch.block))
    return from_kernel_words(problem, o)
