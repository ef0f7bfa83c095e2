"""Compile every kernel instantiation of the GPU tiling grid with NVRTC (no GPU) and write
what ptxas allocated: registers per thread and spill bytes, the data the GPU model's
occupancy reads (`simulator/data/gpu_kernel_registers.csv`).

The grid is the mapper's (`mapper.gpu.GPU_GRID`: Br, Bc, warps), at head dims 64 and 128,
for the fused kernel under each mask and for the unfused QK and AV kernels; bf16 (fp16
instantiates the same code with another MMA type), sm_90, 2 stages (the ring depth is a
loop bound, not a register). Fused tilings whose output and score fragments alone,
Br·(F + Bc) / (32·warps) FP32 words, exceed 255 registers are not compiled: they spill by
construction and the model rejects them.

    python benchmarks/measure_kernel_registers.py            # ~5 min on 2 cores
    python benchmarks/measure_kernel_registers.py --quick    # head dim 64, no masks
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from pathlib import Path

from einsim.gpu_validate import nvrtc
from einsim.gpu_validate.kernels import launches
from einsim.mapper.gpu import GPU_GRID
from einsim.simulator.gpu import (
    AttentionProblem,
    GpuMapping,
    KernelForm,
    Mask,
    register_table_path,
)

COLUMNS = ("kernel", "head_dim", "head_dim_v", "block_q", "block_kv", "warps", "mask",
           "registers", "spill_store_bytes", "spill_load_bytes", "arch", "nvrtc")  # fmt: skip


def rows_to_measure(head_dims, masks):
    """(kernel, E, F, Br, Bc, warps, mask, name expression) of every grid point to compile:
    the fused kernel under each mask, and the unfused QK and AV GEMMs (mask-free) once."""
    out = []
    grid = list(itertools.product(GPU_GRID["block_q"], GPU_GRID["block_kv"], GPU_GRID["warps"]))
    for e, mask in itertools.product(head_dims, masks):
        problem = AttentionProblem(1, 1, 4096, 4096, e, e, mask, 256, dtype="bf16")
        for br, bc, w in grid:
            if br % (16 * w) == 0 and br * (e + bc) / (32 * w) <= 255:
                fused = GpuMapping(block_q=br, block_kv=bc, stages=2, warps=w)
                name = launches(problem, fused)[0].name
                out.append(("fused", e, e, br, bc, w, mask.value, name))
            if mask is Mask.NONE:
                unfused = GpuMapping(KernelForm.UNFUSED, br, bc, stages=2, warps=w)
                qk, _, av = launches(problem, unfused)
                out.append(("unfused_qk", e, 0, br, bc, w, "", qk.name))
                out.append(("unfused_av", 0, e, br, bc, w, "", av.name))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=register_table_path())
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--batch", type=int, default=8, help="instantiations per compile")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if not nvrtc.available():
        print(f"error: {nvrtc.INSTALL_HINT}", file=sys.stderr)
        return 2
    head_dims, masks = ((64,), (Mask.NONE,)) if args.quick else ((64, 128), tuple(Mask))
    todo = rows_to_measure(head_dims, masks)
    version, start, rows = nvrtc.version(), time.perf_counter(), []
    for i in range(0, len(todo), args.batch):
        chunk = todo[i : i + args.batch]
        compiled = nvrtc.compile_kernels([row[-1] for row in chunk], arch=args.arch).kernels
        for row, kernel in zip(chunk, compiled, strict=True):
            rows.append((*row[:-1], kernel.registers, kernel.spill_store_bytes,
                         kernel.spill_load_bytes, args.arch, version))  # fmt: skip
        print(f"\r{len(rows)}/{len(todo)} compiled", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with args.output.open("w", newline="") as handle:
        handle.write(
            "# Registers per thread and spill bytes that ptxas allocated for the attention\n"
            "# kernels (gpu_validate/kernels/attention.cu), bf16, 2 stages; written by\n"
            "# benchmarks/measure_kernel_registers.py from NVRTC compiles (no GPU). The GPU\n"
            "# model's occupancy reads it (simulator.gpu.kernel_registers).\n"
        )
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(sorted(rows, key=lambda r: tuple(map(str, r[:7]))))
    spilled = sum(1 for r in rows if r[8] > 0)
    print(f"{len(rows)} kernels in {time.perf_counter() - start:.0f} s ({spilled} spill) "
          f"-> {args.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
