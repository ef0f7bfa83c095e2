"""What the hardware is and how it runs a loop nest: architectures, mappings, the cost model."""

from .architecture import Architecture, ComputeUnit, OpCost, StorageLevel, load_architecture
from .mapping import Kernel, Loop, Mapping, Overlap, bind, load_mapping, parameter_names
from .model import BatchReport, ModelOptions, Report, evaluate, evaluate_batch

__all__ = [
    "Architecture",
    "BatchReport",
    "ComputeUnit",
    "Kernel",
    "Loop",
    "Mapping",
    "ModelOptions",
    "OpCost",
    "Overlap",
    "Report",
    "StorageLevel",
    "bind",
    "evaluate",
    "evaluate_batch",
    "load_architecture",
    "load_mapping",
    "parameter_names",
]
