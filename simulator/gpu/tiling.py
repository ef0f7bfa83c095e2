"""Which (query tile, key tile) pairs a CTA visits: per-row key bounds of the mask, full /
partial / skipped tiles per CTA (`cta_tiles`, `tile_counts`), the score Einsum's tile
occupancy, and the list scheduler of CTAs over SM slots (`list_schedule`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from einsim.einsum import (
    Call,
    Op,
    SpecError,
)
from einsim.einsum.ir import accesses, rank_of

from .problem import QUERY_RANK, AttentionKernel, AttentionProblem, _terms, as_kernel, row_bounds

# Above this many CTAs the list scheduler places whole rounds of `slots` CTAs on the slots
# sorted by finish time (exact for equal CTAs; approximate for unequal ones).
EXACT_SCHEDULE_CTAS = 2048


def _overlap(a_lo, a_hi, b_lo, b_hi):
    """Size of the integer interval intersection [a_lo, a_hi] & [b_lo, b_hi] (elementwise)."""
    return np.maximum(0, np.minimum(a_hi, b_hi) - np.maximum(a_lo, b_lo) + 1)


@functools.lru_cache(maxsize=64)
def _clipped(kernel: AttentionKernel):
    """Row intervals clipped to the keys, and whether each row keeps any key; None when the
    union of a query tile's rows is not one interval (then `_tile_flags` counts)."""
    bounds = row_bounds(kernel)
    if bounds is None:
        return None
    lo = np.maximum(bounds[0], 0).astype(np.int64)
    hi = np.minimum(bounds[1], kernel.seq_kv - 1)
    hi = np.where(np.isneginf(hi), -1, hi).astype(np.int64)
    kept = lo <= hi
    a, b = lo[kept], hi[kept]
    if np.any(np.diff(a) < 0) or np.any(np.diff(b) < 0) or np.any(a[1:] > b[:-1] + 1):
        return None
    return lo, hi, kept


def _tile_ranges(kernel: AttentionKernel, br: int, bc: int):
    """Per query tile: (first active key tile, last active, first full, last full), or None
    (see `_clipped`). A key tile is active when a kept (m, p) lies in it, full when every
    real query row of the tile keeps every key of it and the tile has no padded key."""
    clipped = _clipped(kernel)
    if clipped is None:
        return None
    lo, hi, kept = clipped
    P, M = kernel.seq_q, kernel.seq_kv
    starts = np.arange(0, P, br)
    big = np.int64(1) << 62
    first = np.minimum.reduceat(np.where(kept, lo, big), starts)
    last = np.maximum.reduceat(np.where(kept, hi, -1), starts)
    all_kept = np.logical_and.reduceat(kept, starts)
    inner_lo = np.maximum.reduceat(lo, starts)
    inner_hi = np.minimum.reduceat(hi, starts)
    any_kept = last >= 0
    t_lo = np.where(any_kept, first // bc, 0)
    t_hi = np.where(any_kept, last // bc, -1)
    whole = M // bc
    f_lo = -(-inner_lo // bc)
    f_hi = np.minimum((inner_hi + 1) // bc, whole) - 1
    f_hi = np.where(all_kept, f_hi, -1)
    return t_lo, t_hi, f_lo, f_hi


#: The block edge at which a mask without row intervals is evaluated once, then reused by
#: every tiling whose Br and Bc it divides (the MMA granularity: every valid tiling).
FLAG_BLOCK = 16


@functools.lru_cache(maxsize=64)
def _tile_flags(kernel: AttentionKernel, br: int, bc: int) -> tuple[np.ndarray, np.ndarray]:
    """(active, full) per (query tile, key tile): the exact path for masks that are not one
    interval per query tile, reduced from `_block_flags` at a block edge dividing Br and Bc."""
    g = FLAG_BLOCK if br % FLAG_BLOCK == 0 and bc % FLAG_BLOCK == 0 else math.gcd(br, bc)
    any_g, all_g = _block_flags(kernel, g, g)
    nq, nk = -(-kernel.seq_q // br), -(-kernel.seq_kv // bc)
    rq, rk = br // g, bc // g
    rows, cols = nq * rq - any_g.shape[0], nk * rk - any_g.shape[1]
    # Padded query rows keep nothing and never spoil a full tile; padded keys are never kept.
    any_g = np.pad(any_g, ((0, rows), (0, cols)), constant_values=False)
    all_g = np.pad(np.pad(all_g, ((0, rows), (0, 0)), constant_values=True), ((0, 0), (0, cols)),
                   constant_values=False)  # fmt: skip
    active = any_g.reshape(nq, rq, nk, rk).any(axis=(1, 3))
    return active, all_g.reshape(nq, rq, nk, rk).all(axis=(1, 3))


@functools.lru_cache(maxsize=16)
def _block_flags(kernel: AttentionKernel, br: int, bc: int) -> tuple[np.ndarray, np.ndarray]:
    """(active, full) per (query tile, key tile), from the filter over every (m, p)."""
    P, M = kernel.seq_q, kernel.seq_kv
    nq, nk = -(-P // br), -(-M // bc)
    active = np.zeros((nq, nk), dtype=bool)
    full = np.zeros((nq, nk), dtype=bool)
    m = np.arange(nk * bc)
    tiles_per_chunk = max(1, (1 << 24) // max(1, br * nk * bc))
    for start in range(0, nq, tiles_per_chunk):
        stop = min(nq, start + tiles_per_chunk)
        p = np.arange(start * br, stop * br)
        keep = kernel.keep(m[None, :], p[:, None]) & (m[None, :] < M)
        real = (p < P)[:, None]
        shaped = (stop - start, br, nk, bc)
        active[start:stop] = (keep & real).reshape(shaped).any(axis=(1, 3))
        full[start:stop] = (keep | ~real).reshape(shaped).all(axis=(1, 3))
    return active, full


def cta_tiles(kernel: AttentionKernel | AttentionProblem, br: int, bc: int, split: int):
    """(full, partial) key-tile counts per CTA, in launch order for one head: query tile
    fastest, then the split index. Split c takes key tiles [c·S, (c+1)·S), S = ceil(T / split).
    """
    kernel = as_kernel(kernel)
    if kernel.data_dependent:
        # A selection the data decides: the occupancy's totals under the density, spread
        # over the CTAs as the mask's static part (its conjuncts reading no tensor) spreads.
        active, full = (x[0] / kernel.heads for x in _score_tiles(kernel, [br], [bc])[:2])
        static_full, static_part = cta_tiles(_static_part(kernel), br, bc, split)
        static_active = static_full + static_part
        cta_active = static_active * (active / max(static_active.sum(), 1))
        cta_full = static_full * (full / max(static_full.sum(), 1))
        return cta_full, cta_active - cta_full
    tiles = -(-kernel.seq_kv // bc)
    chunk = -(-tiles // split)
    c = np.arange(split)[:, None]
    c_lo, c_hi = c * chunk, np.minimum(tiles, (c + 1) * chunk) - 1
    ranges = _tile_ranges(kernel, br, bc)
    if ranges is not None:
        lo, hi, flo, fhi = ranges
        active = _overlap(lo[None], hi[None], c_lo, c_hi)
        full = np.minimum(active, _overlap(flo[None], fhi[None], c_lo, c_hi))
    else:
        flags_active, flags_full = _tile_flags(kernel, br, bc)
        j = np.arange(tiles)
        inside = (j[None, :] >= c_lo) & (j[None, :] <= c_hi)  # (split, tiles)
        active = inside.astype(np.int64) @ flags_active.T.astype(np.int64)
        full = inside.astype(np.int64) @ (flags_full & flags_active).T.astype(np.int64)
    return full.reshape(-1), (active - full).reshape(-1)


@functools.lru_cache(maxsize=16)
def _static_part(kernel: AttentionKernel) -> AttentionKernel:
    """The kernel with its score's mask reduced to the conjuncts that read no tensor."""
    einsum = kernel.cascade.producers[kernel.score]
    terms = [t for t in _terms(einsum.where) if not accesses(t)]
    where = functools.reduce(lambda a, b: Call(Op.AND, (a, b)), terms) if terms else None
    score = dataclasses.replace(einsum, where=where)
    einsums = tuple(score if e is einsum else e for e in kernel.cascade.einsums)
    cascade = dataclasses.replace(kernel.cascade, einsums=einsums)
    return dataclasses.replace(kernel, cascade=cascade, selection=())


def tile_counts(problem: AttentionProblem | AttentionKernel, br: int, bc: int):
    """Per query tile i: (first active key tile, last active, first full, last full); a tile
    is active when one kept (m, p) pair lies in it, full when every pair is kept and no key is
    padding. For filters that keep one key interval per query tile (`row_bounds`).

    Example (causal, P = M = 10, Br = Bc = 4: tiles 0..2; query tile 1 holds rows 4..7):
        >>> from einsim.simulator.gpu import Mask
        >>> p = AttentionProblem(1, 1, 10, 10, 8, 8, Mask.CAUSAL)
        >>> [a.tolist() for a in tile_counts(p, 4, 4)]
        [[0, 0, 0], [0, 1, 2], [0, 0, 0], [-1, 0, 1]]
    """
    ranges = _tile_ranges(as_kernel(problem), br, bc)
    if ranges is None:
        raise SpecError("tile_counts: the mask keeps more than one key interval per query tile")
    return ranges


def score_occupancy(kernel: AttentionKernel, br, bc):
    """The score Einsum's tile occupancy (`einsim.einsum.occupancy`) for CTA tilings of Br
    queries x Bc keys (arrays), each head its own tile: (active tiles, kept (m, p) pairs),
    per kernel instance, summed over its heads."""
    active, _, kept = _score_tiles(kernel, br, bc)
    return active, kept


def _score_tiles(kernel: AttentionKernel, br, bc):
    """(active tiles, full tiles, kept pairs) of the score Einsum's occupancy."""
    from einsim.einsum.occupancy import occupancy

    pairs, back = np.unique(np.stack(np.broadcast_arrays(br, bc)), axis=1, return_inverse=True)
    br, bc, back = pairs[0], pairs[1], back.reshape(-1)  # each distinct tiling once
    einsum = kernel.cascade.producers[kernel.score]
    tile: dict[str, object] = {QUERY_RANK: br, rank_of(kernel.key[0]): bc}
    tile.update(dict.fromkeys((rank_of(v) for v in kernel.key[1:]), 1))
    heads = [v for v in einsum.out_vars if v not in (kernel.query, *kernel.key)]
    tile.update(dict.fromkeys((rank_of(v) for v in heads), 1))
    occ = occupancy(
        kernel.cascade, dict(kernel.sizes), tile, (kernel.score,), density=kernel.density
    )[kernel.score]
    contraction = math.prod(dict(kernel.sizes)[rank_of(v)] for v in einsum.reduced_vars)
    kept = occ.points / contraction if kernel.data_dependent else occ.points // contraction
    return (occ.tiles - occ.empty)[back], occ.full[back], kept[back]


def list_schedule(durations: np.ndarray, slots: int, repeat: int = 1) -> np.ndarray:
    """Makespan of CTAs dispatched in order to the earliest free of `slots` slots.

    `durations` is (rows, N): per mapping row, the N CTAs of one head in launch order;
    the whole grid is `repeat` copies of them (heads x batch). Equal durations give
    ceil(N·repeat / slots) waves exactly; up to `EXACT_SCHEDULE_CTAS` CTAs the greedy list
    schedule is simulated exactly, above it in rounds of `slots` CTAs placed on the slots
    sorted by finish time.

    Example:
        >>> list_schedule(np.ones((1, 10)), slots=4).tolist()
        [3.0]
    """
    rows, n = durations.shape
    total = n * repeat
    if n and np.all(durations == durations[:, :1]):
        return np.ceil(total / slots) * durations[:, 0]
    finish = np.zeros((rows, slots))
    index = np.arange(rows)
    if total <= EXACT_SCHEDULE_CTAS:
        for k in range(total):
            slot = np.argmin(finish, axis=1)
            finish[index, slot] += durations[:, k % n]
        return finish.max(axis=1)
    flat = np.tile(durations, (1, repeat)) if repeat * n <= 1 << 22 else None
    for start in range(0, total, slots):
        stop = min(total, start + slots)
        if flat is not None:
            chunk = flat[:, start:stop]
        else:
            chunk = durations[:, np.arange(start, stop) % n]
        finish.sort(axis=1)
        finish[:, : stop - start] += chunk
    return finish.max(axis=1)


def _kept_pairs(problem: AttentionKernel) -> float:
    """Kept (m, p) pairs of one head: the score Einsum's points (its tile occupancy) over its
    contraction and its heads."""
    _, kept = score_occupancy(problem, np.array([1]), np.array([1]))
    return kept[0] / problem.heads if problem.data_dependent else int(kept[0]) // problem.heads


def useful_flops(problem: AttentionProblem | AttentionKernel) -> float:
    """FLOPs of the kept (m, p) pairs: 2·(E + F) per pair per head (QK and PV), the count
    that achieved TFLOP/s are quoted in (FlashAttention-2's convention)."""
    problem = as_kernel(problem)
    heads = problem.batch * problem.heads
    return 2.0 * (problem.head_dim + problem.head_dim_v) * _kept_pairs(problem) * heads
