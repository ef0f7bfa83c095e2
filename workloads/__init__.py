"""Workloads: attention variants (a registry of cascade builders), their direct formulas,
and model shapes."""

from . import variants  # noqa: F401  (registers the variants in ATTENTION)
from .attention import ATTENTION, attention, parameters
from .direct import DIRECT, direct, random_inputs
from .models import MODELS, Model, Workload, workload
from .variants import Form

__all__ = [
    "ATTENTION",
    "DIRECT",
    "MODELS",
    "Form",
    "Model",
    "Workload",
    "attention",
    "direct",
    "parameters",
    "random_inputs",
    "workload",
]
