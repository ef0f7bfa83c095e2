"""`einsim check` of every registered variant at M=P=4096 (issue 21's target: under 10 s each).

Each variant runs in its own subprocess, exactly as `einsim check NAME --shape M=P=4096`
does (`einsim.workloads.check`: the variant's first test case with M = P = 4096, the
cascade's default tile M0 and default block sizes (`einsim.cli.check_block_defaults`),
every form evaluated with keep=outputs against the direct formula; grid variants get a
grid of 4096 points: X = Y = 64, or T = X = Y = 16; a rank R of relative positions,
R = 4096). It prints the wall and CPU seconds of the whole check, the CPU seconds spent
in the direct formula, the worst error, and the verdict against the target (CPU time: on
a shared machine wall time also counts the other jobs). One BLAS thread unless
--blas-threads says otherwise.

Usage: python benchmarks/check_speed.py [--only causal,gqa] [--size 4096] [--blas-threads N]
       [--timeout 300] (wall seconds per variant before it is reported as stopped)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

TARGET_S = 10.0

CHILD = r"""
import importlib, json, sys, time
job = json.loads(sys.argv[1])
from einsim.workloads import check
direct_module = importlib.import_module("einsim.workloads.direct")

spent = [0.0]
formula = direct_module.direct
def timed(*args, **kwargs):
    t = time.process_time()
    try:
        return formula(*args, **kwargs)
    finally:
        spent[0] += time.process_time() - t
direct_module.direct = timed  # check() looks it up in its module at call time
wall, cpu = time.perf_counter(), time.process_time()
result = check(job["name"], shape=job["shape"], **job["params"])
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
error = max(e for _, e in result.max_error)
forms = len(result.max_error)
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "direct_cpu_s": spent[0], "error": error,
                  "ok": result.ok, "forms": forms}))
"""


def grid_params(name: str, size: int) -> dict:
    """Grid parameters giving `size` points for the variants laid out on a grid."""
    from einsim.workloads.attention import parameters

    known = parameters(name)
    if "T" in known and "X" in known and "Y" in known:
        side = round(size ** (1 / 3))
        if side**3 == size:
            return {"T": side, "X": side, "Y": side}
    if "X" in known and "Y" in known:
        side = round(size**0.5)
        if side * side == size:
            return {"X": side, "Y": side}
    return {}


def measure(name: str, size: int, blas_threads: int, timeout_s: float) -> dict:
    from einsim.cli import check_block_defaults
    from einsim.workloads import ATTENTION

    shape = {"M": size, "P": size}
    cases = ATTENTION.entry(name).meta.get("cases") or ()
    if cases and "R" in cases[0][1][0]:
        shape["R"] = size  # relative positions: R >= P
    params = grid_params(name, size)
    params.update(check_block_defaults(name, shape, params))  # as `einsim check --shape`
    job = {"name": name, "shape": shape, "params": params}
    env = dict(
        os.environ, OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads)
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(job)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"stopped after {timeout_s:.0f} s wall"}
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr else "no output"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from einsim.workloads import ATTENTION

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    parser.add_argument("--size", type=int, default=4096, help="M = P")
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300, help="wall seconds per variant")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ATTENTION)
    print(
        f"einsim check at M=P={args.size}, {args.blas_threads} BLAS thread(s), "
        f"{os.cpu_count()} CPUs; target: under {TARGET_S:.0f} s CPU per variant"
    )
    print(f"{'variant':<18}{'forms':>6}{'wall s':>9}{'cpu s':>8}{'direct':>8}  error     verdict")
    worst = 0.0
    for name in names:
        r = measure(name, args.size, args.blas_threads, args.timeout)
        if "failed" in r:
            print(f"{name:<18}  FAILED: {r['failed']}")
            continue
        worst = max(worst, r["cpu_s"])
        verdict = "met" if r["cpu_s"] < TARGET_S and r["ok"] else "NOT met"
        print(
            f"{name:<18}{r['forms']:>6}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}"
            f"{r['direct_cpu_s']:>8.2f}  {r['error']:.1e}  {verdict}"
        )
    print(f"slowest: {worst:.2f} s CPU (target < {TARGET_S:.0f} s)")


if __name__ == "__main__":
    main()
