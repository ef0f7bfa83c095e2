"""Workloads: attention variants (a registry of cascade builders) and model shapes."""

from .attention import ATTENTION, attention, parameters

__all__ = ["ATTENTION", "attention", "parameters"]
