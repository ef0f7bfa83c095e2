"""The analytic cycle/energy model, vectorized over many mappings of one template.

Per Einsum (Nayak et al., FuseMax, MICRO 2024, Section 6; Timeloop's compute model):
    cycles = sum over operators of count(op) x cycles(op on the bound unit)
             x batch x padding / lanes used
where lanes used is the product of the spatial factors of the ranks the Einsum iterates
(padding: a partial spatial tile or a partial last tile of a partition costs idle lanes).
Per kernel: `perfect` overlap takes the max over units, `serial` the sum, `pipelined` runs
T tiles of stages (units overlap inside a stage, stages add up). Compute overlaps memory:
kernel cycles = max(compute, DRAM bytes / DRAM bytes-per-cycle). DRAM traffic comes from the
loop nest by reuse analysis: a tensor is re-fetched once per iteration of each loop that is
irrelevant to it and sits above its innermost relevant loop (every such loop when the
tensor bypasses the on-chip buffers). Energy = sum of action counts x energy per action.

One code path: `evaluate_batch` takes numpy arrays of a template's free parameters (loop
and spatial factors, `parameter_names`) and computes every term above as array arithmetic;
`evaluate` is a batch of one.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, replace

import numpy as np

from einsim.einsum import Cascade, InfeasibleError, MappingError, Op
from einsim.einsum.analysis import _per_point_ops, einsum_op_counts
from einsim.einsum.ir import Call, Const, Size, Var, rank_of, value_ops, variables, walk
from einsim.einsum.occupancy import emptiness_filter, filter_token, occupancy

from ..report import BatchReport, Report, _Problem
from ..shape import cascade_names, split_shape
from .architecture import Architecture, ComputeUnit
from .area import area_by_component_mm2
from .mapping import Kernel, Mapping, Overlap, loop_keys, parameter_names


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """Switches for the places where papers account differently (named, never forked).

    Attributes:
        drop_exp_energy: charge no energy for exp (the FuseMax artifact's +Cascade run lost
            it through a misspelled key; off by default, on only to reproduce that run).
        fill_drain: charge systolic fill and drain per fold of a 2D array (see
            `_fill_drain_cycles`); None takes each unit's `fill_drain` flag from the
            architecture (off for the FuseMax presets, on for the systolic ones).
    """

    drop_exp_energy: bool = False
    fill_drain: bool | None = None


def _prod(values) -> np.ndarray | int:
    return functools.reduce(operator.mul, values, 1)


def _count(values) -> np.ndarray | float:
    """A product of loop factors that counts tiles or fetches, in float64: such products
    outgrow int64 (ten loops over ranks of 64K, and B x H: 2^65 tiles, which int64 arrays
    wrap silently, to 0 there) while every factor below 2^53 stays exact."""
    return functools.reduce(operator.mul, values, 1.0)


def _any(value) -> bool:
    """np.any of a batch quantity without its dispatch (count_nonzero: 4x faster than
    ndarray.any on a batch of a hundred rows; most quantities are scalars)."""
    return np.count_nonzero(value) > 0 if isinstance(value, np.ndarray) else bool(value)


def _relevant(cascade: Cascade, loop_rank: str, ranks: tuple[str, ...]) -> bool:
    """Whether a loop over `loop_rank` indexes a tensor with `ranks`: the same rank, or one
    of the same partition family (a loop over M1 indexes K[e,m])."""
    if loop_rank in ranks:
        return True
    part = cascade.partition_of.get(loop_rank)
    return part is not None and bool({part.rank, part.upper, part.lower} & set(ranks))


_INDEX_OPS = {
    Op.ADD: operator.add,
    Op.SUB: operator.sub,
    Op.MUL: operator.mul,
    Op.FLOORDIV: operator.floordiv,
    Op.MOD: operator.mod,
}


@functools.lru_cache(maxsize=64)
def _coarse_ranks(cascade: Cascade) -> dict[str, tuple[str, object]]:
    """Tensor ranks read through a many-to-one index of one other rank: {G: (H, index)}
    when some Einsum reads a tensor's g dimension as `h//(H//G)` (GQA: head h reads K/V
    group g). A loop over H then walks G too, coarsely; see `_KernelModel._refetch`."""
    coarse: dict[str, tuple[str, object]] = {}
    for einsum in cascade.einsums:
        for access in einsum.operands:
            ranks = cascade.tensor_ranks.get(access.tensor, ())
            for rank, index in zip(ranks, access.indices, strict=False):
                used = variables(index)
                if isinstance(index, Var) or len(used) != 1:
                    continue
                source = rank_of(next(iter(used)))
                arithmetic = all(not isinstance(e, Call) or e.op in _INDEX_OPS for e in walk(index))
                if arithmetic and source != rank and not _relevant(cascade, source, (rank,)):
                    coarse.setdefault(rank, (source, index))
    return coarse


def _index_of(index, values: np.ndarray, sizes) -> np.ndarray:
    """An index expression of one variable at every value of that variable."""
    if isinstance(index, Var):
        return values
    if isinstance(index, Size):
        return int(sizes[index.name])
    if isinstance(index, Const):
        return int(index.value)
    left, right = (_index_of(a, values, sizes) for a in index.args)
    return _INDEX_OPS[index.op](left, right)


class _HeadGroups:
    """Each head's group (`groups[h]`, an int64 array), hashed by identity: one object per
    (cascade, kernel, sizes) (`_coarse_of`), so the cache of `_block_groups` never hashes
    the heads (64K of them where a rank is read through P, as razor_attention's P-W+1)."""

    __slots__ = ("changes", "groups")

    def __init__(self, groups: np.ndarray):
        self.groups = groups
        steps = np.diff(groups)
        #: where the groups are monotone (h // (H // G), p - W + 1): changes[h] counts the
        #: heads 1..h whose group differs from the previous head's; else None
        self.changes = None
        if bool((steps >= 0).all()) or bool((steps <= 0).all()):
            self.changes = np.concatenate([[0], np.cumsum(steps != 0)])


def _group_visits(groups_of: _HeadGroups, per_iteration, iterations) -> tuple:
    """(sum, max) over the iterations of a loop of the distinct groups its block of
    `per_iteration` consecutive heads reads: `groups_of.groups[h]` is head h's group. Exact
    for any head/group ratio and partial blocks; arrays over a batch of mappings allowed."""
    per, its = np.asarray(per_iteration, np.int64), np.asarray(iterations, np.int64)
    if not per.ndim and not its.ndim:  # one tiling
        total, most = _block_groups(groups_of, int(per), int(its))
        return float(total), float(most)
    if per.shape != its.shape:
        per, its = np.broadcast_arrays(per, its)
    flat_per, flat_its = per.ravel(), its.ravel()
    if flat_per.size and min(flat_per.min(), flat_its.min()) >= 0:
        # the distinct pairs as one integer each (np.unique over rows sorts 10x slower)
        base = int(flat_its.max()) + 1
        codes, inverse = np.unique(flat_per * base + flat_its, return_inverse=True)
        pairs = zip((codes // base).tolist(), (codes % base).tolist(), strict=True)
    else:
        found, inverse = np.unique(
            np.stack([flat_per, flat_its], axis=1), axis=0, return_inverse=True
        )
        pairs = found.tolist()
    # one look-up per distinct tiling of the batch
    found = [_block_groups(groups_of, t, f) for t, f in pairs]
    total, most = np.array(found, np.float64).reshape(-1, 2).T
    inverse = inverse.ravel()
    return total[inverse].reshape(per.shape), most[inverse].reshape(per.shape)


@functools.lru_cache(maxsize=1 << 14)
def _block_groups(groups_of: _HeadGroups, t: int, f: int) -> tuple[int, int]:
    """(sum, max) over blocks i < f of the distinct groups among heads i*t .. i*t+t-1
    (`groups_of.groups[h]`: head h's group; heads past the last are none): the distinct
    (block, group) pairs, counted per block. A search meets the same (t, f) in every batch.

    Example:
        >>> heads = _HeadGroups(np.array([0, 0, 1, 1, 2, 2]))
        >>> _block_groups(heads, 3, 2)  # heads 0-2 read groups 0, 1; 3-5: 1, 2
        (4, 2)
    """
    groups = groups_of.groups
    heads = np.asarray(groups[: max(0, min(len(groups), t * f))], np.int64)
    if not heads.size:
        return 0, 0
    if groups_of.changes is not None:
        # monotone groups: a block's distinct groups are 1 + the changes inside it
        starts = np.arange(0, heads.size, t)
        ends = np.minimum(starts + t, heads.size)
        counts = 1 + groups_of.changes[ends - 1] - groups_of.changes[starts]
        return int(counts.sum()), int(counts.max())
    block = np.arange(heads.size, dtype=np.int64) // t
    pairs = np.unique(block * (int(heads.max() - heads.min()) + 1) + (heads - heads.min()))
    per_block = np.bincount(pairs // (int(heads.max() - heads.min()) + 1))
    return int(pairs.size), int(per_block.max())


def _op_counts(cascade: Cascade, name: str, sizes: tuple) -> tuple[dict, dict]:
    """(op counts of the points the masks keep, op counts of the whole space) of one Einsum;
    cached under the sizes the cascade knows (`cascade_names`): the mapper's sizes and the
    kernel model's, which add the batch ranks, share one count (they read none of those).
    A search costs the same cascade at the same sizes thousands of times, and a mask
    without a closed form (NATTEN) is counted by a pass over its iteration space.

    The whole space: every point of the iteration space, a partition's pair (M1, M0) taking
    M points (its padded last tile clipped at M): what an array that masks instead of
    skipping iterates.
    """
    known = cascade_names(cascade)
    return _op_counts_of(cascade, name, tuple(kv for kv in sizes if kv[0] in known))


@functools.lru_cache(maxsize=4096)
def _op_counts_of(cascade: Cascade, name: str, sizes: tuple) -> tuple[dict, dict]:
    """`_op_counts`, of the sizes the cascade knows."""
    einsum, extents = cascade.einsum(name), dict(sizes)
    counts = einsum_op_counts(cascade, einsum, extents)
    if not counts or einsum.where is None:
        return counts, counts
    ranks = {rank_of(v) for v in einsum.iter_vars}
    whole = 1
    for part in cascade.partitions:
        if {part.upper, part.lower} <= ranks:
            whole *= int(extents[part.rank])
            ranks -= {part.upper, part.lower}
    whole *= math.prod(int(extents[r]) for r in ranks)
    return counts, _per_point_ops(einsum, whole)  # the op mix of einsum_op_counts


#: Shares of non-empty tiles per (cascade, Einsum kind, sizes token, fixed extents, varying
#: ranks): (sorted codes of the tilings seen, their shares, the share they all have or None,
#: each code's index among them at that code, -1 where none, where at most `_DENSE_MAX`
#: codes can be: one gather finds a batch's rows, not a binary search per row),
#: each ended by a sentinel code above every code (share NaN), so a look-up needs no bounds
#: check. A search meets the same tilings in many batches, and a mask without a closed form
#: (NATTEN) costs a pass over its iteration space per tiling. The kind is (filter token,
#: iterated ranks): Einsums with one filter over one iteration space (QK[m1,m0,p],
#: LM[m1,p,m0]) have one share.
_SHARES: dict[tuple, tuple] = {}
_SHARES_MAX = 1 << 22  # tilings remembered before the table starts afresh
_SHARES_HELD = [0]  # tilings in the table
_UNSEEN = object()  # a memo's mark for a key not computed yet (its value may be None)
_SENTINEL = np.iinfo(np.int64).max  # above every code (`_tiling_codes`: below 2^62)
_NONE_SEEN = (np.array([_SENTINEL], np.int64), np.array([np.nan]), _UNSEEN, None)
_DENSE_MAX = 1 << 15  # the most codes a table indexes directly (`_SHARES`)


def _store(table: dict, key, value, most: int):
    """table[key] = value, the table started afresh first where it holds `most` entries
    (every module-level memo here: a long session costs many searches); returns value."""
    if len(table) >= most:
        table.clear()
    table[key] = value
    return value


def _tiling_codes(columns: list, limits: list[int], n: int) -> np.ndarray | None:
    """Each row's tiling as one integer, mixed radix over the ranks (column k in
    0..limits[k]): the key of `_tile_shares`; None where the radix outgrows int64. No
    column: one row, code 0."""
    if math.prod(limit + 1 for limit in limits) >= 1 << 62:
        return None
    if not columns:
        return np.zeros(1, np.int64)
    code = np.asarray(columns[0], np.int64)
    for limit, column in zip(limits[1:], columns[1:], strict=True):
        code = code * (limit + 1) + column
    return code if code.shape == (n,) else np.broadcast_to(code, (n,))


def _tile_shares(
    cascade: Cascade,
    name: str,
    kind: tuple,
    sizes: tuple,
    fixed: dict,
    varying: dict,
    code: np.ndarray | None,
    token: int,
    held_as: tuple | None = None,
    one: bool = False,
):
    """(tiles - empty) / tiles of Einsum `name` (of `kind`, see `_SHARES`) for each row of
    the varying columns (with the fixed extents; `code`: the rows' `_tiling_codes`; `token`:
    the sizes' `_SIZES_TOKENS` entry; `held_as`: (sorted fixed items, varying ranks), given
    where the caller has it): one `occupancy` call for the distinct tilings not seen before,
    in code order. With `one`, a float where every tiling the table holds has that share
    (1.0: a mask that keeps a point in every tile): no row's share to gather."""
    if code is None:  # no single-integer code: ask occupancy for the distinct rows
        extents = dict(sizes)
        limits = [int(extents[rank]) for rank in varying]
        columns, inverse = _distinct_rows(list(varying.values()), limits)
        tile = fixed | dict(zip(varying, columns, strict=True))
        found = occupancy(cascade, extents, tile, [name])[name]
        tiles = np.asarray(found.tiles, dtype=np.float64).reshape(-1)
        return ((tiles - np.asarray(found.empty).reshape(-1)) / tiles)[inverse]
    if held_as is None:
        held_as = (tuple(sorted(fixed.items())), tuple(varying))
    key = (cascade, kind, token, *held_as)
    if _SHARES_HELD[0] > _SHARES_MAX:
        _SHARES.clear()
        _SHARES_HELD[0] = 0
    codes, shares, same, dense = _SHARES.get(key) or _NONE_SEEN
    if dense is not None:  # each code's index in `codes` at that code, -1 where none
        at = dense[code]
        if at.min() >= 0:
            return same if one and type(same) is float else shares[at]
        seen = at >= 0
    else:
        at = codes.searchsorted(code)  # the sentinel last: every code lands in the table
        seen = codes[at] == code
        if np.count_nonzero(seen) == seen.size:
            return same if one and type(same) is float else shares[at]
    new_codes, extents = np.unique(code[~seen]), dict(sizes)
    tile, rest = dict(fixed), new_codes
    for rank in reversed(varying):  # decode the mixed radix, last rank first
        base = int(extents[rank]) + 1
        tile[rank], rest = rest % base, rest // base
    tile = fixed | {rank: tile[rank] for rank in varying}  # the ranks in `varying`'s order
    found = occupancy(cascade, extents, tile, [name])[name]
    tiles = np.asarray(found.tiles, dtype=np.float64).reshape(-1)
    new = (tiles - np.asarray(found.empty).reshape(-1)) / tiles
    at = codes.searchsorted(new_codes)  # merge (both sorted, none held): the sentinel stays last
    codes, shares = np.insert(codes, at, new_codes), np.insert(shares, at, new)
    first = float(new[0])
    if same is not None and np.count_nonzero(new == first) == new.size:
        same = first if same is _UNSEEN or same == first else None
    else:
        same = None
    space = math.prod(int(extents[rank]) + 1 for rank in varying)
    if space <= _DENSE_MAX:
        if dense is None:
            _SHARES_HELD[0] += space // 2  # a dense index weighs half a tiling a code
        dense = np.full(space, -1, np.intp)
        dense[codes[:-1]] = np.arange(len(codes) - 1)
    _SHARES[key] = (codes, shares, same, dense)
    _SHARES_HELD[0] += len(new_codes)
    return same if one and type(same) is float else shares[codes.searchsorted(code)]


def _most(shares: list) -> np.ndarray | float:
    """Elementwise maximum of shares (arrays or floats); one array shared by several Einsums
    (the same filter on the same cut ranks) is taken once. A share is at most 1, so a share
    of the float 1.0 makes the maximum 1.0 in every row."""
    if len(shares) < 2:
        return shares[0] if shares else 1.0
    if any(type(s) is float and s == 1.0 for s in shares):
        return 1.0
    distinct = list({id(s): s for s in shares}.values())
    return functools.reduce(np.maximum, distinct)


def _distinct_rows(columns: list[np.ndarray], limits: list[int]):
    """The distinct rows of integer columns (column k in 1..limits[k]) and each row's index
    among them, in O(n) through look-up tables (np.unique over rows sorts: 10x slower).

    Example:
        >>> cols, inverse = _distinct_rows([np.array([4, 2, 4]), np.array([1, 1, 1])], [4, 1])
        >>> [c.tolist() for c in cols], inverse.tolist()
        ([[2, 4], [1, 1]], [1, 0, 1])
    """
    if not columns:
        return [], np.zeros(0, dtype=np.int64)
    if len(columns[0]) <= 1024 and math.prod(limit + 1 for limit in limits) < 1 << 62:
        # a short batch: one sort of a mixed-radix code beats the look-up tables
        key = np.asarray(columns[0], np.int64)
        for column, limit in zip(columns[1:], limits[1:], strict=True):
            key = key * (limit + 1) + column
        unique, inverse = np.unique(key, return_inverse=True)
        out = []
        for limit in reversed(limits[1:]):
            out.append(unique % (limit + 1))
            unique = unique // (limit + 1)
        return [unique, *out[::-1]], inverse.reshape(-1)
    key, values = np.zeros(len(columns[0]), dtype=np.int64), []
    for column, limit in zip(columns, limits, strict=True):
        if limit > 8 * len(column) + 4096:  # a table over a long rank costs more than a sort
            found, code = np.unique(column, return_inverse=True)
            key = key * len(found) + code.reshape(-1)
            values.append(found)
            continue
        present = np.zeros(limit + 1, dtype=bool)
        present[column] = True
        found = np.flatnonzero(present)
        code = np.zeros(limit + 1, dtype=np.int64)
        code[found] = np.arange(len(found))
        key = key * len(found) + code[column]
        values.append(found)
    space = math.prod(len(v) for v in values)
    if space <= 4 * len(key) + 4096:
        present = np.zeros(space, dtype=bool)
        present[key] = True
        unique = np.flatnonzero(present)
        index = np.zeros(space, dtype=np.int64)
        index[unique] = np.arange(len(unique))
        inverse = index[key]
    else:
        unique, inverse = np.unique(key, return_inverse=True)
    out = []
    for found in reversed(values):
        out.append(found[unique % len(found)])
        unique = unique // len(found)
    return out[::-1], inverse.reshape(-1)


@functools.lru_cache(maxsize=64)
def _iterated(cascade: Cascade) -> dict[str, tuple[tuple[str, ...], frozenset, bool]]:
    """(the ranks it iterates, in its iteration variables' order; those as a set; whether it
    computes: operators on values or a reduction) of each Einsum, by name: what every
    `_Members` of the cascade reads (a search builds one per grouping, hundreds)."""
    return {
        e.output: (
            ranks := tuple(rank_of(v) for v in e.iter_vars),
            frozenset(ranks),
            bool(value_ops(e.expr) or e.reduced_vars),
        )
        for e in cascade.einsums
    }


class _Members:
    """What a kernel's Einsums are, apart from any tiling: each one's iterated ranks, its
    filter's token, and the plans of `_KernelModel.share` by the set of cut ranks. Shared by
    every candidate and template that groups the same Einsums (`_members`): a search costs
    hundreds of templates over a few dozen groupings.
    """

    def __init__(self, cascade: Cascade, einsums: tuple[str, ...]):
        chosen = [cascade.einsum(e) for e in einsums]  # raises with the known names
        self.names = tuple(einsums)
        iterated = _iterated(cascade)
        self.ranks = {e.output: iterated[e.output][1] for e in chosen}
        #: every rank some member iterates, in the members' order (`tile_extents`)
        self.all_ranks = tuple(dict.fromkeys(r for e in chosen for r in iterated[e.output][0]))
        #: each filtered member's token of its `emptiness_filter`: the share of non-empty
        #: tiles is that filter's, so members whose data conjuncts differ share it
        self.tokens = {
            e.output: filter_token(emptiness_filter(e.where)) for e in chosen if e.where is not None
        }  # fmt: skip
        #: `_SHARES`' kind of each filtered member: (filter token, iterated ranks)
        self.kinds = {name: (token, self.ranks[name]) for name, token in self.tokens.items()}
        #: the ranks a filtered member's share depends on (`_filter_ranks`)
        self.filter_ranks = {
            e.output: _filter_ranks(cascade, e.output) for e in chosen if e.where is not None
        }  # fmt: skip
        self.filtered = tuple(
            (e.output, self.ranks[e.output]) for e in chosen if e.where is not None
        )
        #: the distinct iterated ranks of the filtered members, and each one's among them:
        #: a plan cuts each distinct set once (`share_plan`)
        self._filtered_ranks = tuple(dict.fromkeys(ranks for _, ranks in self.filtered))
        at = {ranks: i for i, ranks in enumerate(self._filtered_ranks)}
        self._filtered_at = tuple((f, at[ranks]) for f, ranks in self.filtered)
        self._projected: dict[frozenset, _SharePlan] = {}
        self._plan_objects: dict[tuple, _SharePlan] = {}
        computing = [e for e in chosen if iterated[e.output][2]]
        self.computing_ranks = frozenset(r for e in computing for r in self.ranks[e.output])
        self._roots = {
            r: (part.rank if (part := cascade.partition_of.get(r)) is not None else r)
            for r in self.all_ranks
        }
        self._plans: dict[tuple, _SharePlan] = {}
        self._einsum_plans: dict[frozenset, tuple] = {}
        self._cascade = cascade
        self._reads: dict[str, _Reads] = {}
        self._roles: dict[frozenset, tuple] = {}

    def reads(self, tensor: str) -> _Reads:
        """`_reads` of a tensor in this group of Einsums."""
        found = self._reads.get(tensor)
        if found is None:
            found = self._reads[tensor] = _reads(self._cascade, self.names, tensor)
        return found

    def roles(self, kept: frozenset) -> tuple:
        """`_tensor_roles` of this group of Einsums keeping `kept` on chip."""
        found = self._roles.get(kept)
        if found is None:
            found = self._roles[kept] = _tensor_roles(self._cascade, self.names, kept)
        return found

    def einsum_plans(self, cut: frozenset) -> tuple[_SharePlan, ...]:
        """`share_plan(name, None, cut)` of every member, in the kernel's order."""
        found = self._einsum_plans.get(cut)
        if found is None:
            found = tuple(self.share_plan(name, None, cut) for name in self.names)
            self._einsum_plans[cut] = found
        return found

    def share_plan(self, name: str | None, within, cut: frozenset) -> _SharePlan:
        """The (filtered Einsum, ranks its tile is cut along) pairs whose shares `share`
        takes the most of, for the tiles cut along `cut` (see `_KernelModel.share`)."""
        key = (name, within, cut)
        found = self._plans.get(key)
        if found is None:
            if name is not None:
                cut = cut & self.ranks[name]
                if name in self.tokens:
                    ranks = self.ranks[name]
                    pairs = ((name, cut & ranks),) if cut & ranks else ()
                    found = self._plans[key] = self._interned(pairs)
                    return found
            else:
                cut = frozenset(r for r in cut if self._roots.get(r, r) in within)
            found = self._projected.get(cut)
            if found is None:  # every filtered member, cut along `cut`: one plan per cut
                cuts = [cut & ranks for ranks in self._filtered_ranks]
                pairs = tuple((f, cuts[i]) for f, i in self._filtered_at if cuts[i])
                found = self._projected[cut] = self._interned(pairs)
            self._plans[key] = found
        return found

    def _interned(self, pairs: tuple) -> _SharePlan:
        """The `_SharePlan` of (filtered Einsum, cut ranks) pairs, one object per distinct
        list of items: one item per (filter token, the ranks cut that the filter reads:
        `_filter_ranks`), since those make the share (`_KernelModel._filtered_share` keys
        its memo by them: the first pair's Einsum counts it). The item is cut in the rows
        that cut any of its pairs' ranks (their union): each pair would add the same share
        in its own rows, and the most of equal shares is that share."""
        seen: dict[tuple, list] = {}
        for f, ranks in pairs:
            key = (self.tokens[f], ranks & self.filter_ranks[f])
            if key not in seen:
                seen[key] = [f, ranks, key]
            else:
                seen[key][1] = seen[key][1] | ranks
        items = tuple(tuple(item) for item in seen.values())
        found = self._plan_objects.get(items)
        if found is None:
            found = self._plan_objects[items] = _SharePlan(items)
        return found


class _SharePlan:
    """What `_KernelModel._plan_share` takes the most of: `items`, (filtered Einsum, ranks
    its tile is cut along, (its filter token, those ranks)) each. One object per distinct
    items of a `_Members` (`_Members._interned`), hashed by identity: the models' memos key
    by it without hashing the items."""

    __slots__ = ("items",)

    def __init__(self, items: tuple):
        self.items = items


@functools.lru_cache(maxsize=1 << 12)
def _filter_ranks(cascade: Cascade, name: str) -> frozenset:
    """The ranks Einsum `name` iterates whose tiles its filter can tell apart: those of a
    variable the filter reads (in a tensor it reads too), and every rank of a partition (a
    partial last tile has points no tile of it keeps, whatever the filter). Along any other
    rank the filter is constant, so a tile cut there is empty exactly where the whole of it
    is: tiles and empty tiles both scale by the cut's tile count, and (tiles - empty) /
    tiles is the same float (integers below 2^53, one division) whether that rank is cut
    or held whole. The filter is the Einsum's `emptiness_filter` (a data conjunct decides no
    tile's emptiness). Once per Einsum (a search builds hundreds of kernels)."""
    read = {rank_of(v) for v in variables(emptiness_filter(cascade.einsum(name).where))}
    ranks = _iterated(cascade)[name][1]
    return frozenset(r for r in ranks if r in cascade.partition_of or r in read)


@functools.lru_cache(maxsize=1024)
def _members(cascade: Cascade, einsums: tuple[str, ...]) -> _Members:
    return _Members(cascade, einsums)


@functools.lru_cache(maxsize=1024)
def _coarse_of(cascade: Cascade, einsums: tuple[str, ...], sizes: tuple) -> tuple[dict, dict]:
    """(coarse rank -> its source, coarse rank -> its index at each source value) of the
    coarse ranks (G of GQA) that no computing Einsum of the kernel iterates itself: a tile
    then holds only the groups of its heads (views such as BK do not count)."""
    computing = _members(cascade, einsums).computing_ranks
    extents = dict(sizes)
    coarse: dict[str, str] = {}
    groups_of: dict[str, _HeadGroups] = {}
    for rank, (source, _) in _coarse_ranks(cascade).items():
        if source in extents and rank not in computing:
            coarse[rank] = source
            groups_of[rank] = _head_groups(cascade, rank, sizes)
    return coarse, groups_of


@functools.lru_cache(maxsize=256)
def _head_groups(cascade: Cascade, rank: str, sizes: tuple) -> _HeadGroups:
    """The group of each value of coarse `rank`'s source (its index at every source value),
    one object per (cascade, rank, sizes) whatever the kernel: the source can be a sequence
    rank (biformer's regions of P at 1M: one array of 1M, not one per kernel)."""
    source, index = _coarse_ranks(cascade)[rank]
    extents = dict(sizes)
    heads = np.arange(int(extents[source]))
    at = np.broadcast_to(_index_of(index, heads, extents), heads.shape)
    return _HeadGroups(np.asarray(at, np.int64))


@functools.lru_cache(maxsize=1 << 14)
def _reuse_plan(
    cascade: Cascade,
    loops: tuple[tuple[str, str], ...],
    offchip: str,
    ranks: tuple[str, ...],
    kept_or_output: bool,
    offchip_only: bool,
    coarse: tuple[tuple[str, str], ...],
) -> tuple[tuple[int, ...], tuple]:
    """The loops (by index into `loops`, each (level, rank)) that re-fetch a tensor with
    `ranks` (see `_KernelModel._refetch`): (those whose factors multiply, (rank, the loops
    over a rank that reads one of the tensor's ranks coarsely, the other loops over that
    rank) pairs)."""
    coarse_of = dict(coarse)
    sources = {coarse_of[r]: r for r in ranks if r in coarse_of}
    multiply, walked = [], {}
    for i in _refetching(cascade, loops, offchip, ranks, kept_or_output, offchip_only):
        rank = loops[i][1]
        if rank in sources:
            walked.setdefault(rank, []).append(i)
        else:
            multiply.append(i)
    groups = tuple(
        (rank, tuple(idx), tuple(j for j, lp in enumerate(loops) if j not in idx and lp[1] == rank))
        for rank, idx in walked.items()
    )
    return tuple(multiply), groups


@functools.lru_cache(maxsize=1 << 14)
def _fetch_need(
    cascade: Cascade,
    loops: tuple[tuple[str, str], ...],
    offchip: str,
    ranks: tuple[str, ...],
    kept_or_output: bool,
) -> frozenset:
    """The partition roots along which a tensor's off-chip fetches are cut (see
    `_KernelModel._fetched_share`): its own ranks, and the off-chip loops that re-fetch it."""
    root = lambda r: p.rank if (p := cascade.partition_of.get(r)) is not None else r  # noqa: E731
    refetching = _refetching(cascade, loops, offchip, ranks, kept_or_output, True)
    return frozenset({root(r) for r in ranks}) | {root(loops[i][1]) for i in refetching}


def _refetching(cascade, loops, offchip, ranks, kept_or_output, offchip_only) -> list[int]:
    """The loops (indices into `loops`, each (level, rank); the off-chip ones only, or all)
    that re-fetch a tensor with `ranks`: those irrelevant to it, above the innermost
    relevant one when the tensor is kept or an output (below it, the kept tile serves)."""
    chosen = [i for i, (level, _) in enumerate(loops) if level == offchip or not offchip_only]
    relevant = [_relevant(cascade, loops[i][1], ranks) for i in chosen]
    innermost = max((k for k, r in enumerate(relevant) if r), default=-1)
    return [
        i
        for k, i in enumerate(chosen)
        if not relevant[k] and not (kept_or_output and k >= innermost)
    ]


@functools.lru_cache(maxsize=1024)
def _tensor_roles(
    cascade: Cascade, einsums: tuple[str, ...], kept: frozenset
) -> tuple[tuple[str, tuple[str, ...], bool, bool], ...]:
    """(tensor, ranks, read here, written out) of each tensor a kernel moves off-chip: read
    by a member and produced elsewhere, or produced by a member and read by a later kernel
    or a cascade output."""
    members = set(einsums)
    out = []
    for tensor, ranks in cascade.tensor_ranks.items():
        producer = cascade.producers.get(tensor)
        produced_here = producer is not None and producer.output in members
        readers = set(cascade.graph.successors(tensor))
        read_here = bool(readers & members) and not produced_here
        written_out = produced_here and (tensor in cascade.outputs or bool(readers - members))
        if read_here or written_out:
            out.append((tensor, ranks, read_here, written_out))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Reads:
    """How a kernel's Einsums touch one tensor it keeps on chip (`_KernelModel.buffer_words`):
    the member producing it (or None), the members reading it (cascade order), the ranks of
    the slice a read of an iterative rank's terminal element fetches (or None), and whether
    some read walks the whole tensor."""

    producer: str | None
    readers: tuple[str, ...]
    terminal_ranks: tuple[str, ...] | None
    fetched: bool


@functools.lru_cache(maxsize=64)
def _read_table(cascade: Cascade) -> dict[str, tuple[tuple[str, bool, bool], ...]]:
    """(reading Einsum, whether one of its reads takes an iterative rank's terminal element,
    whether one walks the tensor) of each Einsum reading a tensor, in cascade order, by
    tensor: what `_reads` asks of every group of Einsums, read once per cascade."""
    table: dict[str, list] = {}
    for einsum in cascade.einsums:
        kinds: dict[str, list[bool]] = {}
        for access in einsum.operands:
            terminal = cascade.read_kind(einsum, access)[1]
            seen = kinds.setdefault(access.tensor, [False, False])
            seen[0 if terminal else 1] = True
        for tensor, (terminal, fetched) in kinds.items():
            table.setdefault(tensor, []).append((einsum.output, terminal, fetched))
    return {tensor: tuple(rows) for tensor, rows in table.items()}


@functools.lru_cache(maxsize=4096)
def _reads(cascade: Cascade, einsums: tuple[str, ...], tensor: str) -> _Reads:
    members = set(einsums)
    producer = cascade.producers.get(tensor)
    readers, terminal, fetched = [], None, False
    for output, terminal_read, walked in _read_table(cascade).get(tensor, ()):
        if output not in members:
            continue
        readers.append(output)
        if terminal_read:
            terminal = tuple(
                r
                for r, it in zip(
                    cascade.tensor_ranks[tensor], cascade.iterative_dims[tensor], strict=True
                )
                if not it
            )
        fetched = fetched or walked
    here = producer.output if producer is not None and producer.output in members else None
    return _Reads(here, tuple(readers), terminal, fetched)


@dataclass(frozen=True, slots=True)
class _EinsumPlan:
    """`_KernelModel.einsum_cycles`' view of one Einsum apart from the tiling: the Einsum,
    its unit (name and object), its `_Work` (None: no operations), the key of its lanes
    (unit, unrolled ranks, the names of the partitions it iterates: `_KernelModel._lanes`),
    whether systolic fill and drain are charged (`_KernelModel._fill_drain_cycles`), and
    the unrolled ranks and iterated partitions themselves; `lanes_id`: an int per distinct
    lanes key (`_LANES_IDS`), what `_KernelModel._lanes` keys its memo by."""

    einsum: object
    unit_name: str | None
    unit: ComputeUnit | None
    work: _Work | None
    lanes_key: tuple
    fill_drain: bool
    ranks: tuple[str, ...] = ()
    parts: tuple = ()
    lanes_id: int = -1


#: An int per distinct `_EinsumPlan.lanes_key`, drawn from a counter (never reused after
#: the table starts afresh: equal keys then take two ids, and share nothing).
_LANES_IDS: dict[tuple, int] = {}
_NEXT_LANES_ID = itertools.count()


#: {Einsum: `_EinsumPlan`} by (architecture, cascade, the kernel's Einsums, binding, spatial
#: ranks, chained ops, sizes token, options): a search costs the same kernel structure in
#: many batches and templates. The architecture is keyed by identity (held in the value):
#: one object in a search, a new one per batch where the batch sets its numbers.
_EINSUM_PLANS: dict[tuple, tuple[Architecture, dict, dict]] = {}
#: {(Einsum, unit name, the unit's spatial ranks): `_EinsumPlan`} by (architecture, cascade,
#: chained ops, sizes token, options): an Einsum's plan depends on its kernel only through
#: its unit and what that unit unrolls, so kernels of other groupings share it (the third
#: item of an `_EINSUM_PLANS` value).
_UNIT_PLANS: dict[tuple, tuple[Architecture, dict]] = {}


class _KernelLayout:
    """What `_KernelModel` derives from a kernel's structure alone, before any factor value:
    the sizes' token, the kernel's tables, its loops' keys, levels and parameter names, the
    default spatial factors and the checks to run on the batch's values. One per (kernel,
    architecture, sizes, cascade, options, skipping, free-parameter names) (`_layout`): a
    search costs each kernel of a template in several batches and chunks.

    A malformed kernel raises here, before anything is kept (the same `MappingError`s, in
    the same order, as a model built from scratch)."""

    def __init__(self, cascade, arch, kernel: Kernel, sizes, batch, options, skip_empty_tiles,
                 params, where):  # fmt: skip
        #: filled on first use (`_KernelModel.footprint_bytes`, `dram_traffic`, `buffer_words`,
        #: `_refetch_factor`, `_fetched_share`), where a model built from scratch computes them
        self.kept_ranks: dict[int, tuple] = {}
        self.sizes_key = tuple(sizes.items())
        token = _SIZES_TOKENS.get(self.sizes_key)
        if token is None:
            token = _store(_SIZES_TOKENS, self.sizes_key, next(_NEXT_TOKEN), 1 << 14)
        self.sizes_token = token
        self.storage = _storage_rows(arch, cascade, kernel, token, batch)
        self.units = dict(kernel.binding)
        self.keep = dict(kernel.keep)  # `kernel.kept_at`, one dict
        self.offchip = arch.levels[0].name
        self.members = _members(cascade, kernel.einsums)  # raises with the known names
        self.skipping = skip_empty_tiles and bool(self.members.filtered)
        self.loop_sig = tuple((loop.level, loop.rank) for loop in kernel.loops)
        self.coarse, self.groups_of = _coarse_of(cascade, kernel.einsums, self.sizes_key)
        self.coarse_key = tuple(self.coarse.items())
        #: `_reuse_plan`s and `_fetch_need`s by their other arguments, shared by the
        #: kernels with the same loops (level, rank) (`_LOOP_TABLES`)
        self.reuse, self.fetch_need = _loop_tables(
            cascade, self.loop_sig, self.offchip, self.coarse_key
        )
        self.keys = loop_keys(kernel)
        self.levels = [_level_index(arch, loop.level, where) for loop in kernel.loops]
        #: the loops over each rank (indices into kernel.loops, outer first)
        self.looped: dict[str, list[int]] = {}
        for i, loop in enumerate(kernel.loops):
            if loop.rank not in sizes:
                raise MappingError(f"{where}loops[{i}]: unknown rank {loop.rank!r}")
            self.looped.setdefault(loop.rank, []).append(i)
        self._spatial(arch, kernel, sizes, params, where)
        self._loops(arch, kernel, sizes, params, where)
        key = (id(arch), cascade, kernel.einsums, kernel.binding, kernel.spatial,
               kernel.chained_ops, self.sizes_token, options)  # fmt: skip
        held = _EINSUM_PLANS.get(key)
        if held is None or held[0] is not arch:
            by = (id(arch), cascade, kernel.chained_ops, self.sizes_token, options)
            shared = _UNIT_PLANS.get(by)
            if shared is None or shared[0] is not arch:
                shared = _store(_UNIT_PLANS, by, (arch, {}), 1 << 10)
            held = _store(_EINSUM_PLANS, key, (arch, {}, shared[1]), 1 << 12)
        self.einsum_plans: dict[str, _EinsumPlan] = held[1]
        self.unit_plans: dict[tuple, _EinsumPlan] = held[2]
        #: the ranks each unit unrolls (`kernel.spatial` as a dict)
        self.spatial_of = dict(kernel.spatial)

    def _spatial(self, arch, kernel: Kernel, sizes, params, where) -> None:
        """`spatial_defaults` and `spatial_checks`: (rank, parameter, smallest dimension,
        message) of each rank a unit unrolls, which `_KernelModel._spatial_factors` checks."""
        factors: dict[str, int] = {}
        dims: dict[str, int] = {}
        for unit_name, ranks in kernel.spatial:
            unit = arch.unit(unit_name, where)
            if len(ranks) != len(unit.dims):
                raise MappingError(
                    f"{where}spatial.{unit_name}: {len(ranks)} rank(s) for a unit with "
                    f"{len(unit.dims)} dimension(s) {unit.dims}"
                )
            for rank, dim in zip(ranks, unit.dims, strict=True):
                if rank not in sizes:
                    raise MappingError(f"{where}spatial.{unit_name}: unknown rank {rank!r}")
                # A rank unrolled on several units takes the tile the smallest one holds.
                dims[rank] = np.minimum(dims.get(rank, dim), dim)
                factors[rank] = np.minimum(int(sizes[rank]), dims[rank])
        self.spatial_defaults = dict(factors) | dict(kernel.spatial_factors)
        self.spatial_checks = tuple(
            (
                rank,
                f"{kernel.name}.spatial.{rank}",
                dims[rank],
                f"{kernel.name}: spatial factor {{:.0f}} of {rank} is larger than the "
                "array dimension {:.0f}",
            )
            for rank in factors
        )

    def _loops(self, arch, kernel: Kernel, sizes, params, where) -> None:
        """`loop_params` ((parameter, the factor without it) per loop), the `fit` loop (or
        None), the `rest` loops, `capacity_checks` (level, capacity, message) of the levels
        that keep tensors, and `inner_first` (loop, rank, rank size) innermost first."""
        loops, name = kernel.loops, kernel.name
        self.loop_params = tuple(
            (f"{name}.{key}", loop.factor if isinstance(loop.factor, int) else 1)
            for key, loop in zip(self.keys, loops, strict=True)
        )
        free = [key not in params for key, _ in self.loop_params]
        fits = [i for i, lp in enumerate(loops) if lp.factor == "fit" and free[i]]
        self.rests = [i for i, lp in enumerate(loops) if lp.factor == "rest" and free[i]]
        if len(fits) > 1:
            raise MappingError(f"{where}loops: at most one factor may be 'fit'")
        self.fit = fits[0] if fits else None
        self.capacity_checks = tuple(
            (
                level_index,
                level.capacity_bytes,
                f"{name}: tensors kept at {level.name} need {{:.0f}} B, capacity {{:.0f}} B",
            )
            for level_index, level in enumerate(arch.levels)
            if level.capacity_bytes is not None and self.keep.get(level.name, ())
        )
        self.inner_first = tuple(
            (i, loops[i].rank, int(sizes[loops[i].rank])) for i in reversed(range(len(loops)))
        )


class _StorageRows:
    """A kernel's off-chip and on-chip rows (`_KernelModel._dram_rows`, `_buffer_rows`) and
    spilled bytes, filled on first use: they depend on its Einsums, what it keeps where, its
    spill fraction, the sizes and batch multiplier and the architecture, not on its loops,
    so the kernels of a search that differ only in loops share them (`_STORAGE`)."""

    __slots__ = ("buffer_rows", "dram_rows", "spilled_bytes")

    def __init__(self):
        self.dram_rows: tuple | None = None
        self.spilled_bytes = 0.0
        self.buffer_rows: tuple | None = None


#: (architecture, `_StorageRows`) by (architecture identity, cascade, Einsums, keep, spill
#: fraction, sizes token, batch multiplier).
_STORAGE: dict[tuple, tuple[Architecture, _StorageRows]] = {}


def _storage_rows(arch, cascade, kernel: Kernel, token: int, batch) -> _StorageRows:
    """`_STORAGE`' entry of a kernel."""
    key = (id(arch), cascade, kernel.einsums, kernel.keep, kernel.spill_fraction, token, batch)
    held = _STORAGE.get(key)
    if held is None or held[0] is not arch:
        held = _store(_STORAGE, key, (arch, _StorageRows()), 1 << 12)
    return held[1]


#: (`_reuse_plan`s, `_fetch_need`s) by (cascade, loops (level, rank), off-chip level, coarse
#: ranks): what a kernel's re-fetches depend on apart from its factors, shared by the many
#: kernels of a search with the same loops (`_KernelLayout.reuse`, `.fetch_need`).
_LOOP_TABLES: dict[tuple, tuple[dict, dict]] = {}


def _loop_tables(cascade, loop_sig: tuple, offchip: str, coarse_key: tuple) -> tuple[dict, dict]:
    """`_LOOP_TABLES`' entry of a kernel's loops."""
    key = (cascade, loop_sig, offchip, coarse_key)
    found = _LOOP_TABLES.get(key)
    if found is None:
        found = _store(_LOOP_TABLES, key, ({}, {}), 1 << 12)
    return found


#: By the identities of (kernel, architecture, sizes, cascade), the batch multiplier, the
#: options and skipping: (the objects, held; the kernel's loop parameter names; its
#: `_KernelLayout`s by which of those names the batch sets). Only a loop's parameter changes
#: a layout (a free `rest` or `fit`); a batch costing the kernel apart from other kernels
#: (`kernel_totals`) or beside them sets the same.
_LAYOUTS: dict[tuple, tuple] = {}


def _layout(cascade, arch, kernel, sizes, batch, options, skip_empty_tiles, params, where):
    """The `_KernelLayout` of a kernel, built once per key of `_LAYOUTS` and set of loop
    parameters given."""
    key = (id(kernel), id(arch), id(sizes), id(cascade), batch, options, skip_empty_tiles)
    held = _LAYOUTS.get(key)
    if (
        held is None
        or held[0] is not kernel
        or held[1] is not arch
        or held[2] is not sizes
        or held[3] is not cascade
    ):
        names = tuple(f"{kernel.name}.{k}" for k in loop_keys(kernel))
        held = _store(_LAYOUTS, key, (kernel, arch, sizes, cascade, names, {}), 1 << 12)
    given = tuple([name in params for name in held[4]])
    layout = held[5].get(given)
    if layout is None:
        layout = held[5][given] = _KernelLayout(
            cascade, arch, kernel, sizes, batch, options, skip_empty_tiles, params, where
        )
    return layout


def _level_index(arch: Architecture, name: str, where: str) -> int:
    """The index of storage level `name` in `arch.levels`."""
    for i, level in enumerate(arch.levels):
        if level.name == name:
            return i
    arch.level(name, where)  # raises with the known levels
    return -1


class _KernelModel:
    """One kernel's costs over a batch; a helper of `evaluate_batch`, not public.

    Quantities are numpy arrays of shape (n,) where they depend on a free parameter and
    scalars where they do not, so that a template with few free parameters costs few array
    operations.
    """

    def __init__(
        self, cascade, arch, kernel: Kernel, sizes, batch, options, where, params, n,
        skip_empty_tiles: bool = False,
    ):  # fmt: skip
        self.cascade, self.arch, self.kernel = cascade, arch, kernel
        self.skip_empty_tiles = skip_empty_tiles
        self._tile_memo: dict[int, dict] = {}
        self._share_memo: dict[tuple, np.ndarray | float] = {}
        self._shares: dict[tuple, np.ndarray | float] = {}
        self._rows_memo: dict[tuple, tuple] = {}
        self._codes_memo: dict[tuple, np.ndarray | None] = {}
        self._elements_memo: dict[str, int] = {}
        self._refetch_memo: dict[tuple, np.ndarray | float] = {}
        self._product_memo: dict[tuple, np.ndarray | float] = {}
        self._cut_memo: dict[int, frozenset] = {}
        self._fetched_memo: dict[tuple, np.ndarray | float] = {}
        self._extent_memo: dict[tuple, np.ndarray | int] = {}
        self._final: list | None = None
        self._footprint_memo: dict[tuple, np.ndarray | int] = {}
        self.sizes, self.batch, self.options, self.where = sizes, batch, options, where
        self.n = n
        self.problems: list[_Problem] = []
        self._lanes_memo: dict = {}
        self._unrolled_memo: dict[tuple, tuple] = {}
        self._rows_cut_memo: dict[tuple, np.ndarray | None] = {}
        #: (share, share where cut else -inf, whether some row is cut) by (level, (filter
        #: token, ranks)): `_plan_share`'s terms, shared by the plans holding the item
        self._taken_memo: dict[tuple, tuple] = {}
        layout = _layout(
            cascade, arch, kernel, sizes, batch, options, skip_empty_tiles, params, where
        )
        self._layout = layout
        self._sizes_key, self._sizes_token = layout.sizes_key, layout.sizes_token
        self._units, self._keep = layout.units, layout.keep  # read, never written
        self.offchip, self.members, self._skipping = layout.offchip, layout.members, layout.skipping
        self._loop_sig = layout.loop_sig
        # Coarse ranks (G of GQA) that no computing Einsum of the kernel iterates itself.
        self.coarse, self.groups_of = layout.coarse, layout.groups_of
        self._coarse_key = layout.coarse_key
        self.keys, self.levels, self._looped = layout.keys, layout.levels, layout.looped
        self.spatial = self._spatial_factors(params)
        self.loop_factors = self._loop_factors(params)
        self._einsum_plans: dict[str, _EinsumPlan] = layout.einsum_plans

    # -- factors ----------------------------------------------------------------------
    def _spatial_factors(self, params) -> dict[str, np.ndarray | int]:
        """The spatial factor of each unrolled rank: its parameter, else the kernel's
        `spatial_factors`, else min(rank size, the smallest array dimension it is unrolled
        on) (`_KernelLayout.spatial_defaults`); a problem where it exceeds that dimension."""
        layout = self._layout
        out = dict(layout.spatial_defaults)
        for rank, key, dim, message in layout.spatial_checks:
            out[rank] = factor = params.get(key, out[rank])
            self._problem(factor > dim, message, factor, dim)
        return out

    def _problem(self, mask, message: str, *values, infeasible: bool = False) -> None:
        if _any(mask):
            mask = np.broadcast_to(mask, (self.n,))
            self.problems.append(_Problem(mask, message, values, infeasible))

    def _extent_below(self, rank: str, level_index: int, factors, spatial) -> np.ndarray | int:
        """The extent of `rank` in a tile held at storage level `level_index`. A rank read
        through a coarser one (G through h//(H//G)) and not looped itself spans the groups
        of the tile's heads (the most any block of that many consecutive heads reads)."""
        looped = self._looped.get(rank, ())
        source = self.coarse.get(rank)
        if not looped and source is not None:
            heads = self._extent_below(source, level_index, factors, spatial)
            blocks = -(-int(self.sizes[source]) // np.asarray(heads))
            return _group_visits(self.groups_of[rank], heads, blocks)[1]
        if not looped:
            return int(self.sizes[rank])
        inner = [factors[i] for i in looped if self.levels[i] >= level_index]
        return _prod([spatial.get(rank, 1), *inner])

    def _extent(self, rank: str, level_index: int) -> np.ndarray | int:
        """`_extent_below` of the kernel's own factors, once per (rank, level)."""
        key = (rank, level_index)
        found = self._extent_memo.get(key)
        if found is None:
            found = self._extent_below(rank, level_index, self._final, self.spatial)
            self._extent_memo[key] = found
        return found

    def footprint_bytes(self, level_index: int, factors, spatial=None) -> dict:
        """Bytes of the tile of each tensor kept at a level: the product of its extents.
        `factors` and `spatial` (default: the kernel's) may be a subset of the rows.
        Tensors of the same ranks share one product (of the kernel's factors: one per
        model)."""
        spatial = self.spatial if spatial is None else spatial
        kept = self._layout.kept_ranks.get(level_index)
        if kept is None:
            kept = self._kept_ranks(level_index)
        word_bytes = self.arch.word_bytes
        out = {}
        if factors is self._final and spatial is self.spatial:
            memo = self._footprint_memo
            for tensor, ranks in kept:
                key = (level_index, ranks)
                found = memo.get(key)
                if found is None:
                    extents = (self._extent(r, level_index) for r in ranks)
                    found = memo[key] = _prod(extents) * word_bytes
                out[tensor] = found
            return out
        seen: dict[tuple, np.ndarray | int] = {}
        for tensor, ranks in kept:
            found = seen.get(ranks)
            if found is None:
                extents = (self._extent_below(r, level_index, factors, spatial) for r in ranks)
                found = seen[ranks] = _prod(extents) * word_bytes
            out[tensor] = found
        return out

    def _kept_ranks(self, level_index: int) -> tuple:
        """(tensor, ranks) of each tensor kept at a level, kept in the layout."""
        level = self.arch.levels[level_index]
        kept = []
        for tensor in self._keep.get(level.name, ()):
            ranks = self.cascade.tensor_ranks.get(tensor)
            if ranks is None:
                raise MappingError(f"{self.where}keep.{level.name}: unknown tensor {tensor!r}")
            kept.append((tensor, ranks))
        kept = self._layout.kept_ranks[level_index] = tuple(kept)
        return kept

    def _covering(self, rank: str, factors, skip: int, spatial):
        """Spatial factor times every loop factor of `rank` except loop `skip`."""
        others = (factors[j] for j in self._looped.get(rank, ()) if j != skip)
        return _prod([spatial.get(rank, 1), *others])

    def _fill_rests(self, factors, rests, spatial=None) -> None:
        """A `rest` loop takes ceil(rank size / everything else that covers the rank)."""
        spatial = self.spatial if spatial is None else spatial
        for i in rests:
            rank = self.kernel.loops[i].rank
            covering = self._covering(rank, factors, i, spatial)
            factors[i] = np.maximum(1, -(-int(self.sizes[rank]) // covering))

    def _loop_factors(self, params) -> list:
        layout = self._layout
        factors = [params.get(key, value) for key, value in layout.loop_params]
        self.unfitted = np.zeros(self.n, dtype=bool)
        if layout.fit is not None:
            self._fit(factors, layout.fit, layout.rests)
        else:
            self._fill_rests(factors, layout.rests)
        self._final = factors  # the kernel's factors from here on (`_extent`)
        for level_index, capacity, message in layout.capacity_checks:
            need = sum(self.footprint_bytes(level_index, factors).values())
            over = (need > capacity) & ~self.unfitted
            if _any(over):
                self._problem(over, message, need, capacity)
        # A factor that does not divide its rank pads the last iteration (idle lanes); one
        # whose last iteration would hold no work at all is a mistake. Inner loops first.
        covered = dict(self.spatial)
        loops = self.kernel.loops
        for i, rank, size in layout.inner_first:
            inner = covered.get(rank, 1)
            empty = (factors[i] - 1) * inner >= size
            if _any(empty):  # the message only then: most rows of most batches have none
                self._problem(
                    empty,
                    f"{self.kernel.name}: loop {self.keys[i]} has factor {{:.0f}} over tiles of "
                    f"{{:.0f}}, so its last iteration finds no {loops[i].rank} left (size {size})",
                    factors[i],
                    inner,
                )
            covered[rank] = inner * factors[i]
        return factors

    def _fit(self, factors: list, i: int, rests: list[int]) -> None:
        """`fit`: the largest divisor of what remains of the rank whose tiles fit the level.

        Rows are grouped by that remainder; each group scans its divisors from the largest,
        keeping the first that fits, so a row costs one footprint per divisor tried.
        """
        loop = self.kernel.loops[i]
        capacity = self.arch.levels[self.levels[i]].capacity_bytes
        given = [f if j != i and j not in rests else 1 for j, f in enumerate(factors)]
        covering = self._covering(loop.rank, given, i, self.spatial)
        span = np.broadcast_to(np.maximum(1, -(-int(self.sizes[loop.rank]) // covering)), (self.n,))
        chosen = np.ones(self.n, dtype=np.int64)
        fitted = np.zeros(self.n, dtype=bool)
        for value in np.unique(span):
            rows = np.flatnonzero(span == value)
            for divisor in sorted(
                (d for d in range(1, int(value) + 1) if value % d == 0), reverse=True
            ):
                trial = [f[rows] if np.ndim(f) else f for f in factors]
                spatial = {r: f[rows] if np.ndim(f) else f for r, f in self.spatial.items()}
                trial[i] = divisor
                self._fill_rests(trial, rests, spatial)
                need = sum(self.footprint_bytes(self.levels[i], trial, spatial).values())
                room = capacity[rows] if np.ndim(capacity) else capacity
                ok = np.broadcast_to(capacity is None or need <= room, rows.shape)
                chosen[rows[ok]] = divisor
                fitted[rows[ok]] = True
                rows = rows[~ok]
                if not rows.size:
                    break
        factors[i] = chosen if self.n > 1 else int(chosen[0])
        self._fill_rests(factors, rests)
        self.unfitted = ~fitted
        tiles = self.footprint_bytes(self.levels[i], factors)
        largest = sorted(tiles, key=lambda t: -np.max(tiles[t]))[:3]
        self._problem(
            self.unfitted,
            f"{self.kernel.name}: nothing fits: even a factor of 1 for {loop.rank} at "
            f"{loop.level} overflows its {{:.0f}} B ({{:.0f}} B needed; largest tiles: "
            + ", ".join(f"{t} {{:.0f}} B" for t in largest)
            + f"). Likely causes: a {loop.level} too small for what it keeps (raise "
            f"levels.{loop.level}.capacity_bytes), a spatial tile too large for it (fewer "
            f"array rows or columns, or a smaller tile such as M0), or a tensor kept at "
            f"{loop.level} that could stream from {self.offchip}",
            capacity,
            sum(tiles.values()),
            *(tiles[t] for t in largest),
            infeasible=True,
        )

    @functools.cached_property
    def tiles(self):
        return _count(self.loop_factors) * self.batch

    # -- compute ----------------------------------------------------------------------
    def einsum_rows(self, report: bool = True) -> dict[str, dict]:
        """`einsum_cycles` of every Einsum of the kernel, by name (in the kernel's order);
        without `report`, only each one's unit, cycles and energy (a kernel's totals).

        The share of each Einsum with work is `share(array level, name)`, its plan taken
        from the plans of all members at once (`_Members.einsum_plans`), one Einsum after
        the other; an Einsum without work costs nothing whatever its share, so it takes
        none (a later `share` of it computes it alike)."""
        names = self.kernel.einsums
        plans = self._einsum_plans
        rows = {}
        if not self._skipping:
            for name in names:
                plan = plans.get(name) or self._einsum_plan(name)
                rows[name] = self._einsum_row(name, plan, 1.0, report)
            return rows
        array = len(self.arch.levels)
        shares = self._shares
        share_plans = self.members.einsum_plans(self._cut(array))
        for name, share_plan in zip(names, share_plans, strict=True):
            plan = plans.get(name) or self._einsum_plan(name)
            if plan.work is None:
                rows[name] = self._einsum_row(name, plan, 1.0, report)
                continue
            key = (array, name, None)
            share = shares.get(key)
            if share is None:  # `share(array, name)`, its plan known
                held = (array, share_plan)
                share = shares.get(held)
                if share is None:
                    share = shares[held] = self._plan_share(array, share_plan)
                shares[key] = share
            rows[name] = self._einsum_row(name, plan, share, report)
        return rows

    def einsum_cycles(self, name: str, share=None) -> dict:
        """Cycles, energy and useful cycles of one Einsum over the batch.

        The array iterates every point of a tile it computes: cycles and energy come from
        the dense (unfiltered) op counts x the share of the kernel's tiles that are computed
        (`share`: 1 unless the mapping skips empty tiles; given by `einsum_rows`); a partial
        tile costs a whole one. `ops` and the useful cycles count the points the masks keep.
        """
        if share is None:
            share = self.share(len(self.arch.levels), name)
        plan = self._einsum_plans.get(name) or self._einsum_plan(name)
        return self._einsum_row(name, plan, share)

    def _einsum_row(self, name: str, plan: _EinsumPlan, share, report: bool = True) -> dict:
        """`einsum_cycles` of Einsum `name`, its plan known (`report` False: its unit, cycles
        and energy only, what a kernel's totals take)."""
        work = plan.work
        if work is None:
            if not report:
                return {"unit": plan.unit_name or "", "cycles": 0.0, "energy_pj": 0.0}
            return {
                "einsum": name,
                "unit": plan.unit_name or "",
                "ops": 0,
                "cycles": 0.0,
                "energy_pj": 0.0,
                "useful_cycles": 0.0,
                "lowered": "",
            }
        batch = self.batch
        lanes = self._lanes_memo.get(plan.lanes_id)
        per_lane, useful_fraction = lanes or self._lanes(plan)
        # scalars first: each product with a batch array is a pass over n rows
        busy = dense = work.dense_cycles * batch * share * per_lane
        if plan.fill_drain:
            fill_drain = self._fill_drain_cycles(plan.unit, plan.einsum)
            if _any(fill_drain):
                busy = busy + fill_drain * share
        energy = batch * work.energy_pj * share
        if not report:
            return {"unit": plan.unit_name, "cycles": busy, "energy_pj": energy}
        kept = dense if work.kept_cycles is None else work.kept_cycles * batch * per_lane
        return {
            "einsum": name,
            "unit": plan.unit_name,
            "ops": work.ops * batch,
            "cycles": busy,
            # PE-cycles doing useful work (fill, drain and masked points are idle PEs).
            "useful_cycles": kept * useful_fraction,
            # Share of the unit's PEs doing useful work while the Einsum runs.
            "energy_pj": energy,
            # Operators the unit lacks, run lowered (simulator/lowering.py).
            "lowered": work.lowered,
        }

    def _einsum_plan(self, name: str) -> _EinsumPlan:
        """What `einsum_cycles` of `name` needs apart from the tiling (`_EinsumPlan`), kept
        in the plans this kernel's structure shares across batches (`_EINSUM_PLANS`)."""
        unit_name = self._units.get(name)
        shared = (name, unit_name, self._layout.spatial_of.get(unit_name, ()))
        plan = self._layout.unit_plans.get(shared)
        if plan is not None:
            self._einsum_plans[name] = plan
            return plan
        einsum = self.cascade.einsum(name)
        chained, drop = self.kernel.chained_ops, self.options.drop_exp_energy
        key = (self.cascade, name, self._sizes_token, unit_name, chained, drop)
        ops, work = _WORK.get(key, (None, None))
        if ops is None and not _op_counts(self.cascade, name, self._sizes_key)[0]:
            ops = _IDLE
            _WORK[key] = (_IDLE, None)
        if ops is _IDLE:
            plan = _EinsumPlan(einsum, unit_name, None, None, (), False)
            self._einsum_plans[name] = self._layout.unit_plans[shared] = plan
            return plan
        if unit_name is None:
            raise MappingError(f"{self.where}einsum {name} has operations but no binding")
        unit = self.arch.unit(unit_name, self.where)
        if ops is not unit.ops and ops != unit.ops:  # the same table: one object in a search
            work = _einsum_work(
                self.cascade, name, self._sizes_key, unit, chained, drop, self.where
            )
            _store(_WORK, key, (unit.ops, work), 1 << 14)
        iterated = self.members.ranks[name]
        ranks = tuple(self._spatial_ranks(unit, einsum))
        parts = tuple(p for p in self.cascade.partitions if {p.upper, p.lower} <= iterated)
        enabled = self.options.fill_drain
        if enabled is None:
            enabled = unit.fill_drain
        fill_drain = bool(enabled) and len(unit.dims) == 2
        named = tuple((p.rank, p.upper, p.lower) for p in parts)  # cheaper to hash
        lanes_key = (unit.name, ranks, named)
        lanes_id = _LANES_IDS.get(lanes_key)
        if lanes_id is None:
            lanes_id = _store(_LANES_IDS, lanes_key, next(_NEXT_LANES_ID), 1 << 14)
        plan = _EinsumPlan(
            einsum, unit_name, unit, work, lanes_key, fill_drain, ranks, parts, lanes_id
        )
        self._einsum_plans[name] = self._layout.unit_plans[shared] = plan
        return plan

    def _spatial_ranks(self, unit: ComputeUnit, einsum) -> list[str]:
        """The ranks of `einsum` unrolled on `unit`, in the unit's dimension order."""
        iterated = self.members.ranks[einsum.output]
        return [r for r in self._layout.spatial_of.get(unit.name, ()) if r in iterated]

    def _lanes(self, plan: _EinsumPlan):
        """(cycles per lane-op = padding / lanes used, share of the unit's PEs doing useful
        work = lanes used / lanes / padding) of an Einsum's plan, shared by Einsums with the
        same unrolled ranks (the key of `_EinsumPlan.lanes_key`, by its `lanes_id`)."""
        unit, ranks, parts, key = plan.unit, plan.ranks, plan.parts, plan.lanes_id
        if key not in self._lanes_memo:
            lanes, padding = self._unrolled(ranks)
            for part in parts:
                padded = int(self.sizes[part.upper]) * int(self.sizes[part.lower])
                padding = padding * (padded / int(self.sizes[part.rank]))
            self._lanes_memo[key] = (padding / lanes, lanes / unit.lanes / padding)
        return self._lanes_memo[key]

    def _unrolled(self, ranks: tuple[str, ...]):
        """(lanes, padding) of unrolled `ranks`, rank by rank: lanes x= factor, padding x=
        ceil(size / factor) x factor / size; Einsums unrolling a prefix of the same ranks
        (P on the 1D array, P and M0 on the 2D one) share its products."""
        found = self._unrolled_memo.get(ranks)
        if found is None:
            if not ranks:
                found = (1, 1.0)
            else:
                lanes, padding = self._unrolled(ranks[:-1])
                factor, size = self.spatial[ranks[-1]], int(self.sizes[ranks[-1]])
                found = (lanes * factor, padding * (-(-size // factor)) * factor / size)
            self._unrolled_memo[ranks] = found
        return found

    def _fill_drain_cycles(self, unit: ComputeUnit, einsum):
        """Systolic fill and drain per fold of an R x C array: R + C - 2 cycles of skew, plus
        R cycles to preload a stationary input (weight- or input-stationary).

        A fold is one placement of the spatial tile on the array (partial folds occupy the
        whole array); an input is stationary when every rank it has is unrolled on the array.
        folds = batch x prod over unrolled ranks of ceil(size / factor) x the loop factors of
        the ranks that stream through the array (each loop splits the stream). Source:
        SCALE-Sim v3 (`systolic_compute_os.py` / `_ws.py`), which this matches to one cycle
        on the GEMMs of benchmarks/scalesim_compare.py.
        """
        enabled = self.options.fill_drain
        if enabled is None:
            enabled = unit.fill_drain
        if not enabled or len(unit.dims) != 2:
            return 0.0
        unrolled = self._spatial_ranks(unit, einsum)
        folds = _count(-(-int(self.sizes[r]) // self.spatial[r]) for r in unrolled)
        iterated = self.members.ranks[einsum.output]
        for loop, factor in zip(self.kernel.loops, self.loop_factors, strict=True):
            if loop.rank in iterated and loop.rank not in unrolled:
                folds = folds * factor
        rows, cols = unit.dims
        stationary_input = any(
            set(self.cascade.tensor_ranks[access.tensor]) <= set(unrolled)
            for access in einsum.operands
        )
        return folds * self.batch * (rows + cols - 2 + (rows if stationary_input else 0))

    # -- tile occupancy ---------------------------------------------------------------
    def tile_extents(self, level_index: int) -> dict[str, np.ndarray | int]:
        """The extent of each rank of the kernel's Einsums in one tile held at storage level
        `level_index` (`len(arch.levels)`: the arrays' tile, one iteration of the innermost
        loops): spatial factor x the loop factors at or below the level, the whole rank when
        no loop covers it. Ranks held whole are left out (`occupancy` takes them whole).

        Example: FuseMax's mapping at P=M=16384 (spatial P=256, M0=256, GB.P=16, GB.M1=16)
        has the array tile {P: 256, M1: 1} and the buffer tile {P: 4096, M1: 16}.
        """
        tile = self._tile_memo.get(level_index)
        if tile is not None:
            return tile
        tile: dict[str, np.ndarray | int] = {}
        sizes = self.sizes
        for rank in self.members.all_ranks:
            extent = self._extent(rank, level_index)
            size = int(sizes[rank])
            if isinstance(extent, np.ndarray):
                if np.count_nonzero(extent < size):
                    tile[rank] = np.minimum(extent, size)  # a tile past the rank is the rank
            elif extent < size:
                tile[rank] = int(extent)
        self._tile_memo[level_index] = tile
        return tile

    def share(self, level_index: int, name: str | None = None, within=None):
        """Share of the tiles at `level_index` in which the cascade's masks keep a point:
        1 when the mapping computes every tile or no Einsum of the kernel has a filter.

        Of Einsum `name`: (tiles - empty) / tiles of `occupancy` on its cut ranks (those the
        tile is smaller than). An Einsum without a filter (PRM, the correction work) takes
        the kernel semantics of `occupancy`: a tile is empty where no filtered Einsum of the
        kernel keeps a point in it, projected onto the cut ranks the two share (the most
        any filtered Einsum keeps). `within` (partition roots, name None): the share of
        tiles cut only along those ranks that some filtered Einsum needs (an off-chip fetch).
        Computed once per (level, name, within) for the batch.
        """
        if not self._skipping:
            return 1.0
        key = (level_index, name, within)
        found = self._shares.get(key)
        if found is None:
            plan = (level_index, self.members.share_plan(name, within, self._cut(level_index)))
            found = self._shares.get(plan)  # Einsums of one plan share one array
            if found is None:
                found = self._plan_share(level_index, plan[1])
                self._shares[plan] = found
            self._shares[key] = found
        return found

    def _cut(self, level_index: int) -> frozenset:
        """The ranks the tiles at `level_index` are cut along (`tile_extents`)."""
        cut = self._cut_memo.get(level_index)
        if cut is None:
            cut = self._cut_memo[level_index] = frozenset(self.tile_extents(level_index))
        return cut

    def _filtered_share(self, level_index: int, name: str, ranks: frozenset, item: tuple):
        """(tiles - empty) / tiles of filtered Einsum `name`, its tile cut along `ranks` only
        (`item`: (its filter token, `ranks`), a `_SharePlan` item's key): `_tile_shares` of
        the rows' tilings (`_tiling_codes`, shared by the filters)."""
        key = (level_index, item)  # one filter, one set of tiles
        found = self._share_memo.get(key)
        if found is None:
            ranks = ranks & self.members.filter_ranks[name]  # the tile along the others: whole
            rows = self._rows_memo.get((level_index, ranks))
            if rows is None:
                rows = self._rows_memo[(level_index, ranks)] = self._tile_rows(level_index, ranks)
            fixed, varying, code, held_as = rows
            kind = self.members.kinds[name]
            share = _tile_shares(
                self.cascade, name, kind, self._sizes_key, fixed, varying, code,
                self._sizes_token, held_as, one=True,
            )  # fmt: skip
            if not isinstance(share, np.ndarray):  # one share in every row: a float
                found = self._share_memo[key] = share
            else:
                found = self._share_memo[key] = share if varying else float(share[0])
        return found

    def _plan_share(self, level_index: int, plan: _SharePlan):
        """The most of the shares of a plan's (filtered Einsum, ranks cut) items, each taken
        in the rows whose tile it cuts: the plan is the batch's (`tile_extents` holds a rank
        that any row cuts), and a row that holds all of an item's ranks whole cuts none of
        them, so that item is not in the row's own plan. A row's share is then the one it
        has costed alone (1 where no item cuts, the empty plan's), whatever the batch.
        Without that, flexprefill's fused block estimate at 16K priced a row's softmax
        Einsums 1.97x higher in a batch whose other rows cut a rank it held whole.

        An item's share is a float where every tiling of its table has that share
        (`_tile_shares(one=True)`; 1.0 where the mask keeps a point in every tile: most items
        of flexprefill's and hip's kernels). Where every item's share is 1.0, the share is
        1.0 in every row whichever items cut it: no cut mask, no maximum, and the Einsums'
        costs stay scalars; where every row cuts every item, it is their maximum, a float."""
        taken_memo, taken, cut_any = self._taken_memo, [], False
        items = plan.items
        shares = [self._filtered_share(level_index, *item) for item in items]
        if all(type(s) is float and s == 1.0 for s in shares):
            return 1.0  # every row's share 1, or no item cutting the row: 1 all the same
        for (_, ranks, key), share in zip(items, shares, strict=True):  # and the rows it cuts
            found = taken_memo.get((level_index, key, ranks))
            if found is None:
                cut = self._rows_cut(level_index, ranks)
                held = share if cut is None else np.where(cut, share, -np.inf)
                found = taken_memo[(level_index, key, ranks)] = (share, held, cut is not None)
            if not found[2] and type(share) is float and share == 1.0:
                return 1.0  # an item of share 1 that every row cuts: 1 in every row
            taken.append(found)
            cut_any = cut_any or found[2]
        if not cut_any:
            return _most([share for share, _, _ in taken])
        most = functools.reduce(np.maximum, [held for _, held, _ in taken])
        return np.where(most == -np.inf, 1.0, most)

    def _rows_cut(self, level_index: int, ranks: frozenset):
        """The rows whose tile at `level_index` cuts one of `ranks` (`_plan_share`): None
        where every row does; once per (level, ranks), shared by the plans holding them."""
        key = (level_index, ranks)
        cut = self._rows_cut_memo.get(key, _UNSEEN)
        if cut is _UNSEEN:
            tile, sizes = self.tile_extents(level_index), self.sizes
            if any(not isinstance(tile[r], np.ndarray) for r in ranks):
                cut = None  # a fixed extent in the tile is below its rank: cut
            else:
                cut = functools.reduce(np.logical_or, [tile[r] < int(sizes[r]) for r in ranks])
                cut = None if np.count_nonzero(cut) == cut.size else cut  # not ndarray.all: 3x
            self._rows_cut_memo[key] = cut
        return cut

    def _tile_rows(self, level_index: int, ranks: frozenset) -> tuple:
        """The tiles at `level_index` cut along `ranks` only, as `_tile_shares` takes them:
        (fixed extents, varying extents, the rows' `_tiling_codes`, the part of the table's
        key they make), shared by the filters cut along the same ranks."""
        tile = {r: v for r, v in self.tile_extents(level_index).items() if r in ranks}
        fixed = {r: int(v) for r, v in tile.items() if not isinstance(v, np.ndarray)}
        varying = {r: v for r, v in tile.items() if r not in fixed}
        codes_key = (level_index, tuple(varying))
        if codes_key not in self._codes_memo:
            limits = [int(self.sizes[r]) for r in varying]
            self._codes_memo[codes_key] = _tiling_codes(list(varying.values()), limits, self.n)
        held_as = (tuple(sorted(fixed.items())), codes_key[1])
        return fixed, varying, self._codes_memo[codes_key], held_as

    def _fetched_share(self, ranks: tuple[str, ...], kept_or_output: bool):
        """Share of a tensor's off-chip fetches that a non-empty tile needs: the tensor is
        fetched once per buffer tile of its ranks and of the loops that re-fetch it, and a
        fetch is skipped where no filtered Einsum keeps a point in that tile."""
        if not self.skip_empty_tiles:
            return 1.0
        key = (ranks, kept_or_output)
        found = self._fetched_memo.get(key)
        if found is None:
            need = self._layout.fetch_need.get(key)
            if need is None:
                need = _fetch_need(
                    self.cascade, self._loop_sig, self.offchip, ranks, kept_or_output
                )
                self._layout.fetch_need[key] = need
            found = self._fetched_memo[key] = self.share(1, within=need)
        return found

    # -- memory -----------------------------------------------------------------------
    def _elements(self, tensor: str) -> int:
        """Elements of a tensor over the whole batch (iterative ranks without their +1)."""
        found = self._elements_memo.get(tensor)
        if found is None:
            key = (self.cascade, tensor, self._sizes_token, self.batch)
            found = _ELEMENTS.get(key)
            if found is None:
                ranks = self.cascade.tensor_ranks[tensor]
                found = math.prod(int(self.sizes[r]) for r in ranks) * self.batch
                _store(_ELEMENTS, key, found, 1 << 14)
            self._elements_memo[tensor] = found
        return found

    def dram_traffic(self) -> dict[str, np.ndarray | float]:
        """Bytes moved to and from off-chip memory per tensor."""
        rows = self._layout.storage.dram_rows
        if rows is None:
            rows = self._dram_rows()
        traffic: dict = {}
        word_bytes = self.arch.word_bytes
        skipping = self.skip_empty_tiles
        for tensor, ranks, kept_or_output, read_here, kept, elements in rows:
            factor = self._refetch(ranks, kept_or_output=kept_or_output)
            if read_here and skipping:  # no fetch for a tile no Einsum of the kernel needs
                factor = factor * self._fetched_share(ranks, kept)
            traffic[tensor] = elements * factor * word_bytes
        if self.kernel.spill_fraction:
            traffic["(spill)"] = self._layout.storage.spilled_bytes
        return traffic

    def _dram_rows(self) -> tuple:
        """(tensor, ranks, kept or an output, read here, kept, elements) of each tensor the
        kernel moves off-chip (`_tensor_roles`), and the spilled bytes (a constant), kept in
        the layout. A fetch share of 1 (no skipping) multiplies nothing: the refetch factor
        is a float already."""
        kept = frozenset(
            t for level, tensors in self.kernel.keep if level != self.offchip for t in tensors
        )
        rows = tuple(
            (
                tensor,
                ranks,
                written_out or tensor in kept,
                read_here,
                tensor in kept,
                self._elements(tensor),
            )
            for tensor, ranks, read_here, written_out in self.members.roles(kept)
        )
        if self.kernel.spill_fraction:
            members = set(self.kernel.einsums)
            spilled = 0.0
            for tensor in kept:
                producer = self.cascade.producers.get(tensor)
                if producer is None or producer.output not in members:
                    continue
                reads = len(set(self.cascade.graph.successors(tensor)) & members)
                spilled += self._elements(tensor) * (1 + reads)
            spilled = spilled * self.kernel.spill_fraction * self.arch.word_bytes
            self._layout.storage.spilled_bytes = spilled
        self._layout.storage.dram_rows = rows
        return rows

    def buffer_words(self, dram: dict) -> dict[str, dict]:
        """Words read and written at each on-chip level for the tensors it keeps.

        Writes: fills from DRAM plus every element an array produces into the level.
        Reads: the write-out to DRAM of a tensor produced here; and per tensor the most any
        consumer fetches (consumers of one tile share the fetch), each consumer fetching the
        tensor once per iteration of every loop irrelevant to it (the PE registers keep
        nothing across buffer-level loops); a read of the terminal element of an iterative
        rank fetches that slice once. `dram` is this kernel's `dram_traffic()`.
        """
        array = len(self.arch.levels)  # a skipped tile touches no buffer
        levels = self._layout.storage.buffer_rows
        if levels is None:
            levels = self._buffer_rows()
        word_bytes = self.arch.word_bytes
        share = self.share
        out: dict[str, dict] = {}
        for level_name, rows in levels:
            reads = writes = 0.0
            for tensor, ranks, elements, producer, readers, terminal, fetches in rows:
                moved = dram.get(tensor, 0.0) / word_bytes
                if producer is not None:
                    # Produced here: the array writes it, and writing it out reads it back.
                    writes = writes + elements * share(array, producer)
                    reads = reads + moved
                else:
                    writes = writes + moved  # a fill from DRAM
                fetched = 0.0
                if not readers:
                    most = 0.0
                elif len(readers) == 1:
                    most = share(array, readers[0])
                else:
                    most = _most([share(array, e) for e in readers])
                if fetches:
                    # Every consumer of a tensor sees the same loops: one fetch count.
                    fetched = elements * self._refetch(
                        ranks, kept_or_output=False, offchip_only=False
                    )
                reads = reads + (fetched + terminal) * most
            out[level_name] = {"reads": reads, "writes": writes}
        return out

    def _buffer_rows(self) -> tuple:
        """(level, rows) of each on-chip level, a row per tensor it keeps: (tensor, ranks,
        elements, producing member, reading members, terminal-slice words, whether a read
        walks it), kept in the layout."""
        levels = []
        for level in self.arch.levels[1:]:
            rows = []
            for tensor in self._keep.get(level.name, ()):
                ranks = self.cascade.tensor_ranks[tensor]
                use = self.members.reads(tensor)
                terminal = 0.0
                if use.terminal_ranks is not None:
                    slice_ = math.prod(int(self.sizes[r]) for r in use.terminal_ranks)
                    terminal = max(terminal, slice_ * self.batch)
                rows.append(
                    (tensor, ranks, self._elements(tensor), use.producer, use.readers,
                     terminal, use.fetched)
                )  # fmt: skip
            levels.append((level.name, tuple(rows)))
        levels = self._layout.storage.buffer_rows = tuple(levels)
        return levels

    def _refetch(self, ranks: tuple[str, ...], kept_or_output: bool, offchip_only=True):
        """Product of the factors of the loops that re-fetch a tensor with `ranks`.

        A loop irrelevant to the tensor re-fetches it once per iteration when it sits above
        the innermost relevant loop (any loop when the tensor bypasses the buffers). A loop
        over a rank that reads one of the tensor's ranks coarsely (heads h reading K/V
        group g = h // (H // G), `_coarse_ranks`) is half relevant: iteration i fetches the
        groups its block of heads reads, so F iterations of t heads fetch the tensor
        (sum over i of the distinct groups of heads i*t .. i*t+t-1) / G times over: 1 when
        a block holds whole groups (t a multiple of H / G), H / (G t) when each head block
        is a part of one group (every such block re-reads its group). Below the innermost
        relevant loop with the tensor kept, consecutive heads of a group reuse the kept
        tile: factor 1 (each group's K/V once per pass over the other loops).
        """
        key = (ranks, kept_or_output, offchip_only)
        found = self._refetch_memo.get(key)
        if found is None:  # a pure function of the model: tensors of the same ranks share it
            found = self._refetch_memo[key] = self._refetch_factor(*key)
        return found

    def _loop_product(self, loops: tuple[int, ...]):
        """1.0 x the factors of `loops` in order (left to right), sharing prefixes: the
        tensors of a kernel are re-fetched by a few nested sets of loops."""
        found = self._product_memo.get(loops)
        if found is None:
            found = (
                1.0 if not loops else self._loop_product(loops[:-1]) * self.loop_factors[loops[-1]]
            )
            self._product_memo[loops] = found
        return found

    def _refetch_factor(self, ranks: tuple[str, ...], kept_or_output: bool, offchip_only):
        """`_refetch`, computed."""
        key = (ranks, kept_or_output, offchip_only)
        plan = self._layout.reuse.get(key)
        if plan is None:
            plan = self._layout.reuse[key] = _reuse_plan(
                self.cascade,
                self._loop_sig,
                self.offchip,
                ranks,
                kept_or_output,
                offchip_only,
                self._coarse_key,
            )
        multiply, walked = plan
        factor = self._loop_product(multiply)
        if walked:
            coarse = {self.coarse[r]: r for r in ranks if r in self.coarse}
            for rank, loops, others in walked:
                iterations = _prod(self.loop_factors[i] for i in loops)
                heads = _prod([self.spatial.get(rank, 1), *(self.loop_factors[j] for j in others)])
                group = coarse[rank]
                visits, _ = _group_visits(self.groups_of[group], heads, iterations)
                factor = factor * visits / int(self.sizes[group])
        return factor


@dataclass(frozen=True, slots=True)
class _Work:
    """The scalar work of one Einsum on one unit, per batch element (`_einsum_work`): cycles
    of its dense op counts, of the kept ones (None: the same counts), energy, op count."""

    dense_cycles: float
    kept_cycles: float | None
    energy_pj: float
    ops: int
    lowered: str


#: (unit ops, `_Work`) by (cascade, Einsum, sizes token, unit name, chained ops,
#: drop_exp_energy); (_IDLE, None) for an Einsum without operations.
_WORK: dict[tuple, tuple] = {}
_IDLE = ("no operations",)
#: Elements of a tensor over the whole batch (`_KernelModel._elements`) by (cascade, tensor,
#: sizes token, batch multiplier).
_ELEMENTS: dict[tuple, int] = {}
#: An int per distinct sizes tuple (`_KernelModel._sizes_token`): keys hash it, not the
#: tuple; drawn from a counter, so a token is never reused after the table starts afresh.
_SIZES_TOKENS: dict[tuple, int] = {}
_NEXT_TOKEN = itertools.count()


def _einsum_work(
    cascade: Cascade,
    name: str,
    sizes: tuple,
    unit: ComputeUnit,
    chained_ops: tuple,
    drop_exp_energy: bool,
    where: str,
) -> _Work:
    """`_Work` of Einsum `name` (with operations) on `unit`. Depends on no tiling, so a
    search costs each Einsum on each unit once (`_WORK`), not once per batch."""
    counts, dense = _op_counts(cascade, name, sizes)
    at = f"{where}{name}: "
    cost_per_point = {op: unit.cost(op, at) for op in counts}

    def cycles_of(ops: dict) -> float:
        cycles = sum(count * cost_per_point[op].cycles for op, count in ops.items())
        for group in chained_ops:
            chained = [op for op in ops if op.value in group]
            if len(chained) > 1:  # a PE pipelines these: the slowest sets the pace
                per_op = [ops[op] * cost_per_point[op].cycles for op in chained]
                cycles -= sum(per_op) - max(per_op)
        return cycles

    energy = sum(
        count * cost_per_point[op].energy_pj
        for op, count in dense.items()
        if not (drop_exp_energy and op is Op.EXP)
    )
    return _Work(
        dense_cycles=cycles_of(dense),
        kept_cycles=None if dense is counts else cycles_of(counts),
        energy_pj=energy,
        ops=sum(counts.values()),
        lowered=", ".join(sorted(op.value for op in counts if unit.lowers(op))),
    )


_UNIT_NUMBERS = ("rows", "cols", "lanes")
_LEVEL_NUMBERS = ("capacity_bytes", "bandwidth_bytes_per_cycle", "bandwidth_bytes_per_s")
#: The architecture numbers `evaluate_batch` takes as arrays (`arch.` + a YAML path).
ARCH_PARAMETERS = (
    *(f"units.<unit>.{number}" for number in _UNIT_NUMBERS),
    *(f"levels.<level>.{number}" for number in _LEVEL_NUMBERS),
)


def is_arch_parameter(path: str) -> bool:
    """Whether `evaluate_batch` takes the architecture number at YAML `path` as an array
    (the form of `ARCH_PARAMETERS`; the unit or level itself is checked when evaluating)."""
    parts = path.split(".")
    if len(parts) != 3:
        return False
    return (parts[0] == "units" and parts[2] in _UNIT_NUMBERS) or (
        parts[0] == "levels" and parts[2] in _LEVEL_NUMBERS
    )


#: (sizes, batch multiplier) by (cascade, batch ranks, shape): see `_sizes_and_batch`.
_SIZED: dict[tuple, tuple[dict, int]] = {}


def _sizes_and_batch(
    cascade: Cascade, batch: tuple[str, ...], shape: MappingABC[str, int]
) -> tuple[dict, int]:
    """The sizes a kernel is costed at (`split_shape`'s, plus the batch ranks the cascade
    does not know, 1 where the shape omits them) and the batch multiplier. Memoized: a
    search costs one shape thousands of times; the sizes dict is shared, never written."""
    key = (cascade, batch, tuple(shape.items()))
    try:
        found = _SIZED.get(key)
    except TypeError:  # an unhashable size: split every time
        key, found = None, None
    if found is None:
        split = split_shape(cascade, batch, shape)
        outer = {r: split.outer.get(r, 1) for r in batch if r not in split.sizes}
        found = (split.sizes | outer, split.multiplier)
        if key is not None:
            _store(_SIZED, key, found, 256)
    return found


#: (mapping, its `parameter_names`, those as a set) by the mapping's identity: a search
#: costs each template's mapping in many batches.
_PARAMETER_NAMES: dict[int, tuple[Mapping, list[str], set[str]]] = {}


def _parameter_names(mapping: Mapping) -> tuple[list[str], set[str]]:
    """`parameter_names(mapping)` and its set, once per mapping object (`_PARAMETER_NAMES`)."""
    held = _PARAMETER_NAMES.get(id(mapping))
    if held is None or held[0] is not mapping:
        known = parameter_names(mapping)
        held = _store(_PARAMETER_NAMES, id(mapping), (mapping, known, set(known)), 1 << 12)
    return held[1], held[2]


def _batch_params(mapping: Mapping, params) -> tuple[dict[str, np.ndarray], int]:
    """Validate free parameters: known names, positive numbers (integers but for capacities
    and bandwidths), one common length."""
    if not params:
        return {}, 1
    known, names = _parameter_names(mapping)
    out: dict[str, np.ndarray] = {}
    n = 1
    for key, values in params.items():
        if key not in names and not key.startswith("arch."):
            raise MappingError(
                f"mapping {mapping.name}: no free parameter {key!r}; known: {', '.join(known)}"
                f", or arch.{{{', '.join(ARCH_PARAMETERS)}}}"
            )
        array = np.atleast_1d(np.asarray(values))
        if array.ndim != 1 or array.dtype.kind not in "iuf":
            raise MappingError(f"params[{key!r}]: expected a 1-D array of positive numbers")
        real = key.startswith("arch.levels.")  # capacities and bandwidths need not be integers
        kept = array.astype(np.float64) if real else array.astype(np.int64)
        if array.dtype == kept.dtype:  # a copy: every entry equal, only the sign to check
            ok = np.count_nonzero(kept > 0) == kept.size
        else:
            ok = np.count_nonzero((kept == array) & (kept > 0)) == kept.size
        bad = () if ok else np.flatnonzero((kept != array) | ~(kept > 0))
        if len(bad):
            kind = "a positive number" if real else "a positive integer"
            raise MappingError(
                f"params[{key!r}]: entry {bad[0]} is {array[bad[0]].item()!r}, expected {kind}"
            )
        if kept.size not in (1, n) and n != 1:
            raise MappingError(
                f"params[{key!r}]: {kept.size} values, but other parameters have {n}"
            )
        n = max(n, kept.size)
        out[key] = kept
    return {k: (np.broadcast_to(v, (n,)) if v.size == 1 else v) for k, v in out.items()}, n


def _with_arch_params(arch: Architecture, params: dict[str, np.ndarray]) -> Architecture:
    """`arch` with the `arch.<path>` parameters in place of its numbers (numpy arrays)."""
    arch_keys = [key for key in params if key.startswith("arch.")]
    if not arch_keys:
        return arch
    dims = {unit.name: list(unit.dims) for unit in arch.units}
    levels: dict[str, dict] = {level.name: {} for level in arch.levels}
    for key in arch_keys:
        values, path = params[key], key[len("arch.") :]
        if is_arch_parameter(path):
            kind, name, number = path.split(".")
            if kind == "units" and name in dims:
                axes = ("rows", "cols") if len(dims[name]) == 2 else ("lanes",)
                if number in axes:
                    dims[name][axes.index(number)] = values
                    continue
            elif kind == "levels" and name in levels:
                if number == "bandwidth_bytes_per_s":
                    levels[name]["bandwidth_bytes_per_cycle"] = values / arch.clock_hz
                else:
                    levels[name][number] = values
                continue
        units = ", ".join(
            f"{u.name} ({'rows, cols' if len(u.dims) == 2 else 'lanes'})" for u in arch.units
        )
        raise MappingError(
            f"params[{key!r}]: not an architecture number evaluate_batch takes; it takes "
            f"arch.{{{', '.join(ARCH_PARAMETERS)}}} with units {units} and levels "
            f"{', '.join(levels)}"
        )
    return replace(
        arch,
        units=tuple(replace(u, dims=tuple(dims[u.name])) for u in arch.units),
        levels=tuple(replace(level, **levels[level.name]) for level in arch.levels),
    )


def evaluate_batch(
    cascade: Cascade,
    arch: Architecture,
    mapping: Mapping,
    shape: MappingABC[str, int],
    params: MappingABC[str, object] | None = None,
    options: ModelOptions | None = None,
) -> BatchReport:
    """Predict cycles, energy, traffic and utilization of many mappings of one template.

    Args:
        cascade: what is computed.
        arch: the hardware.
        mapping: the template (kernels, loops, spatial unrolling, binding, stages).
        shape: rank sizes, batch ranks (B, H) included; missing batch ranks count as 1.
        params: free parameters by name, each an array of one common length n (or a scalar
            shared by every row): a loop's factor (replacing its int, `rest` or `fit`) or a
            spatial factor (`parameter_names(mapping)`), or an architecture number
            `arch.<YAML path>` (`ARCH_PARAMETERS`: array sizes, capacities, bandwidths).
        options: accounting switches (`ModelOptions`).

    Returns:
        A `BatchReport` of n rows; `valid` is False (with `reasons(i)`) where a kept tile
        overflows its level, a spatial factor exceeds its array, or loop factors overshoot.

    Raises:
        MappingError: a mapping that names unknown Einsums, units, levels or ranks, binds an
            Einsum to a unit lacking one of its operators, or an unknown parameter.
    """
    arch, batch_params, n, options = _batch_setup(arch, mapping, params, options)
    mapped = [e for k in mapping.kernels for e in k.einsums]
    missing = [e.output for e in cascade.einsums if e.output not in mapped]
    if missing:
        raise MappingError(
            f"mapping {mapping.name}: Einsum(s) {', '.join(missing)} of cascade "
            f"{cascade.name or '(unnamed)'} are in no kernel"
        )
    parts = _kernel_parts(cascade, arch, mapping, shape, batch_params, n, options)
    totals = combine_kernels(arch, [part.totals for part in parts], mapping.kernel_overlap, n)
    shaped = functools.partial(_shaped, n=n)
    useful: dict = {u.name: 0.0 for u in arch.units}
    buffer_words: dict = {}
    for part in parts:  # summed row by row in kernel order, as the report always has
        for unit, cycles in part.useful:
            useful[unit] = useful[unit] + cycles
        for level_name, (reads, writes) in part.buffer_words.items():
            buffer_words[level_name] = buffer_words.get(level_name, 0.0) + reads + writes
    with np.errstate(divide="ignore", invalid="ignore"):
        # Utilization: PE-cycles doing useful work over PE-cycles available (idle columns
        # of a weight-stationary mapping and padded lanes count as idle).
        utilization = {
            u: np.where(totals.cycles > 0, shaped(c) / totals.cycles, 0.0)
            for u, c in useful.items()
        }
    return BatchReport(
        n=n,
        params=dict(batch_params),
        cycles=totals.cycles,
        latency_s=totals.latency_s,
        energy_pj=totals.energy_pj,
        energy_by_component_pj=totals.energy_by_component_pj,
        dram_bytes=totals.dram_bytes,
        dram_bytes_by_tensor=totals.dram_bytes_by_tensor,
        buffer_words={k: shaped(v) for k, v in buffer_words.items()},
        utilization=utilization,
        valid=totals.valid,
        factors={
            part.totals.name: {key: _shaped_int(v, n) for key, v in part.totals.factors.items()}
            for part in parts
        },
        einsums=tuple(row for part in parts for row in part.einsums),
        kernels=tuple(part.row for part in parts),
        problems=tuple(problem for part in parts for problem in part.problems),
        area_by_component_mm2=_shaped_area(arch, n),
    )


@dataclass(frozen=True, slots=True)
class KernelTotals:
    """What one kernel adds to its mapping's totals (`combine_kernels`): arrays of the
    batch's n rows where a free parameter moves them, scalars where none does.

    Kernels are costed one by one (`_KernelModel`); nothing of one kernel depends on
    another's factors, so the totals of a mapping whose kernels take rows of different
    batches are these parts' rows combined (`take`, then `combine_kernels`).

    Attributes:
        name: the kernel.
        cycles: max(compute, memory) cycles, its time when kernels run one after another.
        memory_cycles: off-chip bytes / off-chip bytes per cycle.
        unit_cycles: busy cycles per compute unit it binds.
        energy_pj: by component, in the order `combine_kernels` adds them: 'compute', the
            off-chip level, then each on-chip level it reads or writes.
        traffic_bytes: off-chip bytes by tensor.
        valid: (n,) bool, False where one of its problems holds (an overflowing tile, a
            spatial factor over its array, an empty last iteration).
        factors: its resolved loop factors by key and spatial factors (`spatial.<rank>`).
    """

    name: str
    cycles: np.ndarray | float
    memory_cycles: np.ndarray | float
    unit_cycles: dict
    energy_pj: dict
    traffic_bytes: dict
    valid: np.ndarray
    factors: dict

    def take(self, rows: np.ndarray) -> KernelTotals:
        """The totals of `rows` (indices into this batch's rows)."""

        def at(value):
            return value[rows] if np.ndim(value) else value

        def each(values: dict) -> dict:
            return {key: at(v) for key, v in values.items()}

        return KernelTotals(
            self.name, at(self.cycles), at(self.memory_cycles), each(self.unit_cycles),
            each(self.energy_pj), each(self.traffic_bytes), self.valid[rows],
            each(self.factors),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BatchTotals:
    """`combine_kernels`: a mapping's headline numbers over n rows (read-only arrays)."""

    cycles: np.ndarray
    latency_s: np.ndarray
    energy_pj: np.ndarray
    energy_by_component_pj: dict
    dram_bytes: np.ndarray
    dram_bytes_by_tensor: dict
    valid: np.ndarray


def combine_kernels(
    arch: Architecture, kernels, overlap: Overlap = Overlap.SERIAL, n: int | None = None
) -> BatchTotals:
    """A mapping's cycles, energy, off-chip traffic and validity from its kernels' totals
    (`KernelTotals`, in kernel order, each of n rows): cycles = the sum of the kernels'
    (serial) or the busiest unit's sum against the off-chip transfers' (perfect overlap);
    energy = each component summed over kernels, plus leakage (W x latency); valid where
    every kernel is. `evaluate_batch` combines its kernels with this one function."""
    if n is None:
        n = len(kernels[0].valid) if kernels else 1
    dram = arch.levels[0]
    energy: dict = {"compute": 0.0, dram.name: 0.0, "leakage": 0.0}
    traffic: dict = {}
    for kernel in kernels:
        for tensor, moved in kernel.traffic_bytes.items():
            traffic[tensor] = traffic.get(tensor, 0.0) + moved
        for component, pj in kernel.energy_pj.items():
            energy[component] = energy.get(component, 0.0) + pj
    if overlap is Overlap.PERFECT:  # the units' and the transfers' sums over kernels
        busy: dict = {u.name: 0.0 for u in arch.units}
        memory_total = 0.0
        for kernel in kernels:
            for unit, cycles in kernel.unit_cycles.items():
                busy[unit] = busy[unit] + cycles
            memory_total = memory_total + kernel.memory_cycles
        total = functools.reduce(np.maximum, [*busy.values(), memory_total])
    else:
        total = sum(kernel.cycles for kernel in kernels)
    shaped = functools.partial(_shaped, n=n)
    total = shaped(total)
    latency = total / arch.clock_hz
    energy["leakage"] = arch.leakage_w * latency * 1e12
    energy = {k: shaped(v) for k, v in energy.items()}
    valid = functools.reduce(np.logical_and, [k.valid for k in kernels], np.ones(n, bool))
    return BatchTotals(
        cycles=total,
        latency_s=latency,
        energy_pj=sum(energy.values()),
        energy_by_component_pj=energy,
        dram_bytes=shaped(sum(traffic.values())),
        dram_bytes_by_tensor={k: shaped(v) for k, v in traffic.items()},
        valid=valid,
    )


def kernel_totals(
    cascade: Cascade,
    arch: Architecture,
    mapping: Mapping,
    shape: MappingABC[str, int],
    params: MappingABC[str, object] | None = None,
    options: ModelOptions | None = None,
) -> tuple[KernelTotals, ...]:
    """The `KernelTotals` of each kernel of `mapping` over a batch (arguments as
    `evaluate_batch`'s); the mapping may hold only some of the cascade's Einsums (one
    kernel of a partial grouping, costed on its own)."""
    arch, batch_params, n, options = _batch_setup(arch, mapping, params, options)
    parts = _kernel_parts(cascade, arch, mapping, shape, batch_params, n, options, report=False)
    return tuple(part.totals for part in parts)


def einsum_cycles(
    cascade: Cascade,
    arch: Architecture,
    mapping: Mapping,
    shape: MappingABC[str, int],
    params: MappingABC[str, object] | None = None,
    options: ModelOptions | None = None,
) -> dict[str, tuple[str, object]]:
    """Each Einsum's (unit, cycles over the batch) in `mapping` (arguments as
    `evaluate_batch`'s), the unit and cycles of its row in the report's `einsums`, without
    the kernels' traffic, buffers and energy: what a probe of a unit's speed reads
    (`mapper.space`'s, tens per space)."""
    arch, batch_params, n, options = _batch_setup(arch, mapping, params, options)
    out: dict[str, tuple[str, object]] = {}
    for _, model in _kernel_models(cascade, arch, mapping, shape, batch_params, n, options):
        for name, row in model.einsum_rows(report=False).items():
            out[name] = (row["unit"], row["cycles"])
    return out


def _kernel_models(cascade, arch, mapping, shape, batch_params, n, options):
    """Each kernel of `mapping` with its `_KernelModel` over the batch. One rule
    (simulator/shape.py): a rank the cascade iterates is priced by it, never also a batch
    multiplier; outer ranks are the mapping's batch ranks it does not know."""
    sizes, batch = _sizes_and_batch(cascade, mapping.batch, shape)
    for kernel in mapping.kernels:
        where = f"mapping {mapping.name}, kernel {kernel.name}: "
        model = _KernelModel(
            cascade, arch, kernel, sizes, batch, options, where, batch_params, n,
            skip_empty_tiles=mapping.skip_empty_tiles,
        )  # fmt: skip
        yield kernel, model


def _batch_setup(arch, mapping, params, options) -> tuple:
    """(the architecture with the batch's `arch.` numbers, the checked free parameters,
    the batch's length, the options): what `evaluate_batch` and `kernel_totals` start
    from."""
    batch_params, n = _batch_params(mapping, params)
    return _with_arch_params(arch, batch_params), batch_params, n, options or ModelOptions()


@dataclass(frozen=True, slots=True)
class _KernelPart:
    """One kernel's share of `evaluate_batch`: its totals and the rows of its report."""

    totals: KernelTotals
    useful: list  # (unit, useful PE-cycles) of each Einsum bound to a unit
    buffer_words: dict  # on-chip (words read, words written) per level
    einsums: list  # `BatchReport.einsums` rows
    row: dict  # its `BatchReport.kernels` row
    problems: list


def _kernel_parts(
    cascade, arch, mapping, shape, batch_params, n, options, report: bool = True
) -> list[_KernelPart]:
    """Cost each kernel of `mapping` on its own (`_KernelModel`); without `report`, only
    each one's totals (its report rows empty: `kernel_totals`)."""
    dram = arch.levels[0]
    parts = []
    for kernel, model in _kernel_models(cascade, arch, mapping, shape, batch_params, n, options):
        problems = list(model.problems)
        per = model.einsum_rows(report)
        unit_cycles: dict = {}
        for row in per.values():
            if row["unit"]:
                unit_cycles[row["unit"]] = unit_cycles.get(row["unit"], 0.0) + row["cycles"]
        if kernel.overlap is Overlap.PERFECT:
            compute = functools.reduce(np.maximum, unit_cycles.values(), 0.0)
        elif kernel.overlap is Overlap.SERIAL:
            compute = sum(unit_cycles.values())
        else:
            compute = _pipelined_cycles(kernel, per, model, cascade)
        traffic = model.dram_traffic()
        bytes_moved = sum(traffic.values())
        memory = bytes_moved / dram.bandwidth_bytes_per_cycle
        energy = {
            "compute": sum(row["energy_pj"] for row in per.values()),
            dram.name: bytes_moved * (dram.read_pj_per_byte + dram.write_pj_per_byte) / 2,
        }
        buffer_words: dict = {}
        for level_name, words in model.buffer_words(traffic).items():
            level = arch.level(level_name)
            pj = words["reads"] * level.read_pj_per_byte + words["writes"] * level.write_pj_per_byte
            energy[level_name] = pj * arch.word_bytes
            buffer_words[level_name] = (words["reads"], words["writes"])
        invalid = functools.reduce(np.logical_or, [p.mask for p in problems], np.zeros(n, bool))
        factors = dict(zip(model.keys, model.loop_factors, strict=True)) | {
            f"spatial.{r}": f for r, f in model.spatial.items()
        }
        totals = KernelTotals(
            kernel.name, np.maximum(compute, memory), memory, unit_cycles, energy, traffic,
            ~invalid, factors,
        )  # fmt: skip
        if not report:
            parts.append(_KernelPart(totals, [], {}, [], {}, problems))
            continue
        useful = [(row["unit"], row["useful_cycles"]) for row in per.values() if row["unit"]]
        row = {"kernel": kernel.name, "compute_cycles": compute, "memory_cycles": memory,
               "tiles": model.tiles}  # fmt: skip
        einsums = [
            {
                "kernel": kernel.name,
                "einsum": r["einsum"],
                "unit": r["unit"],
                "ops": r["ops"],
                "cycles": r["cycles"],
                "energy_pj": r["energy_pj"],
                "lowered": r["lowered"],
            }
            for r in per.values()
        ]
        parts.append(_KernelPart(totals, useful, buffer_words, einsums, row, problems))
    return parts


#: `area_by_component_mm2` of the last architectures costed, by identity (held in the value),
#: with its batch-shaped copies by batch length.
_AREAS: dict[int, tuple[Architecture, dict, dict]] = {}


def _held_area(arch: Architecture) -> tuple[Architecture, dict, dict]:
    """`_AREAS`' entry of `arch`: `area_by_component_mm2(arch)` once per architecture object
    (one in a search)."""
    held = _AREAS.get(id(arch))
    if held is None or held[0] is not arch:
        held = _store(_AREAS, id(arch), (arch, area_by_component_mm2(arch), {}), 64)
    return held


def _shaped_area(arch: Architecture, n: int) -> dict:
    """`area_by_component_mm2(arch)` as read-only arrays of n rows (`_shaped`), shaped once
    per (architecture, n): a new dict of the same read-only arrays each call."""
    _, areas, shaped = _held_area(arch)
    found = shaped.get(n)
    if found is None:
        found = _store(shaped, n, {k: _shaped(v, n) for k, v in areas.items()}, 64)
    return dict(found)


def _shaped(value, n: int) -> np.ndarray:
    """A batch quantity as a read-only float array of shape (n,)."""
    if type(value) is np.ndarray and value.shape == (n,) and value.dtype == np.float64:
        view = value.view()  # what broadcast_to returns, without its checks
        view.flags.writeable = False
        return view
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))


def _shaped_int(value, n: int) -> np.ndarray:
    """`_shaped(value, n).astype(np.int64)` (through float64, as the batch's other
    quantities), without the read-only view of a full-length array."""
    if type(value) is np.ndarray and value.shape == (n,):
        return value.astype(np.float64).astype(np.int64)
    if isinstance(value, (int, float, np.integer, np.floating)):  # np.full: no broadcast_to
        return np.full(n, np.float64(value).astype(np.int64))
    return _shaped(value, n).astype(np.int64)


def evaluate(
    cascade: Cascade,
    arch: Architecture,
    mapping: Mapping,
    shape: MappingABC[str, int],
    options: ModelOptions | None = None,
) -> Report:
    """Predict cycles, energy, traffic and utilization of `mapping` running `cascade`:
    `evaluate_batch` with no free parameters, a batch of one.

    Args:
        cascade: what is computed.
        arch: the hardware.
        mapping: where and when (kernels, loops, spatial unrolling, binding, stages).
        shape: rank sizes, batch ranks (B, H) included; missing batch ranks count as 1.
        options: accounting switches (`ModelOptions`).

    Returns:
        A `Report`; `valid` is False (with `reasons`) when a kept tile overflows its level.

    Raises:
        InfeasibleError: a `fit` loop for which nothing fits, even a factor of 1 (the message
            names the largest tiles and the likely causes).
        MappingError: a mapping that names unknown Einsums, units, levels or ranks, or binds
            an Einsum to a unit lacking one of its operators.
    """
    batch = evaluate_batch(cascade, arch, mapping, shape, None, options)
    for problem in batch.problems:
        if problem.infeasible and problem.mask[0]:
            raise InfeasibleError(f"mapping {mapping.name}, kernel {problem.at(0)}")
    return batch.report(0)


def _pipelined_cycles(kernel: Kernel, per: dict[str, dict], model: _KernelModel, cascade):
    """T tiles x sum over stages of the max over units of per-tile cycles (the waterfall)."""
    tiles = model.tiles
    staged = {item.einsum for stage in kernel.stages for item in stage if not item.drain}
    unstaged = [n for n, row in per.items() if n not in staged and _any(row["cycles"])]
    if unstaged:
        raise MappingError(
            f"kernel {kernel.name}: Einsum(s) {', '.join(unstaged)} have work but no stage"
        )
    per_tile = 0.0
    for stage in kernel.stages:
        by_unit: dict = {}
        for item in stage:
            cycles = per[item.einsum]["cycles"] / tiles
            if item.drain:
                # The result of a spatial reduction leaves the array one column at a time.
                einsum = cascade.einsum(item.einsum)
                unit = model.arch.unit(per[item.einsum]["unit"])
                ranks = dict(kernel.spatial).get(unit.name, ())
                reduced = {rank_of(v) for v in einsum.reduced_vars}
                width = _prod(model.spatial[r] for r in ranks if r in reduced)
                by_unit["(drain)"] = by_unit.get("(drain)", 0.0) + cycles * width
            else:
                unit_name = per[item.einsum]["unit"]
                by_unit[unit_name] = by_unit.get(unit_name, 0.0) + cycles
        per_tile = per_tile + functools.reduce(np.maximum, by_unit.values(), 0.0)
    return per_tile * tiles
