"""validate-gpu without a GPU: parsing, the summary statistics, and exit status 2."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from einsim import SpecError
from einsim.gpu_validate import backend
from einsim.gpu_validate.validate import default_grid, parse_mappings, parse_shapes, summarize
from einsim.simulator.gpu import KernelForm


def test_parse_shapes_and_mappings():
    assert parse_shapes("B=1,H=2,E=64,F=64,M=128,P=128; B=2,H=1,E=64,F=64,M=64,P=64")[1]["B"] == 2
    with pytest.raises(SpecError, match="KEY=INT"):
        parse_shapes("B=1,H")
    two = parse_mappings("fused:Br=128,Bc=64,stages=3,warps=8;unfused:Br=64,Bc=64")
    assert [m.kernel for m in two] == [KernelForm.FUSED, KernelForm.UNFUSED]
    assert two[0].stages == 3 and two[0].warps == 8
    grid = parse_mappings("grid")
    assert grid == default_grid() and len(set(grid)) == len(grid) >= 10


def test_summary_statistics():
    rows = []
    for problem, measured in ((1, [1.0, 2.0, 3.0, 4.0]), (2, [4.0, 1.0, 2.0, 3.0])):
        for i, m in enumerate(measured):
            rows.append(dict(M=problem, predicted_s=float(i + 1), measured_s=m * 1.1,
                             valid=True, status="ok"))  # fmt: skip
    rows.append(dict(M=1, predicted_s=np.nan, measured_s=0.5, valid=True, status="ok"))
    summary = summarize(pd.DataFrame(rows))
    assert summary["problems"] == 2
    errors = [0.1] * 4 + [3.4, 0.45, 1 - 2.2 / 3, 1 - 3.3 / 4]
    assert summary["mape"] == pytest.approx(np.mean(errors))
    # problem 1 ranks perfectly (rho 1); problem 2: ranks (4,1,2,3) vs (1,2,3,4): rho -0.2
    assert summary["median_spearman"] == pytest.approx((1.0 - 0.2) / 2)
    # predicted best is measured best in problem 1, 4x the best in problem 2
    assert summary["best_within_10pct"] == 0.5


@pytest.mark.skipif(backend.available(), reason="a GPU is present here")
def test_cli_without_a_gpu_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "einsim.cli", "validate-gpu", "--variant", "causal",
         "--shapes", "B=1,H=1,E=64,F=64,M=256,P=256", "-o", str(tmp_path / "r.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "GPU validation needs" in proc.stderr
    assert not (tmp_path / "r.csv").exists()
