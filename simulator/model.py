"""The analytic cycle/energy model: one cascade, one architecture, one mapping, one shape.

Per Einsum (Nayak et al., FuseMax, MICRO 2024, Section 6; Timeloop's compute model):
    cycles = sum over operators of count(op) x cycles(op on the bound unit)
             x batch x padding / lanes used
where lanes used is the product of the spatial factors of the ranks the Einsum iterates
(padding: a partial spatial tile or a partial last tile of a partition costs idle lanes).
Per kernel: `perfect` overlap takes the max over units, `serial` the sum, `pipelined` runs
T tiles of stages (units overlap inside a stage, stages add up). Compute overlaps memory:
kernel cycles = max(compute, DRAM bytes / DRAM bytes-per-cycle). DRAM traffic comes from the
loop nest by reuse analysis: a tensor is re-fetched once per iteration of each loop that is
irrelevant to it and sits above its innermost relevant loop (every such loop when the
tensor bypasses the on-chip buffers). Energy = sum of action counts x energy per action.
"""

from __future__ import annotations

import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field

import pandas as pd

from einsim.einsum import Cascade, MappingError, Op, SpecError, resolve_shape
from einsim.einsum.analysis import einsum_op_counts
from einsim.einsum.ir import rank_of

from .architecture import Architecture, ComputeUnit
from .mapping import Kernel, Mapping, Overlap


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """Switches for the places where papers account differently (named, never forked).

    Attributes:
        drop_exp_energy: charge no energy for exp (the FuseMax artifact's +Cascade run lost
            it through a misspelled key; off by default, on only to reproduce that run).
    """

    drop_exp_energy: bool = False


@dataclass(frozen=True)
class Report:
    """Everything the model predicts for one mapping. Named fields, units in names."""

    cycles: float
    latency_s: float
    energy_pj: float
    energy_by_component_pj: dict[str, float]
    dram_bytes: float
    dram_bytes_by_tensor: dict[str, float]
    buffer_words: dict[str, float]
    utilization: dict[str, float]
    per_einsum: pd.DataFrame
    factors: dict[str, dict[str, int]]
    valid: bool = True
    reasons: tuple[str, ...] = ()
    kernels: tuple[dict, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "latency_s": self.latency_s,
            "cycles": self.cycles,
            "energy_pj": self.energy_pj,
            "energy_by_component_pj": self.energy_by_component_pj,
            "dram_bytes": self.dram_bytes,
            "utilization": self.utilization,
            "factors": self.factors,
            "per_einsum": self.per_einsum.to_dict(orient="records"),
        }


def _relevant(cascade: Cascade, loop_rank: str, ranks: tuple[str, ...]) -> bool:
    """Whether a loop over `loop_rank` indexes a tensor with `ranks`: the same rank, or one
    of the same partition family (a loop over M1 indexes K[e,m])."""
    if loop_rank in ranks:
        return True
    part = cascade.partition_of.get(loop_rank)
    return part is not None and bool({part.rank, part.upper, part.lower} & set(ranks))


class _KernelModel:
    """Resolves one kernel's factors and costs; a helper of `evaluate`, not public."""

    def __init__(self, cascade, arch, kernel: Kernel, sizes, batch, options, where):
        self.cascade, self.arch, self.kernel = cascade, arch, kernel
        self.sizes, self.batch, self.options, self.where = sizes, batch, options, where
        self.offchip = arch.levels[0].name
        for einsum in kernel.einsums:
            cascade.einsum(einsum)  # raises with the known names
        self.spatial = self._spatial_factors()
        self.reasons: list[str] = []
        self.loop_factors = self._loop_factors()

    # -- factors ----------------------------------------------------------------------
    def _spatial_factors(self) -> dict[str, int]:
        factors: dict[str, int] = {}
        for unit_name, ranks in self.kernel.spatial:
            unit = self.arch.unit(unit_name, self.where)
            if len(ranks) != len(unit.dims):
                raise MappingError(
                    f"{self.where}spatial.{unit_name}: {len(ranks)} rank(s) for a unit with "
                    f"{len(unit.dims)} dimension(s) {unit.dims}"
                )
            for rank, dim in zip(ranks, unit.dims, strict=True):
                size = int(self.sizes[rank]) if rank in self.sizes else None
                if size is None:
                    raise MappingError(f"{self.where}spatial.{unit_name}: unknown rank {rank!r}")
                factors[rank] = max(factors.get(rank, 0), min(size, dim))
        return factors

    def _extent_below(self, rank: str, level_index: int, factors: list[int]) -> int:
        """The extent of `rank` in a tile held at storage level `level_index`."""
        looped = [
            (i, f)
            for i, (loop, f) in enumerate(zip(self.kernel.loops, factors, strict=True))
            if loop.rank == rank
        ]
        if not looped:
            return int(self.sizes[rank])
        extent = self.spatial.get(rank, 1)
        for i, f in looped:
            if self._level_index(self.kernel.loops[i].level) >= level_index:
                extent *= f
        return extent

    def _level_index(self, name: str) -> int:
        for i, level in enumerate(self.arch.levels):
            if level.name == name:
                return i
        self.arch.level(name, self.where)  # raises with the known levels
        return -1

    def footprint_bytes(self, level_index: int, factors: list[int]) -> float:
        level = self.arch.levels[level_index]
        total = 0
        for tensor in self.kernel.kept_at(level.name):
            ranks = self.cascade.tensor_ranks.get(tensor)
            if ranks is None:
                raise MappingError(f"{self.where}keep.{level.name}: unknown tensor {tensor!r}")
            elements = 1
            for rank in ranks:
                elements *= self._extent_below(rank, level_index, factors)
            total += elements
        return total * self.arch.word_bytes

    def _loop_factors(self) -> list[int]:
        loops = self.kernel.loops
        factors = [f if isinstance(f, int) else 1 for f in (loop.factor for loop in loops)]
        fits = [i for i, loop in enumerate(loops) if loop.factor == "fit"]
        rests = [i for i, loop in enumerate(loops) if loop.factor == "rest"]
        if len(fits) > 1:
            raise MappingError(f"{self.where}loops: at most one factor may be 'fit'")

        def fill_rests() -> None:
            for i in rests:
                rank = loops[i].rank
                others = self.spatial.get(rank, 1)
                for j, loop in enumerate(loops):
                    if loop.rank == rank and j != i:
                        others *= factors[j]
                factors[i] = max(1, math.ceil(int(self.sizes[rank]) / others))

        for i, loop in enumerate(loops):
            if loop.rank not in self.sizes:
                raise MappingError(f"{self.where}loops[{i}]: unknown rank {loop.rank!r}")
            self._level_index(loop.level)
        if fits:
            i = fits[0]
            rank, level_index = loops[i].rank, self._level_index(loops[i].level)
            capacity = self.arch.levels[level_index].capacity_bytes
            others = self.spatial.get(rank, 1)
            for j, loop in enumerate(loops):
                if loop.rank == rank and j != i and isinstance(loop.factor, int):
                    others *= loop.factor
            span = max(1, math.ceil(int(self.sizes[rank]) / others))
            best = None
            for candidate in sorted((d for d in range(1, span + 1) if span % d == 0), reverse=True):
                factors[i] = candidate
                fill_rests()
                if capacity is None or self.footprint_bytes(level_index, factors) <= capacity:
                    best = candidate
                    break
            if best is None:
                factors[i] = 1
                fill_rests()
                self.reasons.append(
                    f"{self.kernel.name}: even a factor of 1 for {rank} at "
                    f"{loops[i].level} overflows its {capacity:.0f} B "
                    f"({self.footprint_bytes(level_index, factors):.0f} B needed)"
                )
        else:
            fill_rests()
        for level_index, level in enumerate(self.arch.levels):
            if level.capacity_bytes is None or not self.kernel.kept_at(level.name):
                continue
            need = self.footprint_bytes(level_index, factors)
            if need > level.capacity_bytes and not self.reasons:
                self.reasons.append(
                    f"{self.kernel.name}: tensors kept at {level.name} need {need:.0f} B, "
                    f"capacity {level.capacity_bytes:.0f} B"
                )
        return factors

    @property
    def tiles(self) -> int:
        return math.prod(self.loop_factors) * self.batch

    # -- compute ----------------------------------------------------------------------
    def einsum_cycles(self, name: str) -> dict:
        einsum = self.cascade.einsum(name)
        counts = einsum_op_counts(self.cascade, einsum, self.sizes)
        unit_name = self.kernel.unit_of(name)
        if not counts:
            return {
                "einsum": name,
                "unit": unit_name or "",
                "ops": 0,
                "cycles": 0.0,
                "energy_pj": 0.0,
                "counts": {},
            }
        if unit_name is None:
            raise MappingError(f"{self.where}einsum {name} has operations but no binding")
        unit = self.arch.unit(unit_name, self.where)
        where = f"{self.where}{name}: "
        cost_per_point = {op: unit.cost(op, where) for op in counts}
        cycles = sum(count * cost_per_point[op].cycles for op, count in counts.items())
        for group in self.kernel.chained_ops:
            chained = [op for op in counts if op.value in group]
            if len(chained) > 1:  # a PE pipelines these: the slowest sets the pace
                per_op = [counts[op] * cost_per_point[op].cycles for op in chained]
                cycles -= sum(per_op) - max(per_op)
        energy = sum(
            count * cost_per_point[op].energy_pj
            for op, count in counts.items()
            if not (self.options.drop_exp_energy and op is Op.EXP)
        )
        lanes, padding = self._lanes(unit, einsum)
        total_ops = sum(counts.values())
        return {
            "einsum": name,
            "unit": unit_name,
            "ops": total_ops * self.batch,
            "cycles": cycles * self.batch * padding / lanes,
            # Share of the unit's PEs doing useful work while the Einsum runs.
            "useful_fraction": lanes / unit.lanes / padding,
            "energy_pj": energy * self.batch,
            "counts": {op: c * self.batch for op, c in counts.items()},
        }

    def _lanes(self, unit: ComputeUnit, einsum) -> tuple[int, float]:
        iterated = {rank_of(v) for v in einsum.iter_vars}
        ranks = dict(self.kernel.spatial).get(unit.name, ())
        lanes, padding = 1, 1.0
        for rank in ranks:
            if rank in iterated:
                factor = self.spatial[rank]
                size = int(self.sizes[rank])
                lanes *= factor
                padding *= math.ceil(size / factor) * factor / size
        for part in self.cascade.partitions:
            if {part.upper, part.lower} <= iterated:
                padded = int(self.sizes[part.upper]) * int(self.sizes[part.lower])
                padding *= padded / int(self.sizes[part.rank])
        return lanes, padding

    # -- memory -----------------------------------------------------------------------
    def _elements(self, tensor: str) -> int:
        """Elements of a tensor over the whole batch (iterative ranks without their +1)."""
        ranks = self.cascade.tensor_ranks[tensor]
        return math.prod(int(self.sizes[r]) for r in ranks) * self.batch

    def dram_traffic(self) -> dict[str, float]:
        """Bytes moved to and from off-chip memory per tensor."""
        members = set(self.kernel.einsums)
        kept = {t for level, tensors in self.kernel.keep if level != self.offchip for t in tensors}
        traffic: dict[str, float] = {}
        for tensor, ranks in self.cascade.tensor_ranks.items():
            producer = self.cascade.producers.get(tensor)
            produced_here = producer is not None and producer.output in members
            readers = set(self.cascade.graph.successors(tensor))
            read_here = bool(readers & members) and not produced_here
            written_out = produced_here and (
                tensor in self.cascade.outputs or bool(readers - members)
            )
            if not (read_here or written_out):
                continue
            factor = self._refetch(ranks, kept_or_output=written_out or tensor in kept)
            traffic[tensor] = self._elements(tensor) * factor * self.arch.word_bytes
        if self.kernel.spill_fraction:
            spilled = 0.0
            for tensor in kept:
                producer = self.cascade.producers.get(tensor)
                if producer is None or producer.output not in members:
                    continue
                reads = len(set(self.cascade.graph.successors(tensor)) & members)
                spilled += self._elements(tensor) * (1 + reads)
            traffic["(spill)"] = spilled * self.kernel.spill_fraction * self.arch.word_bytes
        return traffic

    def buffer_words(self, dram: dict[str, float]) -> dict[str, dict[str, float]]:
        """Words read and written at each on-chip level for the tensors it keeps.

        Writes: fills from DRAM plus every element an array produces into the level.
        Reads: per tensor, the most any consumer fetches (consumers of one tile share the
        fetch), each consumer fetching the tensor once per iteration of every loop irrelevant
        to it (the PE registers keep nothing across buffer-level loops); a read of the
        terminal element of an iterative rank fetches that slice once. `dram` is this
        kernel's `dram_traffic()`: its fills are the buffer's writes.
        """
        members = set(self.kernel.einsums)
        out: dict[str, dict[str, float]] = {}
        for level in self.arch.levels[1:]:
            reads = writes = 0.0
            for tensor in self.kernel.kept_at(level.name):
                ranks = self.cascade.tensor_ranks[tensor]
                elements = self._elements(tensor)
                writes += dram.get(tensor, 0.0) / self.arch.word_bytes
                producer = self.cascade.producers.get(tensor)
                if producer is not None and producer.output in members:
                    writes += elements
                fetched = terminal = 0.0
                for einsum in self.cascade.einsums:
                    if einsum.output not in members:
                        continue
                    for access in einsum.operands:
                        if access.tensor != tensor:
                            continue
                        if self.cascade.read_kind(einsum, access)[1]:
                            slice_ = math.prod(
                                int(self.sizes[r])
                                for r, it in zip(
                                    ranks, self.cascade.iterative_dims[tensor], strict=True
                                )
                                if not it
                            )
                            terminal = max(terminal, slice_ * self.batch)
                        else:
                            refetch = self._refetch(ranks, kept_or_output=False, offchip_only=False)
                            fetched = max(fetched, elements * refetch)
                reads += fetched + terminal
            out[level.name] = {"reads": reads, "writes": writes}
        return out

    def _refetch(self, ranks: tuple[str, ...], kept_or_output: bool, offchip_only=True) -> int:
        offchip_loops = [
            (loop, f)
            for loop, f in zip(self.kernel.loops, self.loop_factors, strict=True)
            if loop.level == self.offchip or not offchip_only
        ]
        relevant = [_relevant(self.cascade, loop.rank, ranks) for loop, _ in offchip_loops]
        innermost = max((i for i, r in enumerate(relevant) if r), default=-1)
        factor = 1
        for i, ((_, f), rel) in enumerate(zip(offchip_loops, relevant, strict=True)):
            if not rel and (not kept_or_output or i < innermost):
                factor *= f
        return factor


def evaluate(
    cascade: Cascade,
    arch: Architecture,
    mapping: Mapping,
    shape: MappingABC[str, int],
    options: ModelOptions | None = None,
) -> Report:
    """Predict cycles, energy, traffic and utilization of `mapping` running `cascade`.

    Args:
        cascade: what is computed.
        arch: the hardware.
        mapping: where and when (kernels, loops, spatial unrolling, binding, stages).
        shape: rank sizes, batch ranks (B, H) included; missing batch ranks count as 1.
        options: accounting switches (`ModelOptions`).

    Returns:
        A `Report`; `valid` is False (with `reasons`) when a kept tile overflows its level.

    Raises:
        MappingError: a mapping that names unknown Einsums, units, levels or ranks, or binds
            an Einsum to a unit lacking one of its operators.
    """
    options = options or ModelOptions()
    sizes = dict(resolve_shape(cascade, shape))
    batch = 1
    for rank in mapping.batch:
        value = shape.get(rank, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError(f"shape: {rank} must be a positive integer, got {value!r}")
        sizes[rank] = value
        batch *= value
    mapped = [e for k in mapping.kernels for e in k.einsums]
    missing = [e.output for e in cascade.einsums if e.output not in mapped]
    if missing:
        raise MappingError(
            f"mapping {mapping.name}: Einsum(s) {', '.join(missing)} of cascade "
            f"{cascade.name or '(unnamed)'} are in no kernel"
        )
    clock = arch.clock_hz
    dram = arch.levels[0]
    rows, reasons, kernel_rows, factors_report = [], [], [], {}
    busy: dict[str, float] = {u.name: 0.0 for u in arch.units}
    useful: dict[str, float] = {u.name: 0.0 for u in arch.units}
    energy = {"compute": 0.0, dram.name: 0.0, "leakage": 0.0}
    traffic_total: dict[str, float] = {}
    buffer_words: dict[str, float] = {}
    kernel_cycles, memory_cycles_total = [], 0.0
    for kernel in mapping.kernels:
        where = f"mapping {mapping.name}, kernel {kernel.name}: "
        model = _KernelModel(cascade, arch, kernel, sizes, batch, options, where)
        reasons += model.reasons
        factors_report[kernel.name] = {
            f"{loop.level}.{loop.rank}": f
            for loop, f in zip(kernel.loops, model.loop_factors, strict=True)
        } | {f"spatial.{r}": f for r, f in model.spatial.items()}
        per = {name: model.einsum_cycles(name) for name in kernel.einsums}
        unit_cycles: dict[str, float] = {}
        for row in per.values():
            if row["unit"]:
                unit_cycles[row["unit"]] = unit_cycles.get(row["unit"], 0.0) + row["cycles"]
        if kernel.overlap is Overlap.PERFECT:
            compute = max(unit_cycles.values(), default=0.0)
        elif kernel.overlap is Overlap.SERIAL:
            compute = sum(unit_cycles.values())
        else:
            compute = _pipelined_cycles(kernel, per, model, cascade)
        traffic = model.dram_traffic()
        memory = sum(traffic.values()) / dram.bandwidth_bytes_per_cycle
        kernel_cycles.append(max(compute, memory))
        for unit, cycles in unit_cycles.items():
            busy[unit] += cycles
        memory_cycles_total += memory
        for row in per.values():
            if row["unit"]:
                useful[row["unit"]] += row["cycles"] * row["useful_fraction"]
        for tensor, moved in traffic.items():
            traffic_total[tensor] = traffic_total.get(tensor, 0.0) + moved
        energy["compute"] += sum(row["energy_pj"] for row in per.values())
        energy[dram.name] += (
            sum(traffic.values()) * (dram.read_pj_per_byte + dram.write_pj_per_byte) / 2
        )
        for level_name, words in model.buffer_words(traffic).items():
            level = arch.level(level_name)
            pj = words["reads"] * level.read_pj_per_byte + words["writes"] * level.write_pj_per_byte
            energy[level_name] = energy.get(level_name, 0.0) + pj * arch.word_bytes
            buffer_words[level_name] = buffer_words.get(level_name, 0.0) + sum(words.values())
        kernel_rows.append(
            {
                "kernel": kernel.name,
                "compute_cycles": compute,
                "memory_cycles": memory,
                "tiles": model.tiles,
            }
        )
        for row in per.values():
            rows.append(
                {
                    "kernel": kernel.name,
                    "einsum": row["einsum"],
                    "unit": row["unit"],
                    "ops": row["ops"],
                    "cycles": row["cycles"],
                    "energy_pj": row["energy_pj"],
                }
            )
    if mapping.kernel_overlap is Overlap.PERFECT:
        total = max([*busy.values(), memory_cycles_total])
    else:
        total = sum(kernel_cycles)
    latency = total / clock
    energy["leakage"] = arch.leakage_w * latency * 1e12
    table = pd.DataFrame(rows)
    table["busy_fraction"] = table["cycles"] / total if total else 0.0
    # Utilization: PE-cycles doing useful work over PE-cycles available (idle columns of a
    # weight-stationary mapping and padded lanes count as idle).
    utilization = {unit: (cycles / total if total else 0.0) for unit, cycles in useful.items()}
    return Report(
        cycles=total,
        latency_s=latency,
        energy_pj=sum(energy.values()),
        energy_by_component_pj=energy,
        dram_bytes=sum(traffic_total.values()),
        dram_bytes_by_tensor=traffic_total,
        buffer_words=buffer_words,
        utilization=utilization,
        per_einsum=table,
        factors=factors_report,
        valid=not reasons,
        reasons=tuple(reasons),
        kernels=tuple(kernel_rows),
    )


def _pipelined_cycles(kernel: Kernel, per: dict[str, dict], model: _KernelModel, cascade) -> float:
    """T tiles x sum over stages of the max over units of per-tile cycles (the waterfall)."""
    tiles = model.tiles
    staged = {item.einsum for stage in kernel.stages for item in stage if not item.drain}
    unstaged = [n for n, row in per.items() if row["cycles"] and n not in staged]
    if unstaged:
        raise MappingError(
            f"kernel {kernel.name}: Einsum(s) {', '.join(unstaged)} have work but no stage"
        )
    per_tile = 0.0
    for stage in kernel.stages:
        by_unit: dict[str, float] = {}
        for item in stage:
            cycles = per[item.einsum]["cycles"] / tiles
            if item.drain:
                # The result of a spatial reduction leaves the array one column at a time.
                einsum = cascade.einsum(item.einsum)
                unit = model.arch.unit(per[item.einsum]["unit"])
                ranks = dict(kernel.spatial).get(unit.name, ())
                reduced = {rank_of(v) for v in einsum.reduced_vars}
                width = math.prod(model.spatial[r] for r in ranks if r in reduced) or 1
                by_unit["(drain)"] = by_unit.get("(drain)", 0.0) + cycles * width
            else:
                unit_name = per[item.einsum]["unit"]
                by_unit[unit_name] = by_unit.get(unit_name, 0.0) + cycles
        per_tile += max(by_unit.values(), default=0.0)
    return per_tile * tiles
