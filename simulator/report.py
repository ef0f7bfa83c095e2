"""What a target predicts for mappings, shared by both targets: `Report` (one mapping) and
`BatchReport` (n mappings of one template, one array entry per mapping), with units in the
field names. The spatial model (`simulator.spatial.cost`) and the GPU model
(`simulator.gpu.cost`) fill them; `simulator.targets` gives their typed view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Report:
    """Everything the model predicts for one mapping. Named fields, units in names."""

    cycles: float
    latency_s: float
    energy_pj: float
    energy_by_component_pj: dict[str, float]
    dram_bytes: float
    dram_bytes_by_tensor: dict[str, float]
    buffer_words: dict[str, float]
    utilization: dict[str, float]
    per_einsum: pd.DataFrame
    factors: dict[str, dict[str, int]]
    valid: bool = True
    reasons: tuple[str, ...] = ()
    kernels: tuple[dict, ...] = field(default=())
    # Silicon area of the architecture by component (`simulator.spatial.area`); empty where the
    # spec carries no areas.
    area_by_component_mm2: dict[str, float] = field(default_factory=dict)
    # Einsum -> the operators its unit lacks and runs lowered (simulator/lowering.py).
    lowered_einsums: dict[str, str] = field(default_factory=dict)

    @property
    def area_mm2(self) -> float:
        """Total area (mm^2); 0.0 where the architecture spec carries no areas."""
        return float(sum(self.area_by_component_mm2.values()))

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "area_mm2": self.area_mm2,
            "area_by_component_mm2": self.area_by_component_mm2,
            "reasons": list(self.reasons),
            "latency_s": self.latency_s,
            "cycles": self.cycles,
            "energy_pj": self.energy_pj,
            "energy_by_component_pj": self.energy_by_component_pj,
            "dram_bytes": self.dram_bytes,
            "utilization": self.utilization,
            "factors": self.factors,
            "per_einsum": self.per_einsum.to_dict(orient="records"),
            "lowered_einsums": self.lowered_einsums,
        }


@dataclass(frozen=True, slots=True)
class _Problem:
    """A row-wise problem of a batch: `message` formats it from the row's values."""

    mask: np.ndarray
    message: str
    values: tuple[np.ndarray | float, ...] = ()
    infeasible: bool = False  # no choice of the free factor fits: the mapping cannot work

    def at(self, i: int) -> str:
        return self.message.format(*(_item(v, i) for v in self.values))


@dataclass(frozen=True)
class BatchReport:
    """The model's predictions for n mappings of one template, one array entry per mapping.

    Every array has shape (n,). `report(i)` is the `Report` of mapping i; `to_frame()` is one
    row per mapping (free parameters, then the headline numbers).
    """

    n: int
    params: dict[str, np.ndarray]
    cycles: np.ndarray
    latency_s: np.ndarray
    energy_pj: np.ndarray
    energy_by_component_pj: dict[str, np.ndarray]
    dram_bytes: np.ndarray
    dram_bytes_by_tensor: dict[str, np.ndarray]
    buffer_words: dict[str, np.ndarray]
    utilization: dict[str, np.ndarray]
    valid: np.ndarray
    factors: dict[str, dict[str, np.ndarray]]
    einsums: tuple[dict, ...]  # kernel, einsum, unit (str) and ops, cycles, energy_pj (arrays)
    kernels: tuple[dict, ...]  # kernel (str) and compute_cycles, memory_cycles, tiles (arrays)
    problems: tuple[_Problem, ...] = ()
    area_by_component_mm2: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def area_mm2(self) -> np.ndarray:
        """Total area per mapping (mm^2); zeros where the spec carries no areas."""
        return sum(self.area_by_component_mm2.values(), np.zeros(self.n))

    @property
    def lowered_einsums(self) -> dict[str, str]:
        """Einsum -> the operators its unit lacks and runs lowered (simulator/lowering.py)."""
        return {row["einsum"]: row["lowered"] for row in self.einsums if row.get("lowered")}

    def reasons(self, i: int) -> tuple[str, ...]:
        return tuple(p.at(i) for p in self.problems if p.mask[i])

    def report(self, i: int) -> Report:
        """Mapping i as a `Report`."""
        import pandas as pd  # on first use: `import einsim` stays light

        total = float(self.cycles[i])
        table = pd.DataFrame(
            [
                {
                    "kernel": row["kernel"],
                    "einsum": row["einsum"],
                    "unit": row["unit"],
                    "ops": _item(row["ops"], i),
                    "cycles": _item(row["cycles"], i),
                    "energy_pj": _item(row["energy_pj"], i),
                    "lowered": row.get("lowered", ""),
                }
                for row in self.einsums
            ]
        )
        table["busy_fraction"] = table["cycles"] / total if total else 0.0
        reasons = self.reasons(i)
        return Report(
            cycles=total,
            latency_s=float(self.latency_s[i]),
            energy_pj=float(self.energy_pj[i]),
            energy_by_component_pj={k: float(v[i]) for k, v in self.energy_by_component_pj.items()},
            dram_bytes=float(self.dram_bytes[i]),
            dram_bytes_by_tensor={k: float(v[i]) for k, v in self.dram_bytes_by_tensor.items()},
            buffer_words={k: float(v[i]) for k, v in self.buffer_words.items()},
            utilization={k: float(v[i]) for k, v in self.utilization.items()},
            per_einsum=table,
            factors={
                kernel: {key: int(v[i]) for key, v in values.items()}
                for kernel, values in self.factors.items()
            },
            valid=not reasons,
            reasons=reasons,
            kernels=tuple(
                {key: (value if key == "kernel" else _item(value, i)) for key, value in row.items()}
                for row in self.kernels
            ),
            area_by_component_mm2={k: float(v[i]) for k, v in self.area_by_component_mm2.items()},
            lowered_einsums=self.lowered_einsums,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per mapping: the free parameters, then cycles, latency, energy, traffic,
        validity and the utilization of each unit (`util_<unit>`)."""
        columns = dict(self.params)
        columns.update(
            cycles=self.cycles,
            latency_s=self.latency_s,
            energy_pj=self.energy_pj,
            dram_bytes=self.dram_bytes,
            area_mm2=self.area_mm2,
            valid=self.valid,
        )
        columns.update({f"util_{unit}": value for unit, value in self.utilization.items()})
        import pandas as pd

        return pd.DataFrame(columns)


def _item(value, i: int) -> float:
    """Entry i of a batch quantity (an array, or a scalar shared by every row)."""
    return float(value[i]) if np.ndim(value) else float(value)
