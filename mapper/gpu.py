"""GPU tilings as a map space: every FlashAttention-style tiling of a grid, costed in one
`evaluate_gpu_batch` call per kernel form (the simulator's GPU model gives every number).

The space: kernel form (fused one-pass, or unfused QK / softmax / AV through HBM) x Br x Bc
x shared-memory stages x warps per CTA x split-KV (fused only). Tilings the model finds
invalid (MMA shapes, shared memory or registers over the limits) are counted, not chosen.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

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

from .search import OBJECTIVES, objective_values, pareto_mask

#: The grid searched per parameter (powers of two a CUDA kernel author would try).
GPU_GRID: dict[str, tuple[int, ...]] = {
    "block_q": (16, 32, 64, 128, 256),
    "block_kv": (16, 32, 64, 128, 256),
    "stages": (1, 2, 3, 4),
    "warps": (1, 2, 4, 8),
    "split_kv": (1, 2, 4, 8, 16),
}


@dataclass(frozen=True)
class GpuSearchResult:
    """The best GPU tiling found, its report, and every tiling costed.

    Attributes:
        mapping: the best `GpuMapping`; report: its `Report` (`evaluate_gpu`).
        candidates: one row per tiling: kernel, the tile parameters, latency_s, energy_pj,
            hbm_bytes, valid, objective. pareto: the valid rows no other beats on latency
            and energy. evaluated / invalid: tilings costed / found invalid; wall_s.
    """

    mapping: GpuMapping
    report: Report
    objective: str
    candidates: pd.DataFrame
    pareto: pd.DataFrame
    evaluated: int
    invalid: int
    wall_s: float
    strategy: str = "grid"  # the whole grid, or "sample" of it under a budget
    pruned: int = 0

    def explain(self) -> str:
        """The chosen tiling in words, beside the best of the other kernel form."""
        best = self.mapping
        valid = self.candidates[self.candidates.valid]
        lines = [
            f"{best.kernel.value} kernel: query tiles of Br={best.block_q} rows per CTA, key/value "
            f"tiles of Bc={best.block_kv} through a {best.stages}-stage shared-memory ring, "
            f"{best.warps} warps per CTA"
            + (f", keys split over {best.split_kv} CTAs" if best.split_kv > 1 else "")
            + f": {self.report.latency_s * 1e3:.4g} ms.",
            f"{self.evaluated} tilings costed, {self.invalid} invalid (shared memory, "
            "registers or MMA shapes).",
        ]
        other = valid[valid.kernel != best.kernel.value]
        if len(other):
            row = other.loc[other.objective.idxmin()]
            ratio = row.latency_s / self.report.latency_s
            lines.append(f"Best {row.kernel} tiling: {ratio:.2f}x the latency.")
        return "\n".join(lines)


def _grid(kernel: KernelForm) -> dict[str, np.ndarray]:
    values = [
        GPU_GRID[k] if (k != "split_kv" or kernel is KernelForm.FUSED) else (1,)
        for k in GPU_PARAMETERS
    ]
    rows = np.array(list(itertools.product(*values)), dtype=np.int64)
    return {key: rows[:, i] for i, key in enumerate(GPU_PARAMETERS)}


def search_gpu(
    cascade: Cascade,
    arch: GpuArchitecture,
    shape: MappingABC[str, int],
    objective: str = "latency",
    budget: int = 100_000,
    seed: int = 0,
    dtype: str = "bf16",
) -> GpuSearchResult:
    """The best tiling of `cascade` on a GPU: the whole grid when it fits the budget, else
    a seeded random sample of `budget` tilings. Ties go to lower energy, then grid order.

    Example:
        >>> import einsim
        >>> from einsim.simulator import load_architecture
        >>> result = search_gpu(einsim.attention("causal"), load_architecture("h100_sxm"),
        ...                     dict(B=1, H=8, E=64, F=64, M=2048, P=2048), budget=500)
        >>> result.report.valid, result.evaluated
        (True, 500)
    """
    if objective not in OBJECTIVES:
        raise SpecError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    if budget < 1:
        raise SpecError(f"budget must be a positive number of tilings, got {budget}")
    start = time.perf_counter()
    grids = {kernel: _grid(kernel) for kernel in KernelForm}
    total = sum(len(g["block_q"]) for g in grids.values())
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, budget, replace=False)) if budget < total else None
    frames, offset = [], 0
    for kernel, grid in grids.items():
        n = len(grid["block_q"])
        rows = (
            np.arange(n) if keep is None else keep[(keep >= offset) & (keep < offset + n)] - offset
        )
        offset += n
        if not rows.size:
            continue
        params = {key: values[rows] for key, values in grid.items()}
        batch = evaluate_gpu_batch(
            cascade, arch, GpuMapping(kernel), params, shape=shape, dtype=dtype
        )
        frame = pd.DataFrame({"kernel": kernel.value, **params})
        frame["latency_s"] = batch.latency_s
        frame["energy_pj"] = batch.energy_pj
        frame["hbm_bytes"] = batch.dram_bytes
        frame["valid"] = batch.valid
        frames.append(frame)
    candidates = pd.concat(frames, ignore_index=True)
    candidates["objective"] = objective_values(
        objective, candidates.latency_s.to_numpy(), candidates.energy_pj.to_numpy()
    )
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
    return GpuSearchResult(
        mapping=mapping,
        report=report,
        objective=objective,
        candidates=candidates,
        pareto=valid[front],
        evaluated=len(candidates),
        invalid=int((~candidates.valid).sum()),
        wall_s=time.perf_counter() - start,
        strategy="grid" if keep is None else "sample",
    )
