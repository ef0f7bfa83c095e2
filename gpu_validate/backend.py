"""The one module that imports CuPy (lazily): availability, device facts, compiling and timing.

Without CuPy or without a visible NVIDIA GPU every function here raises `BackendUnavailable`
with one line saying which, and nothing else in einsim needs either.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import resources

from einsim.einsum import BackendUnavailable

INSTALL_HINT = "pip install 'einsim[gpu]' (cupy-cuda13x, for CUDA 13 drivers)"


@functools.lru_cache(maxsize=1)
def cupy():
    """The `cupy` module, once a GPU is known to be visible.

    Raises:
        BackendUnavailable: CuPy is not installed, or it sees no CUDA device.
    """
    try:
        import cupy as cp
    except ImportError:
        raise BackendUnavailable(f"GPU validation needs CuPy: {INSTALL_HINT}") from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver: say it in one line
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BackendUnavailable(f"GPU validation needs an NVIDIA GPU: {first}") from None
    if count < 1:
        raise BackendUnavailable("GPU validation needs an NVIDIA GPU: CuPy sees no device")
    return cp


def available() -> bool:
    """Whether CuPy and a GPU are there (never raises)."""
    try:
        cupy()
    except BackendUnavailable:
        return False
    return True


def device_info() -> dict[str, object]:
    """Name, compute capability, SMs, L2 bytes, versions and clocks of device 0."""
    cp = cupy()
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    info = {
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": f"{props['major']}.{props['minor']}",
        "sms": int(props["multiProcessorCount"]),
        "l2_bytes": int(props["l2CacheSize"]),
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cuda_driver": cp.cuda.runtime.driverGetVersion(),
        "cupy": cp.__version__,
    }
    info.update(clocks())
    return info


def clocks() -> dict[str, object]:
    """Current SM and memory clocks in MHz from nvidia-smi (read only; never set)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.sm,clocks.mem", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")[0]
        sm, mem = (int(x) for x in out.split(","))
    except (OSError, ValueError, subprocess.SubprocessError):
        return {"sm_clock_mhz": -1, "mem_clock_mhz": -1}
    return {"sm_clock_mhz": sm, "mem_clock_mhz": mem}


def kernel_source() -> str:
    """The CUDA C++ of the attention kernels (package data, `kernels/attention.cu`)."""
    return resources.files("einsim.gpu_validate").joinpath("kernels", "attention.cu").read_text()


@functools.lru_cache(maxsize=64)
def module(name_expressions: tuple[str, ...], arch: str = ""):
    """A `cupy.RawModule` of `kernel_source()` instantiating the given template kernels."""
    cp = cupy()
    if not arch:  # plain sm_XY: mma.sync (WMMA) needs nothing Hopper-only
        arch = f"sm_{cp.cuda.Device(0).compute_capability}"
    return cp.RawModule(
        code=kernel_source(),
        options=("-std=c++17", f"--gpu-architecture={arch}", "--use_fast_math"),
        name_expressions=name_expressions,
    )


class L2Flusher:
    """Writes a buffer twice the L2 size between timed runs, so no input stays cached."""

    def __init__(self):
        cp = cupy()
        size = int(cp.cuda.runtime.getDeviceProperties(0)["l2CacheSize"]) * 2
        self.buffer = cp.empty(max(size, 1 << 20), dtype=cp.uint8)

    def __call__(self) -> None:
        self.buffer.fill(1)


def time_ms(run, *, warmup: int = 3, repeats: int = 20, flush: bool = True) -> list[float]:
    """Milliseconds of `run()` per repeat, by CUDA events, after `warmup` untimed runs; the
    L2 is flushed before each timed run (outside the events)."""
    cp = cupy()
    flusher = L2Flusher() if flush else None
    for _ in range(warmup):
        run()
    cp.cuda.Device().synchronize()
    times = []
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(repeats):
        if flusher is not None:
            flusher()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return times
