"""A numpy tile-loop executor of a GPU mapping: the functional reference of the GPU kernels.

It runs attention exactly as the CUDA kernels tile it (FlashAttention-2, Dao 2023,
Algorithm 1): per (batch, head, query tile of Br rows, split), the key tiles of Bc that
`einsim.simulator.gpu.cta_tiles` calls active, in order; the mask is applied only in the
tiles it calls partial (so a wrong tile class shows as a wrong answer); the running max m,
denominator l and numerator acc are corrected per tile (online softmax); splits are merged
as flash-decoding does: m = max_c m_c, l = sum_c l_c e^(m_c - m), O = sum_c acc_c e^(m_c - m) / l.
Forms: 1 sweep (FA2), 2 sweeps (m and l, then acc), 3 sweeps (m, then l, then acc). The
unfused form computes S = QK, a three-pass softmax and AV, each over the whole matrix.

Layout (the einsim convention): Q[..., E, P], K[..., E, M], V[..., F, M] -> AV[..., F, P],
any leading batch/head axes. No 1/sqrt(E) scale (fold it into Q).
"""

from __future__ import annotations

import numpy as np

from einsim.simulator.gpu import AttentionProblem, GpuMapping, KernelForm, tile_counts


def _safe(m: np.ndarray) -> np.ndarray:
    """A running max with -inf (no key seen yet) replaced by 0, so exp(-inf - 0) = 0."""
    return np.where(np.isneginf(m), 0.0, m)


def _scores(problem, q, k, p0, p1, m0, m1, masked: bool) -> np.ndarray:
    """S[..., p, m] = sum_e Q[e, p] K[e, m] for rows p0:p1 and keys m0:m1; -inf where masked."""
    s = np.einsum("...ep,...em->...pm", q[..., p0:p1], k[..., m0:m1])
    if masked:
        keep = problem.keep(np.arange(m0, m1)[None, :], np.arange(p0, p1)[:, None])
        s = np.where(keep, s, -np.inf)
    return s


def _tile_list(problem: AttentionProblem, br: int, bc: int, split: int):
    """Per query tile: the split chunks, each a list of (key tile j, partial?) in order."""
    lo, hi, flo, fhi = tile_counts(problem, br, bc)
    tiles = -(-problem.seq_kv // bc)
    chunk = -(-tiles // split)
    out = []
    for i in range(lo.size):
        chunks = []
        for c in range(split):
            start, stop = max(lo[i], c * chunk), min(hi[i], (c + 1) * chunk - 1)
            chunks.append([(j, not flo[i] <= j <= fhi[i]) for j in range(start, stop + 1)])
        out.append(chunks)
    return out


def run_tiles(
    problem: AttentionProblem, mapping: GpuMapping, q: np.ndarray, k: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """AV of `problem` computed tile by tile as `mapping` says (see the module docstring).

    Example:
        >>> from einsim.simulator.gpu import Mask
        >>> rng = np.random.default_rng(0)
        >>> q, k, v = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(2, 5))
        >>> p = AttentionProblem(1, 1, 5, 5, 4, 2, Mask.CAUSAL, dtype="fp64")
        >>> out = run_tiles(p, GpuMapping(block_q=2, block_kv=2, warps=1), q, k, v)
        >>> float(np.abs(out[:, 0] - v[:, 0]).max())  # query 0 sees key 0 only
        0.0
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if mapping.kernel is KernelForm.UNFUSED:
        return _unfused(problem, q, k, v)
    br, bc, split = mapping.block_q, mapping.block_kv, mapping.split_kv
    P, M, F = problem.seq_q, problem.seq_kv, problem.head_dim_v
    lead = q.shape[:-2]
    out = np.empty((*lead, F, P))
    sweeps = problem.form.sweeps
    for i, chunks in enumerate(_tile_list(problem, br, bc, split)):
        p0, p1 = i * br, min(P, (i + 1) * br)
        parts = []
        for tiles in chunks:
            m = np.full((*lead, p1 - p0), -np.inf)
            ell = np.zeros((*lead, p1 - p0))
            acc = np.zeros((*lead, p1 - p0, F))

            def scores(j, partial, p0=p0, p1=p1):
                return _scores(problem, q, k, p0, p1, j * bc, min(M, (j + 1) * bc), partial)

            if sweeps == 3:
                for j, partial in tiles:
                    m = np.maximum(m, scores(j, partial).max(axis=-1))
                for j, partial in tiles:
                    ell = ell + np.exp(scores(j, partial) - _safe(m)[..., None]).sum(axis=-1)
            elif sweeps == 2:
                for j, partial in tiles:
                    s = scores(j, partial)
                    new = np.maximum(m, s.max(axis=-1))
                    ell = ell * np.exp(m - _safe(new)) + np.exp(s - _safe(new)[..., None]).sum(
                        axis=-1
                    )
                    m = new
            for j, partial in tiles:
                s = scores(j, partial)
                vj = v[..., j * bc : min(M, (j + 1) * bc)]
                if sweeps == 1:  # FA2: correct l and acc by exp(m_old - m_new) per tile
                    new = np.maximum(m, s.max(axis=-1))
                    weights = np.exp(s - _safe(new)[..., None])
                    correction = np.exp(m - _safe(new))
                    ell = ell * correction + weights.sum(axis=-1)
                    acc = acc * correction[..., None] + np.einsum("...pm,...fm->...pf", weights, vj)
                    m = new
                else:
                    weights = np.exp(s - _safe(m)[..., None])
                    acc = acc + np.einsum("...pm,...fm->...pf", weights, vj)
            parts.append((m, ell, acc))
        top = parts[0][0]
        for m, _, _ in parts[1:]:
            top = np.maximum(top, m)
        ell = sum(e * np.exp(m - _safe(top)) for m, e, _ in parts)
        acc = sum(a * np.exp(m - _safe(top))[..., None] for m, _, a in parts)
        out[..., p0:p1] = np.swapaxes(acc / ell[..., None], -1, -2)
    return out


def _unfused(problem: AttentionProblem, q, k, v) -> np.ndarray:
    """S = QK (every pair, masked to -inf), softmax in three passes, AV."""
    s = _scores(problem, q, k, 0, problem.seq_q, 0, problem.seq_kv, True)
    top = s.max(axis=-1, keepdims=True)  # pass 1
    total = np.exp(s - top).sum(axis=-1, keepdims=True)  # pass 2
    a = np.exp(s - top) / total  # pass 3
    return np.einsum("...pm,...fm->...fp", a, v)


def problem_arrays(problem: AttentionProblem, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standard-normal Q[B,H,E,P], K[B,H,E,M], V[B,H,F,M] for `problem`, in float64."""
    b, h = problem.batch, problem.heads
    return {
        "Q": rng.normal(size=(b, h, problem.head_dim, problem.seq_q)),
        "K": rng.normal(size=(b, h, problem.head_dim, problem.seq_kv)),
        "V": rng.normal(size=(b, h, problem.head_dim_v, problem.seq_kv)),
    }


__all__ = ["problem_arrays", "run_tiles"]
