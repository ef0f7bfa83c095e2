"""A design point (workload + architecture + mapping) and its evaluation: pure functions.

The dashboard's design page is a form over `DesignSpec`; `evaluate_design` turns one into a
`DesignResult` through the simulator (`einsim.simulator.evaluate`), raising einsim's own
errors, which the page shows as a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from einsim.einsum import Cascade, EinsimError, SpecError
from einsim.simulator import Architecture, Report, evaluate, load_architecture, load_mapping
from einsim.simulator import Mapping as SimMapping
from einsim.simulator.architecture import architecture_from_dict
from einsim.simulator.spec import apply_overrides, load_yaml, parse_yaml
from einsim.workloads import ATTENTION, MODELS, workload
from einsim.workloads import cascade as build_cascade

from .choices import MODEL_ATTENTION

#: The `arch` value of a spec whose architecture is the uploaded YAML text.
UPLOADED = "(uploaded)"


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
        mapping: a bundled mapping name.
        searched: a mapping found by the mapper, used instead of `mapping` when given.
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
    searched: SimMapping | None = field(default=None, repr=False)

    def label(self) -> str:
        """A short name for legends: `fusemax_1pass / fusemax_cloud / fusemax`."""
        what = self.attention or self.algorithm
        how = f"searched {self.searched.name}" if self.searched else self.mapping
        return f"{what} / {self.arch} / {how}"


@dataclass(frozen=True)
class DesignResult:
    """A spec with everything built from it and the simulator's report."""

    spec: DesignSpec
    cascade: Cascade
    shape: dict[str, int]
    arch: Architecture
    mapping: SimMapping
    report: Report


def parse_assignments(text: str | None, what: str = "parameters") -> dict[str, object]:
    """`"M0=64, causal=true"` -> {"M0": 64, "causal": True}; values are YAML scalars.

    Raises:
        SpecError: an item that is not KEY=VALUE.

    Example:
        >>> parse_assignments("M0=64, form=stable_3pass, causal=true")
        {'M0': 64, 'form': 'stable_3pass', 'causal': True}
    """
    out: dict[str, object] = {}
    for item in (text or "").replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{what}: {item!r} is not KEY=VALUE (e.g. M0=64)")
        try:
            out[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError:
            out[key.strip()] = value.strip()
    return out


def format_assignments(values: Mapping[str, object]) -> str:
    """The inverse of `parse_assignments`: {"M0": 64, "causal": True} -> "M0=64, causal=true"."""
    return ", ".join(f"{k}={yaml.safe_dump(v).splitlines()[0]}" for k, v in values.items())


def architecture_data(spec: DesignSpec) -> tuple[dict, str]:
    """The architecture's parsed YAML (before overrides) and where it came from.

    Raises:
        SpecError: an unknown preset, no uploaded text, or text that is not YAML mapping.
    """
    if spec.arch != UPLOADED:
        return load_yaml(spec.arch, "architecture", "architectures")
    origin = "uploaded architecture"
    if not spec.arch_yaml:
        raise SpecError(f"{origin}: nothing uploaded yet")
    return parse_yaml(spec.arch_yaml, origin), origin


def build_architecture(spec: DesignSpec) -> Architecture:
    """The spec's architecture with its overrides applied.

    Raises:
        SpecError: invalid YAML, unknown keys, an override path that does not exist.
    """
    if spec.arch != UPLOADED and not spec.overrides:
        arch = load_architecture(spec.arch)
        if not isinstance(arch, Architecture):
            raise SpecError(
                f"architecture {spec.arch!r} is a GPU; the design page models spatial arrays"
            )
        return arch
    data, origin = architecture_data(spec)
    if spec.overrides:
        data = apply_overrides(data, dict(spec.overrides), origin)
    return architecture_from_dict(data, origin)


def build_workload(spec: DesignSpec) -> tuple[Cascade, dict[str, int]]:
    """The cascade and the full shape (batch ranks included) of a spec.

    Raises:
        SpecError: an unknown model or variant, a bad parameter, a sequence length < 1.
    """
    if not isinstance(spec.seq_len, int) or isinstance(spec.seq_len, bool) or spec.seq_len < 1:
        raise SpecError(f"sequence length must be a positive integer, got {spec.seq_len!r}")
    if spec.model not in MODELS:
        raise SpecError(f"unknown model {spec.model!r}; known: {', '.join(MODELS)}")
    if spec.attention == MODEL_ATTENTION:
        w = workload(spec.model, spec.algorithm, spec.seq_len, spec.batch, spec.phase)
        shape = {**w.sizes, **dict(w.outer)}
        cascade = w.cascade
    else:
        model = MODELS[spec.model]
        cascade = build_cascade(spec.attention, **dict(spec.params))
        seq = spec.seq_len
        shape = {"E": model.E, "F": model.E, "M": seq, "P": seq, "K": model.D, "N": model.D}
        shape |= {"B": spec.batch or model.batch, "H": model.H, "G": model.G}
        keep = set(cascade.ranks) | ({"B", "H"} if spec.attention in ATTENTION else set())
        shape = {k: v for k, v in shape.items() if k in keep}
    for rank, size in spec.sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SpecError(f"size {rank}: expected a positive integer, got {size!r}")
        shape[rank] = size
    return cascade, shape


def evaluate_design(spec: DesignSpec) -> DesignResult:
    """Build and evaluate a design point.

    Raises:
        EinsimError: SpecError (bad input), MappingError (a mapping that does not match the
            cascade or the architecture), InfeasibleError (nothing fits).

    Example:
        >>> result = evaluate_design(DesignSpec(model="bert_base", seq_len=1024))
        >>> result.report.valid, result.shape["B"], result.shape["H"]
        (True, 64, 12)
    """
    cascade, shape = build_workload(spec)
    arch = build_architecture(spec)
    mapping = spec.searched or load_mapping(spec.mapping)
    report = evaluate(cascade, arch, mapping, shape)
    return DesignResult(spec, cascade, shape, arch, mapping, report)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two design points side by side: B relative to A.

    Attributes:
        speedup: latency of B / latency of A (above 1: A is faster).
        energy_ratio: energy of A / energy of B (below 1: A spends less).
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
    """A's speedup over B and A's energy as a fraction of B's.

    Example: FuseMax vs FLAT on BERT at 1K tokens is about 5x faster at ~80% of the energy.
    """
    ra, rb = a.report, b.report
    return Comparison(
        a=a.spec.label(),
        b=b.spec.label(),
        latency_a_s=ra.latency_s,
        latency_b_s=rb.latency_s,
        energy_a_pj=ra.energy_pj,
        energy_b_pj=rb.energy_pj,
        speedup=rb.latency_s / ra.latency_s if ra.latency_s else math.nan,
        energy_ratio=ra.energy_pj / rb.energy_pj if rb.energy_pj else math.nan,
    )


@dataclass(frozen=True, slots=True)
class ArchNumber:
    """An architecture number the page lets one edit, by its override path."""

    path: str
    label: str
    value: float


def editable_numbers(data: Mapping) -> list[ArchNumber]:
    """The key numbers of an architecture's YAML: clock, each unit's array size, each
    level's capacity and bandwidth, as override paths (`units.2d.rows`, `levels.GB...`).

    Example:
        >>> data, _ = load_yaml("fusemax_cloud", "architecture", "architectures")
        >>> [n.path for n in editable_numbers(data)][:3]
        ['clock_hz', 'units.2d.rows', 'units.2d.cols']
    """
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
        SpecError: a value that is not a positive number.
    """
    base = {n.path: n.value for n in numbers}
    out = []
    for path, value in values.items():
        if path not in base or value is None or value == "":
            continue
        if not _is_number(value) or float(value) <= 0:
            raise SpecError(f"{path}: expected a positive number, got {value!r}")
        number = float(value)
        if number == base[path]:
            continue
        out.append((path, int(number) if number.is_integer() else number))
    return tuple(out)


def error_message(error: BaseException) -> str:
    """What the page shows for a failed evaluation: the kind of error and its text."""
    kind = type(error).__name__
    if isinstance(error, EinsimError):
        return f"{kind}: {error}"
    return f"unexpected {kind}: {error}"
