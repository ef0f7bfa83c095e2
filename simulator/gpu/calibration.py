"""Calibration per (device, kernel family): `compute_scale`, `memory_scale`, `launch_s`, read
from `simulator/data/gpu_calibration.csv`; 1.0 / 1.0 / 0 and `uncalibrated` until fitted.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Calibration:
    """time = launch_s + max(compute_scale x modeled compute, memory_scale x HBM time)."""

    compute_scale: float = 1.0
    memory_scale: float = 1.0
    launch_s: float = 0.0
    status: str = "uncalibrated"


KERNEL_FAMILIES = ("fused", "split_combine", "unfused_gemm", "unfused_softmax", "selection")


CALIBRATION_FILE = "gpu_calibration.csv"


def calibration_path() -> Path:
    return Path(str(resources.files("einsim.simulator").joinpath("data", CALIBRATION_FILE)))


@functools.lru_cache(maxsize=8)
def _calibration_rows(path: str) -> tuple[dict, ...]:
    with open(path, newline="") as handle:
        return tuple(csv.DictReader(line for line in handle if not line.startswith("#")))


def load_calibration(device: str, path: str | Path | None = None) -> dict[str, Calibration]:
    """Per kernel family, the row for `device` (an architecture name) or else the `*` row."""
    rows = _calibration_rows(str(path or calibration_path()))
    out = {}
    for family in KERNEL_FAMILIES:
        match = [r for r in rows if r["family"] == family and r["device"] == device] or [
            r for r in rows if r["family"] == family and r["device"] == "*"
        ]
        row = match[-1] if match else {}
        out[family] = Calibration(
            float(row.get("compute_scale", 1.0)),
            float(row.get("memory_scale", 1.0)),
            float(row.get("launch_s", 0.0)),
            row.get("status", "uncalibrated"),
        )
    return out
