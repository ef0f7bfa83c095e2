"""A GPU as a target's architecture: `GpuArchitecture`, its YAML spec and limits, presets."""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from einsim.einsum import (
    SpecError,
    validation,
)

from ..spec import check_keys, integer, load_yaml, number

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}


@dataclass(frozen=True, slots=True)
class GpuArchitecture:
    """A GPU: per-SM resources, caches, memory and rates. Units in the names."""

    name: str
    sms: int
    clock_hz: float
    max_clock_hz: float
    smem_per_sm_bytes: int
    smem_per_block_bytes: int
    smem_reserved_per_block_bytes: int
    smem_bytes_per_clock_per_sm: float
    registers_per_sm: int
    registers_per_thread_max: int
    register_alloc_granularity: int
    max_warps_per_sm: int
    max_ctas_per_sm: int
    sub_partitions_per_sm: int
    l2_bytes: int
    hbm_bytes: int
    hbm_bytes_per_s: float
    l2_bytes_per_clock_per_sm: float
    tensor_flops_per_clock_per_sm: tuple[tuple[str, float], ...]
    cuda_core_flops_per_clock_per_sm: tuple[tuple[str, float], ...]
    sfu_ops_per_clock_per_sm: float
    board_power_w: float = 0.0
    # The tensor-core rate of mma.sync, the instruction the modelled (FlashAttention-2 style)
    # kernels issue, where it is below the chip's peak (sm_90: the peak needs wgmma); empty:
    # mma.sync runs at `tensor_flops_per_clock_per_sm` (sm_80).
    mma_sync_flops_per_clock_per_sm: tuple[tuple[str, float], ...] = ()

    def mma_flops_per_s(self, dtype: str) -> float:
        """Peak rate of the attention MMAs (per clock per SM x SMs x clock): the tensor cores
        through mma.sync (`mma_sync_flops_per_clock_per_sm`, else the tensor peak) for 16-bit
        inputs, CUDA cores (FMA) for fp32/fp64 inputs (run without tensor cores)."""
        tensor = dict(self.tensor_flops_per_clock_per_sm)
        tensor.update(self.mma_sync_flops_per_clock_per_sm)
        table = tensor if dtype in ("fp16", "bf16") else {}
        if dtype not in table:
            table = dict(self.cuda_core_flops_per_clock_per_sm)
            dtype = "fp64" if dtype == "fp64" else "fp32"
            if dtype not in table:
                raise SpecError(f"GPU {self.name!r} has no {dtype} rate")
        return table[dtype] * self.sms * self.clock_hz

    @property
    def fp32_ops_per_s(self) -> float:
        """FP32 instructions per second (lane-ops): FLOP/s / 2 (an FMA is two FLOPs)."""
        return dict(self.cuda_core_flops_per_clock_per_sm)["fp32"] / 2 * self.sms * self.clock_hz

    @property
    def l2_bytes_per_s(self) -> float:
        return self.l2_bytes_per_clock_per_sm * self.sms * self.clock_hz

    @property
    def sfu_ops_per_s(self) -> float:
        return self.sfu_ops_per_clock_per_sm * self.sms * self.clock_hz


_GPU_INTS = (
    "sms",
    "smem_per_sm_bytes",
    "smem_per_block_bytes",
    "smem_reserved_per_block_bytes",
    "registers_per_sm",
    "registers_per_thread_max",
    "register_alloc_granularity",
    "max_warps_per_sm",
    "max_ctas_per_sm",
    "sub_partitions_per_sm",
    "l2_bytes",
    "hbm_bytes",
)


_GPU_FLOATS = (
    "clock_hz",
    "max_clock_hz",
    "smem_bytes_per_clock_per_sm",
    "hbm_bytes_per_s",
    "l2_bytes_per_clock_per_sm",
    "sfu_ops_per_clock_per_sm",
)


def _rates(data: object, where: str) -> tuple[tuple[str, float], ...]:
    data = check_keys(data, where, (), (*DTYPE_BYTES, "tf32", "fp8", "int8"))
    if not data:
        raise SpecError(f"{where}: give at least one dtype rate")
    low, high = _GPU_RATE_RANGE
    return tuple(
        (str(k), number(v, f"{where}.{k}", minimum=low, maximum=high)) for k, v in data.items()
    )


# Bounds of a GPU spec's numbers (nan, inf and non-numbers are refused everywhere): wide
# enough for any real GPU, narrow enough that no time or occupancy overflows or comes out as
# nan, and that nothing the model allocates per SM or per slot grows without bound.
_GPU_INT_MAX = {
    "sms": 4096,
    "smem_per_sm_bytes": 2**32,
    "smem_per_block_bytes": 2**32,
    "smem_reserved_per_block_bytes": 2**32,
    "registers_per_sm": 2**24,
    "registers_per_thread_max": 2**16,
    "register_alloc_granularity": 2**16,
    "max_warps_per_sm": 1024,
    "max_ctas_per_sm": 1024,
    "sub_partitions_per_sm": 64,
    "l2_bytes": 2**40,
    "hbm_bytes": 2**50,
}


_GPU_FLOAT_RANGE = {
    "clock_hz": (1e3, 1e12),
    "max_clock_hz": (1e3, 1e12),
    "smem_bytes_per_clock_per_sm": (1e-3, 1e6),
    "hbm_bytes_per_s": (1.0, 1e16),
    "l2_bytes_per_clock_per_sm": (1e-3, 1e6),
    "sfu_ops_per_clock_per_sm": (1e-3, 1e6),
}


_GPU_RATE_RANGE = (1e-3, 1e9)  # FLOPs per clock per SM


def gpu_architecture_from_dict(data: MappingABC, origin: str = "architecture") -> GpuArchitecture:
    """Build and validate a `GpuArchitecture` from parsed YAML (`name` and a `gpu:` section).

    Raises:
        SpecError: unknown or missing keys (naming the known ones), non-positive numbers.
    """
    data = check_keys(data, origin, ("name", "gpu"))
    where = f"{origin}: gpu"
    gpu = check_keys(
        data["gpu"],
        where,
        (
            *_GPU_INTS,
            *_GPU_FLOATS,
            "tensor_flops_per_clock_per_sm",
            "cuda_core_flops_per_clock_per_sm",
        ),
        ("board_power_w", "mma_sync_flops_per_clock_per_sm"),
    )
    values: dict = {}
    for key in _GPU_INTS:
        values[key] = integer(gpu[key], f"{where}.{key}", maximum=_GPU_INT_MAX[key])
    for key in _GPU_FLOATS:
        low, high = _GPU_FLOAT_RANGE[key]
        values[key] = number(gpu[key], f"{where}.{key}", minimum=low, maximum=high)
    if values["smem_per_block_bytes"] > values["smem_per_sm_bytes"]:
        raise SpecError(
            f"{where}.smem_per_block_bytes: {values['smem_per_block_bytes']} exceeds "
            f"smem_per_sm_bytes ({values['smem_per_sm_bytes']})"
        )
    cores = gpu["cuda_core_flops_per_clock_per_sm"]
    if not isinstance(cores, MappingABC) or "fp32" not in cores:
        raise SpecError(f"{where}.cuda_core_flops_per_clock_per_sm: the fp32 rate is required")
    return GpuArchitecture(
        name=validation.name(data["name"], f"{origin}: name"),
        tensor_flops_per_clock_per_sm=_rates(
            gpu["tensor_flops_per_clock_per_sm"], f"{where}.tensor_flops_per_clock_per_sm"
        ),
        cuda_core_flops_per_clock_per_sm=_rates(cores, f"{where}.cuda_core_flops_per_clock_per_sm"),
        board_power_w=number(
            gpu.get("board_power_w", 0), f"{where}.board_power_w", positive=False, maximum=1e6
        ),
        mma_sync_flops_per_clock_per_sm=(
            _rates(
                gpu["mma_sync_flops_per_clock_per_sm"], f"{where}.mma_sync_flops_per_clock_per_sm"
            )
            if "mma_sync_flops_per_clock_per_sm" in gpu
            else ()
        ),
        **values,
    )


def load_gpu_architecture(
    name_or_path: str | Path, overrides: MappingABC[str, object] | None = None
) -> GpuArchitecture:
    """A bundled GPU preset (`simulator/gpus/`: `h100_sxm`, `h200`, `a100_sxm`) or a YAML path.

    Example:
        >>> load_gpu_architecture("h100_sxm", {"gpu.sms": 66}).sms
        66
    """
    from ..spec import apply_overrides

    data, origin = load_yaml(name_or_path, "GPU architecture", "gpus")
    if "gpu" not in data:
        raise SpecError(f"{origin}: not a GPU architecture (no top-level 'gpu:' section)")
    if overrides:
        data = apply_overrides(data, overrides, origin)
    return gpu_architecture_from_dict(data, origin)


def gpu_presets() -> list[str]:
    """The bundled GPU presets, by name."""
    folder = resources.files("einsim.simulator").joinpath("gpus")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
