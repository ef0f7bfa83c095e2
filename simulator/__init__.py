"""What the hardware is and how it runs a loop nest: architectures, mappings, the cost model."""

from .architecture import Architecture, ComputeUnit, OpCost, StorageLevel, load_architecture
from .mapping import Kernel, Loop, Mapping, Overlap, load_mapping
from .model import ModelOptions, Report, evaluate

__all__ = [
    "Architecture",
    "ComputeUnit",
    "Kernel",
    "Loop",
    "Mapping",
    "ModelOptions",
    "OpCost",
    "Overlap",
    "Report",
    "StorageLevel",
    "evaluate",
    "load_architecture",
    "load_mapping",
]
