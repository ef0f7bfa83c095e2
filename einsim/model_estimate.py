"""Whole-model estimates (`einsim.estimate`): every layer of a zoo model on one target.

`estimate(model, target, phase, seq_len, batch)` prices, for every layer of a
`einsim.workloads.MODELS` model:

* attention: the layer's cascade (`workload`, the model's own variant in the asked form, or
  a substituted variant) on the target. Spatial arrays: the fastest valid bundled mapping
  (`simulator/mappings/`) and, where a mask keeps under `SPARSE_SHARE` of the iteration
  space (a window; the bundled mappings still visit its empty tiles) or that mapping keeps
  every unit and DRAM under `IDLE_SHARE` busy (decode on an array tiled for prefill),
  the mapper's greedy search (budget `SEARCH_BUDGET`), whichever is faster; the mapper
  alone when no bundled mapping fits; GPUs: the best of a small FlashAttention tiling
  grid (`GPU_TILINGS`) costed in one `evaluate_gpu_batch` call. A mapping may be given
  instead (`mapping=`), or `mapping="search"` asks the mapper on either target.
* every matrix product: Q, K, V (D x H·E, D x G·E), O (H·E x D), the FFN (gate, up, down
  for a gated FFN; up, down otherwise), a MoE's router and experts (tokens x top-k routed,
  spread evenly over the experts they reach), and the LM head. Spatial arrays: the `gemm`
  cascade with the bundled `matmul_2d` mapping (as `simulator.spatial.reproduce.layer_matmuls`);
  GPUs: a roofline, max(2·M·K·N / tensor-core peak, operand bytes / HBM bandwidth).
* elementwise work (normalisations, the two residual adds, the FFN activation and its gate
  multiply, the embedding read): counted per element by operator (`_ELEMENTWISE_OPS`) and
  priced as a stream: max(operations on the 1D unit (spatial) or CUDA cores / SFU (GPU),
  the tensor read and written once through DRAM/HBM). Unfused, so an upper bound on the
  traffic a fused epilogue would move; rotary embeddings and sampling are not priced.

Prefill prices `seq_len` tokens per sequence and the LM head on the last token only (what
the first output token needs): its latency is the time to first token (TTFT). Decode
prices one new token per sequence after a KV cache of `seq_len`: its latency is the time
per output token (TPOT). Layers run one after another, operators within a layer too.

Identical layers cost the same: every operator's cost is cached by (cascade or product,
shape, target, mapping), so an 80-layer model maps its attention once.

(The module is not named `estimate`: importing it would replace the function
`einsim.estimate` with the module.)

Every spatial-vs-GPU difference lives in the two target classes below, chosen in `_target`
by the registry's dispatcher (`einsim.target_of`); no architecture type is tested here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from einsim.einsum import Cascade, EinsimError, Op, SpecError, iteration_points
from einsim.einsum.ir import rank_of
from einsim.simulator import (
    Architecture,
    GpuArchitecture,
    GpuMapping,
    Mapping,
    evaluate,
    evaluate_gpu_batch,
    load_architecture,
    load_mapping,
    split_shape,
)
from einsim.simulator.gpu import GPU_PARAMETERS, KernelForm, parse_gpu_mapping
from einsim.simulator.targets import target_of
from einsim.workloads import ATTENTION, MODELS, Model, attention, cascade, parameters, workload

PHASES = ("prefill", "decode")
FORMS = ("stable_3pass", "online_2pass", "fusemax_1pass")
DEFAULT_FORM = "fusemax_1pass"
#: Candidates the mapper costs when no bundled mapping fits a spatial attention layer, or
#: beside the bundled mappings when a mask keeps under `SPARSE_SHARE` of the space or the
#: best bundled mapping keeps every unit and DRAM under `IDLE_SHARE` busy (flat_cloud's
#: bundled mapping on decode's one query is at 3%, FuseMax's GQA mapping at 27%: the
#: search takes Llama-3-8B's decode from 44.4 to 37.5 ms, the DRAM bound, for 1-2 s of CPU
#: per layer kind).
SEARCH_BUDGET = 100
SPARSE_SHARE = 0.5
IDLE_SHARE = 0.3
#: The FlashAttention-2 tilings tried on a GPU (Dao 2023, Sec. 3.3 uses Br, Bc in {64, 128}
#: with 4 or 8 warps); split-KV (flash-decoding) for decode's single query, up to 128
#: splits: a long context (32K+) on few K/V heads (DuoAttention's retrieval groups) needs
#: more CTAs than 32 splits give to fill the SMs.
GPU_TILINGS = {
    "prefill": {
        "block_q": (64, 128, 64, 128, 128),
        "block_kv": (64, 64, 128, 32, 128),
        "stages": (2, 2, 2, 2, 2),
        "warps": (4, 4, 4, 4, 8),
        "split_kv": (1, 1, 1, 1, 1),
    },
    "decode": {
        "block_q": (16, 16, 16, 16, 64, 16, 16),
        "block_kv": (64, 64, 64, 128, 64, 64, 64),
        "stages": (2, 2, 2, 2, 2, 2, 2),
        "warps": (1, 1, 4, 4, 4, 1, 1),
        "split_kv": (1, 8, 16, 32, 1, 64, 128),
    },
}
#: Operations per element of the elementwise work, by operator (the 1D unit's op costs on a
#: spatial array; CUDA-core lane-ops, exp on the SFU, on a GPU). rsqrt per row is omitted.
_ELEMENTWISE_OPS: dict[str, dict[Op, int]] = {
    # LayerNorm: sum (add), subtract the mean, square-and-sum (mul, add), scale by
    # 1/sigma (mul), gamma (mul), beta (add).
    "layernorm": {Op.ADD: 3, Op.SUB: 1, Op.MUL: 3},
    # RMSNorm (Zhang & Sennrich 2019): square-and-sum, scale by 1/rms, gamma.
    "rmsnorm": {Op.ADD: 1, Op.MUL: 3},
    "residual": {Op.ADD: 1},
    # SiLU x / (1 + exp(-x)): negate (sub), exp, add, divide.
    "silu": {Op.SUB: 1, Op.EXP: 1, Op.ADD: 1, Op.DIV: 1},
    # GELU, tanh form: x^3 (2 mul), mul-add, tanh as 2 / (1 + exp(-2u)) - 1 (mul, exp, add,
    # div, sub), 0.5·x·(1 + t) (add, 2 mul).
    "gelu": {Op.MUL: 6, Op.ADD: 3, Op.EXP: 1, Op.DIV: 1, Op.SUB: 1},
    "relu": {Op.MAX: 1},
    "gate": {Op.MUL: 1},
    # Router softmax over the experts: max, subtract, exp, sum, divide.
    "router": {Op.MAX: 1, Op.SUB: 1, Op.EXP: 1, Op.ADD: 1, Op.DIV: 1},
}
BREAKDOWN_COLUMNS = (
    "layer",
    "block",
    "operator",
    "unit",
    "latency_s",
    "energy_pj",
    "dram_bytes",
    "flops",
    "mapping",
    "valid",
    "reason",
)


# --------------------------------------------------------------------------- costs


@dataclass(frozen=True, slots=True)
class OperatorCost:
    """One operator of one layer on one target. energy_pj is NaN where not modelled."""

    latency_s: float
    energy_pj: float
    dram_bytes: float
    flops: float
    unit: str
    mapping: str = ""
    valid: bool = True
    reason: str = ""


def _invalid(unit: str, reason: str) -> OperatorCost:
    return OperatorCost(math.nan, math.nan, math.nan, math.nan, unit, "", False, reason)


@functools.cache
def _gemm() -> Cascade:
    return cascade("gemm")


@functools.cache
def _bundled_mappings() -> tuple[Mapping, ...]:
    folder = resources.files("einsim.simulator").joinpath("mappings")
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    return tuple(load_mapping(name) for name in names)


@dataclass(frozen=True, slots=True)
class _SpatialTarget:
    """A spatial array (`Architecture`): the mapper's model for attention and products."""

    arch: Architecture
    energy_modelled = True

    @property
    def name(self) -> str:
        return self.arch.name

    @property
    def word_bytes(self) -> int:
        return int(self.arch.word_bytes)

    @property
    def on_chip_bytes(self) -> float:
        return float(sum(lv.capacity_bytes or 0 for lv in self.arch.levels[1:]))

    @property
    def memory_bytes(self) -> float | None:
        """Off-chip capacity: spatial specs do not bound DRAM (None)."""
        return self.arch.levels[0].capacity_bytes

    def attention(self, cascade_: Cascade, shape, mapping) -> OperatorCost:
        if isinstance(mapping, str) and mapping == "search":
            return self._search(cascade_, shape)
        if isinstance(mapping, str) and mapping in ("bundled", "best"):
            return self._best(cascade_, shape, "2d+1d", search=mapping)
        if mapping is not None:
            spec = load_mapping(mapping) if isinstance(mapping, str) else mapping
            return self._report(evaluate(cascade_, self.arch, spec, dict(shape)), spec.name)
        return self._best(cascade_, shape, "2d+1d")

    def _best(self, cascade_: Cascade, shape, unit: str, search: str = "auto") -> OperatorCost:
        """The fastest valid bundled mapping of the cascade, else the greedy mapper; with
        `search` "best", or "auto" and a sparse mask or an idle mapping, the faster of the
        two; with "bundled", the bundled one."""
        best = None
        outputs = {e.output for e in cascade_.einsums}
        for spec in _bundled_mappings():
            if not {e for k in spec.kernels for e in k.einsums} <= outputs:
                continue  # a mapping of another cascade: its Einsums are not this one's
            try:
                report = evaluate(cascade_, self.arch, spec, dict(shape))
            except EinsimError:  # a mapping of another cascade (its Einsums do not bind)
                continue
            if report.valid and (best is None or report.latency_s < best[0].latency_s):
                best = (report, spec.name)
        if best is None:
            return self._search(cascade_, shape, unit)
        bundled = self._report(*best, unit)
        if search == "bundled":
            return bundled
        # Ask the mapper too where the bundled mapping is likely far from the best: a
        # sparse mask (a window: the bundled mappings visit its empty tiles, the mapper's
        # space skips them), or a mapping that keeps every unit and DRAM mostly idle
        # (decode's single query on an array tiled for prefill).
        sparse = _kept_share(cascade_, shape) < SPARSE_SHARE
        if search == "auto" and not sparse and self._busy(best[0]) >= IDLE_SHARE:
            return bundled
        searched = self._search(cascade_, shape, unit)
        return searched if searched.latency_s < bundled.latency_s else bundled

    def _busy(self, report) -> float:
        """The busiest of the units and DRAM: max(utilization, DRAM time / latency)."""
        dram = self.arch.levels[0]
        dram_s = report.dram_bytes / (dram.bandwidth_bytes_per_cycle * self.arch.clock_hz)
        return max([*report.utilization.values(), dram_s / report.latency_s])

    def _search(self, cascade_: Cascade, shape, unit: str = "2d+1d") -> OperatorCost:
        from einsim.mapper import search

        found = search(
            cascade_, self.arch, dict(shape), strategy="greedy", budget=SEARCH_BUDGET,
            progress=False,
        )  # fmt: skip
        return self._report(found.report, f"greedy search ({found.evaluated})", unit)

    def _report(self, report, mapping_name: str, unit: str = "2d+1d") -> OperatorCost:
        if not report.valid:
            return _invalid(unit, "; ".join(report.reasons))
        flops = 2.0 * float(report.per_einsum.ops.sum())
        return OperatorCost(
            report.latency_s, report.energy_pj, report.dram_bytes, flops, unit, mapping_name
        )

    def matmul(self, tokens: int, k: int, n: int) -> OperatorCost:
        """The `gemm` cascade (Z[m,n] = A[k,m]·B[k,n], m = tokens) with the fastest valid
        bundled mapping (`matmul_2d` where the weights' K fits the buffer, else the
        weight-stationary `gemm_ws` or output-stationary `gemm_os`)."""
        return self._best(_gemm(), (("K", k), ("M", tokens), ("N", n)), "2d")

    def stream(self, ops: MappingABC[Op, float], moved_bytes: float) -> OperatorCost:
        """Elementwise work on the 1D unit (the unit with one dimension), its tensors read
        and written once through DRAM: max(cycles / clock, bytes / DRAM bandwidth)."""
        units = [u for u in self.arch.units if len(u.dims) == 1] or list(self.arch.units)
        unit = min(units, key=lambda u: u.lanes)
        cycles = energy = 0.0
        for op, count in ops.items():
            try:
                cost = unit.cost(op)
            except EinsimError as error:
                return _invalid(unit.name, str(error).splitlines()[0])
            cycles += count * cost.cycles / unit.lanes
            energy += count * cost.energy_pj
        dram = self.arch.levels[0]
        memory_s = moved_bytes / (dram.bandwidth_bytes_per_cycle * self.arch.clock_hz)
        energy += moved_bytes / 2 * (dram.read_pj_per_byte + dram.write_pj_per_byte)
        latency = max(cycles / self.arch.clock_hz, memory_s)
        return OperatorCost(latency, energy, moved_bytes, float(sum(ops.values())), unit.name)


def _kept_share(cascade_: Cascade, shape) -> float:
    """The share of its iteration space that the largest filtered Einsum computes (1.0
    without filters): a causal prefill keeps ~1/2, a 4K window over 32K keys 1/8."""
    filtered = [e for e in cascade_.einsums if e.where is not None]
    if not filtered:
        return 1.0
    sizes = split_shape(cascade_, None, dict(shape)).sizes
    best = (0.0, 1.0)
    for einsum in filtered:
        ranks = {rank_of(v) for v in einsum.iter_vars}
        dense = 1
        for part in cascade_.partitions:  # a pair spans its rank once (partial tile exact)
            if part.upper in ranks and part.lower in ranks:
                dense *= sizes[part.rank]
                ranks -= {part.upper, part.lower}
        for rank in ranks:
            dense *= sizes[rank]
        if dense > best[0]:
            best = (dense, iteration_points(cascade_, einsum, sizes) / dense)
    return best[1]


@dataclass(frozen=True, slots=True)
class _GpuTarget:
    """A GPU (`GpuArchitecture`): the GPU attention model, rooflines elsewhere. Uncalibrated
    (every calibration constant 1.0); energy not modelled."""

    arch: GpuArchitecture
    dtype: str = "bf16"
    energy_modelled = False

    @property
    def name(self) -> str:
        return self.arch.name

    @property
    def word_bytes(self) -> int:
        return 2 if self.dtype in ("fp16", "bf16") else 4

    @property
    def on_chip_bytes(self) -> float:
        return float(self.arch.l2_bytes + self.arch.smem_per_sm_bytes * self.arch.sms)

    @property
    def memory_bytes(self) -> float | None:
        return float(self.arch.hbm_bytes)

    def attention(self, cascade_: Cascade, shape, mapping) -> OperatorCost:
        phase = "decode" if dict(shape).get("P") == 1 else "prefill"
        if isinstance(mapping, str) and mapping == "search":
            from einsim.mapper import search

            found = search(cascade_, self.arch, dict(shape), budget=SEARCH_BUDGET)
            return self._cost(found.report, found.mapping.name)
        if mapping is not None and mapping not in ("bundled", "best"):
            spec = parse_gpu_mapping(mapping) if isinstance(mapping, str) else mapping
            kernel, params = spec.kernel, {k: np.array([v]) for k, v in spec.params().items()}
        else:
            kernel = KernelForm.FUSED
            params = {k: np.array(v) for k, v in GPU_TILINGS[phase].items()}
        batch = evaluate_gpu_batch(
            cascade_, self.arch, GpuMapping(kernel), params, shape=dict(shape), dtype=self.dtype
        )
        latency = np.where(batch.valid, batch.latency_s, np.inf)
        i = int(np.argmin(latency))  # the first of equals: grid order
        chosen = GpuMapping(kernel, **{k: int(params[k][i]) for k in GPU_PARAMETERS})
        return self._cost(batch.report(i), chosen.name)

    def _cost(self, report, mapping_name: str) -> OperatorCost:
        if not report.valid:
            return _invalid("tensor+SFU", "; ".join(report.reasons))
        flops = 2.0 * float(report.per_einsum.ops.sum())
        return OperatorCost(
            report.latency_s, math.nan, report.dram_bytes, flops, "tensor+SFU", mapping_name
        )

    def matmul(self, tokens: int, k: int, n: int) -> OperatorCost:
        """Roofline: max(2·M·K·N / tensor-core peak, (M·K + K·N + M·N) words / HBM bw)."""
        flops = 2.0 * tokens * k * n
        moved = float(tokens * k + k * n + tokens * n) * self.word_bytes
        latency = max(
            flops / self.arch.mma_flops_per_s(self.dtype), moved / self.arch.hbm_bytes_per_s
        )
        return OperatorCost(latency, math.nan, moved, flops, "tensor", "roofline")

    def stream(self, ops: MappingABC[Op, float], moved_bytes: float) -> OperatorCost:
        """max(lane-ops on the CUDA cores + exps on the SFU, bytes / HBM bandwidth)."""
        exps = float(ops.get(Op.EXP, 0))
        lane_ops = float(sum(ops.values())) - exps
        compute_s = lane_ops / self.arch.fp32_ops_per_s + exps / self.arch.sfu_ops_per_s
        latency = max(compute_s, moved_bytes / self.arch.hbm_bytes_per_s)
        return OperatorCost(latency, math.nan, moved_bytes, lane_ops + exps, "cuda+SFU")


_KINDS = {"spatial": _SpatialTarget, "gpu": _GpuTarget}


def _target(target) -> _SpatialTarget | _GpuTarget:
    """A preset name, a spec path or a loaded architecture, as this module's view of its
    target kind (`einsim.target_of`, the registry's one dispatcher)."""
    arch = load_architecture(target) if isinstance(target, str) else target
    kind = target_of(arch).kind
    if kind not in _KINDS:
        raise SpecError(f"estimate: target kind {kind!r} has no whole-model costs yet")
    return _KINDS[kind](arch)


# The cache: identical layers (same cascade, shape, target, mapping) cost once.
@functools.lru_cache(maxsize=4096)
def _attention_cost(target, cascade_: Cascade, shape: tuple, mapping) -> OperatorCost:
    return target.attention(cascade_, shape, mapping)


@functools.lru_cache(maxsize=4096)
def _matmul_cost(target, tokens: int, k: int, n: int) -> OperatorCost:
    return target.matmul(tokens, k, n)


def _stream_cost(target, ops: dict[Op, float], moved_bytes: float) -> OperatorCost:
    return target.stream(ops, moved_bytes)


def cache_clear() -> None:
    """Forget every cached operator cost (a changed spec file with an unchanged name)."""
    _attention_cost.cache_clear()
    _matmul_cost.cache_clear()


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelEstimate:
    """A whole model on one target in one phase. Units in the names.

    Attributes:
        model, target, phase, seq_len, batch: what was estimated (decode: `seq_len` is the
            context, the KV cache length). attention: the form or substituted variant.
        latency_s: the phase's latency: TTFT for prefill, TPOT for decode.
        ttft_s, tpot_s: latency_s in the phase that defines it, NaN in the other.
        tokens_per_s: tokens processed per second (prefill: batch·seq_len / TTFT; decode:
            batch / TPOT, the generation rate).
        energy_pj, energy_per_token_pj: None where the target models no energy (GPUs).
        dram_bytes: DRAM/HBM bytes moved by the phase.
        weight_bytes, kv_cache_bytes: parameters and the KV cache at seq_len (windowed
            layers keep W keys), in the target's word size.
        on_chip_bytes: the target's on-chip storage; memory_bytes: its DRAM/HBM capacity
            (None: not bounded by the spec). weights_fit_on_chip, fits_memory: whether
            weights (+ KV cache) fit them (fits_memory None when memory_bytes is None).
        valid: every operator was costed; reasons: the first reason of each failure.
        notes: what the estimate assumes on this target.
        breakdown: one row per (layer, operator): `BREAKDOWN_COLUMNS`; its latency_s,
            energy_pj and dram_bytes sum to the totals.
    """

    model: str
    target: str
    phase: str
    seq_len: int
    batch: int
    attention: str
    latency_s: float
    ttft_s: float
    tpot_s: float
    tokens_per_s: float
    energy_pj: float | None
    energy_per_token_pj: float | None
    dram_bytes: float
    weight_bytes: float
    kv_cache_bytes: float
    on_chip_bytes: float
    memory_bytes: float | None
    weights_fit_on_chip: bool
    fits_memory: bool | None
    valid: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    breakdown: pd.DataFrame = field(compare=False, repr=False)

    def summary(self) -> dict[str, object]:
        """The scalar fields as one flat dict (a row of `compare`'s table)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "breakdown"}


@dataclass(frozen=True, slots=True)
class HeadSplit:
    """A per-head split of a layer's attention (DuoAttention, RazorAttention): the first
    `retrieval_groups` K/V groups keep every key, the others `sinks` + a `window` of recent
    keys. Read from the model's attention parameters RP (retrieval heads, percent), S and W,
    rounded up to whole K/V groups: a GQA cache keeps or drops a K/V head for every query
    head that shares it (Llama-3-8B at RP = 50: 4 of 8 groups, 16 of 32 query heads)."""

    retrieval_groups: int
    groups: int
    sinks: int
    window: int

    @property
    def streaming_keys(self) -> int:
        return self.sinks + self.window


def head_split(spec: Model, layer: int = 0) -> HeadSplit | None:
    """The layer's `HeadSplit`, or None when its attention parameters name no retrieval share.

    Example:
        >>> head_split(MODELS["llama3_8b_duo"])
        HeadSplit(retrieval_groups=4, groups=8, sinks=64, window=256)
    """
    params = spec.attention_params(layer)
    if "RP" not in params:
        return None
    share = int(params["RP"])
    groups = -(-share * spec.G // 100)  # ceil(RP% of the K/V groups)
    return HeadSplit(groups, spec.G, int(params.get("S", 0)), int(params.get("W", 0)))


def _attention_parts(spec: Model, phase: str, seq_len: int, batch: int, attention_, layer: int):
    """(operator, cascade, shape) of one layer's attention: ("attention", the layer's cascade)
    or, for the decode of a model's own head-split attention (`head_split`), the retrieval
    groups' full decode ("attention") and the streaming groups' decode over their S + W
    kept keys ("attention_streaming", a window of S + W: the same keys read and scored,
    sinks counted as recent keys; RazorAttention's one compensation key is left out)."""
    split = head_split(spec, layer) if attention_ is None or attention_ in FORMS else None
    if phase != "decode" or split is None:
        return (("attention", *_attention_layer(spec, phase, seq_len, batch, attention_, layer)),)
    form = attention_ or DEFAULT_FORM
    per_group = spec.H // spec.G
    parts = []
    streaming = split.groups - split.retrieval_groups
    for operator, groups, window in (
        ("attention", split.retrieval_groups, 0),
        ("attention_streaming", streaming, split.streaming_keys),
    ):
        if not groups:
            continue
        built = attention("decode", form=form, W=window, grouped=True)
        shape = {"E": spec.E, "F": spec.E, "M": seq_len, "P": 1, "B": batch}
        shape |= {"H": groups * per_group, "G": groups}
        parts.append((operator, built, tuple(sorted(shape.items()))))
    return tuple(parts)


@functools.lru_cache(maxsize=1024)
def _attention_layer(spec: Model, phase: str, seq_len: int, batch: int, attention_, layer: int):
    """The cascade and shape (cascade ranks + outer B, H) of one layer's attention."""
    if attention_ is None or attention_ in FORMS:
        w = workload(spec, attention_ or DEFAULT_FORM, seq_len, batch, phase, layer=layer)
        return w.cascade, tuple(sorted((w.sizes | dict(w.outer)).items()))
    if isinstance(attention_, Cascade):
        if phase == "decode":  # a substituted prefill cascade: decode is the model's own
            return _attention_layer(spec, phase, seq_len, batch, None, layer)
        built = attention_
    elif attention_ in ATTENTION:
        own, extra = spec.attention, _variant_params(attention_)
        if own in ATTENTION and set(extra) <= set(parameters(own)):
            # the model's own variant takes the substitute's parameters (a window on GQA):
            # apply them to it, so grouped K/V stay grouped
            params = spec.attention_params(layer) | extra
            model = dataclasses.replace(spec, params=tuple(params.items()), layer_params=())
            w = workload(model, DEFAULT_FORM, seq_len, batch, phase)
            return w.cascade, tuple(sorted((w.sizes | dict(w.outer)).items()))
        if phase == "decode":
            built = attention("decode", form=DEFAULT_FORM, W=_window(attention(attention_)))
        else:
            built = attention(attention_, form=DEFAULT_FORM)
    else:
        raise SpecError(
            f"estimate: attention {attention_!r} is neither a form ({', '.join(FORMS)}) nor a "
            f"registered variant ({', '.join(ATTENTION)})"
        )
    shape = {"E": spec.E, "F": spec.E, "M": seq_len, "P": 1 if phase == "decode" else seq_len}
    outer = {"B": batch}
    if "H" in built.ranks:
        shape["H"] = spec.H
        if "G" in built.ranks:
            shape["G"] = spec.G
    else:
        outer["H"] = spec.H
    return built, tuple(sorted((shape | outer).items()))


def _variant_params(name: str) -> dict[str, object]:
    """A registered variant's own parameters with their defaults (not its form or tile)."""
    return {k: v for k, v in parameters(name).items() if k not in ("form", "M0")}


def _window(built: Cascade) -> int:
    """A cascade's window size W (0: none), from its declared sizes."""
    return int(dict(built.default_sizes).get("W", 0))


def _layer_window(spec: Model, layer: int, attention_) -> int:
    if attention_ is None or attention_ in FORMS:
        return int(spec.attention_params(layer).get("W", 0) or 0)
    if isinstance(attention_, Cascade):
        return _window(attention_)
    return _window(attention(attention_))


def _matmuls(spec: Model, tokens: int) -> list[tuple[str, int, int, int, int]]:
    """(operator, tokens, K, N, copies) of one layer's products; MoE experts: tokens x top-k
    spread evenly over the experts they reach (min(experts, tokens x top-k))."""
    he, ge = spec.H * spec.E, spec.G * spec.E
    rows = [
        ("Q", tokens, spec.D, he, 1),
        ("K", tokens, spec.D, ge, 1),
        ("V", tokens, spec.D, ge, 1),
        ("O", tokens, he, spec.D, 1),
    ]
    routed = tokens * spec.experts_per_token
    active = min(spec.experts, routed)
    per_expert = math.ceil(routed / active)
    if spec.experts > 1:
        rows.append(("router", tokens, spec.D, spec.experts, 1))
    if spec.gated_ffn:
        rows.append(("FFN_gate", per_expert, spec.D, spec.S, active))
    rows += [("FFN_up", per_expert, spec.D, spec.S, active)]
    rows += [("FFN_down", per_expert, spec.S, spec.D, active)]
    return rows


def _elementwise(spec: Model, tokens: int, word: int) -> list[tuple[str, dict[Op, float], float]]:
    """(operator, ops by Op, bytes read and written) of one layer's elementwise work."""
    td = tokens * spec.D
    ffn = tokens * spec.S * spec.experts_per_token
    norm = {op: n * td * spec.norms_per_layer for op, n in _ELEMENTWISE_OPS[spec.norm].items()}
    act = dict(_ELEMENTWISE_OPS[spec.activation])
    if spec.gated_ffn:
        act = {op: act.get(op, 0) + _ELEMENTWISE_OPS["gate"].get(op, 0) for op in {*act, Op.MUL}}
    rows = [
        ("norm", norm, 2.0 * td * word * spec.norms_per_layer),
        ("residual", {Op.ADD: 2.0 * td}, 2 * 3.0 * td * word),
        (
            "activation",
            {op: n * ffn for op, n in act.items()},
            (3 if spec.gated_ffn else 2) * ffn * word,
        ),
    ]
    if spec.experts > 1:
        router = {op: n * tokens * spec.experts for op, n in _ELEMENTWISE_OPS["router"].items()}
        rows.append(("router_softmax", router, 2.0 * tokens * spec.experts * word))
    return rows


def estimate(
    model: str | Model,
    target: str | Architecture | GpuArchitecture,
    phase: str = "prefill",
    seq_len: int = 4096,
    batch: int | None = None,
    attention: str | Cascade | None = None,
    mapping: str | Mapping | GpuMapping | None = None,
) -> ModelEstimate:
    """Estimate a whole model on one target in one phase.

    Args:
        model: a `MODELS` key or a `Model`.
        target: a preset (fusemax_cloud, flat_cloud, h100_sxm, a100_sxm, h200), a spec
            path, or a loaded architecture.
        phase: "prefill" (seq_len tokens per sequence; latency = TTFT) or "decode" (one
            token after a KV cache of seq_len; latency = TPOT).
        seq_len: tokens (prefill) or the context (decode).
        batch: sequences; the model's default when None.
        attention: None (the model's own attention, form fusemax_1pass), a form
            (stable_3pass, online_2pass, fusemax_1pass: the model's attention in it), a
            registered variant substituted for every layer's attention (its default
            parameters, form fusemax_1pass: applied to the model's own variant where that
            variant takes them all, as `sliding_window`'s W and causal on a GQA model;
            otherwise the variant itself, per head), or a Cascade (prefill only).
        mapping: for every layer's attention: None (spatial: the fastest valid bundled
            mapping, and where a mask is sparse or that mapping mostly idle (module
            docstring) the mapper's greedy search too, whichever is faster; GPU: the best of
            `GPU_TILINGS`), "bundled" (spatial: bundled mappings only, the mapper only
            when none fits: faster), "best" (spatial: the faster of the bundled mappings
            and the mapper, everywhere), "search" (the mapper on either target), a spatial
            mapping (name or `Mapping`) or a GPU tiling ("fused:Br=128,Bc=64" or
            `GpuMapping`).

    Returns:
        A `ModelEstimate`; operators that could not be costed are rows with valid False
        and their reason (the totals then cover the costed ones, `valid` is False).

    Raises:
        SpecError: an unknown model, target, phase or attention; a decode of an encoder.

    Example:
        >>> e = estimate("llama3_8b", "h100_sxm", "decode", seq_len=8192, batch=1)
        >>> e.energy_pj is None, round(e.weight_bytes / 1e9, 1)  # bf16 weights, GB
        (True, 16.1)
    """
    if phase not in PHASES:
        raise SpecError(f"estimate: phase must be one of {', '.join(PHASES)}, got {phase!r}")
    spec = model if isinstance(model, Model) else MODELS.get(model)
    if spec is None:
        raise SpecError(f"estimate: unknown model {model!r}; known: {', '.join(MODELS)}")
    batch = spec.batch if batch is None else batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SpecError(f"estimate: batch must be a positive integer, got {batch!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise SpecError(f"estimate: seq_len must be a positive integer, got {seq_len!r}")
    tgt = _target(target)
    word = tgt.word_bytes
    tokens = batch * (seq_len if phase == "prefill" else 1)
    rows: list[dict] = []

    def add(layer: int, block: str, operator: str, cost: OperatorCost, copies: int = 1) -> None:
        rows.append(
            {
                "layer": layer,
                "block": block,
                "operator": operator,
                "unit": cost.unit,
                "latency_s": cost.latency_s * copies,
                "energy_pj": cost.energy_pj * copies,
                "dram_bytes": cost.dram_bytes * copies,
                "flops": cost.flops * copies,
                "mapping": cost.mapping,
                "valid": cost.valid,
                "reason": cost.reason,
            }
        )

    embed = {Op.ADD: 0.0}
    add(-1, "embed", "embedding", _stream_cost(tgt, embed, float(tokens * spec.D * word)))
    mapping_key = mapping
    first: dict[tuple, int] = {}  # layers with equal attention parameters build one cascade
    for layer in range(spec.layers):
        kind = tuple(sorted(spec.attention_params(layer).items()))
        same = first.setdefault(kind, layer)
        for operator, cascade_, shape in _attention_parts(
            spec, phase, seq_len, batch, attention, same
        ):
            try:
                cost = _attention_cost(tgt, cascade_, shape, mapping_key)
            except EinsimError as error:
                cost = _invalid("attention", str(error).splitlines()[0])
            add(layer, "layer", operator, cost)
        for name, m, k, n, copies in _matmuls(spec, tokens):
            add(layer, "layer", name, _matmul_cost(tgt, m, k, n), copies)
        for name, ops, moved in _elementwise(spec, tokens, word):
            add(layer, "layer", name, _stream_cost(tgt, ops, moved))
    head_tokens = batch  # the first output token needs the last position only
    if spec.vocab:
        final = {op: n * head_tokens * spec.D for op, n in _ELEMENTWISE_OPS[spec.norm].items()}
        add(-1, "head", "final_norm", _stream_cost(tgt, final, 2.0 * head_tokens * spec.D * word))
        add(-1, "head", "lm_head", _matmul_cost(tgt, head_tokens, spec.D, spec.vocab))
    frame = pd.DataFrame(rows, columns=list(BREAKDOWN_COLUMNS))
    valid = bool(frame.valid.all())
    reasons = tuple(dict.fromkeys(frame.reason[~frame.valid]))
    costed = frame[frame.valid]
    latency = float(costed.latency_s.sum())
    dram = float(costed.dram_bytes.sum())
    energy = float(costed.energy_pj.sum()) if tgt.energy_modelled else None
    produced = tokens if phase == "prefill" else batch
    weights = _weight_bytes(spec) * word
    kv = _kv_bytes(spec, seq_len, batch, attention) * word
    memory = tgt.memory_bytes
    notes = [
        "elementwise work priced as unfused streams through DRAM/HBM (upper bound)",
        "prefill LM head on the last token of each sequence",
    ]
    if not tgt.energy_modelled:
        notes.insert(
            0, "GPU: uncalibrated model; matrix products as rooflines; energy not modelled"
        )
    return ModelEstimate(
        model=spec.name,
        target=tgt.name,
        phase=phase,
        seq_len=seq_len,
        batch=batch,
        attention=_attention_name(attention),
        latency_s=latency,
        ttft_s=latency if phase == "prefill" else math.nan,
        tpot_s=latency if phase == "decode" else math.nan,
        tokens_per_s=produced / latency if latency > 0 else math.nan,
        energy_pj=energy,
        energy_per_token_pj=None if energy is None else energy / produced,
        dram_bytes=dram,
        weight_bytes=float(weights),
        kv_cache_bytes=float(kv),
        on_chip_bytes=tgt.on_chip_bytes,
        memory_bytes=memory,
        weights_fit_on_chip=weights <= tgt.on_chip_bytes,
        fits_memory=None if memory is None else weights + kv <= memory,
        valid=valid,
        reasons=reasons,
        notes=tuple(notes),
        breakdown=frame,
    )


def _attention_name(attention_) -> str:
    if attention_ is None:
        return DEFAULT_FORM
    if isinstance(attention_, Cascade):
        return attention_.name or "cascade"
    return str(attention_)


def _weight_bytes(spec: Model) -> int:
    """Parameters (words): per layer Q, K, V, O, FFN (x experts), router, norms; embedding
    and LM head (counted separately even when tied)."""
    he, ge = spec.H * spec.E, spec.G * spec.E
    ffn = (3 if spec.gated_ffn else 2) * spec.D * spec.S * spec.experts
    router = spec.D * spec.experts if spec.experts > 1 else 0
    layer = 2 * spec.D * he + 2 * spec.D * ge + ffn + router + spec.norms_per_layer * spec.D
    return spec.layers * layer + 2 * spec.vocab * spec.D


def _kv_bytes(spec: Model, seq_len: int, batch: int, attention_) -> int:
    """KV cache (words): 2·G·E per cached key per layer; a windowed layer keeps W keys; a
    head-split layer (`head_split`) keeps every key in its retrieval groups, S + W in the
    others."""
    total = 0
    for layer in range(spec.layers):
        split = head_split(spec, layer) if attention_ is None or attention_ in FORMS else None
        if split is not None:  # retrieval groups keep every key, the others S + W
            kept = min(seq_len, split.streaming_keys)
            groups_keys = split.retrieval_groups * seq_len
            groups_keys += (split.groups - split.retrieval_groups) * kept
            total += 2 * spec.E * groups_keys * batch
            continue
        window = _layer_window(spec, layer, attention_)
        keys = min(seq_len, window) if window else seq_len
        total += 2 * spec.G * spec.E * keys * batch
    return total


# --------------------------------------------------------------------------- head-to-head

COMPARE_COLUMNS = (
    "model",
    "target",
    "attention",
    "phase",
    "seq_len",
    "batch",
    "latency_s",
    "speedup",
    "tokens_per_s",
    "energy_per_token_pj",
    "dram_bytes",
    "weight_bytes",
    "kv_cache_bytes",
    "weights_fit_on_chip",
    "fits_memory",
    "valid",
    "reason",
)


def compare(
    model: str | Model,
    targets,
    attentions=(None,),
    seq_lens=(4096,),
    phases=PHASES,
    batch: int | None = None,
    baseline: str | None = None,
    mapping: str | None = None,
) -> pd.DataFrame:
    """The matrix of `estimate`s: every target x attention x phase x sequence length.

    Args:
        targets: presets or architectures; baseline: the target the speedups are against
            (a name among `targets`; default the first).
        attentions, seq_lens, phases, batch, mapping: as `estimate` takes them, one
            estimate per combination (an encoder skips decode).

    Returns:
        One row per estimate (`COMPARE_COLUMNS`): speedup = the baseline's latency / this
        latency at the same attention, phase and seq_len (the baseline's rows are 1.0);
        energy_per_token_pj is NaN where the target models no energy; reason: the first
        reason an operator could not be costed.

    Example:
        >>> t = compare("llama3_8b", ["h100_sxm", "a100_sxm"], seq_lens=[2048], phases=["decode"])
        >>> t[["target", "speedup"]].to_dict("records")[0]
        {'target': 'h100_sxm', 'speedup': 1.0}
    """
    spec = model if isinstance(model, Model) else MODELS.get(model)
    if spec is None:
        raise SpecError(f"compare: unknown model {model!r}; known: {', '.join(MODELS)}")
    loaded = [_target(t) for t in targets]
    if not loaded:
        raise SpecError("compare: give at least one target")
    names = [t.name for t in loaded]
    base = names[0] if baseline is None else baseline
    if base not in names:
        raise SpecError(f"compare: baseline {base!r} is not among the targets {', '.join(names)}")
    rows = []
    for tgt in loaded:
        for att in attentions:
            for phase in phases:
                if phase == "decode" and not spec.decoder:
                    continue
                for seq in seq_lens:
                    e = estimate(spec, tgt.arch, phase, seq, batch, attention=att, mapping=mapping)
                    rows.append(
                        {
                            "model": e.model,
                            "target": e.target,
                            "attention": e.attention,
                            "phase": phase,
                            "seq_len": seq,
                            "batch": e.batch,
                            "latency_s": e.latency_s,
                            "tokens_per_s": e.tokens_per_s,
                            "energy_per_token_pj": (
                                math.nan if e.energy_per_token_pj is None else e.energy_per_token_pj
                            ),
                            "dram_bytes": e.dram_bytes,
                            "weight_bytes": e.weight_bytes,
                            "kv_cache_bytes": e.kv_cache_bytes,
                            "weights_fit_on_chip": e.weights_fit_on_chip,
                            "fits_memory": e.fits_memory,
                            "valid": e.valid,
                            "reason": e.reasons[0] if e.reasons else "",
                        }
                    )
    table = pd.DataFrame(rows)
    keys = ["attention", "phase", "seq_len"]
    ref = table[table.target == base].set_index(keys).latency_s.rename("baseline_s")
    table = table.join(ref, on=keys)
    table["speedup"] = table.baseline_s / table.latency_s
    return table.drop(columns="baseline_s")[list(COMPARE_COLUMNS)]


def compare_figures(table: pd.DataFrame):
    """Two plotly figures of a `compare` table: latency bars per target (one panel per
    phase, grouped by seq_len and attention), and latency vs sequence length (log-log)."""
    import plotly.express as px

    data = table.assign(
        case=table.attention + " @ " + table.seq_len.astype(str),
        latency_ms=table.latency_s * 1e3,
    )
    bars = px.bar(
        data, x="case", y="latency_ms", color="target", barmode="group", facet_col="phase",
        log_y=True, hover_data=["speedup", "tokens_per_s", "dram_bytes"],
        title=f"{table.model.iloc[0]}: latency per target (prefill: TTFT, decode: TPOT)",
    )  # fmt: skip
    bars.update_yaxes(matches=None, showticklabels=True)
    lines = px.line(
        data.sort_values("seq_len"), x="seq_len", y="latency_ms", color="target",
        line_dash="attention", facet_col="phase", markers=True, log_x=True, log_y=True,
        title=f"{table.model.iloc[0]}: latency vs sequence length",
    )  # fmt: skip
    lines.update_yaxes(matches=None, showticklabels=True)
    return bars, lines


def write_figures(table: pd.DataFrame, path) -> list[str]:
    """Write `compare_figures` to `path`: .html (both figures, plotly.js embedded), or
    .png / .svg (static, through kaleido >= 1 and a local Chrome/Chromium, the `plot`
    extra: the second figure goes to <stem>_vs_seq<ext>).

    Raises:
        SpecError: another extension. BackendUnavailable: static export without kaleido,
            or kaleido without a browser to render with.
    """
    from pathlib import Path

    from einsim.einsum import BackendUnavailable

    path = Path(path)
    bars, lines = compare_figures(table)
    ext = path.suffix.lower()
    if ext in (".html", ".htm"):
        parts = [bars.to_html(full_html=False, include_plotlyjs=True)]
        parts.append(lines.to_html(full_html=False, include_plotlyjs=False))
        path.write_text("<html><body>\n" + "\n".join(parts) + "\n</body></html>\n")
        return [str(path)]
    if ext not in (".png", ".svg"):
        raise SpecError(f"--plot {path}: the extension must be .html, .png or .svg")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise BackendUnavailable(
            f"--plot {path}: static images need kaleido (pip install 'einsim[plot]', which "
            "renders with a local Chrome/Chromium); write .html instead"
        ) from None
    second = path.with_name(f"{path.stem}_vs_seq{path.suffix}")
    try:
        bars.write_image(path)
        lines.write_image(second)
    except RuntimeError as error:  # plotly's "Kaleido requires Google Chrome" and kin
        reason = next((line for line in str(error).splitlines() if line.strip()), "")
        raise BackendUnavailable(
            f"--plot {path}: kaleido could not render ({reason.strip()[:120]}); install "
            "chromium (or set BROWSER_PATH) or write .html instead"
        ) from None
    return [str(path), str(second)]
