"""Run SCALE-Sim v3 on GEMMs and write its cycle counts as reference data for einsim.

SCALE-Sim is not a dependency of einsim; it runs in its own virtual environment (ignored
by git through the `.venv/` pattern):

    python -m venv benchmarks/scalesim/.venv
    benchmarks/scalesim/.venv/bin/pip install -r benchmarks/scalesim/requirements.txt
    benchmarks/scalesim/.venv/bin/python benchmarks/scalesim/run_scalesim.py --force --jobs 2

(requirements.txt pins scalesim 3.0.0 and NumPy < 2.4, which scalesim 3.0.0 needs.) It
writes benchmarks/data/scalesim_v3_cycles.csv (committed), which
benchmarks/scalesim_compare.py reads beside einsim's own predictions. A full run takes
about 12 minutes on two cores (SCALE-Sim walks every cycle of every fold in Python; the
4096 x 4096 x 128 output-stationary run on 128 x 128 alone takes 5.5); `--only os` or
`--only ws` and `--jobs N` split the work, and rows already in the CSV are kept unless
`--force`.

GEMM convention. SCALE-Sim's GEMM topology row is `name, M, N, K,` for an IFMAP of M x K
times a filter of K x N giving an OFMAP of M x N (topology_utils.load_arrays_gemm turns it
into a 1 x K "convolution" over an M x K input with N filters). einsim's `gemm` cascade is
`Z[m,n] = A[k,m] * B[k,n]`: A is SCALE-Sim's IFMAP (transposed), B its filter, Z its OFMAP,
and the rank sizes are the same letters (M = M, N = N, K = K).

Configuration. Array rows x cols and the dataflow vary; everything else is SCALE-Sim's own
default (scale_config.__init__: 256 kB IFMAP, 256 kB filter, 128 kB OFMAP SRAM) and
`InterfaceBandwidth: CALC`, the mode in which SCALE-Sim estimates the DRAM bandwidth a
stall-free run needs (its read buffers always hit; only the OFMAP drain, at `cols` words
per cycle, could stall), so the cycles compared are compute cycles.

Columns written: dataflow, rows, cols, M, N, K, scalesim_version, total_cycles
(COMPUTE_REPORT "Total Cycles": the 0-based cycle of the last OFMAP write, stalls
included, so one less than the cycles the array runs), stall_cycles,
compute_cycles (total - stall), total_cycles_incl_prefetch (COMPUTE_REPORT "Total Cycles
(incl. prefetch)": from the first DRAM read to the last DRAM write), mapping_efficiency_pct,
compute_util_pct, folds (the number of array-sized folds SCALE-Sim ran).
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "scalesim_v3_cycles.csv"

DATAFLOWS = ("os", "ws")
ARRAYS = ((128, 128), (256, 256))
# (M, N, K): the two GEMMs of the acceptance criterion, then irregular ones (partial folds
# on every dimension, K larger than the array, M smaller than the array).
GEMMS = (
    (1024, 1024, 64),
    (4096, 4096, 128),
    (1000, 700, 90),
    (256, 4096, 512),
)

COLUMNS = (
    "dataflow",
    "rows",
    "cols",
    "M",
    "N",
    "K",
    "scalesim_version",
    "total_cycles",
    "stall_cycles",
    "compute_cycles",
    "total_cycles_incl_prefetch",
    "mapping_efficiency_pct",
    "compute_util_pct",
    "folds",
)

CONFIG = """\
[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 256
FilterSramSzkB: 256
OfmapSramSzkB: 128
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Dataflow: {dataflow}
Bandwidth: 10
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

# A layout file is opened even when no custom layout is used; the header is enough.
LAYOUT_HEADER = "Layer name, IFMAP Height Intraline Factor,\n"


def folds(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """Array-sized folds: OS puts M on rows and N on cols, WS puts K on rows and N on cols."""
    on_rows = m if dataflow == "os" else k
    return math.ceil(on_rows / rows) * math.ceil(n / cols)


def run_one(case: tuple[str, int, int, int, int, int]) -> dict:
    """One SCALE-Sim run (in a scratch directory); returns a CSV row."""
    from scalesim.scale_sim import scalesim  # only inside SCALE-Sim's own environment

    dataflow, rows, cols, m, n, k = case
    with tempfile.TemporaryDirectory(prefix="scalesim_") as tmp:
        tmp = Path(tmp)
        run_name = f"gemm_{dataflow}_{rows}x{cols}_{m}_{n}_{k}"
        (tmp / "scale.cfg").write_text(
            CONFIG.format(run_name=run_name, rows=rows, cols=cols, dataflow=dataflow)
        )
        (tmp / "gemm.csv").write_text(f"Layer, M, N, K,\n{run_name}, {m}, {n}, {k},\n")
        (tmp / "layout.csv").write_text(LAYOUT_HEADER)
        sim = scalesim(
            save_disk_space=True,
            verbose=False,
            config=str(tmp / "scale.cfg"),
            topology=str(tmp / "gemm.csv"),
            layout=str(tmp / "layout.csv"),
            input_type_gemm=True,
        )
        start = time.perf_counter()
        sim.run_scale(top_path=str(tmp / "out"))
        wall_s = time.perf_counter() - start
        layer = sim.runner.single_layer_sim_object_list[0]
        overall, total, stall, _util, mapping_eff, compute_util = layer.get_compute_report_items()
    print(f"{run_name}: {total} cycles ({stall} stall) in {wall_s:.0f} s", flush=True)
    return {
        "dataflow": dataflow,
        "rows": rows,
        "cols": cols,
        "M": m,
        "N": n,
        "K": k,
        "scalesim_version": version("scalesim"),
        "total_cycles": int(total),
        "stall_cycles": int(stall),
        "compute_cycles": int(total) - int(stall),
        "total_cycles_incl_prefetch": int(overall),
        "mapping_efficiency_pct": round(float(mapping_eff), 4),
        "compute_util_pct": round(float(compute_util), 4),
        "folds": folds(dataflow, rows, cols, m, n, k),
    }


def _key(row: dict) -> tuple:
    return tuple(int(row[c]) if c not in ("dataflow",) else row[c] for c in COLUMNS[:6])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="SCALE-Sim runs in parallel")
    parser.add_argument("--only", choices=DATAFLOWS, help="one dataflow only")
    parser.add_argument("--force", action="store_true", help="rerun rows already in the CSV")
    args = parser.parse_args()

    done: dict[tuple, dict] = {}
    if OUT.exists() and not args.force:
        with OUT.open() as f:
            done = {_key(row): row for row in csv.DictReader(f)}
    dataflows = (args.only,) if args.only else DATAFLOWS
    cases = [(df, r, c, m, n, k) for df in dataflows for r, c in ARRAYS for m, n, k in GEMMS]
    todo = [case for case in cases if case not in done]
    # Longest first, so parallel workers finish together.
    todo.sort(key=lambda c: -folds(*c) * (c[1] + c[2] + (c[5] if c[0] == "os" else c[3])))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for row in pool.map(run_one, todo):
            done[_key(row)] = row
            _write(done)
    _write(done)
    print(f"wrote {OUT} ({len(done)} rows)")


def _write(rows: dict[tuple, dict]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow({c: rows[key][c] for c in COLUMNS})


if __name__ == "__main__":
    main()
