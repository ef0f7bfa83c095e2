"""What the dashboard's dropdowns offer, read from the registries and the bundled specs.

Nothing here is a hand-written list: a variant registered in `ATTENTION`, a kernel in
`KERNELS`, a model in `MODELS`, a YAML file dropped into `simulator/architectures` or
`simulator/mappings`, or a strategy of the mapper appears in the page without a UI change.
"""

from __future__ import annotations

import functools
from importlib import resources

import yaml

from einsim.workloads import ATTENTION, KERNELS, MODELS, Form, parameters

#: The algorithms a zoo model's attention can be computed with (`einsim.workloads.workload`).
ALGORITHMS: tuple[str, ...] = (
    "naive_2pass",
    *(f.value for f in (Form.STABLE_3PASS, Form.ONLINE_2PASS, Form.FUSEMAX_1PASS)),
)
#: The dropdown value meaning "the attention the model itself runs" (`MODELS[...].attention`).
MODEL_ATTENTION = ""


def _bundled(folder: str) -> tuple[str, ...]:
    root = resources.files("einsim.simulator").joinpath(folder)
    return tuple(
        sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))
    )


@functools.cache
def spatial_architectures() -> tuple[str, ...]:
    """Bundled spatial-array presets, e.g. ('flat_cloud', 'fusemax_cloud', 'systolic'): the
    presets the spatial target owns (`simulator.targets.all_presets`)."""
    return _presets_of("spatial")


@functools.cache
def gpu_architectures() -> tuple[str, ...]:
    """Bundled GPU presets, e.g. ('a100_sxm', 'h100_sxm', 'h200'): the presets the GPU
    target owns, evaluated with the GPU model."""
    return _presets_of("gpu")


def _presets_of(kind: str) -> tuple[str, ...]:
    from einsim.simulator.targets import all_presets

    return tuple(sorted(name for name, owner in all_presets().items() if owner == kind))


def architectures() -> tuple[str, ...]:
    """Every bundled preset the design page offers: spatial arrays, then GPUs."""
    return (*spatial_architectures(), *gpu_architectures())


def architecture_options() -> list[dict[str, str]]:
    """The architecture dropdown's options: GPU presets labelled as such."""
    return options(architectures(), {g: f"{g} (GPU)" for g in gpu_architectures()})


def mappings() -> tuple[str, ...]:
    """Bundled mappings, e.g. ('cascade_on_flat', 'flat', ..., 'fusemax', ...)."""
    return _bundled("mappings")


@functools.cache
def mapping_cascades() -> dict[str, str]:
    """Bundled mapping -> the cascade it was written for (its `cascade:` field)."""
    out = {}
    root = resources.files("einsim.simulator").joinpath("mappings")
    for name in mappings():
        data = yaml.safe_load(root.joinpath(f"{name}.yaml").read_text())
        out[name] = str(data.get("cascade", "")) if isinstance(data, dict) else ""
    return out


def default_mapping(algorithm: str) -> str | None:
    """The bundled mapping for a cascade: one written for it whose name starts the cascade's
    name (`fusemax` for `fusemax_1pass`), else the first written for it, else None.

    Example:
        >>> default_mapping("fusemax_1pass"), default_mapping("stable_3pass")
        ('fusemax', 'flat')
    """
    written = [m for m, c in mapping_cascades().items() if c == algorithm]
    prefixed = [m for m in written if algorithm.startswith(m)]
    return (prefixed or written or [None])[0]


def models() -> tuple[str, ...]:
    """The model zoo's keys (`einsim.workloads.MODELS`)."""
    return tuple(MODELS)


def cascades() -> tuple[str, ...]:
    """Every registered cascade: attention variants, then kernels such as `gemm`."""
    return (*ATTENTION, *KERNELS)


def default_params(name: str) -> dict[str, object]:
    """A registered cascade's parameters with their defaults ({} for a kernel)."""
    return parameters(name) if name in ATTENTION else {}


def strategies() -> tuple[str, ...]:
    """The mapper's search strategies, or () while `einsim.mapper.search` does not exist."""
    try:
        from einsim import mapper
    except ImportError:
        return ()
    if not callable(getattr(mapper, "search", None)):
        return ()
    registry = getattr(mapper, "STRATEGIES", None)
    return tuple(registry) if registry is not None else ()


def options(values, labels: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Dropdown options [{label, value}] for names (labels default to the names)."""
    labels = labels or {}
    return [{"label": labels.get(v, v), "value": v} for v in values]
