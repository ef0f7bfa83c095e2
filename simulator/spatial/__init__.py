"""The spatial-array target (Timeloop-style PE arrays under a buffer hierarchy): the
architecture spec (`architecture`), the loop-nest mapping (`mapping`), the vectorized cost
model (`cost`), silicon area (`area`), and FuseMax's published results (`reproduce`, imported
on demand: it reads pandas)."""

from ..report import BatchReport, Report
from .architecture import Architecture, ComputeUnit, OpCost, StorageLevel, architecture_from_dict
from .cost import (
    KernelTotals,
    ModelOptions,
    combine_kernels,
    einsum_cycles,
    evaluate,
    evaluate_batch,
    kernel_totals,
)
from .mapping import Kernel, Loop, Mapping, Overlap, load_mapping

__all__ = [
    "Architecture",
    "BatchReport",
    "ComputeUnit",
    "Kernel",
    "KernelTotals",
    "Loop",
    "Mapping",
    "ModelOptions",
    "OpCost",
    "Overlap",
    "Report",
    "StorageLevel",
    "architecture_from_dict",
    "combine_kernels",
    "einsum_cycles",
    "evaluate",
    "evaluate_batch",
    "kernel_totals",
    "load_mapping",
]
