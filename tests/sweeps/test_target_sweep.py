"""Sweeps mix targets (issue 14): spatial and GPU presets in one `arch` axis, x variants at
one shape, into one Parquet dataset where every row is valid or carries its reason."""

import pandas as pd

import einsim
from einsim.simulator.targets import TARGETS

ARCHS = ["fusemax_cloud", "flat_cloud", "h100_sxm", "a100_sxm"]
# causal runs everywhere; sigmoid needs an operator the spatial units lower and the GPU
# kernels lack (so its GPU rows must carry the reason, naming it).
VARIANTS = ["causal", "sigmoid"]
SHAPE = "shape.B: 1, shape.H: 2, shape.E: 64, shape.F: 64, shape.M: 512, shape.P: 512"


def test_a_sweep_mixes_spatial_and_gpu_presets(tmp_path):
    cases = "\n".join(f"    - {{variant: {v}, {SHAPE}}}" for v in VARIANTS)
    spec = tmp_path / "targets.yaml"
    spec.write_text(
        "name: targets\nfixed:\n  mapping: {search: greedy, budget: 60}\naxes:\n"
        f"  arch: [{', '.join(ARCHS)}]\n  cases:\n{cases}\n"
    )
    einsim.sweep(str(spec), str(tmp_path / "out.parquet"))
    rows = pd.read_parquet(tmp_path / "out.parquet")
    assert len(rows) == len(ARCHS) * len(VARIANTS)
    kinds = {name: kind for kind, t in TARGETS.items() for name in t.presets()}
    for row in rows.itertuples():
        if row.valid:
            assert row.latency_s > 0 and row.target == kinds[row.arch]
            if row.target == "gpu":  # energy not modelled, calibration stated
                assert pd.isna(row.energy_pj) and row.calibration == "uncalibrated"
            else:
                assert row.energy_pj > 0
        else:
            assert isinstance(row.error or row.reason, str) and (row.error or row.reason)
    ok = rows.set_index(["arch", "variant"]).valid
    assert ok.loc[("h100_sxm", "causal")] and ok.loc[("a100_sxm", "causal")]
    assert ok.loc[("fusemax_cloud", "sigmoid")]  # lowered: 1 / (1 + exp(-x))
    gpu_sigmoid = rows[(rows.arch == "h100_sxm") & (rows.variant == "sigmoid")].iloc[0]
    assert gpu_sigmoid.valid or "sigmoid" in gpu_sigmoid.error
