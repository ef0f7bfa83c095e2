"""Workloads: attention variants (a registry of cascade builders), their direct formulas,
and model shapes."""

from . import (  # noqa: F401  (importing them registers their variants and direct formulas)
    literature,
    literature_direct,
    literature_routed,
    literature_routed_direct,
    variants,
)
from .attention import ATTENTION, attention, parameters
from .direct import DIRECT, CheckResult, check, direct, random_inputs
from .kernels import KERNELS, cascade
from .models import MODELS, Model, Workload, workload
from .variants import Form, pass_counts

__all__ = [
    "ATTENTION",
    "DIRECT",
    "KERNELS",
    "MODELS",
    "CheckResult",
    "Form",
    "Model",
    "Workload",
    "attention",
    "cascade",
    "check",
    "direct",
    "parameters",
    "pass_counts",
    "random_inputs",
    "workload",
]
