"""Targets: spatial arrays and GPUs behind one interface, and the one registry `TARGETS`.

A target kind implements `Target`: its presets, how it loads an architecture spec (a preset
name, a YAML path, or parsed YAML) and a mapping spec (and whether a loaded mapping is its
own: `owns_mapping`), how it costs a batch of mappings
(`evaluate_batch`, one `BatchReport`) and one mapping (`evaluate`, a `Report`), and the
typed view of a report (`TargetReport`: per-Einsum / per-kernel `CostRow`s with units in
the names, GPU-only facts such as occupancy and waves in `GpuKernelFacts`). Map spaces and
searches are registered per kind by the mapper (`einsim.mapper`, which imports this module:
imports flow simulator <- mapper).

`target_of(arch)` is the one dispatcher: nothing else in einsim asks which type an
architecture is.

    >>> target_of(load("h100_sxm")).kind, target_of(load("fusemax_cloud")).kind
    ('gpu', 'spatial')
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from einsim.einsum import Cascade, SpecError

#: How a GPU's energy would be printed if it were: board power x time is a bound, not a model.
GPU_ENERGY_METHOD = (
    "not modelled (the GPU model has no energy model; board power x time is an upper bound)"
)
SPATIAL_ENERGY_METHOD = (
    "modelled: per-operation and per-byte energies of the spec (Accelergy-style)"
)


@dataclass(frozen=True, slots=True)
class CostRow:
    """One row of a report: an Einsum on a spatial array, a kernel on a GPU.

    Attributes:
        kernel: the fused kernel (spatial) or the CUDA kernel (GPU) it runs in.
        einsums: the cascade's Einsum(s) it computes (comma-separated on a GPU kernel).
        unit: the compute unit (spatial) or the pipes (GPU: tensor, SFU, FP32) it runs on.
        ops: operations; cycles: busy cycles at the architecture's clock.
        energy_pj: its energy, None where the target does not model energy.
        lowered: operators its unit lacks and runs lowered (simulator/lowering.py).
    """

    kernel: str
    einsums: str
    unit: str
    ops: float
    cycles: float
    energy_pj: float | None
    lowered: str = ""


@dataclass(frozen=True, slots=True)
class GpuKernelFacts:
    """GPU-only facts of one kernel: CTAs resident per SM, waves of CTAs over the SMs, and
    its compute and HBM time in cycles."""

    kernel: str
    occupancy_ctas_per_sm: int
    waves: int
    compute_cycles: float
    memory_cycles: float


@dataclass(frozen=True)
class TargetReport:
    """One mapping's prediction on any target, typed.

    Attributes:
        target: the kind ("spatial", "gpu"); arch: the architecture's name.
        energy_pj: None where energy is not modelled (GPUs); energy_method says how.
        calibration: "n/a" (spatial: analytical, checked against published numbers),
            "uncalibrated" (a GPU whose calibration table has no fitted row) or "fitted".
        rows: per Einsum (spatial) / per kernel (GPU). gpu_kernels: GPU-only facts.
        lowered_einsums: Einsum -> operators run lowered (spatial).
    """

    target: str
    arch: str
    valid: bool
    reasons: tuple[str, ...]
    latency_s: float
    cycles: float
    energy_pj: float | None
    energy_method: str
    dram_bytes: float
    calibration: str
    rows: tuple[CostRow, ...]
    gpu_kernels: tuple[GpuKernelFacts, ...] = ()
    lowered_einsums: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The honesty lines every output of this report carries (CLI, dashboard)."""
        out = []
        if self.calibration == "uncalibrated":
            out.append(
                f"calibration  uncalibrated: {self.arch} has no fitted row in "
                "simulator/data/gpu_calibration.csv (every scale 1.0)"
            )
        if self.energy_pj is None:
            out.append(f"energy       {self.energy_method}")
        return out


@runtime_checkable
class Target(Protocol):
    """What a target kind offers (see the module docstring)."""

    kind: str

    def presets(self) -> tuple[str, ...]: ...

    def owns(self, arch: object) -> bool: ...

    def owns_spec(self, data: MappingABC) -> bool: ...

    def load(self, name_or_path, overrides: MappingABC | None = None): ...

    def from_dict(self, data: MappingABC, origin: str = "architecture"): ...

    def load_mapping(self, spec): ...

    def owns_mapping(self, mapping: object) -> bool: ...

    def evaluate(self, cascade: Cascade, arch, mapping, shape: MappingABC[str, int]): ...

    def evaluate_batch(self, cascade: Cascade, arch, mapping, shape, params=None): ...

    def typed(self, arch, report) -> TargetReport: ...


def _bundled(folder: str) -> tuple[str, ...]:
    from importlib import resources

    files = resources.files("einsim.simulator").joinpath(folder).iterdir()
    return tuple(sorted(p.name[: -len(".yaml")] for p in files if p.name.endswith(".yaml")))


def _item(value, i: int = 0) -> float:
    array = np.asarray(value, dtype=np.float64)
    return float(array if array.ndim == 0 else array[i])


class SpatialTarget:
    """Spatial arrays: Architecture, Mapping, `simulator.spatial.cost`."""

    kind = "spatial"

    def presets(self) -> tuple[str, ...]:
        return _bundled("architectures")

    def owns(self, arch: object) -> bool:
        from .spatial.architecture import Architecture

        return isinstance(arch, Architecture)

    def owns_spec(self, data: MappingABC) -> bool:
        return "gpu" not in data  # whatever else: its own checks name what is missing

    def load(self, name_or_path, overrides=None):
        from .spatial.architecture import architecture_from_dict
        from .spec import apply_overrides, load_yaml

        data, origin = load_yaml(name_or_path, "architecture", "architectures")
        if overrides:
            data = apply_overrides(data, overrides, origin)
        return architecture_from_dict(data, origin)

    def from_dict(self, data, origin="architecture"):
        from .spatial.architecture import architecture_from_dict

        return architecture_from_dict(data, origin)

    def load_mapping(self, spec):
        from .spatial.mapping import Mapping, load_mapping

        return spec if isinstance(spec, Mapping) else load_mapping(spec)

    def owns_mapping(self, mapping: object) -> bool:
        from .spatial.mapping import Mapping

        return isinstance(mapping, Mapping)

    def evaluate(self, cascade, arch, mapping, shape):
        from .spatial.cost import evaluate

        return evaluate(cascade, arch, self.load_mapping(mapping), shape)

    def evaluate_batch(self, cascade, arch, mapping, shape, params=None):
        from .spatial.cost import evaluate_batch

        return evaluate_batch(cascade, arch, self.load_mapping(mapping), shape, params or {})

    def typed(self, arch, report) -> TargetReport:
        rows = tuple(
            CostRow(
                kernel=str(r["kernel"]),
                einsums=str(r["einsum"]),
                unit=str(r["unit"]),
                ops=float(r["ops"]),
                cycles=float(r["cycles"]),
                energy_pj=float(r["energy_pj"]),
                lowered=str(r.get("lowered", "") or ""),
            )
            for r in report.per_einsum.to_dict(orient="records")
        )
        return TargetReport(
            target=self.kind,
            arch=arch.name,
            valid=report.valid,
            reasons=tuple(report.reasons),
            latency_s=report.latency_s,
            cycles=report.cycles,
            energy_pj=report.energy_pj,
            energy_method=SPATIAL_ENERGY_METHOD,
            dram_bytes=report.dram_bytes,
            calibration="n/a",
            rows=rows,
            lowered_einsums=dict(report.lowered_einsums),
        )


class GpuTarget:
    """GPUs: GpuArchitecture, GpuMapping (a tiling such as fused:Br=128,Bc=64), and
    `simulator.gpu` (FlashAttention-2 style kernels on mma.sync)."""

    kind = "gpu"

    def presets(self) -> tuple[str, ...]:
        from .gpu import gpu_presets

        return tuple(gpu_presets())

    def owns(self, arch: object) -> bool:
        from .gpu import GpuArchitecture

        return isinstance(arch, GpuArchitecture)

    def owns_spec(self, data: MappingABC) -> bool:
        return "gpu" in data

    def load(self, name_or_path, overrides=None):
        from .gpu import load_gpu_architecture

        return load_gpu_architecture(name_or_path, overrides)  # a preset or a YAML path

    def from_dict(self, data, origin="architecture"):
        from .gpu import gpu_architecture_from_dict

        return gpu_architecture_from_dict(data, origin)

    def load_mapping(self, spec):
        from .gpu import GpuMapping, parse_gpu_mapping

        if spec is None:
            return GpuMapping()
        if isinstance(spec, GpuMapping):
            return spec
        if not isinstance(spec, str):
            raise SpecError(f"GPU mapping: expected a tiling such as fused:Br=128, got {spec!r}")
        return parse_gpu_mapping(spec)

    def owns_mapping(self, mapping: object) -> bool:
        from .gpu import GpuMapping

        return isinstance(mapping, GpuMapping)

    def evaluate(self, cascade, arch, mapping, shape):
        from .gpu import evaluate_gpu

        return evaluate_gpu(cascade, arch, self.load_mapping(mapping), shape=shape)

    def evaluate_batch(self, cascade, arch, mapping, shape, params=None):
        from .gpu import evaluate_gpu_batch

        return evaluate_gpu_batch(cascade, arch, self.load_mapping(mapping), params, shape=shape)

    def calibration(self, arch) -> str:
        """'fitted' when every kernel family has a fitted row for `arch`, else 'uncalibrated'."""
        from .gpu import load_calibration

        statuses = {c.status for c in load_calibration(arch.name).values()}
        return "fitted" if statuses == {"fitted"} else "uncalibrated"

    def typed(self, arch, report) -> TargetReport:
        rows = tuple(
            CostRow(
                kernel=str(r["kernel"]),
                einsums=str(r["einsum"]),
                unit=str(r["unit"]),
                ops=float(r["ops"]),
                cycles=float(r["cycles"]),
                energy_pj=None,
            )
            for r in report.per_einsum.to_dict(orient="records")
        )
        facts = tuple(
            GpuKernelFacts(
                kernel=str(k["kernel"]),
                occupancy_ctas_per_sm=int(_item(k["occupancy_ctas_per_sm"])),
                waves=int(_item(k["waves"])),
                compute_cycles=_item(k["compute_cycles"]),
                memory_cycles=_item(k["memory_cycles"]),
            )
            for k in report.kernels
        )
        return TargetReport(
            target=self.kind,
            arch=arch.name,
            valid=report.valid,
            reasons=tuple(report.reasons),
            latency_s=report.latency_s,
            cycles=report.cycles,
            energy_pj=None,
            energy_method=GPU_ENERGY_METHOD,
            dram_bytes=report.dram_bytes,
            calibration=self.calibration(arch),
            rows=rows,
            gpu_kernels=facts,
        )


#: The registry: one entry per target kind, in the order a preset name is looked up.
TARGETS: dict[str, Target] = {"gpu": GpuTarget(), "spatial": SpatialTarget()}


def target_of(arch: object) -> Target:
    """The target kind of a loaded architecture (the one dispatcher on architecture types)."""
    for target in TARGETS.values():
        if target.owns(arch):
            return target
    raise SpecError(
        f"{type(arch).__name__} is not an architecture of any target ({', '.join(TARGETS)})"
    )


def target_of_spec(data: MappingABC, origin: str = "architecture") -> Target:
    """The target kind of a parsed architecture spec: a top-level `gpu:` section is a GPU,
    anything else a spatial array (whose loader names the keys it misses)."""
    for target in TARGETS.values():
        if target.owns_spec(data):
            return target
    raise SpecError(f"{origin}: neither a GPU (a gpu: section) nor a spatial array (units:)")


def all_presets() -> dict[str, str]:
    """Every bundled preset -> its target kind."""
    return {name: kind for kind, target in TARGETS.items() for name in target.presets()}


def load(name_or_path: str | Path, overrides: MappingABC | None = None):
    """A preset of any target by name, or a YAML file (its kind from its sections)."""
    from .spec import apply_overrides, load_yaml

    if str(name_or_path) in TARGETS["gpu"].presets():  # GPUs first, as they always were
        return TARGETS["gpu"].load(name_or_path, overrides)
    try:
        data, origin = load_yaml(name_or_path, "architecture", "architectures")
    except SpecError as error:
        if not str(error).startswith("unknown architecture"):
            raise
        raise SpecError(f"{error}; GPUs: {', '.join(TARGETS['gpu'].presets())}") from None
    if overrides:
        data = apply_overrides(data, overrides, origin)
    return target_of_spec(data, origin).from_dict(data, origin)


def load_architecture(name_or_path: str | Path, overrides: MappingABC[str, object] | None = None):
    """A bundled preset of any target by name or a YAML file by path, with `--set`-style
    overrides (`load`): a bundled GPU (`simulator/gpus/`) or a spec with a top-level `gpu:`
    section loads as a `simulator.gpu.GpuArchitecture`, anything else as a spatial
    `simulator.spatial.architecture.Architecture`.

    Example:
        >>> arch = load_architecture("fusemax_cloud", {"units.2d.rows": 64})
        >>> arch.unit("2d").dims
        (64, 256)
    """
    return load(name_or_path, overrides)


def evaluate(cascade: Cascade, arch, mapping, shape: MappingABC[str, int]):
    """One mapping on any target (a `Report`): `mapping` a spatial Mapping or a bundled
    mapping name, or a GPU tiling (`fused:Br=128,Bc=64`, a `GpuMapping`, None: the default)."""
    return target_of(arch).evaluate(cascade, arch, mapping, shape)


def typed_report(arch, report) -> TargetReport:
    """The typed view of a `Report` from either target."""
    return target_of(arch).typed(arch, report)
