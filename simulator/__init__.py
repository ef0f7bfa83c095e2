"""What the hardware is and how it runs a loop nest: architectures, mappings, the cost model."""

from .architecture import Architecture, ComputeUnit, OpCost, StorageLevel, load_architecture
from .gpu import (
    AttentionProblem,
    GpuArchitecture,
    GpuMapping,
    evaluate_gpu,
    evaluate_gpu_batch,
    load_gpu_architecture,
)
from .mapping import (
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
from .model import BatchReport, ModelOptions, Report, evaluate, evaluate_batch
from .shape import DEFAULT_BATCH, ShapeSplit, split_shape

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
