"""einsim's `systolic` preset beside SCALE-Sim v3 on GEMMs: cycles, ratio, worst ratio.

Reads the reference data benchmarks/data/scalesim_v3_cycles.csv (written by
benchmarks/scalesim/run_scalesim.py in SCALE-Sim's own environment; SCALE-Sim is not needed
here) and evaluates each row with the `gemm` cascade, the `systolic` architecture at the
row's array size and the `gemm_os` / `gemm_ws` mapping. The target: every ratio within 2%.

SCALE-Sim's GEMM is IFMAP M x K times filter K x N = OFMAP M x N; einsim's `gemm` is
Z[m,n] = A[k,m] * B[k,n] with the same M, N, K.

The `ideal` column is einsim without fill and drain (folds x stream length); `einsim` and
`ratio` are with it, where the model has the switch. The `formula` column is SCALE-Sim v3's
cycle count in closed form (`scalesim_formula`, read from its systolic_compute_os.py and
systolic_compute_ws.py): folds x (stream + per-fold fill and drain) - 1, with (stream,
fill and drain) = (K, R + C - 2) output-stationary and (M, 2R + C - 2) weight-stationary,
R x C the whole array even for a partial fold; it equals SCALE-Sim's cycles on every row.

Run: python benchmarks/scalesim_compare.py [--tolerance 0.02]  (exit status 1 if a ratio
is outside the tolerance)
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from einsim.simulator import ModelOptions, evaluate, load_architecture, load_mapping
from einsim.workloads import cascade

DATA = Path(__file__).resolve().parent / "data" / "scalesim_v3_cycles.csv"


def scalesim_formula(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """SCALE-Sim v3's GEMM cycles in closed form (scalesim 3.0.0, no memory stalls).

    Each fold (one R x C placement; partial ones padded to the whole array) runs the stream
    plus the skew across the array, R + C - 2 (compute/systolic_compute_os.py, the
    `create_*_demand_mat` methods); weight-stationary first shifts the weights in through
    the R rows, R more (systolic_compute_ws.py). SCALE-Sim reports the 0-based cycle of the
    last output write (memory/double_buffered_scratchpad_mem.py), hence the - 1.

    Example:
        >>> scalesim_formula("os", 128, 128, 1024, 1024, 64)  # 64 folds x (64 + 254) - 1
        20351
    """
    if dataflow == "os":
        folds = math.ceil(m / rows) * math.ceil(n / cols)
        per_fold = k + rows + cols - 2
    else:
        folds = math.ceil(k / rows) * math.ceil(n / cols)
        per_fold = m + 2 * rows + cols - 2
    return folds * per_fold - 1


def compare(options: ModelOptions, ideal_options: ModelOptions) -> list[dict]:
    gemm = cascade("gemm")
    mappings = {df: load_mapping(f"gemm_{df}") for df in ("os", "ws")}
    rows = []
    with DATA.open() as f:
        for ref in csv.DictReader(f):
            r, c = int(ref["rows"]), int(ref["cols"])
            m, n, k = int(ref["M"]), int(ref["N"]), int(ref["K"])
            arch = load_architecture("systolic", {"units.2d.rows": r, "units.2d.cols": c})
            mapping, shape = mappings[ref["dataflow"]], {"M": m, "N": n, "K": k}
            report = evaluate(gemm, arch, mapping, shape, options)
            ideal = evaluate(gemm, arch, mapping, shape, ideal_options)
            scalesim = int(ref["total_cycles"])
            rows.append(
                {
                    "dataflow": ref["dataflow"],
                    "array": f"{r}x{c}",
                    "gemm": f"{m}x{n}x{k}",
                    "scalesim": scalesim,
                    "formula": scalesim_formula(ref["dataflow"], r, c, m, n, k),
                    "ideal": ideal.cycles,
                    "einsim": report.cycles,
                    "ratio": report.cycles / scalesim,
                    "valid": report.valid,
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()
    options, ideal_options = ModelOptions(fill_drain=True), ModelOptions(fill_drain=False)
    described = "ModelOptions(fill_drain=True); ideal: fill_drain=False"
    rows = compare(options, ideal_options)
    print(f"einsim options: {described}")
    print(f"reference: {DATA.name} (SCALE-Sim total cycles, stalls included; all 0 here)")
    header = (
        f"{'dataflow':<8} {'array':>7} {'GEMM MxNxK':>14} {'scalesim':>9} "
        f"{'formula':>9} {'ideal':>9} {'einsim':>9} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        flag = "" if row["valid"] else "  (invalid mapping)"
        print(
            f"{row['dataflow']:<8} {row['array']:>7} {row['gemm']:>14} {row['scalesim']:>9} "
            f"{row['formula']:>9} {row['ideal']:>9.0f} {row['einsim']:>9.0f} "
            f"{row['ratio']:>7.4f}{flag}"
        )
    worst = max(rows, key=lambda row: abs(row["ratio"] - 1))
    formula_exact = all(row["formula"] == row["scalesim"] for row in rows)
    print(
        f"\nworst einsim/SCALE-Sim ratio: {worst['ratio']:.4f} ({worst['dataflow']} "
        f"{worst['array']} {worst['gemm']}); target within {args.tolerance:.0%}"
    )
    print(f"closed form equals SCALE-Sim on every row: {formula_exact}")
    return 0 if abs(worst["ratio"] - 1) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
