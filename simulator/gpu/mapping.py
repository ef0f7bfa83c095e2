"""A GPU mapping: the tiling of one attention kernel (`GpuMapping`, `parse_gpu_mapping`) and
the tile parameters of a batch of mappings as arrays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

import numpy as np

from einsim.einsum import (
    SpecError,
)


class KernelForm(enum.Enum):
    FUSED = "fused"  # one kernel: FlashAttention-style tiles, intermediates on chip
    UNFUSED = "unfused"  # QK GEMM, softmax, AV GEMM: intermediates through HBM


GPU_PARAMETERS = ("block_q", "block_kv", "stages", "warps", "split_kv")


@dataclass(frozen=True, slots=True)
class GpuMapping:
    """The tiling of one attention kernel on a GPU.

    Attributes:
        kernel: fused (FA2-style) or unfused (three kernels through HBM).
        block_q: Br, query rows per CTA (unfused: rows of an S / output tile).
        block_kv: Bc, keys per shared-memory tile (unfused: columns of an S tile, and the
            reduction chunk of the AV GEMM).
        stages: depth of the shared-memory ring of K/V tiles (1 = no prefetch).
        warps: warps per CTA; in the fused kernel each owns Br / warps query rows.
        split_kv: CTAs per query tile, each over a contiguous share of the key tiles,
            combined by a second kernel (flash-decoding; fused only).
    """

    kernel: KernelForm = KernelForm.FUSED
    block_q: int = 128
    block_kv: int = 64
    stages: int = 2
    warps: int = 4
    split_kv: int = 1

    def __post_init__(self):
        for key in GPU_PARAMETERS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"GPU mapping: {key} must be a positive integer, got {value!r}")
        if self.kernel is KernelForm.UNFUSED and self.split_kv != 1:
            raise SpecError("GPU mapping: split_kv applies to the fused kernel only")

    @property
    def name(self) -> str:
        text = f"{self.kernel.value}:Br={self.block_q},Bc={self.block_kv}"
        text += f",stages={self.stages},warps={self.warps}"
        return text + (f",split={self.split_kv}" if self.split_kv > 1 else "")

    def params(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in GPU_PARAMETERS}


_ALIASES = {
    "br": "block_q",
    "bc": "block_kv",
    "split": "split_kv",
    **{k: k for k in GPU_PARAMETERS},
}


def parse_gpu_mapping(text: str) -> GpuMapping:
    """`fused:Br=128,Bc=64,stages=2,warps=4[,split=1]` or `unfused:Br=64,Bc=64,...`.

    Example:
        >>> parse_gpu_mapping("fused:Br=64,Bc=32,warps=4").block_kv
        32
    """
    kind, _, rest = text.strip().partition(":")
    try:
        kernel = KernelForm(kind.strip())
    except ValueError:
        known = ", ".join(k.value for k in KernelForm)
        raise SpecError(f"GPU mapping {text!r}: kernel must be one of {known}") from None
    values: dict[str, int] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        key = _ALIASES.get(key.strip().lower())
        if not sep or key is None:
            raise SpecError(
                f"GPU mapping {text!r}: expected KEY=INT with KEY in Br, Bc, stages, warps, split"
            )
        try:
            values[key] = int(value)
        except ValueError:
            raise SpecError(f"GPU mapping {text!r}: {pair!r} is not an integer") from None
    return GpuMapping(kernel, **values)


@dataclass(frozen=True)
class _Rows:
    """Tile parameters of n mappings, as int64 arrays of shape (n,)."""

    br: np.ndarray
    bc: np.ndarray
    stages: np.ndarray
    warps: np.ndarray
    split: np.ndarray
    n: int


def _rows(mapping: GpuMapping, params: MappingABC[str, object] | None) -> _Rows:
    params = dict(params or {})
    unknown = sorted(set(params) - set(GPU_PARAMETERS))
    if unknown:
        raise SpecError(
            f"GPU mapping: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(GPU_PARAMETERS)}"
        )
    arrays = {}
    for key in GPU_PARAMETERS:
        array = np.atleast_1d(np.asarray(params.get(key, getattr(mapping, key))))
        as_int = array.astype(np.int64)
        if array.ndim != 1 or np.any(as_int != array) or np.any(as_int < 1):
            raise SpecError(f"params[{key!r}]: expected positive integers")
        arrays[key] = as_int
    n = max(a.size for a in arrays.values())
    for key, array in arrays.items():
        if array.size not in (1, n):
            raise SpecError(f"params[{key!r}]: {array.size} values, others have {n}")
        arrays[key] = np.broadcast_to(array, (n,))
    if mapping.kernel is KernelForm.UNFUSED and np.any(arrays["split_kv"] != 1):
        raise SpecError("GPU mapping: split_kv applies to the fused kernel only")
    return _Rows(
        arrays["block_q"],
        arrays["block_kv"],
        arrays["stages"],
        arrays["warps"],
        arrays["split_kv"],
        n,
    )
