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
    evaluate,
    evaluate_batch,
    load_architecture,
    load_mapping,
)
from einsim.workloads import ATTENTION, KERNELS, attention, cascade, direct, workload

__version__ = "0.1.0"

__all__ = [
    "ATTENTION",
    "KERNELS",
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
    "workload",
]


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
