"""A design point (workload + architecture + mapping) and its evaluation: pure functions.

The dashboard's design page is a form over `DesignSpec`; `evaluate_design` turns one into a
`DesignResult` through the simulator's one target interface (`einsim.simulator.targets`:
the architecture's `Target` loads the mapping and costs it, as `einsim evaluate` does),
raising einsim's own errors, which the page shows as a message. What the page does
differently per target kind (which mapping field it reads, the GPU's attention-problem
check, the editable numbers) is in one table, `_KINDS`, keyed on `Target.kind`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import yaml

from einsim.einsum import Cascade, EinsimError, SpecError
from einsim.simulator import Architecture, GpuArchitecture, Report, load_architecture
from einsim.simulator import Mapping as SimMapping
from einsim.simulator.gpu import AttentionProblem, GpuMapping, problem_from_cascade, useful_flops
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.simulator.spec import apply_overrides, load_yaml, parse_yaml
from einsim.simulator.targets import TARGETS, Target, target_of, target_of_spec
from einsim.workloads import ATTENTION, MODELS, workload
from einsim.workloads import cascade as build_cascade

from .choices import MODEL_ATTENTION
from .inputs import (
    MAX_BATCH,
    MAX_EINSUMS,
    MAX_ITEMS,
    MAX_RANK_SIZE,
    MAX_SEQ_LEN,
    arch_number,
    bounded_parameters,
    check_cascade_growth,
    check_yaml_text,
    scalar_value,
    whole_number,
)
from .inputs import text as checked_text

#: The `arch` value of a spec whose architecture is the uploaded YAML text.
UPLOADED = "(uploaded)"
#: The tiling a GPU design point starts with (`GpuMapping()`: FlashAttention-2's fused
#: kernel, Br=128, Bc=64, a 2-stage ring, 4 warps).
DEFAULT_TILING = GpuMapping().name


@dataclass(frozen=True, slots=True)
class DesignSpec:
    """One design point as the page describes it.

    Attributes:
        model: a model zoo key (`einsim.workloads.MODELS`): heads, embedding, batch.
        seq_len: tokens (prefill: M = P; decode: the KV cache length, P = 1).
        algorithm: how the model's own attention is computed (fusemax_1pass, ...).
        attention: "" for the model's own attention (`workload`), else a registered cascade
            (attention variant or kernel) built with `params` on the model's sizes.
        params: (name, value) parameters of `attention`.
        sizes: (rank, size) extra or replaced rank sizes (e.g. K, N of a gemm).
        batch: B; None for the model's default.
        phase: prefill or decode (the model's own attention only).
        arch: a bundled architecture, or `UPLOADED` for `arch_yaml`.
        arch_yaml: the text of an uploaded architecture.
        overrides: (YAML path, value) changes to the architecture, e.g. ("units.2d.rows", 128).
        mapping: a bundled mapping name (spatial arrays).
        tiling: the GPU tiling (`parse_gpu_mapping` text, e.g. `fused:Br=128,Bc=64,stages=2,
            warps=4`), used when the architecture is a GPU.
        searched: a mapping found by the mapper (a `GpuMapping` on a GPU), used instead of
            `mapping` / `tiling` when given.
    """

    model: str = "bert_base"
    seq_len: int = 4096
    algorithm: str = "fusemax_1pass"
    attention: str = MODEL_ATTENTION
    params: tuple[tuple[str, object], ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()
    batch: int | None = None
    phase: str = "prefill"
    arch: str = "fusemax_cloud"
    arch_yaml: str | None = field(default=None, repr=False)
    overrides: tuple[tuple[str, object], ...] = ()
    mapping: str = "fusemax"
    tiling: str = DEFAULT_TILING
    searched: SimMapping | GpuMapping | None = field(default=None, repr=False)

    def label(self) -> str:
        """A short name for legends: `fusemax_1pass / fusemax_cloud / fusemax`."""
        what = self.attention or self.algorithm
        if self.searched:
            how = f"searched {self.searched.name}"
        else:
            how = self.tiling if is_gpu(self) else self.mapping
        return f"{what} / {self.arch} / {how}"


@dataclass(frozen=True)
class DesignResult:
    """A spec with everything built from it and the simulator's report.

    Attributes:
        problem: on a GPU, the attention problem the GPU model costs
            (`problem_from_cascade`); None on a spatial array.
    """

    spec: DesignSpec
    cascade: Cascade
    shape: dict[str, int]
    arch: Architecture | GpuArchitecture
    mapping: SimMapping | GpuMapping
    report: Report
    problem: AttentionProblem | None = None

    @property
    def is_gpu(self) -> bool:
        return target_of(self.arch).kind == "gpu"


def parse_assignments(text: str | None, what: str = "parameters") -> dict[str, object]:
    """`"M0=64, causal=true"` -> {"M0": 64, "causal": True}; values are YAML scalars
    (a number, true/false or a name; never a list or a mapping). At most `MAX_TEXT_CHARS`
    characters and `MAX_ITEMS` items.

    Raises:
        SpecError: an item that is not KEY=VALUE, a value that is not a scalar, too long.

    Example:
        >>> parse_assignments("M0=64, form=stable_3pass, causal=true")
        {'M0': 64, 'form': 'stable_3pass', 'causal': True}
    """
    out: dict[str, object] = {}
    items = [i.strip() for i in checked_text(text, what).replace(";", ",").split(",")]
    items = [i for i in items if i]
    if len(items) > MAX_ITEMS:
        raise SpecError(f"{what}: {len(items)} items; at most {MAX_ITEMS}")
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{what}: {item[:60]!r} is not KEY=VALUE (e.g. M0=64)")
        try:
            parsed = yaml.safe_load(value.strip())
        except yaml.YAMLError:
            parsed = value.strip()
        out[key.strip()] = scalar_value(parsed, f"{what}: {key.strip()[:60]}")
    return out


def format_assignments(values: Mapping[str, object]) -> str:
    """The inverse of `parse_assignments`: {"M0": 64, "causal": True} -> "M0=64, causal=true"."""
    return ", ".join(f"{k}={yaml.safe_dump(v).splitlines()[0]}" for k, v in values.items())


def bundled_architecture(name: object) -> str:
    """`name` when it is a bundled preset (spatial or GPU). The page reads architectures by
    name or from the uploaded text only: a path is refused like an unknown name, so no
    field reads or probes a file on the server.

    Raises:
        SpecError: anything else, listing the presets.
    """
    from .choices import architectures

    if not isinstance(name, str) or name not in architectures():
        raise SpecError(
            f"unknown architecture {str(name)[:100]!r}; the dashboard offers the bundled "
            f"presets ({', '.join(architectures())}) or an uploaded YAML"
        )
    return name


def bundled_mapping(name: object) -> str:
    """`name` when it is a bundled mapping (never a path: see `bundled_architecture`).

    Raises:
        SpecError: anything else, listing the bundled mappings.
    """
    from .choices import mappings

    if not isinstance(name, str) or name not in mappings():
        raise SpecError(f"unknown mapping {str(name)[:100]!r}; bundled: {', '.join(mappings())}")
    return name


def architecture_data(spec: DesignSpec) -> tuple[dict, str]:
    """The architecture's parsed YAML (before overrides) and where it came from: a spatial
    preset (`simulator/architectures/`), a GPU preset (`simulator/gpus/`: a `gpu:` section)
    or the uploaded text (bounded in size, aliases and depth: `inputs.check_yaml_text`).

    Raises:
        SpecError: an unknown preset, no uploaded text, or text that is not YAML mapping.
    """
    if spec.arch != UPLOADED:
        name = bundled_architecture(spec.arch)
        # The kind whose presets name it, in the order `load_architecture` looks them up.
        kind = next(kind for kind, target in TARGETS.items() if name in target.presets())
        return load_yaml(name, *_KINDS[kind].preset_yaml)
    origin = "uploaded architecture"
    if not spec.arch_yaml:
        raise SpecError(f"{origin}: nothing uploaded yet")
    return parse_yaml(check_yaml_text(spec.arch_yaml, origin), origin), origin


def design_target(spec: DesignSpec) -> Target | None:
    """The target kind of the spec's architecture, from its YAML (`target_of_spec`); None
    when the architecture cannot be read (building it then says why).

    Example:
        >>> design_target(DesignSpec(arch="h100_sxm")).kind
        'gpu'
    """
    try:
        data, origin = architecture_data(spec)
        return target_of_spec(data, origin) if isinstance(data, Mapping) else None
    except EinsimError:
        return None


def is_gpu(spec: DesignSpec) -> bool:
    """Whether the spec's architecture is a GPU (`design_target`); False when the
    architecture cannot be read.

    Example:
        >>> is_gpu(DesignSpec(arch="h100_sxm")), is_gpu(DesignSpec(arch="fusemax_cloud"))
        (True, False)
    """
    target = design_target(spec)
    return target is not None and target.kind == "gpu"


def build_architecture(spec: DesignSpec) -> Architecture | GpuArchitecture:
    """The spec's architecture with its overrides applied: an `Architecture`, or a
    `GpuArchitecture` for a GPU preset or an uploaded YAML with a `gpu:` section.

    Raises:
        SpecError: invalid YAML, unknown keys, an override path that does not exist.
    """
    if spec.arch != UPLOADED:
        return load_architecture(bundled_architecture(spec.arch), dict(spec.overrides) or None)
    data, origin = architecture_data(spec)
    if spec.overrides:
        data = apply_overrides(data, dict(spec.overrides), origin)
    return target_of_spec(data, origin).from_dict(data, origin)  # the kind from its sections


def build_workload(spec: DesignSpec) -> tuple[Cascade, dict[str, int]]:
    """The cascade and the full shape (batch ranks included) of a spec.

    Raises:
        SpecError: an unknown model or variant, a bad parameter, a sequence length < 1.
    """
    if not isinstance(spec.seq_len, int) or isinstance(spec.seq_len, bool) or spec.seq_len < 1:
        raise SpecError(f"sequence length must be a positive integer, got {spec.seq_len!r}")
    whole_number(spec.seq_len, "sequence length", maximum=MAX_SEQ_LEN)
    whole_number(spec.batch, "batch", maximum=MAX_BATCH, optional=True)
    if not isinstance(spec.model, str) or spec.model not in MODELS:
        raise SpecError(f"unknown model {str(spec.model)[:100]!r}; known: {', '.join(MODELS)}")
    for value, what in ((spec.attention, "attention"), (spec.algorithm, "algorithm"),
                        (spec.phase, "phase")):  # fmt: skip
        checked_text(value, what, maximum=100)
    bounded_parameters(dict(spec.params), "parameters")
    if spec.attention == MODEL_ATTENTION:
        w = workload(spec.model, spec.algorithm, spec.seq_len, spec.batch, spec.phase)
        shape = {**w.sizes, **dict(w.outer)}
        cascade = w.cascade
    else:
        model = MODELS[spec.model]
        check_cascade_growth(spec.attention, dict(spec.params))
        cascade = build_cascade(spec.attention, **dict(spec.params))
        seq = spec.seq_len
        shape = {"E": model.E, "F": model.E, "M": seq, "P": seq, "K": model.D, "N": model.D}
        shape |= {"B": spec.batch or model.batch, "H": model.H, "G": model.G}
        # The model's ranks this cascade knows, and the batch ranks of an attention (the
        # rest would be refused by `split_shape`, the one rule of every entry point).
        batch = set(DEFAULT_BATCH) if spec.attention in ATTENTION else set()
        keep = cascade_names(cascade) | batch
        shape = {k: v for k, v in shape.items() if k in keep}
    if len(cascade.einsums) > MAX_EINSUMS:
        raise SpecError(f"cascade {cascade.name!r} has {len(cascade.einsums)} Einsums; the "
                        f"dashboard builds at most {MAX_EINSUMS}")  # fmt: skip
    if len(spec.sizes) > MAX_ITEMS:
        raise SpecError(f"extra rank sizes: {len(spec.sizes)} items; at most {MAX_ITEMS}")
    for rank, size in spec.sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SpecError(f"size {str(rank)[:40]}: expected a positive integer, got {size!r}")
        shape[rank] = whole_number(size, f"size {rank}", maximum=MAX_RANK_SIZE)
    return cascade, shape


def evaluate_design(spec: DesignSpec) -> DesignResult:
    """Build and evaluate a design point through its architecture's target (`target_of`):
    the mapping is the searched one when it is that target's (`Target.owns_mapping`), else
    the field `_KINDS` names (a bundled mapping on a spatial array, the tiling on a GPU),
    loaded by `Target.load_mapping` and costed by `Target.evaluate` (what `einsim evaluate
    --arch h100_sxm --mapping fused:...` does).

    Raises:
        EinsimError: SpecError (bad input; on a GPU also a cascade without a GPU kernel, or a
            malformed tiling), MappingError (a mapping that does not match the cascade or the
            architecture), InfeasibleError (nothing fits).

    Example:
        >>> result = evaluate_design(DesignSpec(model="bert_base", seq_len=1024))
        >>> result.report.valid, result.shape["B"], result.shape["H"]
        (True, 64, 12)
        >>> gpu = evaluate_design(DesignSpec(seq_len=1024, arch="h100_sxm"))
        >>> gpu.is_gpu, gpu.mapping.name, gpu.report.per_einsum.kernel.tolist()
        (True, 'fused:Br=128,Bc=64,stages=2,warps=4', ['attention'])
    """
    cascade, shape = build_workload(spec)
    arch = build_architecture(spec)
    target = target_of(arch)
    kind = _KINDS[target.kind]
    problem = kind.problem(cascade, shape)  # a GPU: one line naming the supported cascades
    searched = spec.searched if target.owns_mapping(spec.searched) else None
    mapping = target.load_mapping(searched or kind.mapping(spec))
    report = target.evaluate(cascade, arch, mapping, shape)
    return DesignResult(spec, cascade, shape, arch, mapping, report, problem)


def modelled_energy_pj(result: DesignResult) -> float:
    """The energy the simulator models, in pJ; NaN on a GPU, where the report's energy is
    only the board's power limit x time (an upper bound, not a model)."""
    return math.nan if result.is_gpu else result.report.energy_pj


@dataclass(frozen=True, slots=True)
class MappingFile:
    """The mapping of a design point as the page shows it and lets one download it.

    Attributes:
        filename: a safe file name (`<mapping name>.yaml`).
        text: YAML. Spatial array: the mapping (`mapping_to_yaml`: kernels with their fused
            Einsums, loop nest per level, spatial unrolling, keep sets, binding, stages)
            under a `#` header; `load_mapping` and `einsim evaluate --mapping FILE` read it
            back. GPU: `tiling: <kernel:Br=..,Bc=..>`, the text `--mapping` takes.
        command: the `einsim evaluate` line that costs this design point with the file.
        searched: whether the mapping came from the mapper (else bundled or typed).
    """

    filename: str
    text: str
    command: str
    searched: bool


def cascade_call(spec: DesignSpec) -> tuple[str, dict[str, object]]:
    """The registry call that builds the spec's cascade: (name, parameters) such that
    `einsim.workloads.cascade(name, **parameters)` equals `build_workload(spec)[0]`.

    Example:
        >>> cascade_call(DesignSpec(model="llama3_8b", seq_len=1024))
        ('gqa', {'form': 'fusemax_1pass', 'causal': True})
    """
    if spec.attention == MODEL_ATTENTION:
        w = workload(spec.model, spec.algorithm, spec.seq_len, spec.batch, spec.phase)
        name, params = w.built_from
        return name, dict(params)
    return spec.attention, dict(spec.params)


def evaluate_command(result: DesignResult, mapping_path: str) -> str:
    """The `einsim evaluate` command line of a design point with its mapping in
    `mapping_path` (a GPU: the tiling itself); an uploaded architecture is `ARCH.yaml`.

    Example:
        >>> r = evaluate_design(DesignSpec(model="bert_base", seq_len=1024))
        >>> evaluate_command(r, "fusemax.yaml")  # doctest: +NORMALIZE_WHITESPACE
        'einsim evaluate --variant fusemax_1pass --arch fusemax_cloud --mapping fusemax.yaml
         --shape E=64,F=64,M=1024,P=1024,B=64,H=12'
    """
    import shlex

    name, params = cascade_call(result.spec)
    arch = "ARCH.yaml" if result.spec.arch == UPLOADED else result.spec.arch
    words = ["einsim", "evaluate", "--variant", name]
    for key, value in params.items():  # the CLI reads booleans as 1/0
        words += ["--param", f"{key}={int(value) if isinstance(value, bool) else value}"]
    words += ["--arch", arch]
    for path, value in result.spec.overrides:
        words += ["--set", f"{path}={value}"]
    words += ["--mapping", mapping_path]
    words += ["--shape", ",".join(f"{k}={v}" for k, v in result.shape.items())]
    return shlex.join(words)


def mapping_file(result: DesignResult) -> MappingFile:
    """The design point's mapping as a downloadable YAML file (`MappingFile`).

    Example:
        >>> from einsim.simulator import load_mapping
        >>> f = mapping_file(evaluate_design(DesignSpec(model="bert_base", seq_len=1024)))
        >>> f.filename, f.searched, load_mapping_text(f.text) == load_mapping("fusemax")
        ('fusemax.yaml', False, True)
    """
    import re

    from einsim.simulator import mapping_to_yaml

    mapping = result.mapping
    searched = result.spec.searched is not None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", mapping.name).strip("._") or "mapping"
    filename = f"{stem[:80]}.yaml"
    report = result.report
    origin = "found by the mapper" if searched else ("typed" if result.is_gpu else "bundled")
    summary = f"latency {report.latency_s:.6g} s, DRAM {report.dram_bytes:.6g} B"
    if result.is_gpu:
        command = evaluate_command(result, mapping.name)
        header = (f"einsim dashboard: GPU tiling ({origin}) of {result.spec.label()}\n"
                  f"{summary}\nCheck it: {command}")  # fmt: skip
        body = yaml.safe_dump({"tiling": mapping.name}, sort_keys=False)
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + body
        return MappingFile(filename, text, command, searched)
    command = evaluate_command(result, filename)
    summary += f", energy {report.energy_pj:.6g} pJ"
    header = (f"einsim dashboard: mapping ({origin}) of {result.spec.label()}\n"
              f"{summary}\nCheck it: {command}")  # fmt: skip
    return MappingFile(filename, mapping_to_yaml(mapping, header), command, searched)


def load_mapping_text(text: str) -> SimMapping:
    """A spatial mapping from the YAML text of `mapping_file` (as `load_mapping` reads a
    file), bounded in size like an upload.

    Raises:
        SpecError: text that is not a mapping's YAML.
    """
    from einsim.simulator import mapping_from_dict

    origin = "mapping YAML"
    return mapping_from_dict(parse_yaml(check_yaml_text(text, origin), origin), origin)


@dataclass(frozen=True, slots=True)
class GpuKernel:
    """One kernel of a GPU design point, as the GPU model reports it.

    Attributes:
        bound: "memory" when its HBM time exceeds its compute time, else "compute".
        occupancy: CTAs resident per SM (0: a kernel the model does not tile, e.g. softmax).
        waves: rounds of CTAs over all SMs.
    """

    kernel: str
    einsums: str
    unit: str
    latency_s: float
    cycles: float
    compute_cycles: float
    memory_cycles: float
    bound: str
    occupancy: int
    waves: int


@dataclass(frozen=True, slots=True)
class GpuSummary:
    """The headline numbers of a GPU design point.

    Attributes:
        useful_flops: FLOPs of the kept (key, query) pairs (`useful_flops`: QK and PV).
        achieved_flops_per_s: useful_flops / latency (FlashAttention-2's TFLOP/s convention).
        bound: the bound of the kernel that takes the most time (named when there are more).
        board_energy_pj: the board's power limit x time (an upper bound; 0 without one).
    """

    latency_s: float
    cycles: float
    useful_flops: float
    achieved_flops_per_s: float
    hbm_bytes: float
    bound: str
    board_energy_pj: float
    kernels: tuple[GpuKernel, ...]


def gpu_summary(result: DesignResult) -> GpuSummary:
    """Latency, achieved FLOP/s, bound, HBM traffic and the per-kernel numbers of a GPU
    design point, read from its report (nothing is re-modelled here).

    Raises:
        SpecError: a result that is not on a GPU.

    Example:
        >>> s = gpu_summary(evaluate_design(DesignSpec(seq_len=1024, arch="h100_sxm")))
        >>> [k.kernel for k in s.kernels], s.bound in ("compute", "memory")
        (['attention'], True)
    """
    if not result.is_gpu or result.problem is None:
        raise SpecError(f"{result.spec.arch!r} is not a GPU: no GPU summary")
    report = result.report
    clock_hz = result.arch.clock_hz
    per_kernel = report.per_einsum.set_index("kernel")
    kernels = []
    for numbers in report.kernels:
        name = numbers["kernel"]
        row = per_kernel.loc[name]
        compute, memory = float(numbers["compute_cycles"]), float(numbers["memory_cycles"])
        kernels.append(
            GpuKernel(
                kernel=name,
                einsums=str(row.einsum),
                unit=str(row.unit),
                latency_s=float(row.cycles) / clock_hz,
                cycles=float(row.cycles),
                compute_cycles=compute,
                memory_cycles=memory,
                bound="memory" if memory > compute else "compute",
                occupancy=int(numbers.get("occupancy_ctas_per_sm", 0)),
                waves=int(numbers.get("waves", 0)),
            )
        )
    longest = max(kernels, key=lambda k: k.cycles)
    bound = longest.bound
    if len(kernels) > 1:
        share = longest.cycles / report.cycles if report.cycles else math.nan
        bound = f"{bound} ({longest.kernel} kernel, {share:.0%} of the time)"
    flops = useful_flops(result.problem)
    return GpuSummary(
        latency_s=report.latency_s,
        cycles=report.cycles,
        useful_flops=flops,
        achieved_flops_per_s=flops / report.latency_s if report.latency_s else math.nan,
        hbm_bytes=report.dram_bytes,
        bound=bound,
        board_energy_pj=report.energy_pj,
        kernels=tuple(kernels),
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two design points side by side: B relative to A.

    Attributes:
        speedup: latency of B / latency of A (above 1: A is faster).
        energy_ratio: energy of A / energy of B (below 1: A spends less); NaN when either
            side is a GPU (energy is not modelled there), as are that side's energy_*_pj.
    """

    a: str
    b: str
    latency_a_s: float
    latency_b_s: float
    energy_a_pj: float
    energy_b_pj: float
    speedup: float
    energy_ratio: float


def compare(a: DesignResult, b: DesignResult) -> Comparison:
    """A's speedup over B and A's energy as a fraction of B's (NaN with a GPU on a side).

    Example: FuseMax vs FLAT on BERT at 1K tokens is about 5x faster at ~80% of the energy.
    """
    ra, rb = a.report, b.report
    energy_a, energy_b = modelled_energy_pj(a), modelled_energy_pj(b)
    return Comparison(
        a=a.spec.label(),
        b=b.spec.label(),
        latency_a_s=ra.latency_s,
        latency_b_s=rb.latency_s,
        energy_a_pj=energy_a,
        energy_b_pj=energy_b,
        speedup=rb.latency_s / ra.latency_s if ra.latency_s else math.nan,
        energy_ratio=energy_a / energy_b if energy_b else math.nan,
    )


@dataclass(frozen=True, slots=True)
class ArchNumber:
    """An architecture number the page lets one edit, by its override path."""

    path: str
    label: str
    value: float


#: The numbers of a GPU's `gpu:` section the page offers (the rest stay reachable as
#: "more overrides", e.g. `gpu.max_ctas_per_sm=16`), with their labels.
GPU_NUMBERS: tuple[tuple[str, str], ...] = (
    ("sms", "SMs"),
    ("clock_hz", "SM clock (Hz)"),
    ("hbm_bytes_per_s", "HBM bandwidth (B/s)"),
    ("l2_bytes", "L2 capacity (B)"),
    ("l2_bytes_per_clock_per_sm", "L2 bandwidth (B/clock/SM)"),
    ("smem_per_sm_bytes", "shared memory per SM (B)"),
    ("smem_per_block_bytes", "shared memory per CTA (B)"),
    ("smem_bytes_per_clock_per_sm", "shared memory bandwidth (B/clock/SM)"),
    ("registers_per_sm", "registers per SM"),
    ("max_warps_per_sm", "warps per SM"),
    ("tensor_flops_per_clock_per_sm.bf16", "tensor bf16 (FLOP/clock/SM)"),
    ("tensor_flops_per_clock_per_sm.fp16", "tensor fp16 (FLOP/clock/SM)"),
    ("cuda_core_flops_per_clock_per_sm.fp32", "CUDA-core fp32 (FLOP/clock/SM)"),
    ("sfu_ops_per_clock_per_sm", "SFU exp (ops/clock/SM)"),
)


def editable_numbers(data: Mapping) -> list[ArchNumber]:
    """The key numbers of an architecture's YAML: clock, each unit's array size, each
    level's capacity and bandwidth, as override paths (`units.2d.rows`, `levels.GB...`);
    for a GPU, the `GPU_NUMBERS` of its `gpu:` section (`gpu.sms`, `gpu.clock_hz`, ...).

    Example:
        >>> data, _ = load_yaml("fusemax_cloud", "architecture", "architectures")
        >>> [n.path for n in editable_numbers(data)][:3]
        ['clock_hz', 'units.2d.rows', 'units.2d.cols']
        >>> data, _ = load_yaml("h100_sxm", "GPU architecture", "gpus")
        >>> [(n.path, n.value) for n in editable_numbers(data)][:2]
        [('gpu.sms', 132.0), ('gpu.clock_hz', 1830000000.0)]
    """
    return _KINDS[target_of_spec(data).kind].numbers(data)


def _spatial_numbers(data: Mapping) -> list[ArchNumber]:
    out = []
    if _is_number(data.get("clock_hz")):
        out.append(ArchNumber("clock_hz", "clock (Hz)", float(data["clock_hz"])))
    for name, unit in (data.get("units") or {}).items():
        if not isinstance(unit, Mapping):
            continue
        for key in ("rows", "cols", "lanes"):
            if _is_number(unit.get(key)):
                out.append(ArchNumber(f"units.{name}.{key}", f"{name} {key}", float(unit[key])))
    for level in data.get("levels") or []:
        if not isinstance(level, Mapping) or "name" not in level:
            continue
        for key, label in (
            ("capacity_bytes", "capacity (B)"),
            ("bandwidth_bytes_per_cycle", "bandwidth (B/cycle)"),
            ("bandwidth_bytes_per_s", "bandwidth (B/s)"),
        ):
            if _is_number(level.get(key)):
                out.append(
                    ArchNumber(
                        f"levels.{level['name']}.{key}",
                        f"{level['name']} {label}",
                        float(level[key]),
                    )
                )
    return out


def _gpu_numbers(data: Mapping) -> list[ArchNumber]:
    out = []
    for key, label in GPU_NUMBERS:
        node: object = data.get("gpu")
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if _is_number(node):
            out.append(ArchNumber(f"gpu.{key}", label, float(node)))  # type: ignore[arg-type]
    return out


def _no_problem(cascade: Cascade, shape: Mapping[str, int]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Kind:
    """What the design page does differently on one target kind.

    Attributes:
        preset_yaml: (what, folder) of `load_yaml` for a bundled preset of this kind.
        mapping: the mapping spec the page's fields give (before `Target.load_mapping`).
        problem: the attention problem a GPU costs (`problem_from_cascade`, which refuses a
            cascade without a GPU kernel in one line); None elsewhere.
        numbers: the editable numbers of an architecture's YAML (`editable_numbers`).
    """

    preset_yaml: tuple[str, str]
    mapping: Callable[[DesignSpec], str]
    problem: Callable[[Cascade, Mapping[str, int]], AttentionProblem | None]
    numbers: Callable[[Mapping], list[ArchNumber]]


#: The one place the page keys on `Target.kind`.
_KINDS: dict[str, _Kind] = {
    "spatial": _Kind(
        preset_yaml=("architecture", "architectures"),
        mapping=lambda spec: bundled_mapping(spec.mapping),
        problem=_no_problem,
        numbers=_spatial_numbers,
    ),
    "gpu": _Kind(
        preset_yaml=("GPU architecture", "gpus"),
        mapping=lambda spec: checked_text(spec.tiling, "GPU tiling", maximum=200),
        problem=problem_from_cascade,
        numbers=_gpu_numbers,
    ),
}


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def changed_overrides(
    numbers: list[ArchNumber], values: Mapping[str, object]
) -> tuple[tuple[str, object], ...]:
    """The (path, value) pairs among `values` that differ from the architecture's own
    numbers; integers stay integers (an array size of 128.0 becomes 128).

    Raises:
        SpecError: a value that is not a positive number (up to `MAX_ARCH_NUMBER`).
    """
    base = {n.path: n.value for n in numbers}
    out = []
    for path, value in values.items():
        if not isinstance(path, str) or path not in base or value is None or value == "":
            continue
        number = arch_number(value, path)
        if number == base[path]:
            continue
        out.append((path, number))
    return tuple(out)


def error_message(error: BaseException) -> str:
    """What the page shows for a failed evaluation: the kind of error and its text."""
    kind = type(error).__name__
    if isinstance(error, EinsimError):
        return f"{kind}: {error}"
    return f"unexpected {kind}: {error}"
