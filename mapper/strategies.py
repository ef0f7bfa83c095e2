"""Search strategies: plain functions with one signature behind the `STRATEGIES` registry.

    strategy(space: MapSpace, run: Runner, budget: int, rng: np.random.Generator) -> None

A strategy chooses which candidates (template index, grid rows) to cost and hands them to
`run`, which prunes, asks the simulator (`evaluate_batch`, one call per template and chunk),
records every result and returns the objective of each row (inf when pruned or invalid).
Strategies never compute a cost. `run.remaining` is what is left of the budget (candidates
costed); a strategy stops when it reaches 0.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from einsim.einsum import Registry, SpecError

from .space import MapSpace

STRATEGIES: Registry = Registry("strategy")

SAMPLE = 2048  # rows costed per visit of a template by greedy and anneal
#: rows of one kernel of a partial grouping greedy costs on its own (`_Visits._part`): a
#: kernel recurs across groupings and rows cost little beside a call, so the most a visit
#: samples (the 136 cells against joint visits: 14 better, 3 worse by at most 4.9%; with
#: 1,024 rows 5 worse by up to 16%, with 512 4 worse by up to 14%, for 2-7% less CPU)
PART_SAMPLE = SAMPLE
EXHAUSTIVE_CHUNK = 1 << 18
BLOCK = 256  # rows per template draw of the random strategy
REFINED = 8  # templates whose factors greedy refines
#: order moves greedy makes all of; past it, the orders one edit away (the 136 cells against
#: 192: combiner 1K/64K 3.4/4.2% better, the others the same, hip's 165 orders edit by edit;
#: against 64: moh 64K 14% worse)
LOCAL_ORDERS = 128
PRUNE_MARGIN = 1 + 1e-12  # float rounding between a sum of kernel terms and their total
POLISH_TOP = 8  # templates of each fusion move greedy refines before it compares them ...
POLISH = 6  # ... by at most this many rounds of coordinate descent on their factors ...
STARTS = 3  # ... from this many of their best sampled rows (distinct objectives)
PAIRS = 1  # greedy's refinement also moves pairs of factors of one rank (`_tied`); 0: not
KEYED = 512  # templates of a grouping past which `_Moves` looks moves up by one key
RESTARTS = 2  # runner-up groupings greedy descends within after it stops
#: rounds of moves within the starting grouping before greedy's first fusion move; where no
#: grouping beats it then, the rounds go on (the 136 cells: 14-43% less CPU where a partial
#: grouping wins, e.g. hyper_attention 16K 1.11 -> 0.91 s; combiner 1M 1.5% better,
#: flexprefill 16K 1.7% worse, the others the same; 3 rounds: no less CPU; 1: 5 worse)
FIRST_ROUNDS = 2
#: groupings greedy's fusion move from the unfused grouping visits all of (a cut between every
#: two Einsums: every grouping is a merge away); past it, those one cut from the best partial
#: grouping sampled so far. The 136 cells: the same mappings; flexprefill at 1K costs 147
#: kernels instead of 328 (597 groupings), hyper_attention at 1M 167 instead of 199 (212);
#: with no sweep at all, naive_2pass, stable_3pass and online_2pass (16-38 groupings) are
#: 44-100% worse at 1M, their best grouping two or three cuts from any partial one sampled
SWEPT_GROUPINGS = 128
REFINED_FUSIONS = 4  # ... and fusion groupings whose best template it refines


def _all_rows(space: MapSpace, chunk: int = EXHAUSTIVE_CHUNK):
    for t, template in enumerate(space.templates):
        for start in range(0, template.size, chunk):
            yield t, np.arange(start, min(template.size, start + chunk), dtype=np.int64)


def survivors(space: MapSpace) -> int:
    """Candidates left after pruning before costing (every template's `keep_rows`)."""
    return sum(int(space.templates[t].keep_rows(rows).sum()) for t, rows in _all_rows(space))


@STRATEGIES.register("exhaustive", summary="every candidate that survives pruning")
def exhaustive(space: MapSpace, run, budget: int, rng: np.random.Generator) -> None:
    """Cost every candidate left after pruning; refuse when they exceed the budget.

    Raises:
        SpecError: the space is larger than the budget (with its size and a suggestion).
    """
    size = space.size
    left = survivors(space) if size <= 50 * budget else None
    if (left if left is not None else size) > budget:
        counted = f"{left:,} after pruning" if left is not None else "not counted after pruning"
        raise SpecError(
            f"exhaustive: the map space has {size:,} candidates ({counted}) in "
            f"{len(space.templates):,} templates, more than the budget of {budget:,}; raise "
            "the budget or use strategy 'anneal' (or 'greedy', 'random')"
        )
    for t, rows in _all_rows(space):
        run(t, rows)


@STRATEGIES.register("random", summary="uniform template, then uniform grid rows (seeded)")
def random(space: MapSpace, run, budget: int, rng: np.random.Generator) -> None:
    """Draw a template uniformly, then up to `BLOCK` rows of its grid uniformly, until the
    budget is spent (templates first, so that a small structure is as likely as a large
    one; rows in blocks, so that one simulator call costs many)."""
    draws = 0
    open_ = np.ones(len(space.templates), dtype=bool)  # templates not yet costed whole
    while run.remaining > 0 and open_.any() and draws < 20 * len(space.templates) + budget:
        draws += 1
        t = int(np.flatnonzero(open_)[rng.integers(open_.sum())])
        size = space.templates[t].size
        n = min(size, BLOCK, run.remaining)
        rows = np.arange(size) if n == size else np.unique(rng.integers(0, size, size=n))
        open_[t] = n < size
        run(t, rows)


_TIED = {"order": {"order", "onchip_order"}, "compute": {"compute", "order", "onchip_order"}}


class _Moves:
    """Per template and structural dimension, the templates that differ only there
    (`moves(t, d)`), worked out per fusion grouping when a strategy first stands in it or
    looks at it, so that a grouping nobody reaches is never built (`space.templates` is
    lazy). Dimensions are `space.dimensions` (fusion after the ones within a grouping: the
    tiled groupings need their orders and keeps found before they are compared with the
    unfused baseline).

    A move of the off-chip order may change the on-chip order too, and a move of the
    compute structure both orders: the orders of a template depend on which ranks it
    unrolls and leaves untiled, so one label at a time could not reach them. A fusion move
    goes to the first template of every grouping one cut away (a cut added, removed or
    moved; fused and unfused are always a move away), and to the templates of those
    groupings whose other labels are the same."""

    def __init__(self, space: MapSpace):
        self.templates = space.templates
        self.dims = list(space.dimensions)
        self._others = {
            d: [i for i, x in enumerate(self.dims) if x not in _TIED.get(d, {d})] for d in self.dims
        }
        self._compared = {d: {self.dims[i] for i in others} for d, others in self._others.items()}
        self._groupings = self.templates.groupings()
        self._first_of = {start: fusion for fusion, start in self._groupings}
        self._cuts = {f: _cuts(f) for f, _ in self._groupings}
        self._values: list[dict[str, int]] = [{} for _ in self.dims]  # label -> code, per dim
        self._codes: dict[int, np.ndarray] = {}  # per grouping (its first template): codes
        self._keys: dict[tuple[int, str], tuple | None] = {}  # per grouping and dim: `_keyed`
        self._full: dict[int, np.ndarray] = {}  # per grouping: `_full_key`
        self._ranges: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per grouping: codes' range
        self._near: dict[str, list[int]] = {}
        self._memo: dict[tuple[int, str], list[int]] = {}
        self._names: dict[str, list[str]] = {d: [] for d in self.dims}  # code -> label
        self._split: dict[int, tuple[list[str], frozenset]] = {}  # order code -> its ranks

    def codes(self, t: int) -> tuple[range, np.ndarray]:
        """The templates of t's grouping and their labels as integer codes (one column per
        dimension; a missing label codes as '')."""
        block = self.templates.block(t)
        if block.start not in self._codes:
            # column by column in memory (filling a row-major array column by column took
            # 0.12 s at 753,654 templates), each column gathered in place, in int32 (a
            # code counts labels): flexprefill's fused grouping about 0.2 -> 0.1 s
            out = np.empty((len(block), len(self.dims)), np.int32, order="F")
            for j, ((labels, index), values) in enumerate(
                zip(self.templates.labels(t, self.dims), self._values, strict=True)
            ):
                codes = np.array([values.setdefault(x, len(values)) for x in labels], np.int32)
                if len(codes) == 1:  # one label (a grouping's fusion, kernels): no gather
                    out[:, j] = codes[0]
                else:  # the indices are valid: 'wrap' spares the buffered bounds check
                    np.take(codes, index, out=out[:, j], mode="wrap")
            self._codes[block.start] = out
        return block, self._codes[block.start]

    def labels(self, t: int) -> dict[str, str]:
        return dict(self.templates.structure(t))

    def fusion(self, t: int) -> str:
        """t's fusion grouping label ('' where it has none)."""
        return self.labels(t).get("fusion", "")

    @property
    def count(self) -> int:
        """The space's fusion groupings."""
        return len(self._groupings)

    def sweeps(self, t: int) -> bool:
        """Whether every grouping is one fusion move from t's (its cuts unknown: the
        unfused grouping, a cut between every two Einsums)."""
        fusion = self.fusion(t)
        return fusion in self._cuts and self._cuts[fusion] is None

    def partial(self, t: int) -> bool:
        """Whether t's grouping is a partial one (some Einsums fused, some cut)."""
        return bool(self._cuts.get(self.fusion(t)))

    def first_groups(self, t: int) -> tuple[str, ...]:
        """Where t is the first template of a partial grouping, its groups (`_groups_of`),
        known without building it; else ()."""
        return _groups_of(self._first_of.get(t, ""))

    def _keyed(self, start: int, d: str) -> tuple[np.ndarray, ...] | None:
        """The codes of a grouping (its first template `start`) along the dimensions other
        than d's, as one integer per template (mixed radix over each column's range
        `low`..`high`, `scale` its place value; a column of one code adds nothing), worked
        out once per grouping and dimension so that a look-up is one comparison of
        integers, not of every column; None when the key of every column would not fit 62
        bits."""
        key = (start, d)
        if key not in self._keys:
            _, codes = self.codes(start)
            cols = self._others[d]
            if start not in self._ranges:
                self._ranges[start] = (codes.min(axis=0), codes.max(axis=0))
            low, high = self._ranges[start]
            varying = np.flatnonzero(high > low).tolist()
            radix = [int(high[j] - low[j]) + 1 for j in varying]
            if math.prod(radix) >= 1 << 62:
                self._keys[key] = None
            else:
                # place values over every varying column, so that one key of all of them
                # (`_full_key`) serves each dimension: the columns d ignores subtracted, where
                # they vary at all (a grouping's fusion, kernels, often its on-chip order:
                # none, the whole key)
                scale = np.zeros(len(self.dims), dtype=np.int64)
                scale[varying] = np.cumprod([1, *radix[:-1]])
                keys = self._full_key(start, codes, low, scale, varying)
                ignored = [j for j in varying if j not in cols]
                if ignored:
                    keys = keys.copy()
                    for j in ignored:
                        keys -= _placed(codes[:, j], low[j], scale[j])
                self._keys[key] = (keys, low[cols], high[cols], scale[cols])
        return self._keys[key]

    def _full_key(self, start, codes, low, scale, varying) -> np.ndarray:
        """The codes of a grouping's templates along every dimension as one integer each
        (mixed radix `scale` over its `varying` columns), once per grouping."""
        if start not in self._full:
            full = np.zeros(len(codes), dtype=np.int64)
            for j in varying:
                full += _placed(codes[:, j], low[j], scale[j])
            self._full[start] = full
        return self._full[start]

    def _same(self, t: int, u: int, d: str) -> list[int]:
        """The templates of u's grouping whose labels other than d's are t's: none where a
        label the whole grouping shares (`Templates.shared`) differs, without working out
        the grouping's labels (from the fused or the unfused grouping, no partial grouping
        has t's number of kernels)."""
        shared = self.templates.shared(u)
        if shared:
            compared, labels = self._compared[d], self.labels(t)
            if any(labels.get(k, "") != v for k, v in shared if k in compared):
                return []
        _, mine = self.codes(t)
        block, codes = self.codes(u)
        cols = self._others[d]
        row = mine[t - self.templates.block(t).start, cols]
        keyed = self._keyed(block.start, d) if len(codes) > KEYED else None
        if keyed is None:
            hits = np.flatnonzero(np.all(codes[:, cols] == row, axis=1))
        else:
            keys, low, high, scale = keyed
            if np.any(row < low) or np.any(row > high):  # a label the grouping lacks
                return []
            hits = np.flatnonzero(keys == int((row - low) @ scale))
        return (hits + block.start).tolist()

    def moves(self, t: int, d: str) -> list[int]:
        key = (t, d)
        if key not in self._memo:
            if d != "fusion":
                self._memo[key] = self._same(t, t, d)
            else:
                found = set()
                for start in self.near(self.fusion(t)):
                    found.add(start)
                    found.update(self._same(t, start, d))
                self._memo[key] = sorted(found)
        return self._memo[key]

    def local(self, t: int, d: str) -> list[int]:
        """The moves greedy makes: `moves(t, d)`, except along the off-chip order, where
        only the orders one edit from t's (`_order_edit`: the same tiled ranks in another
        order, or one rank more or fewer with the others in the same order), so that a round
        costs tens of orders, not every order of every subset of the ranks (hyper_attention
        at 1K: 29 of 1,406; flexprefill: 32 of 11,419). Greedy repeats rounds while one
        helps, so an order several edits away is reached edit by edit."""
        every = self.moves(t, d)
        if d != "order" or len(every) <= LOCAL_ORDERS:
            return every
        mine = self.labels(t).get("order", "")
        block, codes = self.codes(t)  # the moves along the order stay in t's grouping
        column = codes[np.asarray(every) - block.start, self.dims.index("order")]
        names = self._label_names("order")
        x = mine.split(",")
        sx = frozenset(x)
        edits = []
        for c in np.unique(column).tolist():
            if c not in self._split:  # each order's ranks, split once
                y = names[c].split(",")
                self._split[c] = (y, frozenset(y))
            if _one_edit(x, sx, *self._split[c]):
                edits.append(c)
        return np.asarray(every)[np.isin(column, edits)].tolist()

    def _label_names(self, d: str) -> list[str]:
        """The labels along d by their code."""
        j = self.dims.index(d)
        if len(self._names[d]) != len(self._values[j]):
            self._names[d] = list(self._values[j])
        return self._names[d]

    def one_per_structure(self, current: int, moves: list[int]) -> list[int]:
        """Of the templates `moves` (in current's grouping), one per compute structure: the
        first whose loop orders are the current template's, else the first; by the codes of
        the labels (a missing label codes as '': where that confuses a missing order with
        an empty one, the structure's templates are compared by their labels)."""
        if not moves:
            return []
        block, codes = self.codes(current)
        at = np.asarray(moves) - block.start
        orders = [self.dims.index(x) for x in ("order", "onchip_order")]
        compute = codes[at, self.dims.index("compute")]
        same = np.all(codes[at][:, orders] == codes[current - block.start, orders], axis=1)
        _, first = np.unique(compute, return_index=True)
        chosen = dict(zip(compute[first].tolist(), first.tolist(), strict=True))
        structures, first_same = np.unique(compute[same], return_index=True)
        first_same = np.flatnonzero(same)[first_same]
        mine = _orders_of(self.labels(current))
        for c, i in zip(structures.tolist(), first_same.tolist(), strict=True):
            if _orders_of(self.labels(moves[i])) == mine:
                chosen[c] = i
            else:  # the codes are equal, the labels (one missing) are not
                members = np.flatnonzero(compute == c)
                hits = [k for k in members.tolist() if _orders_of(self.labels(moves[k])) == mine]
                chosen[c] = hits[0] if hits else int(members[0])
        return sorted(moves[i] for i in chosen.values())

    def near(self, fusion: str) -> list[int]:
        """The first template of every grouping one cut away from `fusion`."""
        if fusion not in self._near:
            mine = self._cuts.get(fusion)
            self._near[fusion] = [
                start for g, start in self._groupings
                if self._cuts[g] is None or mine is None or _one_cut_apart(mine, self._cuts[g])
            ]  # fmt: skip
        return self._near[fusion]


def _placed(column: np.ndarray, low: int, scale: int) -> np.ndarray:
    """A column of codes at its place in a mixed-radix key: (code - low) * scale, int64."""
    out = column.astype(np.int64)
    out -= low
    out *= scale
    return out


def _cuts(fusion: str) -> frozenset[str] | None:
    """The cuts of a partial grouping's label (`partial:QK-LM|RM-AV`: the first Einsum of
    every kernel after the first, {RM}); none for `fused`; None for any other grouping."""
    if fusion == "fused":
        return frozenset()
    if not fusion.startswith("partial:"):
        return None
    return frozenset(group.split("-")[0] for group in _groups_of(fusion)[1:])


def _order_edit(a: str, b: str) -> bool:
    """Loop orders one edit apart (labels `E,F,M1,P`): the same ranks in any order, or one
    rank more or fewer with the shared ranks in the same order (the same order included).

    Example:
        >>> _order_edit("E,F,M1,P", "F,M1,P"), _order_edit("E,F,M1,P", "M1,P")
        (True, False)
    """
    x, y = a.split(","), b.split(",")
    return _one_edit(x, frozenset(x), y, frozenset(y))


def _one_edit(x: list[str], sx: frozenset, y: list[str], sy: frozenset) -> bool:
    """`_order_edit` of two orders already split into their ranks (and their sets)."""
    if sx == sy:
        return True
    if len(sx ^ sy) != 1:
        return False
    return [r for r in x if r in sy] == [r for r in y if r in sx]


def _distinct_best(values: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[float, int]]:
    """(value, row) of the k smallest distinct finite values, best first (a sample's ties
    are usually the same tiling seen through a factor that does not matter).

    Example:
        >>> _distinct_best(np.array([3.0, 1.0, 1.0, np.inf, 2.0]), np.arange(5), 2)
        [(1.0, 1), (2.0, 4)]
    """
    order = np.argsort(values, kind="stable")
    found: dict[float, int] = {}
    for i in order:
        if len(found) == k or not np.isfinite(values[i]):
            break
        found.setdefault(float(values[i]), int(rows[i]))
    return list(found.items())


def _tied(template) -> list[tuple[int, int]]:
    """Pairs of free parameters that factor the same rank (its spatial and on-chip
    factors, or one rank's factors in two kernels of a grouping): greedy's refinement moves
    them together, a tile's split between levels or kernels changed in one step."""
    by_rank: dict[str, list[int]] = {}
    for _, grid in template.ranks:
        for param in (grid.spatial_param, grid.onchip_param):
            if param >= 0 and param not in by_rank.setdefault(grid.rank, []):
                by_rank[grid.rank].append(param)
    return [pair for params in by_rank.values() for pair in itertools.combinations(params, 2)]


def _groups_of(fusion: str) -> tuple[str, ...]:
    """The groups of a partial grouping's label as its texts (`partial:QK-LM|RM-AV`:
    QK-LM, RM-AV); () for any other grouping.

    Example:
        >>> _groups_of("partial:QK-LM|RM-AV"), _groups_of("fused")
        (('QK-LM', 'RM-AV'), ())
    """
    if not fusion.startswith("partial:"):
        return ()
    return tuple(fusion.removeprefix("partial:").split("|"))


def _one_cut_apart(a: frozenset, b: frozenset) -> bool:
    """One cut added, removed or moved (the same grouping included)."""
    return len(a ^ b) <= 1 or (len(a ^ b) == 2 and len(a) == len(b))


@dataclass(frozen=True)
class _PartSample:
    """One kernel of a partial grouping sampled on its own (`_Visits._part`): its rows as
    value indices of its columns of the grouping's grid, their costs (`KernelTotals`),
    their terms of the objective (inf: invalid) and the rows best first."""

    part: object
    alone: object  # the mapping it is costed with: the grouping's, with only this kernel
    index: np.ndarray
    totals: object
    scores: np.ndarray
    order: np.ndarray
    values: tuple  # its columns' values in the grouping's grid
    key: tuple

    @property
    def least(self) -> float:
        """Its best sampled term (inf where no row is valid)."""
        return float(self.scores[self.order[0]]) if len(self.scores) else np.inf


@dataclass
class _Descent:
    """A kernel's coordinate descent (`_Visits._descend_part`): its best (term, value
    indices, one-row totals), the points still moving (term, value indices) and how many
    of its best sampled rows it has started from."""

    best: tuple
    points: list
    started: int


@dataclass(frozen=True)
class _PartGrid:
    """What `_neighbours` reads of a template, for one kernel's columns."""

    values: tuple
    ranks: tuple


class _Visits:
    """Best (objective, row) found in each template visited, sampling new rows per visit."""

    def __init__(self, space: MapSpace, run, rng, budget: int, resample: bool = True):
        self.space, self.run, self.rng, self.resample = space, run, rng, resample
        self.best: dict[int, tuple[float, int]] = {}
        self.starts: dict[int, list[tuple[float, int]]] = {}  # a template's best samples
        # rows per visit: enough visits for the budget to reach most templates
        self.sample = int(np.clip(budget // (2 * len(space.templates)), 128, SAMPLE))
        self._parts: dict[tuple, _PartSample] = {}  # `_part`'s samples
        # per group of Einsums (its text in a partial label, `LS-VAB`): the best term its
        # kernel has sampled in a grouping's first template (`_unbuilt_above`)
        self._first_least: dict[str, float] = {}
        self._descents: dict[tuple, _Descent] = {}  # `_descend_part`'s, by the sample's key
        self._seeds: dict[int, tuple] = {}  # `_seed_index`'s, by template identity
        # kernels costed apart where the objective adds over them (`Runner.separable`)
        self._apart = not resample and getattr(run, "separable", False)

    def visit(self, t: int, above: float = np.inf, groups: tuple[str, ...] = ()) -> float:
        """Sample template t once (its best value; a revisit reuses it). `above`: a partial
        grouping visited apart whose kernels' best sampled terms already add past it is
        left unvisited (`_visit_apart`; inf returned, nothing recorded). `groups`: where t
        is the first template of a partial grouping, its groups' texts (`_groups_of`), so
        that it may be left unbuilt (`_unbuilt_above`)."""
        if groups and t not in self.best and self._unbuilt_above(groups, above):
            return np.inf
        template = self.space.templates[t]
        if self._is_apart(template):
            value = self._visit_apart(t, template, above)
            if groups and len(groups) == len(template.parts):
                self._remember_first(template, groups)
            return value
        size = template.size
        if t in self.best and (size <= self.sample or not self.resample):
            return self.best[t][0]
        n = min(size, self.sample, max(self.run.remaining, 0))
        if n <= 0:
            return self.best.get(t, (np.inf, 0))[0]
        if size <= self.sample:
            rows = np.arange(size)
        else:
            rows = self.rng.choice(size, n, replace=False)
            if t not in self.best:
                rows = np.unique(np.concatenate([template.seed_rows(), rows]))
        values = self.run(t, rows)
        if len(values):
            i = int(np.argmin(values))
            if t not in self.best or values[i] < self.best[t][0]:
                self.best[t] = (float(values[i]), int(rows[i]))
            if t not in self.starts:
                self.starts[t] = _distinct_best(values, rows, STARTS)
        return self.best.get(t, (np.inf, 0))[0]

    def _unbuilt_above(self, groups: tuple[str, ...], above: float) -> bool:
        """Whether a partial grouping's first template (its groups `groups`) is left unbuilt:
        its kernels' best terms, as sampled in other groupings' first templates, add past
        `above`. The same kernels there, on the same grids unless a joined grid past
        `space.GRID_POINTS_LIMIT` was thinned (then an estimate): the sum `_visit_apart`
        prunes on, known before the grouping's groups are built (their compute structures,
        15-20% of a search)."""
        if not self._apart or above == np.inf:
            return False
        return self._known_least(groups) > above * PRUNE_MARGIN

    def _known_least(self, groups: tuple[str, ...]) -> float:
        """The sum of the best terms of a grouping's groups sampled so far (`_first_least`;
        a group not yet sampled adds 0): a lower bound of its first template's value."""
        first = self._first_least
        return math.fsum(first[g] for g in groups if g in first)

    def least_first(self, found: list[int], groups_of) -> Iterator[int]:
        """`found` (a fusion move's templates) lowest known bound first (`_known_least` of
        `groups_of(t)`, t's groups where t is a grouping's first template), ties in order:
        the bounds are read again when a template comes up, since the visits before it
        sample groups (a best-first order: the good groupings set the threshold of
        `_unbuilt_above` and `_visit_apart` early)."""
        if not self._apart:
            yield from found
            return
        groups = [groups_of(t) for t in found]
        heap = [(self._known_least(g), i) for i, g in enumerate(groups)]
        heapq.heapify(heap)
        while heap:
            bound, i = heapq.heappop(heap)
            now = self._known_least(groups[i])
            if heap and now > bound and (now, i) > heap[0]:
                heapq.heappush(heap, (now, i))
                continue
            yield found[i]

    def _remember_first(self, template, groups: tuple[str, ...]) -> None:
        """Record the best term of each kernel of a grouping's first template sampled so far
        (`_first_least`, per group: the least over groupings)."""
        for k, group in enumerate(groups):
            found = self._parts_found(template, k)
            if found is not None and found.least < self._first_least.get(group, np.inf):
                self._first_least[group] = found.least

    def _is_apart(self, template) -> bool:
        """Whether template is visited and refined kernel by kernel: a partial grouping's
        (several kernels), where the objective adds over them."""
        return self._apart and len(template.parts) > 1 and not template.absent

    def _visit_apart(self, t: int, template, above: float = np.inf) -> float:
        """Visit a partial grouping's template kernel by kernel: each kernel's grid (its
        columns of t's grid) is sampled and costed on its own, once per search however many
        groupings hold it (`_part`); t is judged by rows that take one sampled row of every
        kernel: the combination of each kernel's `STARTS` best rows (its term of the
        objective is the smallest, and the objective adds over kernels: the best of the
        samples' every combination), and `sample` random combinations. Their totals
        combine the kernels' costs (`Runner.combined`, exact), with no new costing.

        Pruned: the terms are non-negative, so t's judged value is at least the sum of its
        kernels' best sampled terms. Where the kernels sampled already (in other groupings)
        add past `above`, t is left unvisited; the others are sampled one at a time while
        the sum stays at or below it (hyper_attention at 16K: every grouping whose first
        kernel runs HQ to past HK costs over 3x the best, so the kernels after it are never
        costed for those groupings). Where a kernel's sample holds no valid row, no row
        of t is valid (each takes one of its rows): t is judged inf, its other kernels not
        costed (biformer at 64K: 277 of 323 fusion-move visits, CPU 1.33 -> 0.93 s)."""
        if t in self.best:
            return self.best[t][0]
        if self.run.remaining <= 0:
            return np.inf
        count = len(template.parts)
        samples = [self._parts_found(template, k) for k in range(count)]
        least = math.fsum(x.least for x in samples if x is not None)
        for k in range(count + 1):  # each kernel not sampled yet, then the whole
            if least == np.inf:  # a kernel's sample holds no valid row: so do t's rows
                self.best[t] = (np.inf, 0)
                return np.inf
            if least > above * PRUNE_MARGIN:
                return np.inf
            if k < count and samples[k] is None:
                samples[k] = self._part(template, k)
                least += samples[k].least
        sizes = [len(x.scores) for x in samples]  # none 0: an empty sample's least is inf
        n = min(self.sample, max(self.run.remaining, 0))
        if n <= 0:
            return np.inf
        best = np.arange(STARTS)
        picks = [  # a kernel of fewer rows than STARTS repeats its last
            np.concatenate([x.order[np.minimum(best, size - 1)], self.rng.integers(size, size=n)])
            for x, size in zip(samples, sizes, strict=True)
        ]
        index = np.concatenate([x.index[p] for x, p in zip(samples, picks, strict=True)], axis=1)
        every = template.flat(index)
        _, first = np.unique(every, return_index=True)
        first = np.sort(first)[:n]  # the best combinations first, then the random ones
        rows = every[first]
        kernels = [x.totals.take(p[first]) for x, p in zip(samples, picks, strict=True)]
        values = self.run.combined(t, rows, kernels)
        i = int(np.argmin(values))
        self.best[t] = (float(values[i]), int(rows[i]))
        self.starts[t] = _distinct_best(values, rows, STARTS)
        return self.best[t][0]

    def _part(self, template, k: int) -> _PartSample:
        """Kernel k's sample (`_PartSample`) of a partial grouping's template: rows of its
        columns of the template's grid (its values there: its own, or a thinned subset),
        `sample` at random plus the template's seed rows' (every row where fewer), pruned
        as the template prunes them (the part's own checks, `Template.keep_rows`), then
        costed on their own (`Runner.kernel`). Kept per part and values: a kernel recurs
        across groupings."""
        part, key, values, lo = self._part_key(template, k)
        found = self._parts.get(key)
        if found is not None and found.part is part:
            return found
        mapping = template.mapping
        alone = dataclasses.replace(mapping, kernels=(mapping.kernels[k],))
        shape = tuple(len(v) for v in values)
        size = math.prod(shape)
        if size <= PART_SAMPLE:
            rows = np.arange(size)
        else:
            seeds = self._seed_index(template)[:, lo : lo + len(shape)]
            drawn = self.rng.choice(size, PART_SAMPLE, replace=False)
            rows = np.unique(np.concatenate([np.ravel_multi_index(tuple(seeds.T), shape), drawn]))
        if shape:
            index = np.stack(np.unravel_index(rows, shape), axis=1).astype(np.int64)
        else:
            index = np.zeros((len(rows), 0), dtype=np.int64)
        kept, totals, scores = self._cost_part(part, alone, values, index)
        index = index[kept]
        order = np.argsort(scores, kind="stable")
        self._parts[key] = found = _PartSample(
            part, alone, index, totals, scores, order, values, key
        )
        return found

    def _part_key(self, template, k: int) -> tuple:
        """(kernel k of the template, its `_part` key, its columns' values, its first
        column): the kernel as the grouping runs it, its own loops with the grouping's
        mapping-wide switches (skipping empty tiles, batch ranks)."""
        part = template.parts[k]
        lo = sum(len(p.names) for p in template.parts[:k])
        values = template.values[lo : lo + len(part.names)]
        mapping = template.mapping
        key = (id(part), mapping.skip_empty_tiles, mapping.batch, *(v.tobytes() for v in values))
        return part, key, values, lo

    def _parts_found(self, template, k: int) -> _PartSample | None:
        """Kernel k's sample where `_part` has made it already, else None."""
        part, key, _, _ = self._part_key(template, k)
        found = self._parts.get(key)
        return found if found is not None and found.part is part else None

    def _seed_index(self, template) -> np.ndarray:
        """The value indices of a template's seed rows, worked out once per template (its
        kernels' samples each take their columns)."""
        found = self._seeds.get(id(template))
        if found is None or found[0] is not template:
            found = self._seeds[id(template)] = (template, template.indices(template.seed_rows()))
        return found[1]

    def _cost_part(self, part, alone, values, index: np.ndarray) -> tuple:
        """(positions of the rows kept, their `KernelTotals`, their terms of the objective)
        of rows of a part (value indices into `values`, its columns of a grouping's grid),
        pruned as the grouping prunes them (the part's own checks), costed on their own
        (`alone`: the grouping's mapping with only this kernel)."""
        # the part's own value indices (a thinned value list is a subset of the part's)
        own = np.zeros_like(index)
        for j, (mine, v) in enumerate(zip(part.values, values, strict=True)):
            sorter = np.argsort(mine, kind="stable")
            own[:, j] = sorter[np.searchsorted(mine, v[index[:, j]], sorter=sorter)]
        kept = np.flatnonzero(part.keep_rows(part.flat(own)))
        index = index[kept]
        if not len(index):
            return kept, None, np.zeros(0)
        params = {
            name: v[index[:, j]] for j, (name, v) in enumerate(zip(part.names, values, strict=True))
        }
        totals = self.run.kernel(alone, params)
        return kept, totals, self.run.part_values(totals)

    def _refine_apart(self, t: int, template, rounds: int | None, starts: int) -> None:
        """`refine` kernel by kernel (a partial grouping visited apart): each kernel's
        coordinate descent (`_descend_part`) from its best sampled rows, kept per kernel
        across groupings; t's best is the combination of its kernels' best rows."""
        if self.run.remaining <= 0:
            return
        chosen = []
        for k in range(len(template.parts)):
            sample = self._part(template, k)
            if not len(sample.scores):
                return
            chosen.append(self._descend_part(sample, rounds, starts))
        index = np.concatenate([row for _, row, _ in chosen])[None, :]
        rows = template.flat(index)
        values = self.run.combined(t, rows, [totals for _, _, totals in chosen])
        if values[0] < self.best[t][0]:
            self.best[t] = (float(values[0]), int(rows[0]))

    def _descend_part(self, sample: _PartSample, rounds: int | None, starts: int) -> tuple:
        """Coordinate descent on one kernel's factors (its columns' `_neighbours`, costed
        apart), from its `starts` best sampled rows (distinct terms), for at most `rounds`
        more rounds (None: until no change helps); its state kept, so a kernel that recurs
        in another grouping goes on from where it stopped. Returns its best (term, value
        indices, one-row `KernelTotals`)."""
        state = self._descents.get(sample.key)
        if state is None:
            i = int(sample.order[0])
            state = self._descents[sample.key] = _Descent(
                best=(float(sample.scores[i]), sample.index[i], sample.totals.take(np.array([i]))),
                points=[], started=0,
            )  # fmt: skip
        if starts > state.started:  # descents from the next best distinct sampled rows
            seen = {p[0] for p in state.points}
            every = np.arange(len(sample.scores))
            for score, i in _distinct_best(sample.scores, every, starts)[state.started :]:
                if score not in seen:
                    state.points.append((score, sample.index[i]))
            state.started = starts
        grid = _PartGrid(sample.values, sample.part.ranks)
        while state.points and self.run.remaining > 0 and (rounds is None or rounds > 0):
            rounds = None if rounds is None else rounds - 1
            trials = [_neighbours(grid, base) for _, base in state.points]
            if not sum(len(x) for x in trials):
                state.points = []
                break
            index = np.concatenate(trials)
            kept, totals, scores = self._cost_part(sample.part, sample.alone, sample.values, index)
            origin = _origins(trials)[kept]
            moved = []
            for j in _improving(state.points, origin, scores):
                moved.append((float(scores[j]), index[kept[j]]))
                if scores[j] < state.best[0]:
                    best = totals.take(np.array([j]))
                    state.best = (float(scores[j]), index[kept[j]], best)
            state.points = moved
        return state.best

    def refine(self, t: int, rounds: int | None = None, starts: int = 1) -> None:
        """Coordinate descent on the free factors from the template's best row, and from
        its next best sampled rows up to `starts` rows (`STARTS` distinct objectives): each
        round costs every single-factor change of every descent still moving at once (one
        batch; `_neighbours`) and moves each to its best; a descent stops when no change
        helps, all after at most `rounds` rounds (None: no limit). A partial grouping
        visited kernel by kernel descends kernel by kernel (`_refine_apart`)."""
        if t not in self.best:
            return
        template = self.space.templates[t]
        if self._is_apart(template):
            self._refine_apart(t, template, rounds, starts)
            return
        points = [self.best[t]] + [
            p for p in self.starts.get(t, [])[1:starts] if p[1] != self.best[t][1]
        ]
        while points and self.run.remaining > 0 and (rounds is None or rounds > 0):
            rounds = None if rounds is None else rounds - 1
            bases = template.indices(np.array([row for _, row in points]))
            trials = [_neighbours(template, base) for base in bases]
            if not sum(len(x) for x in trials):
                return
            rows = template.flat(np.concatenate(trials))
            values = self.run(t, rows)
            moved = [
                (float(values[j]), int(rows[j]))
                for j in _improving(points, _origins(trials), values)
            ]
            for point in moved:
                if point[0] < self.best[t][0]:
                    self.best[t] = point
            points = moved


def _origins(trials: list[np.ndarray]) -> np.ndarray:
    """The descent each row of the concatenated `trials` came from."""
    return np.repeat(np.arange(len(trials)), [len(x) for x in trials])


def _improving(points: list[tuple], origin: np.ndarray, values: np.ndarray) -> list[int]:
    """For each descent (its (value, position) in `points`, in order), the row of its best
    neighbour (`origin`: the descent of each row; the first of equal values) where that
    beats its value: the moves of one round of coordinate descent."""
    out = []
    for p, (value, _) in enumerate(points):
        mine = np.flatnonzero(origin == p)
        if len(mine):
            j = int(mine[np.argmin(values[mine])])
            if values[j] < value:
                out.append(j)
    return out


def _neighbours(template, base: np.ndarray) -> np.ndarray:
    """The value indices one step from `base`: every other value of one factor (factor by
    factor, values in order), and (with `PAIRS`) each pair of one rank's factors (`_tied`)
    one index up or down together."""
    lengths = np.array([len(values) for values in template.values], dtype=np.int64)
    k = np.repeat(np.arange(len(lengths)), lengths)  # (factor, value) of every cell
    j = np.arange(len(k)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    other = j != base[k]
    trials = np.repeat(base[None, :], int(other.sum()), axis=0)
    trials[np.arange(len(trials)), k[other]] = j[other]
    pairs = []
    for a, b in _tied(template) if PAIRS else ():
        for da, db in ((1, -1), (-1, 1), (1, 1), (-1, -1)):
            if 0 <= base[a] + da < lengths[a] and 0 <= base[b] + db < lengths[b]:
                trial = base.copy()
                trial[a] += da
                trial[b] += db
                pairs.append(trial)
    if pairs:
        trials = np.concatenate([trials, np.array(pairs, dtype=np.int64)])
    return trials.astype(np.int64, copy=False).reshape(len(trials), len(base))


@STRATEGIES.register("greedy", summary="coordinate descent over structure, then over factors")
def greedy(space: MapSpace, run, budget: int, rng: np.random.Generator) -> None:
    """Start from the template whose compute structure the scheduler ranked first; change
    one structural choice at a time, each template judged by the best of a sample of its
    grid, and move to the best: the choices within the current fusion grouping (compute
    structure, loop orders, keep) until none helps (in the starting grouping, first at most
    `FIRST_ROUNDS` rounds), then the groupings around it (`_Moves`); stop when no grouping
    helps; then refine the factors of the best templates by coordinate descent.

    A template is sampled once (a revisit reuses its best: the refinement, not resampling,
    improves factors). A partial grouping's template is sampled kernel by kernel where the
    objective adds over kernels (`_Visits._visit_apart`): each kernel's grid once per
    search, however many groupings hold it, and the grouping judged by the combination of
    its kernels' best rows (flexprefill at 1K: 668 kernels costed instead of 1,794 in 598
    visits, and 13.28 -> 7.46 ms found); its refinement descends kernel by kernel, a
    kernel's descent kept for every grouping that holds it (`_refine_apart`). A fusion
    move leaves unvisited a grouping whose kernels sampled so far add past the
    `POLISH_TOP`-th best value of the move (`judge`): it would be neither polished nor
    chosen (kernels costed: flexprefill at 1K 633 -> 274, hyper_attention at 16K 232 ->
    159); a grouping's first template is not even built where its groups' kernels, as
    sampled in other groupings' first templates, add past it (`_Visits._unbuilt_above`:
    flexprefill at 1K leaves 411 of the 653 first templates its fusion moves reach
    unbuilt). A change of compute structure visits one template per structure:
    the one with the current loop orders where it has them (its own orders are the next
    moves), not every order of every structure. A change of off-chip order visits the
    orders one edit away where there are more than `LOCAL_ORDERS` (`_Moves.local`); the
    descent within the grouping reaches the others edit by edit. After a fusion move's
    sample, the `POLISH_TOP` best templates of several kernels are refined by one round
    and, where that helps, by up to `POLISH` rounds from their `STARTS` best sampled rows
    (one batch a round) before the groupings are compared: a sample of a partial
    grouping's grid (the tiles of several kernels) is far from its best (linear attention
    at 16K: 2.0 s sampled, 0.074 s refined), one descent from its best sample can stop at
    a poor local optimum (linear at 64K: 354.7 ms from one start, 296.7 ms with three
    and the pair moves), and without it greedy settles on the grouping whose sample
    happened to be best; where the first round finds the sample a local optimum (dense
    cascades), the polish costs one round. The refinement also moves a rank's two factors
    together (`_tied`). When no grouping helps, the choices within the `RESTARTS`
    runner-up groupings are descended from their best templates, and greedy moves on from
    one that beats the best. From the unfused grouping, which every grouping is a merge
    away from, a fusion move goes to the groupings one cut from the best partial grouping
    sampled so far where the space has more than `SWEPT_GROUPINGS` (flexprefill: 597);
    groupings a move visits come lowest known bound first (`_Visits.least_first`), so that
    good ones set the threshold of the pruning early."""
    moves = _Moves(space)
    dims = moves.dims
    visits = _Visits(space, run, rng, budget, resample=False)
    current = 0
    visits.visit(current)
    polished: set[int] = set()

    def polishable(t: int) -> bool:
        """Whether a fusion move's polish may refine t (sampled, valid, several kernels)."""
        return (
            t in visits.best and t not in polished and np.isfinite(visits.best[t][0])
            and len(space.templates[t].mapping.kernels) > 1
        )  # fmt: skip

    def judge(found: list[int], fusion: bool) -> None:
        """Sample `found`; of a fusion move, refine the best samples of several kernels a
        little (`POLISH_TOP`, `POLISH`) before they are compared. A fusion move's grouping
        whose kernels' best terms add past the `POLISH_TOP`-th best polishable value
        sampled so far is left unvisited (`_Visits.visit`'s `above`): it would be neither
        polished nor the move's best."""
        top: list[float] = []  # the POLISH_TOP best polishable values so far, negated
        for t in visits.least_first(found, moves.first_groups) if fusion else found:
            if run.remaining <= 0:
                break
            above = -top[0] if fusion and len(top) == POLISH_TOP else np.inf
            value = visits.visit(t, above, moves.first_groups(t) if fusion else ())
            if fusion and polishable(t):
                (heapq.heappush if len(top) < POLISH_TOP else heapq.heappushpop)(top, -value)
        if fusion:
            sampled = sorted((visits.best[t][0], t) for t in found if polishable(t))
            for value, t in sampled[:POLISH_TOP]:
                # one round from the best sample; where it helps (the sample is not yet a
                # local optimum), the other rounds from it and the next best samples
                visits.refine(t, 1)
                if visits.best[t][0] < value:
                    visits.refine(t, POLISH - 1, STARTS)
                polished.add(t)

    def fusion_source(t: int) -> int:
        """The template a fusion move from t is made from: t, except from the unfused
        grouping of a space of more than `SWEPT_GROUPINGS` groupings, where it is the best
        partial grouping sampled so far (every grouping is a merge away from the unfused
        one: the move would visit them all)."""
        if moves.count <= SWEPT_GROUPINGS or not moves.sweeps(t):
            return t
        partial = [(v, u) for u, (v, _) in visits.best.items() if moves.partial(u) and v < np.inf]
        return min(partial)[1] if partial else t

    def step(d: str) -> bool:
        """Judge the moves along d from the current template; move to the best if better."""
        nonlocal current
        found = moves.local(fusion_source(current) if d == "fusion" else current, d)
        if d == "compute":
            found = moves.one_per_structure(current, found)
        judge(found, d == "fusion")
        best = min(visits.best.items(), key=lambda kv: (kv[1][0], kv[0]))[0]
        if best != current and visits.best[best][0] < visits.best[current][0]:
            current = best
            return True
        return False

    within = [d for d in dims if d != "fusion"]

    def within_rounds(most: int | None = None) -> int:
        """Rounds of moves within the grouping until none helps (or `most` have); how many
        helped."""
        rounds = 0
        while run.remaining > 0 and (most is None or rounds < most):
            if not any([step(d) for d in within]):
                break
            rounds += 1
        return rounds

    def descend(first_rounds: int | None = None) -> None:
        """The choices within the grouping until none helps (the orders edit by edit),
        then the groupings around it, until no grouping helps. `first_rounds`: at most so
        many rounds within the grouping before the first fusion move (the groupings are
        compared before a grouping that loses is polished); where none beats it, its rounds
        go on, and the comparison stands (it only gets better)."""
        improved, cap = True, first_rounds
        while improved and run.remaining > 0:
            # nothing valid yet (a fused working set over the buffer): other groupings first
            if not np.isfinite(visits.best.get(current, (np.inf, 0))[0]):
                step("fusion")
            rounds = within_rounds(cap)
            cut, cap = cap is not None and rounds == cap, None
            improved = step("fusion")
            if cut and not improved:
                within_rounds()

    descend(FIRST_ROUNDS)
    # restarts: the choices within each runner-up grouping descended from its best template
    # (a grouping left after one sample may hold a better tiling under other orders)
    tried = {moves.fusion(current)}
    for _ in range(RESTARTS):
        if run.remaining <= 0:
            break
        ranked = sorted(visits.best.items(), key=lambda kv: (kv[1][0], kv[0]))
        other = [t for t, _ in ranked if moves.fusion(t) not in tried]
        if not other:
            break
        goal, current = current, other[0]
        tried.add(moves.fusion(current))
        within_rounds()
        if visits.best[current][0] < visits.best[goal][0]:
            descend()
        else:
            current = goal
    ranked = [t for t, _ in sorted(visits.best.items(), key=lambda kv: (kv[1][0], kv[0]))]
    # the best few templates, and the best of each of the best few fusion groupings (a
    # grouping's sample may hide a better tiling than another grouping's best template)
    best_of: dict[str, int] = {}
    for t in ranked:
        best_of.setdefault(moves.fusion(t), t)
    for t in dict.fromkeys(ranked[:REFINED] + list(best_of.values())[:REFINED_FUSIONS]):
        visits.refine(t)


def _orders_of(labels: dict[str, str]) -> tuple[str | None, str | None]:
    return labels.get("order"), labels.get("onchip_order")


@STRATEGIES.register("anneal", summary="simulated annealing over structure, sampled factors")
def anneal(space: MapSpace, run, budget: int, rng: np.random.Generator) -> None:
    """Simulated annealing over templates: a move changes one structural choice; a template
    scores the best of a fresh sample of its grid (so revisits keep improving it); a worse
    move is accepted with probability exp(-relative loss / T), T falling geometrically from
    0.2 to 0.002 over the budget. The three best templates are refined at the end
    (coordinate descent on their factors, a tenth of the budget kept for it)."""
    moves = _Moves(space)
    dims = moves.dims
    visits = _Visits(space, run, rng, budget)
    reserve = budget // 10
    current = 0
    cost = visits.visit(current)
    start = run.remaining
    steps = 4 * (
        budget // visits.sample + len(space.templates)
    )  # revisits of costed grids are free
    while run.remaining > reserve and steps > 0:
        steps -= 1
        progress = 1 - (run.remaining - reserve) / max(1, start - reserve)
        temperature = 0.2 * (0.01**progress)
        d = dims[int(rng.integers(len(dims)))]
        options = [t for t in moves.moves(current, d) if t != current]
        if not options:
            continue
        t = int(options[int(rng.integers(len(options)))])
        new = visits.visit(t)
        if new <= cost or (
            np.isfinite(new)
            and rng.random() < np.exp(-(new - cost) / max(abs(cost), 1e-30) / temperature)
        ):
            current, cost = t, new
        if not np.isfinite(cost):
            current, cost = t, new
    for t, _ in sorted(visits.best.items(), key=lambda kv: (kv[1][0], kv[0]))[:3]:
        visits.refine(t)


def check_strategy(name: str) -> None:
    """Raise SpecError for an unknown strategy, listing the known ones."""
    if name not in STRATEGIES:
        raise SpecError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
