"""`einsim validate-gpu`: time GPU mappings for real and compare with the GPU model.

Per (shape, mapping): the model's prediction (current calibration) and its uncalibrated
compute and memory terms (what `benchmarks/fit_gpu_calibration.py` fits), the measured
median of `repeats` runs (CUDA events, `warmup` runs first, L2 flushed before each), the
achieved TFLOP/s over the kept pairs, the ratio measured / predicted, the relative error of
the output against a float64 reference, registers per thread, device, CUDA and CuPy
versions and the SM clock before and after. PyTorch's scaled_dot_product_attention is
timed too when torch imports (mapping `torch_sdpa`).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pandas as pd

from einsim.einsum import SpecError
from einsim.simulator.gpu import (
    AttentionProblem,
    Calibration,
    GpuMapping,
    KernelForm,
    Mask,
    evaluate_gpu_batch,
    kernel_registers,
    load_calibration,
    load_gpu_architecture,
    parse_gpu_mapping,
    problem_from_cascade,
    useful_flops,
)

from . import backend

_DEVICE_PRESETS = (("H200", "h200"), ("H100", "h100_sxm"), ("A100", "a100_sxm"))


def default_grid() -> list[GpuMapping]:
    """The mappings a campaign sweeps: fused Br x Bc x stages x warps the kernel accepts,
    split-KV 2 and 4 for one tile, and two unfused tilings."""
    out = [
        GpuMapping(KernelForm.FUSED, br, bc, st, w)
        for br, bc, st, w in itertools.product((64, 128), (32, 64, 128), (1, 2, 3), (4,))
        if br % (16 * w) == 0
    ]
    out += [GpuMapping(KernelForm.FUSED, 128, 64, 2, 8), GpuMapping(KernelForm.FUSED, 64, 64, 2, 2)]
    out += [GpuMapping(KernelForm.FUSED, 64, 64, 2, 4, split) for split in (2, 4)]
    out += [
        GpuMapping(KernelForm.UNFUSED, 64, 64, 2, 4),
        GpuMapping(KernelForm.UNFUSED, 128, 64, 2, 8),
    ]
    return out


def parse_shapes(text: str) -> list[dict[str, int]]:
    """`B=4,H=16,E=128,F=128,M=4096,P=4096;B=1,...` -> a list of shape dicts."""
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        shape = {}
        for pair in part.split(","):
            key, sep, value = pair.partition("=")
            try:
                shape[key.strip()] = int(value)
            except ValueError:
                raise SpecError(
                    f"--shapes {part!r}: expected KEY=INT pairs, got {pair!r}"
                ) from None
            if not sep:
                raise SpecError(f"--shapes {part!r}: expected KEY=INT pairs, got {pair!r}")
        shapes.append(shape)
    if not shapes:
        raise SpecError(
            "--shapes: give at least one shape, e.g. B=4,H=16,E=128,F=128,M=4096,P=4096"
        )
    return shapes


def parse_mappings(text: str) -> list[GpuMapping]:
    """`grid` (`default_grid`) or `fused:Br=128,Bc=64,stages=2,warps=4;unfused:...`."""
    if text.strip() == "grid":
        return default_grid()
    return [parse_gpu_mapping(part) for part in text.split(";") if part.strip()]


def arch_for(device: str) -> str:
    for key, preset in _DEVICE_PRESETS:
        if key in device:
            return preset
    raise SpecError(f"no GPU preset for device {device!r}; pass --arch (h100_sxm, h200, a100_sxm)")


def _sdpa_ms(problem: AttentionProblem, arrays, warmup: int, repeats: int):
    """Median ms of torch's scaled_dot_product_attention on the same problem, or None."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    if problem.mask not in (Mask.NONE, Mask.CAUSAL) or not torch.cuda.is_available():
        return None
    dtype = torch.bfloat16 if problem.dtype == "bf16" else torch.float16
    q, k, v = (
        torch.tensor(np.swapaxes(arrays[n], -1, -2), dtype=dtype, device="cuda") for n in "QKV"
    )
    causal = problem.mask is Mask.CAUSAL

    def run():
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0)

    times = backend.time_ms(run, warmup=warmup, repeats=repeats)
    return float(np.median(times))


def validate(
    variant: str,
    shapes: list[dict[str, int]],
    mappings: list[GpuMapping],
    *,
    params: dict | None = None,
    arch: str | None = None,
    dtype: str = "bf16",
    warmup: int = 3,
    repeats: int = 20,
    seed: int = 0,
    torch_sdpa: bool = True,
    searched: bool = False,
    progress=None,
) -> pd.DataFrame:
    """Measure every (shape, mapping) and put it beside the model's prediction. With
    `searched`, each shape also runs the mapper's pick (`search_gpu` over the whole tiling
    grid, column `searched`), so "predicted best" includes the tiling einsim would choose.

    Raises:
        BackendUnavailable: no CuPy or no GPU (one line).
    """
    cp = backend.cupy()
    from einsim.workloads import attention

    from .kernels import Runner, from_device, to_device
    from .tiles import problem_arrays

    info = backend.device_info()
    gpu = load_gpu_architecture(arch or arch_for(str(info["device"])))
    calibration = load_calibration(gpu.name)
    raw = {family: Calibration() for family in calibration}
    cascade = attention(variant, **(params or {}))
    rng = np.random.default_rng(seed)
    rows = []
    for shape in shapes:
        problem = problem_from_cascade(cascade, shape, dtype)
        arrays = problem_arrays(problem, rng)
        arrays["Q"] = arrays["Q"] / math.sqrt(problem.head_dim)
        device_arrays = to_device(problem, arrays)
        flops = useful_flops(problem)
        reference = None
        pick = None
        if searched:
            from einsim.mapper.gpu import search_gpu

            pick = search_gpu(cascade, gpu, shape, dtype=dtype).mapping
        for mapping in [*mappings, *([pick] if pick and pick not in mappings else [])]:
            if progress:
                progress(f"{shape} {mapping.name}")
            batch = evaluate_gpu_batch(problem, gpu, mapping, calibration=calibration)
            parts = evaluate_gpu_batch(problem, gpu, mapping, calibration=raw)
            hz = gpu.clock_hz
            family = "fused" if mapping.kernel is KernelForm.FUSED else "unfused_gemm"
            row = {
                "variant": variant, "mask": problem.mask.value, "window": problem.window,
                "dtype": dtype, **{k: int(v) for k, v in shape.items()},
                "mapping": mapping.name, "kernel": mapping.kernel.value, **mapping.params(),
                "valid": bool(batch.valid[0]), "reasons": "; ".join(batch.reasons(0)),
                "predicted_s": float(batch.latency_s[0]),
                "raw_compute_s": sum(k["compute_cycles"][0] for k in parts.kernels) / hz,
                "raw_memory_s": sum(k["memory_cycles"][0] for k in parts.kernels) / hz,
                "raw_predicted_s": float(parts.latency_s[0]),
                "calibration": calibration[family].status,
                "arch": gpu.name, "flops": flops, "searched": mapping == pick,
            }  # fmt: skip
            try:
                runner = Runner(problem, mapping, device_arrays)
                before = backend.clocks()["sm_clock_mhz"]
                times = backend.time_ms(runner, warmup=warmup, repeats=repeats)
                after = backend.clocks()["sm_clock_mhz"]
                out = from_device(problem, runner())
                if reference is None:
                    reference = out if mapping.kernel is KernelForm.UNFUSED else None
                error = _error(problem, arrays, mapping, out)
                row.update(
                    measured_s=float(np.median(times)) / 1e3, measured_min_s=min(times) / 1e3,
                    repeats=repeats, registers=",".join(map(str, runner.registers())),
                    registers_model=_model_registers(problem, mapping),
                    smem_bytes=",".join(str(x.smem_bytes) for x in runner.plan),
                    sm_clock_before_mhz=before, sm_clock_after_mhz=after, rel_error=error,
                    status="ok",
                )  # fmt: skip
            except (SpecError, cp.cuda.driver.CUDADriverError, cp.cuda.runtime.CUDARuntimeError,
                    cp.cuda.compiler.CompileException) as error:  # fmt: skip
                row.update(measured_s=np.nan, status=f"failed: {str(error).splitlines()[0]}")
            rows.append(row)
        sdpa = _sdpa_ms(problem, arrays, warmup, repeats) if torch_sdpa else None
        if sdpa is not None:
            rows.append({
                "variant": variant, "mask": problem.mask.value, "window": problem.window,
                "dtype": dtype, **{k: int(v) for k, v in shape.items()},
                "mapping": "torch_sdpa", "kernel": "torch", "measured_s": sdpa / 1e3,
                "predicted_s": np.nan, "flops": flops, "arch": gpu.name, "status": "ok",
            })  # fmt: skip
        del device_arrays
        cp.get_default_memory_pool().free_all_blocks()
    frame = pd.DataFrame(rows)
    frame["tflops"] = frame["flops"] / frame["measured_s"] / 1e12
    frame["ratio"] = frame["measured_s"] / frame["predicted_s"]
    frame["peak_fraction"] = frame["flops"] / frame["measured_s"] / gpu.mma_flops_per_s(dtype)
    for key, value in info.items():
        frame[key] = value
    frame["date"] = time.strftime("%Y-%m-%d")
    return frame


def _model_registers(problem, mapping) -> str:
    """The registers per thread the model assumes for each launch ('-' for the combine and
    softmax kernels, which hold no tiles), to set beside the compiler's `registers`."""
    e, f, m = problem.head_dim, problem.head_dim_v, mapping
    tiling = (m.block_q, m.block_kv, m.warps)
    if m.kernel is KernelForm.FUSED:
        regs = [int(kernel_registers("fused", *tiling, e, f, problem.mask.value)[0])]
        return ",".join(map(str, regs + ["-"] * (m.split_kv > 1)))
    qk = int(kernel_registers("unfused_qk", *tiling, e, 0)[0])
    av = int(kernel_registers("unfused_av", *tiling, 0, f)[0])
    return f"{qk},-,{av}"


def _error(problem, arrays, mapping, out) -> float:
    """‖out − ref‖ / ‖ref‖ against the float64 tile executor on the first head (skipped, NaN,
    when one head's scores exceed 2^26 elements)."""
    from .tiles import run_tiles

    if problem.seq_q * problem.seq_kv > 1 << 26:
        return float("nan")
    first = {k: a[:1, :1] for k, a in arrays.items()}
    small = AttentionProblem(1, 1, *(getattr(problem, f) for f in (
        "seq_q", "seq_kv", "head_dim", "head_dim_v")), problem.mask, problem.window,
        problem.form, "fp64")  # fmt: skip
    ref = run_tiles(small, mapping, first["Q"], first["K"], first["V"])[0, 0]
    return float(np.linalg.norm(out[0, 0] - ref) / np.linalg.norm(ref))


def summarize(frame: pd.DataFrame) -> dict[str, float]:
    """MAPE of the predictions, the median over problems of the Spearman rank correlation
    between predicted and measured times of the mappings, and the share of problems whose
    predicted-best mapping is within 10% of the measured best."""
    ok = frame[
        (frame.get("status") == "ok") & frame["predicted_s"].notna() & frame["valid"].eq(True)
    ]
    if ok.empty:
        nan = float("nan")
        return {"mape": nan, "median_spearman": nan, "best_within_10pct": nan, "problems": 0}
    mape = float((ok["measured_s"] / ok["predicted_s"] - 1).abs().mean())
    keys = [
        c for c in ("variant", "mask", "window", "dtype", "B", "H", "E", "F", "M", "P") if c in ok
    ]
    rhos, hits = [], []
    for _, group in ok.groupby(keys):
        if len(group) >= 3:
            rhos.append(group["predicted_s"].rank().corr(group["measured_s"].rank()))
        best_predicted = group.loc[group["predicted_s"].idxmin(), "measured_s"]
        hits.append(best_predicted <= 1.1 * group["measured_s"].min())
    return {
        "mape": mape,
        "median_spearman": float(np.median(rhos)) if rhos else float("nan"),
        "best_within_10pct": float(np.mean(hits)),
        "problems": len(hits),
    }
