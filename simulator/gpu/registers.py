"""Per-CTA resources: shared memory of each kernel, registers per thread (ptxas's table
through NVRTC, or a fit on it), and CTAs per SM from warps, shared memory and registers.
"""

from __future__ import annotations

import csv
import functools
from importlib import resources
from pathlib import Path

import numpy as np

from .problem import AttentionKernel, Mask, _kernel_mask
from .spec import GpuArchitecture

# Spilled bytes per thread the model accepts as a fitting kernel: a few registers' worth
# (ptxas parks a loop-invariant value on the stack); beyond it the accumulators spill to
# local memory, which the model does not cost, so the tiling is invalid.
SPILL_TOLERANCE_BYTES = 64


REGISTER_FILE = "gpu_kernel_registers.csv"


# The fused kernel pads each shared-memory row by 16 bytes, so the eight row addresses of an
# ldmatrix fall in different banks (gpu_validate/kernels/attention.cu, `PAD`).
SMEM_ROW_PAD_BYTES = 16


def register_table_path() -> Path:
    """Registers and spills per kernel instantiation, measured by ptxas through NVRTC
    (`benchmarks/measure_kernel_registers.py`)."""
    return Path(str(resources.files("einsim.simulator").joinpath("data", REGISTER_FILE)))


def fused_smem_bytes(br, bc, stages, e, f, dtype_bytes):
    """Dynamic shared memory of the fused kernel: the Q tile and a ring of `stages` K and V
    tiles, (Br·E + stages·Bc·(E + F))·bytes, each row padded by `SMEM_ROW_PAD_BYTES`; S, P
    and the output accumulator live in registers (FA2)."""
    rows = br + 2 * stages * bc
    return (br * e + stages * bc * (e + f)) * dtype_bytes + rows * SMEM_ROW_PAD_BYTES


def unfused_qk_smem_bytes(br, bc, e, dtype_bytes):
    """The unfused QK kernel: whole Q and K tiles, (Br + Bc)·E·bytes, plus the FP32 S tile
    (4·Br·Bc) it is staged through on its way to HBM."""
    return (br + bc) * e * dtype_bytes + 4 * br * bc


def unfused_av_smem_bytes(br, bc, stages, f, dtype_bytes):
    """The unfused AV kernel: a ring of `stages` (A chunk Br x Bc, V chunk Bc x F) plus the
    FP32 output accumulator Br·F."""
    return stages * (br * bc + bc * f) * dtype_bytes + 4 * br * f


def _fragment_words(kernel: str, br, bc, warps, f):
    """FP32 words a thread holds in MMA fragments: the fused kernel's output and score
    accumulators, Br·(F + Bc) / (32·warps); the unfused GEMMs accumulate in shared memory."""
    if kernel != "fused":
        return np.zeros(np.shape(br))
    return br * (f + bc) / (32.0 * warps)


@functools.cache
def _register_table() -> tuple[dict[tuple, tuple[int, int]], dict[str, np.ndarray]]:
    """The measured table, and per kernel a least-squares fit registers ~ a + b·words over
    its rows that neither spill nor reach the 255 cap (for tilings it does not list)."""
    table: dict[tuple, tuple[int, int]] = {}
    path = register_table_path()
    if path.exists():
        with path.open() as handle:
            for row in csv.DictReader(line for line in handle if not line.startswith("#")):
                key = (row["kernel"], *(int(row[k]) for k in ("head_dim", "head_dim_v",
                       "block_q", "block_kv", "warps")), row["mask"])  # fmt: skip
                table[key] = (int(row["registers"]), int(row["spill_store_bytes"]))
    fits = {}
    for kernel in ("fused", "unfused_qk", "unfused_av"):
        points = [(k, regs) for k, (regs, spill) in table.items()
                  if k[0] == kernel and regs < 255 and spill == 0]  # fmt: skip
        if len(points) < 2:
            continue
        words = np.array([_fragment_words(kernel, k[3], k[4], k[5], k[2]) for k, _ in points])
        design = np.stack([np.ones_like(words), words], axis=1)
        regs = np.array([r for _, r in points], dtype=float)
        fits[kernel] = np.linalg.lstsq(design, regs, rcond=None)[0]
    return table, fits


def kernel_registers(kernel: str, br, bc, warps, e: int, f: int, mask: str = ""):
    """(registers per thread, spilled bytes per thread) of a kernel instantiation: ptxas's
    numbers from `register_table_path()` where measured, else a + b·(fragment words) fitted
    on the measured ones, rounded up to 8 (no spill predicted below 256).

    `kernel` is 'fused' (with the mask's value), 'unfused_qk' (E) or 'unfused_av' (F)."""
    br, bc, warps = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (br, bc, warps)))
    table, fits = _register_table()
    a, b = fits[kernel]
    estimate = np.ceil((a + b * _fragment_words(kernel, br, bc, warps, f)) / 8) * 8
    regs, spill = estimate.astype(np.float64), np.zeros(br.shape)
    tilings = zip(br.ravel().tolist(), bc.ravel().tolist(), warps.ravel().tolist(), strict=True)
    for i, tiling in enumerate(tilings):
        hit = table.get((kernel, e, f, *tiling, mask))
        if hit is not None:
            regs.flat[i], spill.flat[i] = hit
    return regs, spill


def _occupancy(arch: GpuArchitecture, warps, smem_bytes, regs_per_thread):
    """CTAs per SM: the least of the warp, CTA, shared-memory and register limits."""
    per_warp = np.ceil(regs_per_thread * 32 / arch.register_alloc_granularity)
    per_warp = per_warp * arch.register_alloc_granularity
    by_regs = arch.registers_per_sm // np.maximum(1, per_warp * warps)
    by_smem = arch.smem_per_sm_bytes // (smem_bytes + arch.smem_reserved_per_block_bytes)
    k = np.minimum.reduce(
        [
            np.full(np.shape(warps), arch.max_ctas_per_sm),
            arch.max_warps_per_sm // warps,
            by_smem,
            by_regs,
        ]
    )
    fits = (smem_bytes <= arch.smem_per_block_bytes) & (
        regs_per_thread <= arch.registers_per_thread_max
    )
    return np.where(fits, k, 0).astype(np.int64)


def _register_mask(problem: AttentionKernel) -> str:
    """The register table's mask column: the CUDA kernel's mask for the filter; a mask they
    do not implement (sinks, neighborhoods, a decode offset, a selection) is charged the
    registers of their window mask, the one with two bounds per row."""
    mask = _kernel_mask(problem)
    return (mask[0] if mask is not None else Mask.WINDOW).value
