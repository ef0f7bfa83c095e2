"""The extended-Einsum IR: parse, evaluate and analyse cascades (imports nothing of ours)."""

from .analysis import footprints, iteration_points, op_counts, pass_analysis, passes
from .errors import (
    BackendUnavailable,
    EinsimError,
    InfeasibleError,
    MappingError,
    SpecError,
)
from .executor import evaluate, tensor_shapes
from .ir import (
    Access,
    Call,
    Cascade,
    Const,
    Einsum,
    Init,
    Op,
    Partition,
    Size,
    Step,
    TensorDecl,
    Var,
    format_cascade,
)
from .occupancy import Occupancy, declare_density, occupancy
from .parser import parse_cascade, validate
from .registry import Entry, Registry
from .shape import resolve_shape

__all__ = [
    "Access",
    "BackendUnavailable",
    "Call",
    "Cascade",
    "Const",
    "EinsimError",
    "Einsum",
    "Entry",
    "InfeasibleError",
    "Init",
    "MappingError",
    "Occupancy",
    "Op",
    "Partition",
    "Registry",
    "Size",
    "SpecError",
    "Step",
    "TensorDecl",
    "Var",
    "declare_density",
    "evaluate",
    "footprints",
    "format_cascade",
    "iteration_points",
    "occupancy",
    "op_counts",
    "parse_cascade",
    "pass_analysis",
    "passes",
    "resolve_shape",
    "tensor_shapes",
    "validate",
]
