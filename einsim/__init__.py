"""einsim: an accelerator simulator and kernel-mapping explorer for attention.

Attention algorithms are cascades of extended Einsums (the FuseMax abstraction):

    >>> import einsim
    >>> cascade = einsim.attention("fusemax")
    >>> einsim.passes(cascade, "M")
    {'M1': 1, 'M0': 2}

`import einsim` stays light: nothing heavier than numpy, networkx, sympy and pandas is
imported until used.
"""

from einsim.einsum import (
    BackendUnavailable,
    Cascade,
    EinsimError,
    Einsum,
    InfeasibleError,
    MappingError,
    Op,
    SpecError,
    footprints,
    op_counts,
    parse_cascade,
    pass_analysis,
    passes,
    resolve_shape,
)
from einsim.simulator import (
    evaluate_batch,
    load_architecture,
    load_mapping,
)
from einsim.simulator.targets import TARGETS, target_of
from einsim.workloads import ATTENTION, KERNELS, attention, cascade, direct, workload

__version__ = "0.1.0"

__all__ = [
    "ATTENTION",
    "KERNELS",
    "TARGETS",
    "BackendUnavailable",
    "Cascade",
    "EinsimError",
    "Einsum",
    "InfeasibleError",
    "MappingError",
    "Op",
    "SpecError",
    "__version__",
    "attention",
    "cascade",
    "direct",
    "estimate",
    "evaluate",
    "evaluate_batch",
    "footprints",
    "load_architecture",
    "load_mapping",
    "op_counts",
    "parse_cascade",
    "pass_analysis",
    "passes",
    "resolve_shape",
    "search",
    "sweep",
    "target_of",
    "workload",
]


def evaluate(cascade, arch, mapping, shape=None, *args, **kwargs):
    """One mapping of `cascade` on `arch`, any target (`einsim.TARGETS`): on a spatial array
    `einsim.simulator.evaluate` (a Mapping or a bundled mapping name); on a GPU a tiling
    (`"fused:Br=128,Bc=64"`, a `GpuMapping`, or None for the default) costed by the GPU model.
    Returns a `Report`; `einsim.target_of(arch).typed(arch, report)` is its typed view."""
    target = target_of(arch)
    if target.kind == "spatial":
        from einsim.simulator import evaluate as spatial

        mapping = target.load_mapping(mapping)
        return spatial(cascade, arch, mapping, shape, *args, **kwargs)
    if args or kwargs:
        raise SpecError(f"einsim.evaluate on a {target.kind} target takes no model options")
    return target.evaluate(cascade, arch, mapping, shape)


def sweep(space, output=None, **options):
    """Evaluate every point of a design space into a Parquet dataset (`einsim.sweeps.sweep`,
    imported on first use so that `import einsim` stays light)."""
    from einsim.sweeps import sweep as run

    return run(space, output, **options)


def search(cascade, arch, shape, **options):
    """The best mappings of `cascade` on `arch` (`einsim.mapper.search`, imported on first
    use so that `import einsim` stays light)."""
    from einsim.mapper import search as run

    return run(cascade, arch, shape, **options)


def estimate(model, target, phase="prefill", seq_len=4096, batch=None, **options):
    """A whole model on one target (`einsim.model_estimate.estimate`: TTFT or TPOT, tokens/s,
    energy, DRAM bytes, a per-layer breakdown), imported on first use."""
    from einsim.model_estimate import estimate as run

    return run(model, target, phase, seq_len, batch, **options)
