"""What the hardware is: storage levels, compute units, their costs. Loaded from YAML.

Vocabulary after Timeloop/Accelergy: storage levels outermost first (DRAM, a global buffer),
compute units that are spatial arrays (a 2D array of rows x cols PEs, a 1D array of lanes),
each with the operators it supports, their cost in cycles and their energy per operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from einsim.einsum import Op, SpecError, validation

from ..lowering import resolve
from ..spec import check_keys, integer, number

# Bounds of the numbers in an architecture spec (einsim.einsum.validation refuses nan, inf
# and non-numbers everywhere): wide enough for any real design, narrow enough that no cost
# overflows or comes out as nan.
MAX_ARRAY_DIM = 65536  # PEs along one array dimension
MAX_WORD_BYTES = 64
CYCLES_RANGE = (1e-3, 1e6)  # cycles per operation
CLOCK_HZ_RANGE = (1e3, 1e12)
MAX_ENERGY_PJ = 1e9  # per operation or per byte
MAX_CAPACITY_BYTES = 2.0**60
MAX_LEAKAGE_W = 1e6


@dataclass(frozen=True, slots=True)
class OpCost:
    """The cost of one operator on one PE: cycles and pJ per operation, and the silicon
    area of its functional unit in each PE (0 where it runs on another operator's unit,
    e.g. a multiply on the MAC)."""

    cycles: float
    energy_pj: float
    area_um2: float = 0.0


@dataclass(frozen=True, slots=True)
class ComputeUnit:
    """A spatial array: `dims` are its sizes (rows, cols) or (lanes,)."""

    name: str
    dims: tuple[int, ...]
    ops: tuple[tuple[Op, OpCost], ...]
    area_um2: float = 0.0  # fixed area of the unit beyond its PEs (e.g. a staging buffer)
    fill_drain: bool = False  # a systolic array: charge fill and drain per fold (model option)
    register_file_area_um2: float = 0.0  # each PE's register file

    @property
    def lanes(self) -> int:
        total = 1
        for d in self.dims:
            total *= d
        return total

    def cost(self, op: Op, where: str = "") -> OpCost:
        """The cost of one `op`: its own where the unit has it, else the sum of the costs
        of the operators it lowers into (`simulator.lowering`; no area: it runs on their
        units)."""
        for known, cost in self.ops:
            if known is op:
                return cost
        parts = resolve(op, self.supports)
        if parts is not None:
            costs = [(self.cost(part), n) for part, n in parts.items()]
            return OpCost(
                sum(c.cycles * n for c, n in costs), sum(c.energy_pj * n for c, n in costs)
            )
        supported = ", ".join(o.value for o, _ in self.ops)
        raise SpecError(
            f"{where}unit {self.name!r} does not support {op.value!r} and has no lowering of "
            f"it (simulator/lowering.py); it supports: {supported}"
        )

    def supports(self, op: Op) -> bool:
        """Whether the unit has `op` itself (see `runs` for lowered operators)."""
        return any(known is op for known, _ in self.ops)

    def runs(self, op: Op) -> bool:
        """Whether the unit has `op` or can lower it into operators it has."""
        return resolve(op, self.supports) is not None

    def lowers(self, op: Op) -> bool:
        """Whether `op` runs on the unit only lowered (`simulator.lowering`)."""
        return not self.supports(op) and self.runs(op)


@dataclass(frozen=True, slots=True)
class StorageLevel:
    """A storage level. Capacity None is unbounded (DRAM)."""

    name: str
    capacity_bytes: float | None
    bandwidth_bytes_per_cycle: float
    read_pj_per_byte: float
    write_pj_per_byte: float
    area_um2_per_byte: float = 0.0  # on-chip storage density (0 off-chip: DRAM has no die area)


@dataclass(frozen=True, slots=True)
class Architecture:
    """A whole accelerator; `levels` are outermost first (levels[0] is off-chip memory)."""

    name: str
    clock_hz: float
    word_bytes: int
    levels: tuple[StorageLevel, ...]
    units: tuple[ComputeUnit, ...]
    leakage_w: float = 0.0

    def unit(self, name: str, where: str = "") -> ComputeUnit:
        for unit in self.units:
            if unit.name == name:
                return unit
        known = ", ".join(u.name for u in self.units)
        raise SpecError(f"{where}architecture {self.name!r} has no unit {name!r}; units: {known}")

    def level(self, name: str, where: str = "") -> StorageLevel:
        for level in self.levels:
            if level.name == name:
                return level
        known = ", ".join(lv.name for lv in self.levels)
        raise SpecError(
            f"{where}architecture {self.name!r} has no storage level {name!r}; levels: {known}"
        )


_OPS = {op.value: op for op in Op}


def _parse_unit(name: str, data: object, where: str) -> ComputeUnit:
    data = check_keys(
        data,
        where,
        ("ops",),
        ("rows", "cols", "lanes", "area_um2", "fill_drain", "register_file_area_um2"),
    )
    if "lanes" in data:
        if "rows" in data or "cols" in data:
            raise SpecError(f"{where}: give either lanes (1D) or rows and cols (2D), not both")
        dims = (integer(data["lanes"], f"{where}.lanes", maximum=MAX_ARRAY_DIM),)
    elif "rows" in data and "cols" in data:
        dims = (
            integer(data["rows"], f"{where}.rows", maximum=MAX_ARRAY_DIM),
            integer(data["cols"], f"{where}.cols", maximum=MAX_ARRAY_DIM),
        )
    else:
        raise SpecError(f"{where}: missing the array size: lanes (1D) or rows and cols (2D)")
    ops = []
    if not isinstance(data["ops"], Mapping) or not data["ops"]:
        raise SpecError(f"{where}.ops: expected a mapping op -> {{cycles, energy_pj}}")
    for op_name, cost in data["ops"].items():
        if op_name not in _OPS:
            raise SpecError(f"{where}.ops: unknown operator {op_name!r}; known: {', '.join(_OPS)}")
        cost = check_keys(cost, f"{where}.ops.{op_name}", ("cycles", "energy_pj"), ("area_um2",))
        ops.append(
            (
                _OPS[op_name],
                OpCost(
                    number(
                        cost["cycles"],
                        f"{where}.ops.{op_name}.cycles",
                        minimum=CYCLES_RANGE[0],
                        maximum=CYCLES_RANGE[1],
                    ),
                    number(
                        cost["energy_pj"],
                        f"{where}.ops.{op_name}.energy_pj",
                        positive=False,
                        maximum=MAX_ENERGY_PJ,
                    ),
                    number(
                        cost.get("area_um2", 0), f"{where}.ops.{op_name}.area_um2", positive=False
                    ),
                ),
            )
        )
    area = number(data.get("area_um2", 0), f"{where}.area_um2", positive=False)
    fill_drain = data.get("fill_drain", False)
    if not isinstance(fill_drain, bool):
        raise SpecError(f"{where}.fill_drain: expected true or false, got {fill_drain!r}")
    register_file = number(
        data.get("register_file_area_um2", 0), f"{where}.register_file_area_um2", positive=False
    )
    return ComputeUnit(name, dims, tuple(ops), area, fill_drain, register_file)


def _parse_level(data: object, where: str, clock_hz: float) -> StorageLevel:
    data = check_keys(
        data,
        where,
        ("name", "read_pj_per_byte", "write_pj_per_byte"),
        (
            "capacity_bytes",
            "bandwidth_bytes_per_cycle",
            "bandwidth_bytes_per_s",
            "area_um2_per_byte",
        ),
    )
    if ("bandwidth_bytes_per_cycle" in data) == ("bandwidth_bytes_per_s" in data):
        raise SpecError(
            f"{where}: give exactly one of bandwidth_bytes_per_cycle, bandwidth_bytes_per_s"
        )
    if "bandwidth_bytes_per_s" in data:
        per_cycle = (
            number(data["bandwidth_bytes_per_s"], f"{where}.bandwidth_bytes_per_s") / clock_hz
        )
    else:
        per_cycle = number(data["bandwidth_bytes_per_cycle"], f"{where}.bandwidth_bytes_per_cycle")
    if not validation.MIN_POSITIVE <= per_cycle <= validation.MAX_NUMBER:
        raise SpecError(
            f"{where}.bandwidth_bytes_per_s: {per_cycle:g} bytes per cycle at the clock is "
            f"outside [{validation.MIN_POSITIVE:g}, {validation.MAX_NUMBER:g}]"
        )
    return StorageLevel(
        name=validation.name(data["name"], f"{where}.name"),
        capacity_bytes=number(
            data.get("capacity_bytes"),
            f"{where}.capacity_bytes",
            allow_none=True,
            minimum=1,
            maximum=MAX_CAPACITY_BYTES,
        ),
        bandwidth_bytes_per_cycle=per_cycle,
        read_pj_per_byte=number(
            data["read_pj_per_byte"],
            f"{where}.read_pj_per_byte",
            positive=False,
            maximum=MAX_ENERGY_PJ,
        ),
        write_pj_per_byte=number(
            data["write_pj_per_byte"],
            f"{where}.write_pj_per_byte",
            positive=False,
            maximum=MAX_ENERGY_PJ,
        ),
        area_um2_per_byte=number(
            data.get("area_um2_per_byte", 0), f"{where}.area_um2_per_byte", positive=False
        ),
    )


def architecture_from_dict(data: Mapping, origin: str = "architecture") -> Architecture:
    """Build and validate an `Architecture` from parsed YAML."""
    data = check_keys(
        data, origin, ("name", "clock_hz", "word_bytes", "levels", "units"), ("leakage_w",)
    )
    clock = number(
        data["clock_hz"],
        f"{origin}: clock_hz",
        minimum=CLOCK_HZ_RANGE[0],
        maximum=CLOCK_HZ_RANGE[1],
    )
    if not isinstance(data["levels"], list) or not data["levels"]:
        raise SpecError(f"{origin}: levels: expected a non-empty list, outermost first")
    levels = tuple(
        _parse_level(level, f"{origin}: levels[{i}]", clock)
        for i, level in enumerate(data["levels"])
    )
    level_names = [level.name for level in levels]
    for i, level_name in enumerate(level_names):
        if level_names.index(level_name) != i:
            raise SpecError(f"{origin}: levels[{i}].name: level {level_name!r} is named twice")
    if not isinstance(data["units"], Mapping) or not data["units"]:
        raise SpecError(f"{origin}: units: expected a mapping name -> unit")
    units = tuple(
        _parse_unit(
            validation.name(name, f"{origin}: units.{name}"), unit, f"{origin}: units.{name}"
        )
        for name, unit in data["units"].items()
    )
    return Architecture(
        name=validation.name(data["name"], f"{origin}: name"),
        clock_hz=clock,
        word_bytes=integer(data["word_bytes"], f"{origin}: word_bytes", maximum=MAX_WORD_BYTES),
        levels=levels,
        units=units,
        leakage_w=number(
            data.get("leakage_w", 0), f"{origin}: leakage_w", positive=False, maximum=MAX_LEAKAGE_W
        ),
    )
