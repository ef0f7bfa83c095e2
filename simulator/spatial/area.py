"""Silicon area of a spatial architecture, by component.

    area(unit)  = PEs x (sum of its operators' unit areas + its register file)  + fixed area
    area(level) = capacity_bytes x area_um2_per_byte             (on-chip levels; DRAM: none)

Operator areas and the register file come from the architecture spec (the FuseMax presets
carry the 45 nm Accelergy areas the paper's artifact used: MAC 1545 um^2, max 49.29,
divide 23,740.94, FLAT's exponential unit 8240, a register file of depth <= 64 about 16,849
per PE; the adder is charged as part of the MAC, as the artifact does, and an operator that
runs on another operator's unit, such as a multiply on the MAC, has no area of its own).
The buffer's density was never published (the artifact ran CACTI at run time), so it is one
constant fitted by `benchmarks/calibrate_buffer_area.py` to the published Pareto areas and
marked as calibrated in the YAML, like the buffer energy.

Array sizes and capacities may be numpy arrays (the architecture numbers of a batch, as
`evaluate_batch` takes them), so a sweep's areas cost one array operation per component.
"""

from __future__ import annotations

import numpy as np

from .architecture import Architecture

UM2_PER_MM2 = 1e6


def area_by_component_mm2(arch: Architecture) -> dict[str, np.ndarray | float]:
    """Area in mm^2 of each unit's operators, each unit's register files and each on-chip
    level: keys `<unit>.ops`, `<unit>.register_files`, `<unit>.fixed` (only where nonzero)
    and `<level>`.

    Example (FuseMax's cloud accelerator, 256 x 256 PEs of MAC + max + register file):
        >>> from einsim.simulator import load_architecture
        >>> area = area_by_component_mm2(load_architecture("fusemax_cloud"))
        >>> round(area["2d.ops"], 2), round(area["2d.register_files"], 1)
        (104.48, 1104.2)
    """
    out: dict[str, np.ndarray | float] = {}
    for unit in arch.units:
        pes = 1
        for dim in unit.dims:
            pes = pes * dim
        ops_um2 = sum(cost.area_um2 for _, cost in unit.ops)
        if ops_um2:
            out[f"{unit.name}.ops"] = pes * ops_um2 / UM2_PER_MM2
        if unit.register_file_area_um2:
            out[f"{unit.name}.register_files"] = pes * unit.register_file_area_um2 / UM2_PER_MM2
        if unit.area_um2:
            out[f"{unit.name}.fixed"] = unit.area_um2 / UM2_PER_MM2
    for level in arch.levels:
        if level.capacity_bytes is not None and level.area_um2_per_byte:
            out[level.name] = level.capacity_bytes * level.area_um2_per_byte / UM2_PER_MM2
    return out


def area_mm2(arch: Architecture) -> np.ndarray | float:
    """Total area in mm^2 (the sum of `area_by_component_mm2`); 0.0 where the spec carries
    no areas (then area is not modelled for it)."""
    return sum(area_by_component_mm2(arch).values(), 0.0)


def models_area(arch: Architecture) -> bool:
    """Whether the spec carries any area (a preset without areas reports none)."""
    return bool(area_by_component_mm2(arch))
