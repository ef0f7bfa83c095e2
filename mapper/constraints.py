"""Constraints on a map space, in YAML like Timeloop's mapspace constraints.

    fusion: fused                 # fused (one kernel) | unfused (one kernel per Einsum)
                                  # | partial (several contiguous fused groups)
                                  # | [[QK, LM, RM], [SLN, ...]]: exactly these kernels
    forbid_fusion: [[QK, AV]]     # these Einsums never share a kernel
    require_fusion: [[SLN, SLD]]  # these Einsums always share a kernel
    binding: {QK: 2d, AV: 1d}     # pin an Einsum to a unit
    spatial: {2d: [P, M0]}        # the ranks unrolled on a unit's dimensions
    factors: {GB.P: 4, spatial.P: 256}   # fix a free factor (`[kernel.]level.rank`)
    forbid_orders: [[M1, P]]      # no DRAM order with M1 outside P (outer to inner)
    keep: {GB: [Q]}               # the level must keep these tensors
    bypass: {GB: [BK]}            # ... and must not keep these
    overlap: pipelined            # pipelined (default) | perfect | serial, for fused kernels
    chained_ops: [[sub, exp]]     # operators the PEs pipeline inside one Einsum (hardware)
    padded: true                  # also try non-divisor tile factors (padded last tile)

A contradictory set (a tensor both kept and bypassed, a pinned unit that lacks an operator
of its Einsum, a spatial rank no Einsum iterates) raises `SpecError` naming the conflict.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from pathlib import Path

from einsim.einsum import Op, SpecError, validation
from einsim.simulator.spec import check_keys, parse_yaml

_KEYS = (
    "fusion",
    "binding",
    "spatial",
    "factors",
    "forbid_orders",
    "keep",
    "bypass",
    "overlap",
    "chained_ops",
    "padded",
    "forbid_fusion",
    "require_fusion",
)
FUSIONS = ("fused", "unfused", "partial")
OVERLAPS = ("pipelined", "perfect", "serial")


@dataclass(frozen=True, slots=True)
class Constraints:
    """What the user fixes; everything else is searched. Empty by default."""

    fusion: str | tuple[tuple[str, ...], ...] | None = None
    forbid_fusion: tuple[tuple[str, ...], ...] = ()
    require_fusion: tuple[tuple[str, ...], ...] = ()
    binding: tuple[tuple[str, str], ...] = ()
    spatial: tuple[tuple[str, tuple[str, ...]], ...] = ()
    factors: tuple[tuple[str, int], ...] = ()
    forbid_orders: tuple[tuple[str, ...], ...] = ()
    keep: tuple[tuple[str, tuple[str, ...]], ...] = ()
    bypass: tuple[tuple[str, tuple[str, ...]], ...] = ()
    overlap: str = "pipelined"
    chained_ops: tuple[frozenset, ...] = ()
    padded: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.fusion, tuple):
            seen = [e for group in self.fusion for e in group]
            twice = sorted({e for e in seen if seen.count(e) > 1})
            if twice or not all(self.fusion):
                raise SpecError(
                    f"constraints.fusion: groups must be non-empty and disjoint; "
                    f"{', '.join(twice) or 'an empty group'}"
                )
        elif self.fusion is not None and self.fusion not in FUSIONS:
            raise SpecError(f"constraints.fusion: {self.fusion!r} is not one of {FUSIONS}")
        for together in self.require_fusion:
            for apart in self.forbid_fusion:
                both = [e for e in apart if e in together]
                if len(both) > 1:
                    raise SpecError(
                        f"constraints: {', '.join(both)} both required and forbidden to share "
                        "a kernel (require_fusion, forbid_fusion)"
                    )
        if self.overlap not in OVERLAPS:
            raise SpecError(f"constraints.overlap: {self.overlap!r} is not one of {OVERLAPS}")
        keep, bypass = dict(self.keep), dict(self.bypass)
        for level, tensors in keep.items():
            both = sorted(set(tensors) & set(bypass.get(level, ())))
            if both:
                raise SpecError(f"constraints: {', '.join(both)} both kept and bypassed at {level}")
        pinned = [e for e, _ in self.binding]
        twice = sorted({e for e in pinned if pinned.count(e) > 1})
        if twice:
            raise SpecError(f"constraints.binding: {', '.join(twice)} pinned to two units")
        for key, value in self.factors:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"constraints.factors.{key}: expected a positive integer")
            validation.rank_size(value, f"constraints.factors.{key}")
        pins: dict[str, tuple[str, int]] = {}
        for key, value in self.factors:  # `level.rank` pins it in every kernel
            for target in [key] if key.count(".") >= 2 else [key, f"*.{key}"]:
                seen = pins.setdefault(target, (key, value))
                if seen[1] != value:
                    raise SpecError(
                        f"constraints.factors: {key} pinned to {seen[1]} ({seen[0]}) and to "
                        f"{value} ({key})"
                    )
        for key, value in self.factors:
            if key.count(".") >= 2:
                general = pins.get(f"*.{key.split('.', 1)[1]}")
                if general is not None and general[1] != value:
                    raise SpecError(
                        f"constraints.factors: {key.split('.', 1)[1]} pinned to {general[1]} "
                        f"({general[0]}) and to {value} ({key})"
                    )

    def pinned_unit(self, einsum: str) -> str | None:
        return dict(self.binding).get(einsum)

    def factor(self, kernel: str, key: str) -> int | None:
        """A fixed factor for `kernel.key` (`key` = `level.rank` or `spatial.rank`)."""
        if not self.factors:  # the usual case, asked once per factor of every template
            return None
        table = dict(self.factors)
        return table.get(f"{kernel}.{key}", table.get(key))


def _factor(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: expected a positive integer, got {value!r}"[:200])
    return validation.rank_size(value, where)


def _table(value: object, where: str) -> MappingABC:
    if value is None:
        return {}
    if not isinstance(value, MappingABC):
        raise SpecError(f"{where}: expected a mapping")
    return value


def constraints_from_dict(data: object, origin: str = "constraints") -> Constraints:
    """Parse and check constraints; unknown keys are refused with the known ones."""
    data = check_keys(data or {}, origin, (), _KEYS)
    binding = []
    for einsum, unit in _table(data.get("binding"), f"{origin}: binding").items():
        if not isinstance(unit, str):
            raise SpecError(f"{origin}: binding.{einsum}: expected a unit name, got {unit!r}")
        binding.append((validation.name(einsum, f"{origin}: binding"), unit))
    spatial = tuple(
        (
            validation.name(unit, f"{origin}: spatial"),
            validation.names(ranks, f"{origin}: spatial.{unit}"),
        )
        for unit, ranks in _table(data.get("spatial"), f"{origin}: spatial").items()
    )
    factors = tuple(
        (
            validation.name(key, f"{origin}: factors"),
            _factor(value, f"{origin}: factors.{key}"),
        )
        for key, value in _table(data.get("factors"), f"{origin}: factors").items()
    )
    orders = data.get("forbid_orders") or []
    if not isinstance(orders, list):
        raise SpecError(f"{origin}: forbid_orders: expected a list of rank lists")
    forbid = tuple(
        validation.names(o, f"{origin}: forbid_orders[{i}]") for i, o in enumerate(orders)
    )
    keep = tuple(
        (validation.name(level, f"{origin}: keep"), validation.names(t, f"{origin}: keep.{level}"))
        for level, t in _table(data.get("keep"), f"{origin}: keep").items()
    )
    bypass = tuple(
        (
            validation.name(level, f"{origin}: bypass"),
            validation.names(t, f"{origin}: bypass.{level}"),
        )
        for level, t in _table(data.get("bypass"), f"{origin}: bypass").items()
    )
    chained = data.get("chained_ops") or []
    if not isinstance(chained, list):
        raise SpecError(f"{origin}: chained_ops: expected a list of operator lists")
    padded = data.get("padded", True)
    if not isinstance(padded, bool):
        raise SpecError(f"{origin}: padded: expected true or false, got {padded!r}")
    fusion = data.get("fusion")
    if isinstance(fusion, list):  # an explicit grouping: one list of Einsums per kernel
        fusion = tuple(validation.names(g, f"{origin}: fusion[{i}]") for i, g in enumerate(fusion))
    elif fusion is not None:
        validation.choice(fusion, f"{origin}: fusion", FUSIONS)
    apart = data.get("forbid_fusion") or []
    if not isinstance(apart, list):
        raise SpecError(f"{origin}: forbid_fusion: expected a list of Einsum lists")
    apart = tuple(validation.names(g, f"{origin}: forbid_fusion[{i}]") for i, g in enumerate(apart))
    together = data.get("require_fusion") or []
    if not isinstance(together, list):
        raise SpecError(f"{origin}: require_fusion: expected a list of Einsum lists")
    together = tuple(
        validation.names(g, f"{origin}: require_fusion[{i}]") for i, g in enumerate(together)
    )
    validation.choice(data.get("overlap", "pipelined"), f"{origin}: overlap", OVERLAPS)
    known_ops = tuple(op.value for op in Op)
    for i, group in enumerate(chained):
        for op in validation.names(group, f"{origin}: chained_ops[{i}]"):
            validation.choice(op, f"{origin}: chained_ops[{i}]", known_ops)
    try:
        return Constraints(
            fusion=fusion,
            forbid_fusion=apart,
            require_fusion=together,
            binding=tuple(binding),
            spatial=spatial,
            factors=factors,
            forbid_orders=forbid,
            keep=keep,
            bypass=bypass,
            overlap=str(data.get("overlap", "pipelined")),
            chained_ops=tuple(
                frozenset(validation.names(g, f"{origin}: chained_ops[{i}]"))
                for i, g in enumerate(chained)
            ),
            padded=padded,
        )
    except SpecError as error:  # a cross-field check: name this file before the key
        message = str(error).removeprefix("constraints").lstrip(".: ")
        raise SpecError(f"{origin}: {message}") from None


def load_constraints(source: str | Path | MappingABC | Constraints | None) -> Constraints:
    """Constraints from a YAML file path, a dict, or already parsed (None: no constraints)."""
    if source is None:
        return Constraints()
    if isinstance(source, Constraints):
        return source
    if isinstance(source, MappingABC):
        return constraints_from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise SpecError(f"constraints file {str(path)!r} does not exist")
    return constraints_from_dict(parse_yaml(path.read_text(), str(path)), str(path))
