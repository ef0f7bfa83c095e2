"""What a search minimizes: the objectives (`OBJECTIVES`, `objective_values`) and the Pareto
front of candidates (`pareto_mask`), shared by every target's search (`mapper.search`,
`mapper.gpu`) and the lower bound (`mapper.bound`)."""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("latency", "energy", "edp", "latency_area", "edap")


def objective_values(objective: str, latency_s, energy_pj, area_mm2=0.0) -> np.ndarray:
    """latency_s, energy_pj, their product (EDP, pJ*s), latency x area (s*mm^2) or
    energy x latency x area (EDAP, pJ*s*mm^2). The area ones compare designs of different
    size; inside one search the architecture, and so its area, is fixed."""
    latency_s, energy_pj = np.asarray(latency_s), np.asarray(energy_pj)
    if objective == "latency":
        return latency_s
    if objective == "energy":
        return energy_pj
    if objective == "latency_area":
        return latency_s * area_mm2
    if objective == "edap":
        return latency_s * energy_pj * area_mm2
    return latency_s * energy_pj


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Rows of `points` (n x k, lower is better) that no other row dominates (<= on every
    column, < on one); duplicates of a front point are all kept.

    Example:
        >>> pareto_mask(np.array([[1, 3], [2, 2], [2, 3], [3, 1]])).tolist()
        [True, True, False, True]
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=bool)
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    order = np.lexsort(unique.T[::-1])
    front: list[int] = []
    on_front = np.zeros(len(unique), dtype=bool)
    for i in order:
        p = unique[i]
        if front:
            f = unique[front]
            if np.any(np.all(f <= p, axis=1)):
                continue
        front.append(i)
        on_front[i] = True
    return on_front[inverse.ravel()]
