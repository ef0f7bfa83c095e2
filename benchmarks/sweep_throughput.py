"""Sweep throughput in points per second, written to Parquet, on this machine.

Two 10^5-point fixed-mapping spaces (BERT on the FuseMax template, `fusemax` mapping):

* batched: 4 sequence lengths x 5 column counts (20 templates) x 100 buffer tiles P1 x 50
  spatial factors of P; the last two are mapping parameters, so each template's 5,000
  points are one `evaluate_batch` call.
* architecture: sequence length x 2D rows x 2D columns x 1D lanes: every point is its own
  architecture; the simulator takes array sizes (and capacities, bandwidths) as batch
  arrays, so each sequence length is one `evaluate_batch` call. Timed on `--per-point`
  points (default 10^5) and reported as a rate.

Backends: the embedded default (in-process), a local process pool of 2, and a 2-worker
Dask LocalCluster (processes, one thread each). Target (issue 7): >= 10^4 points/s for
fixed-mapping points. Run: python benchmarks/sweep_throughput.py [--per-point 100000]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time

from einsim.sweeps import sweep

TARGET_PER_S = 10_000
BATCHED = {
    "name": "batched",
    "fixed": {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"},
    "axes": {
        "seq_len": [4096, 16384, 65536, 262144],
        "arch.units.2d.cols": [64, 128, 256, 512, 1024],
        "mapping.attention.GB.P": {"from": 1, "to": 100, "step": 1},
        "mapping.attention.spatial.P": {"from": 1, "to": 246, "step": 5},
    },
}


def per_point(n: int) -> dict:
    """About n points, each with its own architecture (rows x cols x lanes x seq_len)."""
    side = max(2, round((n / 4) ** (1 / 3)))
    sizes = {"from": 16, "to": 16 * side, "step": 16}
    return {
        "name": "per_point",
        "fixed": {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"},
        "axes": {
            "seq_len": [4096, 16384, 65536, 262144],
            "arch.units.2d.rows": sizes,
            "arch.units.2d.cols": sizes,
            "arch.units.1d.lanes": sizes,
        },
    }


def run(space, **backend) -> str:
    """One sweep into a temporary Parquet dataset: wall-clock rate, and for the embedded
    backend the rate per CPU-second of this process (steadier on a shared machine)."""
    with tempfile.TemporaryDirectory() as folder:
        cpu = time.process_time()
        result = sweep(space, os.path.join(folder, "out.parquet"), progress=False, **backend)
        cpu = time.process_time() - cpu
    rate = result.points_per_s
    line = (
        f"{result.evaluated:>7,} points  {result.wall_s:6.2f} s  {rate:>9,.0f} points/s  "
        f"({rate / TARGET_PER_S:.2f}x target)"
    )
    if not backend:
        line += f"  {result.evaluated / cpu:>9,.0f} points per CPU-s"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-point", type=int, default=100_000, help="points of that space")
    args = parser.parse_args()
    from distributed import LocalCluster

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"cpus: {os.cpu_count()}  load average before: {load}")
    small = per_point(args.per_point)
    print("embedded (in-process)")
    print(f"  batched    {run(BATCHED)}")
    print(f"  arch       {run(small)}")
    print("local process pool, 2 workers")
    print(f"  batched    {run(BATCHED, workers=2)}")
    print(f"  arch       {run(small, workers=2)}")
    start = time.perf_counter()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        print(f"Dask LocalCluster, 2 workers (started in {time.perf_counter() - start:.1f} s)")
        address = cluster.scheduler_address
        run(per_point(64), scheduler=address)  # warm the workers' imports
        print(f"  batched    {run(BATCHED, scheduler=address)}")
        print(f"  arch       {run(small, scheduler=address)}")


if __name__ == "__main__":
    main()
