"""Attention variants as cascades of extended Einsums, registered in `ATTENTION`.

Every builder generates text for `parse_cascade` (the one path into the IR). Conventions
(FuseMax paper, Nayak et al., MICRO 2024): inputs Q[e,p], K[e,m], V[f,m], output AV[f,p];
multi-head variants put h first (Q[h,e,p], AV[h,f,p]) and key/value groups g first
(K[g,e,m]); no 1/sqrt(E) scale (fold it into Q).

The algorithm is chosen by the `form` parameter (a `Form` value or its name):

- `stable_3pass`: global max, exp-sum, divide (FuseMax Cascade 4): 3 passes over M.
- `online_2pass`: running max and denominator over key tiles M1, then A: 2 passes over M1.
- `fusemax_1pass`: running max, denominator and numerator x V (Cascade 5): 1 pass over M1.
- `direct` and `blocked`: the two forms of the variants without a softmax (sigmoid, linear).

Masks are the cascade's `mask:` directive, so every Einsum that iterates keys and queries
skips masked points and op counts are exact for the masked space. In the tiled forms of a
masked variant a whole key tile can be masked for a query (a window far from key 0); the
running max then starts at the finite floor `RM[0,p] = -1e30` instead of -inf, so that
`PRM = exp(RM[m1] - RM[m1+1])` is exp(0) = 1 rather than exp(-inf + inf) = NaN while no key
has been seen (RD and RNV are still 0 then, so the factor is harmless), and exp(-1e30 - x)
= 0 exactly once a real score arrives. This assumes every real score exceeds -1e30.

A query with no key (a window past the last key when M < P, a decode query before the
cache, a MoBA query whose blocks hold no key) gets AV = 0 in every form: the softmax over
an empty set of keys contributes nothing. The stable and 2-pass forms compute A only at
kept points, so AV is an empty sum; the 1-pass form divides RNV by RD, so a masked tiled
form starts the denominator at the finite floor `RD[0,p] = 1e-30` instead of 0: an empty
query ends with RNV = 0 and RD = 1e-30 (AV = 0, not 0/0 = NaN), and once a real score
arrives PRM = exp(-1e30 - x) = 0 drops the floor exactly (no extra operator, so op
counts are unchanged).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable

import numpy as np

from einsim.einsum import Cascade, SpecError, declare_density, parse_cascade

from .attention import ATTENTION


class Form(enum.Enum):
    """The algorithm a variant is computed with (see the module docstring)."""

    STABLE_3PASS = "stable_3pass"
    ONLINE_2PASS = "online_2pass"
    FUSEMAX_1PASS = "fusemax_1pass"
    DIRECT = "direct"
    BLOCKED = "blocked"


SOFTMAX_FORMS = (Form.STABLE_3PASS, Form.ONLINE_2PASS, Form.FUSEMAX_1PASS)
_FLOOR = "-1e30"  # the finite initial running max of masked tiled forms (module docstring)
_RD_FLOOR = "1e-30"  # the finite initial denominator of masked tiled forms (empty queries)


# ----------------------------------------------------------------------------- checks


def _form(variant: str, value, allowed: tuple[Form, ...]) -> Form:
    names = ", ".join(f.value for f in allowed)
    try:
        form = value if isinstance(value, Form) else Form(value)
    except ValueError:
        form = None
    if form not in allowed:
        raise SpecError(f"attention {variant!r}: form must be one of {names}, got {value!r}")
    return form


def _positive(variant: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(
            f"attention {variant!r}: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def _flag(variant: str, name: str, value) -> bool:
    if value in (True, False):  # 1 and 0 from the command line count too
        return bool(value)
    raise SpecError(f"attention {variant!r}: {name} must be true or false (1 or 0), got {value!r}")


def _choice(variant: str, name: str, value, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(
            f"attention {variant!r}: {name} must be one of {', '.join(allowed)}, got {value!r}"
        )
    return value


# ------------------------------------------------------------------- the softmax family


class Heads(enum.Enum):
    """How queries and keys/values carry heads."""

    SINGLE = "single"  # Q[e,p], K[e,m]: heads (and batch) are outer, parallel ranks
    MULTI = "multi"  # Q[h,e,p], K[h,e,m]: a per-head parameter (ALiBi slopes) needs h
    GROUPED = "grouped"  # Q[h,e,p], K[g,e,m]: head h reads group h // (H // G) (GQA, MQA)

    @property
    def prefix(self) -> str:
        return "" if self is Heads.SINGLE else "h,"

    @property
    def kv_prefix(self) -> str:
        return {"single": "", "multi": "h,", "grouped": "g,"}[self.value]

    @property
    def kv_read(self) -> str:
        return {"single": "", "multi": "h,", "grouped": "h//(H//G),"}[self.value]


def softmax_cascade(
    name: str,
    form: Form,
    m0: int,
    *,
    heads: Heads = Heads.SINGLE,
    extra_inputs: str = "",
    ranks: str = "",
    sizes: tuple[tuple[str, int], ...] = (),
    partitions: tuple[str, ...] = (),
    prelude: str = "",
    bias_prelude: str = "",
    bias: str = "",
    mask: str = "",
    gate: str = "",
) -> Cascade:
    """The text of a softmax attention in one of the three softmax forms, parsed.

    `bias_prelude` and `bias` may use `{m}` (the key position: `m`, or `m1*M0+m0` in a
    tiled form) and `{mi}` (the key indices of a tensor: `m`, or `m1,m0`); `mask` is written
    over m and p (the parser rewrites m into the tile's parts where needed). `gate`, when
    given, is an expression in `AVU[...]` (the ungated output) that defines AV.
    """
    tiled = form is not Form.STABLE_3PASS
    b, kv, kr = heads.prefix, heads.kv_prefix, heads.kv_read
    m, mi = ("m1*M0+m0", "m1,m0") if tiled else ("m", "m")
    out = "AVU" if gate else "AV"
    lines = [
        f"inputs: Q[{b}e,p], K[{kv}e,m], V[{kv}f,m]" + (f", {extra_inputs}" if extra_inputs else "")
    ]
    lines.append("outputs: AV")
    if ranks:
        lines.append(f"ranks: {ranks}")
    lines += [f"partition: {p}" for p in partitions]
    all_sizes = list(sizes)
    if tiled:
        lines.append("partition: M -> M1, M0")
        all_sizes.append(("M0", m0))
    if all_sizes:
        lines.append("sizes: " + ", ".join(f"{k}={v}" for k, v in all_sizes))
    if mask:
        lines.append(f"mask: {mask}")
    lines.append(prelude.strip())
    lines.append(bias_prelude.format(m=m, mi=mi).strip())
    if tiled:
        lines.append(f"BK[{kv}e,m1,m0] = K[{kv}e,m1*M0+m0]")
        lines.append(f"BV[{kv}f,m1,m0] = V[{kv}f,m1*M0+m0]")
        lines.append(f"QK[{b}m1,m0,p] = Q[{b}e,p] * BK[{kr}e,m1,m0]")
    else:
        lines.append(f"QK[{b}m,p] = Q[{b}e,p] * K[{kr}e,m]")
    s = "QK"
    if bias:
        lines.append(f"QKB[{b}{mi},p] = QK[{b}{mi},p] + {bias.format(m=m, mi=mi)}")
        s = "QKB"
    if not tiled:
        lines += [
            f"GM[{b}p] = max(m) {s}[{b}m,p]",
            f"SN[{b}m,p] = exp({s}[{b}m,p] - GM[{b}p])",
            f"SD[{b}p] = sum(m) SN[{b}m,p]",
            f"A[{b}m,p] = SN[{b}m,p] / SD[{b}p]",
            f"{out}[{b}f,p] = A[{b}m,p] * V[{kr}f,m]",
        ]
    else:
        lines += [
            f"LM[{b}m1,p] = max(m0) {s}[{b}m1,m0,p]",
            f"RM[{b}0,p] = {_FLOOR if mask else '-inf'}",
            f"RM[{b}m1+1,p] = max(RM[{b}m1,p], LM[{b}m1,p])",
            f"SLN[{b}m1,m0,p] = exp({s}[{b}m1,m0,p] - RM[{b}m1+1,p])",
            f"SLD[{b}m1,p] = sum(m0) SLN[{b}m1,m0,p]",
            f"PRM[{b}m1,p] = exp(RM[{b}m1,p] - RM[{b}m1+1,p])",
            f"RD[{b}0,p] = {_RD_FLOOR if mask else '0'}",
        ]
        if form is Form.ONLINE_2PASS:
            lines += [
                f"RD[{b}m1+1,p] = PRM[{b}m1,p] * RD[{b}m1,p] + SLD[{b}m1,p]",
                f"A[{b}m1,m0,p] = exp({s}[{b}m1,m0,p] - RM[{b}M1,p]) / RD[{b}M1,p]",
                f"{out}[{b}f,p] = A[{b}m1,m0,p] * BV[{kr}f,m1,m0]",
            ]
        else:
            lines += [
                f"SPD[{b}m1,p] = PRM[{b}m1,p] * RD[{b}m1,p]",
                f"RD[{b}m1+1,p] = SPD[{b}m1,p] + SLD[{b}m1,p]",
                f"SLNV[{b}m1,f,p] = SLN[{b}m1,m0,p] * BV[{kr}f,m1,m0]",
                f"SPNV[{b}m1,f,p] = PRM[{b}m1,p] * RNV[{b}m1,f,p]",
                f"RNV[{b}0,f,p] = 0",
                f"RNV[{b}m1+1,f,p] = SPNV[{b}m1,f,p] + SLNV[{b}m1,f,p]",
                f"{out}[{b}f,p] = RNV[{b}M1,f,p] / RD[{b}M1,p]",
            ]
    if gate:
        lines.append(f"AV[{b}f,p] = {gate}")
    return parse_cascade("\n".join(line for line in lines if line) + "\n", name=name)


# ------------------------------------------------------------------ registration helper

#: Small parameter sets and odd shapes per variant: the tests and `einsim check` use them.
Case = tuple[dict, tuple[dict, ...]]

_ODD = (dict(E=4, F=3, M=7, P=7, M0=3), dict(E=3, F=2, M=10, P=10, M0=4))
#: Fewer keys than queries with a partial last key tile: under a window, a decode offset or
#: a MoBA block past the last key, some queries have no key at all (AV = 0 there).
_EMPTY_QUERIES = dict(E=3, F=2, M=5, P=9, M0=2)


def _register(name: str, *, summary: str, forms: tuple[Form, ...], cases: tuple[Case, ...], **kw):
    """Register a builder with its forms and its test cases (`Entry.meta`)."""

    def add(builder: Callable[..., Cascade]):
        return ATTENTION.register(name, summary=summary, forms=forms, cases=cases, **kw)(builder)

    return add


_FORM_DEFAULT = Form.FUSEMAX_1PASS.value


# ---------------------------------------------------------------------- masked variants


@_register(
    "causal",
    summary="query p attends to keys m <= p (P = M)",
    forms=SOFTMAX_FORMS,
    cases=(({}, _ODD),),
)
def causal(form: str = _FORM_DEFAULT, M0: int = 256) -> Cascade:
    """Causal self-attention: softmax over keys m <= p (decoder prefill, P = M)."""
    return softmax_cascade(
        "causal",
        _form("causal", form, SOFTMAX_FORMS),
        _positive("causal", "M0", M0),
        mask="m <= p",
    )


@_register(
    "sliding_window",
    summary="causal and p - m < W (Mistral); causal=0: |p - m| <= W/2",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"W": 3}, (*_ODD, _EMPTY_QUERIES)),
        ({"W": 4, "causal": False}, (*_ODD, _EMPTY_QUERIES)),
    ),
)
def sliding_window(
    form: str = _FORM_DEFAULT, M0: int = 256, W: int = 4096, causal: bool = True
) -> Cascade:
    """Sliding-window attention: keys m <= p with p - m < W (Mistral 7B, Jiang et al. 2023);
    with causal=False the symmetric window |p - m| <= W/2 (Longformer, Beltagy et al. 2020)."""
    name = "sliding_window"
    mask = (
        "m <= p and p - m < W"
        if _flag(name, "causal", causal)
        else ("p - m <= W / 2 and m - p <= W / 2")
    )
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        sizes=(("W", _positive(name, "W", W)),),
        mask=mask,
    )


@_register(
    "sinks_window",
    summary="keys m < S (attention sinks) plus the causal window p - m < W (StreamingLLM)",
    forms=SOFTMAX_FORMS,
    cases=(({"S": 2, "W": 3}, _ODD),),
)
def sinks_window(form: str = _FORM_DEFAULT, M0: int = 256, S: int = 4, W: int = 4096) -> Cascade:
    """Attention sinks plus a causal window: keys m <= p with m < S or p - m < W
    (StreamingLLM, Xiao et al. ICLR 2024; DuoAttention's streaming heads, Xiao et al. 2025)."""
    name = "sinks_window"
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        sizes=(("S", _positive(name, "S", S)), ("W", _positive(name, "W", W))),
        mask="m <= p and (m < S or p - m < W)",
    )


def neighborhood_mask(axes: tuple[tuple[str, str], ...]) -> str:
    """The neighborhood condition over flattened positions m (key) and p (query).

    `axes` lists (grid size, kernel size) per axis, outermost first, e.g. (("X","KW"),
    ("Y","KW")); positions are row-major (p = x*Y + y). Per axis, with dilation DIL and
    stride STRIDE (NATTEN, Hassani et al. CVPR 2023; DiNAT 2022; GNA, Hassani et al. 2025):
    a key must be in the query's dilation group (j % DIL == i % DIL); inside the group
    (length L_r = (L - r + DIL - 1) // DIL, index i // DIL) the window of K consecutive
    group indices starts at clamp(c - K // 2, 0, L_r - K), where c is the query's stride
    group leader min((i // DIL // STRIDE) * STRIDE + STRIDE // 2, L_r - 1) (c = i // DIL
    for STRIDE = 1): at the borders the window shifts inward and keeps its size.
    """
    terms = []
    for axis, (size, kernel) in enumerate(axes):
        inner = "*".join(s for s, _ in axes[axis + 1 :])

        def coordinate(v: str, size: str = size, inner: str = inner) -> str:
            return f"({v} // ({inner})) % {size}" if inner else f"{v} % {size}"

        i, j = coordinate("p"), coordinate("m")
        r = f"({i}) % DIL"
        length = f"(({size} - {r} + DIL - 1) // DIL)"
        leader = f"min(({i}) // DIL // STRIDE * STRIDE + STRIDE // 2, {length} - 1)"
        start = f"min(max({leader} - {kernel} // 2, 0), {length} - {kernel})"
        jg = f"({j}) // DIL"
        terms.append(f"({j}) % DIL == {r} and {start} <= {jg} and {jg} < {start} + {kernel}")
    return " and ".join(terms)


def _neighborhood(name, form, M0, axes, kernels, DIL, STRIDE) -> Cascade:
    for size, value in axes:
        _positive(name, size, value)
    for kernel, value in kernels:
        _positive(name, kernel, value)
    _positive(name, "DIL", DIL)
    _positive(name, "STRIDE", STRIDE)
    kernel_of = dict(kernels)
    pairs = tuple((size, "KT" if size == "T" else "KW") for size, _ in axes)
    for (size, value), (_, kernel) in zip(axes, pairs, strict=True):
        if value // DIL < kernel_of[kernel]:
            raise SpecError(
                f"attention {name!r}: {kernel}={kernel_of[kernel]} needs {size} // DIL >= "
                f"{kernel} (each dilation group holds a whole window), got {size}={value}, "
                f"DIL={DIL}"
            )
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        sizes=(*axes, *kernels, ("DIL", DIL), ("STRIDE", STRIDE)),
        mask=neighborhood_mask(pairs),
    )


@_register(
    "neighborhood_2d",
    summary="X x Y grid, each query attends to its KW x KW neighborhood (NATTEN / GNA)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"X": 5, "Y": 3, "KW": 3}, (dict(E=3, F=2, M=15, P=15, M0=4),)),
        (
            {"X": 6, "Y": 7, "KW": 3, "DIL": 2, "STRIDE": 2},
            (dict(E=2, F=3, M=42, P=42, M0=5),),
        ),
        ({"X": 4, "Y": 5, "KW": 2, "STRIDE": 3}, (dict(E=2, F=2, M=20, P=20, M0=6),)),
    ),
)
def neighborhood_2d(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    X: int = 32,
    Y: int = 32,
    KW: int = 7,
    DIL: int = 1,
    STRIDE: int = 1,
) -> Cascade:
    """2D neighborhood attention on an X x Y grid (positions row-major, M = P = X*Y): each
    query attends to a KW x KW window with dilation DIL, shifted inward at the borders
    (NATTEN, Hassani et al. CVPR 2023); queries in a STRIDE x STRIDE group share the window
    of their center query (GNA, Hassani et al. 2025). See `neighborhood_mask`."""
    return _neighborhood(
        "neighborhood_2d", form, M0, (("X", X), ("Y", Y)), (("KW", KW),), DIL, STRIDE
    )


@_register(
    "neighborhood_3d",
    summary="T x X x Y video grid, a KT x KW x KW neighborhood (NATTEN 3D / GNA)",
    forms=SOFTMAX_FORMS,
    cases=(
        (
            {"T": 3, "X": 4, "Y": 3, "KT": 2, "KW": 3, "STRIDE": 2},
            (dict(E=2, F=2, M=36, P=36, M0=7),),
        ),
    ),
)
def neighborhood_3d(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    T: int = 8,
    X: int = 32,
    Y: int = 32,
    KT: int = 3,
    KW: int = 7,
    DIL: int = 1,
    STRIDE: int = 1,
) -> Cascade:
    """3D neighborhood attention on a T x X x Y grid (frames x height x width, row-major,
    M = P = T*X*Y): window KT frames x KW x KW, dilation and stride on every axis (NATTEN
    3D; GNA, Hassani et al. 2025, for video diffusion transformers)."""
    return _neighborhood(
        "neighborhood_3d",
        form,
        M0,
        (("T", T), ("X", X), ("Y", Y)),
        (("KT", KT), ("KW", KW)),
        DIL,
        STRIDE,
    )


@_register(
    "block_topk",
    aliases=("moba",),
    summary="key blocks of BS; own block + top-TOPK blocks by q . mean(K) (MoBA)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"BS": 3, "TOPK": 1}, (dict(E=3, F=2, M=10, P=10, M0=4),)),
        ({"BS": 2, "TOPK": 2, "causal": False}, (dict(E=4, F=3, M=9, P=9, M0=3),)),
        ({"BS": 2, "TOPK": 0}, (_EMPTY_QUERIES,)),
        ({"BS": 1, "TOPK": 1}, (dict(E=3, F=2, M=10, P=10, M0=4),)),  # padding past block N-1
    ),
)
def block_topk(
    form: str = _FORM_DEFAULT, M0: int = 256, BS: int = 512, TOPK: int = 3, causal: bool = True
) -> Cascade:
    """Mixture of Block Attention (MoBA, Lu et al. 2025): keys in blocks n of BS
    (`partition: M -> N, MB`); the gate scores each block by q . mean(K over the block);
    a query attends to its own block and the TOPK highest-scoring other blocks (causal:
    only earlier blocks, and m <= p). The selection is part of the cascade: T1..TK are
    the K largest eligible gate scores (a chain of max reductions, each below the last),
    and a block is kept when its score is >= TK (all eligible blocks when fewer than K)."""
    name = "block_topk"
    is_causal = _flag(name, "causal", causal)
    _positive(name, "BS", BS)
    _positive(name, "TOPK", TOPK, minimum=0)
    eligible = "n < p // MB" if is_causal else "n != p // MB"
    prelude = [
        "KS[e,n] = sum(mb) K[e,n*MB+mb]",
        "KMEAN[e,n] = KS[e,n] / min(MB, M - n * MB)",
        "GATE[n,p] = Q[e,p] * KMEAN[e,n]",
    ]
    previous = ""
    for k in range(1, TOPK + 1):
        below = f" and GATE[n,p] < T{k - 1}[p]" if previous else ""
        prelude.append(f"T{k}[p] = max(n) GATE[n,p] where {eligible}{below}")
        previous = f"T{k}"
    own = "m // MB == p // MB"
    # The gate of key m's block is read as GATE[(m // MB) % N, p]: equal to m // MB for
    # every key (m < M), and inside GATE for the padding of a partial last key tile
    # (m >= M: never computed, but a tiled form's filter is evaluated over whole tiles).
    chosen = (
        f" or ({eligible.replace('n', '(m // MB)', 1)} and GATE[(m // MB) % N,p] >= T{TOPK}[p])"
        if TOPK
        else ""
    )
    mask = f"({own}{chosen})"
    if is_causal:
        mask = f"m <= p and {mask}"
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        sizes=(("MB", BS),),
        partitions=("M -> N, MB",),
        prelude="\n".join(prelude),
        mask=mask,
    )
    return declare_density(cascade, functools.partial(_topk_density, TOPK + 1, is_causal))


def _topk_density(blocks: int, causal: bool, sizes) -> float:
    """MoBA's declared selection without data: `blocks` blocks of MB keys per query, over
    the keys the static mask allows (the causal prefix m <= p, else all M keys)."""
    p = np.arange(sizes["P"])
    allowed = np.minimum(p + 1, sizes["M"]) if causal else np.full(p.size, sizes["M"])
    return float(np.minimum(allowed, blocks * sizes["MB"]).sum() / allowed.sum())


# ------------------------------------------------------------------ heads, decode, cross

_GQA_SHAPES = (
    dict(H=4, G=2, E=3, F=2, M=7, P=7, M0=3),
    dict(H=3, G=1, E=2, F=3, M=10, P=10, M0=4),
)


def _causal_window_mask(name: str, causal, W, query: str = "p") -> tuple[str, tuple]:
    """`m <= q and q - m < W` for a query at position `query` (W = 0: no window)."""
    is_causal = _flag(name, "causal", causal)
    _positive(name, "W", W, minimum=0)
    if W and not is_causal:
        raise SpecError(f"attention {name!r}: W (a window) needs causal=1, got causal=0")
    if not is_causal:
        return "", ()
    if not W:
        return f"m <= {query}", ()
    return f"m <= {query} and {query} - m < W", (("W", W),)


@_register(
    "gqa",
    aliases=("mqa",),
    summary="H query heads share G key/value groups; head h reads group h // (H/G)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({}, _GQA_SHAPES),
        ({"causal": True, "W": 3}, (*_GQA_SHAPES, dict(H=4, G=2, E=3, F=2, M=5, P=9, M0=2))),
    ),
)
def gqa(form: str = _FORM_DEFAULT, M0: int = 256, causal: bool = False, W: int = 0) -> Cascade:
    """Grouped-query attention (Ainslie et al. EMNLP 2023): Q[h,e,p], K[g,e,m], V[g,f,m];
    head h uses group h // (H // G) (H a multiple of G). G = 1 is multi-query attention
    (Shazeer 2019), G = H multi-head. causal=1 masks m <= p; W > 0 adds p - m < W
    (Mistral's GQA with a sliding window)."""
    mask, sizes = _causal_window_mask("gqa", causal, W)
    return softmax_cascade(
        "gqa",
        _form("gqa", form, SOFTMAX_FORMS),
        _positive("gqa", "M0", M0),
        heads=Heads.GROUPED,
        sizes=sizes,
        mask=mask,
    )


@_register(
    "decode",
    summary="P new queries (P = 1: one token) after a KV cache: query p sits at M - P + p",
    forms=SOFTMAX_FORMS,
    cases=(
        ({}, (dict(E=4, F=3, M=7, P=1, M0=3), dict(E=2, F=2, M=10, P=3, M0=4), _EMPTY_QUERIES)),
        (
            {"W": 4, "grouped": True},
            (dict(H=4, G=2, E=3, F=2, M=11, P=1, M0=3), dict(H=4, G=2, E=3, F=2, M=5, P=9, M0=2)),
        ),
    ),
)
def decode(form: str = _FORM_DEFAULT, M0: int = 256, W: int = 0, grouped: bool = False) -> Cascade:
    """Decode: P new queries (P = 1 for one token) against a KV cache of M keys that ends
    with them: query p is at position M - P + p and attends to keys m <= M - P + p (all M
    keys for P = 1), within the window M - P + p - m < W when W > 0. M need not be a
    multiple of the tile M0 (the last tile is partial). grouped=1 uses GQA heads."""
    mask, sizes = _causal_window_mask("decode", True, W, query="(M - P + p)")
    heads = Heads.GROUPED if _flag("decode", "grouped", grouped) else Heads.SINGLE
    return softmax_cascade(
        "decode",
        _form("decode", form, SOFTMAX_FORMS),
        _positive("decode", "M0", M0),
        heads=heads,
        sizes=sizes,
        mask=mask,
    )


@_register(
    "cross",
    summary="cross attention: P queries against M != P keys of another sequence",
    forms=SOFTMAX_FORMS,
    cases=(({}, (dict(E=4, F=3, M=7, P=5, M0=3), dict(E=3, F=2, M=3, P=9, M0=2))),),
)
def cross(form: str = _FORM_DEFAULT, M0: int = 256) -> Cascade:
    """Cross attention (encoder-decoder, Vaswani et al. 2017): unmasked softmax over M keys
    for each of P queries, M and P independent."""
    return softmax_cascade(
        "cross", _form("cross", form, SOFTMAX_FORMS), _positive("cross", "M0", M0)
    )


# ------------------------------------------------------------------ scores and outputs

_BIAS_KINDS = ("tensor", "alibi", "lowrank")


@_register(
    "bias",
    summary="additive score bias: a Bias[m,p] input, ALiBi slopes, or a low-rank U.W",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"kind": "tensor"}, _ODD),
        ({"kind": "alibi", "causal": True}, (dict(H=2, E=3, F=2, M=7, P=7, M0=3),)),
        ({"kind": "lowrank"}, (dict(R=2, E=3, F=2, M=7, P=5, M0=3),)),
    ),
)
def bias(
    form: str = _FORM_DEFAULT, M0: int = 256, kind: str = "tensor", causal: bool = False
) -> Cascade:
    """Softmax of QK[m,p] + bias[m,p]: kind=tensor reads Bias[m,p]; kind=alibi adds
    SLOPE[h] * (m - p) per head (ALiBi, Press et al. ICLR 2022; multi-head Q[h,e,p],
    K[h,e,m]); kind=lowrank adds U[r,m] . W[r,p] summed over r (FlashBias, Wu et al. 2025).
    causal=1 masks m <= p."""
    name = "bias"
    kind = _choice(name, "kind", kind, _BIAS_KINDS)
    mask = "m <= p" if _flag(name, "causal", causal) else ""
    common = dict(mask=mask)
    if kind == "tensor":
        return softmax_cascade(
            name,
            _form(name, form, SOFTMAX_FORMS),
            _positive(name, "M0", M0),
            extra_inputs="Bias[m,p]",
            bias="Bias[{m},p]",
            **common,
        )
    if kind == "alibi":
        return softmax_cascade(
            name,
            _form(name, form, SOFTMAX_FORMS),
            _positive(name, "M0", M0),
            heads=Heads.MULTI,
            extra_inputs="SLOPE[h]",
            bias="SLOPE[h] * ({m} - p)",
            **common,
        )
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        extra_inputs="U[r,m], W[r,p]",
        bias_prelude="LRB[{mi},p] = U[r,{m}] * W[r,p]",
        bias="LRB[{mi},p]",
        **common,
    )


@_register(
    "gated",
    summary="AV x sigmoid(G[f,p]), an output gate per element (gated attention, Qwen)",
    forms=SOFTMAX_FORMS,
    cases=(({}, _ODD),),
)
def gated(form: str = _FORM_DEFAULT, M0: int = 256) -> Cascade:
    """Gated attention: softmax attention AVU[f,p], then AV[f,p] = AVU[f,p] * sigmoid(G[f,p])
    with G an input (Qiu et al., Gated Attention for LLMs, Qwen, 2025)."""
    return softmax_cascade(
        "gated",
        _form("gated", form, SOFTMAX_FORMS),
        _positive("gated", "M0", M0),
        extra_inputs="G[f,p]",
        gate="AVU[f,p] * sigmoid(G[f,p])",
    )


@_register(
    "sigmoid",
    summary="sigmoid(QK + b) V instead of softmax, no normalization: 1 pass",
    forms=(Form.DIRECT,),
    cases=(({"b": -1.5}, _ODD), ({"b": 0.0}, (dict(E=2, F=3, M=6, P=4),))),
)
def sigmoid(form: str = Form.DIRECT.value, b: float = 0.0) -> Cascade:
    """Sigmoid attention (Ramapuram et al., ICLR 2025): A[m,p] = sigmoid(QK[m,p] + b),
    AV = A V, no normalization over keys (b is typically -log M)."""
    _form("sigmoid", form, (Form.DIRECT,))
    if isinstance(b, bool) or not isinstance(b, int | float) or b != b:
        raise SpecError(f"attention 'sigmoid': b must be a number, got {b!r}")
    b = float(b)
    shifted = "QK[m,p]" if b == 0 else f"QK[m,p] {'+' if b > 0 else '-'} {abs(b)!r}"
    return parse_cascade(
        "inputs: Q[e,p], K[e,m], V[f,m]\noutputs: AV\n"
        "QK[m,p] = Q[e,p] * K[e,m]\n"
        f"A[m,p] = sigmoid({shifted})\n"
        "AV[f,p] = A[m,p] * V[f,m]\n",
        name="sigmoid",
    )


_FEATURE_MAPS = {"identity": "{x}", "elu1": "elu({x}) + 1"}


@_register(
    "linear",
    summary="causal linear attention phi(Q).phi(K) V: quadratic, or blocked (Lightning-2)",
    forms=(Form.DIRECT, Form.BLOCKED),
    cases=(
        ({"phi": "identity"}, _ODD),
        ({"phi": "elu1"}, (dict(E=3, F=2, M=8, P=8, M0=4), dict(E=2, F=2, M=5, P=5, M0=2))),
    ),
)
def linear(form: str = Form.BLOCKED.value, M0: int = 256, phi: str = "elu1") -> Cascade:
    """Causal linear attention (Katharopoulos et al. ICML 2020), unnormalized:
    AV[f,p] = sum over m <= p of (phi(Q[:,p]) . phi(K[:,m])) V[f,m], phi = identity or
    elu(x) + 1. form=direct is that quadratic form; form=blocked is Lightning Attention-2
    (Qin et al. 2024): key/query blocks of M0, the intra-block part as a masked QK
    (m // M0 == p // M0, m <= p), the inter-block part from a running state
    KV[n+1,e,f] = KV[n,e,f] + sum over block n of phi(K) V, read at the query's block."""
    name = "linear"
    form = _form(name, form, (Form.DIRECT, Form.BLOCKED))
    phi = _choice(name, "phi", phi, tuple(_FEATURE_MAPS))
    lines = ["inputs: Q[e,p], K[e,m], V[f,m]", "outputs: AV"]
    if form is Form.BLOCKED:
        lines += ["partition: M -> M1, M0", f"sizes: M0={_positive(name, 'M0', M0)}"]
    if phi == "identity":
        fq, fk = "Q", "K"
    else:
        fq, fk = "FQ", "FK"
        lines.append(f"FQ[e,p] = {_FEATURE_MAPS[phi].format(x='Q[e,p]')}")
        lines.append(f"FK[e,m] = {_FEATURE_MAPS[phi].format(x='K[e,m]')}")
    if form is Form.DIRECT:
        lines += [
            f"QK[m,p] = {fq}[e,p] * {fk}[e,m] where m <= p",
            "AV[f,p] = QK[m,p] * V[f,m] where m <= p",
        ]
    else:
        intra = "m <= p and m // M0 == p // M0"
        lines += [
            f"QKI[m,p] = {fq}[e,p] * {fk}[e,m] where {intra}",
            f"AVI[f,p] = QKI[m,p] * V[f,m] where {intra}",
            f"KVB[m1,e,f] = {fk}[e,m1*M0+m0] * V[f,m1*M0+m0]",
            "KV[0,e,f] = 0",
            "KV[m1+1,e,f] = KV[m1,e,f] + KVB[m1,e,f]",
            f"AVX[f,p] = {fq}[e,p] * KV[p // M0,e,f]",
            "AV[f,p] = AVI[f,p] + AVX[f,p]",
        ]
    return parse_cascade("\n".join(lines) + "\n", name=name)


@_register(
    "agent",
    summary="A agent tokens: softmax(AG^T K) V, then softmax(Q^T AG) times that",
    forms=SOFTMAX_FORMS,
    cases=(({}, (dict(A=3, E=4, F=3, M=7, P=5, M0=3), dict(A=1, E=2, F=2, M=4, P=6, M0=4))),),
)
def agent(form: str = _FORM_DEFAULT, M0: int = 256) -> Cascade:
    """Agent attention (Han et al. ECCV 2024) with agent tokens AG[e,a]: agent aggregation
    AGV[f,a] = softmax over m of (AG[:,a] . K[:,m]) times V[f,m], computed in `form`; then
    agent broadcast AV[f,p] = softmax over a of (Q[:,p] . AG[:,a]) times AGV[f,a], a
    stable 3-pass softmax over the few agents (A << M, so its passes cost no long buffer)."""
    name = "agent"
    stage1 = softmax_cascade(name, _form(name, form, SOFTMAX_FORMS), _positive(name, "M0", M0))
    # Stage 1 is an ordinary attention with the agents as its queries: rename p -> a.
    text = str(stage1).replace("Q[e,p], K[e,m], V[f,m]", "Q[e,p], K[e,m], V[f,m], AG[e,a]")
    body = []
    for line in text.splitlines()[1:]:
        if line.startswith(("inputs:", "outputs:")):
            body.append(line)
            continue
        line = line.replace("Q[e,p]", "AG[e,a]").replace("AV[", "AGV[")
        body.append(_rename_var(line, "p", "a"))
    body += [
        "QA[a,p] = Q[e,p] * AG[e,a]",
        "GA[p] = max(a) QA[a,p]",
        "SA[a,p] = exp(QA[a,p] - GA[p])",
        "DA[p] = sum(a) SA[a,p]",
        "AN[a,p] = SA[a,p] / DA[p]",
        "AV[f,p] = AN[a,p] * AGV[f,a]",
    ]
    return parse_cascade("\n".join(body) + "\n", name=name)


def _rename_var(line: str, old: str, new: str) -> str:
    """Rename an index variable in a statement (whole words only)."""
    import re

    return re.sub(rf"(?<![A-Za-z0-9_]){old}(?![A-Za-z0-9_])", new, line)


def pass_counts(name: str) -> dict[str, int | dict[str, int]]:
    """Passes over M (or over M1 and M0 when tiled) of each form of variant `name`.

    Example:
        >>> pass_counts("causal")["fusemax_1pass"]
        {'M1': 1, 'M0': 2}
    """
    from einsim.einsum import passes

    entry = ATTENTION.entry(name)
    forms = entry.meta.get("forms")
    if not forms:
        return {entry.name: passes(entry.item(), "M")}
    return {f.value: passes(entry.item(form=f.value), "M") for f in forms}
