"""Direct numpy formulas of the literature variants (`literature`), written from the papers'
definitions with explicit per-query loops and dense masks, independently of the cascades."""

from __future__ import annotations

import math

import numpy as np

from einsim.einsum import SpecError

from .direct import DIRECT, _positions, _scores, _softmax_av


def _weighted_softmax(scores: np.ndarray, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """sum_j w_j exp(s_j) v_j / sum_j w_j exp(s_j) over a list of (score, weight, value[f])."""
    top = scores.max()
    w = weights * np.exp(scores - top)
    return values @ w / w.sum()


@DIRECT.register("power_attention")
def _power_attention(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    d = p // params["BS"] - m // params["BS"]
    power_of_two = (d > 0) & ((d & (d - 1)) == 0)
    return _softmax_av(_scores(q, k), (m <= p) & ((d < params["W"]) | power_of_two), v)


def _retrieval_heads(heads: int, percent: int) -> int:
    return math.ceil(heads * percent / 100)


@DIRECT.register("duo_attention")
def _duo_attention(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    causal = m <= p
    streaming = causal & ((m < params["S"]) | (p - m < params["W"]))
    retrieval = _retrieval_heads(q.shape[0], params["RP"])
    keep = np.stack([causal if h < retrieval else streaming for h in range(q.shape[0])])
    return _softmax_av(_scores(q, k), keep, v)


@DIRECT.register("razor_attention")
def _razor_attention(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    heads, n_queries = q.shape[0], q.shape[-1]
    sinks, window = params["S"], params["W"]
    retrieval = _retrieval_heads(heads, params["RP"])
    out = np.zeros((heads, v.shape[1], n_queries))
    for h in range(heads):
        for p in range(n_queries):
            if h < retrieval:
                kept, dropped = list(range(p + 1)), []
            else:
                kept = [m for m in range(p + 1) if m < sinks or p - m < window]
                dropped = [m for m in range(p + 1) if m not in kept]
            keys, values = k[h][:, kept], v[h][:, kept]
            weights = np.ones(len(kept))
            if dropped:  # the compensation token stands for the len(dropped) keys it replaces
                keys = np.column_stack([keys, k[h][:, dropped].mean(axis=1)])
                values = np.column_stack([values, v[h][:, dropped].mean(axis=1)])
                weights = np.append(weights, len(dropped))
            out[h, :, p] = _weighted_softmax(q[h][:, p] @ keys, weights, values)
    return out


@DIRECT.register("combiner")
def _combiner(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    span, n_keys = params["L"], k.shape[1]
    out = np.zeros((v.shape[0], q.shape[1]))
    for p in range(q.shape[1]):
        start = p // span * span
        local = list(range(start, min(p + 1, n_keys)))
        summaries = [range(s, min(s + span, n_keys)) for s in range(0, start, span)]
        keys = np.column_stack([k[:, local]] + [k[:, list(r)].mean(axis=1) for r in summaries])
        values = np.column_stack([v[:, local]] + [v[:, list(r)].mean(axis=1) for r in summaries])
        out[:, p] = _weighted_softmax(q[:, p] @ keys, np.ones(keys.shape[1]), values)
    return out


@DIRECT.register("selective")
def _selective(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    temperature = 1.0 + np.tanh(inputs["WT"] @ q)  # [p]
    m, p = _positions(k.shape[-1], q.shape[-1])
    keep = m <= p if params["causal"] else True
    return _softmax_av(k.T @ (q * temperature), keep, v)


@DIRECT.register("relative")
def _relative(inputs, params):
    q, k, v, er = inputs["Q"], inputs["K"], inputs["V"], inputs["ER"]
    n_keys, n_queries = k.shape[1], q.shape[1]
    if er.shape[1] < n_queries:
        raise SpecError(f"direct: relative needs R >= P, got R={er.shape[1]}, P={n_queries}")
    scores = np.full((n_keys, n_queries), -np.inf)
    for p in range(n_queries):
        for m in range(min(p + 1, n_keys)):
            scores[m, p] = q[:, p] @ (k[:, m] + er[:, p - m])
    m, p = _positions(n_keys, n_queries)
    return _softmax_av(np.where(m <= p, scores, 0.0), m <= p, v)


@DIRECT.register("softplus")
def _softplus(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    n_keys, n_queries = k.shape[1], q.shape[1]
    out = np.zeros((v.shape[0], n_queries))
    for p in range(n_queries):
        seen = min(p + 1, n_keys) if params["causal"] else n_keys
        a = np.logaddexp(0.0, math.log(seen) * (q[:, p] @ k[:, :seen]))  # softplus
        a = a / a.sum()  # L1
        a = a ** params["POW"]  # re-weighting
        out[:, p] = v[:, :seen] @ (a / a.sum())
    return out


def titans_chunked(q, k, v, alpha: float, theta: float, chunk: int) -> np.ndarray:
    """Titans' memory on mini-batches of `chunk` tokens (Behrouz et al. 2024, Section 3.2,
    Eq. 16-17), chunk by chunk as matmuls: with g = 1 - alpha and the chunk's start memory
    M0, y_c = g^(c+1) M0 q_c + theta sum_{i<=c} g^(c-i) (k_i . q_c)(v_i - M0 k_i), and the
    next start memory g^b M0 + theta sum_i g^(b-1-i) (v_i - M0 k_i) k_i^T."""
    g = 1.0 - alpha
    memory = np.zeros((v.shape[0], k.shape[0]))
    out = np.zeros((v.shape[0], q.shape[1]))
    for start in range(0, q.shape[1], chunk):
        ks, vs, qs = (
            k[:, start : start + chunk],
            v[:, start : start + chunk],
            q[:, start : start + chunk],
        )
        i = np.arange(ks.shape[1])
        errors = vs - memory @ ks  # [f, i]: the negative gradients at the chunk's start
        decay = np.where(i[:, None] <= i[None, :], g ** np.abs(i[None, :] - i[:, None]), 0.0)
        out[:, start : start + ks.shape[1]] = g ** (i + 1) * (memory @ qs) + theta * errors @ (
            decay * (ks.T @ qs)
        )
        memory = g ** len(i) * memory + theta * (errors * g ** (len(i) - 1 - i)) @ ks.T
    return out


@DIRECT.register("titans_memory")
def _titans_memory(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    alpha, theta = params["ALPHA"], params["THETA"]
    if params["CHUNK"] > 1:
        return titans_chunked(q, k, v, alpha, theta, params["CHUNK"])
    memory = np.zeros((v.shape[0], k.shape[0]))
    out = np.zeros((v.shape[0], q.shape[1]))
    for t in range(q.shape[1]):
        surprise = np.outer(v[:, t] - memory @ k[:, t], k[:, t])
        memory = (1.0 - alpha) * memory + theta * surprise
        out[:, t] = memory @ q[:, t]
    return out
