"""Direct numpy formulas of the literature variants (`literature`), written from the papers'
definitions with explicit per-query loops and dense masks, independently of the cascades."""

from __future__ import annotations

import math

import numpy as np

from einsim.einsum import SpecError

from .direct import DIRECT, _expand_groups, _positions, _scores, _softmax_av


@DIRECT.register("power_attention")
def _power_attention(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    m, p = _positions(k.shape[-1], q.shape[-1])
    d = p // params["BS"] - m // params["BS"]
    power_of_two = (d > 0) & ((d & (d - 1)) == 0)
    return _softmax_av(_scores(q, k), (m <= p) & ((d < params["W"]) | power_of_two), v)


def _per_head_kv(inputs, params):
    """Q, K, V with one K/V per query head (a grouped K/V repeated over its H // G heads)."""
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    if params.get("grouped"):
        k, v = _expand_groups(k, q.shape[0]), _expand_groups(v, q.shape[0])
    return q, k, v


def _retrieval_heads(heads: int, percent: int) -> int:
    return math.ceil(heads * percent / 100)


@DIRECT.register("duo_attention")
def _duo_attention(inputs, params):
    q, k, v = _per_head_kv(inputs, params)
    m, p = _positions(k.shape[-1], q.shape[-1])
    causal = m <= p
    streaming = causal & ((m < params["S"]) | (p - m < params["W"]))
    retrieval = _retrieval_heads(q.shape[0], params["RP"])
    keep = np.stack([causal if h < retrieval else streaming for h in range(q.shape[0])])
    return _softmax_av(_scores(q, k), keep, v)


@DIRECT.register("razor_attention")
def _razor_attention(inputs, params):
    q, k, v = _per_head_kv(inputs, params)
    heads = q.shape[0]
    m, p = _positions(k.shape[-1], q.shape[-1])
    causal = m <= p
    kept = causal & ((m < params["S"]) | (p - m < params["W"]))
    dropped = (causal & ~kept).astype(float)  # [m, p]
    count = dropped.sum(axis=0)  # keys each query drops
    retrieval = _retrieval_heads(heads, params["RP"])
    out = np.empty((heads, v.shape[1], q.shape[-1]))
    for h in range(heads):
        scores = k[h].T @ q[h]
        if h < retrieval:
            out[h] = _softmax_av(scores, causal, v[h])
            continue
        # The compensation token: the mean key and value of the dropped keys, weighing
        # len(dropped) (its score shifted by log len(dropped); -inf when none is dropped).
        mean_k = (k[h] @ dropped) / np.maximum(count, 1)
        mean_v = (v[h] @ dropped) / np.maximum(count, 1)
        with np.errstate(divide="ignore"):
            token = np.sum(q[h] * mean_k, axis=0) + np.log(count)
        out[h] = _softmax_av(scores, kept, v[h], extra=(token, mean_v))
    return out


@DIRECT.register("combiner")
def _combiner(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    span, n_keys = params["L"], k.shape[1]
    starts = range(0, n_keys, span)
    # Each earlier span is one summary token: the mean of its keys and values.
    k_sum = np.stack([k[:, s : s + span].mean(axis=1) for s in starts], axis=1)
    v_sum = np.stack([v[:, s : s + span].mean(axis=1) for s in starts], axis=1)
    m, p = _positions(n_keys, q.shape[1])
    local = (m >= p // span * span) & (m <= p)  # the query's own span, up to itself
    summary = np.arange(len(starts))[:, None] < p // span  # spans before the query's
    scores = np.concatenate([k, k_sum], axis=1).T @ q
    keep = np.concatenate([local, summary], axis=0)
    return _softmax_av(scores, keep, np.concatenate([v, v_sum], axis=1))


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
    m, p = _positions(n_keys, n_queries)
    # q_p . (k_m + er_{p-m}): the key term and the relative term ER^T Q read at p - m.
    relative = (er.T @ q)[np.clip(p - m, 0, None), p]
    return _softmax_av(np.where(m <= p, k.T @ q + relative, 0.0), m <= p, v)


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
