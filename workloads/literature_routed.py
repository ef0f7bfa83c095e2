"""Routed and selected attention of the literature (issue 16) as cascades in `ATTENTION`.

Routing Transformer, HyperAttention, HiP, FlexPrefill, Landmark attention, MoH, VMoBA and
BiFormer. Each system decides per query (or per query block, region or head) which keys it
reads; that decision is computed inside the cascade, as the system computes it, and is
priced like every other Einsum: centroid scores and their argmax (routing), LSH codes and
sorted ranks counted by comparisons (HyperAttention), representative-token scores and a
top-k per tree level (HiP), block means and a top-k by chained max Einsums T1..Tk (as
`block_topk`, MoBA). The attention then reads the selection through a data-dependent
filter (the `mask:` directive), so its points are counted from data (`op_counts(...,
inputs=)`) or from the density each builder declares (`declare_density`, documented on
each builder). Randomness (LSH projections, sampled columns, centroids, learned landmark
keys and routers) enters as inputs. Direct numpy formulas: `literature_routed_direct`.

Argmax and comparison counts are written with max/add/sub/mul (units of every target have
them); comparisons that only decide which points run are filters (free, as masks are).
For integers a, b: [a >= b] = max(0, 1 - max(0, b - a)) exactly.
"""

from __future__ import annotations

import functools

import numpy as np

from einsim.einsum import Cascade, SpecError, declare_density

from .attention import MAX_TOPK
from .variants import (
    SOFTMAX_FORMS,
    Form,
    Heads,
    _choice,
    _flag,
    _form,
    _register,
    _topk_density,
    softmax_cascade,
)

_FORM_DEFAULT = Form.FUSEMAX_1PASS.value
#: Bounds of structural parameters (each refused outside its range before anything is built).
MAX_TILE = 2**16  # M0, block, region and query-block sizes
MAX_CLUSTERS = 4096  # routing centroids C
MAX_BITS = 16  # HyperAttention hash bits R (codes * P stay exact in float64)
MAX_DEPTH = 6  # HiP tree levels above the key blocks
MAX_GRID = 4096  # a side of a video or image grid
MAX_WINDOW = 2**31 - 1
MAX_HEADS = 4096  # MoH shared heads HS

_ODD = (dict(E=4, F=3, M=7, P=7, M0=3), dict(E=3, F=2, M=10, P=10, M0=4))
_HEADS = (dict(H=5, E=3, F=2, M=7, P=7, M0=3), dict(H=4, E=2, F=3, M=10, P=10, M0=4))


def _bounded(variant: str, name: str, value, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise SpecError(
            f"attention {variant!r}: {name} must be an integer in [{minimum}, {maximum}], "
            f"got {value!r}"
        )
    return value


def _topk(score: str, var: str, out: str, eligible: str, k: int, prefix: str) -> list[str]:
    """T1..Tk: the k largest eligible scores per `out`, each a max below the previous one
    (the chained max of `block_topk`). A point is then kept when eligible and its score
    is >= Tk (every eligible point when fewer than k are eligible: Tk = -inf)."""
    lines = []
    for i in range(1, k + 1):
        conds = [f"({eligible})"] if eligible else []
        if i > 1:
            conds.append(f"{score} < {prefix}{i - 1}[{out}]")
        where = f" where {' and '.join(conds)}" if conds else ""
        lines.append(f"{prefix}{i}[{out}] = max({var}) {score}{where}")
    return lines


def _ge(a: str, b: str) -> str:
    """[a >= b] for integer-valued a and b, with two max and two sub."""
    return f"max(0, 1 - max(0, {b} - {a}))"


# ------------------------------------------------------------------ Routing Transformer


@_register(
    "routing",
    aliases=("routing_transformer",),
    summary="queries and keys to the nearest of C centroids MU; attend within the cluster",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"C": 3}, _ODD),
        ({"C": 2, "W": 2}, (*_ODD, dict(E=3, F=2, M=5, P=9, M0=2))),
        ({"C": 3, "causal": False}, _ODD),
    ),
)
def routing(
    form: str = _FORM_DEFAULT, M0: int = 256, C: int = 64, W: int = 0, causal: bool = True
) -> Cascade:
    """Routing Transformer (Roy et al., TACL 2021): queries and keys are assigned to the
    nearest of C centroids MU[e,c] (an input: the online k-means state), nearest by the dot
    product (the paper's k-means runs on layer-normalised, unit vectors); a query attends to
    the keys of its own cluster (causal: m <= p), plus the local window p - m < W when
    W > 0 (the paper's local heads). Argmax as a max over c of the centroids whose score is
    the maximum (ties take the larger c). Declared density: a window of W keys plus 1/C of
    the rest of the causal prefix per query (balanced clusters)."""
    name = "routing"
    is_causal = _flag(name, "causal", causal)
    C = _bounded(name, "C", C, 1, MAX_CLUSTERS)
    W = _bounded(name, "W", W, 0, MAX_WINDOW)
    if W and not is_causal:
        raise SpecError(f"attention {name!r}: W (a window) needs causal=1, got causal=0")
    prelude = """
SCQ[c,p] = Q[e,p] * MU[e,c]
BCQ[p] = max(c) SCQ[c,p]
CQ[p] = max(c) c where SCQ[c,p] >= BCQ[p]
SCK[c,m] = K[e,m] * MU[e,c]
BCK[m] = max(c) SCK[c,m]
CK[m] = max(c) c where SCK[c,m] >= BCK[m]
"""
    same = "CQ[p] == CK[m % M]"
    routed = f"({same} or p - m < W)" if W else f"({same})"
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        extra_inputs="MU[e,c]",
        sizes=(("C", C),) + ((("W", W),) if W else ()),
        prelude=prelude,
        mask=f"m <= p and {routed}" if is_causal else routed,
    )
    return declare_density(cascade, functools.partial(_routing_density, W, is_causal))


def _allowed(sizes, causal: bool) -> np.ndarray:
    p = np.arange(sizes["P"])
    return np.minimum(p + 1, sizes["M"]) if causal else np.full(p.size, sizes["M"])


def _routing_density(window: int, causal: bool, sizes) -> float:
    allowed = _allowed(sizes, causal)
    local = np.minimum(allowed, window)
    kept = local + (allowed - local) / sizes["C"]
    return float(kept.sum() / allowed.sum())


# --------------------------------------------------------------------- HyperAttention


@_register(
    "hyper_attention",
    aliases=("hyperattention",),
    summary="sortLSH block-diagonal (blocks of BS in hash order) + sampled columns SW",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"R": 2, "BS": 3}, _ODD),
        ({"R": 3, "BS": 2}, (dict(E=3, F=2, M=5, P=9, M0=2), dict(E=2, F=3, M=9, P=4, M0=4))),
    ),
)
def hyper_attention(form: str = _FORM_DEFAULT, M0: int = 256, R: int = 8, BS: int = 256):
    """HyperAttention (Han et al., ICLR 2024), non-causal. sortLSH: the code of a query or
    key is its R sign bits against random projections PR[e,r] (an input; angular LSH, bit r
    of weight 2^(R-1-r)); queries and keys are each sorted by (code, position), their
    sorted ranks counted by comparisons (O(P^2 + M^2) add/max, where the paper sorts), and
    a query attends to the keys whose rank is in the block of BS of its own rank. Sampled
    columns: SW[m] > 0 marks a sampled key and holds its log-weight (log(M/s) for s uniform
    samples, an input); a sampled key outside the block enters the same softmax with weight
    exp(SW[m]) (the paper's combination of the two parts by their log-sum-exps). Declared
    density: BS block keys plus BS sampled keys per query (the paper's b = m)."""
    name = "hyper_attention"
    R = _bounded(name, "R", R, 1, MAX_BITS)
    BS = _bounded(name, "BS", BS, 1, MAX_TILE)
    prelude = f"""
HQ[r,p] = Q[e,p] * PR[e,r]
HK[r,m] = K[e,m] * PR[e,r]
BQB[r,p] = 1 where HQ[r,p] > 0
BKB[r,m] = 1 where HK[r,m] > 0
CQ[0,p] = 0
CQ[r+1,p] = CQ[r,p] + CQ[r,p] + BQB[r,p]
CK[0,m] = 0
CK[r+1,m] = CK[r,m] + CK[r,m] + BKB[r,m]
UQ[p] = CQ[R,p] * P + p
UK[m] = CK[R,m] * M + m
RQ[p] = sum(pi) {_ge("UQ[p]", "(UQ[pi] + 1)")}
RK[m] = sum(mj) {_ge("UK[m]", "(UK[mj] + 1)")}
BQI[p] = sum(nbq) {_ge("RQ[p]", "nbq * PB")}
BKI[m] = sum(nbk) {_ge("RK[m]", "nbk * MBB")}
"""
    d = "(BQI[p] - BKI[{m}])"
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        extra_inputs="PR[e,r], SW[m]",
        sizes=(("R", R), ("PI1", 1), ("MJ1", 1), ("PB", BS), ("MBB", BS)),
        partitions=("P -> PI1, PI", "M -> MJ1, MJ", "P -> NBQ, PB", "M -> NBK, MBB"),
        prelude=prelude,
        bias=f"SW[{{m}}] * (1 - max(0, 1 - {d} * {d}))",
        mask="(BQI[p] == BKI[m % M] or SW[m % M] > 0)",
    )
    return declare_density(cascade, functools.partial(_hyper_density, BS))


def _hyper_density(bs: int, sizes) -> float:
    return min(1.0, 2 * bs / sizes["M"])


# -------------------------------------------------------------------------------- HiP


@_register(
    "hip",
    aliases=("hip_attention",),
    summary="per query block, TOPK key blocks by a coarse-to-fine tree search (HiP)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"BS": 2, "QBS": 3, "TOPK": 2, "DEPTH": 1}, _ODD),
        ({"BS": 1, "QBS": 2, "TOPK": 2, "DEPTH": 2}, (dict(E=3, F=2, M=10, P=10, M0=4),)),
        ({"BS": 2, "QBS": 4, "TOPK": 1, "DEPTH": 2}, (dict(E=3, F=2, M=9, P=9, M0=3),)),
    ),
)
def hip(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    BS: int = 64,
    QBS: int = 64,
    TOPK: int = 8,
    DEPTH: int = 3,
) -> Cascade:
    """HiP attention (Lee et al., ICLR 2025, Alg. 1), causal: keys in blocks n of BS,
    queries in blocks nq of QBS. The score of a tree node for a query block is the max over
    its queries of q . k at the node's representative token (the first key of the node).
    Level 0 holds nodes of 2^DEPTH blocks (HiP starts from TOPK equal nodes; a fixed node
    size keeps the tree static) starting at or before the query block's last query; each
    level keeps the TOPK best nodes and splits them in two; level DEPTH keeps TOPK blocks,
    attended with m <= p. Declared density: TOPK blocks of BS per query over the prefix."""
    name = "hip"
    BS = _bounded(name, "BS", BS, 1, MAX_TILE)
    QBS = _bounded(name, "QBS", QBS, 1, MAX_TILE)
    TOPK = _bounded(name, "TOPK", TOPK, 1, MAX_TOPK)
    DEPTH = _bounded(name, "DEPTH", DEPTH, 0, MAX_DEPTH)
    lines = [
        "RSP[n,p] = Q[e,p] * K[e,n*MB]",
        "RS[n,nq] = max(pq) RSP[n,nq*PQ+pq]",
    ]
    causal = "n * MB <= nq * PQ + PQ - 1"
    for level in range(DEPTH + 1):
        group = 2 ** (DEPTH - level)
        eligible = f"n % {group} == 0 and {causal}" if group > 1 else causal
        if level:
            eligible += f" and S{level - 1}[n // {2 * group} * {2 * group},nq] > 0"
        lines += _topk("RS[n,nq]", "n", "nq", eligible, TOPK, f"L{level}T")
        lines.append(f"S{level}[n,nq] = 1 where {eligible} and RS[n,nq] >= L{level}T{TOPK}[nq]")
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        sizes=(("MB", BS), ("PQ", QBS)),
        partitions=("M -> N, MB", "P -> NQ, PQ"),
        prelude="\n".join(lines),
        mask=f"m <= p and S{DEPTH}[(m // MB) % N,p // PQ] > 0",
    )
    return declare_density(cascade, functools.partial(_topk_density, TOPK, True))


# -------------------------------------------------------------------- Landmark attention


@_register(
    "landmark",
    aliases=("landmark_attention",),
    summary="landmark key LK per block of BS; own block + top-TOPK blocks by q . LK",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"BS": 3, "TOPK": 1}, (dict(E=3, F=2, M=10, P=10, M0=4), *_ODD)),
        ({"BS": 2, "TOPK": 2}, (dict(E=4, F=3, M=9, P=9, M0=3),)),
        ({"BS": 2, "TOPK": 0}, (dict(E=3, F=2, M=5, P=9, M0=2),)),
    ),
)
def landmark(form: str = _FORM_DEFAULT, M0: int = 256, BS: int = 64, TOPK: int = 4) -> Cascade:
    """Landmark attention (Mohtashami & Jaggi, NeurIPS 2023), causal, at inference with
    retrieval: one landmark token per block of BS keys, the block's last token (the paper
    appends a learned landmark token to each block; its key is K at that position); the
    query scores the landmarks of earlier (complete) blocks, takes the
    TOPK best blocks and attends to their tokens plus its own (local) block. One softmax
    over the retrieved tokens (the paper's grouped softmax also weights each block by its
    landmark's softmax; not modelled). Declared density: TOPK + 1 blocks of BS per query."""
    name = "landmark"
    BS = _bounded(name, "BS", BS, 1, MAX_TILE)
    TOPK = _bounded(name, "TOPK", TOPK, 0, MAX_TOPK)
    eligible = "n < p // MB"
    # The landmark of block n is its last key; `% M` only keeps the index of the partial
    # last block (never eligible: it is the query's own block or a later one) inside K.
    lines = [
        "GATE[n,p] = Q[e,p] * K[e,(n * MB + MB - 1) % M]",
        *_topk("GATE[n,p]", "n", "p", eligible, TOPK, "T"),
    ]
    chosen = f" or (m // MB < p // MB and GATE[(m // MB) % N,p] >= T{TOPK}[p])" if TOPK else ""
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        sizes=(("MB", BS),),
        partitions=("M -> N, MB",),
        prelude="\n".join(lines),
        mask=f"m <= p and (m // MB == p // MB{chosen})",
    )
    return declare_density(cascade, functools.partial(_topk_density, TOPK + 1, True))


# ----------------------------------------------------------------------------- MoH


@_register(
    "moh",
    aliases=("mixture_of_heads",),
    summary="each token uses HS shared heads + its top-TOPK heads by Q . RT, router-weighted",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"HS": 1, "TOPK": 2}, _HEADS),
        ({"HS": 0, "TOPK": 1, "causal": False}, _HEADS),
        ({"HS": 2, "TOPK": 0}, (_HEADS[0],)),
    ),
)
def moh(
    form: str = _FORM_DEFAULT, M0: int = 256, HS: int = 2, TOPK: int = 4, causal: bool = True
) -> Cascade:
    """MoH, mixture-of-head attention (Jin et al., 2024), multi-head Q[h,e,p], K[h,e,m]:
    the router score of head h for token p is RS = Q[h,:,p] . RT[h,:] (RT an input); heads
    h < HS are shared (always on), token p also activates its TOPK best routed heads; an
    active head's output is weighted by the softmax of the router scores over the token's
    active heads (one softmax: the paper's two softmaxes with their alpha mixing folded
    into it), inactive heads output 0 and skip their keys. causal=1 masks m <= p. Declared
    density: (HS + TOPK) / H of the heads per token."""
    name = "moh"
    is_causal = _flag(name, "causal", causal)
    HS = _bounded(name, "HS", HS, 0, MAX_HEADS)
    TOPK = _bounded(name, "TOPK", TOPK, 0, MAX_TOPK)
    if HS + TOPK == 0:
        raise SpecError(f"attention {name!r}: HS + TOPK must be >= 1 (no active head), got 0")
    parts = ([f"h < {HS}"] if HS else []) + ([f"RS[h,p] >= T{TOPK}[p]"] if TOPK else [])
    active = " or ".join(parts)
    lines = [
        "RS[h,p] = Q[h,e,p] * RT[h,e]",
        *_topk("RS[h,p]", "h", "p", f"h >= {HS}" if HS else "", TOPK, "T"),
        f"RSM[p] = max(h) RS[h,p] where {active}",
        f"RSE[h,p] = exp(RS[h,p] - RSM[p]) where {active}",
        "RSD[p] = sum(h) RSE[h,p]",
    ]
    # `m >= 0` (always true) scopes the non-causal mask to the Einsums over the keys.
    mask = f"{'m <= p' if is_causal else 'm >= 0'} and ({active})"
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        heads=Heads.MULTI,
        extra_inputs="RT[h,e]",
        prelude="\n".join(lines),
        mask=mask,
        gate="AVU[h,f,p] * RSE[h,p] / RSD[p]",
    )
    return declare_density(cascade, functools.partial(_moh_density, HS + TOPK))


def _moh_density(active: int, sizes) -> float:
    return min(1.0, active / sizes["H"])


# ---------------------------------------------------------------------------- VMoBA

_LAYOUTS = ("1d", "2d", "3d")


def _video_block(v: str, layout: str) -> str:
    """The block of flattened position v (row-major t, x, y) under a 1D/2D/3D partition."""
    t, x, y = f"({v} // (X * Y))", f"(({v} // Y) % X)", f"({v} % Y)"
    spatial = f"{x} // BX * NY + {y} // BY"
    if layout == "1d":
        return f"({t} // BT)"
    if layout == "2d":
        return f"({spatial})"
    return f"({t} // BT * (NX * NY) + {spatial})"


@_register(
    "vmoba",
    summary="MoBA on a T x X x Y video: 1D/2D/3D key blocks, own + top-TOPK by q . mean(K)",
    forms=SOFTMAX_FORMS,
    cases=(
        (
            {"T": 3, "X": 2, "Y": 3, "layout": "3d", "BT": 2, "BX": 1, "BY": 2, "TOPK": 2},
            (dict(E=3, F=2, M=18, P=18, M0=4),),
        ),
        (
            {"T": 3, "X": 3, "Y": 2, "layout": "1d", "BT": 2, "TOPK": 1},
            (dict(E=2, F=3, M=18, P=18, M0=5),),
        ),
        (
            {"T": 2, "X": 3, "Y": 3, "layout": "2d", "BX": 2, "BY": 2, "TOPK": 1},
            (dict(E=3, F=2, M=18, P=18, M0=4),),
        ),
    ),
)
def vmoba(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    T: int = 4,
    X: int = 32,
    Y: int = 32,
    layout: str = "3d",
    BT: int = 2,
    BX: int = 8,
    BY: int = 8,
    TOPK: int = 3,
) -> Cascade:
    """VMoBA (Wu et al., 2025), non-causal, on a T x X x Y grid (M = P = T*X*Y, row-major):
    keys in blocks by the layer's partition, `layout` 1d (chunks of BT frames), 2d (BX x BY
    spatial tiles spanning all frames) or 3d (BT x BX x BY cubes) (the paper cycles them
    over layers); a query attends to its own block and the TOPK other blocks with the best
    q . mean(K over the block) (MoBA's gate; VMoBA's global and threshold selection not
    modelled). Declared density: TOPK + 1 of the blocks per query."""
    name = "vmoba"
    layout = _choice(name, "layout", layout, _LAYOUTS)
    T, X, Y = (_bounded(name, k, v, 1, MAX_GRID) for k, v in (("T", T), ("X", X), ("Y", Y)))
    BT, BX, BY = (
        _bounded(name, k, v, 1, MAX_GRID) for k, v in (("BT", BT), ("BX", BX), ("BY", BY))
    )
    TOPK = _bounded(name, "TOPK", TOPK, 0, MAX_TOPK)
    nt = -(-T // BT) if layout != "2d" else 1
    nx, ny = (-(-X // BX), -(-Y // BY)) if layout != "1d" else (1, 1)
    blocks = nt * nx * ny
    bm, bp = _video_block("m", layout), _video_block("p", layout)
    lines = [
        f"KS[e,n] = sum(m) K[e,m] where {_video_block('m', layout)} == n",
        f"KC[n] = sum(m) 1 where {_video_block('m', layout)} == n",
        "KMEAN[e,n] = KS[e,n] / KC[n]",
        "GATE[n,p] = Q[e,p] * KMEAN[e,n]",
        *_topk("GATE[n,p]", "n", "p", f"n != {bp}", TOPK, "T"),
    ]
    chosen = f" or GATE[{bm} % N,p] >= T{TOPK}[p]" if TOPK else ""
    sizes = dict(T=T, X=X, Y=Y, BT=BT, BX=BX, BY=BY, NX=nx, NY=ny, N=blocks)
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        ranks="N",
        sizes=tuple(sizes.items()),
        prelude="\n".join(lines),
        mask=f"({bm} == {bp}{chosen})",
    )
    return declare_density(cascade, min(1.0, (TOPK + 1) / blocks))


# ------------------------------------------------------------------------- BiFormer


def _region(v: str) -> str:
    return f"(({v} // Y) // RX * NRY + ({v} % Y) // RY)"


@_register(
    "biformer",
    aliases=("bra",),
    summary="X x Y image, RX x RY regions; each region's top-TOPK regions by mean Q . mean K",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"X": 4, "Y": 5, "RX": 2, "RY": 2, "TOPK": 2}, (dict(E=3, F=2, M=20, P=20, M0=6),)),
        ({"X": 3, "Y": 3, "RX": 2, "RY": 1, "TOPK": 1}, (dict(E=2, F=3, M=9, P=9, M0=4),)),
    ),
)
def biformer(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    X: int = 64,
    Y: int = 64,
    RX: int = 8,
    RY: int = 8,
    TOPK: int = 4,
) -> Cascade:
    """BiFormer's bi-level routing attention (Zhu et al., CVPR 2023), non-causal, on an
    X x Y grid (M = P = X*Y, row-major) cut into regions of RX x RY (partial at the edges):
    region-level, the affinity of query region nq to key region n is mean(Q over nq) .
    mean(K over n); each query region routes to its TOPK regions (its own not forced);
    token-level, every query of the region attends to all tokens of the routed regions (the
    local-context depthwise convolution on V is not modelled). Declared density: TOPK of the
    regions per query."""
    name = "biformer"
    X, Y = (_bounded(name, k, v, 1, MAX_GRID) for k, v in (("X", X), ("Y", Y)))
    RX, RY = (_bounded(name, k, v, 1, MAX_GRID) for k, v in (("RX", RX), ("RY", RY)))
    TOPK = _bounded(name, "TOPK", TOPK, 1, MAX_TOPK)
    nrx, nry = -(-X // RX), -(-Y // RY)
    regions = nrx * nry
    lines = [
        f"QS[e,nq] = sum(p) Q[e,p] where {_region('p')} == nq",
        f"QC[nq] = sum(p) 1 where {_region('p')} == nq",
        f"KS[e,n] = sum(m) K[e,m] where {_region('m')} == n",
        f"KC[n] = sum(m) 1 where {_region('m')} == n",
        "QR[e,nq] = QS[e,nq] / QC[nq]",
        "KR[e,n] = KS[e,n] / KC[n]",
        "AR[n,nq] = QR[e,nq] * KR[e,n]",
        *_topk("AR[n,nq]", "n", "nq", "", TOPK, "T"),
    ]
    rq = f"{_region('p')} % NQ"
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        ranks="N, NQ",
        sizes=(
            ("X", X),
            ("Y", Y),
            ("RX", RX),
            ("RY", RY),
            ("NRY", nry),
            ("N", regions),
            ("NQ", regions),
        ),
        prelude="\n".join(lines),
        mask=f"AR[{_region('m')} % N,{rq}] >= T{TOPK}[{rq}]",
    )
    return declare_density(cascade, min(1.0, TOPK / regions))


# ------------------------------------------------------------------------ FlexPrefill

_PATTERNS = ("auto", "query_aware", "vertical_slash")


@_register(
    "flexprefill",
    summary="per head: vertical-slash or query-aware blocks reaching mass GAMMA (JS test)",
    forms=SOFTMAX_FORMS,
    cases=(
        # TAU = 0.3 on random data: some heads query-aware, the others vertical-slash.
        ({"BS": 2, "GAMMA": 0.8, "TAU": 0.3}, (dict(H=6, E=2, F=3, M=9, P=9, M0=2),)),
        ({"BS": 2, "pattern": "query_aware", "GAMMA": 0.7}, _HEADS),
        ({"BS": 3, "pattern": "vertical_slash", "GAMMA": 0.5}, _HEADS),
        ({"BS": 3, "GAMMA": 0.6}, (dict(H=3, E=3, F=2, M=10, P=10, M0=4),)),
    ),
)
def flexprefill(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    BS: int = 128,
    GAMMA: float = 0.9,
    TAU: float = 0.1,
    pattern: str = "auto",
) -> Cascade:
    """FlexPrefill (Lai et al., ICLR 2025), causal prefill (M = P >= BS), multi-head. The
    last BS queries' attention A (exact, causal) gives vertical scores (sum over those
    queries per key) and slash scores (per offset p - m); vertical-slash heads keep the
    fewest keys and the fewest offsets whose scores reach GAMMA of the mass (kept: the mass
    of strictly better ones is < GAMMA, counted by comparisons where the paper sorts).
    Query-aware heads score key blocks by softmax(mean Q of the query block . mean K of the
    key block) and keep the fewest blocks reaching GAMMA. pattern=auto decides per head as
    the paper: query-aware when sqrt(JS(estimate, A pooled by key blocks)) < TAU on the
    last query block. Declared density: GAMMA of the causal points (scores spread evenly)."""
    name = "flexprefill"
    pattern = _choice(name, "pattern", pattern, _PATTERNS)
    BS = _bounded(name, "BS", BS, 1, MAX_TILE)
    gamma = _real(name, "GAMMA", GAMMA, 0.01, 1.0)  # 0 would keep no key
    tau = _real(name, "TAU", TAU, 0.0, 1.0)
    last = "(P - PL + pl)"
    lines = []
    if pattern != "query_aware":  # the last block's attention, vertical and slash scores
        lines += [
            f"LS[h,m,pl] = Q[h,e,{last} % P] * K[h,e,m] where m <= {last}",
            "LMX[h,pl] = max(m) LS[h,m,pl]",
            f"LE[h,m,pl] = exp(LS[h,m,pl] - LMX[h,pl]) where m <= {last}",
            "LD[h,pl] = sum(m) LE[h,m,pl]",
            f"LA[h,m,pl] = LE[h,m,pl] / LD[h,pl] where m <= {last}",
            "VS[h,m] = sum(pl) LA[h,m,pl]",
            f"SL[h,d] = sum(pl) LA[h,({last} - d) % M,pl] where d <= {last}",
            "VAB[h,m] = sum(mj) VS[h,mj] where VS[h,mj] > VS[h,m]",
            f"VK[h,m] = 1 where VAB[h,m] < {gamma!r} * PL",
            "SAB[h,d] = sum(dj) SL[h,dj] where SL[h,dj] > SL[h,d]",
            f"SK[h,d] = 1 where SAB[h,d] < {gamma!r} * PL",
        ]
    causal = "n * MB <= nq * PQ + PQ - 1"
    causal2 = "n2 * MB2 <= nq * PQ + PQ - 1"
    if pattern != "vertical_slash":  # pooled block scores, softmax over the key blocks
        lines += [
            "QBS[h,e,nq] = sum(pq) Q[h,e,nq*PQ+pq]",
            "QBC[nq] = sum(pq) 1 where nq * PQ + pq < P",
            "KBS[h,e,n] = sum(mb) K[h,e,n*MB+mb]",
            "KBC[n] = sum(mb) 1 where n * MB + mb < M",
            "QBM[h,e,nq] = QBS[h,e,nq] / QBC[nq]",
            "KBM[h,e,n] = KBS[h,e,n] / KBC[n]",
            f"BSC[h,n,nq] = QBM[h,e,nq] * KBM[h,e,n] where {causal}",
            f"BMX[h,nq] = max(n) BSC[h,n,nq] where {causal}",
            f"BEX[h,n,nq] = exp(BSC[h,n,nq] - BMX[h,nq]) where {causal}",
            "BSUM[h,nq] = sum(n) BEX[h,n,nq]",
            f"BEX2[h,n2,nq] = exp(BSC[h,n2,nq] - BMX[h,nq]) where {causal2}",
            f"BAB[h,n,nq] = sum(n2) BEX2[h,n2,nq] where {causal} and {causal2} and "
            "BEX2[h,n2,nq] > BEX[h,n,nq]",
            f"BKP[h,n,nq] = 1 where {causal} and BAB[h,n,nq] < {gamma!r} * BSUM[h,nq]",
        ]
    if pattern == "auto":  # Jensen-Shannon divergence on the last query block
        lines += [
            "EST[h,n] = BEX[h,n,NQ - 1] / BSUM[h,NQ - 1]",
            "TRU[h,n] = sum(mb) VS[h,n*MB+mb] / PL",
            "MID[h,n] = 0.5 * EST[h,n] + 0.5 * TRU[h,n]",
            "JS[h] = sum(n) 0.5 * EST[h,n] * log(EST[h,n] / MID[h,n]) + "
            "0.5 * TRU[h,n] * log(TRU[h,n] / MID[h,n])",
            f"QA[h] = 1 where sqrt(max(JS[h], 0)) < {tau!r}",
        ]
    vertical = "(VK[h,m % M] > 0 or SK[h,(p - m) % P] > 0)"
    blocks = "BKP[h,(m // MB) % N,p // PQ] > 0"
    chosen = {
        "vertical_slash": vertical,
        "query_aware": blocks,
        "auto": f"(QA[h] > 0 and {blocks}) or (QA[h] <= 0 and {vertical})",
    }[pattern]
    sizes = [("PL", BS), ("MB", BS), ("MB2", BS), ("PQ", BS), ("DI1", 1), ("DJ1", 1)]
    sizes += [("MJ1", 1)]
    parts = ["M -> MJ1, MJ", "P -> DI1, D", "P -> DJ1, DJ", "M -> N2, MB2", "P -> NQ, PQ"]
    parts += ["M -> N, MB"]
    cascade = softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _bounded(name, "M0", M0, 1, MAX_TILE),
        heads=Heads.MULTI,
        ranks="PL",
        sizes=tuple(sizes),
        partitions=tuple(parts),
        prelude="\n".join(lines),
        mask=f"m <= p and ({chosen})",
    )
    return declare_density(cascade, gamma)


def _real(variant: str, name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SpecError(
            f"attention {variant!r}: {name} must be a number in [{low}, {high}], got {value!r}"
        )
    return float(value)
