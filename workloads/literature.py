"""Attention systems of the literature (issue 16) as cascades, registered in `ATTENTION`.

PowerAttention, DuoAttention, RazorAttention, Combiner (fixed), softplus attention,
selective attention, relative attention (Music Transformer) and Titans' linear memory.
Each structure is computed inside the cascade where the system computes it: static masks
are the `mask:` directive, summaries and compensation tokens are Einsums of the cascade.
Their direct numpy formulas are in `literature_direct`.

A softmax over the masked keys plus a few extra (score, value) pairs per query (Combiner's
span summaries, RazorAttention's compensation token) is the variant's softmax cascade with
its last step replaced by a merge (`_merge_extra`): the extra part gives its max XM[p], its
denominator XD[p] relative to XM and its numerator XNV[f,p]; the merge rescales both parts
to the common max, exactly as FuseMax's PRM rescales two key tiles.
"""

from __future__ import annotations

import numpy as np

from einsim.einsum import Cascade, SpecError, parse_cascade

from .variants import (
    SOFTMAX_FORMS,
    Form,
    Heads,
    _flag,
    _form,
    _positive,
    _register,
    softmax_cascade,
)

_FORM_DEFAULT = Form.FUSEMAX_1PASS.value
#: A power of two above every distance: PW % d == 0 exactly when d is a power of two <= PW.
_PW = 2**30
_ODD = (dict(E=4, F=3, M=7, P=7, M0=3), dict(E=3, F=2, M=10, P=10, M0=4))
_HEADS = (dict(H=4, E=3, F=2, M=11, P=11, M0=4), dict(H=3, E=2, F=3, M=9, P=9, M0=2))
_GROUPED = (dict(H=4, G=2, E=3, F=2, M=11, P=11, M0=4), dict(H=3, G=1, E=2, F=3, M=9, P=9, M0=2))


def _bounded(variant: str, name: str, value, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise SpecError(
            f"attention {variant!r}: {name} must be an integer in [{minimum}, {maximum}], "
            f"got {value!r}"
        )
    return value


def _real(variant: str, name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SpecError(
            f"attention {variant!r}: {name} must be a number in [{low}, {high}], got {value!r}"
        )
    return float(value)


def _merge_extra(cascade: Cascade, form: Form, heads: Heads, extra: str) -> Cascade:
    """`cascade` (a softmax cascade) with one softmax over its keys and an extra part.

    `extra` holds Einsums defining XM[b p] (the extra scores' max), XD[b p] (sum of
    weight x exp(score - XM)) and XNV[b f,p] (the same sum times the extra values); with
    no extra key XD = XNV = 0 (and XM = -inf or any finite value); `b` is the head prefix.
    """
    b = heads.prefix
    lines = str(cascade).splitlines()
    body = [line for line in lines if not line.startswith("name:")]
    if form is Form.STABLE_3PASS:
        out = []
        for line in body:
            if line.startswith(f"SN[{b}m,p]"):
                out += [
                    f"GX[{b}p] = max(GM[{b}p], XM[{b}p])",
                    line.replace(f"- GM[{b}p]", f"- GX[{b}p]"),
                ]
            elif line.startswith(f"SD[{b}p]"):
                out += [
                    line.replace("SD[", "SDL[", 1),
                    f"XB[{b}p] = exp(XM[{b}p] - GX[{b}p])",
                    f"SD[{b}p] = SDL[{b}p] + XD[{b}p] * XB[{b}p]",
                ]
            elif line.startswith(f"AV[{b}f,p]"):
                out += [
                    line.replace("AV[", "AVL[", 1),
                    f"AV[{b}f,p] = AVL[{b}f,p] + XNV[{b}f,p] * XB[{b}p] / SD[{b}p]",
                ]
            else:
                out.append(line)
    else:
        tail = [
            f"GX[{b}p] = max(RM[{b}M1,p], XM[{b}p])",
            f"XA[{b}p] = exp(RM[{b}M1,p] - GX[{b}p])",
            f"XB[{b}p] = exp(XM[{b}p] - GX[{b}p])",
            f"DX[{b}p] = RD[{b}M1,p] * XA[{b}p] + XD[{b}p] * XB[{b}p]",
        ]
        out = []
        for line in body:
            if form is Form.ONLINE_2PASS and line.startswith(f"A[{b}m1,m0,p]"):
                rescaled = line.replace(f"RM[{b}M1,p]", f"GX[{b}p]")
                out += [*tail, rescaled.replace(f"RD[{b}M1,p]", f"DX[{b}p]")]
            elif form is Form.ONLINE_2PASS and line.startswith(f"AV[{b}f,p]"):
                out += [
                    line.replace("AV[", "AVL[", 1),
                    f"AV[{b}f,p] = AVL[{b}f,p] + XNV[{b}f,p] * XB[{b}p] / DX[{b}p]",
                ]
            elif form is Form.FUSEMAX_1PASS and line.startswith(f"AV[{b}f,p]"):
                out += [
                    *tail,
                    f"NX[{b}f,p] = RNV[{b}M1,f,p] * XA[{b}p] + XNV[{b}f,p] * XB[{b}p]",
                    f"AV[{b}f,p] = NX[{b}f,p] / DX[{b}p]",
                ]
            else:
                out.append(line)
    # The extra part's Einsums go right after the directives (they read inputs only).
    first = next(i for i, line in enumerate(out) if "=" in line and ":" not in line)
    text = "\n".join([*out[:first], extra.strip(), *out[first:]]) + "\n"
    return parse_cascade(text, name=cascade.name)


# ------------------------------------------------------------------------ static masks


def power_attention_keep(m: int, p: int, w: int, bs: int) -> np.ndarray:
    """Keys per query of PowerAttention, counted by block distance (O(M + P) memory)."""
    q = np.arange(p)
    counts = np.zeros(p, dtype=np.int64)
    blocks = -(-m // bs)
    for d in range(blocks):
        if not (d < w or (d and d & (d - 1) == 0)):
            continue
        lo = (q // bs - d) * bs  # first key of the block at distance d
        hi = np.minimum(np.minimum(lo + bs, m), q + 1)
        counts += np.clip(hi - np.maximum(lo, 0), 0, None) * (q // bs - d >= 0)
    return counts


@_register(
    "power_attention",
    summary="keys at power-of-two (block) distances plus a causal window of W (PowerAttention)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"W": 2}, (*_ODD, dict(E=2, F=2, M=19, P=19, M0=4))),
        ({"W": 1, "BS": 2}, (dict(E=3, F=2, M=21, P=21, M0=5),)),
    ),
)
def power_attention(form: str = _FORM_DEFAULT, M0: int = 256, W: int = 4, BS: int = 1) -> Cascade:
    """PowerAttention (Chen et al. 2025): with d = p//BS - m//BS, query p reads key m <= p
    when d < W (local window) or d is a power of two (PW % d == 0, PW = 2^30); BS = 1 is
    the token pattern, BS = 64 the paper's block kernel. Sinks are a separate variant."""
    name = "power_attention"
    d = "(p // BS - m // BS)"
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        sizes=(("W", _positive(name, "W", W)), ("BS", _positive(name, "BS", BS)), ("PW", _PW)),
        mask=f"m <= p and ({d} < W or PW % max({d}, 1) == 0)",
    )


def _head_sizes(variant: str, RP, S, W) -> tuple[tuple[str, int], ...]:
    """The sizes of a retrieval/streaming head split: RP (a percentage, absent when 0: a
    size is >= 1), the sinks S and the window W."""
    _bounded(variant, "RP (retrieval heads, percent)", RP, 0, 100)
    sizes = (("S", _positive(variant, "S", S)), ("W", _positive(variant, "W", W)))
    return ((("RP", RP),) if RP else ()) + sizes


def _heads(variant: str, grouped) -> Heads:
    """Per-head K/V (MULTI) or K/V groups shared by H // G query heads (GROUPED)."""
    return Heads.GROUPED if _flag(variant, "grouped", grouped) else Heads.MULTI


def _retrieval_term(RP: int) -> str:
    """Head h is a retrieval head when h < ceil(RP * H / 100)."""
    return "h * 100 < RP * H or " if RP else ""


@_register(
    "duo_attention",
    summary="per head: retrieval heads full causal, streaming heads sinks + window (DuoAttention)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"RP": 50, "S": 1, "W": 3}, _HEADS),
        ({"RP": 0, "S": 2, "W": 2}, _HEADS[:1]),
        ({"RP": 100, "S": 1, "W": 1}, _HEADS[1:]),
        ({"RP": 50, "S": 1, "W": 3, "grouped": True}, _GROUPED),
    ),
)
def duo_attention(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    RP: int = 50,
    S: int = 64,
    W: int = 256,
    grouped: bool = False,
) -> Cascade:
    """DuoAttention (Xiao et al. ICLR 2025): the first ceil(RP% of H) heads are retrieval heads
    (full causal; the kernel groups the heads its gates select first), the others streaming
    heads (m < S sinks or p - m < W); the paper's 64 sinks + 256 recent, RP 25-50%.
    grouped=True: K[g,e,m], V[g,f,m] shared by H // G query heads (GQA models, Llama-3)."""
    name = "duo_attention"
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        heads=_heads(name, grouped),
        sizes=_head_sizes(name, RP, S, W),
        mask=f"m <= p and ({_retrieval_term(RP)}m < S or p - m < W)",
    )


@_register(
    "razor_attention",
    summary="retrieval heads full; others sinks + window + one compensation token (RazorAttention)",
    forms=SOFTMAX_FORMS,
    cases=(
        ({"RP": 50, "S": 1, "W": 3}, _HEADS),
        ({"RP": 25, "S": 2, "W": 2}, _HEADS[:1]),
        ({"RP": 0, "S": 1, "W": 4}, _HEADS[1:]),
        ({"RP": 100, "S": 1, "W": 1}, _HEADS[1:]),
        ({"RP": 50, "S": 1, "W": 3, "grouped": True}, _GROUPED),
    ),
)
def razor_attention(
    form: str = _FORM_DEFAULT,
    M0: int = 256,
    RP: int = 15,
    S: int = 4,
    W: int = 256,
    grouped: bool = False,
) -> Cascade:
    """RazorAttention (Tang et al. 2024): heads h < ceil(RP% H) keep every key; the others keep
    sinks m < S and p - m < W, plus their compensation token: score q . mean(K_dropped),
    weight N_d, value mean(V_dropped) (numerator: the span's V sum), sums from prefix sums.
    grouped=True: K[g,e,m], V[g,f,m] (and their prefix sums) shared by H // G query heads."""
    name = "razor_attention"
    form = _form(name, form, SOFTMAX_FORMS)
    heads = _heads(name, grouped)
    g, read = heads.kv_prefix, heads.kv_read  # "g," and "h//(H//G)," when grouped
    sizes = _head_sizes(name, RP, S, W)
    streaming = "h * 100 >= RP * H and " if RP else "h >= 0 and "  # every head streams
    dropped = f"{streaming}p - W + 1 > S"  # the query's dropped span S..p-W is non-empty
    extra = f"""
CK[{g}0,e] = 0
CK[{g}m+1,e] = CK[{g}m,e] + K[{g}e,m]
CV[{g}0,f] = 0
CV[{g}m+1,f] = CV[{g}m,f] + V[{g}f,m]
ND[h,p] = (p - W + 1 - S) * 1 where {dropped}
KDS[h,e,p] = CK[{read}p-W+1,e] - CK[{read}S,e] where {dropped}
XNV[h,f,p] = CV[{read}p-W+1,f] - CV[{read}S,f] where {dropped}
CSS[h,p] = Q[h,e,p] * KDS[h,e,p] where {dropped}
XM[h,p] = CSS[h,p] / ND[h,p] where {dropped}
XD[h,p] = ND[h,p] * 1
"""
    cascade = softmax_cascade(
        name,
        form,
        _positive(name, "M0", M0),
        heads=heads,
        sizes=sizes,
        mask=f"m <= p and ({_retrieval_term(RP)}m < S or p - m < W)",
    )
    return _merge_extra(cascade, form, heads, extra)


_TILED = (Form.ONLINE_2PASS, Form.FUSEMAX_1PASS)


@_register(
    "combiner",
    summary="direct attention in the query's span of L + one mean summary per earlier span",
    forms=_TILED,
    cases=(({"L": 3}, (*_ODD, dict(E=2, F=2, M=11, P=11, M0=4))), ({"L": 1}, _ODD[:1])),
)
def combiner(form: str = _FORM_DEFAULT, M0: int = 256, L: int = 128) -> Cascade:
    """Combiner-Fixed (Ren et al. NeurIPS 2021), causal: keys m <= p of the query's span
    (m // L == p // L) and, for each earlier span n, one summary key/value (the span's mean
    K and V: sum / L, earlier spans are whole for P <= M), one softmax. Tiled forms only: a
    stable form's passes would be counted over the span partition N, L instead of M."""
    name = "combiner"
    form = _form(name, form, _TILED)
    earlier = "n < p // L"
    extra = f"""
KS[e,n] = sum(l) K[e,n*L+l]
VS[f,n] = sum(l) V[f,n*L+l]
KM[e,n] = KS[e,n] / L
VM[f,n] = VS[f,n] / L
CS[n,p] = Q[e,p] * KM[e,n] where {earlier}
XM[p] = max(n) CS[n,p] where {earlier}
XE[n,p] = exp(CS[n,p] - XM[p]) where {earlier}
XD[p] = sum(n) XE[n,p] where {earlier}
XNV[f,p] = XE[n,p] * VM[f,n] where {earlier}
"""
    cascade = softmax_cascade(
        name,
        form,
        _positive(name, "M0", M0),
        sizes=(("L", _positive(name, "L", L)),),
        partitions=("M -> N, L",),
        mask="m <= p and m // L == p // L",
    )
    return _merge_extra(cascade, form, Heads.SINGLE, extra)


# ------------------------------------------------------------------------ scores


@_register(
    "selective",
    summary="softmax with a per-query temperature 1 + tanh(WT . q) (selective attention)",
    forms=SOFTMAX_FORMS,
    cases=(({}, _ODD), ({"causal": False}, (dict(E=3, F=2, M=5, P=8, M0=2),))),
)
def selective(form: str = _FORM_DEFAULT, M0: int = 256, causal: bool = True) -> Cascade:
    """Selective self-attention (Zhang et al. NeurIPS 2024): the query is scaled by its own
    temperature TAU[p] = 1 + tanh(WT[e] . Q[e,p]) (WT an input, the small projection), computed
    as 2 / (1 + exp(-2 x)) (exp, no tanh unit); the scaled query then feeds QK."""
    name = "selective"
    form = _form(name, form, SOFTMAX_FORMS)
    cascade = softmax_cascade(
        name,
        form,
        _positive(name, "M0", M0),
        extra_inputs="WT[e]",
        prelude=(
            "TW[p] = WT[e] * Q[e,p]\nTAU[p] = 2 / (1 + exp(-2 * TW[p]))\nQS[e,p] = TAU[p] * Q[e,p]"
        ),
        mask="m <= p" if _flag(name, "causal", causal) else "",
    )
    text = (
        str(cascade)
        .replace("= Q[e,p] * K", "= QS[e,p] * K")
        .replace("= Q[e,p] * BK", "= QS[e,p] * BK")
    )
    return parse_cascade(text, name=name)


@_register(
    "relative",
    summary="QK + Q.Er[p - m] with relative embeddings Er, skewed (Music Transformer)",
    forms=SOFTMAX_FORMS,
    cases=(({}, (dict(E=4, F=3, M=7, P=7, R=7, M0=3), dict(E=3, F=2, M=10, P=10, R=12, M0=4))),),
)
def relative(form: str = _FORM_DEFAULT, M0: int = 256) -> Cascade:
    """Relative attention (Music Transformer, Huang et al. ICLR 2019), causal: QK[m,p] +
    SREL[m,p], SREL = Q[:,p] . ER[:, p - m] with ER[e,r] the embedding of distance r (R >= P);
    the skewing trick: QER = Q . ER (P x R, one matmul), then SREL reads QER[(p - m) % R, p]."""
    name = "relative"
    return softmax_cascade(
        name,
        _form(name, form, SOFTMAX_FORMS),
        _positive(name, "M0", M0),
        extra_inputs="ER[e,r]",
        prelude="QER[r,p] = Q[e,p] * ER[e,r]",
        bias="QER[(p - ({m})) % R, p]",
        mask="m <= p",
    )


@_register(
    "softplus",
    summary="softplus(log(n) QK)^POW, normalised (length-scaled softplus + re-weighting): 1 pass",
    forms=(Form.DIRECT,),
    cases=(({"POW": 3}, _ODD), ({"POW": 1, "causal": False}, (dict(E=3, F=2, M=5, P=8),))),
)
def softplus(form: str = Form.DIRECT.value, POW: int = 3, causal: bool = True) -> Cascade:
    """Softplus attention with re-weighting (Gao et al. 2025, LSSA): A = softplus(log(n_p) QK),
    n_p = p + 1 keys (causal, P = M) or M, L1-normalised, raised to POW, renormalised: that is
    A^POW / sum A^POW (a product chain); softplus > 0 needs no max, so one pass."""
    name = "softplus"
    _form(name, form, (Form.DIRECT,))
    POW = _bounded(name, "POW", POW, 1, 16)
    is_causal = _flag(name, "causal", causal)
    where = " where m <= p" if is_causal else ""
    count = "(p + 1)" if is_causal else "M"
    text = f"""inputs: Q[e,p], K[e,m], V[f,m]
outputs: AV
QK[m,p] = Q[e,p] * K[e,m]{where}
SC[m,p] = log({count}) * QK[m,p]{where}
SP[m,p] = log(1 + exp(SC[m,p])){where}
SW[m,p] = {" * ".join(["SP[m,p]"] * POW)}{where}
SD[p] = sum(m) SW[m,p]{where}
SNV[f,p] = SW[m,p] * V[f,m]{where}
AV[f,p] = SNV[f,p] / SD[p]
"""
    return parse_cascade(text, name=name)


# ------------------------------------------------------------------------ memory


@_register(
    "titans_memory",
    summary="delta-rule linear memory with decay, M_t = (1-a)M + th(v - M k)k^T, out M_t q",
    forms=(Form.DIRECT, Form.BLOCKED),
    cases=(
        ({"ALPHA": 0.1, "THETA": 0.5}, (dict(E=3, F=2, M=7, P=7), dict(E=4, F=3, M=10, P=10))),
        ({"ALPHA": 0.0, "THETA": 0.25}, (dict(E=2, F=2, M=5, P=5),)),
        # chunks of 3 and 4: a partial last chunk (7 = 3 + 3 + 1, 10 = 4 + 4 + 2)
        ({"ALPHA": 0.2, "THETA": 0.5, "CHUNK": 3}, (dict(E=3, F=2, M=7, P=7),)),
        ({"ALPHA": 1.0, "THETA": 0.3, "CHUNK": 4}, (dict(E=4, F=3, M=10, P=10),)),
    ),
)
def titans_memory(
    form: str = Form.DIRECT.value, ALPHA: float = 0.01, THETA: float = 0.1, CHUNK: int = 1
):
    """Titans' linear memory (Behrouz et al. 2024, Eq. 13-14, momentum eta = 0, constant
    gates), trained on mini-batches of CHUNK tokens as in the paper's Section 3.2: the
    gradient of token t is taken at the memory of its chunk's start t' = t - t % CHUNK,
    MEM_t = (1 - ALPHA) MEM_{t-1} + THETA (v_t - MEM_t' k_t) k_t^T, y_t = MEM_t q_t.
    CHUNK = 1 is the token-level delta rule (P = M).

    form=direct runs that recurrence token by token (a snapshot SNAP of the chunk-start
    memory, taken when t % CHUNK == 0). form=blocked is the paper's chunk-parallel form
    (Eq. 16-17): with g = 1 - ALPHA and chunks of M0 = CHUNK keys (the shape must not
    override M0), per chunk n with start memory MEM[n]
        ERR[n,i]  = v_i - MEM[n] k_i                                   (one matmul)
        y_c       = g^(c+1) MEM[n] q_c + THETA sum_{i<=c} g^(c-i) (k_i . q_c) ERR[n,i]
        MEM[n+1]  = g^CHUNK MEM[n] + THETA sum_i g^(CHUNK-1-i) ERR[n,i] k_i^T
    so the recurrence runs over chunks, not tokens; the decays g^d are the recurrence
    DEC[m0+1] = g DEC[m0] (CHUNK multiplies)."""
    name = "titans_memory"
    form = _form(name, form, (Form.DIRECT, Form.BLOCKED))
    alpha = _real(name, "ALPHA", ALPHA, 0.0, 1.0)
    theta = _real(name, "THETA", THETA, 0.0, 100.0)
    chunk = _bounded(name, "CHUNK", CHUNK, 1, 65536)
    keep = 1.0 - alpha
    head = "inputs: Q[e,p], K[e,m], V[f,m]\noutputs: AV\n"
    if form is Form.DIRECT:
        # the chunk-start memory the gradient is taken at (the memory itself when CHUNK = 1)
        start = "SNAP" if chunk > 1 else "MEM"
        snap = (
            "SNAP[0,f,e] = 0\n"
            f"SNAP[m+1,f,e] = SNAP[m,f,e] + ((m + 1) % {chunk} == 0) * "
            "(MEM[m+1,f,e] - SNAP[m,f,e])\n"
            if chunk > 1
            else ""
        )
        text = f"""MEM[0,f,e] = 0
PRED[m,f] = {start}[m,f,e] * K[e,m]
ERR[m,f] = V[f,m] - PRED[m,f]
UPD[m,f,e] = {theta!r} * ERR[m,f] * K[e,m]
MEM[m+1,f,e] = {keep!r} * MEM[m,f,e] + UPD[m,f,e]
{snap}AV[f,p] = MEM[p+1,f,e] * Q[e,p]
"""
        return parse_cascade(head + text, name=name)
    text = f"""partition: M -> M1, M0
sizes: M0={chunk}
BK[e,m1,m0] = K[e, m1*M0+m0]
BV[f,m1,m0] = V[f, m1*M0+m0]
DEC[0] = 1
DEC[m0+1] = {keep!r} * DEC[m0]
MEM[0,f,e] = 0
PRED[m1,m0,f] = MEM[m1,f,e] * BK[e,m1,m0]
ERR[m1,m0,f] = BV[f,m1,m0] - PRED[m1,m0,f]
GK[m1,m0,e] = {theta!r} * DEC[M0 - 1 - m0] * BK[e,m1,m0]
UPD[m1,f,e] = ERR[m1,m0,f] * GK[m1,m0,e]
MEM[m1+1,f,e] = {keep!r} * DEC[M0 - 1] * MEM[m1,f,e] + UPD[m1,f,e]
SQK[m0,p] = Q[e,p] * BK[e, p // M0, m0] where m0 <= p % M0
AVI[f,p] = {theta!r} * DEC[p % M0 - m0] * SQK[m0,p] * ERR[p // M0, m0, f] where m0 <= p % M0
AVM[f,p] = {keep!r} * DEC[p % M0] * MEM[p // M0, f, e] * Q[e,p]
AV[f,p] = AVM[f,p] + AVI[f,p]
"""
    return parse_cascade(head + text, name=name)
