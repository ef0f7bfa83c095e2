"""Tile occupancy of masked iteration spaces: empty, partial and full tiles, exactly.

An Einsum's iteration space (one axis per index variable) is cut into tiles by a tiling
({RANK: extent}); a tile is *empty* when its filter keeps no point in it, *full* when it
keeps every real point (a partition's padding, m1*M0 + m0 >= M, is never a point), else
*partial*. Hardware that skips empty tiles and computes partial tiles in full iterates the
*busy points*: the real points of every non-empty tile.

Exact ways to count, chosen from the filter's structure (never from a name):

- `closed_form`: a filter that is a conjunction of comparisons affine in one "key"
  variable x (`m`, or `m1*M0+m0` with M0 untiled) for each value of one "query" variable y,
  whose kept interval [lo(y), hi(y)] moves monotonically: per tile row one interval of
  tiles (causal, windows, decode offsets; products by constants and sizes read, `n * MB
  <= nq * PQ + PQ - 1`). Where lo and hi are affine on few pieces of rows, a piece's rows
  of tiles are counted together as sums of floors of arithmetic progressions (O(pieces x
  log) per tiling, whatever the rows); else numpy or a compiled loop over the rows of
  tiles.
- `difference`: a filter over x and y that reads them only through y - x (power
  attention's `m <= p and (p - m < W or PW % max(p - m, 1) == 0)`): the kept set is a
  union of diagonal bands, found from the filter's value at one point of each diagonal;
  a tile meets one range of differences, so per block of tiles of one size its non-empty
  and full tiles are lattice points between two lines, sums of floors vectorized over the
  tilings: O(bands x log) per tiling, whatever the extents.
- `union`: an `or` of conjunctions of comparisons affine in x (sinks + window): each row
  keeps the union of the terms' intervals, ordered by both ends; per piece of rows where
  the live terms and the gaps between them are fixed affine staircases, the union of
  their tile ranges is the sum of their lengths less each overlap with the previous one,
  again sums of floors (no per-row extraction).
- `intervals`: a filter over one key x and one query y whose kept x, for each y, is a
  union of intervals derived from its structure (`and` / `or` / `not` of comparisons
  separable into f(x) op g(y), or depending on x and y through one separable sum; f may
  be periodic, `m // Y % X`: it is split into its monotone runs), in whole numbers:
  sinks + window (2 intervals a row), NATTEN 2D/3D (one per neighbour row), block masks
  with `//` and `%`, power attention's distances. The intervals of consecutive rows chain
  into staircase runs (NATTEN at any length: about 50), and per tiling a row of tiles
  unites the tile ranges of the runs meeting it: non-empty tiles from the kept runs, tiles
  not full from the gap runs. Of the two orientations, the one keeping fewer intervals a
  row in two sampled blocks of rows is built (hip's `n % 8 == 0 and n <= nq`: one
  interval of nq per row n). O(runs + rows of tiles x intervals a row) per tiling instead
  of O(points); numpy for all tilings at once while small, else one compiled kernel
  shared by every filter (cached on disk: no compile per filter) sweeping the rows of
  tiles with the runs that meet them; the transposed plan (rows of key tiles) for
  tilings with far fewer of those, once counting them directly has cost half the plan's
  build time. A plan is built in blocks of `PLAN_ROWS` query rows (bounded memory; power
  attention at 1M stores 37M intervals).
- `kronecker`: a filter over x and y that reads them only through `x // R` and `x % R`
  (and multiples / divisors of R) for one radix R dividing both extents, as a conjunction
  of a filter over the high parts and one over the low parts (NATTEN 2D / 3D: neighbour
  rows `m // Y % X`, neighbour columns `m % Y`): the kept set is the Kronecker product of
  the two factors', so for tiles that are boxes in the radix (a side that is a multiple or
  a divisor of R) the non-empty tiles, full tiles and busy points are the products of the
  factors' (each planned by the closed form, a Kronecker split again, or the intervals, on
  extents n / R and R): the cost does not grow with the rows. Other tiles are counted on
  the whole filter's interval plan, built the first time one comes.
- `periodic`: a filter over x and y that reads them only through residues (`x % c`,
  `x // c % d`: NATTEN's grid coordinates on a sequence longer than its grid, or no
  multiple of it, where no radix divides the extents): the kept set repeats one Px by Py
  pattern, held as 2D prefix sums; the tiles of a side fall into at most P classes by
  their start mod P (plus the last partial tile), so a tiling costs O(min(tiles, Px) x
  min(tiles, Py)) box sums.
- `head_classes`: a filter over x, y and one more variable h (a head) that enters only
  through conditions of h alone (`h * 100 < RP * H or ...`: duo / razor attention): the h
  values are grouped by those conditions' truth values, each class's filter (values
  substituted) counted by the closed form or the intervals, and a tile covering the h of
  classes C is non-empty by the union of their filters, full by their intersection.
- `star`: a filter over three logical variables that is a conjunction of two closed
  forms sharing their rows, A(x1, y) and B(x2, y) (FlexPrefill's block estimate): row y
  keeps a box, the rectangles of tiles the rows of one row of tiles meet move
  monotonically, so the non-empty tiles are the sum of the rectangles less each one's
  overlap with the previous row's; O(rows) per tiling instead of O(points).
- `compiled`: any other filter without tensor reads is compiled (numba) into one loop nest
  over the filter's variables that counts kept and real points per tile; while a
  filter's spaces add up to few points (`NUMPY_POINTS`) they are counted with numpy
  instead, so a small user filter never waits for a compile.
- `data` / `declared_density`: a filter that reads a tensor (a selection computed by the
  cascade, MoBA's top-k blocks) is evaluated on the caller's inputs with the reference
  executor, or priced from a declared density of its data-dependent conjuncts (their
  static part counted by the closed form or the intervals where those apply).

Many tilings are evaluated at once: the distinct tilings are counted once each and
scattered back to the n requested.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from typing import ClassVar

import networkx as nx
import numpy as np

from .errors import SpecError
from .ir import Access, Call, Cascade, Const, Einsum, Expr, Op, Size, Var, rank_of, var_of, walk
from .ir import variables as variables_of
from .shape import resolve_shape

METHODS = (
    "dense",
    "closed_form",
    "union",
    "difference",
    "intervals",
    "kronecker",
    "periodic",
    "head_classes",
    "star",
    "compiled",
    "data",
    "declared_density",
)


@dataclass(frozen=True, eq=False)
class Occupancy:
    """One Einsum's iteration space cut into tiles, for n tilings at once (int64 arrays (n,)).

    `empty + partial + full == tiles`; `points` are the exact kept points (equal to the
    op-count points); `busy_points` the real points of the non-empty tiles, each tile
    counted whole (clipped to the rank extents and to M for a partition's padded tile).
    `method` says how the filter was counted (see `METHODS`).
    """

    einsum: str
    ranks: tuple[str, ...]
    tiles: np.ndarray
    empty: np.ndarray
    partial: np.ndarray
    full: np.ndarray
    points: np.ndarray
    busy_points: np.ndarray
    method: str


# ------------------------------------------------------------------ declared densities

_DECLARED: dict[Cascade, float | Callable[[Mapping[str, int]], float]] = {}


def declare_density(cascade: Cascade, density) -> Cascade:
    """Declare the default density of a cascade's data-dependent filters; returns `cascade`.

    `density` is a float in (0, 1] or a callable of the resolved sizes giving one: the
    fraction of the points kept by the filter's static conjuncts (those reading no tensor)
    that the data-dependent conjuncts also keep. A variant builder declares it (MoBA: TOPK+1
    blocks of BS per query over the causal prefix); `occupancy` and `op_counts` use it when
    the caller gives neither inputs nor a density. Keyed by the cascade's value, so an equal
    cascade built again finds it.
    """
    _DECLARED[cascade] = density
    return cascade


def declared_density(cascade: Cascade) -> float | Callable | None:
    """The density `declare_density` recorded for this cascade, or None."""
    return _DECLARED.get(cascade)


# ------------------------------------------------------------------ the public function


def occupancy(
    cascade: Cascade,
    sizes: Mapping[str, int],
    tile: Mapping[str, object],
    einsums: Sequence[str] | None = None,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    density: float | Mapping[str, float] | None = None,
) -> dict[str, Occupancy]:
    """Empty, partial and full tiles and the exact points of each Einsum, for n tilings.

    Args:
        cascade: the cascade.
        sizes: rank sizes (ints; derived partition sizes are filled in).
        tile: {RANK: extent} over ranks of the iteration spaces, each an int or an int array
            of shape (n,) (all arrays the same n). A rank not given is whole in each tile.
        einsums: output names of the Einsums to analyse (default: all). An Einsum without a
            filter listed with filtered ones has a tile empty when no filtered Einsum among
            them that shares a cut rank with it (a tile smaller than the rank) keeps a point
            in that tile projected onto their shared ranks (PRM[m1,p] under a causal QK: the
            key tiles past p are skipped, as the correction work of a skipped tile is).
        inputs: the cascade's inputs, to evaluate data-dependent filters exactly.
        density: a float in (0, 1] or {einsum: float}: the kept fraction of the static part
            of data-dependent filters, when no inputs are given.

    Returns:
        {einsum output: Occupancy}, in cascade order.

    Raises:
        SpecError: an unknown Einsum or tiled rank, a non-positive tile, arrays of different
            lengths, or a data-dependent filter with no inputs, density or declared default.

    Example:
        >>> from einsim import parse_cascade
        >>> c = parse_cascade("inputs: Q[e,p], K[e,m]\\nS[m,p] = Q[e,p] * K[e,m] where m <= p")
        >>> o = occupancy(c, {"E": 4, "M": 8, "P": 8}, {"M": 4, "P": 4})["S"]
        >>> o.empty.tolist(), o.partial.tolist(), o.full.tolist(), o.points.tolist()
        ([1], [2], [1], [144])
    """
    sizes = _resolved(cascade, sizes)
    chosen = _chosen(cascade, einsums)
    _, table, names = _tile_table(cascade, chosen, tile)
    unique, inverse = _unique_rows(table)
    tilings = _Tilings(unique, names)
    tensors = _selection_tensors(cascade, chosen, inputs, sizes) if inputs is not None else None

    filtered = [e for e in chosen if e.where is not None]
    results: dict[str, Occupancy] = {}
    grids: dict[str, _Grids] = {}
    stats_of: dict[str, np.ndarray] = {}
    memo: dict = {}
    for einsum in filtered:
        frac = _density_for(cascade, einsum, sizes, density) if tensors is None else None
        grids[einsum.output], stats_of[einsum.output] = _filtered_grids(
            cascade, einsum, sizes, tilings, unique, names, tensors, frac
        )
    for einsum in chosen:
        if einsum.where is not None:
            stats, method = stats_of[einsum.output], grids[einsum.output].method
        else:
            per = [
                _unfiltered_grid(
                    cascade,
                    einsum,
                    sizes,
                    t,
                    [grids[f.output][i] for f in filtered if _share_tiled(t, sizes, f, einsum)],
                    memo,
                )
                for i, t in enumerate(tilings)
            ]
            stats = np.array(
                [_totals(einsum, sizes, t, g) for t, g in zip(tilings, per, strict=True)]
            )
            method = "dense"
        columns = stats.reshape(len(tilings), 6)[inverse].T.copy()  # one contiguous row each
        results[einsum.output] = Occupancy(
            einsum=einsum.output,
            ranks=tuple(rank_of(v) for v in einsum.iter_vars),
            tiles=columns[0],
            empty=columns[1],
            partial=columns[2],
            full=columns[3],
            points=columns[4],
            busy_points=columns[5],
            method=method,
        )
    return results


def _selection_tensors(cascade: Cascade, chosen, inputs, sizes) -> dict[str, np.ndarray]:
    """The tensors the data-dependent filters read, from the caller's inputs: the Einsums
    they depend on (MoBA's gate and top-k thresholds) run alone with the reference
    executor, not the whole cascade."""
    read = {a.tensor for e in chosen if _reads_tensor(e.where) for a in _accesses(e.where)}
    needed = set(read)
    for name in read:
        needed |= nx.ancestors(cascade.graph, name)
    einsums = tuple(e for e in cascade.einsums if e.output in needed)
    sub = Cascade(
        name=cascade.name,
        inputs=cascade.inputs,
        outputs=tuple(e.output for e in einsums),
        einsums=einsums,
        inits=tuple(i for i in cascade.inits if i.tensor in needed),
        partitions=cascade.partitions,
        default_sizes=cascade.default_sizes,
    )
    return sub.evaluate(inputs, sizes, method="materialize")


def _accesses(expr: Expr) -> list[Access]:
    return [e for e in walk(expr) if isinstance(e, Access)]


class _Tilings:
    """The distinct tilings as {RANK: tile} dicts, built only when asked for."""

    def __init__(self, table: np.ndarray, names: tuple[str, ...]):
        self.table, self.names = table, names

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, k: int) -> dict[str, int]:
        return dict(zip(self.names, map(int, self.table[k]), strict=True))

    def __iter__(self):
        return (self[k] for k in range(len(self)))


def _unique_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, inverse): one integer key per row when the columns fit in 62 bits."""
    if table.shape[1] == 0:
        return table[:1], np.zeros(len(table), dtype=np.int64)
    if len(table) == 1:
        return table, np.zeros(1, dtype=np.int64)
    spans = table.max(axis=0) + 1
    if float(np.prod(spans.astype(float))) < 2.0**62:
        key = np.zeros(len(table), dtype=np.int64)
        for j in range(table.shape[1]):
            key = key * int(spans[j]) + table[:, j]
        if len(table) <= UNIQUE_BY_DICT:
            return _unique_keys(table, key.tolist())
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return table[first], inverse.reshape(-1)
    unique, inverse = np.unique(table, axis=0, return_inverse=True)
    return unique, np.asarray(inverse).reshape(-1)


#: Tilings of a call that `_unique_rows` sorts in Python (cheaper than np.unique's setup).
UNIQUE_BY_DICT = 64


def _unique_keys(table: np.ndarray, keys: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, return_index=True, return_inverse=True)`'s rows and inverse: the
    distinct keys ascending, each at its first row."""
    first: dict[int, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    order = sorted(first)
    position = {k: i for i, k in enumerate(order)}
    inverse = np.array([position[k] for k in keys], dtype=np.int64)
    return table[[first[k] for k in order]], inverse


def _share_tiled(t, sizes, f: Einsum, u: Einsum) -> bool:
    """Whether two Einsums share a rank this tiling cuts (a tile smaller than the rank)."""
    shared = {rank_of(v) for v in f.iter_vars} & {rank_of(v) for v in u.iter_vars}
    return any(t.get(r, int(sizes[r])) < int(sizes[r]) for r in shared)


def _chosen(cascade: Cascade, einsums) -> list[Einsum]:
    if einsums is None:
        return list(cascade.einsums)
    if isinstance(einsums, str):
        einsums = (einsums,)
    wanted = set(einsums)
    unknown = sorted(wanted - set(cascade.producers))
    if unknown:
        raise SpecError(
            f"occupancy: no Einsum produces {', '.join(unknown)}; "
            f"produced: {', '.join(cascade.producers)}"
        )
    return [e for e in cascade.einsums if e.output in wanted]


def _tile_table(cascade, chosen, tile) -> tuple[int, np.ndarray, tuple[str, ...]]:
    """The tilings as an (n, ranks) int64 table; n = 1 when every value is a scalar."""
    known = {rank_of(v) for e in chosen for v in e.iter_vars}
    names = tuple(tile)
    for rank in names:
        if rank not in known:
            raise SpecError(
                f"occupancy: tile rank {rank!r} is not iterated by the Einsums analysed; "
                f"their ranks: {', '.join(sorted(known))}"
            )
    columns = [np.asarray(tile[r]) for r in names]
    lengths = {c.shape[0] for c in columns if c.ndim == 1}
    if len(lengths) > 1 or any(c.ndim > 1 for c in columns):
        raise SpecError(
            "occupancy: tile values must be ints or int arrays of one length (n,), got "
            + ", ".join(f"{r}: shape {c.shape}" for r, c in zip(names, columns, strict=True))
        )
    n = lengths.pop() if lengths else 1
    table = np.empty((n, len(names)), dtype=np.int64)
    for j, (rank, column) in enumerate(zip(names, columns, strict=True)):
        if n and (column.dtype.kind not in "iu" or int(column.min()) < 1):  # kinds of np.integer
            raise SpecError(f"occupancy: tile {rank} must be positive integers, got {column}")
        table[:, j] = column
    return n, table, names


# ------------------------------------------------------------------------- tile grids


@dataclass(frozen=True, eq=False)
class _Grid:
    """Per-tile counts over some variables of one Einsum, for one tiling.

    `vars` are the axes (each cut into ceil(extent / tile) tiles); `kept` and `valid` the
    kept and real points of each tile over those variables only (the other variables are
    unmasked: each of their tiles repeats the same counts). `scale` multiplies kept points
    for a declared density (1 otherwise).
    """

    vars: tuple[str, ...]
    kept: np.ndarray
    valid: np.ndarray
    method: str
    scale: float = 1.0
    total_kept: int | None = None  # exact total when known without the per-tile grid


def _extent(sizes, var: str) -> int:
    return int(sizes[rank_of(var)])


def _tile_of(t: Mapping[str, int], sizes, var: str) -> int:
    return min(int(t.get(rank_of(var), _extent(sizes, var))), _extent(sizes, var))


def _ntiles(t, sizes, var) -> int:
    return -(-_extent(sizes, var) // _tile_of(t, sizes, var))


def _tiles_along(column: Mapping[str, np.ndarray], sizes, var: str) -> np.ndarray | int:
    """ceil(extent / tile) along `var` per tiling, tiles by rank in `column` (1 where its
    rank is not cut: no array)."""
    e = _extent(sizes, var)
    t = column.get(rank_of(var))
    return 1 if t is None else -(-e // np.minimum(t, e))


def mask_vars(cascade: Cascade, einsum: Einsum, sizes) -> tuple[str, ...]:
    """The variables that decide whether a point is kept: the filter's (a partitioned
    rank's variable brings both parts) and both parts of a partition with a partial tile."""
    wanted = set(variables_of(einsum.where))
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if var_of(part.rank) in wanted:
            wanted |= {hi, lo}
        both = hi in einsum.iter_vars and lo in einsum.iter_vars
        if both and _partial(part, sizes):
            wanted |= {hi, lo}
    return tuple(v for v in einsum.iter_vars if v in wanted)


def _partial(part, sizes) -> bool:
    return int(sizes[part.upper]) * int(sizes[part.lower]) != int(sizes[part.rank])


def _totals(einsum: Einsum, sizes, t, grid: _Grid) -> tuple[int, ...]:
    """(tiles, empty, partial, full, points, busy_points) of one Einsum for one tiling."""
    others = [v for v in einsum.iter_vars if v not in grid.vars]
    other_tiles = math.prod(_ntiles(t, sizes, v) for v in others)
    other_points = math.prod(_extent(sizes, v) for v in others)
    tiles = math.prod(_ntiles(t, sizes, v) for v in einsum.iter_vars)
    kept, valid = grid.kept, grid.valid
    nonempty = kept > 0
    full = int(np.count_nonzero(nonempty & (kept == valid))) * other_tiles
    empty = int(kept.size - np.count_nonzero(nonempty)) * other_tiles
    total = int(kept.sum()) if grid.total_kept is None else grid.total_kept
    busy = int(valid[nonempty].sum()) * other_points
    points = total * other_points
    if grid.scale != 1.0:
        # Declared density: which points the selection keeps is unknown before the data,
        # so a tile the static conjuncts keep stays busy (computed whole) and none is known
        # full; only the points scale. Matches the data wherever a tile holds many queries.
        full = 0
        points = round(grid.scale * points)
    partial = tiles - empty - full
    return tiles, empty, partial, full, points, busy


class _Grids:
    """The per-tile counts of one filtered Einsum for each distinct tiling, built on demand
    (only Einsums without a filter that share its ranks ask for them)."""

    def __init__(self, build: Callable[[int], _Grid], method: str):
        self._build, self.method, self._done = build, method, {}

    def __getitem__(self, k: int) -> _Grid:
        if k not in self._done:
            self._done[k] = self._build(k)
        return self._done[k]


def _filtered_grids(cascade, einsum, sizes, tilings, table, names, tensors, frac):
    """(grids, stats (n, 6)) of a filtered Einsum over the distinct tilings: from a plan
    (the closed form, or the kept intervals per row) in one call where one applies, else a
    grid per tiling. A data filter priced by a declared density takes the plan of its
    static part, with `_totals`' rule for the density."""
    data = _reads_tensor(einsum.where)
    where = einsum.where if not data else _static_part(einsum.where)
    priced = data and tensors is None and where is not None
    vars_ = _mask_vars_of(cascade, einsum, sizes, where) if (not data or priced) else ()
    plan = _plan_for(cascade, einsum, sizes, where, vars_, data) if not data or priced else None
    stats = np.zeros((len(tilings), 6), dtype=np.int64)
    todo = list(range(len(tilings)))
    if plan is not None:
        if isinstance(plan, _HeadPlan):
            ok, found = _head_stats(einsum, sizes, plan, table, names)
        elif isinstance(plan, _StarPlan):
            ok, found = _star_stats(einsum, sizes, plan, table, names)
        else:
            ok, found = _closed_form_stats(einsum, sizes, plan, table, names)
        if priced and frac != 1.0:  # see _totals: tiles stay busy, none known full
            found = found.copy()
            found[:, 4] = [round(frac * int(p)) for p in found[:, 4]]
            found[:, 2] += found[:, 3]
            found[:, 3] = 0
        stats[ok] = found[ok]
        todo = [k for k in range(len(tilings)) if not ok[k]]
    cache: dict[int, _Grid] = {}
    if todo and _unmasked(cascade, einsum, sizes, where, data, tensors):
        stats[todo] = _unmasked_stats(einsum, sizes, table[todo], names, frac)
        grids = _Grids(
            lambda k: _filtered_grid(cascade, einsum, sizes, tilings[k], tensors, frac)[0],
            "declared_density",
        )
        return grids, stats
    if todo and plan is None and not data and _keeps_every_real_point(cascade, sizes, where, vars_):
        # Every tile full (`_unmasked_stats`, as the count of each point would find); the
        # grids, for projections only, are counted on demand.
        stats[todo] = _unmasked_stats(einsum, sizes, table[todo], names, 1.0)
        grids = _Grids(
            lambda k: _filtered_grid(cascade, einsum, sizes, tilings[k], tensors, frac)[0],
            "compiled",
        )
        return grids, stats
    for k in todo:
        grid, _ = _filtered_grid(cascade, einsum, sizes, tilings[k], tensors, frac)
        cache[k] = grid
        stats[k] = _totals(einsum, sizes, tilings[k], grid)

    def build(k: int) -> _Grid:
        if k in cache:
            return cache[k]
        if isinstance(plan, _AffinePlan) and not priced:
            return _closed_form_grid(plan, sizes, tilings[k], vars_)
        return _filtered_grid(cascade, einsum, sizes, tilings[k], tensors, frac)[0]

    if todo:
        method = cache[todo[0]].method
    else:
        method = "declared_density" if priced else getattr(plan, "method", "intervals")
    return _Grids(build, method), stats


def _unmasked(cascade, einsum, sizes, where, data: bool, tensors) -> bool:
    """A data filter priced by a density with no static conjunct and no mask variable
    (no partition with a partial last tile): each tile is whole and kept (`_unmasked_stats`)."""
    return (
        data
        and tensors is None
        and where is None
        and not _mask_vars_of(cascade, einsum, sizes, None)
    )


def _keeps_every_real_point(cascade, sizes, where, vars_) -> bool:
    """A tensor-free filter over one logical variable x (a partition's two parts, with no
    padded point: M1 * M0 == M) that is a conjunction of comparisons affine in x keeping
    all of [0, extent) (FlexPrefill's `nq * PQ + pq < P`): every real point is kept, so
    every tile is full (the compiled count's result, without counting the points)."""
    if where is None or not vars_ or not _whole_numbers(where):
        return False
    found = _logical_filter(cascade, where, vars_, 1)
    if found is None:
        return False
    groups, w = found
    ((x, parts),) = groups.items()
    if len(parts) == 2 and _partial(cascade.partition_of[rank_of(parts[0])], sizes):
        return False
    n = _logical_extent(cascade, sizes, parts)
    bounds = _affine_bounds(_sized(w, sizes), x)
    if bounds is None:
        return False
    lo, hi = np.zeros(1, dtype=np.int64), np.full(1, n - 1, dtype=np.int64)
    for a, r, op in bounds:
        constant = _constant_whole(r, x, sizes)
        if constant is None:
            return False
        _constant_ends(a, constant, op, lo, hi)
    return int(lo[0]) == 0 and int(hi[0]) == n - 1


def _unmasked_stats(einsum, sizes, table, names, frac: float) -> np.ndarray:
    """`_totals` of a grid over no variable (one kept, whole cell) at density `frac`, for
    every tiling at once: tiles = prod ceil(extent / tile), none empty, busy = every point,
    points scaled by frac (then none known full, as `_totals`)."""
    n = len(table)
    column = {r: table[:, j] for j, r in enumerate(names)}
    tiles = np.ones(n, np.int64)
    total = 1
    for v in einsum.iter_vars:
        e = _extent(sizes, v)
        tile = np.minimum(column[rank_of(v)], e) if rank_of(v) in column else np.full(n, e)
        tiles *= -(-e // tile)
        total *= e
    scaled = frac != 1.0
    full = np.zeros(n, np.int64) if scaled else tiles
    points = round(frac * total) if scaled else total
    stats = [tiles, np.zeros(n, np.int64), tiles - full, full]
    return np.stack([*stats, np.full(n, points), np.full(n, total)], axis=1)


def _plan_for(cascade, einsum, sizes, where, vars_, data: bool):
    """The first plan that takes the filter, in order (None where none does). Memoized: a
    search asks at every call, and each finder's look-up keys the sizes again; a plan is
    held weakly (the finders' caches bound how many stay alive). The finders and
    INTERVAL_POINTS are part of the key, so replacing one (tests switch plans off) is seen."""
    finders = (_difference_plan, _union_plan, _kron_plan, _periodic_plan, _interval_plan)
    finders += (_star_plan,) if data else (_head_plan, _star_plan)
    try:
        key = (cascade, frozenset(sizes.items()), filter_token(where), tuple(vars_), data)
        key += (_affine_plan, finders, INTERVAL_POINTS)
        found = _PLANS_FOR.get(key)
    except TypeError:  # an unhashable size: no memo
        key, found = None, None
    if found is not None:
        plan = found()
        if plan is not None or found is _NO_PLAN:
            return plan
    plan = _affine_plan(cascade, einsum, sizes, where, vars_)
    for find in finders:
        if plan is None:
            plan = find(cascade, sizes, where, vars_)
    if key is not None:
        _remember(_PLANS_FOR, key, _NO_PLAN if plan is None else weakref.ref(plan), 256)
    return plan


def _NO_PLAN() -> None:
    """`_PLANS_FOR`'s entry where no plan takes the filter (called like a dead weakref)."""
    return None


_PLANS_FOR: dict[tuple, Callable] = {}  # (cascade, sizes, filter, variables, data) -> plan ref


def _filtered_grid(cascade, einsum, sizes, t, tensors, frac) -> tuple[_Grid, str]:
    data = _reads_tensor(einsum.where)
    if data and tensors is not None:
        grid = _numpy_grid(cascade, einsum, sizes, t, einsum.where, tensors)
        return _with(grid, "data"), "data"
    if data:
        static = _static_part(einsum.where)
        grid = _static_grid(cascade, einsum, sizes, t, static)
        return _with(grid, "declared_density", frac), "declared_density"
    grid = _static_grid(cascade, einsum, sizes, t, einsum.where)
    return grid, grid.method


def _with(grid: _Grid, method: str, scale: float = 1.0) -> _Grid:
    return _Grid(grid.vars, grid.kept, grid.valid, method, scale, grid.total_kept)


def _static_grid(cascade, einsum, sizes, t, where) -> _Grid:
    """A tensor-free filter (or None), counted by the compiled kernel."""
    vars_ = _mask_vars_of(cascade, einsum, sizes, where)
    return _compiled_grid(cascade, einsum, sizes, t, where, vars_)


def _mask_vars_of(cascade, einsum, sizes, where) -> tuple[str, ...]:
    # Memoized: a search asks for the same Einsum's mask variables at every tiling, and
    # they depend on the sizes only through which partitions have a partial last tile.
    key = (cascade, einsum.output, filter_token(where), _partial_flags(cascade, sizes))
    found = _MASK_VARS.get(key)
    if found is None:
        probe = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, where)
        found = tuple(v for v in mask_vars(cascade, probe, sizes) if v in einsum.iter_vars)
        _remember(_MASK_VARS, key, found)
    return found


def _partial_flags(cascade, sizes) -> tuple[bool, ...]:
    return tuple(_partial(part, sizes) for part in cascade.partitions)


def _remember(table: dict, key, value, most: int = 512) -> None:
    with _LOCK:
        table[key] = value
        while len(table) > most:
            table.pop(next(iter(table)), None)


_MASK_VARS: dict[tuple, tuple[str, ...]] = {}


def _resolved(cascade: Cascade, sizes: Mapping) -> dict:
    """`resolve_shape`, memoized per (cascade, sizes): a search asks for one shape at
    every call (a copy is handed out)."""
    try:
        key = (cascade, frozenset(sizes.items()))
    except TypeError:  # an unhashable size: resolve it each time
        return resolve_shape(cascade, sizes)
    found = _RESOLVED.get(key)
    if found is None:
        found = resolve_shape(cascade, sizes)
        _remember(_RESOLVED, key, found, 64)
    return dict(found)


_RESOLVED: dict[tuple, dict] = {}


def filter_token(expr: Expr | None) -> int:
    """An int standing for a filter's value: equal filters get one token, and the tree is
    hashed once per object (a look-up by id after that), not at every cache look-up --
    hashing NATTEN's filter tree at each of a search's look-ups cost seconds. The object
    is held, so its id is not reused while it has a token."""
    found = _TOKENS.get(id(expr))
    if found is not None and found[0] is expr:
        return found[1]
    with _LOCK:
        token = _BY_VALUE.get(expr)
        if token is None:
            token = _BY_VALUE[expr] = len(_BY_VALUE) + _EVICTED[0]
            while len(_BY_VALUE) > 4096:
                _BY_VALUE.pop(next(iter(_BY_VALUE)))
                _EVICTED[0] += 1
        _TOKENS[id(expr)] = (expr, token)
        while len(_TOKENS) > 4096:
            _TOKENS.pop(next(iter(_TOKENS)))
    return token


_TOKENS: dict[int, tuple[Expr | None, int]] = {}  # id(filter) -> (filter, token)
_BY_VALUE: dict[Expr | None, int] = {}  # filter value -> token
_EVICTED = [0]  # tokens handed out and evicted from _BY_VALUE (new tokens stay fresh)


class _ByToken:
    """A filter keyed by its `filter_token` (for `lru_cache`): hash and equality by token."""

    __slots__ = ("expr", "token")

    def __init__(self, expr: Expr | None):
        self.expr, self.token = expr, filter_token(expr)

    def __hash__(self) -> int:
        return self.token

    def __eq__(self, other) -> bool:
        return isinstance(other, _ByToken) and other.token == self.token


_KERNEL_PARTS: dict[tuple, tuple[str, tuple[str, ...], bool]] = {}


def _reads_tensor(expr: Expr | None) -> bool:
    """Whether a filter reads a tensor (memoized by `filter_token`: a search asks per tiling)."""
    token = filter_token(expr)
    found = _READS.get(token)
    if found is None:
        found = expr is not None and any(isinstance(e, Access) for e in walk(expr))
        _remember(_READS, token, found)
    return found


_READS: dict[int, bool] = {}


def _conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.op is Op.AND:
        return _conjuncts(expr.args[0]) + _conjuncts(expr.args[1])
    return [expr]


def _static_part(where: Expr) -> Expr | None:
    """The conjuncts of a filter that read no tensor (None when there are none); one
    object per filter (memoized), so the caches keyed by `filter_token` find it again."""
    token = filter_token(where)
    found = _STATIC_PARTS.get(token, _STATIC_PARTS)
    if found is _STATIC_PARTS:
        found = _static_part_of(where)
        _remember(_STATIC_PARTS, token, found)
    return found


_STATIC_PARTS: dict[int, Expr | None] = {}


def emptiness_filter(where: Expr | None) -> Expr | None:
    """The filter whose kept points decide which tiles of an Einsum are empty when
    `occupancy` is asked without tensors: the filter itself, or the static part of a filter
    that reads a tensor (`_filtered_grid`: a declared density scales the points, never the
    empty tiles; None where no conjunct is static). Einsums of one emptiness filter over one
    iteration space have the same empty tiles whatever their data conjuncts (HiP's eight
    top-k rounds of a level and their selection share `n % 8 == 0 and ...`)."""
    if where is None or not _reads_tensor(where):
        return where
    return _static_part(where)


def _static_part_of(where: Expr) -> Expr | None:
    static = [c for c in _conjuncts(where) if not _reads_tensor(c)]
    if not static:
        return None
    out = static[0]
    for c in static[1:]:
        out = Call(Op.AND, (out, c))
    return out


def _density_for(cascade, einsum, sizes, density) -> float | None:
    if not _reads_tensor(einsum.where):
        return None
    value = density.get(einsum.output) if isinstance(density, Mapping) else density
    if value is None:
        value = declared_density(cascade)
        if callable(value):
            value = _declared_value(value, sizes)
    if value is None:
        raise SpecError(
            f"{einsum.output}: its filter reads a tensor, so its point count depends on the "
            "data; pass inputs= to evaluate it or density= (the kept fraction, in (0, 1])"
        )
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise SpecError(f"{einsum.output}: density must be in (0, 1], got {value}")
    return value


def _declared_value(density: Callable, sizes) -> float:
    """A declared density callable's value at these sizes, memoized: a search asks at
    every batch of tilings, and the callables sum over the query rows (O(P) each time)."""
    key = (density, tuple(sorted((k, int(v)) for k, v in sizes.items())))
    found = _DENSITIES.get(key)
    if found is None:
        found = density(sizes)
        _remember(_DENSITIES, key, found, most=64)
    return found


_DENSITIES: dict[tuple, float] = {}


def _unfiltered_grid(cascade, einsum, sizes, t, sharing: list[_Grid], memo=None) -> _Grid:
    """Real points per tile of an Einsum without a filter; a tile no filtered Einsum of the
    kernel keeps a point in (projected onto the shared variables) is emptied."""
    own = mask_vars(cascade, einsum, sizes)
    sharing = list({id(g.kept): g for g in sharing}.values())  # one mask, one projection
    projected = [v for g in sharing for v in g.vars if v in einsum.iter_vars]
    vars_ = tuple(v for v in einsum.iter_vars if v in own or v in projected)
    key = (vars_, tuple(sorted(id(g.kept) for g in sharing)), tuple(sorted(t.items())))
    if memo is not None and key in memo:  # PRM, SPD, RD, ... : one layout, one projection
        return memo[key]
    grid = _project(cascade, sizes, t, vars_, sharing)
    if memo is not None:
        memo[key] = grid
    return grid


def _project(cascade, sizes, t, vars_, sharing) -> _Grid:
    valid = _valid_counts(cascade, sizes, t, vars_)
    if not sharing:
        return _Grid(vars_, valid, valid, "dense")
    busy = np.zeros(valid.shape, dtype=bool)
    for g in sharing:
        nonempty = g.kept > 0
        drop = tuple(i for i, v in enumerate(g.vars) if v not in vars_)
        nonempty = nonempty.any(axis=drop) if drop else nonempty
        kept_vars = [v for v in g.vars if v in vars_]
        # Lay the projection along this Einsum's axes (absent axes broadcast).
        order = sorted(range(len(kept_vars)), key=lambda i: vars_.index(kept_vars[i]))
        nonempty = np.transpose(nonempty, order)
        shape = [valid.shape[i] if v in kept_vars else 1 for i, v in enumerate(vars_)]
        busy |= nonempty.reshape(shape)
    kept = np.where(busy, valid, 0)
    return _Grid(vars_, kept, kept, "dense", total_kept=int(valid.sum()))


def _valid_counts(cascade, sizes, t, vars_) -> np.ndarray:
    """Real points per tile over `vars_`, a product of per-variable tile lengths; a partial
    partition's two parts together count only m1*M0 + m0 < M. O(tiles), no point loop."""
    out = np.ones((1,) * len(vars_), dtype=np.int64)
    done = set()
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in vars_ and lo in vars_ and _partial(part, sizes) and not {hi, lo} & done:
            n_hi, n_lo = _extent(sizes, hi), _extent(sizes, lo)
            per_hi = np.clip(int(sizes[part.rank]) - np.arange(n_hi) * n_lo, 0, n_lo)
            b0 = np.arange(0, n_lo, _tile_of(t, sizes, lo))
            b1 = np.minimum(b0 + _tile_of(t, sizes, lo), n_lo)
            counts = np.clip(np.minimum(per_hi[:, None], b1[None, :]) - b0[None, :], 0, None)
            starts = np.arange(0, n_hi, _tile_of(t, sizes, hi))
            table = np.add.reduceat(counts, starts, axis=0)
            shape = [1] * len(vars_)
            shape[vars_.index(hi)], shape[vars_.index(lo)] = table.shape
            if vars_.index(hi) > vars_.index(lo):
                table = table.T
                shape[vars_.index(hi)], shape[vars_.index(lo)] = table.shape[::-1]
            out = out * table.reshape(shape)
            done |= {hi, lo}
    for i, v in enumerate(vars_):
        if v in done:
            continue
        n, size = _extent(sizes, v), _tile_of(t, sizes, v)
        lengths = np.minimum(np.arange(0, n, size) + size, n) - np.arange(0, n, size)
        shape = [1] * len(vars_)
        shape[i] = len(lengths)
        out = out * lengths.reshape(shape)
    return out


# ---------------------------------------------------------------- the compiled kernel


def _gen(expr: Expr, names: dict[str, str], size_index: dict[str, int], whole: bool) -> str:
    """Python source of a filter expression as the executor computes it: in floats, or in
    integers when `whole` (no true division or transcendental and integer constants, so
    floor division and remainder give the same values, faster)."""
    if isinstance(expr, Const):
        v = expr.value
        if whole:
            return repr(int(v))
        return "math.inf" if v == math.inf else "(-math.inf)" if v == -math.inf else repr(v)
    if isinstance(expr, Var):
        return names[expr.name]
    if isinstance(expr, Size):
        return f"sz[{size_index[expr.name]}]"
    if isinstance(expr, Access):
        raise SpecError(f"occupancy: cannot compile a tensor read {expr}")
    return _format(expr.op, [_gen(x, names, size_index, whole) for x in expr.args], whole)


def _format(op: Op, a: list[str], whole: bool) -> str:
    one, zero = ("1", "0") if whole else ("1.0", "0.0")
    if op in _INFIX:
        return f"({a[0]} {_INFIX[op]} {a[1]})"
    if op in _COMPARE:
        return f"({one} if {a[0]} {_COMPARE[op]} {a[1]} else {zero})"
    if op is Op.AND:
        return f"({one} if ({a[0]} != {zero} and {a[1]} != {zero}) else {zero})"
    if op is Op.OR:
        return f"({one} if ({a[0]} != {zero} or {a[1]} != {zero}) else {zero})"
    if op is Op.NOT:
        return f"({one} if {a[0]} == {zero} else {zero})"
    if op is Op.NEG:
        return f"(-{a[0]})"
    if op in (Op.MAX, Op.MIN):
        return f"{op.value}({a[0]}, {a[1]})"
    if op is Op.ABS:
        return f"abs({a[0]})"
    if op is Op.RELU:
        return f"max({a[0]}, {zero})"
    if op in (Op.EXP, Op.LOG, Op.SQRT, Op.TANH):
        return f"math.{op.value}({a[0]})"
    raise SpecError(f"occupancy: operator {op.value} is not supported in a filter")


def _whole_numbers(where: Expr | None) -> bool:
    """Whether a filter can be computed in integers with the executor's float results."""
    for e in walk(where) if where is not None else ():
        if isinstance(e, Const) and not (math.isfinite(e.value) and e.value.is_integer()):
            return False
        if isinstance(e, Call) and e.op in (Op.DIV, Op.EXP, Op.LOG, Op.SQRT, Op.TANH):
            return False
    return True


_INFIX = {
    Op.ADD: "+",
    Op.SUB: "-",
    Op.MUL: "*",
    Op.DIV: "/",
    Op.FLOORDIV: "//",
    Op.MOD: "%",
}
_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "==", Op.NE: "!="}


def _kernel_parts(cascade, einsum, sizes, where, vars_):
    """`_kernel_parts_of`, memoized: the source does not depend on the tiling, and a
    search counts one mask at many tilings (generating it walks the filter's tree)."""
    key = (cascade, filter_token(where), tuple(vars_), _partial_flags(cascade, sizes))
    found = _KERNEL_PARTS.get(key)
    if found is None:
        found = _kernel_parts_of(cascade, einsum, sizes, where, vars_)
        _remember(_KERNEL_PARTS, key, found)
    return found


def _kernel_parts_of(cascade, einsum, sizes, where, vars_):
    """(source, size names, integer mode): a loop nest over `vars_` counting kept and real
    points per tile. Tiles are walked block by block (no division to find a point's tile);
    every subexpression of the filter is computed in the outermost loop it depends on (the
    query's window bounds once per query, not once per key), and the variable fewest
    subexpressions depend on is innermost."""
    axis = {v: i for i, v in enumerate(vars_)}
    size_names = sorted(
        {e.name for e in walk(where) if isinstance(e, Size)} if where is not None else set()
    )
    checks, deps, local = [], {v: {axis[v]} for v in vars_}, {v: f"x{axis[v]}" for v in vars_}
    derived = []
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in axis and lo in axis:
            size_names += [s for s in (part.lower, part.rank) if s not in size_names]
            if _partial(part, sizes):
                checks.append((local[hi], local[lo], part.lower, part.rank))
            combined = var_of(part.rank)
            if combined not in local:
                local[combined] = f"c_{combined}"
                deps[combined] = {axis[hi], axis[lo]}
                derived.append((combined, local[hi], part.lower, local[lo]))
    size_index = {s: i for i, s in enumerate(size_names)}
    whole = _whole_numbers(where)
    k = len(vars_)
    # Loop order: most-used variables outermost.
    uses = dict.fromkeys(range(k), 0)
    for e in walk(where) if where is not None else ():
        for v in variables_of(e):
            for a in deps.get(v, ()):
                uses[a] += 1
    order = sorted(range(k), key=lambda a: (-uses[a], a))
    depth = {a: d for d, a in enumerate(order)}
    body: dict[int, list[str]] = {d: [] for d in range(-1, k)}
    for combined, hi, lo_size, lo in derived:
        level = max(depth[a] for a in deps[combined])
        body[level].append(f"c_{combined} = {hi} * sz[{size_index[lo_size]}] + {lo}")
    temps: dict[str, tuple[str, frozenset]] = {}
    inner = order[-1] if k else None
    table: list[str] = []  # values of the innermost variable alone: computed once, looked up

    def visit(e: Expr) -> tuple[str, frozenset]:
        if isinstance(e, Var):
            return local[e.name], frozenset(deps[e.name])
        if not isinstance(e, Call):
            return _gen(e, local, size_index, whole), frozenset()
        args = [visit(x) for x in e.args]
        code = _format(e.op, [c for c, _ in args], whole)
        used = frozenset().union(*(u for _, u in args))
        if code not in temps:
            name = f"h{len(temps)}"
            temps[code] = (name, used)
            if used == {inner} and k > 1:
                table.append(f"{name} = {code}")
                body[k - 1].append(f"{name} = pre_{name}[i{inner}]")
            else:
                body[max((depth[a] for a in used), default=-1)].append(f"{name} = {code}")
        return temps[code]

    zero = "0" if whole else "0.0"
    keep = "True" if where is None else f"{visit(where)[0]} != {zero}"
    lines = ["def kernel(ext, tile, sz, kept, valid):"]
    lines += [f"    n{i} = (ext[{i}] + tile[{i}] - 1) // tile[{i}]" for i in range(k)]
    lines += [f"    {line}" for line in body[-1]]
    if table:
        kind = "np.int64" if whole else "np.float64"
        lines += [f"    pre_{t.split(' = ')[0]} = np.empty(ext[{inner}], {kind})" for t in table]
        lines.append(f"    for i{inner} in range(ext[{inner}]):")
        point = f"i{inner}" if whole else f"float(i{inner})"
        lines.append(f"        x{inner} = {point}")
        for t in table:
            name = t.split(" = ")[0]
            lines += [f"        {t}", f"        pre_{name}[i{inner}] = {name}"]
    indent = "    "
    for d, i in enumerate(order):
        lines.append(f"{indent}for t{i} in range(n{i}):")
        indent += "    "
        if d == k - 1:
            lines += [f"{indent}ck = 0", f"{indent}cv = 0"]
        lines.append(
            f"{indent}for i{i} in range(t{i} * tile[{i}], min(t{i} * tile[{i}] + tile[{i}], "
            f"ext[{i}])):"
        )
        indent += "    "
        lines.append(f"{indent}x{i} = i{i}" if whole else f"{indent}x{i} = float(i{i})")
        lines += [f"{indent}{line}" for line in body[d]]
    valid = " and ".join(
        f"{hi} * sz[{size_index[lo_s]}] + {lo} < sz[{size_index[rank]}]"
        for hi, lo, lo_s, rank in checks
    )
    lines.append(f"{indent}if {valid or 'True'}:")
    lines.append(f"{indent}    cv += 1")
    lines.append(f"{indent}    if {keep}:")
    lines.append(f"{indent}        ck += 1")
    index = ", ".join(f"t{i}" for i in range(k)) + ("," if k == 1 else "")
    indent = "    " * (2 * k)
    lines.append(f"{indent}kept[{index}] += ck")
    lines.append(f"{indent}valid[{index}] += cv")
    return "\n".join(lines) + "\n", tuple(size_names), whole


#: A filter structure (one kernel source) is counted with numpy until its iteration spaces
#: add up to this many points, then its kernel is compiled (the ski-rental rule): numpy
#: counts 2^22 points in about 0.1 s of CPU and a first compile costs 0.8-5 s (numba's
#: import included), so a small user filter never pays a compile, and a filter counted over
#: many tilings or a large space pays it after at most ~0.1 s of numpy. The kernel is 7-20x
#: faster than numpy from 2^16 points on (benchmarks/occupancy_first_filter.py).
NUMPY_POINTS = 2**22
#: Compiled kernels kept, by source (a long-running dashboard sees many user filters;
#: numba's cache=True cannot store code generated at run time).
KERNELS_KEPT = 128
_KERNELS: dict[str, Callable] = {}  # LRU: source -> compiled kernel
_NUMPY_SPENT: dict[str, int] = {}  # source -> points counted with numpy so far (bounded)
_LOCK = threading.Lock()  # the dashboard counts from several threads


def _compile(source: str):
    """The compiled kernel of a generated source, once per structure (kept in an LRU)."""
    with _LOCK:
        kernel = _KERNELS.pop(source, None)
    if kernel is None:
        scope: dict = {"math": math, "np": np}
        exec(compile(source, "<occupancy kernel>", "exec"), scope)  # generated from the IR
        kernel = _numba().njit(error_model="numpy", nogil=True)(scope["kernel"])
    with _LOCK:
        _KERNELS[source] = kernel
        while len(_KERNELS) > KERNELS_KEPT:
            _KERNELS.pop(next(iter(_KERNELS)), None)
    return kernel


def _count_with_numpy(source: str, points: int) -> bool:
    """Whether this count goes to numpy: the kernel is not compiled yet and the structure's
    numpy points stay within NUMPY_POINTS (charged here)."""
    with _LOCK:
        if source in _KERNELS:
            return False
        spent = _NUMPY_SPENT.pop(source, 0) + points
        if spent > NUMPY_POINTS:
            return False
        _NUMPY_SPENT[source] = spent
        while len(_NUMPY_SPENT) > 16 * KERNELS_KEPT:
            _NUMPY_SPENT.pop(next(iter(_NUMPY_SPENT)), None)
        return True


def _numba():
    """numba, imported when a kernel is first compiled (about 0.5 s): `import einsim` and
    the dense cascades never load it."""
    import numba

    return numba


def _compiled_grid(cascade, einsum, sizes, t, where, vars_) -> _Grid:
    if not vars_:
        one = np.ones((), dtype=np.int64)
        keep = 1
        if where is not None:
            from .executor import _value

            keep = int(_value(where, {}, sizes, {}, None) != 0)
        return _Grid((), one * keep, one, "compiled" if where is not None else "dense")
    grid = _from_base(cascade, einsum, sizes, t, where, tuple(vars_))
    if grid is not None:
        return grid
    return _direct_grid(cascade, einsum, sizes, t, where, vars_)


def _direct_grid(cascade, einsum, sizes, t, where, vars_) -> _Grid:
    """One count of the mask at tiling `t` (numpy while small, else the compiled kernel)."""
    source, size_names, whole = _kernel_parts(cascade, einsum, sizes, where, vars_)
    ext = np.array([_extent(sizes, v) for v in vars_], dtype=np.int64)
    tiles = np.array([_tile_of(t, sizes, v) for v in vars_], dtype=np.int64)
    shape = tuple(-(-ext // tiles))
    sz = np.array([sizes[s] for s in size_names], dtype=np.int64 if whole else np.float64)
    key = (source, ext.tobytes(), tiles.tobytes(), sz.tobytes())
    if key in _RUNS:  # Einsums sharing one mask (QK, LM, SLN, ... ) count it once
        kept, valid = _RUNS[key]
    elif _count_with_numpy(source, math.prod(int(n) for n in ext)):
        grid = _numpy_grid(cascade, einsum, sizes, t, where, vars_=tuple(vars_))
        kept, valid = grid.kept, grid.valid
    else:
        kept = np.zeros(shape, dtype=np.int64)
        valid = np.zeros(shape, dtype=np.int64)
        _compile(source)(ext, tiles, sz, kept, valid)
    if key not in _RUNS and kept.size <= 2**16:
        with _LOCK:
            _RUNS[key] = (kept, valid)
            if len(_RUNS) > 512:
                _RUNS.pop(next(iter(_RUNS)), None)
    return _Grid(tuple(vars_), kept, valid, "compiled" if where is not None else "dense")


_RUNS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # recent kernel runs (small grids)


# ------------------------------------------------ coarse tilings from one fine count

#: Cells of a base grid (`_Base`): one count at a fine granularity serves every tiling
#: whose tiles are multiples of it; past this many cells the tiling is counted directly.
BASE_CELLS = 2**22
#: Base grids kept (each two int64 summed-area tables of at most BASE_CELLS cells).
BASES_KEPT = 6


@dataclass(frozen=True, eq=False)
class _Base:
    """Kept and real points of one mask per cell of a fine grid (cell g[i] along variable
    vars[i], the last cell of an axis partial), as summed-area tables padded with a leading
    zero on each axis: the points of any box of whole cells are 2^k corner look-ups.

    Exact for a coarse tiling whose tile along each variable is a multiple of g or the
    whole extent: each coarse tile is a box of whole fine cells (its end min(start + t, n)
    is a cell boundary), kept and real points add over cells, and a tile is empty iff its
    kept sum is 0, full iff kept == real.
    """

    vars: tuple[str, ...]
    ext: tuple[int, ...]
    g: tuple[int, ...]
    kept: np.ndarray
    valid: np.ndarray
    method: str


_BASES: dict[tuple, _Base] = {}  # LRU: (source, extents, sizes) -> base grid


def _serves(g, ext, tiles) -> bool:
    return all(t % c == 0 or t >= n for c, n, t in zip(g, ext, tiles, strict=True))


def _base_granularity(ext, tiles, start) -> tuple[int, ...] | None:
    """The finest cells (from `start`, each dividing its requested tile or the tile whole)
    that fit BASE_CELLS: the axis with the most cells is coarsened by the smallest factor
    that still divides its tile (or to the whole axis when the tile is whole); None when
    the requested tiling cannot be served within BASE_CELLS."""
    g = list(start)
    while math.prod(-(-n // c) for n, c in zip(ext, g, strict=True)) > BASE_CELLS:
        best = None
        for i, (n, c, t) in enumerate(zip(ext, g, tiles, strict=True)):
            if c >= n:
                continue
            step = n if t >= n else (c * _least_factor(t // c) if t > c else None)
            if step is not None and (best is None or -(-n // c) > -(-ext[best[0]] // g[best[0]])):
                best = (i, min(step, n))
        if best is None:
            return None
        g[best[0]] = best[1]
    return tuple(g)


def _least_factor(q: int) -> int:
    """The least factor > 1 of q > 1."""
    return next((f for f in range(2, math.isqrt(q) + 1) if q % f == 0), q)


def _from_base(cascade, einsum, sizes, t, where, vars_) -> _Grid | None:
    """The per-tile counts of tiling `t` reduced from the mask's base grid (built, or
    rebuilt finer, on demand); None when the tiling is too fine for a base of BASE_CELLS.
    The base is laid out over the variables in name order, so the Einsums sharing a mask
    (QK[m1,m0,p], LM[m1,p,m0], ...) share it; the result is transposed to `vars_`."""
    if not vars_:
        return None
    canon = tuple(sorted(vars_))
    ext = tuple(_extent(sizes, v) for v in canon)
    tiles = tuple(_tile_of(t, sizes, v) for v in canon)
    source, size_names, whole = _kernel_parts(cascade, einsum, sizes, where, canon)
    sz = np.array([sizes[s] for s in size_names], dtype=np.int64 if whole else np.float64)
    key = (source, ext, sz.tobytes())
    with _LOCK:
        base = _BASES.pop(key, None)
        if base is not None:
            _BASES[key] = base
    if base is None or not _serves(base.g, ext, tiles):
        start = (1,) * len(ext)
        if base is not None:  # finer where this tiling needs it, as fine elsewhere
            start = tuple(
                c if tt >= n else math.gcd(c, tt)
                for c, n, tt in zip(base.g, ext, tiles, strict=True)
            )
        g = _base_granularity(ext, tiles, start)
        if g is None:
            return None
        fine = _direct_grid(
            cascade, einsum, sizes, dict(zip(map(rank_of, canon), g, strict=True)), where, canon
        )
        base = _Base(canon, ext, g, _summed(fine.kept), _summed(fine.valid), fine.method)
        with _LOCK:
            _BASES[key] = base
            while len(_BASES) > BASES_KEPT:
                _BASES.pop(next(iter(_BASES)), None)
    bounds = [
        -(-np.minimum(np.arange(0, n + tt, tt), n)[: -(-n // tt) + 1] // c)
        if tt < n
        else np.array([0, -(-n // c)])
        for n, c, tt in zip(ext, base.g, tiles, strict=True)
    ]
    kept, valid = (_box_sums(a, bounds) for a in (base.kept, base.valid))
    order = [canon.index(v) for v in vars_]
    kept, valid = (np.ascontiguousarray(a.transpose(order)) for a in (kept, valid))
    return _Grid(tuple(vars_), kept, valid, base.method)


def _summed(cells: np.ndarray) -> np.ndarray:
    """Summed-area table with a leading zero on every axis."""
    out = np.pad(cells.astype(np.int64), [(1, 0)] * cells.ndim)
    for axis in range(cells.ndim):
        np.cumsum(out, axis=axis, out=out)
    return out


def _box_sums(table: np.ndarray, bounds: list[np.ndarray]) -> np.ndarray:
    """Sums over the boxes between consecutive bounds on each axis (in cells)."""
    out = table[np.ix_(*bounds)] if bounds else table
    for axis in range(len(bounds)):
        out = np.diff(out, axis=axis)
    return out


# --------------------------------------------------------------- the numpy reference


def _numpy_grid(
    cascade, einsum, sizes, t, where, tensors=None, budget: int = 2**24, vars_=None
) -> _Grid:
    """Per-tile counts by evaluating the mask with the reference executor over the grid of
    mask variables (`vars_`, by default the mask's), in chunks of whole tile rows (plain
    numpy; tensors for data filters)."""
    from .executor import _value, mask_of

    if vars_ is None:
        vars_ = _mask_vars_of(cascade, einsum, sizes, where)
    probe = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, where)
    bare = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, None)
    if not vars_:
        keep, _ = mask_of(cascade, probe, {}, sizes, tensors)
        one = np.ones((), dtype=np.int64)
        return _Grid((), one * int(keep is None or bool(keep)), one, "numpy")
    ext = [_extent(sizes, v) for v in vars_]
    tiles = [_tile_of(t, sizes, v) for v in vars_]
    shape = tuple(-(-e // s) for e, s in zip(ext, tiles, strict=True))
    kept = np.zeros(shape, dtype=np.int64)
    valid = np.zeros(shape, dtype=np.int64)
    rows = max(1, budget // max(1, math.prod(ext[1:])) // tiles[0]) * tiles[0]
    for start in range(0, ext[0], rows):
        stop = min(ext[0], start + rows)
        env = {}
        for axis, var in enumerate(vars_):
            values = np.arange(start, stop) if axis == 0 else np.arange(ext[axis])
            axes = [1] * len(vars_)
            axes[axis] = len(values)
            env[var] = values.reshape(axes)
        full = [stop - start, *ext[1:]]
        real, local = mask_of(cascade, bare, env, sizes, tensors)
        real = np.ones(full, bool) if real is None else np.broadcast_to(real, full)
        keep = real
        if where is not None:
            # Reads at padded points (past M) are masked by `real`, not refused.
            keep = real & (np.asarray(_value(where, local, sizes, tensors, real)) != 0)
        sl = slice(start // tiles[0], -(-stop // tiles[0]))
        kept[sl] += _tile_sums(keep, tiles)
        valid[sl] += _tile_sums(real, tiles)
    return _Grid(tuple(vars_), kept, valid, "numpy")


def _tile_sums(mask: np.ndarray, tiles: list[int]) -> np.ndarray:
    out = mask.astype(np.int64)
    for axis, size in enumerate(tiles):
        out = np.add.reduceat(out, np.arange(0, out.shape[axis], size), axis=axis)
    return out


# ---------------------------------------------------------------- the closed form


@dataclass(frozen=True, eq=False)
class _AffinePlan:
    """A filter whose kept points are, for each y, one interval lo(y) <= x <= hi(y) of the
    other variable x, both ends non-decreasing in y (causal, windows, decode offsets).

    x and y are logical variables: a rank iterated directly (`m`) or through both parts of
    its partition (`m1*M0+m0`, exact when the lower part is untiled: a tile of t upper
    indices is then t*M0 consecutive x). Feasible y (lo <= hi) form one run [ya, yb], and
    consecutive intervals touch, so a row of tiles meets one run of x tiles.
    """

    method: ClassVar[str] = "closed_form"  # what `occupancy` reports it counted by

    x: tuple[str, ...]
    y: tuple[str, ...]
    extent_x: int
    extent_y: int
    lo: np.ndarray
    hi: np.ndarray
    ya: int
    yb: int
    points: int


def _linear(expr: Expr, var: str) -> tuple[Expr, Expr] | None:
    """`expr = a * var + rest` with a an integer constant: returns (a, rest) or None."""
    if isinstance(expr, Var):
        return (Const(1.0), Const(0.0)) if expr.name == var else (Const(0.0), expr)
    if isinstance(expr, Const | Size):
        return Const(0.0), expr
    if isinstance(expr, Call) and expr.op in (Op.ADD, Op.SUB):
        left, right = _linear(expr.args[0], var), _linear(expr.args[1], var)
        if left is None or right is None:
            return None
        sign = 1 if expr.op is Op.ADD else -1
        a = left[0].value + sign * right[0].value  # type: ignore[union-attr]
        return Const(a), Call(expr.op, (left[1], right[1]))
    if isinstance(expr, Call) and expr.op is Op.NEG:
        inner = _linear(expr.args[0], var)
        if inner is None:
            return None
        return Const(-inner[0].value), Call(Op.NEG, (inner[1],))  # type: ignore[union-attr]
    if var not in variables_of(expr):
        return Const(0.0), expr
    if isinstance(expr, Call) and expr.op is Op.MUL:  # by a constant: `n * MB`, sizes read
        for k in (0, 1):
            c = expr.args[k]
            inner = _linear(expr.args[1 - k], var) if isinstance(c, Const) else None
            if inner is not None:
                return Const(c.value * inner[0].value), Call(Op.MUL, (c, inner[1]))  # type: ignore[union-attr]
    return None


def _sized(expr: Expr, sizes) -> Expr:
    """`expr` with every size replaced by its value (so `n * MB` is linear in n)."""
    if isinstance(expr, Size):
        return Const(float(sizes[expr.name]))
    if isinstance(expr, Call):
        return Call(expr.op, tuple(_sized(a, sizes) for a in expr.args))
    return expr


def _affine_bounds(where: Expr, var: str, equal: bool = False):
    """The filter as a list of (a, rest, op) with `a*var + rest  op  0`, when it is a
    conjunction of comparisons linear in `var` with integer coefficients; else None.
    `equal`: an `==` is taken too, as its two bounds (the terms of unions and interval
    plans; the closed form leaves it to them: its rows rarely form one staircase)."""
    if isinstance(where, Call) and where.op is Op.AND:
        left = _affine_bounds(where.args[0], var, equal)
        right = _affine_bounds(where.args[1], var, equal)
        return None if left is None or right is None else left + right
    ops = (Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ) if equal else (Op.LT, Op.LE, Op.GT, Op.GE)
    if isinstance(where, Call) and where.op in ops:
        diff = Call(Op.SUB, where.args)
        linear = _linear(diff, var)
        if linear is None or not float(linear[0].value).is_integer():  # type: ignore[union-attr]
            return None
        a, rest = int(linear[0].value), linear[1]  # type: ignore[union-attr]
        if where.op is Op.EQ:  # both ends: BiFormer's region of a position, `f(p) == nq`
            return [(a, rest, Op.LE), (a, rest, Op.GE)]
        return [(a, rest, where.op)]
    return None


def _substitute(expr: Expr, table: dict) -> Expr:
    if expr in table:
        return table[expr]
    if isinstance(expr, Call):
        return Call(expr.op, tuple(_substitute(a, table) for a in expr.args))
    return expr


def _affine_plan(cascade, einsum, sizes, where, vars_) -> _AffinePlan | None:
    key = tuple(sorted((k, int(v)) for k, v in sizes.items()))
    return _affine_plan_cached(cascade, key, _ByToken(where), _grouped_vars(cascade, vars_))


def _grouped_vars(cascade, vars_) -> tuple[str, ...]:
    """The variables in the order of their logical groups (`_logical_groups`: partitions
    first, then the others as given): the orders a plan is built from (its groups and
    their order) are the same for every order of `vars_` giving these groups, so QK's
    (h, m1, m0, p) and LM's (h, m1, p, m0) share one plan, its rows and its transpose."""
    groups, _ = _logical_groups(cascade, vars_)
    return tuple(v for parts in groups.values() for v in parts)


@lru_cache(maxsize=256)
def _affine_plan_cached(cascade, key, keyed, vars_) -> _AffinePlan | None:
    """One plan per (cascade, sizes, filter, variables): Einsums sharing a mask share it."""
    sizes, where = dict(key), keyed.expr
    if where is None or not vars_:
        return None
    found = _logical_filter(cascade, where, vars_, 2)
    if found is None:
        return None
    groups, w = found
    extent = {v: _logical_extent(cascade, sizes, g) for v, g in groups.items()}
    return _affine_of(w, groups, extent, sizes)


def _affine_of(w: Expr, groups, extent, sizes) -> _AffinePlan | None:
    """The closed form of a filter over two logical variables (`groups`, {name: iterated
    variables}, of `extent`), or None where it is not one staircase of affine bounds."""
    for x, y in itertools.permutations(groups):
        plan = _affine_oriented(w, x, y, groups, extent, sizes)
        if plan is not None:
            return plan
    return None


def _affine_oriented(w: Expr, x: str, y: str, groups, extent, sizes) -> _AffinePlan | None:
    """`_affine_of` with x along the intervals and y along the rows only."""
    w = _sized(w, sizes)
    bounds = _affine_bounds(w, x)
    if bounds is None or any(set(variables_of(r)) - {y} for _, r, _ in bounds):
        return None
    n_x, n_y = extent[x], extent[y]
    lo, hi = _affine_ends(bounds, y, n_x, n_y, sizes)
    run = _staircase(lo, hi)
    if run is None:
        return None
    ya, yb = run
    width = np.subtract(hi, lo)  # points: max(hi - lo + 1, 0) summed, in one array
    width += 1
    points = int(np.maximum(width, 0, out=width).sum())
    return _AffinePlan(groups[x], groups[y], n_x, n_y, lo, hi, ya, yb, points)


#: A filter that is an `or` of at most this many conjunctions of comparisons affine in x
#: has its kept intervals per row computed from those affine ends (`_affine_terms`).
DNF_TERMS_MOST = 8


def _dnf(expr: Expr) -> list[list[Expr]] | None:
    """The filter as an `or` of conjunctions of comparisons (`and` distributed over `or`),
    None past DNF_TERMS_MOST terms or with a `not`."""
    if isinstance(expr, Call) and expr.op is Op.OR:
        left, right = _dnf(expr.args[0]), _dnf(expr.args[1])
        if left is None or right is None or len(left) + len(right) > DNF_TERMS_MOST:
            return None
        return left + right
    if isinstance(expr, Call) and expr.op is Op.AND:
        left, right = _dnf(expr.args[0]), _dnf(expr.args[1])
        if left is None or right is None or len(left) * len(right) > DNF_TERMS_MOST:
            return None
        return [a + b for a in left for b in right]
    if isinstance(expr, Call) and expr.op is Op.NOT:
        return None
    return [[expr]]


def _affine_ends(bounds, y: str, n_x: int, n_y: int, sizes) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) per y of the x with every `a*x + rest(y) op 0` of `bounds` (empty: lo > hi).
    A rest that does not read y is one number (`_constant_whole`): its bound clips every
    row by one end, with no array of its values; the others update lo and hi in place."""
    from .executor import _value

    lo = np.zeros(n_y, dtype=np.int64)
    hi = np.full(n_y, n_x - 1, dtype=np.int64)
    scratch: list[np.ndarray] = []
    for a, r, op in bounds:
        constant = _constant_whole(r, y, sizes)
        if constant is not None:
            _constant_ends(a, constant, op, lo, hi)
            continue
        whole = _shared_whole_values(r, y, n_y, sizes)  # the executor's floats, exactly, sooner
        if whole is not None:
            if not scratch:
                scratch.append(np.empty(n_y, dtype=np.int64))
            _whole_ends_into(a, whole, op, lo, hi, scratch[0])
            continue
        ys = np.arange(n_y)  # the executor's path (rare): the rows' values made here
        value = np.broadcast_to(np.asarray(_value(r, {y: ys}, sizes, {}, None), float), (n_y,))
        if a == 0:
            hi = np.where(_HOLDS[op](value, 0.0), hi, -1)
            continue
        t = -value / a
        op = _FLIP[op] if a < 0 else op
        if op is Op.LE:
            hi = np.minimum(hi, np.floor(t).astype(np.int64))
        elif op is Op.LT:
            hi = np.minimum(hi, np.ceil(t).astype(np.int64) - 1)
        elif op is Op.GE:
            lo = np.maximum(lo, np.ceil(t).astype(np.int64))
        else:
            lo = np.maximum(lo, np.floor(t).astype(np.int64) + 1)
    return lo, hi


def _constant_whole(expr: Expr, var: str, sizes) -> int | None:
    """`expr`'s one value where it does not read `var` and `_whole_values` takes it (the
    value every element of `_whole_values` would hold), else None."""
    if var in variables_of(expr):
        return None
    try:
        value, _, _ = _whole(_sized(expr, sizes), var, 1, sizes)
    except _NotWhole:
        return None
    return value if isinstance(value, int) else None


def _constant_ends(a: int, whole: int, op: Op, lo: np.ndarray, hi: np.ndarray) -> None:
    """`_whole_ends_into` for a rest of one value: the same end for every row, applied in place."""
    if a == 0:
        if not _HOLDS[op](whole, 0):
            hi.fill(-1)
        return
    op = _FLIP[op] if a < 0 else op
    down, up = (-whole) // a, -(whole // a)  # floor(-whole / a), ceil(-whole / a)
    if op is Op.LE:
        np.minimum(hi, down, out=hi)
    elif op is Op.LT:
        np.minimum(hi, up - 1, out=hi)
    elif op is Op.GE:
        np.maximum(lo, up, out=lo)
    else:
        np.maximum(lo, down + 1, out=lo)


def _whole_ends_into(a: int, whole, op: Op, lo: np.ndarray, hi: np.ndarray, tmp) -> None:
    """`_affine_ends`' step for one bound `a*x + whole(y) op 0` in int64 arithmetic, in
    place on lo or hi (`tmp` a scratch int64 array as long: no fresh 8 MB array per bound at
    1M rows): the float path's ends exactly, about 5x sooner. With |whole| < 2**52
    (`_whole_values`) a float quotient -whole / a is off by less than 1 / (2|a|) while a
    fractional one is at least 1 / |a| from a whole number, so its floor and ceil are floor
    division's."""
    if a == 0:
        np.copyto(hi, -1, where=~_HOLDS[op](whole, 0))
        return
    op = _FLIP[op] if a < 0 else op
    if op in (Op.LE, Op.GT):  # down = floor(-whole / a): -whole when a is 1, whole when -1
        if a == 1:
            np.negative(whole, out=tmp)
        elif a == -1:
            np.copyto(tmp, whole)
        else:
            np.negative(whole, out=tmp)
            np.floor_divide(tmp, a, out=tmp)
        if op is Op.LE:
            np.minimum(hi, tmp, out=hi)
        else:
            np.add(tmp, 1, out=tmp)
            np.maximum(lo, tmp, out=lo)
        return
    # up = ceil(-whole / a) = -(whole // a)
    if a == 1:
        np.negative(whole, out=tmp)
    elif a == -1:
        np.copyto(tmp, whole)
    else:
        np.floor_divide(whole, a, out=tmp)
        np.negative(tmp, out=tmp)
    if op is Op.LT:
        np.subtract(tmp, 1, out=tmp)
        np.minimum(hi, tmp, out=hi)
    else:
        np.maximum(lo, tmp, out=lo)


def _affine_terms(w: Expr, x: str, y: str, n_x: int, n_y: int, sizes):
    """[(lo, hi)] per conjunction when the filter is an `or` of conjunctions of comparisons
    affine in x with integer coefficients and the rest over y (sinks + window: `m <= p and
    (m < S or p - m < W)`), else None: each row's kept x is the union of the terms' [lo, hi],
    O(terms x rows) in numpy instead of the general set algebra."""
    found = _affine_term_bounds(w, x, y)
    if found is None:
        return None
    return [_affine_ends(bounds, y, n_x, n_y, sizes) for bounds in found]


def _affine_term_bounds(w: Expr, x: str, y: str) -> list | None:
    """`_affine_bounds` of each conjunction of the filter's `or` (`_affine_terms`), or None
    where one is not affine in x with the rest over y (structure only, no arrays)."""
    terms = _dnf(w)
    if terms is None:
        return None
    out = []
    for conj in terms:
        joined = conj[0]
        for c in conj[1:]:
            joined = Call(Op.AND, (joined, c))
        bounds = _affine_bounds(joined, x, equal=True)
        if bounds is None or any(set(variables_of(r)) - {y} for _, r, _ in bounds):
            return None
        out.append(bounds)
    return out


def _terms_block(terms, first: int, last: int, sets: _XSets):
    """The kept intervals of rows first .. last - 1: the union of the terms' intervals."""
    parts = []
    rows = np.arange(first, last, dtype=np.int64)
    for lo, hi in terms:
        a, b = lo[first:last], hi[first:last]
        on = a <= b
        parts.append((rows[on], a[on], b[on]))
    return sets.union(parts)


def _staircase(lo: np.ndarray, hi: np.ndarray) -> tuple[int, int] | None:
    """The rows (a, b) where the intervals [lo, hi] are non-empty, when those rows are one
    contiguous run whose ends are non-decreasing and each interval touches the next (one
    staircase); (1, 0) when every interval is empty; None when they form no staircase."""
    feasible = lo <= hi
    count = int(np.count_nonzero(feasible))
    if count == 0:
        return 1, 0
    a, b = int(feasible.argmax()), len(feasible) - 1 - int(feasible[::-1].argmax())
    run_lo, run_hi = lo[a : b + 1], hi[a : b + 1]
    if (
        count != b - a + 1
        or np.any(run_lo[1:] < run_lo[:-1])
        or np.any(run_hi[1:] < run_hi[:-1])
        or np.any(run_lo[1:] > run_hi[:-1] + 1)
    ):
        return None
    return a, b


_HOLDS = {Op.LT: np.less, Op.LE: np.less_equal, Op.GT: np.greater, Op.GE: np.greater_equal}
_FLIP = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE}


def _logical_extent(cascade, sizes, group: tuple[str, ...]) -> int:
    if len(group) == 1:
        return _extent(sizes, group[0])
    return int(sizes[cascade.partition_of[rank_of(group[0])].rank])


def _logical_tiles(sizes, group, table, names) -> tuple[np.ndarray, np.ndarray]:
    """(tile along the logical variable, usable) per tiling: a partition's lower part must
    be untiled for its tiles to be runs of consecutive x."""
    column = {r: table[:, j] for j, r in enumerate(names)}

    def tile(v):
        full = _extent(sizes, v)
        t = column.get(rank_of(v))
        return np.full(len(table), full) if t is None else np.minimum(t, full)

    if len(group) == 1:
        t = tile(group[0])
        return t.astype(np.int64), np.ones(len(table), bool)
    hi, lo = group
    m0 = _extent(sizes, lo)
    return (tile(hi) * m0).astype(np.int64), tile(lo) >= m0


#: Rows of tiles (summed over the tilings) that `_affine_rows` counts with numpy; past
#: this, the compiled loop (loading numba costs about 0.5 s of CPU once per process; numpy
#: counts 2^22 rows in about 0.2 s).
AFFINE_NUMPY_ROWS = 2**22


def _affine_rows(lo, hi, ya, yb, n_x, n_y, tx, ty, out) -> None:
    """`_affine_rows_py` for every tiling: in numpy, all tilings' rows of tiles at once,
    while they are few (`AFFINE_NUMPY_ROWS`); else compiled (numba loads only then)."""
    tx, ty = np.asarray(tx, np.int64), np.asarray(ty, np.int64)
    counts = -(-n_y // ty)
    if len(tx) == 0 or int(counts.sum()) > AFFINE_NUMPY_ROWS:
        _affine_rows_kernel()(lo, hi, ya, yb, n_x, n_y, tx, ty, out)
        return
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    seg = np.repeat(np.arange(len(tx)), counts)
    t_x, t_y = tx[seg], ty[seg]
    y0 = (np.arange(len(seg)) - starts[seg]) * t_y
    y1 = np.minimum(y0 + t_y, n_y) - 1
    a, b = np.maximum(y0, ya), np.minimum(y1, yb)
    live = a <= b
    # the loop steps its tile indices up to these floors (lo, hi non-decreasing)
    j0 = lo[np.clip(a, 0, n_y - 1)] // t_x
    j1 = hi[np.clip(b, 0, n_y - 1)] // t_x
    nonempty = np.where(live, j1 - j0 + 1, 0)
    busy = np.where(live, (y1 - y0 + 1) * (np.minimum((j1 + 1) * t_x, n_x) - j0 * t_x), 0)
    inside = (y0 >= ya) & (y1 <= yb)
    f0 = -(-lo[np.clip(y1, 0, n_y - 1)] // t_x)
    g = (hi[np.clip(y0, 0, n_y - 1)] + 1) // t_x
    f1 = np.where(hi[np.clip(y0, 0, n_y - 1)] >= n_x - 1, -(-n_x // t_x) - 1, g - 1)
    full = np.where(inside, np.maximum(f1 - f0 + 1, 0), 0)
    for column, values in enumerate((nonempty, full, busy)):
        out[:, column] = np.add.reduceat(values.astype(np.int64), starts)


@cache
def _affine_rows_kernel():
    return _numba().njit(nogil=True, cache=True)(_affine_rows_py)


def _affine_rows_py(lo, hi, ya, yb, n_x, n_y, tx, ty, out):  # pragma: no cover (compiled)
    """Per tiling k: non-empty tiles, full tiles and busy points over (x, y) tiles.

    Row by row of y tiles; the x-tile indices of the run's ends only grow (lo and hi are
    non-decreasing), so they are stepped, not divided: O(rows + x tiles) per tiling.
    """
    for k in range(tx.shape[0]):
        t_x, t_y = tx[k], ty[k]
        tiles_x = (n_x + t_x - 1) // t_x
        nonempty = 0
        full = 0
        busy = 0
        j0 = 0  # x tile of lo at the row's first feasible y
        j1 = 0  # x tile of hi at the row's last feasible y
        f0 = 0  # first x tile starting at or after lo at the row's last y
        g = 0  # (hi at the row's first y + 1) // t_x
        for y0 in range(0, n_y, t_y):
            y1 = min(y0 + t_y, n_y) - 1
            a, b = max(y0, ya), min(y1, yb)
            if a > b:
                continue
            while (j0 + 1) * t_x <= lo[a]:
                j0 += 1
            while (j1 + 1) * t_x <= hi[b]:
                j1 += 1
            nonempty += j1 - j0 + 1
            busy += (y1 - y0 + 1) * (min((j1 + 1) * t_x, n_x) - j0 * t_x)
            if y0 >= ya and y1 <= yb:
                while f0 * t_x < lo[y1]:
                    f0 += 1
                while (g + 1) * t_x <= hi[y0] + 1:
                    g += 1
                f1 = tiles_x - 1 if hi[y0] >= n_x - 1 else g - 1
                if f1 >= f0:
                    full += f1 - f0 + 1
        out[k, 0] = nonempty
        out[k, 1] = full
        out[k, 2] = busy


#: An affine plan whose lo and hi are affine on at most this many pieces of rows is counted
#: in closed form (`_affine_pieces_rows`): per piece, sums of floors of arithmetic
#: progressions, O(pieces x log) per tiling instead of O(rows of tiles), once the rows of
#: tiles of a call pass AFFINE_CLOSED_ROWS per piece (fewer: numpy, all tilings at once).
AFFINE_PIECES_MOST = 64
AFFINE_CLOSED_ROWS = 256


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """sum(floor((a * k + b) / m) for k in range(n)), any integers a, b and m > 0, in
    O(log m) (the Euclid-like reduction of AtCoder Library's floor_sum)."""
    total = 0
    if n <= 0:
        return 0
    if a < 0 or a >= m:
        total += n * (n - 1) // 2 * (a // m)
        a %= m
    if b < 0 or b >= m:
        total += n * (b // m)
        b %= m
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        top = a * n + b
        if top < m:
            return total
        n, b = top // m, top % m
        m, a = a, m


def _affine_pieces(plan: _AffinePlan):
    """(starts, ends) of the runs of rows on which lo and hi are both affine and the rows
    all live (ya..yb) or all dead; None past AFFINE_PIECES_MOST runs (memoized). lo is
    affine on [c, c') for consecutive cuts c, c' where its step lo(y + 1) - lo(y) changes
    only at c'."""
    found = _PIECES.get(id(plan))
    if found is not None and found[0] is plan:
        return found[1]
    n_y = plan.extent_y
    cuts = {0, n_y} | ({plan.ya, plan.yb + 1} if plan.ya <= plan.yb else set())
    step = np.diff(plan.lo)
    changed = step[1:] != step[:-1]
    np.subtract(plan.hi[1:], plan.hi[:-1], out=step)  # hi's steps in the same array
    changed |= step[1:] != step[:-1]
    change = np.flatnonzero(changed) + 1
    pieces = None
    if len(change) <= AFFINE_PIECES_MOST:
        edges = sorted(cuts | set(change.tolist()))
        pieces = (np.array(edges[:-1], np.int64), np.array(edges[1:], np.int64) - 1)
    with _LOCK:
        _PIECES[id(plan)] = (plan, pieces)
        while len(_PIECES) > 64:
            _PIECES.pop(next(iter(_PIECES)), None)
    return pieces


_PIECES: dict[int, tuple] = {}  # id(plan) -> (plan, pieces)


def _first_at_least(a: int, b: int, bound: int, n: int) -> int:
    """The least k in [0, n] with a + b * k >= bound (b >= 0); n where none."""
    if a >= bound:
        return 0
    if b <= 0:
        return n
    return min(n, -(-(bound - a) // b))


def _affine_pieces_rows(plan: _AffinePlan, pieces, tx, ty, out) -> None:
    """`_affine_rows_py` in closed form: a row of tiles inside one live piece (lo and hi
    affine there, slopes sl, sh >= 0) has its tile indices floor((alpha + beta * k) / tx)
    for its index k in the piece, so the piece's non-empty tiles and busy points are sums
    of floors of arithmetic progressions (`_floor_sum`); its full tiles are
    max(0, floor(u / tx) - ceil(v / tx)) with u = hi(y0) + 1 and v = lo(y1), which is
    that difference itself where u - v >= tx and 0 elsewhere (a prefix or suffix of k).
    The rows of tiles that cross a piece's start or end the space are counted directly."""
    lo, hi, ya, yb = plan.lo, plan.hi, plan.ya, plan.yb
    n_x, n_y = plan.extent_x, plan.extent_y
    starts, ends = pieces
    live = [(int(s), int(e)) for s, e in zip(starts, ends, strict=True) if ya <= s and e <= yb]
    slopes = [
        (int(lo[s]), int(hi[s]), int(lo[s + 1] - lo[s]) if e > s else 0,
         int(hi[s + 1] - hi[s]) if e > s else 0)
        for s, e in live
    ]  # fmt: skip
    pairs = zip(np.asarray(tx).tolist(), np.asarray(ty).tolist(), strict=True)
    for k, (t_x, t_y) in enumerate(pairs):
        tiles_x = -(-n_x // t_x)
        short = tiles_x * t_x - n_x
        nonempty = full = busy = 0
        for (s, e), (lo_s, hi_s, sl, sh) in zip(live, slopes, strict=True):
            i0, i1 = -(-s // t_y), (e + 1) // t_y - 1
            n = i1 - i0 + 1
            if n <= 0:
                continue
            lo0 = lo_s + sl * (i0 * t_y - s)  # lo at the first row of tile row k = 0
            hi0 = hi_s + sh * (i0 * t_y - s)
            dl, dh = sl * t_y, sh * t_y  # per row of tiles
            lo1, hi1 = lo0 + sl * (t_y - 1), hi0 + sh * (t_y - 1)  # at the last row
            sum_j0 = _floor_sum(n, t_x, dl, lo0)
            sum_j1 = _floor_sum(n, t_x, dh, hi1)
            nonempty += sum_j1 - sum_j0 + n
            last = n - _first_at_least(hi1, dh, (tiles_x - 1) * t_x, n)  # j1 = last tile
            busy += t_y * (t_x * (sum_j1 + n - sum_j0) - short * last)
            clipped = _first_at_least(hi0, dh, n_x - 1, n)  # hi(y0) >= n_x - 1 from here
            # k < clipped: floor((hi0 + 1 + dh k) / tx) - ceil((lo1 + dl k) / tx) where the
            # width hi0 + 1 - lo1 + (dh - dl) k is at least tx
            width0, grow = hi0 + 1 - lo1, dh - dl
            if grow >= 0:
                ka, kb = _first_at_least(width0, grow, t_x, clipped), clipped
            else:
                ka, kb = 0, min(clipped, max(0, (width0 - t_x) // -grow + 1))
            if kb > ka:
                m = kb - ka
                full += _floor_sum(m, t_x, dh, hi0 + 1 + dh * ka)
                full += _floor_sum(m, t_x, -dl, -(lo1 + dl * ka))
            if n > clipped:
                m = n - clipped
                full += tiles_x * m + _floor_sum(m, t_x, -dl, -(lo1 + dl * clipped))
        rows = set()
        for s in starts.tolist()[1:]:
            if s % t_y:
                rows.add(s // t_y)
        if n_y % t_y:
            rows.add(n_y // t_y)
        if rows:
            i = np.array(sorted(rows), dtype=np.int64)
            y0 = i * t_y
            y1 = np.minimum(y0 + t_y, n_y) - 1
            a, b = np.maximum(y0, ya), np.minimum(y1, yb)
            on = a <= b
            j0 = lo[np.clip(a, 0, n_y - 1)] // t_x
            j1 = hi[np.clip(b, 0, n_y - 1)] // t_x
            nonempty += int(np.where(on, j1 - j0 + 1, 0).sum())
            width = np.minimum((j1 + 1) * t_x, n_x) - j0 * t_x
            busy += int(np.where(on, (y1 - y0 + 1) * width, 0).sum())
            inside = (y0 >= ya) & (y1 <= yb)
            f0 = -(-lo[np.clip(y1, 0, n_y - 1)] // t_x)
            top = hi[np.clip(y0, 0, n_y - 1)]
            f1 = np.where(top >= n_x - 1, tiles_x - 1, (top + 1) // t_x - 1)
            full += int(np.where(inside, np.maximum(f1 - f0 + 1, 0), 0).sum())
        out[k] = (nonempty, full, busy)


def _plan_rows(plan, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """`_affine_rows` (or `_interval_rows`) per (x tile, y tile), memoized per plan: the
    Einsums sharing a mask (QK, LM, SLN, ...) and every search batch meeting a tiling again
    count it once."""
    with _LOCK:
        entry = _PLAN_ROWS.get(id(plan))
        if entry is None or entry[0] is not plan:
            entry = _PLAN_ROWS[id(plan)] = (plan, {})
            while len(_PLAN_ROWS) > 64:
                _PLAN_ROWS.pop(next(iter(_PLAN_ROWS)), None)
    memo = entry[1]
    keys = list(zip(np.asarray(tx).tolist(), np.asarray(ty).tolist(), strict=True))
    missing = sorted({k for k in keys if k not in memo})
    if missing:
        mx = np.array([k[0] for k in missing], dtype=np.int64)
        my = np.array([k[1] for k in missing], dtype=np.int64)
        found = np.zeros((len(missing), 3), dtype=np.int64)
        if isinstance(plan, _KronPlan):
            found = _kron_rows(plan, mx, my)
        elif isinstance(plan, _DifferencePlan):
            found = _difference_rows(plan, mx, my)
        elif isinstance(plan, _PeriodicPlan):
            found = _periodic_rows(plan, mx, my)
        elif isinstance(plan, _UnionPlan):
            found = _union_rows(plan, mx, my)
        elif isinstance(plan, _IntervalPlan):
            # Rows of y tiles, or of x tiles (the transposed plan, built on first need)
            # where those are far fewer: a query tile of 1 meets every row's intervals.
            rows_y, rows_x = -(-plan.extent_y // my), -(-plan.extent_x // mx)
            by_x = (4 * rows_x < rows_y) & (rows_y > 4096)
            # The transposed plan is built once the CPU time spent counting such tilings
            # on this plan passes TRANSPOSE_AFTER times the time this plan took to build
            # (about the transposed one's cost): at most 1 + TRANSPOSE_AFTER times the
            # better of the two choices, whatever tilings come.
            spent = memo.get("direct_s", 0)
            if by_x.any() and "transposed" not in memo:
                # Loading the compiled kernel counts as time spent counting directly: where
                # the direct count of these tilings would load it, that charge may build the
                # transposed plan first (biformer, vmoba 1M: 15 ms instead of a 0.3 s load).
                spent += KERNEL_LOAD_S * _loads_kernel(plan, mx[by_x], my[by_x])
            if by_x.any() and "transposed" not in memo and spent > TRANSPOSE_AFTER * plan.build_s:
                memo["transposed"] = _interval_transposed(plan)
            flipped = memo.get("transposed")
            for use, p, a, b in ((~by_x, plan, mx, my), (by_x, flipped, my, mx)):
                if use.any():
                    part = np.zeros((int(use.sum()), 3), dtype=np.int64)
                    if p is None:  # not built (yet), or not separable: rows of y tiles
                        start = time.process_time()
                        _interval_rows(plan, mx[use], my[use], part)
                        memo["direct_s"] = memo.get("direct_s", 0) + time.process_time() - start
                    else:
                        _interval_rows(p, a[use], b[use], part)
                    found[use] = part
        else:
            if "transposed" not in memo:
                memo["transposed"] = _transposed(plan)
            flipped = memo["transposed"]
            # Rows of y tiles, or (the same counts, transposed) rows of x tiles where fewer.
            by_x = (-(-plan.extent_x // mx) < -(-plan.extent_y // my)) & (flipped is not None)
            for use, p, a, b in ((~by_x, plan, mx, my), (by_x, flipped, my, mx)):
                if use.any():
                    part = np.zeros((int(use.sum()), 3), dtype=np.int64)
                    pieces = _affine_pieces(p)
                    rows = int((-(-p.extent_y // b[use])).sum())
                    if pieces is not None and rows > AFFINE_CLOSED_ROWS * len(pieces[0]):
                        _affine_pieces_rows(p, pieces, a[use], b[use], part)
                    else:
                        _affine_rows(
                            p.lo, p.hi, p.ya, p.yb, p.extent_x, p.extent_y, a[use], b[use], part
                        )
                    found[use] = part
        if len(memo) > 1 << 16:
            flipped = memo.get("transposed")
            memo.clear()
            if flipped is not None:
                memo["transposed"] = flipped
        memo.update(zip(missing, found, strict=True))
    if not keys:
        return np.zeros((0, 3), dtype=np.int64)
    return np.array([memo[k] for k in keys], dtype=np.int64)


#: See `_plan_rows` (mapper searches at 1M, CPU s: 0.5 -> NATTEN 2D 10.1, sinks + window
#: 2.2; 2.0 -> 9.2 and 4.0: the transposed sinks plan costs a third of its plan).
TRANSPOSE_AFTER = 0.5
#: CPU seconds the first call of the compiled interval kernel costs a process (numba
#: imported, the kernel loaded from its disk cache): biformer 1M's first call, 0.3 s, of
#: which counting 0.03 s.
KERNEL_LOAD_S = 0.3
_PLAN_ROWS: dict[int, tuple[_AffinePlan, dict]] = {}  # id(plan) -> (plan, {(tx, ty): row})


def _transposed(plan: _AffinePlan) -> _AffinePlan | None:
    """The same kept set with x and y swapped: for each x, the y with lo(y) <= x <= hi(y)
    form one run [Y0(x), Y1(x)] (lo and hi non-decreasing), both ends non-decreasing in x.
    None where the swapped intervals do not form one touching staircase (then rows of y
    tiles are used)."""
    if plan.ya > plan.yb:
        return None
    run_lo, run_hi = plan.lo[plan.ya : plan.yb + 1], plan.hi[plan.ya : plan.yb + 1]
    lo = _counts_below(run_hi, plan.extent_x, 0)  # fresh arrays: shifted in place
    lo += plan.ya
    hi = _counts_below(run_lo, plan.extent_x, 1)
    hi += plan.ya - 1
    run = _staircase(lo, hi)
    if run is None or run[0] > run[1]:
        return None
    xa, xb = run
    lo = np.maximum(lo, 0, out=lo).astype(np.int64, copy=False)  # lo and hi are fresh here
    hi = hi.astype(np.int64, copy=False)
    return _AffinePlan(plan.y, plan.x, plan.extent_y, plan.extent_x, lo, hi, xa, xb, plan.points)


def _counts_below(ends: np.ndarray, n: int, inclusive: int) -> np.ndarray:
    """For x = 0 .. n - 1, how many of the sorted `ends` are below x (`inclusive`: at most
    x): `searchsorted(ends, arange(n), side="left" / "right")`, from a histogram of the
    ends in O(len + n) where they lie in [0, n) (a staircase's always do), else by the
    binary search."""
    if len(ends) and (int(ends[0]) < 0 or int(ends[-1]) >= n):
        return np.searchsorted(ends, np.arange(n), side="right" if inclusive else "left")
    counts = np.bincount(ends, minlength=n)
    if inclusive:
        return np.cumsum(counts, out=counts)
    below = np.empty(n, counts.dtype)  # below[x] = at_most[x - 1]
    below[:1] = 0
    np.cumsum(counts[: n - 1], out=below[1:])
    return below


def _closed_form_stats(einsum, sizes, plan: _AffinePlan, table, names):
    """(usable (n,), stats (n, 6)) for every distinct tiling at once."""
    tx, ok_x = _logical_tiles(sizes, plan.x, table, names)
    ty, ok_y = _logical_tiles(sizes, plan.y, table, names)
    out = _plan_rows(plan, tx, ty)
    if isinstance(plan, _KronPlan):
        ok_x = ok_x & _kron_usable(plan, tx, ty)
    column = {r: table[:, j] for j, r in enumerate(names)}
    other_tiles = np.ones(len(table), dtype=np.int64)
    tiles = np.ones(len(table), dtype=np.int64)
    other_points = 1
    for v in einsum.iter_vars:
        n = _extent(sizes, v)
        per = _tiles_along(column, sizes, v)
        tiles *= per
        if v not in plan.x + plan.y:
            other_tiles *= per
            other_points *= n
    mask_tiles = -(-plan.extent_x // tx) * -(-plan.extent_y // ty)
    empty = (mask_tiles - out[:, 0]) * other_tiles
    full = out[:, 1] * other_tiles
    stats = np.stack(
        [
            tiles,
            empty,
            tiles - empty - full,
            full,
            np.full(len(table), plan.points * other_points),
            out[:, 2] * other_points,
        ],
        axis=1,
    )
    return ok_x & ok_y, stats


def _closed_form_grid(plan: _AffinePlan, sizes, t, vars_) -> _Grid:
    """Non-empty tiles of one tiling laid out over the Einsum's mask variables (for the
    projection onto Einsums without a filter); Einsums sharing a plan share the grid."""
    key = (id(plan), tuple(_tile_of(t, sizes, v) for v in vars_), tuple(vars_))
    if key not in _PLAN_GRIDS:
        if len(_PLAN_GRIDS) > 64:
            _PLAN_GRIDS.pop(next(iter(_PLAN_GRIDS)))
        _PLAN_GRIDS[key] = (plan, _closed_form_grid_of(plan, sizes, t, vars_))
    return _PLAN_GRIDS[key][1]


_PLAN_GRIDS: dict[tuple, tuple[_AffinePlan, _Grid]] = {}  # the plan held so its id stays


def _closed_form_grid_of(plan: _AffinePlan, sizes, t, vars_) -> _Grid:
    t_x = _tile_of(t, sizes, plan.x[0]) * (_extent(sizes, plan.x[1]) if len(plan.x) == 2 else 1)
    t_y = _tile_of(t, sizes, plan.y[0]) * (_extent(sizes, plan.y[1]) if len(plan.y) == 2 else 1)
    y0 = np.arange(0, plan.extent_y, t_y)
    y1 = np.minimum(y0 + t_y, plan.extent_y) - 1
    a, b = np.maximum(y0, plan.ya), np.minimum(y1, plan.yb)
    live = a <= b
    j0 = plan.lo[np.clip(a, 0, plan.extent_y - 1)] // t_x
    j1 = plan.hi[np.clip(b, 0, plan.extent_y - 1)] // t_x
    j = np.arange(-(-plan.extent_x // t_x))
    nonempty = live[:, None] & (j >= j0[:, None]) & (j <= j1[:, None])  # (y tiles, x tiles)
    shape = [nonempty.shape[0]] + ([1] if len(plan.y) == 2 else [])
    shape += [nonempty.shape[1]] + ([1] if len(plan.x) == 2 else [])
    order = list(plan.y) + list(plan.x)
    laid = nonempty.reshape(shape).transpose([order.index(v) for v in vars_])
    kept = laid.astype(np.int64)
    return _Grid(tuple(vars_), kept, kept, "closed_form")


# ------------------------------------------------------ intervals per query row

#: A tensor-free filter outside the closed form whose logical space (x by y) holds more
#: points than this is counted from its kept intervals per query row (`_IntervalPlan`);
#: tiny spaces keep the direct count (numpy, one pass).
INTERVAL_POINTS = 2**12
#: Intervals an extraction may hold at once (one block of `PLAN_ROWS` rows); past this the filter is
#: counted directly (a mask with many runs per row, e.g. a dilated neighborhood).
INTERVALS_MOST = 2**23
#: Rows of y evaluated at once when a plan is built (bounds the intermediate sets).
PLAN_ROWS = 2**16
#: Intervals a plan may store (kept and gaps, all rows; int32 ends: 8 bytes each).
INTERVALS_STORED = 2**26


class _Unsupported(Exception):
    """A filter the interval extraction does not take (then the direct count is used)."""


@dataclass(frozen=True, eq=False)
class _Runs:
    """Per-row intervals chained into runs: run r covers rows y0[r]..y1[r], its interval at
    row y0[r] + i is [lo[start[r] + i], hi[start[r] + i]], both ends non-decreasing and each
    interval touching the next (lo(y + 1) <= hi(y) + 1), so the rows ya..yb of one run
    cover exactly the x range [lo(ya), hi(yb)]."""

    y0: np.ndarray
    y1: np.ndarray
    start: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    width: int = 0  # the most intervals of one row


@dataclass(frozen=True, eq=False)
class _IntervalPlan:
    """A filter over two logical variables (x, y as in `_AffinePlan`) given, for each y,
    as the kept x (a union of disjoint intervals) and its complement in [0, extent_x)
    (the gaps), both chained into `_Runs`. A tile is non-empty iff a kept run meets it and
    full iff no gap run does: per row of tiles, the union of the runs' x ranges in tiles,
    O(runs + rows x intervals per row) per tiling instead of O(points)."""

    method: ClassVar[str] = "intervals"  # what `occupancy` reports it counted by

    x: tuple[str, ...]
    y: tuple[str, ...]
    extent_x: int
    extent_y: int
    kept: _Runs
    gaps: _Runs
    points: int
    source: tuple = ()  # (logical filter, x name, y name, sizes): to build the transpose
    build_s: float = 0.0  # CPU seconds the plan took to build


def _logical_filter(cascade, where: Expr, vars_, count: int):
    """(logical groups, the filter over the logical variables) when the filter's variables
    form exactly `count` logical variables (`_logical_groups`, m1*M0+m0 read as m), else
    None."""
    groups, table = _logical_groups(cascade, vars_)
    if len(groups) != count:
        return None
    w = _substitute(where, table)
    if not set(variables_of(w)) <= set(groups):
        return None
    return groups, w


def _pair_filter(cascade, sizes, where, vars_):
    """(logical groups, the filter over them, their extents) for a whole-number filter over
    exactly two logical variables (`_logical_filter`), else None: what the interval, union
    and Kronecker plans start from."""
    if where is None or not vars_ or not _whole_numbers(where):
        return None
    found = _logical_filter(cascade, where, vars_, 2)
    if found is None:
        return None
    groups, w = found
    return groups, w, {v: _logical_extent(cascade, sizes, g) for v, g in groups.items()}


def _logical_groups(cascade, vars_) -> tuple[dict[str, tuple[str, ...]], dict]:
    """({logical variable: its iterated variables}, {m1*M0+m0 expression: Var m}): a
    partition whose two parts are both iterated is one logical variable."""
    groups: dict[str, tuple[str, ...]] = {}
    rest = list(vars_)
    table = {}
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in rest and lo in rest:
            groups[var_of(part.rank)] = (hi, lo)
            rest = [v for v in rest if v not in (hi, lo)]
            table[part.combined()] = Var(var_of(part.rank))
    groups.update({v: (v,) for v in rest})
    return groups, table


def _small_space(cascade, sizes, vars_) -> bool:
    """At most INTERVAL_POINTS points over the filter's logical variables: counted directly
    more cheaply than any plan is built."""
    groups, _ = _logical_groups(cascade, vars_)
    return math.prod(_logical_extent(cascade, sizes, g) for g in groups.values()) <= (
        INTERVAL_POINTS
    )


def _plan_key(sizes, where, vars_) -> tuple:
    """The hashable arguments a cached plan is keyed by after its cascade: the sizes, the
    filter by its interned token, the variables in order."""
    key = tuple(sorted((k, int(v)) for k, v in sizes.items()))
    return key, _ByToken(where), tuple(sorted(vars_))


def _keyed_plan(cached, *, skip_small: bool = False):
    """The plan look-up over `cached`, a builder cached by (cascade, *`_plan_key`): None
    where there is no filter or no variable, or (`skip_small`) where the space is small
    enough that the direct count (numpy, no compile) is cheaper than any plan."""

    def plan(cascade, sizes, where, vars_):
        if where is None or not vars_:
            return None
        if skip_small and _small_space(cascade, sizes, vars_):
            return None
        return cached(cascade, *_plan_key(sizes, where, vars_))

    return plan


@lru_cache(maxsize=16)
def _interval_plan_cached(cascade, key, keyed, vars_) -> _IntervalPlan | None:
    """One plan per (cascade, sizes, filter, variables); None where the filter is not
    over two logical variables, not in whole numbers, or not separable (`_XSets`)."""
    sizes = dict(key)
    found = _pair_filter(cascade, sizes, keyed.expr, vars_)
    if found is None:
        return None
    groups, w, extent = found
    for x, y, sets in _orientations(w, groups, extent, sizes):
        try:
            return _oriented_plan(w, x, y, groups, extent, sizes, sets)
        except _Unsupported:
            continue
    return None


#: Rows in each of the two blocks of rows sampled to order a plan's orientations.
ORIENTATION_SAMPLE_ROWS = 8


_interval_plan = _keyed_plan(_interval_plan_cached, skip_small=True)


def _orientations(w, groups, extent, sizes) -> list[tuple]:
    """Both orientations (x, y, the `_XSets` sampled or None), the one keeping fewer
    intervals per row in sampled rows first: counting a tiling costs about the intervals
    its rows of tiles meet (hip's `n % 8 == 0 and n <= nq` keeps nq / 8 intervals of n per
    row nq, but one of nq per row n). The given order where the first is a union of
    affine terms (a few intervals per row, no sets evaluated), on a tie, or where a
    sample is not separable."""
    orders = [(x, y, None) for x, y in itertools.permutations(groups)]
    if _affine_term_bounds(w, orders[0][0], orders[0][1]) is not None:
        return orders
    sampled, estimates = [], []
    for x, y, _ in orders:
        sets = _XSets(x, y, extent[x], extent[y], sizes)
        sampled.append((x, y, sets))
        estimates.append(_sampled_intervals(w, sets))
    if None in estimates:
        return sampled
    return [o for _, o in sorted(zip(estimates, sampled, strict=True), key=lambda e: e[0])]


def _sampled_intervals(w, sets: _XSets) -> float | None:
    """Kept intervals of x per row of y in two blocks of rows (a third and two thirds of
    the way), times the rows: about the intervals the plan would store; None where the
    filter is not separable in this orientation. The sets keep what they computed over x
    for the plan's build."""
    n_y = sets.n_y
    rows = min(ORIENTATION_SAMPLE_ROWS, n_y)
    found = 0
    try:
        for third in (1, 2):
            first = (n_y - rows) * third // 3
            found += len(sets.eval(w, sets.whole(first, first + rows))[0])
    except _Unsupported:
        return None
    return found / (2 * rows) * n_y


def _oriented_plan(w, x, y, groups, extent, sizes, sets=None) -> _IntervalPlan:
    """The plan with x the variable along rows of tiles; raises `_Unsupported`. The rows
    are evaluated in blocks of `PLAN_ROWS` (the intermediate sets stay small, so memory is
    bounded by the stored runs, at most `INTERVALS_STORED` intervals); runs do not chain
    across blocks (a few more runs, the same counts). `sets`: the `_XSets` of this
    orientation already used (its values over x are kept)."""
    start = time.process_time()
    if sets is None:
        sets = _XSets(x, y, extent[x], extent[y], sizes)
    ends = np.int32 if extent[x] < 2**31 else np.int64  # a 1M NATTEN plan holds 7M rows
    kept_runs, gap_runs = [], []
    points = stored = 0
    terms = _affine_terms(w, x, y, extent[x], extent[y], sizes)
    for first in range(0, extent[y], PLAN_ROWS):
        last = min(extent[y], first + PLAN_ROWS)
        if terms is not None:
            kept = _terms_block(terms, first, last, sets)
        else:
            kept = sets.eval(w, sets.whole(first, last))
        gaps = sets.complement(kept, first, last)
        stored += len(kept[0]) + len(gaps[0])
        if stored > INTERVALS_STORED:
            raise _Unsupported("too many intervals to store")
        points += int((kept[2] - kept[1] + 1).sum())
        kept_runs.append(_runs(kept, ends))
        gap_runs.append(_runs(gaps, ends))
    source = (w, x, y, groups, extent, sizes)
    return _IntervalPlan(
        groups[x],
        groups[y],
        extent[x],
        extent[y],
        _joined_runs(kept_runs),
        _joined_runs(gap_runs),
        points,
        source,
        time.process_time() - start,
    )


def _joined_runs(parts: list[_Runs]) -> _Runs:
    """The runs of consecutive blocks of rows as one `_Runs`."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.lo) for p in parts[:-1]])
    return _Runs(
        np.concatenate([p.y0 for p in parts]),
        np.concatenate([p.y1 for p in parts]),
        np.concatenate([p.start + o for p, o in zip(parts, offsets, strict=True)]),
        np.concatenate([p.lo for p in parts]),
        np.concatenate([p.hi for p in parts]),
        max(p.width for p in parts),
    )


def _interval_transposed(plan: _IntervalPlan) -> _IntervalPlan | None:
    """The same mask with x and y swapped (for tilings with fewer rows of x tiles than of
    y tiles: a query tile of 1 row); None where the swapped filter is not separable."""
    w, x, y, groups, extent, sizes = plan.source
    try:
        return _oriented_plan(w, y, x, groups, extent, sizes)
    except _Unsupported:
        return None


# ------------------------------------------------------ unions of affine staircases


@dataclass(frozen=True, eq=False)
class _UnionPlan:
    """A filter that is an `or` of conjunctions of comparisons affine in x (sinks + window:
    `m <= p and (m < S or p - m < W)`): each row's kept x is the union of the terms'
    intervals [lo_r(y), hi_r(y)], and the terms are ordered so that in every row the live
    ones have both ends non-decreasing in term order; the gaps between them (and before
    the first, after the last) are intervals too. The rows are cut into pieces where the
    live terms and gaps are fixed and every end is affine in y with a non-negative slope,
    each term and gap a staircase (lo(y + 1) <= hi(y) + 1). A row of tiles inside a piece
    meets, per term, the x tiles lo(y0) // tx .. hi(y1) // tx; sorted by both ends, their
    union is the sum of their lengths less each overlap with the previous one,
    max(0, j1(r - 1) - j0(r) + 1) -- which is that difference where
    lo_r(y0) - hi_(r-1)(y1) < tx and 0 elsewhere (a prefix or suffix of the rows of tiles).
    So a piece's non-empty tiles, tiles not full (the gaps' union) and busy points are sums
    of floors of arithmetic progressions (`_floor_sum`): O(pieces x terms x log) per tiling.
    The rows of tiles that cross a cut are counted from their segments."""

    method: ClassVar[str] = "union"  # what `occupancy` reports it counted by

    x: tuple[str, ...]
    y: tuple[str, ...]
    extent_x: int
    extent_y: int
    kept: tuple  # (lo, hi) per term, in order, each `_AffineRuns`
    gaps: tuple  # (lo, hi) per gap (first, between consecutive, last), each `_AffineRuns`
    pieces: tuple  # (start, end, live terms, live gaps) per piece
    points: int


#: Pieces a `_UnionPlan` may have (past this, the interval plan is used).
UNION_PIECES_MOST = 64


@lru_cache(maxsize=4)
def _union_plan_cached(cascade, key, keyed, vars_) -> _UnionPlan | None:
    """One plan per (cascade, sizes, filter, variables); None where the filter is no
    union of ordered affine staircases with few pieces."""
    sizes = dict(key)
    found = _pair_filter(cascade, sizes, keyed.expr, vars_)
    if found is None:
        return None
    groups, w, extent = found
    for x, y in itertools.permutations(groups):
        bounds = _affine_term_bounds(w, x, y)
        if bounds is None or len(bounds) < 2:
            continue  # one term: the closed form's (or no union at all)
        terms = [_affine_ends(b, y, extent[x], extent[y], sizes) for b in bounds]
        plan = _union_of(terms, extent[x], extent[y])
        if plan is not None:
            return _UnionPlan(groups[x], groups[y], *plan)
    return None


_union_plan = _keyed_plan(_union_plan_cached)


def _union_of(terms, n_x: int, n_y: int):
    """(extent_x, extent_y, kept, gaps, pieces, points) of ordered terms, or None; each
    end of the kept terms and of the gaps as `_AffineRuns` over the pieces."""
    live = [lo <= hi for lo, hi in terms]
    rank = [_median_kept(lo, on) for (lo, _), on in zip(terms, live, strict=True)]
    order = sorted(range(len(terms)), key=lambda r: rank[r])
    terms = [terms[r] for r in order]
    live = [live[r] for r in order]
    # in every row, the live terms' ends do not decrease in term order
    for r, (lo_r, hi_r) in enumerate(terms):
        for q in range(r + 1, len(terms)):
            lo_q, hi_q = terms[q]
            both = live[r] & live[q]
            if np.any(both & ((lo_q < lo_r) | (hi_q < hi_r))):
                return None
    found = _union_cuts(terms, live, n_x, n_y)
    if found is None:
        return None
    cuts, gap_points = found
    edges = sorted(cuts)
    kept = tuple((_AffineRuns.of(lo, edges), _AffineRuns.of(hi, edges)) for lo, hi in terms)
    # the gaps' ends again, at the rows their runs read only (each piece's first two)
    rows = np.unique(np.minimum(np.add.outer([0, 1], edges[:-1]), n_y - 1))
    at = [(lo[rows], hi[rows]) for lo, hi in terms]
    scratch = [np.empty(len(rows), dtype=np.int64) for _ in range(3)]
    gaps = tuple(
        (_AffineRuns.of(lo, edges, rows), _AffineRuns.of(hi, edges, rows))
        for lo, hi, _ in _gap_ends(at, [on[rows] for on in live], n_x, *scratch)
    )
    pieces = []
    for s, stop in itertools.pairwise(edges):
        e = stop - 1
        parts = []
        for group in (kept, gaps):
            on_s = [r for r, (lo, hi) in enumerate(group) if lo[s] <= hi[s]]
            for r in on_s:
                lo, hi = group[r]
                if e > s and (
                    lo[s + 1] < lo[s]
                    or hi[s + 1] < hi[s]
                    or lo[s + 1] > hi[s] + 1
                    or lo[e] > hi[e - 1] + 1
                ):
                    return None  # decreasing, or not a staircase in this piece
            parts.append(tuple(on_s))
        pieces.append((s, e, parts[0], parts[1]))
    points = n_x * n_y - gap_points
    return n_x, n_y, kept, gaps, tuple(pieces), points


#: Rows a union's cuts are looked for at a time (`_union_cuts`): its scratch arrays stay
#: small and warm (at 1M rows, each array of every row was 8 MB of fresh pages).
UNION_ROWS_CHUNK = 1 << 16


def _union_cuts(terms, live, n_x: int, n_y: int) -> tuple[set[int], int] | None:
    """(cuts, gap points) of ordered terms: the rows where a term or gap turns live or dead
    or an end's step changes (0 and n_y too), and the points of the gaps (terms may
    overlap: the kept points are all less the gaps'); None past `UNION_PIECES_MOST`
    pieces. Chunk by chunk of rows, each with the row before and after it (a cut at y
    compares rows y - 1, y and y + 1), the gaps written into the same scratch."""
    cuts = {0, n_y}
    gap_points = 0
    size = min(UNION_ROWS_CHUNK, n_y) + 2
    scratch = [np.empty(size, dtype=np.int64) for _ in range(4)]  # gap lo, hi; previous; width
    step, on, changed = np.empty(size, np.int64), np.empty(size, bool), np.empty(size, bool)
    for a in range(0, n_y, UNION_ROWS_CHUNK):
        b = min(a + UNION_ROWS_CHUNK, n_y)
        first, last = max(a - 1, 0), min(b + 1, n_y)  # the rows read: [first, last)
        m = last - first
        part = [(lo[first:last], hi[first:last]) for lo, hi in terms]
        live_part = [on_r[first:last] for on_r in live]
        gaps = _gap_ends(part, live_part, n_x, *(x[:m] for x in scratch[:3]))
        # local indices: the chunk's rows y in [a, b) with a row before (y >= 1) and,
        # for a step's change, a row after (y <= n_y - 2)
        i0, i1, i2 = max(a, 1) - first, b - first, min(b, n_y - 1) - first
        for lo, hi, on_r in itertools.chain(
            ((lo, hi, on_r) for (lo, hi), on_r in zip(part, live_part, strict=True)), gaps
        ):
            if on_r is None:  # a gap: live where lo <= hi, its points max(hi - lo + 1, 0)
                on_r = np.less_equal(lo, hi, out=on[:m])
                width = np.subtract(hi[a - first : i1], lo[a - first : i1], out=scratch[3][: b - a])
                width += 1
                gap_points += int(np.maximum(width, 0, out=width).sum())
            if i1 > i0:
                flips = np.not_equal(on_r[i0:i1], on_r[i0 - 1 : i1 - 1], out=changed[: i1 - i0])
                cuts |= set((np.flatnonzero(flips) + (first + i0)).tolist())
            if i2 > i0:
                for values in (lo, hi):
                    d = np.subtract(values[1:], values[:-1], out=step[: m - 1])
                    moved = np.not_equal(d[i0:i2], d[i0 - 1 : i2 - 1], out=changed[: i2 - i0])
                    cuts |= set((np.flatnonzero(moved) + (first + i0)).tolist())
            if len(cuts) > UNION_PIECES_MOST + 1:
                return None
    return cuts, gap_points


def _gap_ends(terms, live, n_x: int, lo, hi, previous):
    """(lo, hi, None) of each gap of ordered terms (before the first live term, between
    consecutive ones, after the last; empty where lo > hi), written into `lo` and `hi`
    (valid until the next; `previous`, scratch: the last live term's hi so far)."""
    previous.fill(-1)
    for (t_lo, t_hi), on in zip(terms, live, strict=True):
        np.add(previous, 1, out=lo)
        np.subtract(t_lo, 1, out=hi)
        np.copyto(hi, -2, where=~on)  # dead term: no gap here
        yield lo, hi, None
        np.maximum(previous, t_hi, out=previous, where=on)
    np.add(previous, 1, out=lo)
    hi.fill(n_x - 1)
    yield lo, hi, None


@dataclass(frozen=True, eq=False, slots=True)
class _AffineRuns:
    """An int64 array of n values kept as runs on each of which it is affine: from
    `starts[k]`, `base[k] + slope[k] * (y - starts[k])` (a `_UnionPlan`'s ends over its
    pieces: O(pieces), not 8 MB per end at 1M rows). Indexing gives the array's value."""

    starts: list[int]
    base: list[int]
    slope: list[int]
    n: int

    @classmethod
    def of(cls, values: np.ndarray, edges: list[int], rows=None) -> _AffineRuns:
        """The runs of an array between consecutive `edges` (0 .. n), on each of which it
        is affine: `values` is the array, or its values at `rows` only (sorted, holding
        each run's first two rows)."""
        starts = np.asarray(edges[:-1], dtype=np.int64)
        last = np.asarray(edges[1:], dtype=np.int64) - 1
        first, second = starts, np.minimum(starts + 1, last)
        if rows is not None:
            first, second = np.searchsorted(rows, first), np.searchsorted(rows, second)
        base = values[first]
        slope = np.where(last > starts, values[second] - base, 0)
        return cls(starts.tolist(), base.tolist(), slope.tolist(), edges[-1])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, y: int) -> int:
        if not 0 <= y < self.n:
            raise IndexError(f"row {y} of {self.n}")
        k = bisect.bisect_right(self.starts, y) - 1
        return self.base[k] + self.slope[k] * (y - self.starts[k])


def _median_kept(lo: np.ndarray, on: np.ndarray) -> float:
    """`float(np.median(lo[on]))` (0 where none is on), where lo[on] is sorted from its
    middle one or two values (no partition of 1M values)."""
    values = lo if on.all() else lo[on]
    n = len(values)
    if n == 0:
        return 0.0
    if n > 2 and bool(np.all(values[1:] >= values[:-1])):
        return float(np.median(values[n // 2 - 1 + n % 2 : n // 2 + 1]))
    return float(np.median(values))


def _union_rows(plan: _UnionPlan, tx, ty) -> np.ndarray:
    """(non-empty tiles, full tiles, busy points) per tiling (see `_UnionPlan`)."""
    n_x, n_y = plan.extent_x, plan.extent_y
    out = np.zeros((len(tx), 3), dtype=np.int64)
    starts = [p[0] for p in plan.pieces]
    for k, (t_x, t_y) in enumerate(
        zip(np.asarray(tx).tolist(), np.asarray(ty).tolist(), strict=True)
    ):
        tiles_x = -(-n_x // t_x)
        short = tiles_x * t_x - n_x
        nonempty = notfull = busy = 0
        for s, e, kept, gaps in plan.pieces:
            i0, i1 = -(-s // t_y), (e + 1) // t_y - 1
            n = i1 - i0 + 1
            if n <= 0:
                continue
            y0 = i0 * t_y
            total, last = _union_sum([plan.kept[r] for r in kept], n, t_x, t_y, y0, tiles_x)
            nonempty += total
            busy += t_y * (t_x * total - short * last)
            notfull += _union_sum([plan.gaps[r] for r in gaps], n, t_x, t_y, y0, tiles_x)[0]
        rows = {s // t_y for s in starts[1:] if s % t_y} | ({n_y // t_y} if n_y % t_y else set())
        for i in sorted(rows):
            y0, y1 = i * t_y, min(i * t_y + t_y, n_y) - 1
            got = []
            for which in (plan.kept, plan.gaps):
                ranges = []
                for s, e, kept, gaps in plan.pieces:
                    ya, yb = max(y0, s), min(y1, e)
                    if ya > yb:
                        continue
                    for r in kept if which is plan.kept else gaps:
                        lo, hi = which[r]
                        ranges.append((int(lo[ya]) // t_x, int(hi[yb]) // t_x))
                got.append(_united(sorted(ranges)))
            (count, end), (gap_count, _) = got
            nonempty += count
            notfull += gap_count
            busy += (y1 - y0 + 1) * (count * t_x - (short if end == tiles_x - 1 else 0))
        rows_y = -(-n_y // t_y)
        out[k] = (nonempty, rows_y * tiles_x - notfull, busy)
    return out


def _united(ranges) -> tuple[int, int]:
    """(tiles in the union of sorted tile ranges, the last tile; -1 when none)."""
    total, end = 0, -1
    for j0, j1 in ranges:
        if j1 > end:
            total += j1 - max(j0, end + 1) + 1
            end = j1
    return total, end


def _union_sum(terms, n: int, t_x: int, t_y: int, y0: int, tiles_x: int) -> tuple[int, int]:
    """(sum over n rows of tiles from y0 of the tiles in the union of the terms' ranges,
    rows of tiles whose union reaches the last tile); the terms are live, ordered,
    affine staircases over those rows."""
    total = 0
    previous = None
    for lo, hi in terms:
        sl = int(lo[y0 + 1] - lo[y0]) if y0 + 1 < len(lo) else 0
        sh = int(hi[y0 + 1] - hi[y0]) if y0 + 1 < len(hi) else 0
        if n == 1 and t_y == 1:
            sl = sh = 0
        lo0, dl = int(lo[y0]), sl * t_y  # lo at the first row of row of tiles k: lo0 + dl k
        hi1, dh = int(hi[y0]) + sh * (t_y - 1), sh * t_y  # hi at its last row
        total += _floor_sum(n, t_x, dh, hi1) - _floor_sum(n, t_x, dl, lo0) + n
        if previous is not None:  # overlap with the previous term where lo - hi' < t_x
            phi1, pdh = previous
            d0, dd = lo0 - phi1, dl - pdh
            if dd <= 0:
                ka, kb = _first_at_least(-d0, -dd, 1 - t_x, n), n
            else:
                ka, kb = 0, min(n, max(0, (t_x - 1 - d0) // dd + 1))
            if kb > ka:
                m = kb - ka
                total -= _floor_sum(m, t_x, pdh, phi1 + pdh * ka) + m
                total += _floor_sum(m, t_x, dl, lo0 + dl * ka)
        previous = (hi1, dh)
    last = 0
    if previous is not None:
        hi1, dh = previous
        last = n - _first_at_least(hi1, dh, (tiles_x - 1) * t_x, n)
    return total, last


# ------------------------------------------------------ functions of the difference y - x


@dataclass(frozen=True, eq=False)
class _DifferencePlan:
    """A filter over two logical variables x, y that reads them only through their
    difference d = y - x (power attention: `m <= p and (p - m < W or PW % max(p - m, 1)
    == 0)`): the kept set is the union of the diagonal bands lo[k] <= y - x <= hi[k]
    (maximal runs of kept d, ascending). A tile x0..x1 by y0..y1 meets exactly the
    differences y0 - x1 .. y1 - x0, so with c = y0 - x0 and tile sides wx, wy it is
    non-empty iff c lies in some [lo[k] - wy + 1, hi[k] + wx - 1] and full iff c lies in
    some [lo[k] + wx - 1, hi[k] - wy + 1]. In each of the (at most four) blocks of tiles
    of one size, c = j * ty - i * tx + offset, and the tiles with c in an interval are
    lattice points under two lines: sums of floors (`_floor_sums`), O(bands x log) per
    tiling whatever the extents."""

    method: ClassVar[str] = "difference"  # what `occupancy` reports it counted by

    x: tuple[str, ...]
    y: tuple[str, ...]
    extent_x: int
    extent_y: int
    lo: np.ndarray
    hi: np.ndarray
    points: int


#: Bands (maximal runs of kept differences) a `_DifferencePlan` may have; past this the
#: other plans are tried (a per-tiling cost of O(bands)).
DIFFERENCE_BANDS_MOST = 2**12


@lru_cache(maxsize=16)
def _difference_plan_cached(cascade, key, keyed, vars_) -> _DifferencePlan | None:
    """One plan per (cascade, sizes, filter, variables); None where the filter reads its
    two logical variables otherwise than through their difference."""
    sizes = dict(key)
    found = _pair_filter(cascade, sizes, keyed.expr, vars_)
    if found is None:
        return None
    groups, w, extent = found
    x, y = groups
    plan = _difference_of(w, x, y, extent, sizes)
    if plan is None:
        return None
    return replace(plan, x=groups[x], y=groups[y])


_difference_plan = _keyed_plan(_difference_plan_cached)


def _difference_of(w: Expr, x: str, y: str, extent, sizes) -> _DifferencePlan | None:
    """The bands of a filter over plain x and y that reads them only through y - x, from
    its value at one point of each diagonal (the executor's arithmetic); else None."""
    folded = _unit_folded(w, sizes)
    if not _through_difference_only(folded, x, y):
        return None
    n_x, n_y = extent[x], extent[y]
    d = np.arange(-(n_x - 1), n_y, dtype=np.int64)
    xs = np.maximum(-d, 0)
    kept = _holds(folded, {x: xs.astype(float), y: (xs + d).astype(float)}, sizes, len(d))
    edges = np.flatnonzero(np.diff(np.concatenate([[0], kept.astype(np.int8), [0]])))
    if len(edges) > 2 * DIFFERENCE_BANDS_MOST:
        return None
    lo, hi = d[edges[0::2]], d[edges[1::2] - 1]
    on_diagonal = np.minimum(n_x, n_y - d) - xs  # points with y - x = d
    points = int(on_diagonal[kept].sum())
    return _DifferencePlan((x,), (y,), n_x, n_y, lo, hi, points)


def _holds(expr: Expr, env: dict, sizes, n: int) -> np.ndarray:
    """The filter's truth at n points (arrays in `env`), as the executor computes it, the
    second argument of `and` / `or` evaluated only where the first leaves it open."""
    from .executor import _value

    if isinstance(expr, Call) and expr.op in (Op.AND, Op.OR):
        out = _holds(expr.args[0], env, sizes, n).copy()
        rest = np.flatnonzero(~out if expr.op is Op.OR else out)
        if rest.size:
            out[rest] = _holds(expr.args[1], {k: v[rest] for k, v in env.items()}, sizes, rest.size)
        return out
    return np.broadcast_to(np.asarray(_value(expr, env, sizes, {}, None)) != 0, (n,))


def _through_difference_only(expr: Expr, x: str, y: str) -> bool:
    """Whether `expr` reads x and y only through y - x: a subexpression b * (y - x) + rest
    (rest free of both; a comparison by the difference of its sides), or an operator
    whose arguments all do."""
    if not {x, y} & set(variables_of(expr)):
        return True
    if _difference_linear(expr, x, y):
        return True
    if not isinstance(expr, Call):
        return False
    if expr.op in _COMPARE and _difference_linear(Call(Op.SUB, expr.args), x, y):
        return True
    return all(_through_difference_only(a, x, y) for a in expr.args)


def _difference_linear(expr: Expr, x: str, y: str) -> bool:
    """Whether `expr` is b * (y - x) + rest (`_linear` leaves rest free of both)."""
    in_x = _linear(expr, x)
    in_y = None if in_x is None else _linear(in_x[1], y)
    return in_y is not None and in_y[0].value == -in_x[0].value  # type: ignore[union-attr,index]


def _unit_folded(expr: Expr, sizes) -> Expr:
    """`expr` with `e // 1`, `e * 1` and `1 * e` read as e, the 1 any constant expression
    of value 1 (power attention's block size BS = 1), for the structural checks only: in
    whole numbers these are exact."""
    if not isinstance(expr, Call):
        return expr
    args = tuple(_unit_folded(a, sizes) for a in expr.args)
    if expr.op in (Op.FLOORDIV, Op.MUL) and _is_one(args[1], sizes):
        return args[0]
    if expr.op is Op.MUL and _is_one(args[0], sizes):
        return args[1]
    return Call(expr.op, args)


def _is_one(expr: Expr, sizes) -> bool:
    from .executor import _value

    return not variables_of(expr) and float(np.asarray(_value(expr, {}, sizes, {}, None))) == 1


def _difference_rows(plan: _DifferencePlan, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """(non-empty tiles, full tiles, busy points) per tiling, from the bands (see
    `_DifferencePlan`): per block of tiles of one size, the non-empty ones are those with
    c in the span of the widened bands less the gaps left between them, the full ones
    those with c in a narrowed band."""
    n_x, n_y = plan.extent_x, plan.extent_y
    tx = np.minimum(np.asarray(tx, dtype=np.int64), n_x)[:, None]
    ty = np.minimum(np.asarray(ty, dtype=np.int64), n_y)[:, None]
    out = np.zeros((len(tx), 3), dtype=np.int64)
    if len(plan.lo) == 0:
        return out
    lo, hi = plan.lo[None, :], plan.hi[None, :]
    fx, rx = n_x // tx, n_x % tx
    fy, ry = n_y // ty, n_y % ty
    for i0, count_x, wx in ((0, fx, tx), (fx, (rx > 0).astype(np.int64), rx)):
        for j0, count_y, wy in ((0, fy, ty), (fy, (ry > 0).astype(np.int64), ry)):
            block = (j0 * ty - i0 * tx, count_x, count_y, tx, ty)
            span = _block_tiles(block, lo[:, :1] - wy + 1, hi[:, -1:] + wx - 1)
            gaps = _block_tiles(block, hi[:, :-1] + wx, lo[:, 1:] - wy)
            nonempty = span[:, 0] - gaps.sum(axis=1)
            out[:, 0] += nonempty
            out[:, 1] += _block_tiles(block, lo + wx - 1, hi - wy + 1).sum(axis=1)
            out[:, 2] += nonempty * (wx * wy)[:, 0]
    return out


def _block_tiles(block, a, b) -> np.ndarray:
    """The tiles of a block (offset, count_x, count_y, tx, ty) with a <= c <= b, c = j * ty
    - i * tx + offset: #{(i, j): 0 <= i < count_x, 0 <= j < count_y, a <= c <= b} (0 where
    a > b), elementwise over broadcast arrays."""
    offset, count_x, count_y, tx, ty = block
    a, b = np.broadcast_arrays(a - offset, b - offset)
    below = _lattice_below(b, count_x, count_y, tx, ty)
    return np.where(a <= b, below - _lattice_below(a - 1, count_x, count_y, tx, ty), 0)


def _lattice_below(c, count_x, count_y, tx, ty) -> np.ndarray:
    """#{(i, j): 0 <= i < count_x, 0 <= j < count_y, j * ty - i * tx <= c}: per i, the j up
    to floor((c + i * tx) / ty), clamped to 0 .. count_y; those i where it is clamped to
    neither form one range [ia, ib) (the clamp is monotone in i), summed as floors."""
    c, count_x, count_y, tx, ty = np.broadcast_arrays(c, count_x, count_y, tx, ty)
    ia = np.clip(-(c // tx), 0, count_x)
    ib = np.clip(-((c - (count_y - 1) * ty) // tx), 0, count_x)
    n = ib - ia
    start = np.where(n > 0, c + ia * tx, 0)
    below = n + _floor_sums(n, ty, tx, start) + count_y * (count_x - ib)
    return np.where(count_y > 0, below, 0)


def _floor_sums(n, m, a, b) -> np.ndarray:
    """`_floor_sum` elementwise: sum(floor((a * k + b) / m) for k in range(n)) for int64
    arrays with n, a, b >= 0 and m > 0 (AtCoder Library's reduction, all at once)."""
    n, m, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in (n, m, a, b)))
    shape = n.shape
    n, m, a, b = (v.ravel().copy() for v in (n, m, a, b))
    total = np.zeros(n.shape, dtype=np.int64)
    live = np.flatnonzero(n > 0)
    while live.size:
        nn, mm, aa, bb = n[live], m[live], a[live], b[live]
        total[live] += nn * (nn - 1) // 2 * (aa // mm) + nn * (bb // mm)
        aa, bb = aa % mm, bb % mm
        top = aa * nn + bb
        more = top >= mm
        live = live[more]
        n[live], b[live] = top[more] // mm[more], top[more] % mm[more]
        m[live], a[live] = aa[more], mm[more]
    return total.reshape(shape)


# ------------------------------------------------------ periodic masks


@dataclass(frozen=True, eq=False)
class _PeriodicPlan:
    """A filter over two logical variables x, y that reads x only through x mod Px and y
    only through y mod Py (`x % c`, `x // c % d`, ... : NATTEN's grid coordinates
    `m // Y % X` and `m % Y` when the sequence is longer than the X x Y grid, or not a
    multiple of it): the kept set repeats a Px by Py pattern, held as its 2D prefix sums.
    A tile of w x h points starting at (a, b) keeps C(a + w, b + h) - C(a, b + h) -
    C(a + w, b) + C(a, b) points, C the pattern's cumulative count over the plane. The
    tiles of one side start at multiples of t, whose residues mod P repeat with period
    P / gcd(t, P): per tiling at most min(tiles, P) classes along each side plus a last
    partial tile, so the cost is O(min(tiles_x, Px) x min(tiles_y, Py)), whatever the
    extents."""

    method: ClassVar[str] = "periodic"  # what `occupancy` reports it counted by

    x: tuple[str, ...]
    y: tuple[str, ...]
    extent_x: int
    extent_y: int
    period_x: int
    period_y: int
    prefix: np.ndarray  # (Px + 1, Py + 1) int64: kept points of the pattern below (i, j)
    points: int


#: Largest pattern (Px x Py points) a `_PeriodicPlan` holds; past this the interval plan.
PERIODIC_CELLS = 2**18


@lru_cache(maxsize=16)
def _periodic_plan_cached(cascade, key, keyed, vars_) -> _PeriodicPlan | None:
    """One plan per (cascade, sizes, filter, variables); None where the filter is not
    periodic in both variables with a pattern smaller than the space and than
    `PERIODIC_CELLS`."""
    sizes = dict(key)
    found = _pair_filter(cascade, sizes, keyed.expr, vars_)
    if found is None:
        return None
    groups, w, extent = found
    x, y = groups
    n_x, n_y = extent[x], extent[y]
    periods = [_period(w, v, sizes) for v in (x, y)]
    if None in periods:
        return None
    p_x, p_y = min(periods[0], n_x), min(periods[1], n_y)  # a period past the extent: none
    if p_x * p_y > PERIODIC_CELLS or (p_x == n_x and p_y == n_y):
        return None
    xs, ys = np.meshgrid(np.arange(p_x, dtype=float), np.arange(p_y, dtype=float), indexing="ij")
    kept = _holds(w, {x: xs.ravel(), y: ys.ravel()}, sizes, p_x * p_y).reshape(p_x, p_y)
    prefix = np.zeros((p_x + 1, p_y + 1), dtype=np.int64)
    prefix[1:, 1:] = kept.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    plan = _PeriodicPlan(groups[x], groups[y], n_x, n_y, p_x, p_y, prefix, 0)
    points = int(_periodic_below(plan, np.array([n_x]), np.array([n_y]))[0])
    return replace(plan, points=points)


_periodic_plan = _keyed_plan(_periodic_plan_cached)


def _period(expr: Expr, var: str, sizes) -> int | None:
    """P such that `expr` reads `var` only through var mod P (1 where it does not read
    it), or None: `(a * var + rest) % c` has period c and `((a * var + rest) // c) % d`
    period c * d (a an integer, rest whole numbers; floor division and remainder as
    the executor computes them), any other operator the least common multiple of its
    arguments' periods; `var` read otherwise is not periodic."""
    if var not in variables_of(expr):
        return 1
    if not isinstance(expr, Call):
        return None
    if expr.op is Op.MOD:
        c = _constant_int(expr.args[1], sizes)
        inner = expr.args[0]
        if c is not None and c >= 1 and var not in variables_of(expr.args[1]):
            if _coefficient(inner, var, sizes) is not None:
                return c
            if isinstance(inner, Call) and inner.op is Op.FLOORDIV:
                d = _constant_int(inner.args[1], sizes)
                if d is not None and d >= 1 and _coefficient(inner.args[0], var, sizes) is not None:
                    return c * d
    periods = [_period(a, var, sizes) for a in expr.args]
    if None in periods:
        return None
    return math.lcm(*periods)


def _coefficient(expr: Expr, var: str, sizes) -> int | None:
    """a where `expr` = a * var + rest, a an integer and rest free of var (sums,
    differences, negations and products by constants), else None."""
    if var not in variables_of(expr):
        return 0
    if isinstance(expr, Var):
        return 1
    if not isinstance(expr, Call):
        return None
    if expr.op in (Op.ADD, Op.SUB):
        a, b = (_coefficient(e, var, sizes) for e in expr.args)
        if a is None or b is None:
            return None
        return a + b if expr.op is Op.ADD else a - b
    if expr.op is Op.NEG:
        a = _coefficient(expr.args[0], var, sizes)
        return None if a is None else -a
    if expr.op is Op.MUL:
        for k, other in ((0, 1), (1, 0)):
            c = _constant_int(expr.args[k], sizes)
            if c is not None:
                a = _coefficient(expr.args[other], var, sizes)
                return None if a is None else c * a
    return None


def _constant_int(expr: Expr, sizes) -> int | None:
    """The value of a variable-free expression when it is a whole number, else None."""
    from .executor import _value

    if variables_of(expr):
        return None
    value = float(np.asarray(_value(expr, {}, sizes, {}, None)))
    return int(value) if math.isfinite(value) and value.is_integer() else None


def _periodic_below(plan: _PeriodicPlan, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Kept points of the periodic plane with 0 <= x < u and 0 <= y < v (arrays)."""
    p_x, p_y, s = plan.period_x, plan.period_y, plan.prefix
    qu, ru = np.divmod(u, p_x)
    qv, rv = np.divmod(v, p_y)
    return qu * qv * s[p_x, p_y] + qu * s[p_x, rv] + qv * s[ru, p_y] + s[ru, rv]


def _periodic_sides(n: int, t: int, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start mod period, width, tiles) of the classes of tiles of side t over [0, n):
    the whole tiles' starts i * t repeat their residues every period / gcd(t, period)
    tiles; the last, partial tile is a class of its own."""
    whole, rest = divmod(n, t)
    cycle = period // math.gcd(t, period)
    first = np.arange(min(whole, cycle), dtype=np.int64)
    starts = first * t % period
    if whole > cycle:
        count = whole // cycle + (first < whole % cycle)
    else:
        count = np.ones(len(first), dtype=np.int64)
    width = np.full(len(first), t, dtype=np.int64)
    if rest:
        starts = np.append(starts, whole * t % period)
        width = np.append(width, rest)
        count = np.append(count, 1)
    return starts, width, count.astype(np.int64)


def _periodic_rows(plan: _PeriodicPlan, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """(non-empty tiles, full tiles, busy points) per tiling: every pair of an x class and
    a y class of tiles (`_periodic_sides`) counted on the pattern's prefix sums."""
    out = np.zeros((len(tx), 3), dtype=np.int64)
    pairs = zip(np.asarray(tx).tolist(), np.asarray(ty).tolist(), strict=True)
    for k, (t_x, t_y) in enumerate(pairs):
        a, w, cx = _periodic_sides(plan.extent_x, min(t_x, plan.extent_x), plan.period_x)
        b, h, cy = _periodic_sides(plan.extent_y, min(t_y, plan.extent_y), plan.period_y)
        a, w, cx = a[:, None], w[:, None], cx[:, None]
        kept = (
            _periodic_below(plan, a + w, b + h)
            - _periodic_below(plan, a, b + h)
            - _periodic_below(plan, a + w, b)
            + _periodic_below(plan, a, b)
        )
        tiles, area = cx * cy, w * h
        out[k] = (
            int(tiles[kept > 0].sum()),
            int(tiles[kept == area].sum()),
            int((tiles * area)[kept > 0].sum()),
        )
    return out


# ------------------------------------------------------ Kronecker products over a radix


@dataclass(frozen=True, eq=False)
class _KronPlan:
    """A filter over two logical variables x, y that reads them only through x // R, x % R,
    y // R and y % R (and their multiples and divisors) for one radix R dividing both
    extents, as a conjunction of a filter over the high parts (xh = x // R, yh = y // R)
    and one over the low parts (xl = x % R, yl = y % R): NATTEN's neighbour rows and
    columns on a grid of rows of R (`m // Y % X`, `m % Y`). The kept set is the Kronecker
    product of the factors' (x = xh * R + xl), so a tile that is a box in (xh, xl) -- its
    side a multiple or a divisor of R -- keeps (kept_h x kept_l) of its (real_h x real_l)
    points: it is non-empty iff both factor tiles are, full iff both are, and a tiling's
    non-empty tiles, full tiles and busy points are the products of the factors' at the
    factor tilings (t // R, R) or (1, t). The factors have extents n / R and R (each
    planned by the closed form, a Kronecker plan again, or the intervals), so the cost does
    not grow with the rows of the whole space; a tiling whose tiles are not boxes is counted
    on the interval plan of the whole filter, built only when one comes."""

    method: ClassVar[str] = "kronecker"  # what `occupancy` reports it counted by

    x: tuple[str, ...]
    y: tuple[str, ...]
    extent_x: int
    extent_y: int
    radix: int
    names: tuple[tuple[str, str], tuple[str, str]]  # ((xh, yh), (xl, yl))
    high: object  # the high parts' plan, or True (no condition on them)
    low: object  # the low parts' plan, or True
    points: int
    whole: tuple = ()  # ("cascade", cascade, sizes, filter, variables) or ("pair", filter,
    # x, y, extents, sizes): what the whole filter's interval plan is built from
    fallback: dict = field(default_factory=dict)  # the interval plan, once asked for


@lru_cache(maxsize=16)
def _kron_plan_cached(cascade, key, keyed, vars_) -> _KronPlan | None:
    """One plan per (cascade, sizes, filter, variables); None where no radix splits it."""
    sizes, where = dict(key), keyed.expr
    found = _pair_filter(cascade, sizes, where, vars_)
    if found is None:
        return None
    groups, w, extent = found
    x, y = groups
    plan = _kron_of(w, x, y, extent, sizes)
    if plan is None:
        return None
    return _KronPlan(
        groups[x], groups[y], plan.extent_x, plan.extent_y, plan.radix, plan.names,
        plan.high, plan.low, plan.points, ("cascade", cascade, sizes, where, vars_),
    )  # fmt: skip


_kron_plan = _keyed_plan(_kron_plan_cached, skip_small=True)


def _kron_of(w: Expr, x: str, y: str, extent, sizes) -> _KronPlan | None:
    """The Kronecker split of a filter over x and y (`_KronPlan`) at the first radix that
    splits it, or None."""
    n_x, n_y = extent[x], extent[y]
    for radix in _radices(w, (x, y), sizes):
        if radix >= max(n_x, n_y) or n_x % radix or n_y % radix:
            continue
        names = ((f"{x}~h", f"{y}~h"), (f"{x}~l", f"{y}~l"))
        parts = _radix_split(w, {x: (names[0][0], names[1][0]), y: (names[0][1], names[1][1])},
                             radix, sizes)  # fmt: skip
        if parts is None:
            continue
        (hx, hy), (lx, ly) = names
        high = _pair_plan(parts[0], hx, hy, {hx: n_x // radix, hy: n_y // radix}, sizes)
        low = _pair_plan(parts[1], lx, ly, {lx: radix, ly: radix}, sizes)
        if high is None or low is None:
            continue
        points = _factor_points(high, n_x // radix, n_y // radix) * _factor_points(
            low, radix, radix
        )
        whole = ("pair", w, x, y, extent, sizes)
        return _KronPlan((x,), (y,), n_x, n_y, radix, names, high, low, points, whole)
    return None


def _radices(w: Expr, names, sizes) -> list[int]:
    """The constant divisors and moduli applied to x or y themselves (`x // c`, `x % c`),
    ascending: the candidate radices."""
    from .executor import _value

    found = set()
    for e in walk(w):
        if (
            isinstance(e, Call)
            and e.op in (Op.FLOORDIV, Op.MOD)
            and isinstance(e.args[0], Var)
            and e.args[0].name in names
            and not variables_of(e.args[1])
        ):
            c = float(np.asarray(_value(e.args[1], {}, sizes, {}, None)))
            if math.isfinite(c) and c.is_integer() and c > 1:
                found.add(int(c))
    return sorted(found)


def _radix_split(w: Expr, parts: dict, radix: int, sizes) -> tuple | None:
    """(filter over the high parts, filter over the low parts) -- None for a part without
    a condition -- when every conjunct of `w`, with `v // c` (R | c) read as vh // (c / R)
    and `v % c` (c | R) as vl % c, depends on high or on low parts only; else None."""
    w = _within_blocks(w, parts, radix, sizes)
    try:
        rewritten = _radix_rewrite(w, parts, radix, sizes)
    except _Unsupported:
        return None
    high_names = {h for h, _ in parts.values()}
    low_names = {lo for _, lo in parts.values()}
    sides: tuple[list, list] = ([], [])
    for c in _conjuncts(rewritten):
        vs = set(variables_of(c))
        if vs <= high_names:
            sides[0].append(c)
        elif vs <= low_names:
            sides[1].append(c)
        else:
            return None
    joined = []
    for side in sides:
        out = None
        for c in side:
            out = c if out is None else Call(Op.AND, (out, c))
        joined.append(out)
    return tuple(joined)


def _within_blocks(w: Expr, parts: dict, radix: int, sizes) -> Expr:
    """`w` with, where one conjunct is `x // R == y // R`, every other comparison that
    reads x and y only through x - y (`m <= p`, `p - m < W`) read over x % R and y % R:
    x - y = x % R - y % R where x // R = y // R (linear attention's `m <= p and
    m // M0 == p // M0`: a causal block diagonal)."""
    x, y = parts
    conjuncts = _conjuncts(w)
    if not any(_same_block(c, x, y, radix, sizes) for c in conjuncts):
        return w
    low = {Var(x): Var(parts[x][1]), Var(y): Var(parts[y][1])}
    out = None
    for c in conjuncts:
        if _through_difference(c, x, y):
            c = _substitute(c, low)
        out = c if out is None else Call(Op.AND, (out, c))
    return out


def _same_block(c: Expr, x: str, y: str, radix: int, sizes) -> bool:
    """Whether `c` is `x // R == y // R` (either side)."""
    from .executor import _value

    if not (isinstance(c, Call) and c.op is Op.EQ):
        return False
    names = []
    for side in c.args:
        if not (
            isinstance(side, Call)
            and side.op is Op.FLOORDIV
            and isinstance(side.args[0], Var)
            and not variables_of(side.args[1])
            and float(np.asarray(_value(side.args[1], {}, sizes, {}, None))) == radix
        ):
            return False
        names.append(side.args[0].name)
    return sorted(names) == sorted((x, y))


def _through_difference(c: Expr, x: str, y: str) -> bool:
    """Whether comparison `c` is a * (x - y) + rest op 0 with rest free of x and y."""
    if not (isinstance(c, Call) and c.op in _COMPARE):
        return False
    in_x = _linear(Call(Op.SUB, c.args), x)
    if in_x is None or in_x[0].value == 0:  # type: ignore[union-attr]
        return False
    in_y = _linear(in_x[1], y)
    if in_y is None or in_y[0].value != -in_x[0].value:  # type: ignore[union-attr]
        return False
    return not {x, y} & set(variables_of(in_y[1]))


def _radix_rewrite(expr: Expr, parts: dict, radix: int, sizes) -> Expr:
    """`expr` over the high and low parts of the variables in `parts`; raises
    `_Unsupported` where a variable is read otherwise."""
    from .executor import _value

    if isinstance(expr, Var) and expr.name in parts:
        raise _Unsupported(f"{expr.name} read whole")
    if not isinstance(expr, Call):
        return expr
    a = expr.args[0] if expr.args else None
    if (
        expr.op in (Op.FLOORDIV, Op.MOD)
        and isinstance(a, Var)
        and a.name in parts
        and not variables_of(expr.args[1])
    ):
        c = float(np.asarray(_value(expr.args[1], {}, sizes, {}, None)))
        if not (math.isfinite(c) and c.is_integer() and c >= 1):
            raise _Unsupported(f"{expr} by {c}")
        c, (high, low) = int(c), parts[a.name]
        if expr.op is Op.FLOORDIV and c % radix == 0:
            return Var(high) if c == radix else Call(Op.FLOORDIV, (Var(high), Const(c // radix)))
        if expr.op is Op.MOD and radix % c == 0:
            return Var(low) if c == radix else Call(Op.MOD, (Var(low), Const(c)))
        raise _Unsupported(f"{expr} across the radix {radix}")
    return Call(expr.op, tuple(_radix_rewrite(e, parts, radix, sizes) for e in expr.args))


def _pair_plan(w: Expr | None, x: str, y: str, extent, sizes):
    """A plan of a filter over two plain variables (the closed form, a Kronecker split or
    the intervals, either orientation), True for no filter, or None."""
    if w is None:
        return True
    groups = {x: (x,), y: (y,)}
    plan = _affine_of(w, groups, extent, sizes)
    if plan is None:
        plan = _kron_of(w, x, y, extent, sizes)
    if plan is None:
        for a, b in ((x, y), (y, x)):
            try:
                return _oriented_plan(w, a, b, groups, extent, sizes)
            except _Unsupported:
                continue
    return plan


def _factor_points(plan, n_x: int, n_y: int) -> int:
    return n_x * n_y if plan is True else plan.points


def _aligned(t: np.ndarray, radix: int) -> np.ndarray:
    return (t % radix == 0) | (radix % t == 0)


def _kron_usable(plan: _KronPlan, tx, ty) -> np.ndarray:
    """Tilings counted exactly: through the factors (`_kron_boxes`), or any where the
    filter has an interval plan (built on the first tiling that needs it)."""
    boxes = _kron_boxes(plan, tx, ty)
    if boxes.all():
        return boxes
    return boxes | (_kron_fallback(plan) is not None)


def _kron_boxes(plan: _KronPlan, tx, ty) -> np.ndarray:
    """Tilings counted through the factors: boxes in the radix whose factor tilings their
    factors count (a factor split again needs its own boxes or its interval plan)."""
    tx, ty = np.minimum(tx, plan.extent_x), np.minimum(ty, plan.extent_y)
    boxes = _aligned(tx, plan.radix) & _aligned(ty, plan.radix)
    use = np.flatnonzero(boxes)
    if use.size:
        tiles, _ = _factor_tiles(plan, tx[use], ty[use])
        for factor in (plan.high, plan.low):
            if isinstance(factor, _KronPlan):
                boxes[use] &= _kron_usable(factor, tiles[factor.x[0]], tiles[factor.y[0]])
    return boxes


def _factor_tiles(plan: _KronPlan, tx, ty) -> tuple[dict, dict]:
    """({factor variable: tiles}, {factor variable: extent}) for box tilings."""
    radix = plan.radix
    (hx, hy), (lx, ly) = plan.names
    tiles = {
        hx: np.where(tx % radix == 0, tx // radix, 1),
        lx: np.where(tx % radix == 0, radix, tx),
        hy: np.where(ty % radix == 0, ty // radix, 1),
        ly: np.where(ty % radix == 0, radix, ty),
    }
    extent = {hx: plan.extent_x // radix, hy: plan.extent_y // radix, lx: radix, ly: radix}
    return tiles, extent


def _kron_fallback(plan: _KronPlan):
    """The interval plan of the whole filter (a cascade's, or a factor's), or None."""
    if "plan" not in plan.fallback:
        found = None
        if plan.whole and plan.whole[0] == "cascade":
            found = _interval_plan(*plan.whole[1:])
        elif plan.whole:
            w, x, y, extent, sizes = plan.whole[1:]
            groups = {x: (x,), y: (y,)}
            for a, b in ((x, y), (y, x)):
                try:
                    found = _oriented_plan(w, a, b, groups, extent, sizes)
                    break
                except _Unsupported:
                    continue
        plan.fallback["plan"] = found
    return plan.fallback["plan"]


def _kron_rows(plan: _KronPlan, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """(non-empty tiles, full tiles, busy points) per tiling: products of the factors' for
    box tilings, the whole filter's interval plan for the others (zeros where it has none:
    `_kron_usable` says those are not counted here)."""
    tx, ty = np.minimum(tx, plan.extent_x), np.minimum(ty, plan.extent_y)
    out = np.zeros((len(tx), 3), dtype=np.int64)
    boxes = _kron_boxes(plan, tx, ty)
    use = np.flatnonzero(boxes)
    if use.size:
        tiles, extent = _factor_tiles(plan, tx[use], ty[use])
        high = _factor_rows(plan.high, plan.names[0], tiles, extent)
        out[use] = high * _factor_rows(plan.low, plan.names[1], tiles, extent)
    rest = np.flatnonzero(~boxes)
    if rest.size:
        flat = _kron_fallback(plan)
        if flat is not None:
            a, b = (tx[rest], ty[rest]) if flat.x == plan.x else (ty[rest], tx[rest])
            out[rest] = _plan_rows(flat, a, b)
    return out


def _factor_rows(factor, names, tiles: dict, extent: dict) -> np.ndarray:
    if factor is True:
        x, y = names
        count = -(-extent[x] // tiles[x]) * -(-extent[y] // tiles[y])
        return np.stack([count, count, np.full(len(count), extent[x] * extent[y])], axis=1)
    return _plan_rows(factor, tiles[factor.x[0]], tiles[factor.y[0]])


# ------------------------------------------------------ two staircases sharing the rows


@dataclass(frozen=True, eq=False)
class _StarPlan:
    """A filter over three logical variables that is a conjunction A(x1, y) and B(x2, y)
    of two closed forms sharing y (FlexPrefill's block estimate `n * MB <= nq * PQ + PQ -
    1 and n2 * MB2 <= nq * PQ + PQ - 1`): row y keeps the box [loA, hiA] x [loB, hiB].
    In a row of y tiles, row y meets the rectangle R_y = SA(y) x SB(y) of (x1, x2) tiles,
    both sides moving monotonically with y, so R_y meets an earlier row's rectangle only
    inside R_(y-1): the non-empty tiles are sum |R_y| - sum |R_y & R_(y-1)| (their busy
    points the same sums weighted by the tiles' widths), and a tile is full iff it is full
    under A and under B. O(rows) per tiling instead of O(points)."""

    method: ClassVar[str] = "star"  # what `occupancy` reports it counted by

    x1: tuple[str, ...]
    x2: tuple[str, ...]
    y: tuple[str, ...]
    a: _AffinePlan  # A over (x1, y)
    b: _AffinePlan  # B over (x2, y)
    points: int
    counted: dict = field(default_factory=dict)  # {(t1, t2, ty): (non-empty, full, busy)}


@lru_cache(maxsize=16)
def _star_plan_cached(cascade, key, keyed, vars_) -> _StarPlan | None:
    """One plan per (cascade, sizes, filter, variables); None where the filter is not two
    closed forms over three logical variables sharing one."""
    sizes, where = dict(key), keyed.expr
    if where is None or not _whole_numbers(where):
        return None
    found = _logical_filter(cascade, where, vars_, 3)
    if found is None:
        return None
    groups, w = found
    extent = {v: _logical_extent(cascade, sizes, g) for v, g in groups.items()}
    for y in groups:
        x1, x2 = (v for v in groups if v != y)
        sides: tuple[list, list] = ([], [])
        for c in _conjuncts(w):
            vs = set(variables_of(c))
            if {x1, x2} <= vs:
                break
            sides[x2 in vs].append(c)
        else:
            plans = []
            for x, side in zip((x1, x2), sides, strict=True):
                if not side:
                    break
                joined = side[0]
                for c in side[1:]:
                    joined = Call(Op.AND, (joined, c))
                plans.append(_affine_oriented(joined, x, y, groups, extent, sizes))
            if len(plans) == 2 and None not in plans:
                a, b = plans
                lo, hi = max(a.ya, b.ya), min(a.yb, b.yb)
                rows = slice(lo, hi + 1)
                points = int(((a.hi[rows] - a.lo[rows] + 1) * (b.hi[rows] - b.lo[rows] + 1)).sum())
                return _StarPlan(groups[x1], groups[x2], groups[y], a, b, points)
    return None


_star_plan = _keyed_plan(_star_plan_cached)


def _star_stats(einsum, sizes, plan: _StarPlan, table, names):
    """(usable (n,), stats (n, 6)) for every distinct tiling (`_closed_form_stats`'s
    layout, over the three logical variables)."""
    n = len(table)
    t1, ok1 = _logical_tiles(sizes, plan.x1, table, names)
    t2, ok2 = _logical_tiles(sizes, plan.x2, table, names)
    ty, oky = _logical_tiles(sizes, plan.y, table, names)
    out = np.zeros((n, 3), dtype=np.int64)
    for k, sides in enumerate(zip(t1.tolist(), t2.tolist(), ty.tolist(), strict=True)):
        if sides not in plan.counted:
            if len(plan.counted) > 1 << 14:
                plan.counted.clear()
            plan.counted[sides] = _star_counts(plan, *sides)
        out[k] = plan.counted[sides]
    column = {r: table[:, j] for j, r in enumerate(names)}
    tiles = np.ones(n, dtype=np.int64)
    other_tiles = np.ones(n, dtype=np.int64)
    other_points = 1
    mask = plan.x1 + plan.x2 + plan.y
    for v in einsum.iter_vars:
        e = _extent(sizes, v)
        per = _tiles_along(column, sizes, v)
        tiles *= per
        if v not in mask:
            other_tiles *= per
            other_points *= e
    extents = (plan.a.extent_x, plan.b.extent_x, plan.a.extent_y)
    mask_tiles = np.ones(n, dtype=np.int64)
    for e, t in zip(extents, (t1, t2, ty), strict=True):
        mask_tiles *= -(-e // t)
    empty = (mask_tiles - out[:, 0]) * other_tiles
    full = out[:, 1] * other_tiles
    stats = np.stack(
        [
            tiles,
            empty,
            tiles - empty - full,
            full,
            np.full(n, plan.points * other_points),
            out[:, 2] * other_points,
        ],
        axis=1,
    )
    return ok1 & ok2 & oky, stats


def _star_counts(plan: _StarPlan, t1: int, t2: int, ty: int) -> tuple[int, int, int]:
    """(non-empty tiles, full tiles, busy points) of one tiling (see `_StarPlan`): sums
    over the live rows of per-row factors of one side's tile and of the rows' tile, kept
    on the plan (a search meets few tile sides: FlexPrefill 1M, 950 tilings of 10 x 14 x
    14 sides)."""
    a, b = plan.a, plan.b
    n1, n2, n_y = a.extent_x, b.extent_x, a.extent_y
    t1, t2, ty = min(t1, n1), min(t2, n2), min(ty, n_y)
    nonempty = busy = 0
    if max(a.ya, b.ya) <= min(a.yb, b.yb):
        count_a, overlap_a, width_a, overlap_width_a = _star_side(plan, a, t1)
        count_b, overlap_b, width_b, overlap_width_b = _star_side(plan, b, t2)
        same, height, overlap_height = _star_rows(plan, ty)
        nonempty = int(np.dot(count_a, count_b)) - int(np.dot(overlap_a * same, overlap_b))
        busy = int(np.dot(width_a * width_b, height))
        busy -= int(np.dot(overlap_width_a * overlap_width_b, overlap_height))
    rows = -(-n_y // ty)
    full_a, full_b = _star_full(plan, a, t1, ty, rows), _star_full(plan, b, t2, ty, rows)
    return nonempty, int(np.dot(full_a, full_b)), busy


def _star_side(plan: _StarPlan, side: _AffinePlan, t: int):
    """Per live row y (rows both sides keep): the tiles of `side` (tile t) that y's
    interval meets, i0 .. i1, and their points; per y after the first, those of the tiles
    it shares with row y - 1, [i0(y), i1(y - 1)] (R_y & R_(y-1) along this side). Kept on
    the plan."""
    key = ("side", id(side), t)
    found = _star_kept(plan, key)
    if found is None:
        a, b = plan.a, plan.b
        live = slice(max(a.ya, b.ya), min(a.yb, b.yb) + 1)
        i0, i1 = side.lo[live] // t, side.hi[live] // t
        p0, p1 = i0[1:], i1[:-1]
        n = side.extent_x
        found = (
            i1 - i0 + 1,
            np.maximum(p1 - p0 + 1, 0),
            np.where(i1 >= i0, np.minimum((i1 + 1) * t, n) - i0 * t, 0),
            np.where(p1 >= p0, np.minimum((p1 + 1) * t, n) - p0 * t, 0),
        )
        _star_keep(plan, key, found)
    return found


def _star_rows(plan: _StarPlan, ty: int):
    """Per live row y: whether y - 1 is in its row of tiles (after the first row; 0 / 1),
    the height of its row of tiles, and that height where y - 1 shares it. Kept on the
    plan."""
    key = ("rows", ty)
    found = _star_kept(plan, key)
    if found is None:
        a, b = plan.a, plan.b
        r = np.arange(max(a.ya, b.ya), min(a.yb, b.yb) + 1) // ty
        same = (r[1:] == r[:-1]).astype(np.int64)
        height = np.minimum((r + 1) * ty, a.extent_y) - r * ty
        found = (same, height, height[1:] * same)
        _star_keep(plan, key, found)
    return found


def _star_full(plan: _StarPlan, side: _AffinePlan, t: int, ty: int, rows: int) -> np.ndarray:
    """`_full_per_row` of one side, kept on the plan."""
    key = ("full", id(side), t, ty)
    found = _star_kept(plan, key)
    if found is None:
        found = (_full_per_row(side, t, ty, rows),)
        _star_keep(plan, key, found)
    return found[0]


#: Values of per-row arrays a star plan keeps (`_star_side`, `_star_rows`, `_star_full`;
#: 64 MB); past this it forgets them all. FlexPrefill 1M keeps about 4M.
STAR_VALUES_KEPT = 2**23


def _star_kept(plan: _StarPlan, key) -> tuple | None:
    return plan.counted.get(("arrays",), {}).get(key)


def _star_keep(plan: _StarPlan, key, arrays: tuple) -> None:
    """Keep per-row arrays on the plan within STAR_VALUES_KEPT values."""
    kept = plan.counted.setdefault(("arrays",), {})
    held = plan.counted.get(("values",), 0) + sum(a.size for a in arrays)
    if held > STAR_VALUES_KEPT:
        kept.clear()
        held = sum(a.size for a in arrays)
    kept[key] = arrays
    plan.counted["values",] = held


def _full_per_row(plan: _AffinePlan, t_x: int, t_y: int, rows: int) -> np.ndarray:
    """Full x tiles of each row of y tiles under a closed form: those inside every row's
    interval, [lo(last row), hi(first row)], where all the rows keep some point."""
    y0 = np.arange(rows) * t_y
    y1 = np.minimum(y0 + t_y, plan.extent_y) - 1
    inside = (y0 >= plan.ya) & (y1 <= plan.yb)
    tiles_x = -(-plan.extent_x // t_x)
    f0 = -(-plan.lo[np.clip(y1, 0, plan.extent_y - 1)] // t_x)
    top = plan.hi[np.clip(y0, 0, plan.extent_y - 1)]
    f1 = np.where(top >= plan.extent_x - 1, tiles_x - 1, (top + 1) // t_x - 1)
    return np.where(inside, np.maximum(f1 - f0 + 1, 0), 0)


# ------------------------------------------------------ head classes

#: A filter over two logical variables and one more variable (a head h) that enters only
#: through parts depending on h alone is counted per class of h values (`_HeadPlan`)
#: while h has at most this many values.
HEAD_VALUES = 2**12


@dataclass(frozen=True, eq=False)
class _HeadPlan:
    """A filter whose variables are two logical ones (x, y) and one more, h, that enters
    only through sub-conditions of h alone (`h * 100 < RP * H`): the h values are grouped
    into classes by those sub-conditions' truth values, and each class's filter, those
    values substituted, is a filter over x and y counted by a plan (`_AffinePlan`,
    `_IntervalPlan`). A tile covering the h values of classes C is non-empty iff the union
    (`or`) of their filters keeps a point in its x-y tile, full iff their intersection
    (`and`) keeps every real point there; its busy points are the x-y tile's busy points
    under the union times the h values it covers."""

    method: ClassVar[str] = "head_classes"  # what `occupancy` reports it counted by

    head: str
    labels: np.ndarray  # the class of each h value
    filters: tuple  # per class: the x-y filter (an Expr, or True / False)
    groups: dict  # the two logical variables: {name: iterated variables}
    sub_vars: tuple[str, ...]  # the iterated variables of x and y
    cascade: Cascade
    sizes: tuple
    plans: dict = field(default_factory=dict)  # `_class_plan`s and `_head_tiles` kept


def _head_atoms(expr: Expr, head: str) -> list[Expr] | None:
    """The maximal sub-conditions of `expr` depending on `head` alone (through `and`,
    `or`, `not`); None where `head` meets another variable inside one comparison."""
    vs = set(variables_of(expr))
    if head not in vs:
        return []
    if vs == {head}:
        return [expr]
    if isinstance(expr, Call) and expr.op in (Op.AND, Op.OR, Op.NOT):
        found: list[Expr] = []
        for a in expr.args:
            part = _head_atoms(a, head)
            if part is None:
                return None
            found += [p for p in part if p not in found]
        return found
    return None


def _folded(expr: Expr, truth: Mapping) -> Expr | bool:
    """`expr` with the sub-conditions in `truth` replaced by their values, `and` / `or` /
    `not` of constants folded (True / False when the whole filter folds)."""
    if expr in truth:
        return bool(truth[expr])
    if isinstance(expr, Call) and expr.op is Op.NOT:
        inner = _folded(expr.args[0], truth)
        return (not inner) if isinstance(inner, bool) else Call(Op.NOT, (inner,))
    if isinstance(expr, Call) and expr.op in (Op.AND, Op.OR):
        a, b = (_folded(e, truth) for e in expr.args)
        return _joined(expr.op, a, b)
    return expr


def _joined(op: Op, a: Expr | bool, b: Expr | bool) -> Expr | bool:
    absorbing = op is Op.OR  # True absorbs `or`, False absorbs `and`
    if a is absorbing or b is absorbing:
        return absorbing
    if isinstance(a, bool):
        return b
    if isinstance(b, bool):
        return a
    return Call(op, (a, b))


def _head_plan(cascade, sizes, where, vars_) -> _HeadPlan | None:
    if where is None or not vars_:
        return None
    key = tuple(sorted((k, int(v)) for k, v in sizes.items()))
    return _head_plan_cached(cascade, key, _ByToken(where), _grouped_vars(cascade, vars_))


@lru_cache(maxsize=64)
def _head_plan_cached(cascade, key, keyed, vars_) -> _HeadPlan | None:
    """The head classes of a tensor-free filter (see `_HeadPlan`), or None; one per
    (cascade, sizes, filter, variables)."""
    from .executor import _value

    sizes, where = dict(key), keyed.expr
    if not _whole_numbers(where):
        return None
    found = _logical_filter(cascade, where, vars_, 3)
    if found is None:
        return None
    groups, w = found
    for head in [g for g, parts in groups.items() if len(parts) == 1]:
        n_h = _extent(sizes, head)
        atoms = _head_atoms(w, head)
        if not atoms or n_h > HEAD_VALUES:
            continue
        hs = np.arange(n_h)
        truth = np.stack(
            [
                np.broadcast_to(np.asarray(_value(a, {head: hs}, sizes, {}, None)) != 0, (n_h,))
                for a in atoms
            ],
            axis=1,
        )
        rows, labels = np.unique(truth, axis=0, return_inverse=True)
        filters = tuple(_folded(w, dict(zip(atoms, row.tolist(), strict=True))) for row in rows)
        if any(not isinstance(f, bool) and head in variables_of(f) for f in filters):
            continue
        sub = {g: p for g, p in groups.items() if g != head}
        sub_vars = tuple(v for v in vars_ if v != head)
        return _HeadPlan(head, labels.reshape(-1), filters, sub, sub_vars, cascade, key)
    return None


def _class_plan(hp: _HeadPlan, classes: frozenset, op: Op):
    """The plan of the union (`or`) or intersection (`and`) of some classes' filters:
    True / False where it folds, None where no plan applies (kept on `hp`)."""
    if (classes, op) not in hp.plans:
        hp.plans[classes, op] = _class_plan_of(hp, classes, op)
    return hp.plans[classes, op]


def _class_plan_of(hp: _HeadPlan, classes: frozenset, op: Op):
    f: Expr | bool = op is Op.AND
    for c in sorted(classes):
        f = _absorbed(op, f, hp.filters[c])
    if isinstance(f, bool):
        return f
    sizes = dict(hp.sizes)
    plan = _affine_plan(hp.cascade, None, sizes, f, hp.sub_vars)
    # Not the Kronecker plan: it counts only some tilings (`_kron_usable`), the others on
    # the interval plan, which is taken here directly.
    for find in (_difference_plan, _union_plan, _periodic_plan, _interval_plan):
        if plan is None:
            plan = find(hp.cascade, sizes, f, hp.sub_vars)
    return plan


def _absorbed(op: Op, a: Expr | bool, b: Expr | bool) -> Expr | bool:
    """`_joined`, where the conjuncts of one filter are among the other's (the other
    implies it) the weaker one for `or`, the stronger for `and`: razor's retrieval heads
    `m <= p` with its streaming heads `m <= p and (m < S or p - m < W)` is one of the
    two classes' own filters (their plans), not a new one."""
    if not isinstance(a, bool) and not isinstance(b, bool):
        in_a, in_b = set(_conjuncts(a)), set(_conjuncts(b))
        if in_a <= in_b:
            return a if op is Op.OR else b
        if in_b <= in_a:
            return b if op is Op.OR else a
    return _joined(op, a, b)


def _head_rows(hp: _HeadPlan, plan, sizes, tiles: dict, use) -> np.ndarray:
    """`_plan_rows` (n, 3) of one class plan, or of a constant filter, for the tilings
    `use`; `tiles` maps each logical variable's iterated variables to its tiles."""
    if isinstance(plan, bool):
        x, y = (hp.groups[v] for v in hp.groups)
        n_x, n_y = (_logical_extent(hp.cascade, sizes, g) for g in (x, y))
        count = -(-n_x // tiles[x][use]) * -(-n_y // tiles[y][use])
        out = np.stack([count, count, np.full(len(use), n_x * n_y)], axis=1) * int(plan)
        return out.astype(np.int64)
    return _plan_rows(plan, tiles[plan.x][use], tiles[plan.y][use])


def _head_tiles(hp: _HeadPlan, t: int) -> dict[frozenset, tuple[int, int]]:
    """{classes of an h tile: (such tiles, h values in them)} for h tiles of t (kept)."""
    if ("tiles", t) not in hp.plans:
        found: dict[frozenset, tuple[int, int]] = {}
        n_h = len(hp.labels)
        for start in range(0, n_h, t):
            s = frozenset(hp.labels[start : start + t].tolist())
            tiles, values = found.get(s, (0, 0))
            found[s] = (tiles + 1, values + min(t, n_h - start))
        hp.plans["tiles", t] = found
    return hp.plans["tiles", t]


def _head_stats(einsum, sizes, hp: _HeadPlan, table, names):
    """(usable (n,), stats (n, 6)) for every distinct tiling, summed over the tiles of h."""
    n = len(table)
    column = {r: table[:, j] for j, r in enumerate(names)}
    mask = {hp.head, *hp.sub_vars}
    ranks = tuple(sorted({rank_of(v) for v in mask} & set(names)))
    ok, nonempty, full, busy, points = _head_counts_kept(sizes, hp, table, names, ranks)
    other_tiles = np.ones(n, dtype=np.int64)
    tiles = np.ones(n, dtype=np.int64)
    mask_tiles = np.ones(n, dtype=np.int64)
    other_points = 1
    for v in einsum.iter_vars:
        e = _extent(sizes, v)
        per = _tiles_along(column, sizes, v)
        tiles *= per
        if v in mask:
            mask_tiles *= per
        else:
            other_tiles *= per
            other_points *= e
    empty = (mask_tiles - nonempty) * other_tiles
    full = full * other_tiles
    stats = np.stack(
        [
            tiles,
            empty,
            tiles - empty - full,
            full,
            np.full(n, points * other_points),
            busy * other_points,
        ],
        axis=1,
    )
    return ok, stats


#: Tilings whose `_head_counts` a head plan keeps (then it forgets them all).
HEAD_ROWS_KEPT = 2**16


def _head_counts_kept(sizes, hp: _HeadPlan, table, names, ranks: tuple[str, ...]):
    """`_head_counts`, kept per tiling of the mask's ranks on the plan: a tiling's counts
    depend on its tiles of h, x and y alone, and the Einsums sharing the mask (QK, LM,
    SLN, ...) and the search's later calls ask for the same tilings again (razor 1M: 22K
    tilings in 658 calls, 4K distinct); only the tilings not yet counted are counted."""
    entry = hp.plans.get(("rows", ranks))
    if entry is None or len(entry[0]) > HEAD_ROWS_KEPT:
        entry = hp.plans["rows", ranks] = ({}, [np.zeros((0, 4), dtype=np.int64)])
    kept, store = entry  # {tiles of the ranks: row of store[0]}, [(ok, nonempty, full, busy)]
    columns = [names.index(r) for r in ranks]
    keys = list(map(tuple, table[:, columns].tolist()))
    new = dict.fromkeys(k for k in keys if k not in kept)
    if new:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # each key's first row
        at = np.fromiter((first[k] for k in new), np.int64, len(new))
        ok, nonempty, full, busy, points = _head_counts(sizes, hp, table[at], names)
        hp.plans["points",] = points
        block = np.stack([ok.astype(np.int64), nonempty, full, busy], axis=1)
        kept.update(zip(new, range(len(kept), len(kept) + len(new)), strict=True))
        store[0] = np.concatenate([store[0], block])
    got = store[0][np.fromiter(map(kept.__getitem__, keys), np.int64, len(keys))]
    return got[:, 0] != 0, got[:, 1], got[:, 2], got[:, 3], hp.plans["points",]


def _head_counts(sizes, hp: _HeadPlan, table, names):
    """(usable, non-empty tiles, full tiles, busy points) (n,) over h, x and y, and the
    kept points, for every distinct tiling."""
    n = len(table)
    column = {r: table[:, j] for j, r in enumerate(names)}
    n_h = len(hp.labels)
    t = column.get(rank_of(hp.head))
    th = np.full(n, n_h, np.int64) if t is None else np.minimum(t, n_h).astype(np.int64)
    ok = np.ones(n, bool)
    tiles_xy = {}
    for g in hp.groups.values():
        tiles_xy[g], usable = _logical_tiles(sizes, g, table, names)
        ok &= usable
    nonempty = np.zeros(n, np.int64)
    full = np.zeros(n, np.int64)
    busy = np.zeros(n, np.int64)
    terms = []  # (union plan, intersection plan, tilings, h tiles of the classes, h values)
    asked: dict = {}  # per distinct plan: (plan, the tilings asking for its rows)
    for t in np.unique(th).tolist():
        use = np.flatnonzero(th == t)
        for s, (tiles_of_s, nh) in _head_tiles(hp, t).items():
            union, both = _class_plan(hp, s, Op.OR), _class_plan(hp, s, Op.AND)
            if union is None or both is None:
                ok[use] = False
                continue
            keys = _plan_id(union), _plan_id(both)
            terms.append((*keys, use, tiles_of_s, nh))
            for key, plan in zip(keys, (union, both), strict=True):
                if key not in asked:
                    asked[key] = (plan, np.zeros(n, bool))
                asked[key][1][use] = True
    # Each distinct plan's rows once, for all the tilings asking (the classes' unions and
    # intersections are mostly the same few filters: razor's two classes give two plans).
    rows = {}
    for key, (plan, wanted) in asked.items():
        use = np.flatnonzero(wanted)
        rows[key] = np.zeros((n, 3), np.int64)
        rows[key][use] = _head_rows(hp, plan, sizes, tiles_xy, use)
    for union, both, use, tiles_of_s, nh in terms:
        nonempty[use] += rows[union][use, 0] * tiles_of_s
        full[use] += rows[both][use, 1] * tiles_of_s
        busy[use] += rows[union][use, 2] * nh
    points = _head_points(hp, sizes)
    if points is None:
        return np.zeros(n, bool), nonempty, full, busy, 0
    return ok, nonempty, full, busy, points


def _head_points(hp: _HeadPlan, sizes) -> int | None:
    """The kept points: each class's plan's points times its h values; None where a
    class has no plan (kept on `hp`)."""
    if ("points of classes",) not in hp.plans:
        points = 0
        for c in range(len(hp.filters)):
            plan = _class_plan(hp, frozenset([c]), Op.OR)
            if plan is None:
                points = None
                break
            if isinstance(plan, bool):
                x, y = hp.groups
                each = int(plan) * math.prod(
                    _logical_extent(hp.cascade, sizes, hp.groups[v]) for v in (x, y)
                )
            else:
                each = plan.points
            points += each * int(np.count_nonzero(hp.labels == c))
        hp.plans["points of classes",] = points
    return hp.plans["points of classes",]


def _plan_id(plan) -> tuple:
    """A class plan's key among a call's plans: its identity, or its value where it folds
    to True / False."""
    return (isinstance(plan, bool), plan if isinstance(plan, bool) else id(plan))


class _XSets:
    """Exact sets of x for every y, as sorted disjoint intervals (rows, a, b): int64 arrays,
    one entry per interval, a <= b, sorted by (row, a), never adjacent within a row.

    A filter is evaluated on a domain set: `and` narrows the domain conjunct by conjunct,
    `or` unites, `not` takes the difference. A comparison is taken when it is separable:
    L - R is a sum of terms each over x alone or y alone (f(x) op g(y), computed in whole
    numbers, so exact), or it depends on x and y only through one separable sum s (the
    comparison is evaluated over every value s can take, giving runs of kept s). f need
    not be monotone: x splits into maximal runs where f is non-decreasing (`x // Y % X`:
    one run per period), and in each, f's preimage of a value range is one interval
    (a binary search). Anything else raises `_Unsupported`.
    """

    def __init__(self, x, y, n_x, n_y, sizes):
        self.x, self.y, self.n_x, self.n_y, self.sizes = x, y, n_x, n_y, sizes
        self._values: dict = {}
        self._sizes_key: tuple | None = None

    # -- sets ---------------------------------------------------------------------
    def whole(self, first: int = 0, last: int | None = None):
        """Every x of the rows first .. last - 1 (default: all rows)."""
        rows = np.arange(first, self.n_y if last is None else last, dtype=np.int64)
        return rows, np.zeros(len(rows), np.int64), np.full(len(rows), self.n_x - 1, np.int64)

    def _check(self, n: int) -> None:
        if n > INTERVALS_MOST:
            raise _Unsupported("too many intervals")

    def _sweep(self, parts, weights, least: int):
        """The x where the weighted cover of the sets `parts` is >= least, per row."""
        span = self.n_x + 1
        keys = np.concatenate([k for (r, a, b) in parts for k in (r * span + a, r * span + b + 1)])
        deltas = np.concatenate(
            [
                np.full(2 * len(r), w, np.int64) * np.repeat([1, -1], len(r))
                for (r, _, _), w in zip(parts, weights, strict=True)
            ]
        )
        if keys.size == 0:
            return _EMPTY_SET
        order = np.argsort(keys, kind="stable")
        keys, cover = keys[order], np.cumsum(deltas[order])
        last = np.append(keys[1:] != keys[:-1], True)
        keys, cover = keys[last], cover[last]  # cover on [keys[i], keys[i + 1])
        inside = cover[:-1] >= least
        start, stop = keys[:-1][inside], keys[1:][inside]  # never across rows: cover ends 0
        if start.size == 0:
            return _EMPTY_SET
        joined = np.append(False, start[1:] == stop[:-1])
        first = ~joined
        begin = start[first]
        end = stop[np.append(np.flatnonzero(first)[1:] - 1, len(stop) - 1)]
        rows = begin // span
        return rows, begin - rows * span, end - rows * span - 1

    def union(self, sets):
        """Sorted by (row, start) (a merge of sorted lists), then an interval joins the
        previous one of its row while it starts at most one past their running end."""
        sets = [s for s in sets if len(s[0])]
        if len(sets) <= 1:
            return sets[0] if sets else _EMPTY_SET
        self._check(sum(len(s[0]) for s in sets))
        rows, a, b = (np.concatenate([s[i] for s in sets]) for i in range(3))
        span = self.n_x + 1
        order = np.argsort(rows * span + a, kind="stable")
        rows, a, b = rows[order], a[order], b[order]
        reach = np.maximum.accumulate(rows * span + b)  # running end, never across rows
        first = np.append(True, rows[1:] * span + a[1:] > reach[:-1] + 1)
        starts = np.flatnonzero(first)
        ends = np.append(starts[1:] - 1, len(rows) - 1)
        return rows[starts], a[starts], reach[ends] - rows[starts] * span

    def complement(self, kept, first: int = 0, stop: int | None = None):
        """[0, n_x) minus the kept intervals, per row of first .. stop - 1 (default: all
        rows; rows without any: whole)."""
        rows, a, b = kept
        n = len(rows)
        stop = self.n_y if stop is None else stop
        if n == 0:
            return self.whole(first, stop)
        new_row = np.append(True, rows[1:] != rows[:-1])
        last = np.append(new_row[1:], True)
        # a gap before each interval (from the previous end, or 0) and after each row's last
        before = np.where(new_row, 0, np.append(0, b[:-1] + 1))
        gap_rows = np.concatenate([rows, rows[last]])
        gap_a = np.concatenate([before, b[last] + 1])
        gap_b = np.concatenate([a - 1, np.full(int(last.sum()), self.n_x - 1)])
        bare = np.setdiff1d(np.arange(first, stop), rows, assume_unique=True)
        gap_rows = np.concatenate([gap_rows, bare])
        gap_a = np.concatenate([gap_a, np.zeros(len(bare), np.int64)])
        gap_b = np.concatenate([gap_b, np.full(len(bare), self.n_x - 1)])
        live = gap_a <= gap_b
        gap_rows, gap_a, gap_b = gap_rows[live], gap_a[live], gap_b[live]
        order = np.argsort(gap_rows * (self.n_x + 1) + gap_a, kind="stable")
        return gap_rows[order], gap_a[order], gap_b[order]

    def difference(self, a, b):
        if not len(b[0]) or not len(a[0]):
            return a
        return self._sweep([a, b], [1, -1], 1)

    # -- evaluation ---------------------------------------------------------------
    def deps(self, expr: Expr) -> set[str]:
        return set(variables_of(expr)) & {self.x, self.y}

    def eval(self, expr: Expr, dom):
        if not len(dom[0]):
            return dom
        deps = self.deps(expr)
        if self.x not in deps:
            holds = self.values(expr, self.y) != 0
            return _select(dom, holds[dom[0]])
        if isinstance(expr, Call) and expr.op is Op.AND:
            parts = sorted(_conjuncts(expr), key=self._narrowness)
            for part in parts:
                dom = self.eval(part, dom)
            return dom
        if isinstance(expr, Call) and expr.op is Op.OR:
            return self.union([self.eval(part, dom) for part in _disjuncts(expr)])
        if isinstance(expr, Call) and expr.op is Op.NOT:
            return self.difference(dom, self.eval(expr.args[0], dom))
        if isinstance(expr, Call) and expr.op in _RANGES:
            split = self._split(expr)
            if split is not None:
                fx, gy = split  # left - right = fx(x) + gy(y)
                return self._preimage(fx, _RANGES[expr.op], self._negated(gy), dom)
        return self._through_sum(expr, dom)

    def _narrowness(self, expr: Expr) -> int:
        """Evaluation order of conjuncts: rows first, then comparisons whose x side has few
        monotone runs (they narrow the domain the others are split over)."""
        deps = self.deps(expr)
        if self.x not in deps:
            return 0
        if isinstance(expr, Call) and expr.op in _RANGES:
            split = self._split(expr)
            if split is not None:
                return 1 + len(self._pieces(self._oriented(split[0]))[0])
        return 1 << 62

    def values(self, expr: Expr, var: str) -> np.ndarray:
        """An expression over one variable's range, in whole numbers (int64, exact): in
        int64 arithmetic where `_whole_values` takes it, else as the executor evaluates it
        (floats, exact below 2**52). Shared by every `_XSets` of the same sizes (both
        orientations of a plan and its transpose evaluate the same f(p) over 1M p)."""
        key = (expr, var)  # by value: a filter repeats its subexpressions (NATTEN's window)
        found = self._values.get(key)
        if found is not None:
            return found[1]
        n = self.n_x if var == self.x else self.n_y
        if self._sizes_key is None:
            self._sizes_key = tuple(sorted((k, int(v)) for k, v in self.sizes.items()))
        shared = (_renamed(expr, var), n, self._sizes_key)
        values = _SHARED_VALUES.get(shared)
        if values is None:
            values = _whole_values(expr, var, n, self.sizes)
        if values is None:
            from .executor import _value

            with np.errstate(all="ignore"):
                raw = _value(expr, {var: np.arange(n)}, self.sizes, {}, None)
            raw = np.broadcast_to(np.asarray(raw, dtype=float), (n,))
            if not np.all(np.isfinite(raw)) or np.any(np.abs(raw) >= 2.0**52):
                raise _Unsupported("not whole numbers")
            values = raw.astype(np.int64)
        values.flags.writeable = False
        _remember(_SHARED_VALUES, shared, values, SHARED_VALUES_MOST)
        self._values[key] = (expr, values)
        return values

    def _split(self, comparison: Call):
        """`_separable` of left - right of a comparison, memoized per node."""
        key = ("split", id(comparison))
        found = self._values.get(key)
        if found is None:
            found = (comparison, self._separable(Call(Op.SUB, comparison.args)))
            self._values[key] = found
        return found[1]

    def _separable(self, expr: Expr):
        """(f over x, g over y) with expr = f(x) + g(y), when expr is a sum of terms over
        one variable each; else None."""
        terms: list[tuple[int, Expr]] = []
        _terms(expr, 1, terms)
        fx = np.zeros(self.n_x, np.int64)
        gy = np.zeros(self.n_y, np.int64)
        for sign, term in terms:
            deps = self.deps(term)
            if len(deps) == 2:
                return None
            if self.x in deps:
                fx = fx + sign * self.values(term, self.x)
            else:
                gy = gy + sign * self.values(term, self.y)
        return fx, gy

    def _through_sum(self, expr: Expr, dom):
        """A comparison (or any test) over x and y only through one separable sum s: the
        values of s it keeps, as runs, each a range of f(x) per row."""
        sums = {e for e in _mixed_sums(expr, self) if e is not None}
        if len(sums) != 1:
            raise _Unsupported(f"not separable: {expr}")
        (s,) = sums
        fx, gy = self._separable(s)
        lo = int(fx.min()) + int(gy.min())
        hi = int(fx.max()) + int(gy.max())
        self._check(hi - lo + 1)
        from .executor import _value

        through = _substitute(expr, {s: Var("__s")})
        if self.deps(through):
            raise _Unsupported(f"not through one sum: {expr}")
        with np.errstate(all="ignore"):
            keep = _value(through, {"__s": np.arange(lo, hi + 1)}, self.sizes, {}, None)
        keep = np.broadcast_to(np.asarray(keep) != 0, (hi - lo + 1,))
        edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
        starts, stops = edges[0::2] + lo, edges[1::2] - 1 + lo  # runs of kept s
        if len(starts) > 64:
            raise _Unsupported("too many runs of kept values")
        ranges = [(Op.GE, int(a), Op.LE, int(b)) for a, b in zip(starts, stops, strict=True)]
        return self._preimage(fx, ranges, self._negated(gy), dom) if ranges else _EMPTY_SET

    def _pieces(self, fx: np.ndarray):
        """(starts, ends, piece of each x) of the maximal runs where f is non-decreasing."""
        key = ("pieces", id(fx))
        found = self._values.get(key)
        if found is None:
            starts = np.concatenate([[0], np.flatnonzero(np.diff(fx) < 0) + 1])
            piece = np.zeros(len(fx), np.int64)
            piece[starts[1:]] = 1
            piece = np.cumsum(piece)
            found = (fx, (starts, np.append(starts[1:] - 1, len(fx) - 1), piece))
            self._values[key] = found
        return found[1]

    def _oriented(self, fx: np.ndarray) -> np.ndarray:
        """f or -f, whichever has fewer non-decreasing runs (p - m < W: -m is one run)."""
        key = ("oriented", id(fx))
        found = self._values.get(key)
        if found is None:
            flipped = -fx
            fewer = len(self._pieces(flipped)[0]) < len(self._pieces(fx)[0])
            found = (fx, flipped if fewer else fx, flipped)
            self._values[key] = found
        return found[1]

    def _preimage(self, fx, ranges, c, dom):
        """`_preimage_of` on f or, where it has fewer monotone runs, on -f (the ranges
        mirrored: f <= c + o is -f >= -c - o, and their order reversed)."""
        oriented = self._oriented(fx)
        if oriented is fx:
            return self._preimage_of(fx, ranges, c, dom)
        mirrored = [
            tuple(
                x for op, o in zip(r[0::2], r[1::2], strict=True) for x in (_FLIP.get(op, op), -o)
            )
            for r in reversed(ranges)
        ]
        return self._preimage_of(oriented, mirrored, self._negated(c), dom)

    def _negated(self, values: np.ndarray) -> np.ndarray:
        """-values, memoized per array both ways (every block of rows of a plan negates
        the same g(y) over all rows, and a mirrored preimage negates it back)."""
        found = self._values.get(("neg", id(values)))
        if found is None:
            negated = -values
            self._values["neg", id(values)] = (values, negated)
            self._values["neg", id(negated)] = (negated, values)
            return negated
        return found[1]

    def _keys(self, fx: np.ndarray):
        """(min f, max f, span, piece * span + f - min f + 1): f's values ordered within
        its monotone runs, one key per x (memoized per f: every block of rows reuses it)."""
        key = ("keys", id(fx))
        found = self._values.get(key)
        if found is None:
            starts, _, piece = self._pieces(fx)
            fmin, fmax = int(fx.min()), int(fx.max())
            span = fmax - fmin + 3
            if len(starts) * span >= 1 << 62:
                raise _Unsupported("values too large")
            found = (fx, fmin, fmax, span, piece * span + (fx - fmin + 1))
            self._values[key] = found
        return found[1:]

    def _preimage_of(self, fx, ranges, c, dom):
        """The x in dom with f(x) in one of the value ranges (each (op, offset[, op,
        offset]) on c(y): e.g. (LE, 0) is f(x) <= c(y), (GE, a, LE, b) is c+a <= f <= c+b),
        ranges ordered by value so that their pieces come out in x order."""
        starts, ends, piece = self._pieces(fx)
        fmin, fmax, span, key = self._keys(fx)
        rows, a, b = dom
        p0, p1 = piece[a], piece[b]
        count = p1 - p0 + 1
        total = int(count.sum())
        self._check(total * len(ranges))
        which = np.repeat(np.arange(len(rows)), count)
        at = p0[which] + np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        sa = np.maximum(a[which], starts[at])
        sb = np.minimum(b[which], ends[at])
        cw = c[rows[which]]
        found = []
        for rng in ranges:
            low, high = np.full(total, fmin - 1), np.full(total, fmax + 1)
            for op, offset in zip(rng[0::2], rng[1::2], strict=True):
                bound = cw + offset
                if op is Op.LE:
                    high = np.minimum(high, bound)
                elif op is Op.LT:
                    high = np.minimum(high, bound - 1)
                elif op is Op.GE:
                    low = np.maximum(low, bound)
                elif op is Op.GT:
                    low = np.maximum(low, bound + 1)
                elif op is Op.EQ:
                    low, high = np.maximum(low, bound), np.minimum(high, bound)
            low = np.clip(low, fmin, fmax + 1) - fmin + 1
            high = np.clip(high, fmin - 1, fmax) - fmin + 1
            first = np.searchsorted(key, at * span + low, side="left")
            last = np.searchsorted(key, at * span + high, side="right") - 1
            found.append((np.maximum(first, sa), np.minimum(last, sb)))
        lo = np.stack([f[0] for f in found], axis=1).reshape(-1)
        hi = np.stack([f[1] for f in found], axis=1).reshape(-1)
        r = np.repeat(rows[which], len(ranges))
        live = lo <= hi
        if len(starts) == 1 and len(ranges) == 1:
            # sub-intervals of distinct, non-adjacent domain intervals: none to join
            return r[live], lo[live], hi[live]
        return _merged(r[live], lo[live], hi[live])


_EMPTY_SET = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
#: Whole-number values of one-variable expressions kept across `_XSets` (8 MB each at 1M).
SHARED_VALUES_MOST = 8
_SHARED_VALUES: dict[tuple, np.ndarray] = {}
#: Magnitude below which float64 arithmetic on whole numbers is exact (the executor's path).
_EXACT = 2**52


class _NotWhole(Exception):
    """An expression `_whole_values` leaves to the executor's float evaluation."""


def _whole_values(expr: Expr, var: str, n: int, sizes) -> np.ndarray | None:
    """expr over var = 0 .. n - 1 in int64 arithmetic, or None where an operator, a
    constant or a divisor is not one it takes, or a bound of any subexpression (interval
    arithmetic) reaches 2**52: there float64 is exact too, so the values equal the
    executor's (whose floor division and mod of whole floats are exact), about 5x sooner."""
    try:
        value, _, _ = _whole(expr, var, n, sizes)
    except _NotWhole:
        return None
    if isinstance(value, np.ndarray) and value.dtype == np.int64 and value.shape == (n,):
        return value  # computed here: no one else holds it
    return np.broadcast_to(np.asarray(value, dtype=np.int64), (n,)).copy()


def _shared_whole_values(expr: Expr, var: str, n: int, sizes) -> np.ndarray | None:
    """`_whole_values`, kept among the `_SHARED_VALUES` (read-only): an affine filter's
    ends are computed by the closed form, the union and the interval plans alike, and an
    `==` is two bounds on the same values (BiFormer's region of each of 1M positions)."""
    expr = _sized(expr, sizes)  # the same values whether a size is read or substituted
    key = (_renamed(expr, var), n, tuple(sorted((k, int(v)) for k, v in sizes.items())))
    values = _SHARED_VALUES.get(key)
    if values is None:
        values = _whole_values(expr, var, n, sizes)
        if values is None:
            return None
        values.flags.writeable = False
        _remember(_SHARED_VALUES, key, values, SHARED_VALUES_MOST)
    return values


def _renamed(expr: Expr, var: str) -> Expr:
    """`expr` with the variable `var` named `""` (no index variable has that name): the
    values over var = 0 .. n - 1 depend on the structure alone, so f(m) and f(p) over ranges
    of one length (BiFormer's and MoBA's regions of keys and of queries) share one array in
    `_SHARED_VALUES`."""
    if isinstance(expr, Var):
        return _ANONYMOUS if expr.name == var else expr
    if isinstance(expr, Call):
        args = tuple(_renamed(a, var) for a in expr.args)
        if any(a is not b for a, b in zip(args, expr.args, strict=True)):
            return Call(expr.op, args)
    return expr


_ANONYMOUS = Var("")


def _whole(expr: Expr, var: str, n: int, sizes):
    """(value, lowest, highest): an int or an int64 array, and bounds of its values. Every
    array it returns is its own (made in this call), so an operation writes into one of its
    operands' arrays: one array of n values per leaf reading `var`, not one per operation
    (1M positions: 8 MB of fresh pages each)."""
    if isinstance(expr, Const):
        v = expr.value
        if not float(v).is_integer():
            raise _NotWhole
        return _bounded(int(v), int(v), int(v))
    if isinstance(expr, Size):
        v = sizes[expr.name]
        if not float(v).is_integer():
            raise _NotWhole
        return _bounded(int(v), int(v), int(v))
    if isinstance(expr, Var):
        if expr.name != var or n < 1:
            raise _NotWhole
        return _bounded(np.arange(n, dtype=np.int64), 0, n - 1)
    if not isinstance(expr, Call) or expr.op not in _WHOLE_OPS:
        raise _NotWhole
    args = [_whole(a, var, n, sizes) for a in expr.args]
    op = expr.op
    if op is Op.NEG:
        (a, lo, hi) = args[0]
        return _bounded(np.negative(a, out=a) if _owned(a) else -a, -hi, -lo)
    tests = op in _WHOLE_TESTS or op is Op.NOT
    if tests and all(isinstance(a[0], int) for a in args):
        raise _NotWhole  # the executor's tests take arrays only
    if op is Op.NOT:
        return _bounded((args[0][0] == 0).astype(np.int64), 0, 1)
    (a, alo, ahi), (b, blo, bhi) = args
    into = a if _owned(a) else b if _owned(b) else None  # an operand's array: written
    if op is Op.ADD:
        return _bounded(a + b if into is None else np.add(a, b, out=into), alo + blo, ahi + bhi)
    if op is Op.SUB:
        value = a - b if into is None else np.subtract(a, b, out=into)
        return _bounded(value, alo - bhi, ahi - blo)
    if op is Op.MUL:
        ends = (alo * blo, alo * bhi, ahi * blo, ahi * bhi)
        value = a * b if into is None else np.multiply(a, b, out=into)
        return _bounded(value, min(ends), max(ends))
    if op is Op.MAX:
        return _bounded(np.maximum(a, b, out=into), max(alo, blo), max(ahi, bhi))
    if op is Op.MIN:
        return _bounded(np.minimum(a, b, out=into), min(alo, blo), min(ahi, bhi))
    if op in (Op.FLOORDIV, Op.MOD):
        if not isinstance(b, int) or b <= 0:
            raise _NotWhole
        if op is Op.FLOORDIV:
            value = a // b if into is None else np.floor_divide(a, b, out=into)
            return _bounded(value, alo // b, ahi // b)
        value = a % b if into is None else np.remainder(a, b, out=into)
        return _bounded(value, 0, b - 1)
    # comparisons and logic: 0 / 1
    return _bounded(_WHOLE_TESTS[op](a, b).astype(np.int64), 0, 1)


def _owned(value) -> bool:
    """Whether `_whole` may write its result into `value` (an int64 array it made)."""
    return isinstance(value, np.ndarray) and value.dtype == np.int64


def _bounded(value, lo: int, hi: int):
    if max(abs(lo), abs(hi)) >= _EXACT:
        raise _NotWhole
    return value, lo, hi


_WHOLE_TESTS = {
    Op.LT: lambda a, b: a < b,
    Op.LE: lambda a, b: a <= b,
    Op.GT: lambda a, b: a > b,
    Op.GE: lambda a, b: a >= b,
    Op.EQ: lambda a, b: a == b,
    Op.NE: lambda a, b: a != b,
    Op.AND: lambda a, b: np.logical_and(a, b),
    Op.OR: lambda a, b: np.logical_or(a, b),
}
_WHOLE_OPS = frozenset(_WHOLE_TESTS) | {
    Op.NEG,
    Op.NOT,
    Op.ADD,
    Op.SUB,
    Op.MUL,
    Op.MAX,
    Op.MIN,
    Op.FLOORDIV,
    Op.MOD,
}
#: A comparison as the value range of f(x) - c(y) it keeps (NE: below, then above).
_RANGES = {
    Op.LE: [(Op.LE, 0)],
    Op.LT: [(Op.LT, 0)],
    Op.GE: [(Op.GE, 0)],
    Op.GT: [(Op.GT, 0)],
    Op.EQ: [(Op.EQ, 0)],
    Op.NE: [(Op.LT, 0), (Op.GT, 0)],
}


def _select(dom, keep):
    return dom[0][keep], dom[1][keep], dom[2][keep]


def _merged(rows, a, b):
    """Sorted intervals with the adjacent ones of a row joined."""
    if rows.size == 0:
        return _EMPTY_SET
    joined = np.append(False, (rows[1:] == rows[:-1]) & (a[1:] == b[:-1] + 1))
    first = np.flatnonzero(~joined)
    last = np.append(first[1:] - 1, len(rows) - 1)
    return rows[first], a[first], b[last]


def _disjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.op is Op.OR:
        return _disjuncts(expr.args[0]) + _disjuncts(expr.args[1])
    return [expr]


def _terms(expr: Expr, sign: int, out: list) -> None:
    if isinstance(expr, Call) and expr.op in (Op.ADD, Op.SUB):
        _terms(expr.args[0], sign, out)
        _terms(expr.args[1], sign if expr.op is Op.ADD else -sign, out)
    elif isinstance(expr, Call) and expr.op is Op.NEG:
        _terms(expr.args[0], -sign, out)
    else:
        out.append((sign, expr))


def _mixed_sums(expr: Expr, sets: _XSets):
    """The outermost subexpressions over both x and y that are separable sums (None for a
    mixed leaf that is not one: then the test is not taken)."""
    if len(sets.deps(expr)) < 2:
        return
    if isinstance(expr, Call) and expr.op in (Op.ADD, Op.SUB, Op.NEG):
        terms: list = []
        _terms(expr, 1, terms)
        if all(len(sets.deps(t)) < 2 for _, t in terms):
            yield expr
            return
    mixed = [a for a in getattr(expr, "args", ()) if len(sets.deps(a)) == 2]
    if not mixed:  # mixed here, not below (m * p, max(m, p)): no sum to go through
        yield None
        return
    for arg in mixed:
        yield from _mixed_sums(arg, sets)


def _runs(sets, dtype) -> _Runs:
    """Per-row intervals chained into runs: the k-th interval of row y continues the k-th
    of row y - 1 when both ends do not decrease and it starts at most one past its end."""
    rows, a, b = sets
    n = len(rows)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return _Runs(empty, empty, empty, empty.astype(dtype), empty.astype(dtype))
    new_row = np.append(True, rows[1:] != rows[:-1])
    k = np.arange(n) - np.flatnonzero(new_row)[np.cumsum(new_row) - 1]
    order = np.argsort(k.astype(np.int32), kind="stable")  # rows sorted: (k, row) order
    r, lo, hi, k = rows[order], a[order], b[order], k[order]
    cont = np.append(
        False,
        (k[1:] == k[:-1])
        & (r[1:] == r[:-1] + 1)
        & (lo[1:] >= lo[:-1])
        & (hi[1:] >= hi[:-1])
        & (lo[1:] <= hi[:-1] + 1),
    )
    start = np.flatnonzero(~cont)
    end = np.append(start[1:] - 1, n - 1)
    width = int(k.max()) + 1
    return _Runs(r[start], r[end], start, lo.astype(dtype), hi.astype(dtype), width)


#: Tile-range contributions (runs x rows of tiles they meet, all tilings of one call) that
#: `_interval_rows` counts with numpy; past this, the compiled kernel (numba loads then).
INTERVAL_NUMPY_RANGES = 2**21


def _interval_rows(plan: _IntervalPlan, tx: np.ndarray, ty: np.ndarray, out: np.ndarray) -> None:
    """Non-empty tiles, full tiles and busy points per tiling (`_interval_rows_py`): in
    numpy while the ranges to unite are few, else compiled."""
    tx, ty = np.asarray(tx, np.int64), np.asarray(ty, np.int64)
    single = _single_rows(plan, ty)
    if single.any():
        for use, count in ((single, _interval_single_rows), (~single, _interval_rows)):
            if use.any():
                part = np.zeros((int(use.sum()), 3), np.int64)
                count(plan, tx[use], ty[use], part)
                out[use] = part
        return
    k, g = plan.kept, plan.gaps
    if _interval_ranges(plan, ty) <= INTERVAL_NUMPY_RANGES:
        _interval_rows_numpy(plan, tx, ty, out)
        return
    _interval_rows_kernel()(
        k.y0, k.y1, k.start, k.lo, k.hi, g.y0, g.y1, g.start, g.lo, g.hi,
        plan.extent_x, plan.extent_y, np.asarray(tx, np.int64), np.asarray(ty, np.int64), out,
    )  # fmt: skip


def _single_rows(plan: _IntervalPlan, ty: np.ndarray) -> np.ndarray:
    """The tilings whose rows of tiles are single rows (a y tile of 1) of a plan keeping at
    most one interval a row, with at most one gap a row (hip's `n % 8 == 0 and n <= nq`):
    `_interval_single_rows` counts them."""
    return (ty == 1) & (plan.kept.width <= 1) & (plan.gaps.width <= 1)


def _interval_single_rows(plan: _IntervalPlan, tx, ty, out) -> None:
    """`_interval_rows` where each row of tiles is one row with at most one kept interval
    and one gap (`_single_rows`): a row's non-empty tiles are those its interval [lo, hi]
    meets, lo // tx .. hi // tx (nothing to unite), so the counts are sums over the stored
    intervals, O(intervals) per tiling: non-empty tiles, busy points (the last tile short
    by tiles_x * tx - n_x), and full tiles (every tile but those a gap meets)."""
    n_x, n_y = plan.extent_x, plan.extent_y
    k_lo, k_hi = plan.kept.lo.astype(np.int64), plan.kept.hi.astype(np.int64)
    g_lo, g_hi = plan.gaps.lo.astype(np.int64), plan.gaps.hi.astype(np.int64)
    for q, t in enumerate(np.asarray(tx).tolist()):
        tiles_x = -(-n_x // t)
        last = k_hi // t
        nonempty = int((last - k_lo // t + 1).sum())
        busy = nonempty * t - (tiles_x * t - n_x) * int(np.count_nonzero(last == tiles_x - 1))
        notfull = int((g_hi // t - g_lo // t + 1).sum())
        out[q] = (nonempty, n_y * tiles_x - notfull, busy)


def _interval_ranges(plan: _IntervalPlan, ty: np.ndarray) -> int:
    """The tile ranges `_interval_rows_numpy` would unite for these tilings: a range per
    (tiling, run) and per (row of tiles, interval of a row)."""
    k, g = plan.kept, plan.gaps
    rows = int((-(-plan.extent_y // ty)).sum())
    return len(ty) * (len(k.y0) + len(g.y0)) + rows * (k.width + g.width)


def _loads_kernel(plan: _IntervalPlan, tx: np.ndarray, ty: np.ndarray) -> bool:
    """Whether `_interval_rows` of these tilings would load the compiled kernel: too many
    ranges for numpy, and the kernel not yet loaded in this process."""
    if _interval_rows_kernel.cache_info().currsize:
        return False
    ty = np.asarray(ty, np.int64)
    return _interval_ranges(plan, ty[~_single_rows(plan, ty)]) > INTERVAL_NUMPY_RANGES


def _interval_rows_numpy(plan: _IntervalPlan, tx, ty, out) -> None:
    """`_interval_rows_py` for all tilings at once, vectorized: every (tiling, run, row of
    tiles) range, sorted by (tiling, row, first tile); a range adds the tiles past the
    running maximum of its row's earlier ends. Where every range of a set ends at the last
    tile or starts at tile 0 (`_one_sided`), a row's union is one range: no sort."""
    n_x, n_y = plan.extent_x, plan.extent_y
    rows = -(-n_y // ty)
    tiles_x = -(-n_x // tx)
    offset = np.concatenate([[0], np.cumsum(rows)])  # first row of tiles of each tiling
    groups = int(offset[-1])
    tiling = np.repeat(np.arange(len(tx)), rows)  # each row of tiles' tiling
    totals, ends = [], []
    for runs in (plan.kept, plan.gaps):
        side = _one_sided(runs, n_x)
        if side:  # a row of tiles unites ranges sharing an end: one range, per tile height
            total, end = _one_sided_union(runs, side, n_x, n_y, tx, ty, offset)
            totals.append(total)
            ends.append(end)
            continue
        n_runs = len(runs.y0)
        i0 = runs.y0[None, :] // ty[:, None]
        count = (runs.y1[None, :] // ty[:, None] - i0 + 1).reshape(-1)
        pair = np.repeat(np.arange(len(tx) * n_runs), count)
        t, r = pair // max(n_runs, 1), pair % max(n_runs, 1)
        i = i0.reshape(-1)[pair] + np.arange(len(pair)) - np.repeat(np.cumsum(count) - count, count)
        ya = np.maximum(runs.y0[r], i * ty[t])
        yb = np.minimum(runs.y1[r], i * ty[t] + ty[t] - 1)
        j0 = runs.lo[runs.start[r] + ya - runs.y0[r]] // tx[t]
        j1 = runs.hi[runs.start[r] + yb - runs.y0[r]] // tx[t]
        group = offset[t] + i
        big = int(tiles_x.max()) + 2
        # lexsort((j0, group)) as one stable sort of one key (0 <= j0 < big): the same order
        order = np.argsort(group * big + j0, kind="stable")
        group, j0, j1 = group[order], j0[order], j1[order]
        running = np.maximum.accumulate(group * big + j1 + 1)
        before = np.maximum(np.concatenate([[0], running[:-1]]) - group * big - 1, -1)
        added = np.maximum(j1 - np.maximum(j0, before + 1) + 1, 0)
        total = np.bincount(group, added, minlength=groups).astype(np.int64)
        end = np.full(groups, -1, np.int64)
        if len(group):
            last = np.append(group[1:] != group[:-1], True)
            end[group[last]] = running[last] - group[last] * big - 1
        totals.append(total)
        ends.append(end)
    i = np.arange(groups) - offset[tiling]
    height = np.minimum(i * ty[tiling] + ty[tiling], n_y) - i * ty[tiling]
    short = np.where(ends[0] == tiles_x[tiling] - 1, tiles_x[tiling] * tx[tiling] - n_x, 0)
    width = totals[0] * tx[tiling] - np.where(totals[0] > 0, short, 0)
    out[:, 0] = np.bincount(tiling, totals[0], minlength=len(tx))
    out[:, 1] = rows * tiles_x - np.bincount(tiling, totals[1], minlength=len(tx))
    out[:, 2] = np.bincount(tiling, height * width, minlength=len(tx))


def _one_sided(runs: _Runs, n_x: int) -> str:
    """'prefix' where every interval of `runs` starts at 0 (a causal row's gaps), 'suffix'
    where every one reaches the last x (its kept keys), else '': then the ranges a row of
    tiles unites all share that end, and their union is one range (HiP's block selections
    at 1M: 16,384 rows of one interval each)."""
    if not len(runs.lo):
        return ""
    if bool(np.all(runs.lo == 0)):
        return "prefix"
    return "suffix" if bool(np.all(runs.hi == n_x - 1)) else ""


def _one_sided_union(runs: _Runs, side: str, n_x: int, n_y: int, tx, ty, offset):
    """(tiles united, last tile united or -1) per row of tiles of every tiling (rows of
    tiling t at offset[t]..), for runs whose intervals all start at 0 ('prefix': a row of
    tiles unites [0, (most hi) // tx]) or all end at the last x ('suffix': [(least lo) //
    tx, last tile]); hi and lo do not decrease along a run, and floor division keeps the
    order, so the union is `_interval_rows_numpy`'s. The extremes over each row of tiles
    depend on its height only: one `reduceat` per distinct height, not per tiling."""
    covered = runs.y1 - runs.y0 + 1
    before = np.cumsum(covered) - covered
    stored = np.arange(int(covered.sum()))  # each stored interval, run after run
    k = np.repeat(runs.start - before, covered) + stored
    y = np.repeat(runs.y0 - before, covered) + stored
    prefix = side == "prefix"
    most = np.maximum if prefix else np.minimum
    row = np.full(n_y, -1 if prefix else n_x, np.int64)  # none: below or past every x
    most.at(row, y, (runs.hi if prefix else runs.lo)[k])
    extreme = {h: most.reduceat(row, np.arange(0, n_y, h)) for h in np.unique(ty).tolist()}
    total = np.zeros(int(offset[-1]), np.int64)
    end = np.full(int(offset[-1]), -1, np.int64)
    for t, (w, h) in enumerate(zip(tx.tolist(), ty.tolist(), strict=True)):
        m, at = extreme[h], slice(int(offset[t]), int(offset[t + 1]))
        if prefix:
            end[at] = np.where(m >= 0, m // w, -1)
            total[at] = end[at] + 1
        else:
            last = -(-n_x // w) - 1
            met = m < n_x
            end[at] = np.where(met, last, -1)
            total[at] = np.where(met, last - m // w + 1, 0)
    return total, end


@cache
def _interval_rows_kernel():
    """One compiled kernel for every interval plan (cached on disk: no compile per filter)."""
    return _numba().njit(nogil=True, cache=True)(_interval_rows_py)


def _interval_rows_py(
    ky0, ky1, kst, klo, khi, gy0, gy1, gst, glo, ghi, n_x, n_y, tx, ty, out
):  # pragma: no cover (compiled)
    """Per tiling: for each row of y tiles, the union of the x tiles its kept runs meet
    (non-empty tiles; busy points: their real points) and of those its gap runs meet (the
    tiles that are not full). A run's rows ya..yb in the row meet the x tiles
    lo(ya) // tx .. hi(yb) // tx; the rows of tiles are swept in order with the runs
    meeting the current one (those started and not ended), whose ranges are sorted and
    united: memory O(runs), no array per row of tiles."""
    for t in range(tx.shape[0]):
        t_x, t_y = tx[t], ty[t]
        rows = (n_y + t_y - 1) // t_y
        tiles_x = (n_x + t_x - 1) // t_x
        short = tiles_x * t_x - n_x
        nonempty = 0
        busy = 0
        notfull = 0
        for which in range(2):
            y0s, y1s, sts, los, his = (
                (ky0, ky1, kst, klo, khi) if which == 0 else (gy0, gy1, gst, glo, ghi)
            )
            n_runs = y0s.shape[0]
            order = np.argsort(y0s, kind="mergesort")
            active = np.empty(n_runs, np.int64)
            row = np.empty(n_runs, np.int64)
            n_active = 0
            admitted = 0
            i = 0
            while i < rows:
                while admitted < n_runs and y0s[order[admitted]] // t_y <= i:
                    active[n_active] = order[admitted]
                    n_active += 1
                    admitted += 1
                if n_active == 0:
                    if admitted == n_runs:
                        break
                    i = y0s[order[admitted]] // t_y  # skip rows no run meets
                    continue
                m = 0
                for u in range(n_active):
                    r = active[u]
                    if y1s[r] // t_y < i:
                        continue  # ended before this row
                    active[m] = r
                    ya = max(y0s[r], i * t_y)
                    yb = min(y1s[r], i * t_y + t_y - 1)
                    j0 = los[sts[r] + ya - y0s[r]] // t_x
                    j1 = his[sts[r] + yb - y0s[r]] // t_x
                    row[m] = j0 * (tiles_x + 1) + j1
                    m += 1
                n_active = m
                if m > 32:
                    row[:m] = np.sort(row[:m])
                else:
                    for u in range(1, m):  # insertion sort: a row holds few ranges
                        q = row[u]
                        v = u - 1
                        while v >= 0 and row[v] > q:
                            row[v + 1] = row[v]
                            v -= 1
                        row[v + 1] = q
                end = -1
                total = 0
                for u in range(m):
                    j0 = row[u] // (tiles_x + 1)
                    j1 = row[u] - j0 * (tiles_x + 1)
                    if j1 > end:
                        total += j1 - max(j0, end + 1) + 1
                        end = j1
                if total > 0:
                    if which == 0:
                        nonempty += total
                        width = total * t_x - (short if end == tiles_x - 1 else 0)
                        busy += (min(i * t_y + t_y, n_y) - i * t_y) * width
                    else:
                        notfull += total
                i += 1
        out[t, 0] = nonempty
        out[t, 1] = rows * tiles_x - notfull
        out[t, 2] = busy
