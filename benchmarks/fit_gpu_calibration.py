"""Fit the GPU model's calibration constants from `einsim validate-gpu` CSVs.

Per (device preset, kernel family) it fits time = launch_s + max(compute_scale x
raw_compute_s, memory_scale x raw_memory_s) to the measured medians (the raw terms are the
model's uncalibrated ones, written by validate-gpu), minimizing the mean absolute relative
error over a grid (scales 0.25..8 log-spaced, launch 0..40 us); then it writes the table
(`-o`, default simulator/data/gpu_calibration.csv) keeping the `*` defaults and other
devices' rows. Families: `fused` from fused rows without split-KV, `unfused_gemm` and
`unfused_softmax` (one fit, shared) from unfused rows; `split_combine` stays as it is.

    python benchmarks/fit_gpu_calibration.py benchmarks/results/gpu-DATE/*.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from einsim.simulator.gpu import calibration_path

SCALES = np.geomspace(0.25, 8.0, 81)
LAUNCH_S = np.linspace(0.0, 40e-6, 21)


def fit(compute: np.ndarray, memory: np.ndarray, measured: np.ndarray) -> tuple[float, ...]:
    """(compute_scale, memory_scale, launch_s, MAPE) minimizing the mean |relative error|."""
    c = SCALES[:, None, None, None] * compute
    m = SCALES[None, :, None, None] * memory
    predicted = LAUNCH_S[None, None, :, None] + np.maximum(c, m)
    error = np.abs(predicted / measured - 1).mean(axis=-1)
    i, j, k = np.unravel_index(np.argmin(error), error.shape)
    return float(SCALES[i]), float(SCALES[j]), float(LAUNCH_S[k]), float(error[i, j, k])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csvs", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=calibration_path())
    args = parser.parse_args(argv)
    frame = pd.concat([pd.read_csv(p) for p in args.csvs if p.exists()], ignore_index=True)
    ok = frame[(frame["status"] == "ok") & frame["raw_compute_s"].notna()]
    ok = ok[ok["valid"].astype(bool) & (ok["measured_s"] > 0)]
    fitted = []
    for arch, rows in ok.groupby("arch"):
        groups = {
            ("fused",): rows[(rows["kernel"] == "fused") & (rows["split_kv"] == 1)],
            ("unfused_gemm", "unfused_softmax"): rows[rows["kernel"] == "unfused"],
        }
        for families, group in groups.items():
            if len(group) < 3:
                continue
            cs, ms, launch, mape = fit(
                group["raw_compute_s"].to_numpy(),
                group["raw_memory_s"].to_numpy(),
                group["measured_s"].to_numpy(),
            )
            source = f"fit of {len(group)} runs, {group['device'].iloc[0]}, {group['date'].iloc[0]}"
            what = f"compute x{cs:.3f} memory x{ms:.3f} launch {launch * 1e6:.1f} us"
            print(f"{arch} {'/'.join(families)}: {what}; MAPE {mape:.1%}, {len(group)} runs")
            fitted += [dict(device=arch, family=f, compute_scale=f"{cs:.4g}",
                            memory_scale=f"{ms:.4g}", launch_s=f"{launch:.3g}",
                            status="calibrated", source=source) for f in families]  # fmt: skip
    if not fitted:
        print("no usable rows (need >= 3 valid measured runs per family)", file=sys.stderr)
        return 1
    text = calibration_path().read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    kept = [
        row
        for row in csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
        if (row["device"], row["family"]) not in {(r["device"], r["family"]) for r in fitted}
    ]
    columns = ["device", "family", "compute_scale", "memory_scale", "launch_s", "status", "source"]
    with open(args.output, "w", newline="") as handle:
        handle.write("\n".join(header) + "\n")
        writer = csv.DictWriter(handle, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept + fitted)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
