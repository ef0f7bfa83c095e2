"""The `systolic` architecture and the `gemm_os` / `gemm_ws` mappings (the SCALE-Sim family)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from einsim.simulator import ModelOptions, evaluate, load_architecture, load_mapping
from einsim.workloads import cascade

# (M, N, K): the SCALE-Sim comparison's GEMMs (benchmarks/scalesim_compare.py), then shapes
# smaller than the array on every side.
GEMMS = [(1024, 1024, 64), (4096, 4096, 128), (1000, 700, 90), (256, 4096, 512), (5, 3, 7)]
ARRAYS = [(128, 128), (256, 256), (32, 8)]


def _no_fill_drain() -> ModelOptions:
    """The ideal array: no systolic fill or drain."""
    return ModelOptions(fill_drain=False)


def _ideal_cycles(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """folds x stream length: OS holds an M x N tile and streams K, WS a K x N tile and M."""
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols) * k
    return math.ceil(k / rows) * math.ceil(n / cols) * m


def test_systolic_preset_loads_with_a_default_and_an_overridden_array():
    arch = load_architecture("systolic")
    assert arch.unit("2d").dims == (128, 128)
    assert [level.name for level in arch.levels] == ["DRAM", "GB"]
    assert arch.unit("2d").fill_drain  # on for the systolic family, off for FuseMax's arrays
    bigger = load_architecture("systolic", {"units.2d.rows": 256, "units.2d.cols": 256})
    assert bigger.unit("2d").dims == (256, 256)


@pytest.mark.parametrize(("name", "spatial"), [("gemm_os", ("M", "N")), ("gemm_ws", ("K", "N"))])
def test_gemm_mappings_load_with_an_empty_batch(name, spatial):
    mapping = load_mapping(name)
    assert mapping.cascade == "gemm"
    assert mapping.batch == ()
    (kernel,) = mapping.kernels
    assert dict(kernel.spatial)["2d"] == spatial


@pytest.mark.parametrize("dataflow", ["os", "ws"])
@pytest.mark.parametrize(("rows", "cols"), ARRAYS)
@pytest.mark.parametrize(("m", "n", "k"), GEMMS)
def test_gemm_cycles_without_fill_drain_are_folds_times_stream(dataflow, rows, cols, m, n, k):
    arch = load_architecture("systolic", {"units.2d.rows": rows, "units.2d.cols": cols})
    report = evaluate(
        cascade("gemm"),
        arch,
        load_mapping(f"gemm_{dataflow}"),
        {"M": m, "N": n, "K": k},
        _no_fill_drain(),
    )
    assert report.valid, report.reasons
    # Padding enters as a ratio of sizes, so the float may miss the integer by an ulp.
    np.testing.assert_allclose(
        report.cycles, _ideal_cycles(dataflow, rows, cols, m, n, k), rtol=1e-12
    )


def test_ideal_cycles_worked_example():
    # 1024 x 1024 x 64 on 128 x 128: OS runs 8 x 8 folds of 64 cycles, WS 1 x 8 of 1024.
    assert _ideal_cycles("os", 128, 128, 1024, 1024, 64) == 4096
    assert _ideal_cycles("ws", 128, 128, 1024, 1024, 64) == 8192


SCALESIM = Path(__file__).parents[2] / "benchmarks" / "data" / "scalesim_v3_cycles.csv"


def test_fill_and_drain_match_scalesim_v3_within_2_percent():
    """The peer's own runs (benchmarks/scalesim/run_scalesim.py, scalesim 3.0.0) are the
    reference: every OS and WS row, 128x128 and 256x256, regular and ragged GEMMs."""
    table = pd.read_csv(SCALESIM)
    assert set(table.dataflow) == {"os", "ws"} and len(table) >= 8
    gemm = cascade("gemm")
    for row in table.itertuples():
        arch = load_architecture(
            "systolic", {"units.2d.rows": int(row.rows), "units.2d.cols": int(row.cols)}
        )
        mapping = load_mapping(f"gemm_{row.dataflow}")
        report = evaluate(gemm, arch, mapping, {"M": row.M, "N": row.N, "K": row.K})
        assert report.cycles == pytest.approx(row.total_cycles, rel=0.02), row
