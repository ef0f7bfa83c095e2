"""The reference executor at real sizes (issue 21): time and peak memory against the targets.

Each measurement runs in its own subprocess (peak memory = that process's maximum resident
set), with one BLAS thread unless --blas-threads says otherwise (the same for the executor
and the baselines). Times are wall and CPU seconds of the call; on a shared machine CPU
time is the steadier one: ratios and verdicts use it (on an idle machine with one BLAS
thread wall ~ CPU). Only target 5 also traces numpy's peak allocation (tracemalloc), in
both of its runs: tracing slows every allocation, so the timed targets run untraced.

Targets:
  1. fusemax_1pass, M=P=16384, E=F=64: within 2x of plain numpy softmax attention (K^T Q,
     max, exp, sum, V @ S, in blocks of 1024 queries so that it fits in memory: a whole
     16384 x 16384 float64 score matrix is 2 GiB), under 1 GB.
  2. causal and sliding_window (default W=4096), M=P=16384: within 2x of the dense
     executor's time scaled by the fraction of points the filter keeps (counted exactly
     from the cascade's filter), under 1 GB.
  3. `einsim check` of every variant at M=P=4096: under 10 s each (benchmarks/check_speed.py,
     run from here).
  4. NATTEN 2D on a 128 x 128 grid, 13 x 13 window, E=F=64: under 5 s.
  5. The materializing executor beside the tiled one (M=P=1024 and 4096 dense, 1024 causal:
     the materializing causal run takes ~1 GiB there).

Usage: python benchmarks/executor_speed.py [--only 1,2,...] [--blas-threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

E = F = 64

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
job = json.loads(sys.argv[1])
from einsim import attention
from einsim.einsum.executor import evaluate
from einsim.workloads import direct
from einsim.workloads.direct import random_inputs

rng = np.random.default_rng(0)
kind = job["kind"]
if kind == "numpy":
    n, e = job["n"], job["E"]
    q, k, v = (rng.normal(size=(e, n)) for _ in range(3))
    def call():
        out = np.empty((e, n))
        for p0 in range(0, n, 1024):
            s = k.T @ q[:, p0 : p0 + 1024]
            s -= s.max(axis=0)
            np.exp(s, out=s)
            out[:, p0 : p0 + 1024] = (v @ s) / s.sum(axis=0)
        return out
elif kind == "evaluate":
    cascade = attention(job["name"], **job["params"])
    inputs = random_inputs(cascade, job["shape"], rng)
    def call():
        return evaluate(cascade, inputs, job["shape"], keep=cascade.outputs, method=job["method"])
elif kind == "kept":
    # Points the filter of the first filtered Einsum keeps, counted from the cascade.
    from einsim.einsum.executor import tensor_shapes
    from einsim.einsum.shape import resolve_shape
    from einsim.einsum.tiled import Executor, _Box
    cascade = attention(job["name"], **job["params"])
    sizes = resolve_shape(cascade, job["shape"])
    einsum = next(e for e in cascade.einsums if e.where is not None)
    ex = Executor(cascade, sizes, tensor_shapes(cascade, sizes), np.float64, None)
    names = [v for v in einsum.iter_vars if v in ("m1", "m0", "p", "m")]
    def call():
        total = kept = 0
        outer = names[0]
        for i in range(sizes[outer.upper()]):
            box = _Box(names, [i if v == outer else 0 for v in names],
                       [i + 1 if v == outer else sizes[v.upper()] for v in names])
            mask = np.broadcast_to(ex.mask(einsum, box), box.extents)
            kept += int(mask.sum())
        return kept / (sizes["M"] * sizes["P"])
if job.get("traced"):
    tracemalloc.start()  # numpy's peak allocation; it slows every allocation down
wall, cpu = time.perf_counter(), time.process_time()
value = call()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
traced = tracemalloc.get_traced_memory()[1] if job.get("traced") else 0
result = {"wall_s": wall, "cpu_s": cpu, "traced_bytes": traced,
          "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
if isinstance(value, float):
    result["value"] = value
print(json.dumps(result))
"""


def measure(job: dict, blas_threads: int) -> dict:
    env = dict(
        os.environ, OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads)
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{job}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(label: str, r: dict) -> str:
    numpy = f", {r['traced_bytes'] / 2**20:6.0f} MiB numpy" if r["traced_bytes"] else ""
    return (
        f"{label:<44} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  "
        f"peak {r['maxrss_bytes'] / 2**30:5.2f} GiB rss{numpy}"
    )


def attention_job(name: str, n: int, method: str = "tiled", **params) -> dict:
    shape = {"E": E, "F": F, "M": n, "P": n}
    return {"kind": "evaluate", "name": name, "params": params, "shape": shape, "method": method}


def target_dense(blas: int) -> dict:
    n = 16384
    base = measure({"kind": "numpy", "n": n, "E": E}, blas)
    ours = measure(attention_job("fusemax_1pass", n), blas)
    print(_row(f"numpy softmax attention M=P={n}", base))
    print(_row(f"fusemax_1pass M=P={n}", ours))
    ratio = ours["cpu_s"] / base["cpu_s"]
    ok = ratio <= 2 and ours["maxrss_bytes"] < 1e9
    verdict = "met" if ok else "NOT met"
    print(f"  target 1: {ratio:.2f}x numpy's CPU time (<= 2), peak < 1 GB: {verdict}")
    return ours


def target_masks(blas: int, dense: dict | None) -> None:
    n = 16384
    dense = dense or measure(attention_job("fusemax_1pass", n), blas)
    for name in ("causal", "sliding_window"):
        shape = {"E": E, "F": F, "M": n, "P": n}
        kept = measure({"kind": "kept", "name": name, "params": {}, "shape": shape}, blas)["value"]
        ours = measure(attention_job(name, n), blas)
        print(_row(f"{name} M=P={n} (keeps {kept:.3f})", ours))
        ratio = ours["cpu_s"] / (dense["cpu_s"] * kept)
        ok = ratio <= 2 and ours["maxrss_bytes"] < 1e9
        print(
            f"  target 2: {ratio:.2f}x the dense executor's CPU time x {kept:.3f} (<= 2), "
            f"peak < 1 GB: {'met' if ok else 'NOT met'}"
        )


def target_check(blas: int) -> None:
    """Target 3 is `benchmarks/check_speed.py` (what `einsim check NAME --shape M=P=4096`
    runs, per variant in its own process); its table is printed here."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_speed.py")
    done = subprocess.run(
        [sys.executable, script, "--blas-threads", str(blas)],
        capture_output=True,
        text=True,
        check=False,
    )
    print("target 3 (benchmarks/check_speed.py):")
    print(done.stdout.rstrip() or done.stderr[-2000:])


def target_natten(blas: int) -> None:
    job = attention_job("neighborhood_2d", 128 * 128, X=128, Y=128, KW=13)
    r = measure(job, blas)
    print(_row("neighborhood_2d 128 x 128, 13 x 13", r))
    verdict = "met" if r["cpu_s"] < 5 and r["maxrss_bytes"] < 1e9 else "NOT met"
    print(f"  target 4: under 5 s (cpu {r['cpu_s']:.2f} s, wall {r['wall_s']:.2f} s): {verdict}")


def versus_materialize(blas: int) -> None:
    for name, n in (("fusemax_1pass", 1024), ("fusemax_1pass", 4096), ("causal", 1024)):
        old = measure(attention_job(name, n, method="materialize") | {"traced": True}, blas)
        new = measure(attention_job(name, n) | {"traced": True}, blas)
        print(_row(f"{name} M=P={n} materialize", old))
        print(_row(f"{name} M=P={n} tiled", new))
        print(
            f"  tiled: {old['cpu_s'] / new['cpu_s']:.1f}x faster, "
            f"{old['traced_bytes'] / max(new['traced_bytes'], 1):.0f}x less numpy memory"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="1,2,3,4,5", help="targets to run, e.g. 1,4")
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args()
    only = {int(x) for x in args.only.split(",")}
    blas = args.blas_threads
    print(f"einsim executor benchmark, E=F={E}, {blas} BLAS thread(s), {os.cpu_count()} CPUs")
    dense = target_dense(blas) if 1 in only else None
    if 2 in only:
        target_masks(blas, dense)
    if 3 in only:
        target_check(blas)
    if 4 in only:
        target_natten(blas)
    if 5 in only:
        versus_materialize(blas)


if __name__ == "__main__":
    main()
