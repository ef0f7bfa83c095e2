"""The per-tile schedule of a kernel's units, as the cost model sees it (a pure function).

The model (`einsim.simulator.spatial.cost`) charges a kernel T tiles; per tile, a `pipelined`
kernel runs its stages one after another, the units of a stage side by side; a `perfect`
kernel runs every unit side by side; a `serial` one runs every Einsum in turn. Each Einsum
takes cycles / T per tile, a drain of a spatial reduction that times the reduced width
(FuseMax, MICRO 2024, Section 6.3). A tile lasts max(compute per tile, DRAM cycles / T).

`schedule` lays out the first few tiles of that account as bars for a Gantt chart. An
Einsum in an early stage that consumes a value of a later stage works on the previous
tile (FuseMax's stage 0 runs QK of tile t beside RD, RNV, AV of tile t - 1), so each bar
is labelled with the tile whose data it processes.
"""

from __future__ import annotations

import math

import pandas as pd

from einsim.einsum import Cascade, SpecError
from einsim.einsum.ir import rank_of
from einsim.simulator import Mapping, Overlap, Report
from einsim.simulator.spatial.mapping import Kernel, StageItem

#: The row of the chart that carries the off-chip transfers.
MEMORY_ROW = "DRAM"
#: The row of drains of a spatial reduction (they occupy the array's edge, not its PEs).
DRAIN_ROW = "(drain)"
COLUMNS = ("kernel", "row", "einsum", "stage", "tile", "start_cycles", "end_cycles")


def dominant_kernel(report: Report) -> str:
    """The kernel that takes the most cycles (max of compute and memory)."""
    rows = report.kernels or ({"kernel": ""},)
    return max(rows, key=lambda k: max(k.get("compute_cycles", 0.0), k.get("memory_cycles", 0.0)))[
        "kernel"
    ]


def _stages(kernel: Kernel, busy: set[str]) -> tuple[tuple[StageItem, ...], ...]:
    if kernel.overlap is Overlap.PIPELINED:
        return kernel.stages
    items = tuple(StageItem(e) for e in kernel.einsums if e in busy)
    if kernel.overlap is Overlap.PERFECT:
        return (items,)
    return tuple((item,) for item in items)


def _lags(cascade: Cascade, stages, names: set[str]) -> dict[str, int]:
    """How many tiles behind each staged Einsum runs (0: the current tile)."""
    n = len(stages)
    stage_of = {}
    for s, stage in enumerate(stages):
        for item in stage:
            if not item.drain:
                stage_of.setdefault(item.einsum, s)
    order = list(cascade.order)
    position: dict[str, int] = {}
    for name in order:
        if name not in stage_of:
            continue
        s, lag = stage_of[name], 0
        for producer in cascade.graph.predecessors(name):
            # Only reads of values produced earlier in the cascade order: a read of one's
            # own previous iteration (RD[m1] in RD[m1+1]) is loop-carried, not a wait.
            if producer in position and producer in names and producer != name:
                lag = max(lag, math.ceil((position[producer] - s) / n))
        position[name] = s + n * lag
    return {name: position[name] // n for name in position}


def _drain_width(cascade: Cascade, kernel: Kernel, einsum: str, unit: str, factors) -> float:
    reduced = {rank_of(v) for v in cascade.einsum(einsum).reduced_vars}
    ranks = dict(kernel.spatial).get(unit, ())
    return math.prod(factors.get(f"spatial.{r}", 1) for r in ranks if r in reduced)


def schedule(
    cascade: Cascade,
    mapping: Mapping,
    report: Report,
    kernel: str | None = None,
    tiles: int = 3,
) -> pd.DataFrame:
    """The first `tiles` tiles of a kernel as bars (one row per unit, plus drains and DRAM).

    Args:
        cascade: the cascade the report was computed for.
        mapping: the mapping the report was computed with.
        report: `einsim.simulator.evaluate`'s report.
        kernel: the kernel's name; default the one taking the most cycles.
        tiles: how many tiles to lay out (fewer when the kernel has fewer).

    Returns:
        A DataFrame with columns kernel, row (a unit, `(drain)` or `DRAM`), einsum, stage,
        tile (whose data the bar processes), start_cycles, end_cycles. The tile period is
        max(compute, memory) / T, so `period x T` is the kernel's cycles in the report.

    Raises:
        SpecError: a kernel the mapping does not have, or tiles < 1.

    Example:
        FuseMax on BERT at 4K tokens: 196,608 tiles of 142 cycles, four stages.

        >>> from einsim.dashboard.design import DesignSpec, evaluate_design
        >>> r = evaluate_design(DesignSpec(seq_len=4096))
        >>> bars = schedule(r.cascade, r.mapping, r.report, tiles=2)
        >>> float(bars.end_cycles.max()), bars.row.unique().tolist()
        (284.0, ['2d', '1d', 'DRAM'])
    """
    if isinstance(tiles, bool) or not isinstance(tiles, int) or tiles < 1:
        raise SpecError(f"schedule: tiles must be a positive integer, got {tiles!r}")
    name = kernel or dominant_kernel(report)
    spec = next((k for k in mapping.kernels if k.name == name), None)
    if spec is None:
        known = ", ".join(k.name for k in mapping.kernels)
        raise SpecError(
            f"schedule: mapping {mapping.name} has no kernel {name!r}; kernels: {known}"
        )
    summary = next(k for k in report.kernels if k["kernel"] == name)
    total_tiles = max(1.0, float(summary["tiles"]))
    table = report.per_einsum[report.per_einsum.kernel == name]
    cycles = dict(zip(table.einsum, table.cycles, strict=True))
    units = dict(zip(table.einsum, table.unit, strict=True))
    busy = {e for e, c in cycles.items() if c > 0}
    stages = _stages(spec, busy)
    lags = _lags(cascade, stages, set(spec.einsums))
    factors = report.factors.get(name, {})
    # Per tile: within a stage each row runs its items back to back; the stage lasts as
    # long as its longest row (the model's max over units), stages follow each other.
    layout, offset = [], 0.0
    for s, stage in enumerate(stages):
        ends: dict[str, float] = {}
        for item in stage:
            per_tile = cycles.get(item.einsum, 0.0) / total_tiles
            if item.drain:
                row = DRAIN_ROW
                per_tile *= _drain_width(cascade, spec, item.einsum, units[item.einsum], factors)
            else:
                row = units.get(item.einsum) or "(none)"
            if per_tile <= 0:
                continue
            start = offset + ends.get(row, 0.0)
            ends[row] = ends.get(row, 0.0) + per_tile
            layout.append((row, item.einsum, s, lags.get(item.einsum, 0), start, per_tile))
        offset += max(ends.values(), default=0.0)
    memory = float(summary["memory_cycles"]) / total_tiles
    period = max(offset, memory)
    bars = []
    for t in range(min(tiles, math.ceil(total_tiles))):
        base = t * period
        for row, einsum, s, lag, start, length in layout:
            if t - lag < 0:
                continue  # the pipeline is filling: no previous tile yet
            bars.append((name, row, einsum, s, t - lag, base + start, base + start + length))
        if memory > 0:
            bars.append((name, MEMORY_ROW, MEMORY_ROW, -1, t, base, base + memory))
    return pd.DataFrame(bars, columns=list(COLUMNS))


def tile_period_cycles(bars: pd.DataFrame, report: Report, kernel: str | None = None) -> float:
    """Cycles of one tile of the kernel: its cycles in the report / its tiles."""
    name = kernel or (bars.kernel.iloc[0] if len(bars) else dominant_kernel(report))
    summary = next(k for k in report.kernels if k["kernel"] == name)
    kernel_cycles = max(float(summary["compute_cycles"]), float(summary["memory_cycles"]))
    return kernel_cycles / max(1.0, float(summary["tiles"]))
