"""GPUs as a target: presets, FlashAttention-style tile mappings, and their cost model.

A GPU is not a tree of buffers over spatial arrays, so it has its own frozen types:
`GpuArchitecture` (SMs, shared memory, registers, L2, HBM, tensor-core / CUDA-core / SFU
rates; the bundled `h100_sxm`, `h200`, `a100_sxm` in `simulator/gpus/`, or a YAML with a
top-level `gpu:` section; `simulator.targets` dispatches both here) and `GpuMapping` (the tiling of
one attention kernel). `evaluate_gpu_batch` costs many mappings at once over numpy arrays
of the tile parameters and returns the accelerator model's `BatchReport`/`Report` types.

The model (FlashAttention-2 forward, Dao 2023, Algorithm 1; a CTA per (batch, head, query
tile of Br rows), key/value tiles of Bc streamed through a shared-memory ring of `stages`):

* Work per (query tile, key tile) pair, by tile class: *full* (no masked or padded key),
  *partial* (a mask boundary or the padded last key tile: the mask is applied per element),
  *skipped* (entirely masked: never visited, FlashAttention's causal early exit).
  Tensor-core FLOPs 2·Br·Bc·E per QK sweep and 2·Br·Bc·F for PV; Br·Bc exp on the SFU per
  exp sweep plus Br correction exps; `FP32_OPS_PER_SCORE` FP32 ops per score (+
  `MASK_OPS_PER_SCORE` in a partial tile) and Br·F rescales; shared-memory bytes: the tile
  written once and read by each of the W warps (warps split the Br rows, FA2 Section 3.3),
  plus the Q tile's fragments, which each warp reloads per key tile (ldmatrix, as FA2).
* A tile's time on a whole SM: max over pipes (tensor, SFU, FP32, shared memory) when at
  least two warps per SM sub-partition can interleave MMA and softmax, their sum otherwise;
  divided by the issue efficiency min(1, resident warps / sub-partitions). Its global load
  (an L2-bandwidth share per SM) overlaps with compute when `stages` >= 2 and adds when 1.
* Occupancy k = CTAs per SM from warps, shared memory (`fused_smem_bytes`: Q and the K/V
  ring, rows padded; +1 KiB reserved per CTA) and registers per thread as ptxas allocated
  them for the kernel instantiation (`kernel_registers`: a table measured through NVRTC,
  or a fit on it, a + b·Br·(F + Bc)/(32·W) words of FP32 fragments); a tiling that spills
  more than `SPILL_TOLERANCE_BYTES` per thread is invalid.
  A CTA sharing its SM with k - 1 others takes k times its whole-SM time.
* Wave quantization: CTAs are dispatched in launch order (query tile fastest) to the
  earliest free of SMs x k slots (a list scheduler; equal CTAs give ceil(N / slots) waves,
  causal and window masks give unequal ones). Kernel time = launch + max(compute_scale ·
  makespan, memory_scale · HBM bytes / HBM bandwidth, tensor FLOPs / peak): a roofline.
* HBM bytes: Q, O once; K and V once per head when the heads in flight fit the L2, else
  the share that misses is re-read per query tile.
* Forms: `fusemax_1pass` is FA2's single sweep; `online_2pass` and `stable_3pass` sweep
  the keys 2 and 3 times (QK recomputed each sweep). `unfused`: QK GEMM writing S in FP32,
  a softmax kernel reading S three times (max, sum, normalize), an AV GEMM.

Calibration: per (device, kernel family) `compute_scale`, `memory_scale`, `launch_s`, read
from `simulator/data/gpu_calibration.csv` (fitted by `benchmarks/fit_gpu_calibration.py`
from `einsim validate-gpu` measurements). Until measured, the rows are 1.0 / 1.0 / 0 and
marked `uncalibrated`; no constant is tuned in this code.

Modules, one per concept: `spec` (GpuArchitecture, presets), `problem` (what the kernel
computes, read from the cascade), `mapping` (GpuMapping), `calibration`, `tiling` (tiles
per CTA, occupancy of the mask, the CTA list schedule), `registers` (shared memory,
registers, CTAs per SM), `cost` (the kernels and `evaluate_gpu_batch`).
"""

from .calibration import (
    CALIBRATION_FILE,
    KERNEL_FAMILIES,
    Calibration,
    calibration_path,
    load_calibration,
)
from .cost import (
    FP32_OPS_PER_SCORE,
    GPU_KERNELS,
    MASK_OPS_PER_SCORE,
    evaluate_gpu,
    evaluate_gpu_batch,
)
from .mapping import GPU_PARAMETERS, GpuMapping, KernelForm, parse_gpu_mapping
from .problem import (
    GPU_OPERATORS,
    OUTER_RANKS,
    AttentionKernel,
    AttentionProblem,
    Form,
    Mask,
    as_kernel,
    attention_kernel,
    problem_from_cascade,
    row_bounds,
)
from .registers import (
    REGISTER_FILE,
    SMEM_ROW_PAD_BYTES,
    SPILL_TOLERANCE_BYTES,
    fused_smem_bytes,
    kernel_registers,
    register_table_path,
    unfused_av_smem_bytes,
    unfused_qk_smem_bytes,
)
from .spec import (
    DTYPE_BYTES,
    GpuArchitecture,
    gpu_architecture_from_dict,
    gpu_presets,
    load_gpu_architecture,
)
from .tiling import (
    EXACT_SCHEDULE_CTAS,
    FLAG_BLOCK,
    cta_tiles,
    list_schedule,
    score_occupancy,
    tile_counts,
    useful_flops,
)

__all__ = [
    "CALIBRATION_FILE",
    "DTYPE_BYTES",
    "EXACT_SCHEDULE_CTAS",
    "FLAG_BLOCK",
    "FP32_OPS_PER_SCORE",
    "GPU_KERNELS",
    "GPU_OPERATORS",
    "GPU_PARAMETERS",
    "KERNEL_FAMILIES",
    "MASK_OPS_PER_SCORE",
    "OUTER_RANKS",
    "REGISTER_FILE",
    "SMEM_ROW_PAD_BYTES",
    "SPILL_TOLERANCE_BYTES",
    "AttentionKernel",
    "AttentionProblem",
    "Calibration",
    "Form",
    "GpuArchitecture",
    "GpuMapping",
    "KernelForm",
    "Mask",
    "as_kernel",
    "attention_kernel",
    "calibration_path",
    "cta_tiles",
    "evaluate_gpu",
    "evaluate_gpu_batch",
    "fused_smem_bytes",
    "gpu_architecture_from_dict",
    "gpu_presets",
    "kernel_registers",
    "list_schedule",
    "load_calibration",
    "load_gpu_architecture",
    "parse_gpu_mapping",
    "problem_from_cascade",
    "register_table_path",
    "row_bounds",
    "score_occupancy",
    "tile_counts",
    "unfused_av_smem_bytes",
    "unfused_qk_smem_bytes",
    "useful_flops",
]
