"""Compile the attention kernels with NVRTC through ctypes: no CuPy and no GPU needed.

CuPy compiles `kernels/attention.cu` with NVRTC on the GPU machine (`backend.module`); this
module runs the same compiler on any Linux x86-64 machine with the NVIDIA wheels of
`pip install 'einsim[cuda-compile]'` (part of `dev`), so CI checks that every template
instantiation a mapping asks for compiles for a real architecture (sm_80, sm_90), and
reads what ptxas allocated for it: registers per thread, spill bytes, stack. The register
table of the GPU model (`simulator/data/gpu_kernel_registers.csv`) is written from these
compiles by `benchmarks/measure_kernel_registers.py`.

Lookup order for libnvrtc: the `nvidia-cuda-nvrtc-cu12` wheel, then `$CUDA_PATH/lib64`,
then the system loader. Headers: the `nvidia-cuda-runtime-cu12` and `nvidia-cuda-nvcc-cu12`
wheels (cuda_bf16.h, cuda_pipeline.h, mma.h and crt/mma.h), then `$CUDA_PATH/include`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from einsim.einsum import BackendUnavailable, SpecError

from .backend import kernel_source

INSTALL_HINT = "pip install 'einsim[cuda-compile]' (the NVIDIA NVRTC, runtime and nvcc wheels)"
#: The options CuPy is given in `backend.module`, so both compile the same code.
OPTIONS = ("-std=c++17", "--use_fast_math")


class CompileError(SpecError):
    """NVRTC rejected the kernel source; the message is the first error line of its log."""


@dataclass(frozen=True)
class KernelResources:
    """What ptxas allocated for one kernel instantiation (from `-Xptxas -v`)."""

    name: str  # the template name expression, e.g. attention_fused<__nv_bfloat16, ...>
    lowered_name: str  # its mangled symbol in the cubin
    registers: int  # per thread
    spill_store_bytes: int
    spill_load_bytes: int
    stack_bytes: int

    @property
    def spills(self) -> bool:
        return self.spill_store_bytes > 0 or self.spill_load_bytes > 0


@dataclass(frozen=True)
class Compilation:
    arch: str
    kernels: tuple[KernelResources, ...]
    cubin_bytes: int
    log: str


def _package_dir(module: str) -> Path | None:
    try:
        package = __import__(module, fromlist=["__path__"])
    except ImportError:
        return None
    paths = list(getattr(package, "__path__", []))
    return Path(paths[0]) if paths else None


@functools.cache
def _library() -> ctypes.CDLL:
    candidates: list[str] = []
    wheel = _package_dir("nvidia.cuda_nvrtc")
    if wheel is not None:
        candidates += sorted(str(p) for p in (wheel / "lib").glob("libnvrtc.so.*"))
    if os.environ.get("CUDA_PATH"):
        candidates += sorted(
            str(p) for p in Path(os.environ["CUDA_PATH"]).glob("lib64/libnvrtc.so*")
        )
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    for candidate in candidates:
        if "builtins" in candidate or ".alt." in candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    raise BackendUnavailable(f"compiling CUDA without a GPU needs NVRTC: {INSTALL_HINT}")


def include_dirs() -> list[str]:
    """Header folders for NVRTC: the NVIDIA wheels', then $CUDA_PATH/include."""
    dirs = []
    for module in ("nvidia.cuda_runtime", "nvidia.cuda_nvcc"):
        root = _package_dir(module)
        if root is not None and (root / "include").is_dir():
            dirs.append(str(root / "include"))
    if os.environ.get("CUDA_PATH"):
        dirs.append(str(Path(os.environ["CUDA_PATH"]) / "include"))
    return dirs


def available() -> bool:
    """Whether NVRTC can be loaded (never raises)."""
    try:
        _library()
    except BackendUnavailable:
        return False
    return True


def version() -> str:
    """NVRTC's version, e.g. '12.9'."""
    lib, major, minor = _library(), ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


_FUNCTION = re.compile(r"Function properties for (\S+)")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


def _resources(log: str) -> dict[str, tuple[int, int, int, int]]:
    """Mangled name -> (registers, spill stores, spill loads, stack) from ptxas's -v log."""
    out: dict[str, tuple[int, int, int, int]] = {}
    name, spill = None, (0, 0, 0)
    for line in log.splitlines():
        if m := _FUNCTION.search(line):
            name = m.group(1)
        elif (m := _SPILL.search(line)) and name:
            spill = (int(m.group(2)), int(m.group(3)), int(m.group(1)))
        elif (m := _REGISTERS.search(line)) and name:
            out[name] = (int(m.group(1)), *spill)
            name = None
    return out


def _check(lib: ctypes.CDLL, result: int, what: str) -> None:
    if result != 0:
        raise CompileError(f"NVRTC {what}: {lib.nvrtcGetErrorString(result).decode()}")


def compile_kernels(
    name_expressions: tuple[str, ...] | list[str], arch: str = "sm_90", source: str | None = None
) -> Compilation:
    """Compile `source` (default: `kernels/attention.cu`) for `arch`, instantiating the
    given template kernels, and return ptxas's resources for each.

    Raises:
        BackendUnavailable: no NVRTC library (one line, with the install hint).
        CompileError: the compile failed; the first error line of NVRTC's log.
    """
    lib = _library()
    text = (source if source is not None else kernel_source()).encode()
    program = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(program), text, b"attention.cu", 0, None, None),
           "create")  # fmt: skip
    try:
        for name in name_expressions:
            _check(lib, lib.nvrtcAddNameExpression(program, name.encode()), f"name {name}")
        options = [*OPTIONS, f"--gpu-architecture={arch}", "--ptxas-options=-v"]
        options += [f"-I{d}" for d in include_dirs()]
        raw = [o.encode() for o in options]
        result = lib.nvrtcCompileProgram(program, len(raw), (ctypes.c_char_p * len(raw))(*raw))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, buffer)
        log = buffer.value.decode(errors="replace")
        if result != 0:
            errors = [line for line in log.splitlines() if "error" in line] or [log.strip()]
            raise CompileError(f"{arch}: {errors[0].strip()}")
        cubin = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetCUBINSize(program, ctypes.byref(cubin)), "cubin size")
        usage = _resources(log)
        kernels = []
        for name in name_expressions:
            lowered = ctypes.c_char_p()
            _check(lib, lib.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(lowered)),
                   f"lowered name of {name}")  # fmt: skip
            symbol = lowered.value.decode()
            regs, stores, loads, stack = usage.get(symbol, (-1, 0, 0, 0))
            kernels.append(KernelResources(name, symbol, regs, stores, loads, stack))
        return Compilation(arch, tuple(kernels), cubin.value, log)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
