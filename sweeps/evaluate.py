"""Evaluate a chunk of design points: what a worker runs (in-process, a pool, or Dask).

Points that share a template (the same cascade, shape, architecture, mapping and options:
everything but `mapping.<param>` values) are one `evaluate_batch` call with those
parameters as arrays. Builders are cached per process, so a worker parses each
architecture, cascade and mapping once. A point whose construction or evaluation raises is
kept with its error; the rest of the chunk goes on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence

import numpy as np

from einsim.simulator.spatial.cost import is_arch_parameter

from .spec import _canonical, arch_data, point_id

#: Output columns every row has, before the per-architecture ones (energy components,
#: buffer words per level, utilization per unit).
BASE_OUTPUTS = ("cascade", "shape", "factors", "valid", "reason", "error", "target", "calibration")
NUMBERS = ("latency_s", "cycles", "energy_pj", "dram_bytes", "area_mm2")  # area: 0 unmodelled
#: GPU-only facts per kernel (`BatchReport.kernels` rows), one column `<fact>_<kernel>` each:
#: CTAs resident per SM and waves of CTAs over the SMs; NaN where the kernel does not run.
#: (`factors` holds loop factors of spatial mappings only.)
GPU_FACTS = ("occupancy_ctas_per_sm", "waves")


def arch_columns(arch) -> list[str]:
    """The per-architecture output columns of `arch` (any target: a GPU has no energy
    columns, its energy is not modelled, and the utilization of its pipes and HBM)."""
    from einsim.simulator.targets import target_of

    if target_of(arch).kind == "gpu":
        from einsim.simulator.gpu import GPU_KERNELS

        return [
            *(f"util_{pipe}" for pipe in ("tensor", "sfu", "hbm")),
            *(f"{fact}_{kernel}" for kernel in GPU_KERNELS for fact in GPU_FACTS),
        ]
    levels = [level.name for level in arch.levels]
    return [
        *(f"energy_{c}_pj" for c in ("compute", "leakage", *levels)),
        *(f"buffer_words_{name}" for name in levels[1:]),
        *(f"util_{unit.name}" for unit in arch.units),
    ]


@functools.lru_cache(maxsize=4096)
def _architecture(name: str, overrides: str):
    from einsim.simulator.spec import apply_overrides
    from einsim.simulator.targets import target_of_spec

    data, origin = arch_data(name)
    values = json.loads(overrides)
    if values:
        data = apply_overrides(data, values, origin)
    return target_of_spec(data, origin).from_dict(data, origin)


@functools.lru_cache(maxsize=256)
def _mapping(name: str):
    from einsim.simulator import load_mapping

    return load_mapping(name)


@functools.lru_cache(maxsize=1024)
def _workload(model, algorithm, seq_len, batch, phase):
    from einsim.workloads import workload

    w = workload(model, algorithm, seq_len, batch, phase)
    return w.cascade, {**w.sizes, **dict(w.outer)}


@functools.lru_cache(maxsize=1024)
def _cascade(variant: str, params: str):
    from einsim.workloads import cascade

    return cascade(variant, **json.loads(params))


@functools.lru_cache(maxsize=256)
def _options(values: str):
    from einsim.simulator import ModelOptions

    return ModelOptions(**json.loads(values))


def _prefixed(point: Mapping, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in point.items() if k.startswith(prefix)}


def _batched(key: str, value, searched: bool) -> bool:
    """Whether `evaluate_batch` takes this point value as an array entry: a mapping
    parameter, or an architecture number it batches (not when the mapping is searched,
    since the search depends on the architecture)."""
    if key.startswith("mapping."):
        return True
    return (
        not searched
        and key.startswith("arch.")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and is_arch_parameter(key[len("arch.") :])
    )


def template_key(point: Mapping) -> frozenset:
    """What a point shares with the others of its batch: every key but the values of the
    mapping parameters and batched architecture numbers (their names are part of it)."""
    searched = isinstance(point.get("mapping"), Mapping)
    return frozenset(
        (k, None)
        if _batched(k, v, searched)
        else (k, _canonical(v) if isinstance(v, dict | list) else v)
        for k, v in point.items()
    )


def build(point: Mapping):
    """(cascade, shape, architecture, mapping, options) of a point, from the caches.

    Raises:
        SpecError: a workload, architecture or mapping that cannot be built.
    """
    from einsim.einsum import SpecError
    from einsim.simulator.targets import target_of

    variant_params = _prefixed(point, "variant.")
    if "model" in point:
        if "variant" in point or variant_params:
            raise SpecError("a point gives both model and variant: give one")
        if "seq_len" not in point:
            raise SpecError("model needs seq_len")
        cascade, shape = _workload(
            point["model"],
            point.get("algorithm", "fusemax_1pass"),
            point["seq_len"],
            point.get("batch"),
            point.get("phase", "prefill"),
        )
    elif "variant" in point:
        for key in ("algorithm", "phase"):
            if key in point:
                raise SpecError(f"{key} goes with model (a zoo workload), not with variant")
        cascade = _cascade(point["variant"], _canonical(variant_params))
        shape = {}
        if "seq_len" in point:
            shape.update(M=point["seq_len"], P=point["seq_len"])
        if "batch" in point:
            shape["B"] = point["batch"]
    else:
        raise SpecError("no workload: give model (and seq_len) or variant")
    shape = {**shape, **_prefixed(point, "shape.")}
    arch = _architecture(point["arch"], _canonical(_prefixed(point, "arch.")))
    options = _options(_canonical(_prefixed(point, "options.")))
    mapping = point["mapping"]
    if isinstance(mapping, Mapping):
        mapping = _searched(cascade, arch, shape, mapping, options)
    elif target_of(arch).kind == "spatial":
        mapping = _mapping(mapping)
    else:  # a GPU: the mapping is a tiling such as fused:Br=128,Bc=64
        mapping = target_of(arch).load_mapping(mapping)
    return cascade, shape, arch, mapping, options


def _searched(cascade, arch, shape, how: Mapping, options):
    """The mapper's best mapping for a `{search: STRATEGY, budget: N}` point."""
    from einsim import mapper
    from einsim.einsum import BackendUnavailable

    search = getattr(mapper, "search", None)
    if search is None:
        raise BackendUnavailable("the mapper (einsim.mapper.search) is not available")
    extra = {k: how[k] for k in ("objective", "seed") if k in how}
    result = search(
        cascade,
        arch,
        shape,
        strategy=how["search"],
        budget=how["budget"],
        progress=False,
        options=options,
        **extra,
    )
    return result.mapping


def _message(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def evaluate_chunk(points: Sequence[Mapping], columns: Sequence[str]) -> dict[str, list]:
    """Evaluate `points`; one row per point, in order, as columns (lists or arrays).

    Args:
        points: design points (flat dicts key -> value).
        columns: the output columns the sweep's schema has for architectures (see
            `arch_columns`); a point whose architecture has others gets an error.

    Returns:
        point_id, every input key of the points, then `BASE_OUTPUTS`, `NUMBERS` and the
        architecture columns; numbers are NaN and valid False where a point raised.
    """
    n = len(points)
    out: dict[str, list] = {"point_id": [point_id(p) for p in points]}
    keys = dict.fromkeys(k for p in points for k in p)
    for key in keys:
        out[key] = [p.get(key) for p in points]
    out |= {k: [None] * n for k in BASE_OUTPUTS}
    out["valid"] = [False] * n
    numeric = {k: np.full(n, np.nan) for k in (*NUMBERS, *columns)}
    groups: dict[frozenset, list[int]] = {}
    for i, point in enumerate(points):
        groups.setdefault(template_key(point), []).append(i)
    for rows in groups.values():
        try:
            _evaluate_group(points, rows, out, numeric, columns)
        except Exception as error:  # the group's template cannot be built or evaluated
            if len(rows) == 1:
                _record_error(out, rows[0], error)
                continue
            for i in rows:  # one row at a time: each point gets its own error
                try:
                    _evaluate_group(points, [i], out, numeric, columns)
                except Exception as single:
                    _record_error(out, i, single)
    return out | numeric


def _record_error(out: dict, i: int, error: BaseException) -> None:
    out["error"][i] = _message(error)
    out["valid"][i] = False


def _evaluate_group(points, rows: list[int], out: dict, numeric: dict, columns) -> None:
    from einsim.einsum import SpecError
    from einsim.simulator import evaluate_batch
    from einsim.simulator.targets import target_of

    first = points[rows[0]]
    cascade, shape, arch, mapping, options = build(first)
    extra = [c for c in arch_columns(arch) if c not in numeric]
    if extra:
        raise SpecError(
            f"architecture {arch.name} has output column(s) {', '.join(extra)} that the "
            "sweep's schema lacks (did an override rename a unit or level?)"
        )
    searched = isinstance(first.get("mapping"), Mapping)
    names = [k for k, v in first.items() if _batched(k, v, searched)]
    params = {k.removeprefix("mapping."): np.array([points[i][k] for i in rows]) for k in names}
    target = target_of(arch)
    if target.kind == "spatial":
        batch = evaluate_batch(cascade, arch, mapping, shape, params or None, options)
        calibration = "n/a"
    else:  # energy not modelled on a GPU: NaN, never board power x time
        batch = target.evaluate_batch(cascade, arch, mapping, shape, params or None)
        calibration = target.calibration(arch)
    index = np.asarray(rows)
    numeric["latency_s"][index] = batch.latency_s
    numeric["cycles"][index] = batch.cycles
    if target.kind == "spatial":
        numeric["energy_pj"][index] = batch.energy_pj
    numeric["dram_bytes"][index] = batch.dram_bytes
    numeric["area_mm2"][index] = batch.area_mm2
    for component, values in batch.energy_by_component_pj.items():
        if target.kind == "spatial":
            numeric[f"energy_{component}_pj"][index] = values
    for level, values in batch.buffer_words.items():
        numeric[f"buffer_words_{level}"][index] = values
    for unit, values in batch.utilization.items():
        numeric[f"util_{unit}"][index] = values
    for row in batch.kernels:
        for fact in GPU_FACTS:
            if fact in row:
                numeric[f"{fact}_{row['kernel']}"][index] = row[fact]
    shape_text = ",".join(f"{k}={v}" for k, v in sorted(shape.items()))
    factor_names = [
        (f"{kernel}.{key}", values)
        for kernel, table in batch.factors.items()
        for key, values in table.items()
    ]
    factor_rows = np.stack([v for _, v in factor_names], axis=1) if factor_names else None
    template = ",".join(f"{name}={{}}" for name, _ in factor_names)
    factors = [template.format(*row) for row in factor_rows.tolist()] if factor_names else None
    valid = batch.valid.tolist()
    for j, i in enumerate(rows):
        out["cascade"][i] = cascade.name
        out["shape"][i] = shape_text
        out["target"][i] = target.kind
        out["calibration"][i] = calibration
        out["valid"][i] = valid[j]
        if factors is not None:
            out["factors"][i] = factors[j]
        if not valid[j]:
            out["reason"][i] = "; ".join(batch.reasons(j))
