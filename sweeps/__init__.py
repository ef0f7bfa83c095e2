"""Design-space sweeps: a product of axes over architectures, workloads and mappings,
evaluated in vectorized chunks on an Executor (in-process, a process pool, or Dask), and
written as a resumable Parquet dataset.

    >>> from einsim.sweeps import load_spec
    >>> load_spec("fusemax_pareto").size
    24
"""

from .run import InlineExecutor, SweepProgress, SweepResult, default_chunk_size, sweep
from .spec import (
    MAX_POINTS,
    Axis,
    SweepSpec,
    SweepWarning,
    examples,
    load_spec,
    parse_spec,
    point_id,
)

__all__ = [
    "MAX_POINTS",
    "Axis",
    "InlineExecutor",
    "SweepProgress",
    "SweepResult",
    "SweepSpec",
    "SweepWarning",
    "default_chunk_size",
    "examples",
    "load_spec",
    "parse_spec",
    "point_id",
    "sweep",
]
