"""The cost of a batch of GPU tilings (`evaluate_gpu_batch`, `evaluate_gpu`): the fused
FlashAttention-2 kernel, the split-KV combine, a selection's gate kernel, the unfused GEMMs
and softmax; per-SM time over pipes, waves of CTAs, and the roofline (the model is described
in the package docstring, `einsim.simulator.gpu`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field

import numpy as np

from einsim.einsum import (
    Cascade,
    Op,
    SpecError,
)
from einsim.einsum.ir import accesses

from ..report import BatchReport, Report, _Problem
from .calibration import Calibration, load_calibration
from .mapping import GPU_PARAMETERS, GpuMapping, KernelForm, _Rows, _rows
from .problem import (
    AttentionKernel,
    AttentionProblem,
    _copies,
    as_kernel,
    attention_kernel,
    extra_work,
)
from .registers import (
    SPILL_TOLERANCE_BYTES,
    _occupancy,
    _register_mask,
    fused_smem_bytes,
    kernel_registers,
    unfused_av_smem_bytes,
    unfused_qk_smem_bytes,
)
from .spec import GpuArchitecture
from .tiling import _kept_pairs, cta_tiles, list_schedule, score_occupancy

# Instruction counts of the FA2 inner loop per score element (not fitted): scale-and-
# subtract the max (1 FFMA), the row max (1), the row sum (1), the convert to 16 bits (1).
FP32_OPS_PER_SCORE = 4


# A partial tile adds the index compare and the select per score.
MASK_OPS_PER_SCORE = 2


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
    # The cascade's work besides the FA2 template (a bias, a gate, lowered operators),
    # spread evenly over the score's active tiles of one instance.
    active, _ = score_occupancy(problem, r.br, r.bc)
    x_mma, x_sfu, x_fp32 = (w / np.maximum(active, 1) for w in extra_work(problem))
    mma_tile, exp_tile = mma_tile + x_mma, exp_tile + x_sfu
    fp32_full, fp32_part = fp32_full + x_fp32, fp32_part + x_fp32
    # Extra inputs (a bias tile) stream in with the K/V tiles.
    x_load = problem.extra_elements * b / np.maximum(active, 1)
    # K/V written once and read by every warp, and Q's fragments reloaded per QK sweep
    smem_tile = ((r.warps + 1) * r.bc * (e * sweeps + f) + r.br * e * sweeps) * b
    load_tile = (r.bc * (e * sweeps + f) * b + x_load) / l2_per_sm
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
    # Heads with different masks (DuoAttention): each class's CTAs, in head order.
    classes = [(problem.head_class(i), n) for i, (_, n) in enumerate(problem.head_classes)]
    classes = classes or [(problem, problem.heads)]
    for (br, bc, split, occ), rows in groups.items():
        rows = np.asarray(rows)
        slots = arch.sms * max(occ, 1)
        spans = []
        for kernel, count in classes:
            full, part = cta_tiles(kernel, br, bc, split)
            ctas_per_head[rows] = full.size
            per_cta = (
                t_edge[rows, None]
                + full[None] * t_full[rows, None]
                + part[None] * t_part[rows, None]
            )
            spans.append((per_cta * max(occ, 1), count * problem.batch))
            full_tiles[rows] += float(full.sum()) * count * problem.batch
        waves[rows] = math.ceil(ctas_per_head[rows[0]] * heads / slots)
        if len(spans) == 1:
            makespan[rows] = list_schedule(spans[0][0], slots, spans[0][1])
        else:
            grid = np.concatenate([np.tile(d, (1, n)) for d, n in spans], axis=1)
            makespan[rows] = list_schedule(grid, slots)
    # Work: the score Einsum's active tiles (tile occupancy of the IR), each computed whole.
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
    hbm = hbm + partial_out + problem.batch * problem.extra_elements * b
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
    # The cascade's work besides the template (a bias, a gate, lowered operators) runs with
    # the softmax, reading the extra inputs.
    x_mma, x_sfu, x_fp32 = (problem.batch * w for w in extra_work(problem))
    hbm_sm += problem.batch * problem.extra_elements * b
    exps = 2.0 * kept * heads + x_sfu
    fp32 = 6.0 * heads * P * M + x_fp32
    c = cal["unfused_softmax"]
    compute = max(
        exps / arch.sfu_ops_per_s,
        fp32 / arch.fp32_ops_per_s,
        x_mma / arch.mma_flops_per_s(problem.dtype),
    )
    memory = hbm_sm / arch.hbm_bytes_per_s
    t = c.launch_s + max(compute * c.compute_scale, memory * c.memory_scale)
    ones = np.ones(r.n)
    softmax = _Kernel(
        "softmax",
        "unfused_softmax",
        t * ones,
        compute * ones,
        memory * ones,
        x_mma,
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
        >>> from einsim.simulator.gpu import Mask, load_gpu_architecture
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
                "lowered": _kernel_lowered(kernel.name, problem),
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
        factors={},  # loop factors of spatial mappings; a GPU's facts are in `kernels`
        einsums=tuple(einsum_rows),
        kernels=tuple(
            {
                "kernel": kernel.name,
                "compute_cycles": shaped(kernel.compute_s * arch.clock_hz),
                "memory_cycles": shaped(kernel.memory_s * arch.clock_hz),
                "tiles": shaped(kernel.waves),
                "occupancy_ctas_per_sm": shaped(kernel.occupancy).astype(np.int64),
                "waves": shaped(kernel.waves).astype(np.int64),
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
        >>> from einsim.simulator.gpu import load_gpu_architecture
        >>> rep = evaluate_gpu(einsim.attention("causal"), load_gpu_architecture("h100_sxm"),
        ...                    GpuMapping(), shape=dict(B=1, H=8, E=64, F=64, M=2048, P=2048))
        >>> rep.per_einsum.kernel.tolist(), rep.valid
        (['attention'], True)
    """
    batch = evaluate_gpu_batch(
        problem, arch, mapping, shape=shape, calibration=calibration, dtype=dtype, density=density
    )
    return batch.report(0)


def _kernel_lowered(kernel: str, problem: AttentionKernel) -> str:
    """The Einsums a kernel runs lowered into GPU instructions, with their operators
    ('AV: sigmoid'); the fused kernel and the unfused softmax run every such Einsum."""
    if kernel not in ("attention", "softmax"):
        return ""
    return "; ".join(f"{name}: {ops}" for name, ops in problem.lowered)


_KERNEL_UNITS = {
    "select": "tensor+FP32",
    "attention": "tensor+SFU+FP32",
    "combine": "FP32",
    "qk": "tensor",
    "softmax": "SFU+FP32",
    "av": "tensor",
}
#: Every kernel a GPU mapping may launch (the names of `BatchReport.kernels` rows).
GPU_KERNELS = tuple(_KERNEL_UNITS)


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
