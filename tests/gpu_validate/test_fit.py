"""The calibration fit recovers known constants from synthetic validate-gpu rows."""

import csv
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fit_gpu_calibration.py"


def test_fit_recovers_the_constants(tmp_path, rng):
    compute = rng.uniform(1e-4, 1e-2, 40)
    memory = rng.uniform(1e-4, 1e-2, 40)
    measured = 10e-6 + np.maximum(2.0 * compute, 1.5 * memory)
    frame = pd.DataFrame(dict(
        arch="h100_sxm", kernel="fused", split_kv=1, valid=True, status="ok",
        raw_compute_s=compute, raw_memory_s=memory, measured_s=measured,
        device="NVIDIA H100 80GB HBM3", date="2026-01-01",
    ))  # fmt: skip
    frame.to_csv(tmp_path / "r.csv", index=False)
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main([str(tmp_path / "r.csv"), "-o", str(tmp_path / "cal.csv")]) == 0
    text = (tmp_path / "cal.csv").read_text().splitlines()
    rows = list(csv.DictReader(line for line in text if not line.startswith("#")))
    fused = [r for r in rows if r["device"] == "h100_sxm" and r["family"] == "fused"]
    assert len(fused) == 1 and fused[0]["status"] == "calibrated"
    assert float(fused[0]["compute_scale"]) == pytest.approx(2.0, rel=0.05)
    assert float(fused[0]["memory_scale"]) == pytest.approx(1.5, rel=0.05)
    assert float(fused[0]["launch_s"]) == pytest.approx(10e-6, abs=2.1e-6)
    assert any(r["device"] == "*" for r in rows)  # the defaults stay
