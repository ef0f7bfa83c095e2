"""What the hardware is and what a mapping costs, behind one interface (`targets`): the spatial
arrays (`simulator.spatial`: architecture, mapping, cost model, area, FuseMax's reproduction)
and GPUs (`simulator.gpu`), with the shared pieces at this level (`targets`, `shape`, `spec`,
`lowering`)."""

from .gpu import (
    AttentionProblem,
    GpuArchitecture,
    GpuMapping,
    evaluate_gpu,
    evaluate_gpu_batch,
    load_gpu_architecture,
)
from .report import BatchReport, Report
from .shape import DEFAULT_BATCH, ShapeSplit, split_shape
from .spatial.architecture import Architecture, ComputeUnit, OpCost, StorageLevel
from .spatial.cost import ModelOptions, evaluate, evaluate_batch
from .spatial.mapping import (
    Kernel,
    Loop,
    Mapping,
    Overlap,
    bind,
    load_mapping,
    mapping_from_dict,
    mapping_to_dict,
    mapping_to_yaml,
    parameter_names,
)
from .targets import load_architecture

__all__ = [
    "DEFAULT_BATCH",
    "Architecture",
    "AttentionProblem",
    "BatchReport",
    "ComputeUnit",
    "GpuArchitecture",
    "GpuMapping",
    "Kernel",
    "Loop",
    "Mapping",
    "ModelOptions",
    "OpCost",
    "Overlap",
    "Report",
    "ShapeSplit",
    "StorageLevel",
    "bind",
    "evaluate",
    "evaluate_batch",
    "evaluate_gpu",
    "evaluate_gpu_batch",
    "load_architecture",
    "load_gpu_architecture",
    "load_mapping",
    "mapping_from_dict",
    "mapping_to_dict",
    "mapping_to_yaml",
    "parameter_names",
    "split_shape",
]
