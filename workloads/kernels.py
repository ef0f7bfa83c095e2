"""Plain tensor kernels as cascades, registered in `KERNELS` beside the attention variants.

`gemm` is the matrix multiply the systolic presets, the SCALE-Sim comparison and the
end-to-end layers (Q, K, V, Z, FFN1, FFN2) run on. Layout: both operands carry the reduced
rank first, as the FuseMax paper writes QK[m,p] = Q[e,p] * K[e,m].
"""

from __future__ import annotations

from einsim.einsum import Cascade, Registry, SpecError, parse_cascade

from .attention import ATTENTION, attention

KERNELS: Registry = Registry("kernel")


@KERNELS.register("gemm", summary="Z[m,n] = A[k,m] * B[k,n]: one matrix multiply")
def gemm() -> Cascade:
    """Z[m,n] = sum over k of A[k,m] * B[k,n] (M x K times K x N)."""
    return parse_cascade(
        "inputs: A[k,m], B[k,n]\noutputs: Z[m,n]\nZ[m,n] = A[k,m] * B[k,n]\n", name="gemm"
    )


def cascade(name: str, **params) -> Cascade:
    """Any registered cascade by name: an attention variant or a kernel such as `gemm`.

    Raises:
        SpecError: an unknown name, listing every known one.

    Example:
        >>> cascade("gemm").ranks
        ('K', 'M', 'N')
    """
    if name in ATTENTION:
        return attention(name, **params)
    if name in KERNELS:
        if params:
            raise SpecError(f"kernel {name!r} takes no parameters, got {', '.join(params)}")
        return KERNELS[name]()
    known = ", ".join(sorted([*ATTENTION, *KERNELS]))
    raise SpecError(f"unknown cascade {name!r}; known: {known}")
