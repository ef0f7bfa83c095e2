"""What a search returns on any target: `SearchResult`, and `explain`, its readable words on
a spatial array (a GPU search brings its own, `SearchResult.explanation`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from einsim.simulator import Mapping, Report

from .objectives import objective_values
from .space import MapSpace, Template


@dataclass(frozen=True)
class SearchResult:
    """What a search found. Named fields; `candidates` has one row per costed candidate.

    Attributes:
        mapping: the best mapping, every factor an integer (loads with `einsim evaluate`).
        report: its `Report` from `einsim.simulator.evaluate`.
        objective: "latency", "energy" or "edp"; strategy, seed, budget: as asked.
        candidates: template (its labels: `space.templates[t].structure`), row, cycles,
            latency_s, energy_pj, edp, dram_bytes, buffer_bytes, valid, objective, and costed:
            the candidate's place in costing order (0 first; with the `progress` callback's
            time stamps, quality against time).
        pareto: the valid candidates no other beats on latency, energy and buffer bytes.
        evaluated, pruned, invalid: candidates costed, dropped before costing, and costed
            but invalid (overflow, ...). wall_s: seconds the search took.
        space: the `MapSpace` searched; best_template, best_row: where the best lies.
        lower_bound: the least objective any mapping of the space can take
            (`mapper.bound.lower_bound`: compute per unit, least DRAM traffic); gap: best /
            lower_bound - 1, how far the best found may be from the best possible.
    """

    mapping: Mapping
    report: Report
    objective: str
    strategy: str
    seed: int
    budget: int
    candidates: pd.DataFrame
    pareto: pd.DataFrame
    evaluated: int
    pruned: int
    invalid: int
    wall_s: float
    space: MapSpace | None  # None on a GPU: its tiling grid (mapper.gpu)
    best_template: int
    best_row: int
    lower_bound: float = 0.0
    gap: float = math.inf
    explanation: str = ""  # the target's own words (a GPU's tiling); "" on a spatial array
    target: str = "spatial"  # the target kind searched (einsim.TARGETS)

    @property
    def optimal(self) -> bool:
        """Proven optimal in the space: the exhaustive strategy costed every candidate
        left after pruning (it refuses a space larger than its budget), or the best meets
        the lower bound."""
        return self.strategy == "exhaustive" or self.gap <= 1e-9

    @property
    def best_value(self) -> float:
        report = self.report
        return float(
            objective_values(self.objective, report.latency_s, report.energy_pj, report.area_mm2)
        )

    def explain(self) -> str:
        """What was chosen (fusion, binding, stages, tiles) and why it beat the rest."""
        return self.explanation or explain(self)


def _fmt_s(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds:.3g} s"


def explain(result: SearchResult) -> str:
    """Readable words: the chosen fusion, binding, stages, tiles, and the runners-up."""
    space, report, mapping = result.space, result.report, result.mapping
    template = space.templates[result.best_template]
    labels = dict(template.structure)
    lines = [
        f"Best {result.objective} mapping of {space.cascade.name} on {space.arch.name} "
        f"({', '.join(f'{k}={v}' for k, v in space.shape.items())}): latency "
        f"{_fmt_s(report.latency_s)}, energy {report.energy_pj:.4g} pJ, DRAM "
        f"{report.dram_bytes:.4g} B, utilization "
        + ", ".join(f"{u} {v:.1%}" for u, v in report.utilization.items())
        + ".",
        f"Searched with '{result.strategy}' (seed {result.seed}): {result.evaluated:,} "
        f"candidates costed, {result.pruned:,} pruned before costing, {result.invalid:,} "
        f"invalid, in {result.wall_s:.2f} s; {len(space.templates):,} templates in the space.",
        f"Lower bound on {result.objective} over the whole space: {result.lower_bound:.4g}; "
        f"gap {result.gap:.1%}"
        + (
            " (exhaustive: optimal in the space)."
            if result.strategy == "exhaustive"
            else " (the best possible is at most this much better)."
        ),
        f"Fusion: {labels.get('fusion')} ({len(mapping.kernels)} kernel(s)).",
    ]
    for kernel in mapping.kernels[:4]:
        by_unit: dict[str, list[str]] = {}
        for einsum, unit in kernel.binding:
            by_unit.setdefault(unit, []).append(einsum)
        binding = "; ".join(f"{u}: {', '.join(e)}" for u, e in by_unit.items())
        spatial = ", ".join(f"{u} unrolls {' x '.join(r)}" for u, r in kernel.spatial)
        lines.append(f"Kernel {kernel.name}: binding {binding}; {spatial or 'no unrolling'}.")
        if kernel.stages:
            stages = " | ".join(", ".join(i.einsum for i in s) for s in kernel.stages)
            lines.append(
                f"  Pipelined per tile in {len(kernel.stages)} stages: {stages} (units "
                "overlap inside a stage; an Einsum placed before its producers finishes the "
                "previous tile)."
            )
        else:
            lines.append(f"  Overlap: {kernel.overlap.value}.")
        loops = ", ".join(f"{lp.level}.{lp.rank}={lp.factor}" for lp in kernel.loops)
        factors = ", ".join(f"{r}={f}" for r, f in report.factors[kernel.name].items())
        lines.append(f"  Loops outer to inner: {loops or 'none'} (factors: {factors}).")
        kept = "; ".join(f"{lv} keeps {', '.join(t)}" for lv, t in kernel.keep)
        lines.append(f"  {kept or 'Every tensor bypasses the on-chip buffer'}.")
    if len(mapping.kernels) > 4:
        lines.append(f"... and {len(mapping.kernels) - 4} more kernels.")
    lines += _runners_up(result)
    return "\n".join(lines)


def _runners_up(result: SearchResult) -> list[str]:
    """Why it won: the best candidate of each other value of every structural choice."""
    table = result.candidates[result.candidates.valid]
    space = result.space
    best_labels = dict(space.templates[result.best_template].structure)
    best = result.best_value
    out = ["Why: the best alternative for each structural choice it made:"]
    per_template = table.groupby("template").objective.min()
    # the labels of the templates costed only (`Templates.structure`, from their recipes:
    # building every template of a space of 759,207, flexprefill's, took 50 s)
    labels = pd.DataFrame(
        [dict(space.templates.structure(int(t))) for t in per_template.index],
        index=per_template.index,
    )
    for dim in ("fusion", "compute", "order", "keep"):
        if dim not in labels:
            continue
        mine = best_labels.get(dim)
        others = per_template[labels[dim].to_numpy() != mine]
        if others.empty:
            out.append(f"  {dim}: no alternative was costed.")
            continue
        t = int(others.idxmin())
        ratio = float(others.min()) / best if best else math.inf
        alt = dict(space.templates[t].structure).get(dim)
        what = _describe(space.templates[t]) if dim == "compute" else alt
        out.append(f"  {dim}: {what} is {ratio:.3g}x worse ({result.objective}).")
    return out


def _describe(template: Template) -> str:
    kernel = template.mapping.kernels[0]
    units = {}
    for e, u in kernel.binding:
        units.setdefault(u, []).append(e)
    return "binding " + "; ".join(f"{u}: {','.join(e)}" for u, e in units.items())
