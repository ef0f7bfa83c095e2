"""A lower bound on a search's objective over the whole map space, and the certificate.

Every mapping the simulator costs (`simulator.spatial.cost`) takes at least

    latency >= max(compute, traffic / DRAM bandwidth) / clock
    compute  = max(largest Einsum, sum of Einsums / units, work only one unit can do)
    energy  >= sum of Einsums' least compute energy + traffic x DRAM pJ/byte + leakage

where an Einsum's cycles on a unit are its op counts (the points its mask keeps:
`einsum_op_counts` through `occupancy`) x the unit's cycles per op, pipelined operator
groups (`chained_ops`) at the pace of the slowest, over every lane of the unit (Timeloop's
compute model, FuseMax Section 6: a mapping can only lose lanes to padding or folding), and
each Einsum takes the fastest unit that supports all its operators. Units overlap at best
perfectly, so the busiest unit carries at least the mean and every Einsum only it supports.

Traffic is the least DRAM traffic of any mapping: each output of the cascade written once,
each input read once. An input that only masked Einsums read may be fetched in part (a
mapping that skips empty tiles fetches only the tiles they touch); it is counted by the
projection bound: a consumer keeping a fraction f of its points touches at least f of the
input (|S| <= |proj(S)| x the other ranks' extent), taken where the input's indices are
plain variables. An Einsum without a mask in a masked cascade may skip tiles too (the
kernel's empty tiles), so it adds no compute there.

The FuseMax pass analysis would raise the input term to one read per pass where nothing
fits on chip, but a mapping may hold the pass's intermediate (a row of QK) instead of
re-reading the input, so this model's minimal traffic stays one read: the bound keeps the
passes only as a fact it reports (`passes`). Buffer accesses and fill/drain add only cost.

    >>> import einsim
    >>> from einsim.simulator import load_architecture
    >>> bound = lower_bound(einsim.cascade("gemm"), load_architecture("fusemax_cloud"),
    ...                     {"M": 256, "N": 256, "K": 256})
    >>> bound.traffic_bytes == 3 * 256 * 256 * 2
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

from einsim.einsum import Cascade, pass_analysis
from einsim.einsum.ir import Var, accesses
from einsim.simulator import Architecture, ComputeUnit
from einsim.simulator.shape import DEFAULT_BATCH, split_shape
from einsim.simulator.spatial.cost import _op_counts


@dataclass(frozen=True, slots=True)
class LowerBound:
    """The least latency and energy any mapping in the space can take (see module doc).

    Attributes:
        compute_cycles: the compute term; memory_cycles: traffic / DRAM bytes per cycle.
        traffic_bytes: the least DRAM traffic.
        latency_s, energy_pj: the bounds; compute_energy_pj, dram_energy_pj: its parts.
        passes: the most passes the pass analysis requires over any rank (reported).
    """

    compute_cycles: float
    memory_cycles: float
    traffic_bytes: float
    latency_s: float
    energy_pj: float
    compute_energy_pj: float
    dram_energy_pj: float
    passes: int

    def objective(self, objective: str, area_mm2: float = 0.0) -> float:
        """The bound on `objective` (as `mapper.objectives.objective_values`)."""
        from .objectives import objective_values

        return float(objective_values(objective, self.latency_s, self.energy_pj, area_mm2))


def _cycles_per_einsum(unit: ComputeUnit, counts: dict, chained) -> float:
    """count x cycles per op, each chained group at the pace of its slowest operator."""
    per_op = {op: count * unit.cost(op).cycles for op, count in counts.items()}
    total = sum(per_op.values())
    for group in chained:
        inside = [per_op[op] for op in per_op if op.value in group]
        if len(inside) > 1:
            total -= sum(inside) - max(inside)
    return total


def _runs(unit: ComputeUnit, op) -> bool:
    """The unit has `op` or lowers it (`ComputeUnit.runs`, where this einsim has it)."""
    runs = getattr(unit, "runs", None)
    return runs(op) if runs is not None else unit.supports(op)


def _chained_values(chained_ops) -> tuple[frozenset, ...]:
    return tuple(frozenset(getattr(op, "value", op) for op in group) for group in chained_ops)


def lower_bound(
    cascade: Cascade,
    arch: Architecture,
    shape: MappingABC[str, int],
    chained_ops=(),
) -> LowerBound:
    """The least latency and energy of any mapping of `cascade` on `arch` at `shape`.

    Args:
        cascade, arch, shape: as `mapper.search`.
        chained_ops: operator groups the PEs pipeline (`Constraints.chained_ops`).

    Returns:
        A `LowerBound`; `.objective(name)` for a search's objective.
    """
    split = split_shape(cascade, DEFAULT_BATCH, shape)
    sizes = {k: int(v) for k, v in split.sizes.items()}
    batch = float(split.multiplier)
    key = tuple(sizes.items())
    chained = _chained_values(chained_ops)
    masked = any(e.where is not None for e in cascade.einsums)
    capable = [u for u in arch.units if u.ops]
    fastest: list[float] = []
    only: dict[str, float] = {u.name: 0.0 for u in capable}
    energy = 0.0
    kept_fraction: dict[str, float] = {}
    for einsum in cascade.einsums:
        counts, dense = _op_counts(cascade, einsum.output, key)
        counts = {op: float(n) for op, n in counts.items() if n}
        whole = sum(float(n) for n in dense.values())
        kept_fraction[einsum.output] = sum(counts.values()) / whole if whole else 0.0
        if not counts or (masked and einsum.where is None):
            continue  # no work, or work the kernel's empty tiles may skip
        units = [u for u in capable if all(_runs(u, op) for op in counts)]
        if not units:
            continue  # no mapping exists; the search says why
        cycles = [_cycles_per_einsum(u, counts, chained) * batch / u.lanes for u in units]
        fastest.append(min(cycles))
        if len(units) == 1:
            only[units[0].name] += cycles[0]
        energy += batch * min(
            sum(n * u.cost(op).energy_pj for op, n in counts.items()) for u in units
        )
    compute = max([max(fastest, default=0.0), sum(fastest) / max(len(capable), 1), *only.values()])
    traffic = 0.0
    word = arch.word_bytes
    for tensor in cascade.outputs:
        traffic += math.prod(sizes[r] for r in cascade.tensor_ranks[tensor]) * batch * word
    for tensor in cascade.input_names:
        elements = math.prod(sizes[r] for r in cascade.tensor_ranks[tensor]) * batch
        traffic += elements * word * _read_fraction(cascade, tensor, masked, kept_fraction)
    dram = arch.levels[0]
    memory = traffic / dram.bandwidth_bytes_per_cycle
    latency_s = max(compute, memory) / arch.clock_hz
    dram_pj = traffic * (dram.read_pj_per_byte + dram.write_pj_per_byte) / 2
    leakage_pj = arch.leakage_w * latency_s * 1e12
    return LowerBound(
        compute_cycles=compute,
        memory_cycles=memory,
        traffic_bytes=traffic,
        latency_s=latency_s,
        energy_pj=energy + dram_pj + leakage_pj,
        compute_energy_pj=energy,
        dram_energy_pj=dram_pj,
        passes=max(pass_analysis(cascade).values(), default=1),
    )


def _read_fraction(cascade: Cascade, tensor: str, masked: bool, kept: dict) -> float:
    """The least share of an input any mapping reads from DRAM (module doc)."""
    best = 0.0
    for einsum in cascade.einsums:
        reads = [a for a in accesses(einsum.expr) if a.tensor == tensor]
        if not reads:
            continue
        if not masked:
            return 1.0
        if einsum.where is None:
            continue  # may skip the kernel's empty tiles
        if all(isinstance(i, Var) for a in reads for i in a.indices):
            best = max(best, kept[einsum.output])
    return best


def gap(best: float, bound: float) -> float:
    """best / bound - 1: how far the best mapping found may be from the best possible
    (0 proves it optimal over every mapping the model can cost, not just the space).

    Example:
        >>> gap(1.25, 1.0)
        0.25
    """
    if bound <= 0:
        return math.inf
    return best / bound - 1
