"""Attention algorithms as cascades of extended Einsums, behind the `ATTENTION` registry.

Tensor names and layouts follow the FuseMax paper (Nayak et al., MICRO 2024): inputs
Q[e,p], K[e,m], V[f,m] (embedding rank first, then position), output AV[f,p]; no 1/sqrt(E)
scale (it is folded into Q). A builder returns a `Cascade` (structure only); its keyword
parameters are structural choices such as the tile M0, stored as default sizes.
"""

from __future__ import annotations

import inspect

from einsim.einsum import Cascade, Registry, SpecError, parse_cascade, validation

ATTENTION: Registry = Registry("attention variant")

_HEADER = "inputs: Q[e,p], K[e,m], V[f,m]\noutputs: AV[f,p]\n"


@ATTENTION.register("naive_2pass", summary="softmax without max subtraction: 2 passes over M")
def naive_2pass() -> Cascade:
    """exp(QK) / sum exp(QK): not numerically stable, 2 passes over M."""
    return parse_cascade(
        _HEADER
        + """
QK[m,p] = Q[e,p] * K[e,m]
SN[m,p] = exp(QK[m,p])
SD[p] = sum(m) SN[m,p]
A[m,p] = SN[m,p] / SD[p]
AV[f,p] = A[m,p] * V[f,m]
""",
        name="naive_2pass",
    )


@ATTENTION.register("stable_3pass", summary="the paper's Cascade 4: max, exp-sum, divide")
def stable_3pass() -> Cascade:
    """Numerically stable softmax (FuseMax Cascade 4): 3 passes over M."""
    return parse_cascade(
        _HEADER
        + """
QK[m,p] = Q[e,p] * K[e,m]
GM[p] = max(m) QK[m,p]
SN[m,p] = exp(QK[m,p] - GM[p])
SD[p] = sum(m) SN[m,p]
A[m,p] = SN[m,p] / SD[p]
AV[f,p] = A[m,p] * V[f,m]
""",
        name="stable_3pass",
    )


def _tiled_header(m0: int) -> str:
    if not isinstance(m0, int) or isinstance(m0, bool) or m0 < 1:
        raise SpecError(f"attention: M0 (the key tile) must be a positive integer, got {m0!r}")
    return (
        _HEADER
        + f"partition: M -> M1, M0\nsizes: M0={m0}\n"
        + "BK[e,m1,m0] = K[e, m1*M0+m0]\nBV[f,m1,m0] = V[f, m1*M0+m0]\n"
        + "QK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\nLM[m1,p] = max(m0) QK[m1,m0,p]\n"
        + "RM[0,p] = -inf\nRM[m1+1,p] = max(RM[m1,p], LM[m1,p])\n"
    )


@ATTENTION.register("online_2pass", summary="running max and denominator, then A and AV")
def online_2pass(M0: int = 256) -> Cascade:
    """Online softmax: RM and RD run over M1 in pass 1; A = exp(QK - RM[M1]) / RD[M1] and AV
    in pass 2 (2 passes over M1)."""
    return parse_cascade(
        _tiled_header(M0)
        + """
SLN[m1,m0,p] = exp(QK[m1,m0,p] - RM[m1+1,p])
SLD[m1,p] = sum(m0) SLN[m1,m0,p]
PRM[m1,p] = exp(RM[m1,p] - RM[m1+1,p])
RD[0,p] = 0
RD[m1+1,p] = PRM[m1,p] * RD[m1,p] + SLD[m1,p]
A[m1,m0,p] = exp(QK[m1,m0,p] - RM[M1,p]) / RD[M1,p]
AV[f,p] = A[m1,m0,p] * BV[f,m1,m0]
""",
        name="online_2pass",
    )


@ATTENTION.register(
    "fusemax_1pass", aliases=("fusemax",), summary="the paper's Cascade 5: one pass over M1"
)
def fusemax_1pass(M0: int = 256) -> Cascade:
    """FuseMax 1-pass attention (Cascade 5): running max RM, denominator RD and numerator RNV
    corrected by PRM per key tile; 1 pass over M1, 2 over the fixed tile M0."""
    return parse_cascade(
        _tiled_header(M0)
        + """
SLN[m1,m0,p] = exp(QK[m1,m0,p] - RM[m1+1,p])
SLD[m1,p] = sum(m0) SLN[m1,m0,p]
PRM[m1,p] = exp(RM[m1,p] - RM[m1+1,p])
SPD[m1,p] = PRM[m1,p] * RD[m1,p]
RD[0,p] = 0
RD[m1+1,p] = SPD[m1,p] + SLD[m1,p]
SLNV[m1,f,p] = SLN[m1,m0,p] * BV[f,m1,m0]
SPNV[m1,f,p] = PRM[m1,p] * RNV[m1,f,p]
RNV[0,f,p] = 0
RNV[m1+1,f,p] = SPNV[m1,f,p] + SLNV[m1,f,p]
AV[f,p] = RNV[M1,f,p] / RD[M1,p]
""",
        name="fusemax_1pass",
    )


def parameters(name: str) -> dict[str, object]:
    """A variant's parameters and their defaults, e.g. {"M0": 256}."""
    builder = ATTENTION[name]
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


#: Upper bounds of parameters beyond the generic ones (`check_parameters`): TOPK writes one
#: selection Einsum per chosen block into the cascade, so it bounds the cascade's length.
MAX_TOPK = 64
PARAMETER_MAXIMUM: dict[str, int] = {"TOPK": MAX_TOPK}
#: Bound of a real-valued parameter (a bias `b`): beyond it exp/sigmoid saturate anyway.
MAX_REAL_PARAMETER = 1e6


def check_parameters(name: str, params: dict[str, object]) -> None:
    """Bounds every variant parameter before a builder sees it, so no parameter can make a
    builder allocate or generate work beyond its text: an integer lies in [0, 2^31 - 1]
    (TOPK in [0, 64]), a real number is finite with |x| <= 1e6, a string is a short name.
    The builder then checks its own meaning (M0 >= 1, a form it supports).

    Raises:
        SpecError: naming the variant, the parameter and the bound.

    Example:
        >>> check_parameters("moba", {"TOPK": 65})
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: attention 'moba': TOPK: expected an integer <= 64, got 65
    """
    for key, value in params.items():
        where = f"attention {name!r}: {key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            validation.integer(
                value,
                where,
                minimum=-validation.MAX_RANK_SIZE,
                maximum=PARAMETER_MAXIMUM.get(key, validation.MAX_RANK_SIZE),
            )
        elif isinstance(value, float):
            validation.real(value, where, minimum=-MAX_REAL_PARAMETER, maximum=MAX_REAL_PARAMETER)
        elif isinstance(value, str):
            validation.name(value, where)


def attention(name: str, **params) -> Cascade:
    """Build a registered attention variant.

    Args:
        name: a registered name or alias (`einsim variants` lists them).
        **params: the variant's structural parameters (e.g. M0, the key tile).

    Raises:
        SpecError: an unknown name (listing the known ones) or parameter.

    Example:
        >>> attention("fusemax", M0=64).default_sizes
        (('M0', 64),)
    """
    builder = ATTENTION[name]
    known = parameters(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise SpecError(
            f"attention {name!r}: unknown parameter(s) {', '.join(unknown)}; it takes: {listed}"
        )
    check_parameters(name, params)
    return builder(**params)
