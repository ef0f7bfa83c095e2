"""Where and when each Einsum runs: kernels, loop nests, spatial unrolling, binding, stages.

A `Mapping` is a list of kernels (fused groups of Einsums). Inside a kernel:
  * `loops`: the temporal loops above the arrays, outermost first, each at a storage level
    (`DRAM`, `GB`) over a rank with a factor: an integer, `rest` (whatever remains of the
    rank), or `fit` (the largest factor that keeps the level within capacity);
  * `spatial`: the ranks unrolled onto each unit's dimensions (2d: [P, M0] = rows x cols);
  * `binding`: the unit each Einsum runs on;
  * `keep`: the tensors a storage level holds for the kernel (others bypass it);
  * `stages`: the per-tile pipeline (units overlap inside a stage, stages follow each other);
  * `overlap`: `pipelined` (the stages), `perfect` (every unit and memory overlap), `serial`.
Batch ranks (`batch`, default B, H) are outer, embarrassingly parallel copies of the whole
cascade, but only where the cascade does not iterate them (H is a batch rank of a per-head
cascade and a cascade rank of `gqa`): `simulator.shape.split_shape` is the one rule.
`skip_empty_tiles` (default true): the hardware skips a tile of the kernel's loop nest in
which the cascade's masks keep no point (no compute, no buffer access, no off-chip fetch);
false computes every tile in full and masks the results (the published dense behaviour).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, replace
from pathlib import Path

from einsim.einsum import SpecError, validation

from ..spec import check_keys, load_yaml, number


class Overlap(enum.Enum):
    PIPELINED = "pipelined"
    PERFECT = "perfect"
    SERIAL = "serial"


@dataclass(frozen=True, slots=True)
class Loop:
    """A temporal loop at a storage level; factor is an int, "rest" or "fit"."""

    level: str
    rank: str
    factor: int | str = "rest"


@dataclass(frozen=True, slots=True)
class StageItem:
    """An Einsum in a stage, or a drain of its result across the array (`drain: LM`)."""

    einsum: str
    drain: bool = False


@dataclass(frozen=True, slots=True)
class Kernel:
    name: str
    einsums: tuple[str, ...]
    binding: tuple[tuple[str, str], ...]  # (einsum, unit)
    spatial: tuple[tuple[str, tuple[str, ...]], ...]  # (unit, ranks per dimension)
    loops: tuple[Loop, ...] = ()
    keep: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (level, tensors)
    stages: tuple[tuple[StageItem, ...], ...] = ()
    overlap: Overlap = Overlap.PERFECT
    chained_ops: tuple[frozenset, ...] = ()  # operators a PE overlaps inside one Einsum
    spill_fraction: float = 0.0  # share of the kept intermediates' buffer traffic that spills
    spatial_factors: tuple[tuple[str, int], ...] = ()  # (rank, factor); default min(size, dim)

    def unit_of(self, einsum: str) -> str | None:
        return dict(self.binding).get(einsum)

    def kept_at(self, level: str) -> tuple[str, ...]:
        return dict(self.keep).get(level, ())


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    cascade: str
    kernels: tuple[Kernel, ...]
    batch: tuple[str, ...] = ("B", "H")
    kernel_overlap: Overlap = Overlap.SERIAL  # how kernels combine: in sequence, or perfect
    skip_empty_tiles: bool = True  # skip the tiles a mask empties (see the module docstring)


def _factor(value: object, where: str) -> int | str:
    if value in ("rest", "fit"):
        return value  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool):
        return validation.rank_size(value, where)
    raise SpecError(
        f"{where}: a loop factor is a positive integer, 'rest' or 'fit'; got {value!r}"[:200]
    )


def _positive_int(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return validation.rank_size(value, where)
    raise SpecError(f"{where}: expected a positive integer, got {value!r}"[:200])


def _table(value: object, where: str) -> MappingABC:
    """An optional mapping (`spatial: {2d: [P, M0]}`); absent or null is empty."""
    if value is None:
        return {}
    if not isinstance(value, MappingABC):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list:
    """An optional list (`loops: [...]`); absent or null is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _known_cascades() -> set[str]:
    from einsim.workloads import ATTENTION, KERNELS

    names = set(KERNELS)
    for entry in ATTENTION.entries():
        names |= {entry.name, *entry.aliases}
    return names


def kernel_from_dict(data: object, where: str) -> Kernel:
    data = check_keys(
        data,
        where,
        ("name", "einsums", "binding"),
        (
            "spatial",
            "spatial_factors",
            "loops",
            "keep",
            "stages",
            "overlap",
            "chained_ops",
            "spill_fraction",
        ),
    )
    einsums = validation.names(data["einsums"], f"{where}.einsums")
    binding_data = _table(data["binding"], f"{where}.binding")
    binding = tuple(
        (einsum, validation.name(unit, f"{where}.binding.{unit}"))
        for unit, names in binding_data.items()
        for einsum in validation.names(names, f"{where}.binding.{unit}")
    )
    bound = [einsum for einsum, _ in binding]
    for einsum in bound:
        if bound.count(einsum) > 1:
            raise SpecError(f"{where}.binding: {einsum} is bound to two units")
    spatial = tuple(
        (
            validation.name(unit, f"{where}.spatial"),
            validation.names(ranks, f"{where}.spatial.{unit}"),
        )
        for unit, ranks in _table(data.get("spatial"), f"{where}.spatial").items()
    )
    loops = []
    for i, loop in enumerate(_list(data.get("loops"), f"{where}.loops")):
        at = f"{where}.loops[{i}]"
        loop = check_keys(loop, at, ("level", "rank"), ("factor",))
        loops.append(
            Loop(
                validation.name(loop["level"], f"{at}.level"),
                validation.name(loop["rank"], f"{at}.rank"),
                _factor(loop.get("factor", "rest"), f"{at}.factor"),
            )
        )
    keep = tuple(
        (
            validation.name(level, f"{where}.keep"),
            validation.names(tensors, f"{where}.keep.{level}"),
        )
        for level, tensors in _table(data.get("keep"), f"{where}.keep").items()
    )
    stages = []
    for i, stage in enumerate(_list(data.get("stages"), f"{where}.stages")):
        items = []
        for item in stage if isinstance(stage, list) else [stage]:
            if isinstance(item, str):
                items.append(StageItem(item))
            elif isinstance(item, MappingABC) and set(item) == {"drain"}:
                items.append(
                    StageItem(validation.name(item["drain"], f"{where}.stages[{i}]"), drain=True)
                )
            else:
                raise SpecError(
                    f"{where}.stages[{i}]: an item is an Einsum name or {{drain: NAME}}"
                )
        stages.append(tuple(items))
    overlap = Overlap(
        validation.choice(
            data.get("overlap", "perfect"), f"{where}.overlap", tuple(o.value for o in Overlap)
        )
    )
    chained = tuple(
        frozenset(_chained_group(group, f"{where}.chained_ops[{i}]"))
        for i, group in enumerate(_list(data.get("chained_ops"), f"{where}.chained_ops"))
    )
    spill = number(
        data.get("spill_fraction", 0), f"{where}.spill_fraction", positive=False, maximum=1.0
    )
    spatial_data = _table(data.get("spatial_factors"), f"{where}.spatial_factors")
    unrolled = {rank for _, ranks in spatial for rank in ranks}
    for rank in spatial_data:
        if rank not in unrolled:
            raise SpecError(
                f"{where}.spatial_factors: {rank!r} is not unrolled in spatial "
                f"(unrolled: {', '.join(sorted(unrolled)) or 'none'})"
            )
    spatial_factors = tuple(
        (str(rank), _positive_int(value, f"{where}.spatial_factors.{rank}"))
        for rank, value in spatial_data.items()
    )
    kernel = Kernel(
        name=validation.name(data["name"], f"{where}.name"),
        einsums=einsums,
        binding=binding,
        spatial=spatial,
        loops=tuple(loops),
        keep=keep,
        stages=tuple(stages),
        overlap=overlap,
        chained_ops=chained,
        spill_fraction=spill,
        spatial_factors=spatial_factors,
    )
    if kernel.overlap is Overlap.PIPELINED and not kernel.stages:
        raise SpecError(f"{where}: overlap 'pipelined' needs stages")
    staged = [item.einsum for stage in kernel.stages for item in stage if not item.drain]
    for name in staged:
        if name not in einsums:
            raise SpecError(f"{where}.stages: {name!r} is not an Einsum of this kernel")
    return kernel


def mapping_from_dict(data: MappingABC, origin: str = "mapping") -> Mapping:
    data = check_keys(
        data,
        origin,
        ("name", "cascade", "kernels"),
        ("batch", "kernel_overlap", "skip_empty_tiles"),
    )
    if not isinstance(data["kernels"], list) or not data["kernels"]:
        raise SpecError(f"{origin}: kernels: expected a non-empty list")
    kernels = tuple(
        kernel_from_dict(k, f"{origin}: kernels[{i}]") for i, k in enumerate(data["kernels"])
    )
    kernel_names = [k.name for k in kernels]
    for i, kernel_name in enumerate(kernel_names):
        if kernel_names.index(kernel_name) != i:
            raise SpecError(f"{origin}: kernels[{i}].name: kernel {kernel_name!r} is named twice")
    kernel_overlap = Overlap(
        validation.choice(
            data.get("kernel_overlap", "serial"), f"{origin}: kernel_overlap", ("serial", "perfect")
        )
    )
    skip = data.get("skip_empty_tiles", True)
    if not isinstance(skip, bool):
        raise SpecError(f"{origin}: skip_empty_tiles: expected true or false, got {skip!r}"[:200])
    cascade = validation.name(data["cascade"], f"{origin}: cascade")
    known = _known_cascades()
    if cascade not in known:
        raise SpecError(
            f"{origin}: cascade: unknown cascade {cascade!r}; known: {', '.join(sorted(known))}"
        )
    return Mapping(
        name=validation.name(data["name"], f"{origin}: name"),
        cascade=cascade,
        kernels=kernels,
        batch=validation.names(data.get("batch", ["B", "H"]), f"{origin}: batch"),
        kernel_overlap=kernel_overlap,
        skip_empty_tiles=skip,
    )


def _chained_group(group: object, where: str) -> tuple[str, ...]:
    from einsim.einsum import Op

    known = tuple(op.value for op in Op)
    return tuple(validation.choice(op, where, known) for op in validation.names(group, where))


def kernel_to_dict(kernel: Kernel) -> dict:
    """A kernel as `kernel_from_dict` reads it; fields at their defaults are left out."""
    binding: dict[str, list[str]] = {}
    for einsum, unit in kernel.binding:
        binding.setdefault(unit, []).append(einsum)
    data: dict = {"name": kernel.name, "einsums": list(kernel.einsums)}
    if kernel.overlap is not Overlap.PERFECT:
        data["overlap"] = kernel.overlap.value
    if kernel.loops:
        data["loops"] = [
            {"level": loop.level, "rank": loop.rank, "factor": loop.factor} for loop in kernel.loops
        ]
    if kernel.spatial:
        data["spatial"] = {unit: list(ranks) for unit, ranks in kernel.spatial}
    if kernel.spatial_factors:
        data["spatial_factors"] = dict(kernel.spatial_factors)
    data["binding"] = binding
    if kernel.keep:
        data["keep"] = {level: list(tensors) for level, tensors in kernel.keep}
    if kernel.stages:
        data["stages"] = [
            [{"drain": item.einsum} if item.drain else item.einsum for item in stage]
            for stage in kernel.stages
        ]
    if kernel.chained_ops:
        data["chained_ops"] = [sorted(str(op) for op in group) for group in kernel.chained_ops]
    if kernel.spill_fraction:
        data["spill_fraction"] = kernel.spill_fraction
    return data


def mapping_to_dict(mapping: Mapping) -> dict:
    """The inverse of `mapping_from_dict`: plain dicts, lists, strings and ints (YAML-ready).

    A binding is written per unit (`2d: [QK, ...]`), so a kernel whose binding interleaves
    units reads back grouped by unit; every mapping `mapping_from_dict` builds round-trips.

    Example:
        >>> m = load_mapping("gemm_os")
        >>> mapping_to_dict(m)["kernels"][0]["loops"][0]
        {'level': 'DRAM', 'rank': 'M', 'factor': 'rest'}
        >>> mapping_from_dict(mapping_to_dict(m)) == m
        True
    """
    data = {
        "name": mapping.name,
        "cascade": mapping.cascade,
        "batch": list(mapping.batch),
        "kernels": [kernel_to_dict(k) for k in mapping.kernels],
    }
    if mapping.kernel_overlap is not Overlap.SERIAL:
        data["kernel_overlap"] = mapping.kernel_overlap.value
    if not mapping.skip_empty_tiles:
        data["skip_empty_tiles"] = False
    return data


def mapping_to_yaml(mapping: Mapping, header: str = "") -> str:
    """YAML text of a mapping (`load_mapping` reads it back); `header` becomes # comments."""
    import yaml

    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    body = yaml.safe_dump(mapping_to_dict(mapping), sort_keys=False, default_flow_style=None)
    return comment + body


def load_mapping(name_or_path: str | Path) -> Mapping:
    """A bundled mapping by name (`fusemax`, `flat`, ...) or a YAML file by path."""
    data, origin = load_yaml(name_or_path, "mapping", "mappings")
    return mapping_from_dict(data, origin)


def loop_keys(kernel: Kernel) -> list[str]:
    """`level.rank` for each loop, `#k` appended to the k-th repeat of the same pair."""
    keys, seen = [], {}
    for loop in kernel.loops:
        key = f"{loop.level}.{loop.rank}"
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def parameter_names(mapping: Mapping) -> list[str]:
    """The free parameters of a mapping template: `kernel.level.rank` for every loop and
    `kernel.spatial.rank` for every unrolled rank (what `evaluate_batch` and `bind` take).

    Example:
        >>> parameter_names(load_mapping("fusemax"))[:3]
        ['attention.DRAM.P', 'attention.DRAM.M1', 'attention.GB.P']
    """
    names = []
    for kernel in mapping.kernels:
        names += [f"{kernel.name}.{key}" for key in loop_keys(kernel)]
        spatial = dict.fromkeys(r for _, ranks in kernel.spatial for r in ranks)
        names += [f"{kernel.name}.spatial.{rank}" for rank in spatial]
    return names


def bind(mapping: Mapping, values: MappingABC[str, int]) -> Mapping:
    """The mapping with some free parameters fixed to integers (one row of a batch).

    Example:
        >>> m = bind(load_mapping("fusemax"), {"attention.GB.P": 2})
        >>> m.kernels[0].loops[2]
        Loop(level='GB', rank='P', factor=2)
    """
    known = parameter_names(mapping)
    for key, value in values.items():
        if key not in known:
            raise SpecError(
                f"mapping {mapping.name}: no parameter {key!r}; known: {', '.join(known)}"
            )
        _positive_int(value, f"mapping {mapping.name}: {key}")
    kernels = []
    for kernel in mapping.kernels:
        loops = tuple(
            Loop(loop.level, loop.rank, int(values[f"{kernel.name}.{key}"]))
            if f"{kernel.name}.{key}" in values
            else loop
            for key, loop in zip(loop_keys(kernel), kernel.loops, strict=True)
        )
        spatial = dict(kernel.spatial_factors)
        prefix = f"{kernel.name}.spatial."
        spatial.update(
            {k[len(prefix) :]: int(v) for k, v in values.items() if k.startswith(prefix)}
        )
        kernels.append(replace(kernel, loops=loops, spatial_factors=tuple(spatial.items())))
    return replace(mapping, kernels=tuple(kernels))
