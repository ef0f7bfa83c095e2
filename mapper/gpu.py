"""GPU tilings as a map space: every FlashAttention-style tiling of a grid, costed in one
`evaluate_gpu_batch` call per kernel form (the simulator's GPU model gives every number).

The space: kernel form (fused one-pass, or unfused QK / softmax / AV through HBM) x Br x Bc
x shared-memory stages x warps per CTA x split-KV (fused only). Tilings the model finds
invalid (MMA shapes, shared memory or registers over the limits) are counted, not chosen.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from collections.abc import Mapping as MappingABC

import numpy as np
import pandas as pd

from einsim.einsum import Cascade, SpecError
from einsim.simulator import Report
from einsim.simulator.gpu import (
    GPU_PARAMETERS,
    GpuArchitecture,
    GpuMapping,
    KernelForm,
    evaluate_gpu,
    evaluate_gpu_batch,
)

from .constraints import Constraints, load_constraints
from .objectives import OBJECTIVES, objective_values, pareto_mask
from .result import SearchResult
from .strategies import STRATEGIES, check_strategy

#: The grid searched per parameter (powers of two a CUDA kernel author would try).
GPU_GRID: dict[str, tuple[int, ...]] = {
    "block_q": (16, 32, 64, 128, 256),
    "block_kv": (16, 32, 64, 128, 256),
    "stages": (1, 2, 3, 4),
    "warps": (1, 2, 4, 8),
    "split_kv": (1, 2, 4, 8, 16),
}


def _explain(best: GpuMapping, report: Report, candidates: pd.DataFrame, note: str) -> str:
    """The chosen tiling in words, beside the best of the other kernel form."""
    valid = candidates[candidates.valid]
    lines = [
        f"{best.kernel.value} kernel: query tiles of Br={best.block_q} rows per CTA, key/value "
        f"tiles of Bc={best.block_kv} through a {best.stages}-stage shared-memory ring, "
        f"{best.warps} warps per CTA"
        + (f", keys split over {best.split_kv} CTAs" if best.split_kv > 1 else "")
        + f": {report.latency_s * 1e3:.4g} ms.",
        f"{len(candidates)} tilings costed, {int((~candidates.valid).sum())} invalid (shared "
        "memory, registers or MMA shapes).",
    ]
    other = valid[valid.kernel != best.kernel.value]
    if len(other):
        row = other.loc[other.objective.idxmin()]
        ratio = row.latency_s / report.latency_s
        lines.append(f"Best {row.kernel} tiling: {ratio:.2f}x the latency.")
    lines += [note] if note else []
    return "\n".join(lines)


#: The strategies the GPU tiling grid runs (anneal is not implemented on it).
GPU_STRATEGIES = ("exhaustive", "random", "greedy")

#: GPU searches return the one `SearchResult` type (kept as a name for old imports).
GpuSearchResult = SearchResult


def _grid(kernel: KernelForm) -> dict[str, np.ndarray]:
    values = [
        GPU_GRID[k] if (k != "split_kv" or kernel is KernelForm.FUSED) else (1,)
        for k in GPU_PARAMETERS
    ]
    rows = np.array(list(itertools.product(*values)), dtype=np.int64)
    return {key: rows[:, i] for i, key in enumerate(GPU_PARAMETERS)}


def _cost(cascade, arch, shape, dtype, kernel: KernelForm, params, objective) -> pd.DataFrame:
    batch = evaluate_gpu_batch(cascade, arch, GpuMapping(kernel), params, shape=shape, dtype=dtype)
    frame = pd.DataFrame({"kernel": kernel.value, **params})
    frame["latency_s"] = batch.latency_s
    frame["energy_pj"] = batch.energy_pj
    frame["hbm_bytes"] = batch.dram_bytes
    frame["valid"] = batch.valid
    frame["objective"] = objective_values(objective, batch.latency_s, batch.energy_pj)
    return frame


def _greedy(cost, grids, budget: int) -> list[pd.DataFrame]:
    """Coordinate descent per kernel form: from the form's default tiling, sweep one
    parameter over its grid values at a time (one batch per sweep), keep the best valid
    value, until a whole round improves nothing or the budget is spent."""
    frames, seen = [], set()
    for kernel, grid in grids.items():
        current = {k: int(getattr(GpuMapping(kernel), k)) for k in GPU_PARAMETERS}
        best = np.inf
        improved = True
        while improved and len(seen) < budget:
            improved = False
            for key in GPU_PARAMETERS:
                values = [
                    v
                    for v in np.unique(grid[key])
                    if (kernel, *{**current, key: int(v)}.values()) not in seen
                ]
                values = values[: max(0, budget - len(seen))]
                if not values:
                    continue
                params = {
                    k: np.array([current[k]] * len(values), dtype=np.int64) for k in GPU_PARAMETERS
                }
                params[key] = np.array(values, dtype=np.int64)
                frame = cost(kernel, params)
                frames.append(frame)
                seen.update(
                    (kernel, *(int(frame[k].iloc[i]) for k in GPU_PARAMETERS))
                    for i in range(len(frame))
                )
                valid = frame[frame.valid]
                if len(valid) and valid.objective.min() < best:
                    best = float(valid.objective.min())
                    current[key] = int(valid.loc[valid.objective.idxmin(), key])
                    improved = True
    return frames


def search_gpu(
    cascade: Cascade,
    arch: GpuArchitecture,
    shape: MappingABC[str, int],
    objective: str = "latency",
    budget: int = 100_000,
    seed: int = 0,
    dtype: str = "bf16",
    strategy: str | None = None,
    constraints=None,
    progress: Callable[[int, int], object] | bool | None = None,
) -> SearchResult:
    """The best tiling of `cascade` on a GPU, as a `SearchResult` over the tiling grid
    (kernel form x Br x Bc x stages x warps x split-KV).

    Strategies: exhaustive (the whole grid; refused when it exceeds the budget), random (a
    seeded sample of `budget` tilings), greedy (coordinate descent per kernel form from its
    default tiling); None: exhaustive when the grid fits the budget, else random. anneal is
    refused (not implemented on this grid). Constraints are refused (none applies to GPU
    tilings yet). Ties go to lower energy, then grid order. `progress(costed, total)` is
    called after every batch and once at the end.

    Example:
        >>> import einsim
        >>> from einsim.simulator import load_architecture
        >>> result = search_gpu(einsim.attention("causal"), load_architecture("h100_sxm"),
        ...                     dict(B=1, H=8, E=64, F=64, M=2048, P=2048), budget=500)
        >>> result.report.valid, result.evaluated, result.strategy
        (True, 500, 'random')
    """
    if objective not in OBJECTIVES:
        raise SpecError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if objective in ("latency_area", "edap"):
        raise SpecError(f"objective {objective!r} needs areas, and GPU {arch.name!r} has none")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SpecError(f"budget must be a positive number of tilings, got {budget!r}")
    if constraints is not None and load_constraints(constraints) != Constraints():
        raise SpecError(
            f"constraints on a GPU ({arch.name}): no constraint applies to GPU tilings yet "
            "(they pin loop factors, bindings and fusion of spatial mappings); search without"
        )
    start = time.perf_counter()
    grids = {kernel: _grid(kernel) for kernel in KernelForm}
    total = sum(len(g["block_q"]) for g in grids.values())
    if strategy is None:
        strategy = "exhaustive" if budget >= total else "random"
    check_strategy(strategy)
    strategy = STRATEGIES.canonical(strategy)
    if strategy == "exhaustive" and total > budget:
        raise SpecError(
            f"exhaustive: the GPU tiling grid has {total:,} tilings, over the budget {budget:,}"
        )
    if strategy not in GPU_STRATEGIES:
        raise SpecError(
            f"strategy {strategy!r} is not implemented on the GPU tiling grid ({total:,} "
            f"tilings); use {', '.join(GPU_STRATEGIES)}"
        )
    report_progress = progress if callable(progress) else None
    costed = [0]

    def cost(kernel, params):
        frame = _cost(cascade, arch, shape, dtype, kernel, params, objective)
        costed[0] += len(frame)
        if report_progress is not None:
            report_progress(costed[0], min(budget, total))
        return frame

    if strategy == "greedy":
        frames = _greedy(cost, grids, budget)
    else:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(total, budget, replace=False)) if budget < total else None
        frames, offset = [], 0
        for kernel, grid in grids.items():
            n = len(grid["block_q"])
            rows = (
                np.arange(n)
                if keep is None
                else keep[(keep >= offset) & (keep < offset + n)] - offset
            )
            offset += n
            if rows.size:
                frames.append(cost(kernel, {key: values[rows] for key, values in grid.items()}))
    candidates = pd.concat(frames, ignore_index=True)
    if report_progress is not None:
        report_progress(len(candidates), len(candidates))
    valid = candidates[candidates.valid]
    if valid.empty:
        raise SpecError(
            f"no valid GPU tiling of {cascade.name or 'the cascade'} on {arch.name} among "
            f"{len(candidates)} tried; the first reason: shared memory or registers"
        )
    order = np.lexsort(
        (valid.index.to_numpy(), valid.energy_pj.to_numpy(), valid.objective.to_numpy())
    )
    best = valid.iloc[order[0]]
    mapping = GpuMapping(KernelForm(best.kernel), **{k: int(best[k]) for k in GPU_PARAMETERS})
    report = evaluate_gpu(cascade, arch, mapping, shape=shape, dtype=dtype)
    front = pareto_mask(valid[["latency_s", "energy_pj"]].to_numpy())
    note = (
        f"Strategy {strategy} on the GPU tiling grid of {total:,} tilings; GPU predictions are "
        "uncalibrated (simulator/data/gpu_calibration.csv) and GPU energy is not modelled."
    )
    return SearchResult(
        mapping=mapping,
        report=report,
        objective=objective,
        strategy=strategy,
        seed=seed,
        budget=budget,
        candidates=candidates,
        pareto=valid[front],
        evaluated=len(candidates),
        pruned=0,
        invalid=int((~candidates.valid).sum()),
        wall_s=time.perf_counter() - start,
        space=None,
        best_template=0,
        best_row=int(best.name),
        lower_bound=math.nan,
        gap=math.nan,
        explanation=_explain(mapping, report, candidates, note),
        target="gpu",
    )
