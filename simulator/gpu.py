"""GPUs as a target: presets, FlashAttention-style tile mappings, and their cost model.

A GPU is not a tree of buffers over spatial arrays, so it has its own frozen types:
`GpuArchitecture` (SMs, shared memory, registers, L2, HBM, tensor-core / CUDA-core / SFU
rates; the bundled `h100_sxm`, `h200`, `a100_sxm` in `simulator/gpus/`, or a YAML with a
top-level `gpu:` section; `load_architecture` dispatches both here) and `GpuMapping` (the tiling of
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
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import functools
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from einsim.einsum import (
    Access,
    Call,
    Cascade,
    Einsum,
    Op,
    SpecError,
    Var,
    validation,
)
from einsim.einsum.executor import expression_value
from einsim.einsum.ir import accesses, rank_of, value_ops, var_of, variables

from .model import BatchReport, Report, _Problem
from .shape import split_shape
from .spec import check_keys, integer, load_yaml, number

# Instruction counts of the FA2 inner loop per score element (not fitted): scale-and-
# subtract the max (1 FFMA), the row max (1), the row sum (1), the convert to 16 bits (1).
FP32_OPS_PER_SCORE = 4
# A partial tile adds the index compare and the select per score.
MASK_OPS_PER_SCORE = 2
# Spilled bytes per thread the model accepts as a fitting kernel: a few registers' worth
# (ptxas parks a loop-invariant value on the stack); beyond it the accumulators spill to
# local memory, which the model does not cost, so the tiling is invalid.
SPILL_TOLERANCE_BYTES = 64
REGISTER_FILE = "gpu_kernel_registers.csv"
# The fused kernel pads each shared-memory row by 16 bytes, so the eight row addresses of an
# ldmatrix fall in different banks (gpu_validate/kernels/attention.cu, `PAD`).
SMEM_ROW_PAD_BYTES = 16
# Above this many CTAs the list scheduler places whole rounds of `slots` CTAs on the slots
# sorted by finish time (exact for equal CTAs; approximate for unequal ones).
EXACT_SCHEDULE_CTAS = 2048

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}


# --------------------------------------------------------------------------- the GPU


@dataclass(frozen=True, slots=True)
class GpuArchitecture:
    """A GPU: per-SM resources, caches, memory and rates. Units in the names."""

    name: str
    sms: int
    clock_hz: float
    max_clock_hz: float
    smem_per_sm_bytes: int
    smem_per_block_bytes: int
    smem_reserved_per_block_bytes: int
    smem_bytes_per_clock_per_sm: float
    registers_per_sm: int
    registers_per_thread_max: int
    register_alloc_granularity: int
    max_warps_per_sm: int
    max_ctas_per_sm: int
    sub_partitions_per_sm: int
    l2_bytes: int
    hbm_bytes: int
    hbm_bytes_per_s: float
    l2_bytes_per_clock_per_sm: float
    tensor_flops_per_clock_per_sm: tuple[tuple[str, float], ...]
    cuda_core_flops_per_clock_per_sm: tuple[tuple[str, float], ...]
    sfu_ops_per_clock_per_sm: float
    board_power_w: float = 0.0
    # The tensor-core rate of mma.sync, the instruction the modelled (FlashAttention-2 style)
    # kernels issue, where it is below the chip's peak (sm_90: the peak needs wgmma); empty:
    # mma.sync runs at `tensor_flops_per_clock_per_sm` (sm_80).
    mma_sync_flops_per_clock_per_sm: tuple[tuple[str, float], ...] = ()

    def mma_flops_per_s(self, dtype: str) -> float:
        """Peak rate of the attention MMAs (per clock per SM x SMs x clock): the tensor cores
        through mma.sync (`mma_sync_flops_per_clock_per_sm`, else the tensor peak) for 16-bit
        inputs, CUDA cores (FMA) for fp32/fp64 inputs (run without tensor cores)."""
        tensor = dict(self.tensor_flops_per_clock_per_sm)
        tensor.update(self.mma_sync_flops_per_clock_per_sm)
        table = tensor if dtype in ("fp16", "bf16") else {}
        if dtype not in table:
            table = dict(self.cuda_core_flops_per_clock_per_sm)
            dtype = "fp64" if dtype == "fp64" else "fp32"
            if dtype not in table:
                raise SpecError(f"GPU {self.name!r} has no {dtype} rate")
        return table[dtype] * self.sms * self.clock_hz

    @property
    def fp32_ops_per_s(self) -> float:
        """FP32 instructions per second (lane-ops): FLOP/s / 2 (an FMA is two FLOPs)."""
        return dict(self.cuda_core_flops_per_clock_per_sm)["fp32"] / 2 * self.sms * self.clock_hz

    @property
    def l2_bytes_per_s(self) -> float:
        return self.l2_bytes_per_clock_per_sm * self.sms * self.clock_hz

    @property
    def sfu_ops_per_s(self) -> float:
        return self.sfu_ops_per_clock_per_sm * self.sms * self.clock_hz


_GPU_INTS = (
    "sms",
    "smem_per_sm_bytes",
    "smem_per_block_bytes",
    "smem_reserved_per_block_bytes",
    "registers_per_sm",
    "registers_per_thread_max",
    "register_alloc_granularity",
    "max_warps_per_sm",
    "max_ctas_per_sm",
    "sub_partitions_per_sm",
    "l2_bytes",
    "hbm_bytes",
)
_GPU_FLOATS = (
    "clock_hz",
    "max_clock_hz",
    "smem_bytes_per_clock_per_sm",
    "hbm_bytes_per_s",
    "l2_bytes_per_clock_per_sm",
    "sfu_ops_per_clock_per_sm",
)


def _rates(data: object, where: str) -> tuple[tuple[str, float], ...]:
    data = check_keys(data, where, (), (*DTYPE_BYTES, "tf32", "fp8", "int8"))
    if not data:
        raise SpecError(f"{where}: give at least one dtype rate")
    low, high = _GPU_RATE_RANGE
    return tuple(
        (str(k), number(v, f"{where}.{k}", minimum=low, maximum=high)) for k, v in data.items()
    )


# Bounds of a GPU spec's numbers (nan, inf and non-numbers are refused everywhere): wide
# enough for any real GPU, narrow enough that no time or occupancy overflows or comes out as
# nan, and that nothing the model allocates per SM or per slot grows without bound.
_GPU_INT_MAX = {
    "sms": 4096,
    "smem_per_sm_bytes": 2**32,
    "smem_per_block_bytes": 2**32,
    "smem_reserved_per_block_bytes": 2**32,
    "registers_per_sm": 2**24,
    "registers_per_thread_max": 2**16,
    "register_alloc_granularity": 2**16,
    "max_warps_per_sm": 1024,
    "max_ctas_per_sm": 1024,
    "sub_partitions_per_sm": 64,
    "l2_bytes": 2**40,
    "hbm_bytes": 2**50,
}
_GPU_FLOAT_RANGE = {
    "clock_hz": (1e3, 1e12),
    "max_clock_hz": (1e3, 1e12),
    "smem_bytes_per_clock_per_sm": (1e-3, 1e6),
    "hbm_bytes_per_s": (1.0, 1e16),
    "l2_bytes_per_clock_per_sm": (1e-3, 1e6),
    "sfu_ops_per_clock_per_sm": (1e-3, 1e6),
}
_GPU_RATE_RANGE = (1e-3, 1e9)  # FLOPs per clock per SM


def gpu_architecture_from_dict(data: MappingABC, origin: str = "architecture") -> GpuArchitecture:
    """Build and validate a `GpuArchitecture` from parsed YAML (`name` and a `gpu:` section).

    Raises:
        SpecError: unknown or missing keys (naming the known ones), non-positive numbers.
    """
    data = check_keys(data, origin, ("name", "gpu"))
    where = f"{origin}: gpu"
    gpu = check_keys(
        data["gpu"],
        where,
        (
            *_GPU_INTS,
            *_GPU_FLOATS,
            "tensor_flops_per_clock_per_sm",
            "cuda_core_flops_per_clock_per_sm",
        ),
        ("board_power_w", "mma_sync_flops_per_clock_per_sm"),
    )
    values: dict = {}
    for key in _GPU_INTS:
        values[key] = integer(gpu[key], f"{where}.{key}", maximum=_GPU_INT_MAX[key])
    for key in _GPU_FLOATS:
        low, high = _GPU_FLOAT_RANGE[key]
        values[key] = number(gpu[key], f"{where}.{key}", minimum=low, maximum=high)
    if values["smem_per_block_bytes"] > values["smem_per_sm_bytes"]:
        raise SpecError(
            f"{where}.smem_per_block_bytes: {values['smem_per_block_bytes']} exceeds "
            f"smem_per_sm_bytes ({values['smem_per_sm_bytes']})"
        )
    cores = gpu["cuda_core_flops_per_clock_per_sm"]
    if not isinstance(cores, MappingABC) or "fp32" not in cores:
        raise SpecError(f"{where}.cuda_core_flops_per_clock_per_sm: the fp32 rate is required")
    return GpuArchitecture(
        name=validation.name(data["name"], f"{origin}: name"),
        tensor_flops_per_clock_per_sm=_rates(
            gpu["tensor_flops_per_clock_per_sm"], f"{where}.tensor_flops_per_clock_per_sm"
        ),
        cuda_core_flops_per_clock_per_sm=_rates(cores, f"{where}.cuda_core_flops_per_clock_per_sm"),
        board_power_w=number(
            gpu.get("board_power_w", 0), f"{where}.board_power_w", positive=False, maximum=1e6
        ),
        mma_sync_flops_per_clock_per_sm=(
            _rates(
                gpu["mma_sync_flops_per_clock_per_sm"], f"{where}.mma_sync_flops_per_clock_per_sm"
            )
            if "mma_sync_flops_per_clock_per_sm" in gpu
            else ()
        ),
        **values,
    )


def load_gpu_architecture(
    name_or_path: str | Path, overrides: MappingABC[str, object] | None = None
) -> GpuArchitecture:
    """A bundled GPU preset (`simulator/gpus/`: `h100_sxm`, `h200`, `a100_sxm`) or a YAML path.

    Example:
        >>> load_gpu_architecture("h100_sxm", {"gpu.sms": 66}).sms
        66
    """
    from .spec import apply_overrides

    data, origin = load_yaml(name_or_path, "GPU architecture", "gpus")
    if "gpu" not in data:
        raise SpecError(f"{origin}: not a GPU architecture (no top-level 'gpu:' section)")
    if overrides:
        data = apply_overrides(data, overrides, origin)
    return gpu_architecture_from_dict(data, origin)


# ------------------------------------------------------------------- the problem


class Mask(enum.Enum):
    """The masks the CUDA kernels (gpu_validate/kernels/attention.cu) are launched with, as
    one key interval per query row. The cost model reads masks from the cascade's filters
    (`attention_kernel`); this enum only describes launches (`AttentionProblem`)."""

    NONE = "none"
    CAUSAL = "causal"  # m <= p
    WINDOW = "window"  # m <= p and p - m < W (Mistral)
    SYMMETRIC_WINDOW = "symmetric_window"  # 2 |p - m| <= W


class Form(enum.Enum):
    """How a CUDA launch sweeps the keys (1, 2 or 3 times); the cost model reads the sweeps
    from the cascade's passes over M (`attention_kernel`)."""

    FUSEMAX_1PASS = "fusemax_1pass"
    ONLINE_2PASS = "online_2pass"
    STABLE_3PASS = "stable_3pass"

    @property
    def sweeps(self) -> int:
        return {"fusemax_1pass": 1, "online_2pass": 2, "stable_3pass": 3}[self.value]


@dataclass(frozen=True, slots=True)
class AttentionProblem:
    """One launch of the CUDA kernels (`gpu_validate`): B x H heads of P queries over M keys,
    head dims E (QK), F (V), one of their masks. Costed as the registered cascade that
    builds it (`as_kernel`)."""

    batch: int
    heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    head_dim_v: int
    mask: Mask = Mask.NONE
    window: int = 0
    form: Form = Form.FUSEMAX_1PASS
    dtype: str = "bf16"

    def __post_init__(self):
        for key in ("batch", "heads", "seq_q", "seq_kv", "head_dim", "head_dim_v"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"attention problem: {key} must be a positive integer")
        if self.dtype not in DTYPE_BYTES:
            raise SpecError(
                f"attention problem: dtype {self.dtype!r}; known: {', '.join(DTYPE_BYTES)}"
            )
        if self.mask in (Mask.WINDOW, Mask.SYMMETRIC_WINDOW) and self.window < 1:
            raise SpecError("attention problem: a window mask needs window W >= 1")

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def keep(self, m: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The mask as a boolean array over broadcast key positions m and query positions p."""
        if self.mask is Mask.NONE:
            return np.ones(np.broadcast(m, p).shape, dtype=bool)
        if self.mask is Mask.CAUSAL:
            return m <= p
        if self.mask is Mask.WINDOW:
            return (m <= p) & (p - m < self.window)
        return 2 * np.abs(p - m) <= self.window


# The IR's rank names (paper names, `einsim.einsum.ir`): keys M, queries P.
KEY_RANK, QUERY_RANK = "M", "P"
# Shape ranks a single-head cascade leaves outside: each value is one more kernel instance.
OUTER_RANKS = ("B", "H")
# What the fused and unfused kernels compute per score: the QK and AV MACs (tensor cores),
# the softmax's max, exp, sum and divide, and scalar multiplies and adds (FP32).
GPU_OPERATORS = frozenset({Op.MUL, Op.MAC, Op.ADD, Op.SUB, Op.DIV, Op.MAX, Op.EXP})


@dataclass(frozen=True)
class AttentionKernel:
    """The attention a cascade computes, as the GPU kernels run it: read from the cascade's
    structure (ranks, operators, filters), never from its name.

    Attributes:
        cascade: the cascade. sizes: its resolved sizes, with the key tile of a tiled form
            set to one key (`M0 = 1`: the GPU kernel tiles the keys by its own Bc).
        score: the Einsum of the scores (a MAC of two inputs, iterating keys and queries);
            value: the Einsum contracting weights with V over the keys (AV, or SLNV).
        key: its key variables, ("m",) or ("m1", "m0"); query: the query variable.
        batch: kernel instances (shape ranks the cascade does not iterate, `OUTER_RANKS`).
        heads / kv_heads: query heads and K/V heads per instance (GQA: kv_heads < heads,
            K/V tiles shared by the heads of a group).
        seq_q, seq_kv: P and M. head_dim: the QK contraction (K's ranks V lacks); head_dim_v:
            V's ranks K lacks. sweeps: passes over the keys (1: FA2, 2, 3).
        selection: the Einsums of a data-dependent mask (MoBA's gate: block means, gate
            scores, top-k), run as a gate kernel before the attention. density: the kept
            share of the mask's static part (None: the inputs' declared default).
    """

    cascade: Cascade
    sizes: tuple[tuple[str, int], ...]
    score: str
    value: str
    key: tuple[str, ...]
    query: str
    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    head_dim_v: int
    sweeps: int
    dtype: str = "bf16"
    selection: tuple[str, ...] = ()
    density: float | None = None

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def data_dependent(self) -> bool:
        """Whether the mask reads tensors (a selection computed in the cascade)."""
        return bool(accesses(self.where))

    @property
    def where(self):
        """The score Einsum's filter (None: every key of every query)."""
        return self.cascade.producers[self.score].where

    def keep(self, m: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The filter over broadcast key positions m and query positions p (bool)."""
        shape = np.broadcast(m, p).shape
        if self.where is None:
            return np.ones(shape, dtype=bool)
        env = {self.query: p, self.key[0]: m}
        env.update(dict.fromkeys(self.key[1:], 0))
        return np.broadcast_to(expression_value(self.where, env, dict(self.sizes)) != 0, shape)


def _refuse(cascade: Cascade, why: str) -> SpecError:
    return SpecError(f"GPU model: {cascade.name or 'the cascade'}: {why}")


def _source(cascade: Cascade, access: Access) -> str:
    """The input an access reads, through Einsums that only copy (`BK = K[e, m1*M0+m0]`)."""
    producer = cascade.producers.get(access.tensor)
    while producer is not None and isinstance(producer.expr, Access) and producer.where is None:
        if producer.reduced_vars:
            break
        access = producer.expr
        producer = cascade.producers.get(access.tensor)
    return access.tensor if producer is None else ""


def _needed(cascade: Cascade, names) -> set[str]:
    """The Einsums producing `names`, transitively (the work an output needs)."""
    todo, found = list(names), set()
    while todo:
        name = todo.pop()
        producer = cascade.producers.get(name)
        if producer is None or name in found:
            continue
        found.add(name)
        todo += [a.tensor for a in producer.operands]
    return found


def _selection(cascade: Cascade, attend: set[str]) -> set[str]:
    """The Einsums whose outputs a mask over the keys and queries reads, transitively (a
    data-dependent selection: MoBA's KS, KMEAN, GATE, T1..Tk)."""
    reads = [a.tensor for e in cascade.einsums if attend <= set(e.iter_vars)
             for a in accesses(e.where)]  # fmt: skip
    return _needed(cascade, reads)


def _copies(cascade: Cascade, einsum: Einsum) -> bool:
    return isinstance(einsum.expr, Access) and einsum.where is None and not einsum.reduced_vars


def _product_reads(expr) -> tuple[Access, ...] | None:
    """The two accesses of `A[...] * B[...]`, else None."""
    product = isinstance(expr, Call) and expr.op is Op.MUL
    if product and all(isinstance(a, Access) for a in expr.args):
        return expr.args  # type: ignore[return-value]
    return None


def attention_kernel(
    cascade: Cascade,
    shape: MappingABC[str, int],
    dtype: str = "bf16",
    density: float | None = None,
) -> AttentionKernel:
    """The `AttentionKernel` a cascade asks the GPU for, at `shape`.

    Read from the structure: the score Einsum is the MAC of two inputs (Q, K) iterating the
    keys (M, or the tile parts M1, M0) and the queries P; the AV contraction the MAC over
    the keys that reads a third input (V); heads are the score's other output ranks, K/V
    groups the ranks K and V share besides M; sweeps are the passes over the keys
    (`einsim.pass_analysis`); the mask is the score's filter. B and H of the shape that the
    cascade does not iterate multiply the kernel instances.

    Raises:
        SpecError: naming the capability the GPU kernels lack: an operator outside
            `GPU_OPERATORS` (sigmoid, elu, ...), an input besides Q, K, V (a bias, a gate),
            a filter that reads a tensor (a data-dependent selection), work over the keys
            outside the attention, no softmax, or no score Einsum at all.

    Example:
        >>> import einsim
        >>> k = attention_kernel(einsim.attention("gqa"), dict(H=32, G=8, E=128, F=128,
        ...                      M=4096, P=4096))
        >>> k.heads, k.kv_heads, k.sweeps
        (32, 8, 1)
    """
    from einsim.einsum import pass_analysis

    if dtype not in DTYPE_BYTES:
        raise SpecError(f"GPU model: dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    query = var_of(QUERY_RANK)
    # The key tile of a tiled form: the partition of M whose parts an Einsum iterates with
    # the queries (block_topk's M -> N, MB only groups keys into blocks for its gate).
    part, key = None, (var_of(KEY_RANK),)
    for candidate in cascade.partitions:
        parts = {query, var_of(candidate.upper), var_of(candidate.lower)}
        if candidate.rank == KEY_RANK and any(parts <= set(e.iter_vars) for e in cascade.einsums):
            part, key = candidate, (var_of(candidate.upper), var_of(candidate.lower))
    if part is not None:
        shape = {k: v for k, v in shape.items() if k not in (part.upper, part.lower)}
        shape[part.lower] = 1
    if (KEY_RANK not in cascade.ranks and part is None) or QUERY_RANK not in cascade.ranks:
        raise _refuse(cascade, f"no ranks {KEY_RANK} (keys) and {QUERY_RANK} (queries)")
    # The one rule of every entry point (simulator/shape.py): an unknown rank is refused.
    split = split_shape(cascade, OUTER_RANKS, shape)
    sizes = dict(split.sizes)
    # Einsums no output needs (MoBA's gate with TOPK = 0) are not run.
    dead = {e.output for e in cascade.einsums} - _needed(cascade, cascade.outputs)
    selection = _selection(cascade, {query, *key}) - dead
    for einsum in cascade.einsums:
        if einsum.output in selection | dead:
            continue  # the gate kernel runs any operator, on the CUDA cores
        ops = set(value_ops(einsum.expr))
        if einsum.reduced_vars:
            ops.add(einsum.reduce_op)
        missing = sorted(op.value for op in ops - GPU_OPERATORS)
        if missing:
            raise _refuse(
                cascade,
                f"Einsum {einsum.output} needs {', '.join(missing)}; the GPU kernels implement "
                f"{', '.join(sorted(op.value for op in GPU_OPERATORS))}",
            )
    scores = [
        e
        for e in cascade.einsums
        if e.output not in selection
        and {query, *key} <= set(e.out_vars)
        and e.reduced_vars
        and e.reduce_op is Op.ADD
        and (reads := _product_reads(e.expr)) is not None
        and all(_source(cascade, a) for a in reads)
    ]
    if len(scores) != 1:
        found = ", ".join(e.output for e in scores) or "none"
        raise _refuse(
            cascade,
            f"the GPU kernels need one score contraction of two inputs over keys {KEY_RANK} "
            f"and queries {QUERY_RANK}; found {found}",
        )
    qk = scores[0]
    # Q is the operand without a key index, K the one with it.
    q_read, k_read = sorted(_product_reads(qk.expr), key=lambda a: bool(variables(a) & set(key)))
    q_in, k_in = _source(cascade, q_read), _source(cascade, k_read)
    other = sorted(variables(qk.where) - {query, *key})
    if other:
        raise _refuse(
            cascade,
            f"the mask of {qk.output} depends on {', '.join(other)}; the GPU kernels mask by "
            "key and query position only",
        )
    key_vars = set(key)
    if not any(Op.EXP in value_ops(e.expr) for e in cascade.einsums if key_vars & set(e.iter_vars)):
        raise _refuse(cascade, "no exp over the keys: the GPU kernels run softmax attention")
    v_in, av = "", ""
    for einsum in cascade.einsums:
        reads = _product_reads(einsum.expr)
        if reads and key_vars & set(einsum.reduced_vars) and einsum is not qk and not v_in:
            sources = {_source(cascade, a) for a in reads} - {"", q_in, k_in}
            v_in, av = next(iter(sources), ""), einsum.output
    if not v_in:
        raise _refuse(cascade, "no contraction of the scores with a value input over the keys")
    extra = sorted(set(cascade.input_names) - {q_in, k_in, v_in})
    if extra:
        raise _refuse(
            cascade,
            f"reads input(s) {', '.join(extra)} besides Q, K and V; the GPU kernels take no "
            "score bias, gate or other operand",
        )
    for einsum in cascade.einsums:
        outside = key_vars & set(einsum.iter_vars) and query not in einsum.iter_vars
        if outside and not _copies(cascade, einsum) and einsum.output not in selection | dead:
            raise _refuse(
                cascade,
                f"Einsum {einsum.output} works over the keys without the queries; the GPU "
                "kernels have no key-side pass",
            )
    ranks = cascade.tensor_ranks
    k_ranks, v_ranks = set(ranks[k_in]), set(ranks[v_in])

    def product(names) -> int:
        return math.prod(int(sizes[n]) for n in names)

    head_vars = [v for v in qk.out_vars if v not in (query, *key)]
    heads = product(rank_of(v) for v in head_vars)
    kv_heads = product(r for r in k_ranks & v_ranks if r != KEY_RANK)
    sweeps = pass_analysis(cascade)[rank_of(key[0])]  # passes over M, or over the tiles M1
    batch = split.multiplier
    return AttentionKernel(
        cascade=cascade,
        sizes=tuple(sorted(sizes.items())),
        score=qk.output,
        value=av,
        key=key,
        query=query,
        batch=batch,
        heads=heads,
        kv_heads=kv_heads,
        seq_q=int(sizes[QUERY_RANK]),
        seq_kv=int(sizes[KEY_RANK]),
        head_dim=product(k_ranks - v_ranks - {KEY_RANK}),
        head_dim_v=product(v_ranks - k_ranks - {KEY_RANK}),
        sweeps=int(sweeps),
        dtype=dtype,
        selection=tuple(e.output for e in cascade.einsums if e.output in selection),
        density=density,
    )


def _kernel_mask(kernel: AttentionKernel) -> tuple[Mask, int] | None:
    """The CUDA kernels' mask (gpu_validate/kernels/attention.cu: none, causal, window,
    symmetric window) that keeps exactly the cascade's filter, with its window; else None."""
    bounds = row_bounds(kernel)
    if bounds is None:
        return None
    lo, hi = bounds
    p = np.arange(kernel.seq_q, dtype=np.float64)
    if np.all(np.isneginf(lo)) and np.all(np.isposinf(hi)):
        return Mask.NONE, 0
    if not np.all(np.isfinite(hi)) or not np.all(hi == p + (hi[0] - p[0])):
        return None
    reach = int(hi[0] - p[0])
    if np.all(np.isneginf(lo)):
        return (Mask.CAUSAL, 0) if reach == 0 else None
    if not np.all(np.isfinite(lo)) or not np.all(lo == p + (lo[0] - p[0])):
        return None
    back = int(p[0] - lo[0])
    if reach == 0 and back >= 0:
        return Mask.WINDOW, back + 1
    if reach == back and reach >= 0:
        return Mask.SYMMETRIC_WINDOW, 2 * reach
    return None


def problem_from_cascade(
    cascade: Cascade, shape: MappingABC[str, int], dtype: str = "bf16"
) -> AttentionProblem:
    """The launch parameters of the CUDA kernels (`gpu_validate`) for a cascade: its
    `attention_kernel`, when its filter is one of their four masks and each query head has
    its own K/V head.

    Raises:
        SpecError: what the cascade needs that the CUDA kernels lack (or `attention_kernel`'s
            reason).
    """
    kernel = attention_kernel(cascade, shape, dtype)
    if kernel.kv_heads != kernel.heads:
        raise _refuse(
            cascade,
            f"{kernel.heads} query heads share {kernel.kv_heads} K/V heads; the CUDA kernels "
            "read one K/V head per query head",
        )
    mask = _kernel_mask(kernel)
    if mask is None:
        raise _refuse(
            cascade,
            "its mask is not one key interval of the CUDA kernels' forms (none, causal, "
            "window, symmetric window)",
        )
    if kernel.sweeps not in (1, 2, 3):
        raise _refuse(cascade, f"{kernel.sweeps} sweeps over the keys; the kernels do 1 to 3")
    batch = int(shape.get("B", 1)) if "B" not in cascade.ranks else 1
    return AttentionProblem(
        batch=batch,
        heads=kernel.batch * kernel.heads // batch,
        seq_q=kernel.seq_q,
        seq_kv=kernel.seq_kv,
        head_dim=kernel.head_dim,
        head_dim_v=kernel.head_dim_v,
        mask=mask[0],
        window=mask[1],
        form=(Form.FUSEMAX_1PASS, Form.ONLINE_2PASS, Form.STABLE_3PASS)[kernel.sweeps - 1],
        dtype=dtype,
    )


@functools.lru_cache(maxsize=256)
def _problem_kernel(problem: AttentionProblem) -> AttentionKernel:
    from einsim.workloads import attention

    form = problem.form.value
    if problem.mask is Mask.NONE:
        cascade = attention(form)
    elif problem.mask is Mask.CAUSAL:
        cascade = attention("causal", form=form)
    else:
        causal = problem.mask is Mask.WINDOW
        cascade = attention("sliding_window", form=form, W=problem.window, causal=causal)
    shape = dict(
        B=problem.batch,
        H=problem.heads,
        E=problem.head_dim,
        F=problem.head_dim_v,
        M=problem.seq_kv,
        P=problem.seq_q,
    )
    return attention_kernel(cascade, shape, problem.dtype)


def as_kernel(problem: AttentionProblem | AttentionKernel) -> AttentionKernel:
    """An `AttentionProblem` (a CUDA launch) as the kernel of the registered cascade that
    builds it (mask and form by construction); an `AttentionKernel` as it is."""
    return problem if isinstance(problem, AttentionKernel) else _problem_kernel(problem)


# ------------------------------------------------------------------- the mapping


class KernelForm(enum.Enum):
    FUSED = "fused"  # one kernel: FlashAttention-style tiles, intermediates on chip
    UNFUSED = "unfused"  # QK GEMM, softmax, AV GEMM: intermediates through HBM


GPU_PARAMETERS = ("block_q", "block_kv", "stages", "warps", "split_kv")


@dataclass(frozen=True, slots=True)
class GpuMapping:
    """The tiling of one attention kernel on a GPU.

    Attributes:
        kernel: fused (FA2-style) or unfused (three kernels through HBM).
        block_q: Br, query rows per CTA (unfused: rows of an S / output tile).
        block_kv: Bc, keys per shared-memory tile (unfused: columns of an S tile, and the
            reduction chunk of the AV GEMM).
        stages: depth of the shared-memory ring of K/V tiles (1 = no prefetch).
        warps: warps per CTA; in the fused kernel each owns Br / warps query rows.
        split_kv: CTAs per query tile, each over a contiguous share of the key tiles,
            combined by a second kernel (flash-decoding; fused only).
    """

    kernel: KernelForm = KernelForm.FUSED
    block_q: int = 128
    block_kv: int = 64
    stages: int = 2
    warps: int = 4
    split_kv: int = 1

    def __post_init__(self):
        for key in GPU_PARAMETERS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"GPU mapping: {key} must be a positive integer, got {value!r}")
        if self.kernel is KernelForm.UNFUSED and self.split_kv != 1:
            raise SpecError("GPU mapping: split_kv applies to the fused kernel only")

    @property
    def name(self) -> str:
        text = f"{self.kernel.value}:Br={self.block_q},Bc={self.block_kv}"
        text += f",stages={self.stages},warps={self.warps}"
        return text + (f",split={self.split_kv}" if self.split_kv > 1 else "")

    def params(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in GPU_PARAMETERS}


_ALIASES = {
    "br": "block_q",
    "bc": "block_kv",
    "split": "split_kv",
    **{k: k for k in GPU_PARAMETERS},
}


def parse_gpu_mapping(text: str) -> GpuMapping:
    """`fused:Br=128,Bc=64,stages=2,warps=4[,split=1]` or `unfused:Br=64,Bc=64,...`.

    Example:
        >>> parse_gpu_mapping("fused:Br=64,Bc=32,warps=4").block_kv
        32
    """
    kind, _, rest = text.strip().partition(":")
    try:
        kernel = KernelForm(kind.strip())
    except ValueError:
        known = ", ".join(k.value for k in KernelForm)
        raise SpecError(f"GPU mapping {text!r}: kernel must be one of {known}") from None
    values: dict[str, int] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        key = _ALIASES.get(key.strip().lower())
        if not sep or key is None:
            raise SpecError(
                f"GPU mapping {text!r}: expected KEY=INT with KEY in Br, Bc, stages, warps, split"
            )
        try:
            values[key] = int(value)
        except ValueError:
            raise SpecError(f"GPU mapping {text!r}: {pair!r} is not an integer") from None
    return GpuMapping(kernel, **values)


# ------------------------------------------------------------------- calibration


@dataclass(frozen=True, slots=True)
class Calibration:
    """time = launch_s + max(compute_scale x modeled compute, memory_scale x HBM time)."""

    compute_scale: float = 1.0
    memory_scale: float = 1.0
    launch_s: float = 0.0
    status: str = "uncalibrated"


KERNEL_FAMILIES = ("fused", "split_combine", "unfused_gemm", "unfused_softmax", "selection")
CALIBRATION_FILE = "gpu_calibration.csv"


def gpu_presets() -> list[str]:
    """The bundled GPU presets, by name."""
    folder = resources.files("einsim.simulator").joinpath("gpus")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def calibration_path() -> Path:
    return Path(str(resources.files("einsim.simulator").joinpath("data", CALIBRATION_FILE)))


def register_table_path() -> Path:
    """Registers and spills per kernel instantiation, measured by ptxas through NVRTC
    (`benchmarks/measure_kernel_registers.py`)."""
    return Path(str(resources.files("einsim.simulator").joinpath("data", REGISTER_FILE)))


@functools.lru_cache(maxsize=8)
def _calibration_rows(path: str) -> tuple[dict, ...]:
    with open(path, newline="") as handle:
        return tuple(csv.DictReader(line for line in handle if not line.startswith("#")))


def load_calibration(device: str, path: str | Path | None = None) -> dict[str, Calibration]:
    """Per kernel family, the row for `device` (an architecture name) or else the `*` row."""
    rows = _calibration_rows(str(path or calibration_path()))
    out = {}
    for family in KERNEL_FAMILIES:
        match = [r for r in rows if r["family"] == family and r["device"] == device] or [
            r for r in rows if r["family"] == family and r["device"] == "*"
        ]
        row = match[-1] if match else {}
        out[family] = Calibration(
            float(row.get("compute_scale", 1.0)),
            float(row.get("memory_scale", 1.0)),
            float(row.get("launch_s", 0.0)),
            row.get("status", "uncalibrated"),
        )
    return out


# ------------------------------------------------------------------- the model


@dataclass(frozen=True)
class _Rows:
    """Tile parameters of n mappings, as int64 arrays of shape (n,)."""

    br: np.ndarray
    bc: np.ndarray
    stages: np.ndarray
    warps: np.ndarray
    split: np.ndarray
    n: int


def _rows(mapping: GpuMapping, params: MappingABC[str, object] | None) -> _Rows:
    params = dict(params or {})
    unknown = sorted(set(params) - set(GPU_PARAMETERS))
    if unknown:
        raise SpecError(
            f"GPU mapping: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(GPU_PARAMETERS)}"
        )
    arrays = {}
    for key in GPU_PARAMETERS:
        array = np.atleast_1d(np.asarray(params.get(key, getattr(mapping, key))))
        as_int = array.astype(np.int64)
        if array.ndim != 1 or np.any(as_int != array) or np.any(as_int < 1):
            raise SpecError(f"params[{key!r}]: expected positive integers")
        arrays[key] = as_int
    n = max(a.size for a in arrays.values())
    for key, array in arrays.items():
        if array.size not in (1, n):
            raise SpecError(f"params[{key!r}]: {array.size} values, others have {n}")
        arrays[key] = np.broadcast_to(array, (n,))
    if mapping.kernel is KernelForm.UNFUSED and np.any(arrays["split_kv"] != 1):
        raise SpecError("GPU mapping: split_kv applies to the fused kernel only")
    return _Rows(
        arrays["block_q"],
        arrays["block_kv"],
        arrays["stages"],
        arrays["warps"],
        arrays["split_kv"],
        n,
    )


def _overlap(a_lo, a_hi, b_lo, b_hi):
    """Size of the integer interval intersection [a_lo, a_hi] & [b_lo, b_hi] (elementwise)."""
    return np.maximum(0, np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo) + 1)


def _terms(where) -> list:
    """The conjuncts of a filter (`a and b and c`)."""
    if isinstance(where, Call) and where.op is Op.AND:
        return _terms(where.args[0]) + _terms(where.args[1])
    return [where]


def _linear_in(expr, var: str) -> bool:
    """Whether `expr` is affine in `var` (var only under +, -, negation and constant factors)."""
    if var not in variables(expr):
        return True
    if isinstance(expr, Var):
        return True
    if isinstance(expr, Call) and expr.op in (Op.ADD, Op.SUB):
        return all(_linear_in(a, var) for a in expr.args)
    if isinstance(expr, Call) and expr.op is Op.NEG:
        return _linear_in(expr.args[0], var)
    if isinstance(expr, Call) and expr.op is Op.MUL:
        free = [var not in variables(a) for a in expr.args]
        return any(free) and all(_linear_in(a, var) for a in expr.args)
    return False


_BOUNDS = {Op.LT, Op.LE, Op.GT, Op.GE}


@functools.lru_cache(maxsize=64)
def row_bounds(kernel: AttentionKernel) -> tuple[np.ndarray, np.ndarray] | None:
    """Per query row p, the kept keys lo(p) <= m <= hi(p) before clipping to [0, M - 1]
    (-inf / +inf where no term bounds that side), when the filter is a conjunction of
    comparisons affine in the key position; None for any other filter (sinks, NATTEN).

    Example:
        >>> import einsim
        >>> k = attention_kernel(einsim.attention("sliding_window", W=3), dict(E=8, F=8,
        ...                      M=6, P=6))
        >>> [b.tolist() for b in row_bounds(k)]
        [[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]
    """
    p = np.arange(kernel.seq_q, dtype=np.float64)
    lo, hi = np.full(p.shape, -np.inf), np.full(p.shape, np.inf)
    if kernel.where is None:
        return lo, hi
    if kernel.data_dependent:
        return None
    sizes, m = dict(kernel.sizes), kernel.key[0]
    rest = dict.fromkeys(kernel.key[1:], 0)
    for term in _terms(kernel.where):
        if not (isinstance(term, Call) and term.op in _BOUNDS):
            return None
        diff = Call(Op.SUB, term.args)
        if not _linear_in(diff, m) or (variables(diff) - {m, kernel.query, *rest}):
            return None
        c = np.broadcast_to(
            expression_value(diff, {m: 0.0, kernel.query: p, **rest}, sizes), p.shape
        )
        a = np.broadcast_to(
            expression_value(diff, {m: 1.0, kernel.query: p, **rest}, sizes), p.shape
        )
        a = a - c
        op = term.op
        if np.all(a == 0):  # a condition on the query alone: keeps all keys or none
            holds = expression_value(term, {m: 0.0, kernel.query: p, **rest}, sizes) != 0
            hi = np.where(holds, hi, -np.inf)
            continue
        if np.any(a == 0) or not (np.all(a > 0) or np.all(a < 0)):
            return None
        t = -c / a  # a*m + c  op  0   <=>   m  op'  t  (op flipped when a < 0)
        if a[0] < 0:
            op = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE}[op]
        if op is Op.LE:
            hi = np.minimum(hi, np.floor(t))
        elif op is Op.LT:
            hi = np.minimum(hi, np.ceil(t) - 1)
        elif op is Op.GE:
            lo = np.maximum(lo, np.ceil(t))
        else:
            lo = np.maximum(lo, np.floor(t) + 1)
    return lo + 0.0, hi + 0.0  # no negative zeros


@functools.lru_cache(maxsize=64)
def _clipped(kernel: AttentionKernel):
    """Row intervals clipped to the keys, and whether each row keeps any key; None when the
    union of a query tile's rows is not one interval (then `_tile_flags` counts)."""
    bounds = row_bounds(kernel)
    if bounds is None:
        return None
    lo = np.maximum(bounds[0], 0).astype(np.int64)
    hi = np.minimum(bounds[1], kernel.seq_kv - 1)
    hi = np.where(np.isneginf(hi), -1, hi).astype(np.int64)
    kept = lo <= hi
    a, b = lo[kept], hi[kept]
    if np.any(np.diff(a) < 0) or np.any(np.diff(b) < 0) or np.any(a[1:] > b[:-1] + 1):
        return None
    return lo, hi, kept


def _tile_ranges(kernel: AttentionKernel, br: int, bc: int):
    """Per query tile: (first active key tile, last active, first full, last full), or None
    (see `_clipped`). A key tile is active when a kept (m, p) lies in it, full when every
    real query row of the tile keeps every key of it and the tile has no padded key."""
    clipped = _clipped(kernel)
    if clipped is None:
        return None
    lo, hi, kept = clipped
    P, M = kernel.seq_q, kernel.seq_kv
    starts = np.arange(0, P, br)
    big = np.int64(1) << 62
    first = np.minimum.reduceat(np.where(kept, lo, big), starts)
    last = np.maximum.reduceat(np.where(kept, hi, -1), starts)
    all_kept = np.logical_and.reduceat(kept, starts)
    inner_lo = np.maximum.reduceat(lo, starts)
    inner_hi = np.minimum.reduceat(hi, starts)
    any_kept = last >= 0
    t_lo = np.where(any_kept, first // bc, 0)
    t_hi = np.where(any_kept, last // bc, -1)
    whole = M // bc
    f_lo = -(-inner_lo // bc)
    f_hi = np.minimum((inner_hi + 1) // bc, whole) - 1
    f_hi = np.where(all_kept, f_hi, -1)
    return t_lo, t_hi, f_lo, f_hi


#: The block edge at which a mask without row intervals is evaluated once, then reused by
#: every tiling whose Br and Bc it divides (the MMA granularity: every valid tiling).
FLAG_BLOCK = 16


@functools.lru_cache(maxsize=64)
def _tile_flags(kernel: AttentionKernel, br: int, bc: int) -> tuple[np.ndarray, np.ndarray]:
    """(active, full) per (query tile, key tile): the exact path for masks that are not one
    interval per query tile, reduced from `_block_flags` at a block edge dividing Br and Bc."""
    g = FLAG_BLOCK if br % FLAG_BLOCK == 0 and bc % FLAG_BLOCK == 0 else math.gcd(br, bc)
    any_g, all_g = _block_flags(kernel, g, g)
    nq, nk = -(-kernel.seq_q // br), -(-kernel.seq_kv // bc)
    rq, rk = br // g, bc // g
    rows, cols = nq * rq - any_g.shape[0], nk * rk - any_g.shape[1]
    # Padded query rows keep nothing and never spoil a full tile; padded keys are never kept.
    any_g = np.pad(any_g, ((0, rows), (0, cols)), constant_values=False)
    all_g = np.pad(np.pad(all_g, ((0, rows), (0, 0)), constant_values=True), ((0, 0), (0, cols)),
                   constant_values=False)  # fmt: skip
    active = any_g.reshape(nq, rq, nk, rk).any(axis=(1, 3))
    return active, all_g.reshape(nq, rq, nk, rk).all(axis=(1, 3))


@functools.lru_cache(maxsize=16)
def _block_flags(kernel: AttentionKernel, br: int, bc: int) -> tuple[np.ndarray, np.ndarray]:
    """(active, full) per (query tile, key tile), from the filter over every (m, p)."""
    P, M = kernel.seq_q, kernel.seq_kv
    nq, nk = -(-P // br), -(-M // bc)
    active = np.zeros((nq, nk), dtype=bool)
    full = np.zeros((nq, nk), dtype=bool)
    m = np.arange(nk * bc)
    tiles_per_chunk = max(1, (1 << 24) // max(1, br * nk * bc))
    for start in range(0, nq, tiles_per_chunk):
        stop = min(nq, start + tiles_per_chunk)
        p = np.arange(start * br, stop * br)
        keep = kernel.keep(m[None, :], p[:, None]) & (m[None, :] < M)
        real = (p < P)[:, None]
        shaped = (stop - start, br, nk, bc)
        active[start:stop] = (keep & real).reshape(shaped).any(axis=(1, 3))
        full[start:stop] = (keep | ~real).reshape(shaped).all(axis=(1, 3))
    return active, full


def cta_tiles(kernel: AttentionKernel | AttentionProblem, br: int, bc: int, split: int):
    """(full, partial) key-tile counts per CTA, in launch order for one head: query tile
    fastest, then the split index. Split c takes key tiles [c·S, (c+1)·S), S = ceil(T / split).
    """
    kernel = as_kernel(kernel)
    if kernel.data_dependent:
        # A selection the data decides: the occupancy's totals under the density, spread
        # over the CTAs as the mask's static part (its conjuncts reading no tensor) spreads.
        active, full = (x[0] / kernel.heads for x in _score_tiles(kernel, [br], [bc])[:2])
        static_full, static_part = cta_tiles(_static_part(kernel), br, bc, split)
        static_active = static_full + static_part
        cta_active = static_active * (active / max(static_active.sum(), 1))
        cta_full = static_full * (full / max(static_full.sum(), 1))
        return cta_full, cta_active - cta_full
    tiles = -(-kernel.seq_kv // bc)
    chunk = -(-tiles // split)
    c = np.arange(split)[:, None]
    c_lo, c_hi = c * chunk, np.minimum(tiles, (c + 1) * chunk) - 1
    ranges = _tile_ranges(kernel, br, bc)
    if ranges is not None:
        lo, hi, flo, fhi = ranges
        active = _overlap(lo[None], hi[None], c_lo, c_hi)
        full = np.minimum(active, _overlap(flo[None], fhi[None], c_lo, c_hi))
    else:
        flags_active, flags_full = _tile_flags(kernel, br, bc)
        j = np.arange(tiles)
        inside = (j[None, :] >= c_lo) & (j[None, :] <= c_hi)  # (split, tiles)
        active = inside.astype(np.int64) @ flags_active.T.astype(np.int64)
        full = inside.astype(np.int64) @ (flags_full & flags_active).T.astype(np.int64)
    return full.reshape(-1), (active - full).reshape(-1)


@functools.lru_cache(maxsize=16)
def _static_part(kernel: AttentionKernel) -> AttentionKernel:
    """The kernel with its score's mask reduced to the conjuncts that read no tensor."""
    einsum = kernel.cascade.producers[kernel.score]
    terms = [t for t in _terms(einsum.where) if not accesses(t)]
    where = functools.reduce(lambda a, b: Call(Op.AND, (a, b)), terms) if terms else None
    score = dataclasses.replace(einsum, where=where)
    einsums = tuple(score if e is einsum else e for e in kernel.cascade.einsums)
    cascade = dataclasses.replace(kernel.cascade, einsums=einsums)
    return dataclasses.replace(kernel, cascade=cascade, selection=())


def tile_counts(problem: AttentionProblem | AttentionKernel, br: int, bc: int):
    """Per query tile i: (first active key tile, last active, first full, last full); a tile
    is active when one kept (m, p) pair lies in it, full when every pair is kept and no key is
    padding. For filters that keep one key interval per query tile (`row_bounds`).

    Example (causal, P = M = 10, Br = Bc = 4: tiles 0..2; query tile 1 holds rows 4..7):
        >>> p = AttentionProblem(1, 1, 10, 10, 8, 8, Mask.CAUSAL)
        >>> [a.tolist() for a in tile_counts(p, 4, 4)]
        [[0, 0, 0], [0, 1, 2], [0, 0, 0], [-1, 0, 1]]
    """
    ranges = _tile_ranges(as_kernel(problem), br, bc)
    if ranges is None:
        raise SpecError("tile_counts: the mask keeps more than one key interval per query tile")
    return ranges


def score_occupancy(kernel: AttentionKernel, br, bc):
    """The score Einsum's tile occupancy (`einsim.einsum.occupancy`) for CTA tilings of Br
    queries x Bc keys (arrays), each head its own tile: (active tiles, kept (m, p) pairs),
    per kernel instance, summed over its heads."""
    active, _, kept = _score_tiles(kernel, br, bc)
    return active, kept


def _score_tiles(kernel: AttentionKernel, br, bc):
    """(active tiles, full tiles, kept pairs) of the score Einsum's occupancy."""
    from einsim.einsum.occupancy import occupancy

    pairs, back = np.unique(np.stack(np.broadcast_arrays(br, bc)), axis=1, return_inverse=True)
    br, bc, back = pairs[0], pairs[1], back.reshape(-1)  # each distinct tiling once
    einsum = kernel.cascade.producers[kernel.score]
    tile: dict[str, object] = {QUERY_RANK: br, rank_of(kernel.key[0]): bc}
    tile.update(dict.fromkeys((rank_of(v) for v in kernel.key[1:]), 1))
    heads = [v for v in einsum.out_vars if v not in (kernel.query, *kernel.key)]
    tile.update(dict.fromkeys((rank_of(v) for v in heads), 1))
    occ = occupancy(
        kernel.cascade, dict(kernel.sizes), tile, (kernel.score,), density=kernel.density
    )[kernel.score]
    contraction = math.prod(dict(kernel.sizes)[rank_of(v)] for v in einsum.reduced_vars)
    kept = occ.points / contraction if kernel.data_dependent else occ.points // contraction
    return (occ.tiles - occ.empty)[back], occ.full[back], kept[back]


def list_schedule(durations: np.ndarray, slots: int, repeat: int = 1) -> np.ndarray:
    """Makespan of CTAs dispatched in order to the earliest free of `slots` slots.

    `durations` is (rows, N): per mapping row, the N CTAs of one head in launch order;
    the whole grid is `repeat` copies of them (heads x batch). Equal durations give
    ceil(N·repeat / slots) waves exactly; up to `EXACT_SCHEDULE_CTAS` CTAs the greedy list
    schedule is simulated exactly, above it in rounds of `slots` CTAs placed on the slots
    sorted by finish time.

    Example:
        >>> list_schedule(np.ones((1, 10)), slots=4).tolist()
        [3.0]
    """
    rows, n = durations.shape
    total = n * repeat
    if n and np.all(durations == durations[:, :1]):
        return np.ceil(total / slots) * durations[:, 0]
    finish = np.zeros((rows, slots))
    index = np.arange(rows)
    if total <= EXACT_SCHEDULE_CTAS:
        for k in range(total):
            slot = np.argmin(finish, axis=1)
            finish[index, slot] += durations[:, k % n]
        return finish.max(axis=1)
    flat = np.tile(durations, (1, repeat)) if repeat * n <= 1 << 22 else None
    for start in range(0, total, slots):
        stop = min(total, start + slots)
        if flat is not None:
            chunk = flat[:, start:stop]
        else:
            chunk = durations[:, np.arange(start, stop) % n]
        finish.sort(axis=1)
        finish[:, : stop - start] += chunk
    return finish.max(axis=1)


@dataclass
class _Kernel:
    """One kernel's predicted numbers over the batch (arrays of shape (n,))."""

    name: str
    family: str
    time_s: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    mma_flops: np.ndarray | float
    exp_ops: np.ndarray | float
    fp32_ops: np.ndarray | float
    hbm_bytes: np.ndarray | float
    occupancy: np.ndarray | float
    waves: np.ndarray | float
    problems: list = field(default_factory=list)


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


def _sm_time(arch, k, warps, mma, exps, fp32, smem, dtype):
    """Seconds a whole SM needs for the work (mma FLOPs, exps, FP32 ops, smem bytes) when
    k CTAs of `warps` warps are resident: max over pipes with >= 2 warps per sub-partition
    (MMA and softmax of different warps interleave), else their sum; over the issue
    efficiency min(1, resident warps / sub-partitions)."""
    sms = arch.sms
    terms = [
        mma / (arch.mma_flops_per_s(dtype) / sms),
        exps / (arch.sfu_ops_per_s / sms),
        fp32 / (arch.fp32_ops_per_s / sms),
        smem / (arch.smem_bytes_per_clock_per_sm * arch.clock_hz),
    ]
    terms = np.broadcast_arrays(*terms)
    resident = np.maximum(k, 1) * warps
    interleave = resident >= 2 * arch.sub_partitions_per_sm
    time = np.where(interleave, np.maximum.reduce(terms), sum(terms))
    return time / np.minimum(1.0, resident / arch.sub_partitions_per_sm)


def _with_load(compute, load, stages):
    """A tile's time with its global load: overlapped by a ring of >= 2 stages."""
    return np.where(stages >= 2, np.maximum(compute, load), compute + load)


def _finish(arch, name, family, cal, makespan, hbm_bytes, mma_flops, dtype, **rest):
    compute = makespan * cal.compute_scale
    memory = hbm_bytes / arch.hbm_bytes_per_s * cal.memory_scale
    roof = mma_flops / arch.mma_flops_per_s(dtype)
    compute, memory, roof = np.broadcast_arrays(compute, memory, roof)
    time = cal.launch_s + np.maximum.reduce([compute, memory, roof])
    return _Kernel(name, family, time, compute, memory, mma_flops, hbm_bytes=hbm_bytes, **rest)


def _register_mask(problem: AttentionKernel) -> str:
    """The register table's mask column: the CUDA kernel's mask for the filter; a mask they
    do not implement (sinks, neighborhoods, a decode offset, a selection) is charged the
    registers of their window mask, the one with two bounds per row."""
    mask = _kernel_mask(problem)
    return (mask[0] if mask is not None else Mask.WINDOW).value


def _fused(problem: AttentionKernel, arch: GpuArchitecture, r: _Rows, cal) -> list[_Kernel]:
    b = problem.dtype_bytes
    e, f, sweeps = problem.head_dim, problem.head_dim_v, problem.sweeps
    heads = problem.batch * problem.heads
    l2_per_sm = arch.l2_bytes_per_s / arch.sms
    smem = fused_smem_bytes(r.br, r.bc, r.stages, e, f, b)
    regs, spill = kernel_registers("fused", r.br, r.bc, r.warps, e, f, _register_mask(problem))
    k = _occupancy(arch, r.warps, smem, regs)
    problems = []
    _note(
        problems,
        r.n,
        r.br % (16 * r.warps) != 0,
        "Br={} must be a multiple of 16 x warps ({} warps): each warp owns 16-row MMA tiles",
        r.br,
        r.warps,
    )
    _note(problems, r.n, r.bc % 16 != 0, "Bc={} must be a multiple of 16 (the MMA k and n)", r.bc)
    limit = arch.smem_per_block_bytes
    _note(problems, r.n, smem > limit, f"fused tiles need {{}} B of shared memory > {limit}", smem)
    _note(
        problems,
        r.n,
        regs > arch.registers_per_thread_max,
        "about {} registers per thread (> 255: spills); use a smaller Br or Bc, or more warps",
        regs,
    )
    _note(
        problems,
        r.n,
        spill > SPILL_TOLERANCE_BYTES,
        "ptxas spills {} B per thread to local memory; use a smaller Br or Bc, or more warps",
        spill,
    )
    # Work of one key tile per sweep; the last sweep also multiplies by V.
    mma_tile = 2.0 * r.br * r.bc * (e * sweeps + f)
    exp_sweeps = 1 if sweeps == 1 else 2
    exp_tile = (r.br * r.bc + r.br) * exp_sweeps
    fp32_full = FP32_OPS_PER_SCORE * r.br * r.bc * sweeps + r.br * f
    fp32_part = fp32_full + MASK_OPS_PER_SCORE * r.br * r.bc * sweeps
    # K/V written once and read by every warp, and Q's fragments reloaded per QK sweep
    smem_tile = ((r.warps + 1) * r.bc * (e * sweeps + f) + r.br * e * sweeps) * b
    load_tile = r.bc * (e * sweeps + f) * b / l2_per_sm
    t_full = _with_load(
        _sm_time(arch, k, r.warps, mma_tile, exp_tile, fp32_full, smem_tile, problem.dtype),
        load_tile,
        r.stages,
    )
    t_part = _with_load(
        _sm_time(arch, k, r.warps, mma_tile, exp_tile, fp32_part, smem_tile, problem.dtype),
        load_tile,
        r.stages,
    )
    out_bytes = np.where(r.split > 1, r.br * (f + 2) * 4, r.br * f * b)
    t_edge = (r.br * e * b + out_bytes) / l2_per_sm
    makespan = np.zeros(r.n)
    waves = np.zeros(r.n)
    mma = np.zeros(r.n)
    exps = np.zeros(r.n)
    full_tiles = np.zeros(r.n)
    ctas_per_head = np.zeros(r.n)
    groups: dict[tuple, list[int]] = {}
    for row in range(r.n):
        key = (int(r.br[row]), int(r.bc[row]), int(r.split[row]), int(k[row]))
        groups.setdefault(key, []).append(row)
    for (br, bc, split, occ), rows in groups.items():
        rows = np.asarray(rows)
        full, part = cta_tiles(problem, br, bc, split)
        active = full + part
        ctas_per_head[rows] = full.size
        slots = arch.sms * max(occ, 1)
        waves[rows] = math.ceil(full.size * heads / slots)
        per_cta = (
            t_edge[rows, None] + full[None] * t_full[rows, None] + part[None] * t_part[rows, None]
        )
        makespan[rows] = list_schedule(per_cta * max(occ, 1), slots, heads)
        full_tiles[rows] = float(full.sum()) * heads
    # Work: the score Einsum's active tiles (tile occupancy of the IR), each computed whole.
    active, _ = score_occupancy(problem, r.br, r.bc)
    tiles = active.astype(np.float64) * problem.batch
    parts = tiles - full_tiles
    mma = tiles * mma_tile
    exps = tiles * exp_tile
    fp32 = tiles * fp32_full + parts * (fp32_part - fp32_full)
    l2_kv = tiles * r.bc * (e * sweeps + f) * b
    q_o = heads * problem.seq_q * (e + f) * b
    # K/V come from HBM once per K/V head: the query heads of a group (GQA) share them.
    kv_heads = problem.batch * problem.kv_heads
    kv_unique = kv_heads * problem.seq_kv * (e + f) * b
    in_flight = np.minimum(heads, np.ceil(arch.sms * np.maximum(k, 1) / ctas_per_head))
    groups_in_flight = np.minimum(kv_heads, np.ceil(in_flight * problem.kv_heads / problem.heads))
    working_set = groups_in_flight * problem.seq_kv * (e + f) * b
    miss = 1.0 - np.minimum(1.0, arch.l2_bytes / working_set)
    # The heads of a group in flight together stream the same K/V tiles at about the same
    # time: L2 serves all but one of them (GQA; 1 for multi-head attention).
    sharing = np.minimum(problem.heads // problem.kv_heads, np.maximum(in_flight, 1))
    streamed = l2_kv / sharing
    hbm = q_o + np.minimum(kv_unique, streamed) + miss * np.maximum(0.0, streamed - kv_unique)
    partial_out = np.where(r.split > 1, heads * problem.seq_q * (f + 2) * 4.0 * r.split, 0.0)
    hbm = hbm + partial_out
    kernels = [
        _finish(
            arch,
            "attention",
            "fused",
            cal["fused"],
            makespan,
            hbm,
            mma,
            problem.dtype,
            exp_ops=exps,
            fp32_ops=fp32,
            occupancy=k,
            waves=waves,
            problems=problems,
        )
    ]
    if np.any(r.split > 1):
        kernels.append(_combine(problem, arch, r, cal))
    return kernels


def _combine(problem: AttentionKernel, arch, r: _Rows, cal) -> _Kernel:
    """The split-KV combine: read split x (F + 2) FP32 per query row, write F outputs;
    memory-bound. Rows without a split cost nothing."""
    rows = problem.batch * problem.heads * problem.seq_q
    f = problem.head_dim_v
    hbm = np.where(r.split > 1, rows * (r.split * (f + 2) * 4.0 + f * problem.dtype_bytes), 0.0)
    fp32 = np.where(r.split > 1, rows * r.split * (2.0 * f + 4), 0.0)
    compute = fp32 / arch.fp32_ops_per_s
    c = cal["split_combine"]
    time = np.where(
        r.split > 1,
        c.launch_s
        + np.maximum(compute * c.compute_scale, hbm / arch.hbm_bytes_per_s * c.memory_scale),
        0.0,
    )
    return _Kernel(
        "combine",
        "split_combine",
        time,
        compute,
        hbm / arch.hbm_bytes_per_s,
        0.0,
        exp_ops=np.where(r.split > 1, rows * r.split, 0.0),
        fp32_ops=fp32,
        hbm_bytes=hbm,
        occupancy=0.0,
        waves=0.0,
    )


def _select(problem: AttentionKernel, arch: GpuArchitecture, r: _Rows, cal) -> _Kernel:
    """The gate kernel of a mask the data decides (MoBA: block means of K, gate scores
    Q . mean(K), the top-k per query): the selection Einsums' operations from the cascade's
    op counts (MACs on the tensor cores, every other operator one FP32 op; a filtered
    selection counted under the density), their inputs read once and what the mask reads
    written and read back in FP32; a roofline (time = max(compute, HBM bytes / bandwidth))."""
    from einsim.einsum import footprints, op_counts

    sizes = dict(problem.sizes)
    counts = op_counts(problem.cascade, sizes, density=problem.density)
    macs = sum(float(counts[name].get(Op.MAC, 0)) for name in problem.selection)
    other = sum(
        float(n) for name in problem.selection for op, n in counts[name].items() if op is not Op.MAC
    )
    elements = footprints(problem.cascade, sizes)
    cascade = problem.cascade
    read = {
        a.tensor
        for name in problem.selection
        for a in cascade.producers[name].operands
        if a.tensor in cascade.input_names
    }
    marks = {a.tensor for a in accesses(problem.where)}
    hbm = problem.batch * (
        sum(int(elements[t]) for t in read) * problem.dtype_bytes
        + sum(int(elements[t]) for t in marks) * 4.0 * 2
    )
    mma, fp32 = 2.0 * macs * problem.batch, other * problem.batch
    compute = max(mma / arch.mma_flops_per_s(problem.dtype), fp32 / arch.fp32_ops_per_s)
    memory = hbm / arch.hbm_bytes_per_s
    c = cal["selection"]
    ones = np.ones(r.n)
    time = c.launch_s + max(compute * c.compute_scale, memory * c.memory_scale)
    return _Kernel(
        "select",
        "selection",
        time * ones,
        compute * ones,
        memory * ones,
        mma,
        exp_ops=0.0,
        fp32_ops=fp32,
        hbm_bytes=hbm,
        occupancy=0.0,
        waves=0.0,
    )


def _gemm(arch, cal, problem, r, k, ctas_per_head, out_rows, out_cols, depth, chunk, stages,
          a_b, o_b):  # fmt: skip
    """A tiled GEMM kernel: per head `ctas_per_head` CTAs of an out_rows x out_cols tile over a
    reduction of `depth`, in chunks of `chunk` through a ring of `stages`. A and B operands
    of `a_b` bytes per element, output of `o_b`; equal CTAs, so waves are exact."""
    heads = problem.batch * problem.heads
    l2_per_sm = arch.l2_bytes_per_s / arch.sms
    chunks = np.ceil(depth / chunk)
    mma_chunk = 2.0 * out_rows * out_cols * chunk
    smem_chunk = (r.warps + 1) * (out_rows + out_cols) * chunk * a_b
    load_chunk = (out_rows + out_cols) * chunk * a_b / l2_per_sm
    t_chunk = _with_load(
        _sm_time(
            arch, k, r.warps, mma_chunk, 0.0, out_rows * out_cols / 32, smem_chunk, problem.dtype
        ),
        load_chunk,
        stages,
    )
    t_cta = chunks * t_chunk + out_rows * out_cols * o_b / l2_per_sm
    slots = arch.sms * np.maximum(k, 1)
    waves = np.ceil(ctas_per_head * heads / slots)
    makespan = waves * t_cta * np.maximum(k, 1)
    mma = ctas_per_head * heads * chunks * mma_chunk
    return makespan, waves, mma


def _unfused(problem: AttentionKernel, arch: GpuArchitecture, r: _Rows, cal) -> list[_Kernel]:
    b = problem.dtype_bytes
    e, f, P, M = problem.head_dim, problem.head_dim_v, problem.seq_q, problem.seq_kv
    heads = problem.batch * problem.heads
    problems: list = []
    _note(
        problems,
        r.n,
        (r.br % 16 != 0) | (r.bc % 16 != 0),
        "unfused tiles Br={} and Bc={} must be multiples of 16",
        r.br,
        r.bc,
    )
    nq, nk = np.ceil(P / r.br), np.ceil(M / r.bc)
    # QK: S[p, m] tiles of Br x Bc over the whole E at once (no ring), written in FP32.
    smem_qk = unfused_qk_smem_bytes(r.br, r.bc, e, b)
    regs_qk, _ = kernel_registers("unfused_qk", r.br, r.bc, r.warps, e, 0)
    k_qk = _occupancy(arch, r.warps, smem_qk, regs_qk)
    span, waves_qk, mma_qk = _gemm(arch, cal, problem, r, k_qk, nq * nk, r.br, r.bc, e, e, 1, b, 4)
    s_bytes = heads * P * M * 4.0
    kv_heads = problem.batch * problem.kv_heads  # K and V once per K/V head (GQA shares them)
    hbm_qk = (heads * P * e + kv_heads * M * e) * b + s_bytes
    qk = _finish(
        arch,
        "qk",
        "unfused_gemm",
        cal["unfused_gemm"],
        span,
        hbm_qk,
        mma_qk,
        problem.dtype,
        exp_ops=0.0,
        fp32_ops=0.0,
        occupancy=k_qk,
        waves=waves_qk,
        problems=problems,
    )
    # Softmax: a warp per row of S; pass 1 max, pass 2 sum of exp, pass 3 writes A.
    kept = float(_kept_pairs(problem))
    # Passes 2 and 3 hit the L2 while all of S fits it; otherwise they re-read HBM.
    miss = 0.0 if s_bytes <= arch.l2_bytes else 1.0
    hbm_sm = s_bytes * (1 + 2 * miss) + heads * P * M * b
    exps = 2.0 * kept * heads
    fp32 = 6.0 * heads * P * M
    c = cal["unfused_softmax"]
    compute = max(exps / arch.sfu_ops_per_s, fp32 / arch.fp32_ops_per_s)
    memory = hbm_sm / arch.hbm_bytes_per_s
    t = c.launch_s + max(compute * c.compute_scale, memory * c.memory_scale)
    ones = np.ones(r.n)
    softmax = _Kernel(
        "softmax",
        "unfused_softmax",
        t * ones,
        compute * ones,
        memory * ones,
        0.0,
        exp_ops=exps,
        fp32_ops=fp32,
        hbm_bytes=hbm_sm,
        occupancy=0.0,
        waves=0.0,
    )
    # AV: O[p, f] tiles of Br x F over M in chunks of Bc.
    smem_av = unfused_av_smem_bytes(r.br, r.bc, r.stages, f, b)
    regs_av, _ = kernel_registers("unfused_av", r.br, r.bc, r.warps, 0, f)
    k_av = _occupancy(arch, r.warps, smem_av, regs_av)
    span, waves_av, mma_av = _gemm(arch, cal, problem, r, k_av, nq, r.br, f, M, r.bc, r.stages,
                                   b, b)  # fmt: skip
    hbm_av = (heads * (P * M + P * f) + kv_heads * M * f) * b
    av = _finish(
        arch,
        "av",
        "unfused_gemm",
        cal["unfused_gemm"],
        span,
        hbm_av,
        mma_av,
        problem.dtype,
        exp_ops=0.0,
        fp32_ops=0.0,
        occupancy=k_av,
        waves=waves_av,
    )
    for name, occ in (("QK", k_qk), ("AV", k_av)):
        _note(problems, r.n, occ < 1, f"unfused {name} GEMM tiles do not fit an SM")
    return [qk, softmax, av]


def _kept_pairs(problem: AttentionKernel) -> float:
    """Kept (m, p) pairs of one head: the score Einsum's points (its tile occupancy) over its
    contraction and its heads."""
    _, kept = score_occupancy(problem, np.array([1]), np.array([1]))
    return kept[0] / problem.heads if problem.data_dependent else int(kept[0]) // problem.heads


def useful_flops(problem: AttentionProblem | AttentionKernel) -> float:
    """FLOPs of the kept (m, p) pairs: 2·(E + F) per pair per head (QK and PV), the count
    that achieved TFLOP/s are quoted in (FlashAttention-2's convention)."""
    problem = as_kernel(problem)
    heads = problem.batch * problem.heads
    return 2.0 * (problem.head_dim + problem.head_dim_v) * _kept_pairs(problem) * heads


def _note(problems: list, n: int, mask, message: str, *values) -> None:
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), (n,))
    if np.any(mask):
        problems.append(_Problem(mask, message.replace("{}", "{:.0f}"), values))


def evaluate_gpu_batch(
    problem: AttentionProblem | AttentionKernel | Cascade,
    arch: GpuArchitecture,
    mapping: GpuMapping,
    params: MappingABC[str, object] | None = None,
    *,
    shape: MappingABC[str, int] | None = None,
    calibration: MappingABC[str, Calibration] | None = None,
    dtype: str = "bf16",
    density: float | None = None,
) -> BatchReport:
    """Predict the time of many tilings of one attention kernel on a GPU.

    Args:
        problem: a cascade (then `shape` and `dtype` are needed: its `attention_kernel`
            is costed), an `AttentionKernel`, or an `AttentionProblem` (a CUDA launch).
        arch: the GPU.
        mapping: the template; `params` override its fields per row.
        params: arrays (one common length n) of `block_q`, `block_kv`, `stages`, `warps`,
            `split_kv`.
        calibration: per kernel family; default `load_calibration(arch.name)`.
        density: for a mask the data decides (MoBA's top-k blocks), the share of its static
            part kept; None: the variant's declared default (`declare_density`).

    Returns:
        A `BatchReport`: cycles at `arch.clock_hz`, latency, energy (board power x time, an
        upper bound; 0 when the preset has no power figure), HBM bytes, utilization of the
        tensor cores, SFU and HBM, and `valid` with reasons (tile shapes the MMAs cannot
        use, shared memory or registers over the limits).

    Example:
        >>> arch = load_gpu_architecture("h100_sxm")
        >>> p = AttentionProblem(4, 16, 4096, 4096, 128, 128, Mask.CAUSAL)
        >>> rep = evaluate_gpu_batch(p, arch, GpuMapping(), {"block_kv": [32, 64, 128]})
        >>> rep.valid.tolist()  # Bc = 128: ~296 registers per thread, over 255
        [True, True, False]
    """
    if isinstance(problem, Cascade) and shape is None:
        raise SpecError("evaluate_gpu_batch: a cascade needs its shape")
    from_cascade = isinstance(problem, Cascade)
    if isinstance(problem, Cascade):
        problem = attention_kernel(problem, shape or {}, dtype, density)
    problem = as_kernel(problem)
    cal = dict(calibration or load_calibration(arch.name))
    rows = _rows(mapping, params)
    if mapping.kernel is KernelForm.FUSED:
        kernels = _fused(problem, arch, rows, cal)
    else:
        kernels = _unfused(problem, arch, rows, cal)
    if problem.selection:
        kernels.insert(0, _select(problem, arch, rows, cal))
    n = rows.n

    def shaped(value):
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))

    latency = shaped(sum(kernel.time_s for kernel in kernels))
    mma = shaped(sum(kernel.mma_flops for kernel in kernels))
    exps = shaped(sum(kernel.exp_ops for kernel in kernels))
    hbm = shaped(sum(kernel.hbm_bytes for kernel in kernels))
    problems = tuple(p for kernel in kernels for p in kernel.problems)
    invalid = functools.reduce(np.logical_or, [p.mask for p in problems], np.zeros(n, bool))
    with np.errstate(divide="ignore", invalid="ignore"):
        utilization = {
            "tensor": np.where(latency > 0, mma / arch.mma_flops_per_s(problem.dtype) / latency, 0),
            "sfu": np.where(latency > 0, exps / arch.sfu_ops_per_s / latency, 0.0),
            "hbm": np.where(latency > 0, hbm / arch.hbm_bytes_per_s / latency, 0.0),
        }
    energy = shaped(latency * arch.board_power_w * 1e12)
    einsum_rows = []
    for kernel in kernels:
        einsum_rows.append(
            {
                "kernel": kernel.name,
                "einsum": (from_cascade and _kernel_einsums(kernel.name, problem)) or kernel.family,
                "unit": _KERNEL_UNITS[kernel.name],
                "ops": shaped(kernel.mma_flops / 2 + kernel.exp_ops + kernel.fp32_ops),
                "cycles": shaped(kernel.time_s * arch.clock_hz),
                "energy_pj": shaped(kernel.time_s * arch.board_power_w * 1e12),
            }
        )
    return BatchReport(
        n=n,
        params={key: getattr(rows, attr) for key, attr in zip(GPU_PARAMETERS, _ATTRS, strict=True)},
        cycles=latency * arch.clock_hz,
        latency_s=latency,
        energy_pj=energy,
        energy_by_component_pj={"board (TDP x time, upper bound)": energy},
        dram_bytes=hbm,
        dram_bytes_by_tensor={},
        buffer_words={},
        utilization=utilization,
        valid=~invalid,
        factors={
            kernel.name: {
                "occupancy": shaped(kernel.occupancy).astype(np.int64),
                "waves": shaped(kernel.waves).astype(np.int64),
            }
            for kernel in kernels
        },
        einsums=tuple(einsum_rows),
        kernels=tuple(
            {
                "kernel": kernel.name,
                "compute_cycles": shaped(kernel.compute_s * arch.clock_hz),
                "memory_cycles": shaped(kernel.memory_s * arch.clock_hz),
                "tiles": shaped(kernel.waves),
            }
            for kernel in kernels
        ),
        problems=problems,
    )


_ATTRS = ("br", "bc", "stages", "warps", "split")


def evaluate_gpu(
    problem: AttentionProblem | AttentionKernel | Cascade,
    arch: GpuArchitecture,
    mapping: GpuMapping,
    *,
    shape: MappingABC[str, int] | None = None,
    calibration: MappingABC[str, Calibration] | None = None,
    dtype: str = "bf16",
    density: float | None = None,
) -> Report:
    """`evaluate_gpu_batch` of one mapping, as a `Report` (one `per_einsum` row per kernel,
    naming the cascade's Einsums it runs when given a cascade).

    Example:
        >>> import einsim
        >>> rep = evaluate_gpu(einsim.attention("causal"), load_gpu_architecture("h100_sxm"),
        ...                    GpuMapping(), shape=dict(B=1, H=8, E=64, F=64, M=2048, P=2048))
        >>> rep.per_einsum.kernel.tolist(), rep.valid
        (['attention'], True)
    """
    batch = evaluate_gpu_batch(
        problem, arch, mapping, shape=shape, calibration=calibration, dtype=dtype, density=density
    )
    return batch.report(0)


_KERNEL_UNITS = {
    "select": "tensor+FP32",
    "attention": "tensor+SFU+FP32",
    "combine": "FP32",
    "qk": "tensor",
    "softmax": "SFU+FP32",
    "av": "tensor",
}


def _kernel_einsums(kernel: str, problem: AttentionKernel) -> str:
    """The cascade's Einsums a kernel runs: all of them fused; unfused, the scores (QK), the
    contraction with V (AV) and the softmax between them."""
    if kernel == "select":
        return ", ".join(problem.selection)
    names = tuple(e.output for e in problem.cascade.einsums if e.output not in problem.selection)
    if kernel == "combine":
        return ""
    if kernel == "attention":
        return ", ".join(names)
    if kernel == "qk":
        return problem.score
    if kernel == "av":
        return problem.value
    copies = {e.output for e in problem.cascade.einsums if _copies(problem.cascade, e)}
    rest = (n for n in names if n not in (problem.score, problem.value, *copies))
    return ", ".join(rest)
