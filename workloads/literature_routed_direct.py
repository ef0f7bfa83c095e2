"""Direct numpy formulas of the routed systems of `literature_routed`, written from the
papers' definitions (explicit argmax, sorting, per-query loops), independently of the
cascades, and registered in `DIRECT`."""

from __future__ import annotations

import numpy as np

from einsim.einsum import SpecError

from .direct import DIRECT, _scores, _softmax_av, _top_blocks


def _blocks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


def _top(scores: dict[int, float], k: int) -> list[int]:
    """The k best candidates (all when fewer)."""
    return sorted(scores, key=lambda c: -scores[c])[:k]


@DIRECT.register("routing")
def _routing(inputs, params):
    q, k, v, mu = inputs["Q"], inputs["K"], inputs["V"], inputs["MU"]
    cq = np.argmax(q.T @ mu, axis=1)  # nearest centroid by dot product
    ck = np.argmax(k.T @ mu, axis=1)
    m, p = np.arange(k.shape[1])[:, None], np.arange(q.shape[1])[None, :]
    keep = ck[:, None] == cq[None, :]
    if params["W"]:
        keep |= p - m < params["W"]
    if params["causal"]:
        keep &= m <= p
    return _softmax_av(k.T @ q, keep, v)


def _sorted_rank(codes: np.ndarray) -> np.ndarray:
    order = np.lexsort((np.arange(codes.size), codes))  # by code, then position
    rank = np.empty(codes.size, dtype=int)
    rank[order] = np.arange(codes.size)
    return rank


@DIRECT.register("hyper_attention")
def _hyper_attention(inputs, params):
    q, k, v, proj, sw = inputs["Q"], inputs["K"], inputs["V"], inputs["PR"], inputs["SW"]
    weights = 2 ** np.arange(proj.shape[1])[::-1]  # first projection is the top bit

    def code(x):
        return ((x.T @ proj) > 0).astype(int) @ weights

    bq = _sorted_rank(code(q)) // params["BS"]
    bk = _sorted_rank(code(k)) // params["BS"]
    inside = bk[:, None] == bq[None, :]
    sampled = (sw > 0)[:, None]
    # Block entries weigh 1; sampled entries outside the block weigh exp(SW) (= M/s).
    log_weight = np.where(inside, 0.0, np.where(sampled, sw[:, None], 0.0))
    return _softmax_av(k.T @ q + log_weight, inside | sampled, v)


@DIRECT.register("hip")
def _hip(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    bs, qbs, top, depth = params["BS"], params["QBS"], params["TOPK"], params["DEPTH"]
    n_keys, n_queries = k.shape[1], q.shape[1]
    starts = list(range(0, n_keys, bs))
    keep = np.zeros((n_keys, n_queries), dtype=bool)
    for qs in range(0, n_queries, qbs):
        queries = np.arange(qs, min(qs + qbs, n_queries))
        last = queries[-1]

        # The score of a node: max over the block's queries at its first key.
        reps = k[:, ::bs].T @ q[:, queries]  # [block, query]
        score = reps.max(axis=1)

        size = 2**depth
        nodes = [b for b in range(0, len(starts), size) if b * bs <= last]
        while True:
            nodes = _top({b: float(score[b]) for b in nodes}, top)
            if size == 1:
                break
            size //= 2
            nodes = [c for b in nodes for c in (b, b + size) if c < len(starts) and c * bs <= last]
        for b in nodes:
            keep[starts[b] : starts[b] + bs, queries] = True
    m, p = np.arange(n_keys)[:, None], np.arange(n_queries)[None, :]
    return _softmax_av(k.T @ q, keep & (m <= p), v)


@DIRECT.register("landmark")
def _landmark(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    bs, top = params["BS"], params["TOPK"]
    n_keys, n_queries = k.shape[1], q.shape[1]
    blocks = _blocks(n_keys, bs)
    lk = k[:, [b[-1] for b in blocks]]  # the landmark: each block's last token
    own = np.arange(n_queries) // bs
    earlier = np.arange(len(blocks))[None, :] < own[:, None]
    chosen = _top_blocks(q.T @ lk, earlier, top)  # [p, block]: the TOPK best earlier blocks
    inside = own < len(blocks)
    chosen[inside, own[inside]] = True  # and the query's own block
    m, p = np.arange(n_keys)[:, None], np.arange(n_queries)[None, :]
    keep = chosen[:, np.arange(n_keys) // bs].T & (m <= p)
    return _softmax_av(k.T @ q, keep, v)


@DIRECT.register("moh")
def _moh(inputs, params):
    q, k, v, router = inputs["Q"], inputs["K"], inputs["V"], inputs["RT"]
    heads, n_queries = q.shape[0], q.shape[2]
    shared, top = params["HS"], params["TOPK"]
    out = np.zeros((heads, v.shape[1], n_queries))
    m, p = np.arange(k.shape[2])[:, None], np.arange(n_queries)[None, :]
    keep = (m <= p) if params["causal"] else np.ones((k.shape[2], n_queries), dtype=bool)
    per_head = [_softmax_av(k[h].T @ q[h], keep, v[h]) for h in range(heads)]
    for t in range(n_queries):
        score = {h: float(q[h, :, t] @ router[h]) for h in range(heads)}
        routed = {h: s for h, s in score.items() if h >= shared}
        active = [h for h in range(min(shared, heads))] + _top(routed, top)
        z = np.array([score[h] for h in active])
        w = np.exp(z - z.max())
        w /= w.sum()
        for h, weight in zip(active, w, strict=True):
            out[h, :, t] = weight * per_head[h][:, t]
    return out


def _video_blocks(params) -> np.ndarray:
    t, x, y = np.unravel_index(
        np.arange(params["T"] * params["X"] * params["Y"]), (params["T"], params["X"], params["Y"])
    )
    bt, bx, by = t // params["BT"], x // params["BX"], y // params["BY"]
    layout = params["layout"]
    if layout == "1d":
        parts = (bt,)
    elif layout == "2d":
        parts = (bx, by)
    else:
        parts = (bt, bx, by)
    _, block = np.unique(np.stack(parts, axis=1), axis=0, return_inverse=True)
    return block.ravel()


@DIRECT.register("vmoba")
def _vmoba(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    block = _video_blocks(params)
    if block.size != k.shape[1] or block.size != q.shape[1]:
        raise SpecError(f"direct: vmoba needs M = P = T*X*Y = {block.size}")
    ids = np.unique(block)  # 0, 1, ..., in order
    means = np.stack([k[:, block == b].mean(axis=1) for b in ids], axis=1)  # [e, block]
    own = block[:, None] == ids[None, :]  # [p, block]
    chosen = _top_blocks(q.T @ means, ~own, params["TOPK"]) | own
    return _softmax_av(k.T @ q, chosen[:, block].T, v)


@DIRECT.register("biformer")
def _biformer(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    size = params["X"] * params["Y"]
    if k.shape[1] != size or q.shape[1] != size:
        raise SpecError(f"direct: biformer needs M = P = X*Y = {size}")
    x, y = np.divmod(np.arange(size), params["Y"])
    region = np.unique(
        np.stack([x // params["RX"], y // params["RY"]], 1), axis=0, return_inverse=True
    )[1].ravel()
    ids = np.unique(region)
    q_mean = {r: q[:, region == r].mean(axis=1) for r in ids}
    k_mean = {r: k[:, region == r].mean(axis=1) for r in ids}
    keep = np.zeros((size, size), dtype=bool)
    for r in ids:
        routed = _top({n: float(q_mean[r] @ k_mean[n]) for n in ids}, params["TOPK"])
        for n in routed:
            keep[np.ix_(region == n, region == r)] = True
    return _softmax_av(k.T @ q, keep, v)


def _fewest(scores: np.ndarray, target: float) -> np.ndarray:
    """The fewest entries whose scores reach `target`: an entry is kept when the scores
    strictly above it sum to less than the target."""
    ascending = np.sort(scores)
    above = scores.size - np.searchsorted(ascending, scores, side="right")  # how many are > s
    sums = np.concatenate([[0.0], np.cumsum(ascending[::-1])])  # of the k largest, k = 0..n
    return sums[above] < target


def _causal_softmax(s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """softmax over keys m <= p of scores s[m, j] for queries at positions p[j]."""
    m = np.arange(s.shape[0])[:, None]
    e = np.where(m <= p[None, :], np.exp(s - s.max(axis=0)), 0.0)
    return e / e.sum(axis=0)


def _by_offset(keep: np.ndarray, n_keys: int) -> np.ndarray:
    """keep[(p - m) % n] as an [m, p] matrix, p < n = keep.size, m < n_keys: a read-only view
    of one array of n_keys + n - 1 entries (a Toeplitz matrix), no index arithmetic."""
    n = keep.size
    ext = keep[(np.arange(n_keys + n - 1) - (n_keys - 1)) % n]  # ext[j] = keep[j - n_keys + 1]
    # row i of the windows, column p: ext[i + p]; m = n_keys - 1 - i
    return np.lib.stride_tricks.sliding_window_view(ext, n)[::-1]


@DIRECT.register("flexprefill")
def _flexprefill(inputs, params):
    q, k, v = inputs["Q"], inputs["K"], inputs["V"]
    bs, gamma, tau, pattern = params["BS"], params["GAMMA"], params["TAU"], params["pattern"]
    heads, n_queries, n_keys = q.shape[0], q.shape[2], k.shape[2]
    causal = np.arange(n_keys)[:, None] <= np.arange(n_queries)[None, :]
    q_blocks, k_blocks = _blocks(n_queries, bs), _blocks(n_keys, bs)
    out = np.zeros((heads, v.shape[1], n_queries))
    s = np.empty((n_keys, n_queries))  # one head's scores, the memory reused by the next
    for h in range(heads):
        _scores(q[h], k[h], out=s)
        # Vertical-slash from the attention of the last bs queries.
        last = np.arange(n_queries - bs, n_queries)
        a = _causal_softmax(s[:, last], last)
        vertical = a.sum(axis=1)
        slash = np.zeros(n_queries)
        for j, query in enumerate(last):
            slash[query - np.arange(query + 1)] += a[: query + 1, j]
        # Query-aware: pooled block scores, softmax over the causal key blocks.
        k_mean = np.stack([k[h][:, b].mean(axis=1) for b in k_blocks], axis=1)
        k_starts = np.array([kb[0] for kb in k_blocks])
        chosen = np.zeros((len(q_blocks), len(k_blocks)), dtype=bool)  # [query block, key block]
        estimate = None
        for i, qb in enumerate(q_blocks):
            eligible = np.flatnonzero(k_starts <= qb[-1])
            z = q[h][:, qb].mean(axis=1) @ k_mean[:, eligible]
            est = np.exp(z - z.max())
            est /= est.sum()
            chosen[i, eligible[_fewest(est, gamma)]] = True
            if i == len(q_blocks) - 1:
                estimate = est
        if pattern == "auto":
            true = np.array([vertical[kb].sum() for kb in k_blocks]) / bs
            mid = (estimate + true) / 2
            js = 0.5 * np.sum(estimate * np.log(estimate / mid))
            js += 0.5 * np.sum(true * np.log(true / mid))
            aware = np.sqrt(max(js, 0.0)) < tau
        else:
            aware = pattern == "query_aware"
        if aware:  # key block of m chosen for the query block of p
            keep = chosen[np.arange(n_queries) // bs][:, np.arange(n_keys) // bs].T
        else:  # the key m, or the offset p - m, among the fewest reaching gamma
            vs_offset = _by_offset(_fewest(slash, gamma * bs), n_keys)
            keep = _fewest(vertical, gamma * bs)[:, None] | vs_offset
        keep &= causal
        out[h] = _softmax_av(s, keep, v[h])
    return out
