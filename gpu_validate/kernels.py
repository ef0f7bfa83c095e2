"""Run an einsim GPU mapping with the CUDA kernels of `kernels/attention.cu` through CuPy.

`run_gpu` launches the fused (FlashAttention-2 style, optionally split-KV + combine) or the
unfused (QK GEMM, three-pass softmax, AV GEMM) kernels with the mapping's Br, Bc, stages,
warps and the problem's mask as template arguments. Inputs and outputs are CuPy arrays in
the kernels' layout Q[bh, p, e], K[bh, m, e], V[bh, m, f] -> O[bh, p, f]; `to_device` and
`from_device` convert from and to einsim's Q[b, h, e, p] layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from einsim.einsum import SpecError
from einsim.simulator.gpu import (
    AttentionProblem,
    GpuMapping,
    KernelForm,
    Mask,
    fused_smem_bytes,
    unfused_av_smem_bytes,
    unfused_qk_smem_bytes,
)

from . import backend

_CTYPE = {"bf16": "__nv_bfloat16", "fp16": "__half"}
_MASK = {Mask.NONE: 0, Mask.CAUSAL: 1, Mask.WINDOW: 2, Mask.SYMMETRIC_WINDOW: 3}


def _check(problem: AttentionProblem, mapping: GpuMapping) -> None:
    if problem.dtype not in _CTYPE:
        raise SpecError(f"CUDA kernels take bf16 or fp16 inputs, not {problem.dtype}")
    if problem.form.sweeps != 1 and mapping.kernel is KernelForm.FUSED:
        raise SpecError(
            f"the fused CUDA kernel is the 1-pass form; no kernel for {problem.form.value}"
        )
    br, bc, w = mapping.block_q, mapping.block_kv, mapping.warps
    e, f = problem.head_dim, problem.head_dim_v
    if e % 16 or f % 16:
        raise SpecError(f"CUDA kernels need head dims that are multiples of 16, got E={e}, F={f}")
    if bc % 16 or br % 16 or (mapping.kernel is KernelForm.FUSED and br % (16 * w)):
        raise SpecError(f"mapping {mapping.name}: Br must be a multiple of 16 x warps, Bc of 16")


@dataclass(frozen=True)
class Launch:
    """One kernel launch: its template instantiation, grid, block and shared memory."""

    name: str
    grid: tuple[int, int, int]
    block: int
    smem_bytes: int


def launches(problem: AttentionProblem, mapping: GpuMapping) -> list[Launch]:
    """The kernel launches of `mapping` for `problem` (no GPU needed)."""
    _check(problem, mapping)
    t, b = _CTYPE[problem.dtype], problem.dtype_bytes
    br, bc, st, w, sk = (mapping.block_q, mapping.block_kv, mapping.stages, mapping.warps,
                         mapping.split_kv)  # fmt: skip
    e, f, P, M = problem.head_dim, problem.head_dim_v, problem.seq_q, problem.seq_kv
    bh, mask = problem.batch * problem.heads, _MASK[problem.mask]
    nq, nk = -(-P // br), -(-M // bc)
    if mapping.kernel is KernelForm.FUSED:
        out = [Launch(f"attention_fused<{t}, {br}, {bc}, {e}, {f}, {w}, {st}, {mask}>",
                      (nq, sk, bh), 32 * w, fused_smem_bytes(br, bc, st, e, f, b))]  # fmt: skip
        if sk > 1:
            rows = bh * P * f
            out.append(Launch(f"attention_combine<{t}, {f}>", (-(-rows // 256), 1, 1), 256, 0))
        return out
    return [
        Launch(f"attention_qk<{t}, {br}, {bc}, {e}, {w}>", (nq, nk, bh), 32 * w,
               unfused_qk_smem_bytes(br, bc, e, b)),
        Launch(f"attention_softmax<{t}, {mask}>", (-(-bh * P * 32 // 256), 1, 1), 256, 0),
        Launch(f"attention_av<{t}, {br}, {bc}, {f}, {w}, {st}>", (nq, 1, bh), 32 * w,
               unfused_av_smem_bytes(br, bc, st, f, b)),
    ]  # fmt: skip


def to_kernel_layout(problem: AttentionProblem, array: np.ndarray) -> np.ndarray:
    """Q[b,h,e,p] (einsim's layout) -> Q[bh, p, e] contiguous, float64 kept."""
    bh = problem.batch * problem.heads
    return np.ascontiguousarray(np.swapaxes(array, -1, -2).reshape(bh, *array.shape[:-3:-1]))


def from_kernel_layout(problem: AttentionProblem, o: np.ndarray) -> np.ndarray:
    """O[bh, p, f] (any float dtype) -> AV[b, h, f, p] float64."""
    o = o.astype(np.float64).reshape(problem.batch, problem.heads, problem.seq_q, -1)
    return np.swapaxes(o, -1, -2)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float -> bfloat16 bit patterns (uint16), rounded to nearest even as the GPU does."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return np.where(np.isnan(x), 0x7FC0, rounded).astype(np.uint16)


def bf16_values(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def kernel_words(problem: AttentionProblem, array: np.ndarray) -> np.ndarray:
    """An einsim-layout input (float64) as the kernels read it: [bh, rows, cols] in the
    problem's dtype (bf16 as raw 16-bit words, CuPy having no bf16)."""
    rows = to_kernel_layout(problem, array)
    return bf16_bits(rows) if problem.dtype == "bf16" else rows.astype(np.float16)


def from_kernel_words(problem: AttentionProblem, o: np.ndarray) -> np.ndarray:
    """The kernels' output O[bh, p, f] (dtype words on the host) -> AV[b, h, f, p] float64."""
    return from_kernel_layout(problem, bf16_values(o) if problem.dtype == "bf16" else o)


def to_device(problem: AttentionProblem, arrays: dict[str, np.ndarray]) -> dict:
    """Q[b,h,e,p], K[b,h,e,m], V[b,h,f,m] (float64) -> device arrays of `kernel_words`."""
    cp = backend.cupy()
    return {name: cp.asarray(kernel_words(problem, array)) for name, array in arrays.items()}


def from_device(problem: AttentionProblem, o) -> np.ndarray:
    """O[bh, p, f] on the device -> AV[b, h, f, p] float64 on the host."""
    return from_kernel_words(problem, backend.cupy().asnumpy(o))


class Runner:
    """Compiled kernels and device buffers of one (problem, mapping); `__call__` runs them."""

    def __init__(self, problem: AttentionProblem, mapping: GpuMapping, device_arrays: dict,
                 scale: float = 1.0):  # fmt: skip
        cp = backend.cupy()
        self.problem, self.mapping, self.plan = problem, mapping, launches(problem, mapping)
        names = tuple(launch.name for launch in self.plan)
        module = backend.module(names)
        self.kernels = [module.get_function(name) for name in names]
        for kernel, launch in zip(self.kernels, self.plan, strict=True):
            if launch.smem_bytes > 48 * 1024:
                kernel.max_dynamic_shared_size_bytes = launch.smem_bytes
        self.q, self.k, self.v = device_arrays["Q"], device_arrays["K"], device_arrays["V"]
        bh, P, M = problem.batch * problem.heads, problem.seq_q, problem.seq_kv
        f = problem.head_dim_v
        word = cp.uint16 if problem.dtype == "bf16" else cp.float16
        self.o = cp.full((bh, P, f), 0x7FC0 if problem.dtype == "bf16" else np.nan, dtype=word)
        sk = mapping.split_kv
        self.opart = cp.empty((max(sk, 1) * bh * P * f,), dtype=cp.float32)
        self.ml = cp.empty((max(sk, 1) * bh * P * 2,), dtype=cp.float32)
        if mapping.kernel is KernelForm.UNFUSED:
            self.s = cp.empty((bh, P, M), dtype=cp.float32)
            self.a = cp.empty((bh, P, M), dtype=word)
        self.scale = np.float32(scale)

    def registers(self) -> list[int]:
        """Registers per thread of each kernel, as the compiler allocated them."""
        return [int(kernel.num_regs) for kernel in self.kernels]

    def __call__(self):
        p, i32 = self.problem, np.int32
        P, M, W = i32(p.seq_q), i32(p.seq_kv), i32(p.window)
        if self.mapping.kernel is KernelForm.FUSED:
            args = [(self.q, self.k, self.v, self.o, self.opart, self.ml, P, M, W,
                     i32(self.mapping.split_kv), self.scale)]  # fmt: skip
            if len(self.plan) > 1:
                rows = np.int64(p.batch * p.heads * p.seq_q)
                args.append((self.opart, self.ml, self.o, rows, i32(self.mapping.split_kv)))
        else:
            rows = np.int64(p.batch * p.heads * p.seq_q)
            args = [(self.q, self.k, self.s, P, M, self.scale),
                    (self.s, self.a, rows, P, M, W),
                    (self.a, self.v, self.o, P, M)]  # fmt: skip
        for kernel, launch, arg in zip(self.kernels, self.plan, args, strict=True):
            kernel(launch.grid, (launch.block,), arg, shared_mem=launch.smem_bytes)
        return self.o


def run_gpu(
    problem: AttentionProblem, mapping: GpuMapping, arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """AV[b, h, f, p] (float64 on the host) of `problem` computed on the GPU as `mapping`
    says, from einsim-layout inputs (`tiles.problem_arrays`).

    Raises:
        BackendUnavailable: no CuPy or no GPU (one line).
        SpecError: a dtype, head dim or tile shape the kernels do not take.
    """
    backend.cupy()
    _check(problem, mapping)
    runner = Runner(problem, mapping, to_device(problem, arrays))
    out = runner()
    backend.cupy().cuda.Device().synchronize()
    return from_device(problem, out)
