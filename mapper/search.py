"""`search`: the best mappings of a cascade on an architecture, every cost from the simulator.

>>> import einsim
>>> from einsim.simulator import load_architecture
>>> arch = load_architecture("fusemax_cloud", {"units.2d.rows": 8, "units.2d.cols": 8})
>>> result = einsim.search(einsim.cascade("gemm"), arch, {"M": 16, "N": 8, "K": 4},
...                        strategy="greedy", budget=20_000)
>>> result.report.valid
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import sys
import time
from collections.abc import Callable
from collections.abc import Mapping as MappingABC

import numpy as np
import pandas as pd

from einsim.einsum import Cascade, SpecError
from einsim.simulator import (
    Architecture,
    Mapping,
    ModelOptions,
    bind,
    evaluate,
    evaluate_batch,
)
from einsim.simulator.spatial import KernelTotals, Overlap, combine_kernels, kernel_totals
from einsim.simulator.spatial.area import area_mm2, models_area
from einsim.simulator.targets import target_of

from .bound import gap, lower_bound
from .constraints import Constraints, load_constraints
from .objectives import OBJECTIVES, objective_values
from .result import SearchResult
from .space import MapSpace, Template, build_space
from .strategies import STRATEGIES, check_strategy

CHUNK = 1 << 18  # rows per evaluate_batch call
#: Objectives that are a sum over a mapping's kernels run one after another (latency,
#: energy with the leakage of each kernel's time, latency x a fixed area): the best rows of
#: kernels costed apart combine into the best of the grouping (`Runner.part_values`).
SEPARABLE = ("latency", "energy", "latency_area")
MAX_PARETO_POINTS = 200_000


def buffer_plan(template: Template, arch: Architecture, sizes, tensor_ranks) -> tuple:
    """What `buffer_bytes` multiplies, worked out once per template: per kernel, per tensor
    a level keeps, per rank of it either the rank's size (no loop covers it) or (the key of
    its spatial factor, the keys of its loops at or below the level)."""
    depth = {lv.name: i for i, lv in enumerate(arch.levels)}
    plan = []
    for kernel in template.mapping.kernels:
        loops: dict[str, list[tuple[str, int]]] = {}  # per rank: (key, depth) of its loops
        for key, loop in _keyed(kernel):
            loops.setdefault(loop.rank, []).append((key, depth[loop.level]))
        tensors = []
        for level, kept in kernel.keep:
            for tensor in kept:
                extents = []
                for rank in tensor_ranks[tensor]:
                    if rank not in loops:
                        extents.append(sizes[rank])
                        continue
                    keys = tuple(key for key, d in loops[rank] if d >= depth[level])
                    extents.append((f"spatial.{rank}", keys))
                tensors.append(tuple(extents))
        plan.append((kernel.name, tuple(tensors)))
    return tuple(plan)


def buffer_bytes(plan: tuple, factors_by_kernel: dict, n: int, word_bytes: int) -> np.ndarray:
    """On-chip footprint of each row of a batch (its template's `buffer_plan`): per kernel,
    the bytes of the tiles its levels keep (extent of a rank = spatial factor x its loop
    factors at or below the level, or the whole rank when no loop covers it, as the
    simulator's capacity check counts it); the most any kernel needs, since kernels run one
    after another. `factors_by_kernel`: each kernel's factors by key (`BatchReport.factors`),
    arrays of the n rows or scalars."""
    worst = np.zeros(n)
    for kernel, tensors in plan:
        factors = factors_by_kernel[kernel]
        total = np.zeros(n)
        for extents in tensors:
            extent = np.ones(n)
            for item in extents:
                if not isinstance(item, tuple):
                    extent = extent * item
                    continue
                spatial, keys = item
                part = factors.get(spatial, 1)
                for key in keys:
                    part = part * factors[key]
                extent = extent * part
            total = total + extent * word_bytes
        worst = np.maximum(worst, total)
    return worst


def _keyed(kernel):
    from einsim.simulator.spatial.mapping import loop_keys

    return zip(loop_keys(kernel), kernel.loops, strict=True)


class Runner:
    """Costs candidates for a strategy: prune, evaluate in chunks, record, count the budget."""

    def __init__(self, space, objective, options, budget, progress):
        self.space, self.objective, self.options = space, objective, options
        self.budget, self.remaining = budget, budget
        self.evaluated = self.pruned = self.invalid = 0
        self.records: list[dict] = []
        self.progress = progress
        self._tensor_ranks = space.cascade.tensor_ranks
        self._sizes = _sizes(space)
        self._reference: float | None = None
        self._plans: dict[int, tuple] = {}  # per template: `buffer_plan`
        self.separable = objective in SEPARABLE
        self.kernel_rows = 0  # rows of kernels costed apart (`kernel`)
        self._area: np.ndarray | float | None = None

    def __call__(self, t: int, rows: np.ndarray) -> np.ndarray:
        template = self.space.templates[t]
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(rows.shape, np.inf)
        keep = template.keep_rows(rows)
        self.pruned += int((~keep).sum())
        chosen = np.flatnonzero(keep)[: max(self.remaining, 0)]
        for start in range(0, len(chosen), CHUNK):
            part = chosen[start : start + CHUNK]
            out[part] = self._cost(t, template, rows[part])
        return out

    def _plan(self, t: int, template: Template) -> tuple:
        if t not in self._plans:
            arch, sizes, ranks = self.space.arch, self._sizes, self._tensor_ranks
            self._plans[t] = buffer_plan(template, arch, sizes, ranks)
        return self._plans[t]

    def kernel(self, alone: Mapping, params: dict[str, np.ndarray]) -> KernelTotals:
        """The `KernelTotals` of rows of one kernel of a partial grouping's template
        (`Template.parts`; `alone`: the template's mapping with only that kernel), costed
        on its own (`kernel_totals`). Its rows are not candidates (each maps only some of
        the cascade): the budget counts the candidates they combine into (`combined`), and
        `kernel_rows` counts them."""
        space = self.space
        (totals,) = kernel_totals(
            space.cascade, space.arch, alone, space.shape, params, self.options
        )
        self.kernel_rows += len(totals.valid)
        return totals

    def part_values(self, totals: KernelTotals) -> np.ndarray:
        """A part's term of a `SEPARABLE` objective per row, inf where it is invalid: the
        objective of the grouping is the sum of its kernels' terms."""
        n = len(totals.valid)
        alone = combine_kernels(self.space.arch, [totals], Overlap.SERIAL, n)
        values = objective_values(self.objective, alone.latency_s, alone.energy_pj, self.area)
        return np.where(alone.valid, np.broadcast_to(values, (n,)), np.inf)

    @property
    def area(self) -> np.ndarray | float:
        if self._area is None:
            self._area = area_mm2(self.space.arch)
        return self._area

    def combined(self, t: int, rows: np.ndarray, kernels: list[KernelTotals]) -> np.ndarray:
        """The objective of rows of template t (a partial grouping's, `Template.parts`)
        whose kernels were costed apart: `kernels` holds each kernel's totals at these rows
        (`KernelTotals.take`), combined as `evaluate_batch` combines them (the same floats);
        recorded and counted as candidates like `__call__`'s."""
        template = self.space.templates[t]
        rows = np.asarray(rows, dtype=np.int64)
        overlap = template.mapping.kernel_overlap
        totals = combine_kernels(self.space.arch, kernels, overlap, len(rows))
        factors = {k.name: k.factors for k in kernels}
        return self._record(t, template, rows, totals, factors, self.area)

    def _cost(self, t: int, template: Template, rows: np.ndarray) -> np.ndarray:
        space = self.space
        batch = evaluate_batch(
            space.cascade, space.arch, template.mapping, space.shape,
            template.params(rows), self.options,
        )  # fmt: skip
        return self._record(t, template, rows, batch, batch.factors, batch.area_mm2)

    def _record(self, t: int, template: Template, rows, batch, factors, area) -> np.ndarray:
        """The objective of costed rows (inf where invalid); the rows recorded and counted.
        `batch` has the totals (cycles, latency_s, energy_pj, dram_bytes, valid) of a
        `BatchReport` or `BatchTotals`; `factors` its factors by kernel."""
        space = self.space
        n = len(rows)
        valid = np.broadcast_to(batch.valid, (n,))
        values = objective_values(self.objective, batch.latency_s, batch.energy_pj, area)
        values = np.where(valid, np.broadcast_to(values, (n,)), np.inf)
        # ties on the objective go to the lower secondary: a relative nudge far below the
        # model's resolution, so strategies compare one number
        secondary = batch.energy_pj if self.objective == "latency" else batch.latency_s
        secondary = np.broadcast_to(secondary, (n,))
        if self._reference is None:
            self._reference = float(np.median(secondary)) or 1.0
        values = values * (1 + 1e-9 * secondary / (secondary + self._reference))
        self.records.append(
            {
                "template": np.full(n, t, dtype=np.int64),
                "row": rows,
                "cycles": np.broadcast_to(batch.cycles, (n,)),
                "latency_s": np.broadcast_to(batch.latency_s, (n,)),
                "energy_pj": np.broadcast_to(batch.energy_pj, (n,)),
                "dram_bytes": np.broadcast_to(batch.dram_bytes, (n,)),
                "buffer_bytes": buffer_bytes(
                    self._plan(t, template), factors, n, space.arch.word_bytes
                ),
                "valid": valid,
                "costed": np.arange(self.evaluated, self.evaluated + n, dtype=np.int64),
            }
        )
        self.evaluated += n
        self.invalid += int((~valid).sum())
        self.remaining -= n
        if self.progress is not None:
            self.progress(n)
        return values


def _sizes(space: MapSpace) -> dict[str, int]:
    """The cascade's sizes and the outer batch ranks (`split_shape`'s one rule)."""
    from einsim.simulator.shape import DEFAULT_BATCH, split_shape

    split = split_shape(space.cascade, DEFAULT_BATCH, space.shape)
    return {k: int(v) for k, v in (split.sizes | split.outer).items()}


def strategies_of(arch) -> tuple[str, ...]:
    """The search strategies an architecture's map space runs, by its target kind: every
    registered one on a spatial array, the tiling grid's own on a GPU
    (`mapper.gpu.GPU_STRATEGIES`).

    Example:
        >>> from einsim.simulator import load_architecture
        >>> strategies_of(load_architecture("h100_sxm"))
        ('exhaustive', 'random', 'greedy')
    """
    if target_of(arch).kind == "gpu":
        from .gpu import GPU_STRATEGIES

        return GPU_STRATEGIES
    return tuple(STRATEGIES)


def _resolved(template: Template, space: MapSpace, row: int, options) -> tuple[Mapping, dict]:
    """The template bound at one row, every loop factor resolved to the integer it took."""
    params = template.params(np.array([row]))
    batch = evaluate_batch(
        space.cascade, space.arch, template.mapping, space.shape, params, options
    )
    values = {}
    for kernel, factors in batch.factors.items():
        for key, value in factors.items():
            values[f"{kernel}.{key}"] = int(value[0])
    known = set(_parameter_names(template.mapping))
    mapping = bind(template.mapping, {k: v for k, v in values.items() if k in known})
    return mapping, {k: int(v[0]) for k, v in params.items()}


def _parameter_names(mapping: Mapping) -> list[str]:
    from einsim.simulator import parameter_names

    return parameter_names(mapping)


def search(
    cascade: Cascade,
    arch: Architecture,
    shape: MappingABC[str, int],
    objective: str = "latency",
    strategy: str = "greedy",
    budget: int = 1_000_000,
    seed: int = 0,
    constraints: Constraints | MappingABC | str | None = None,
    progress: bool | Callable[[int, int], object] | None = None,
    options: ModelOptions | None = None,
) -> SearchResult:
    """Search the map space of `cascade` on `arch` for the best mapping at `shape`.

    Args:
        cascade: what is computed (`einsim.cascade(name)`).
        arch: the hardware (`einsim.simulator.load_architecture`).
        shape: rank sizes, batch ranks (B, H) included.
        objective: "latency" (s), "energy" (pJ), "edp" (latency x energy), "latency_area"
            (s x mm^2) or "edap" (energy x latency x area); the area ones need an
            architecture spec that carries areas (`simulator.spatial.area`).
        strategy: a name in `STRATEGIES` (exhaustive, random, greedy, anneal).
        budget: the most candidates the simulator costs.
        seed: the random seed; the same seed gives the same result.
        constraints: a `Constraints`, a dict or a YAML path (see `mapper.constraints`).
        progress: a progress bar on stderr; None shows one when stderr is a terminal and
            the search runs longer than about 2 s. A callable is called instead with
            (candidates costed so far, budget) after every simulator call, and once more
            with (costed, costed) when the search ends (a strategy may stop short of the
            budget): `done / total` is a fraction for a dashboard.
        options: the simulator's accounting switches.

    Returns:
        A `SearchResult`; ties on the objective go to the lower secondary (energy for
        latency, latency otherwise), then to the lower candidate index. On a GPU preset
        a `SearchResult` over its tiling grid (`mapper.gpu.search_gpu`: exhaustive, random
        and greedy; anneal and constraints refused with the reason).

    Raises:
        SpecError: bad arguments, an unmappable cascade (why), contradictory constraints,
            exhaustive search on a space larger than the budget, or no valid candidate.
    """
    start = time.perf_counter()
    if objective not in OBJECTIVES:
        raise SpecError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    kind = target_of(arch).kind
    if objective in ("latency_area", "edap") and (kind != "spatial" or not models_area(arch)):
        raise SpecError(
            f"objective {objective!r} needs areas, and architecture {arch.name!r} carries none "
            "(give its operators area_um2, its PEs register_file_area_um2, its buffers "
            "area_um2_per_byte)"
        )
    if kind == "gpu":  # GPU tilings: their own grid (`mapper.gpu`), the same strategies
        from .gpu import search_gpu

        return search_gpu(
            cascade, arch, shape, objective=objective, budget=budget, seed=seed,
            strategy=strategy, constraints=constraints, progress=progress,
        )  # fmt: skip
    check_strategy(strategy)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SpecError(f"budget must be a positive integer, got {budget!r}")
    with _rare_collections():
        return _spatial_search(
            cascade, arch, shape, objective, strategy, budget, seed, constraints, progress,
            options, start,
        )  # fmt: skip


@contextlib.contextmanager
def _rare_collections(threshold: int = 100_000):
    """Python's cyclic garbage collector run every `threshold` allocations, not every 700,
    while a search runs: a search allocates millions of short-lived objects (labels, plans,
    arrays) and holds few cycles, and the young-generation passes were 10-15% of its CPU
    (hyper_attention 1K 1.80 -> 1.55 s, flexprefill 1K 6.15 -> 5.07 s; peak memory the
    same). The previous thresholds are restored after."""
    before = gc.get_threshold()
    gc.set_threshold(max(threshold, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _spatial_search(
    cascade,
    arch,
    shape,
    objective,
    strategy,
    budget,
    seed,
    constraints,
    progress,
    options,
    start,
) -> SearchResult:
    """`search` on a spatial architecture, its arguments checked."""
    space = build_space(cascade, arch, shape, load_constraints(constraints))
    options = options or ModelOptions()
    bar = None if callable(progress) else _progress_bar(budget, progress)
    runner = Runner(space, objective, options, budget, _reporter(progress, bar, budget))
    try:
        STRATEGIES[strategy](space, runner, budget, np.random.default_rng(seed))
    finally:
        if bar is not None:
            bar.close()
    if callable(progress):
        progress(runner.evaluated, runner.evaluated)
    table = _table(runner, space, objective)
    valid = table[table.valid]
    if valid.empty:
        reasons = _why_invalid(runner, space, options)
        raise SpecError(
            f"no valid mapping of {cascade.name} on {arch.name} among {runner.evaluated:,} "
            f"candidates ({runner.pruned:,} pruned){reasons}"
        )
    secondary = "energy_pj" if objective == "latency" else "latency_s"
    order = np.lexsort(
        (valid.candidate.to_numpy(), valid[secondary].to_numpy(), valid.objective.to_numpy())
    )
    best = valid.iloc[order[0]]
    t, row = int(best.template), int(best.row)
    mapping, _ = _resolved(space.templates[t], space, row, options)
    mapping = dataclasses.replace(mapping, name=f"{cascade.name}_{arch.name}_{objective}")
    report = evaluate(cascade, arch, mapping, shape, options)
    bound = lower_bound(
        cascade,
        arch,
        shape,
        space.constraints.chained_ops,
        binding=space.constraints.binding,
        spatial=space.constraints.spatial,
    )
    bound_value = bound.objective(objective, float(area_mm2(arch)))
    points = valid[["latency_s", "energy_pj", "buffer_bytes"]].to_numpy()
    if len(points) > MAX_PARETO_POINTS:
        keep = np.sort(order[:MAX_PARETO_POINTS])
        front = valid.iloc[keep][_pareto(points[keep])]
    else:
        front = valid[_pareto(points)]
    return SearchResult(
        mapping=mapping,
        report=report,
        objective=objective,
        strategy=STRATEGIES.canonical(strategy),
        seed=seed,
        budget=budget,
        candidates=table,
        pareto=front.sort_values(["latency_s", "energy_pj", "buffer_bytes"]).reset_index(drop=True),
        evaluated=runner.evaluated,
        pruned=runner.pruned,
        invalid=runner.invalid,
        wall_s=time.perf_counter() - start,
        space=space,
        best_template=t,
        best_row=row,
        lower_bound=bound_value,
        gap=gap(
            objective_values(objective, report.latency_s, report.energy_pj, report.area_mm2),
            bound_value,
        ),
    )


PARETO_CHUNK = 512  # points compared with the front found so far at once


def _pareto(points: np.ndarray) -> np.ndarray:
    """`pareto_mask(points)` of n x 3 points (latency, energy, buffer bytes), vectorized: the
    distinct points in lexicographic order, in chunks. Every point before a point is at
    most it on the first column, so a point is dominated exactly when an earlier one is at
    most it on the other two: a point of the front found so far (its staircase on those
    two, the least last column up to each middle value: one `searchsorted` per chunk) or a
    point of its own chunk that passed the staircase (compared pairwise; a dominated one
    is dominated by the front too, dominance being transitive), the chunks growing from 32
    points to `PARETO_CHUNK`. The pairwise comparison of every chunk with the whole front
    was 5% of hip's search at 16K (51 ms for 17K points, now 8 ms). A row holding a NaN is
    compared with none (it is on the front, as there)."""
    n = len(points)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    whole = ~np.isnan(points).any(axis=1)
    mask[~whole] = True
    at = np.flatnonzero(whole)
    order = at[np.lexsort(points[at].T[::-1])]
    ranked = points[order]
    fresh = np.r_[True, np.any(ranked[1:] != ranked[:-1], axis=1)]
    unique = ranked[fresh]
    on_front = np.zeros(len(unique), dtype=bool)
    middle, last = unique[:0, 1], unique[:0, 2]  # the staircase: middle up, last down
    start, size = 0, 32  # chunks of 32, 64, ... points: the first meets no staircase
    while start < len(unique):
        chunk = unique[start : start + size]
        k = np.searchsorted(middle, chunk[:, 1], side="right") - 1
        left = (k < 0) | (last[np.maximum(k, 0)] > chunk[:, 2]) if len(middle) else k < 0
        survivors = np.flatnonzero(left)
        rest = chunk[survivors]
        below = np.all(rest[:, None, :] <= rest[None, :, :], axis=2)  # [p, q]: p <= q
        np.fill_diagonal(below, False)
        new = survivors[~np.any(below, axis=0)]
        on_front[start + new] = True
        middle = np.concatenate([middle, chunk[new, 1]])
        last = np.concatenate([last, chunk[new, 2]])
        by = np.lexsort((last, middle))
        middle, last = middle[by], last[by]
        least = np.minimum.accumulate(np.r_[np.inf, last[:-1]])  # the least last before each
        middle, last = middle[last < least], last[last < least]
        start, size = start + size, min(2 * size, PARETO_CHUNK)
    mask[order] = on_front[np.cumsum(fresh) - 1]
    return mask


def _table(runner: Runner, space: MapSpace, objective: str) -> pd.DataFrame:
    columns = [
        "template", "row", "cycles", "latency_s", "energy_pj", "dram_bytes", "buffer_bytes",
        "valid", "costed",
    ]  # fmt: skip
    if not runner.records:
        return pd.DataFrame({c: [] for c in [*columns, "candidate", "edp", "objective"]})
    data = {c: np.concatenate([r[c] for r in runner.records]) for c in columns}
    frame = pd.DataFrame(data)
    # candidates in (template, row) order, the order of the space's flat numbering (a
    # template's rows after the previous template's), without sizing every template: the
    # space builds only the templates a strategy visits
    template, row = frame.template.to_numpy(), frame.row.to_numpy()
    order = np.lexsort((row, template))
    pair = np.stack([template[order], row[order]], axis=1)
    fresh = np.r_[True, np.any(pair[1:] != pair[:-1], axis=1)]
    candidate = np.empty(len(frame), dtype=np.int64)
    candidate[order] = np.cumsum(fresh) - 1
    frame["candidate"] = candidate
    frame["edp"] = frame.latency_s * frame.energy_pj
    area = float(area_mm2(space.arch))
    frame["objective"] = objective_values(objective, frame.latency_s, frame.energy_pj, area)
    frame = frame.drop_duplicates("candidate", keep="first").reset_index(drop=True)
    return frame


def _why_invalid(runner: Runner, space: MapSpace, options) -> str:
    if not runner.records:
        return ""
    first = runner.records[0]
    t, row = int(first["template"][0]), int(first["row"][0])
    template = space.templates[t]
    batch = evaluate_batch(
        space.cascade, space.arch, template.mapping, space.shape,
        template.params(np.array([row])), options,
    )  # fmt: skip
    reasons = batch.reasons(0)
    return f"; e.g. {reasons[0]}" if reasons else ""


def _reporter(progress, bar, budget: int) -> Callable[[int], None] | None:
    """What the runner calls with the candidates of each simulator call: the bar's update,
    or the user's callable with (costed so far, budget)."""
    if bar is not None:
        return bar.update
    if not callable(progress):
        return None
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        progress(done, budget)

    return report


def _progress_bar(total: int, progress: bool | None):
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="map", delay=0 if progress else 2.0, file=sys.stderr)


Strategy = Callable[..., None]
