"""Design-space sweeps: a product of axes over architectures, workloads and mappings,
evaluated in vectorized chunks on an Executor (in-process, a process pool, or Dask), and
written as a resumable Parquet dataset.

    >>> from einsim.sweeps import load_spec
    >>> load_spec("fusemax_pareto").size
    12
"""

from .run import InlineExecutor, SweepProgress, SweepResult, default_chunk_size, sweep
from .spec import Axis, SweepSpec, examples, load_spec, parse_spec, point_id

__all__ = [
    "Axis",
    "InlineExecutor",
    "SweepProgress",
    "SweepResult",
    "SweepSpec",
    "default_chunk_size",
    "examples",
    "load_spec",
    "parse_spec",
    "point_id",
    "sweep",
]
