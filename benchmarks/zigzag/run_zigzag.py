"""ZigZag (zigzag-dse on PyPI) on one GEMM, run inside its own venv; prints one JSON object.

    benchmarks/zigzag/.venv/bin/python benchmarks/zigzag/run_zigzag.py [--M 1024 --N 1024 --K 64]

The problem is einsim's `systolic` preset as closely as ZigZag's inputs allow: a 128 x 128
MAC array, output-stationary (M on D1, N on D2, every PE accumulating its own output in a
one-word register), one 640 KiB SRAM holding A, B and Z, and DRAM; 1-byte words, einsim's
pJ/byte energies (ZigZag charges per access of `bandwidth_min` bits: 8 bits here) and its
bandwidths. ZigZag's mapper (LOMA, exhaustive over loop prime factor orderings) searches
the temporal mapping and the memory allocation of each loop; the spatial mapping is fixed.

Every mapping ZigZag evaluates goes through `CostModelEvaluation.__init__`; it is wrapped
here to count calls and time-stamp each cost (nothing of ZigZag is copied into einsim).
"""

import argparse
import json
import logging
import sys
import tempfile
import time


def accelerator(rows: int, cols: int) -> dict:
    def port(name, kind, bw_min, bw_max, allocation):
        return {"name": name, "type": kind, "bandwidth_min": bw_min, "bandwidth_max": bw_max,
                "allocation": allocation}  # fmt: skip

    every = ["I1, fh", "I1, tl", "I2, fh", "I2, tl", "O, fh", "O, tl", "O, fl", "O, th"]
    return {
        "name": "systolic_like",
        "memories": {
            "reg_O": {  # the output-stationary PE's accumulator, one per PE
                "size": 8,
                "r_cost": 0.0,
                "w_cost": 0.0,
                "area": 0,
                "latency": 1,
                "operands": ["O"],
                "ports": [
                    port("r_port_1", "read", 8, 8, ["O, tl"]),
                    port("r_port_2", "read", 8, 8, ["O, th"]),
                    port("w_port_1", "write", 8, 8, ["O, fh"]),
                    port("w_port_2", "write", 8, 8, ["O, fl"]),
                ],
                "served_dimensions": [],
            },
            "GB": {  # systolic.yaml: 655,360 B, 1,024 B/cycle, 26.3553 pJ/B
                "size": 655360 * 8,
                "r_cost": 26.3553,
                "w_cost": 26.3553,
                "area": 0,
                "latency": 1,
                "operands": ["I1", "I2", "O"],
                "ports": [port("rw_port_1", "read_write", 8, 1024 * 8, every)],
                "served_dimensions": ["D1", "D2"],
            },
            "DRAM": {  # systolic.yaml: 2,048 B/cycle, 31.2 pJ/B
                "size": 10**12,
                "r_cost": 31.2,
                "w_cost": 31.2,
                "area": 0,
                "latency": 1,
                "operands": ["I1", "I2", "O"],
                "ports": [port("rw_port_1", "read_write", 8, 2048 * 8, every)],
                "served_dimensions": ["D1", "D2"],
            },
        },
        "operational_array": {
            "input_precision": [8, 8],
            "unit_energy": 17.1645,  # systolic.yaml's MAC energy
            "unit_area": 1,
            "dimensions": ["D1", "D2"],
            "sizes": [rows, cols],
        },
    }


def workload(m: int, n: int, k: int) -> list[dict]:
    return [
        {
            "id": 0,
            "name": "gemm",
            "operator_type": "Gemm",
            "equation": "O[m][n]+=I[m][k]*W[k][n]",
            "loop_dims": ["M", "N", "K"],
            "loop_sizes": [m, n, k],
            "operand_precision": {"I": 8, "W": 8, "O": 8, "O_final": 8},
            "operand_source": {"I": 0, "W": 0},
        }
    ]


def mapping(rows: int, cols: int) -> list[dict]:
    return [
        {
            "name": "default",
            "spatial_mapping": {"D1": [f"M, {rows}"], "D2": [f"N, {cols}"]},
            "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
        },
        {
            "name": "Gemm",
            "spatial_mapping": {"D1": [f"M, {rows}"], "D2": [f"N, {cols}"]},
            "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--M", type=int, default=1024)
    parser.add_argument("--N", type=int, default=1024)
    parser.add_argument("--K", type=int, default=64)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--cols", type=int, default=128)
    parser.add_argument("--lpf-limit", type=int, default=6)
    args = parser.parse_args()

    import yaml
    from zigzag import api
    from zigzag.cost_model import cost_model

    costs: list[tuple[float, float, float]] = []  # (seconds since start, latency, energy)
    original = cost_model.CostModelEvaluation.__init__

    def counted(self, *a, **k):
        original(self, *a, **k)
        costs.append((time.perf_counter() - start, float(self.latency_total2),
                      float(self.energy_total)))  # fmt: skip

    cost_model.CostModelEvaluation.__init__ = counted
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, data in (
            ("accelerator", accelerator(args.rows, args.cols)),
            ("workload", workload(args.M, args.N, args.K)),
            ("mapping", mapping(args.rows, args.cols)),
        ):
            paths[name] = f"{folder}/{name}.yaml"
            with open(paths[name], "w") as handle:
                yaml.safe_dump(data, handle, sort_keys=False)
        start = time.perf_counter()
        energy, latency, _ = api.get_hardware_performance_zigzag(
            workload=paths["workload"], accelerator=paths["accelerator"],
            mapping=paths["mapping"], opt="latency", dump_folder=f"{folder}/out",
            lpf_limit=args.lpf_limit, loma_show_progress_bar=False,
        )  # fmt: skip
        wall_s = time.perf_counter() - start
    best = min(c[1] for c in costs)
    within = next(t for t, lat, _ in costs if lat <= 1.01 * best)
    json.dump(
        {
            "tool": "zigzag-dse",
            "version": _version(),
            "problem": {
                "M": args.M,
                "N": args.N,
                "K": args.K,
                "rows": args.rows,
                "cols": args.cols,
                "lpf_limit": args.lpf_limit,
            },
            "evaluated": len(costs),
            "wall_s": wall_s,
            "rate_per_s": len(costs) / wall_s,
            "best_latency_cycles": latency,
            "best_energy_pj": energy,
            "time_to_1pct_s": within,
        },
        sys.stdout,
    )
    print()


def _version() -> str:
    from importlib.metadata import version

    return version("zigzag-dse")


if __name__ == "__main__":
    main()
