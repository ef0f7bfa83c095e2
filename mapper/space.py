"""Map spaces: the structural choices (templates) and numeric grids of a cascade on hardware.

A `MapSpace` is a list of `Template`s. A template is a `Mapping` whose numeric factors are
free (`einsim.simulator.parameter_names`), plus the candidate values of each free factor: a
grid that one `evaluate_batch` call costs at once. The list is lazy (`Templates`): its
order and length are fixed when the space is built, each template is made when a strategy
first asks for it (greedy asks for a few hundred of thousands), and a partial grouping's
fused groups are worked out only then. Nothing is dropped: iterating builds every template.
Labels come from recipes without building templates, and the structural work is shared:
per space, the ranks each Einsum iterates, the unrollings per family of rank sets, the
probed cycles, each stage schedule; per kernel, the binding of every combination of
unrollings at once (one per distinct table of probed cycles). The structure of a template is:

* fusion: every Einsum in one kernel (`fused`), one kernel per Einsum (`unfused`), or
  several contiguous fused kernels (`partial:QK-LM|RM-SLD|PRM-AV`): the Einsums with work
  in the cascade's topological order cut at cuts that split no recurrence (a carried read
  such as SPD's of RD), every set of such cuts while there are at most
  `ALL_PARTITIONS_CUTS`, else every set of at most `MAX_CUTS` (FuseMax has nine legal cuts:
  2^9 partitions would each add templates and a greedy move; 45 with at most two cuts).
  Each fused group of a partial grouping has its own compute structure (the whole cascade's
  best ones restricted to the group, stages rescheduled) and varies over its first
  `PARTIAL_TEMPLATES` templates (orders, keep sets) with every tile free, the other groups
  at their first (a slot past a group's last template is `absent`: an empty grid); groups
  recur across groupings and are built once. The tensors crossing
  kernels go through DRAM (the model keeps nothing on chip between kernels).
  `constraints.fusion` pins any grouping that follows the dependency graph
  (`[[QK, LM], [...]]`), `constraints.forbid_fusion` keeps named Einsums in different
  kernels and `constraints.require_fusion` in one;
* compute: the ranks unrolled on each unit's dimensions, the binding of each Einsum to a
  unit that supports all its operators, and (fused kernels on several units) the pipeline
  stages, derived from the dependency graph by `schedule_stages`;
* memory: the order of the off-chip loops and of the on-chip loops, and which tensors the
  on-chip level keeps (the others bypass it);
* masks: whether the hardware skips the tiles a mask empties (`skip_empty_tiles`), searched
  for masked cascades only; the tile sizes below decide how many tiles a mask empties.

The numeric part is, per rank, the on-chip tile factor (all divisors of the rank, and
padded non-divisors when `constraints.padded`) and the spatial factor (up to the array
dimension); the off-chip factor is what remains (`rest`). Candidates that are invalid or
dominated before any cost is known are pruned (`Template.keep_rows`): a factor whose last
iteration would be empty, and a loop of one iteration anywhere but outermost (where it cannot
break reuse, so every other place is no better).

Rules that keep a fused kernel executable (the simulator trusts the mapping for them): a
tensor carried across iterations of a temporal loop (RM, RD, RNV) is kept on chip; a rank the
cascade traverses more than once (`einsim.passes` > 1: M0 in FuseMax, M in the 3-pass
softmax) is never tiled off chip, and unless the arrays hold it whole, the kernel's
intermediates over it stay in the on-chip buffer (FLAT keeps QK, SN and A).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import heapq
import itertools
import math
import operator
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field

import numpy as np

from einsim.einsum import Cascade, SpecError, pass_analysis
from einsim.einsum.ir import rank_of
from einsim.simulator import Architecture, Kernel, Loop, Mapping, Overlap
from einsim.simulator.shape import DEFAULT_BATCH, split_shape
from einsim.simulator.spatial import einsum_cycles
from einsim.simulator.spatial.cost import _op_counts
from einsim.simulator.spatial.mapping import StageItem

from .constraints import Constraints

MAX_ORDERS = 24  # loop orders tried per level when the ranks have more permutations
MAX_KEEP_CHOICES = 4  # tensors whose keep/bypass is searched (2**4 subsets)
PARTIAL_TEMPLATES = 4  # templates per fused group of a partial grouping
TOP_COMPUTE = 3  # compute structures (spatial, binding, stages) kept per fused kernel


def divisors(n: int) -> list[int]:
    """Divisors of n, ascending. Example: divisors(12) -> [1, 2, 3, 4, 6, 12]."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@functools.lru_cache(maxsize=4096)
def tile_choices(n: int, cap: int, padded: bool) -> tuple[int, ...]:
    """Candidate factors of a rank of size n, at most `cap`: its divisors, plus (padded) the
    powers of two and the cap itself, whose last tile is partial.

    Example:
        >>> tile_choices(12, 8, padded=True)
        (1, 2, 3, 4, 6, 8)
    """
    cap = max(1, min(n, cap))
    values = {d for d in divisors(n) if d <= cap}
    if padded:
        values |= {1 << k for k in range(cap.bit_length()) if (1 << k) <= cap} | {cap}
    return tuple(sorted(values))


@functools.lru_cache(maxsize=4096)
def _grid(choices: tuple[int, ...]) -> np.ndarray:
    """One read-only array per set of choices, shared by every template that uses it."""
    values = np.array(choices, dtype=np.int64)
    values.setflags(write=False)
    return values


@dataclass(frozen=True, slots=True)
class Compute:
    """Where a kernel's Einsums run: unrolled ranks per unit, binding, stages, overlap.
    `score` is the heuristic per-tile time that ranked it (see `schedule_stages`)."""

    spatial: tuple[tuple[str, tuple[str, ...]], ...]
    binding: tuple[tuple[str, str], ...]
    stages: tuple[tuple[str, ...], ...]
    overlap: Overlap
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class _RankGrid:
    """How a template covers one rank: its spatial and on-chip factors (parameter indices,
    or fixed values) and whether it has an off-chip loop (`rest`)."""

    rank: str
    size: int
    spatial_param: int = -1
    spatial_fixed: int = 1
    onchip_param: int = -1  # -1: no free on-chip factor
    offchip: bool = True


@dataclass(frozen=True)
class Template:
    """A mapping with free factors and the candidate values of each (a grid).

    Attributes:
        mapping: the structure; `parameter_names(mapping)` includes `names`.
        names: the free parameters searched, in grid order.
        values: candidate values of each, one int array per name.
        structure: (dimension, choice) labels, for tables and `explain()`.
        ranks: per (kernel, rank), how the grid covers it (for pruning before costing).
        orders: per kernel, (off-chip order, on-chip order) when every permutation of the
            tiled ranks is a template (then a one-iteration loop is canonically outermost).
        parts: a partial grouping's one-kernel templates whose grids this one puts side by
            side (`_joined`), in kernel order (its names are theirs, its values theirs or a
            thinned subset); () for any other template.
    """

    mapping: Mapping
    names: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    structure: tuple[tuple[str, str], ...]
    ranks: tuple[tuple[str, _RankGrid], ...] = ()
    orders: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = ()
    absent: bool = False  # an empty slot of a partial grouping (`_PartialGrouping`): no rows
    parts: tuple[Template, ...] = ()

    @functools.cached_property
    def shape(self) -> tuple[int, ...]:
        if self.absent:
            return (0,)
        return tuple(len(v) for v in self.values)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def params(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Free parameters of grid rows (flat indices into the grid)."""
        if not self.names:
            return {}
        index = np.unravel_index(np.asarray(rows, dtype=np.int64), self.shape)
        return {n: v[i] for n, v, i in zip(self.names, self.values, index, strict=True)}

    def indices(self, rows: np.ndarray) -> np.ndarray:
        """Per-parameter value indices of rows, shape (n, len(names))."""
        if not self.names:
            return np.zeros((len(rows), 0), dtype=np.int64)
        return np.stack(np.unravel_index(np.asarray(rows, dtype=np.int64), self.shape), axis=1)

    def flat(self, indices: np.ndarray) -> np.ndarray:
        """Flat rows of per-parameter value indices (inverse of `indices`)."""
        if not self.names:
            return np.zeros(len(indices), dtype=np.int64)
        return np.ravel_multi_index(tuple(np.asarray(indices).T), self.shape)

    def keep_rows(self, rows: np.ndarray) -> np.ndarray:
        """Mask of rows that survive pruning before costing (see the module docstring)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.names:
            return np.ones(rows.shape, dtype=bool)
        spatial, onchip, fixed, size, checks = self._pruning
        index = np.unravel_index(rows.reshape(-1), self.shape)
        # every parameter's value per row, then per (kernel, rank) its spatial factor s and
        # on-chip factor g (a fixed s, or g = 1, where the template has no such parameter)
        value = np.stack([v[i] for v, i in zip(self.values, index, strict=True)])
        s = np.where(spatial[:, None] >= 0, value[spatial], fixed[:, None])
        g = np.where(onchip[:, None] >= 0, value[onchip], 1)
        keep = np.all((g - 1) * s < size[:, None], axis=0)  # the last iteration is not empty
        one = (-(-size[:, None] // (s * g)) == 1, g == 1)  # one off-chip / on-chip iteration
        for level, present, late in checks:
            ones = one[level][present]
            # one-iteration loops first (no real loop before a one-iteration loop), by
            # name: no one-iteration loop after one whose name sorts above its own
            keep &= np.all(ones[:-1] | ~ones[1:], axis=0)
            if late:
                keep &= ~np.any(ones[late], axis=0)
        return keep.reshape(rows.shape)

    @functools.cached_property
    def _pruning(self) -> tuple:
        """`keep_rows`'s view of `ranks` and `orders`, worked out once: per (kernel, rank)
        the parameter of its spatial factor and of its on-chip factor (-1: none), its fixed
        spatial factor and size; per order with two or more such ranks (a rank without a
        free off-chip loop, a partial group's, is left out; the last entry of a rank listed
        twice counts), (level, the ranks' entries in loop order, the positions of the ranks
        after one whose name sorts above theirs)."""
        spatial = np.array([g.spatial_param for _, g in self.ranks], dtype=np.int64)
        onchip = np.array([g.onchip_param for _, g in self.ranks], dtype=np.int64)
        fixed = np.array([g.spatial_fixed for _, g in self.ranks], dtype=np.int64)
        size = np.array([g.size for _, g in self.ranks], dtype=np.int64)
        entry = {key: k for k, (key, _) in enumerate(self.ranks)}
        checks = []
        for kernel, off_order, on_order in self.orders:
            for level, order in ((0, off_order), (1, on_order)):
                present = [r for r in order if (kernel, r) in entry]
                if len(present) < 2:
                    continue
                late = [j for j, b in enumerate(present) if any(a > b for a in present[:j])]
                checks.append((level, [entry[kernel, r] for r in present], late))
        return spatial, onchip, fixed, size, checks

    def seed_rows(self) -> np.ndarray:
        """Structured starting points: the largest spatial factors, and per tiled rank either
        one on-chip iteration or the whole rank on chip (2**ranks rows at most 64)."""
        if not self.names:
            return np.zeros(1, dtype=np.int64)
        base = np.array([len(v) - 1 for v in self.values])
        for name_index, name in enumerate(self.names):
            if ".spatial." not in name:
                base[name_index] = 0
        choices = []
        for _, grid in self.ranks[:6]:
            if grid.onchip_param < 0:
                continue
            s = (
                self.values[grid.spatial_param][base[grid.spatial_param]]
                if grid.spatial_param >= 0
                else grid.spatial_fixed
            )
            whole = -(-grid.size // s)
            values = self.values[grid.onchip_param]
            fits = np.flatnonzero(values <= whole)
            choices.append((grid.onchip_param, (0, int(fits[-1]) if fits.size else 0)))
        combos = np.array(list(itertools.product(*(c for _, c in choices))), dtype=np.int64)
        rows = np.tile(base, (len(combos), 1))
        for column, (param, _) in enumerate(choices):
            rows[:, param] = combos[:, column]
        return np.unique(self.flat(rows))

    def label(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.structure)


class Templates(SequenceABC):
    """The templates of a map space, in a fixed order, each built on first access.

    The space is a list of blocks, one per fusion grouping, whose lengths are known when the
    space is built (a fused kernel's from its compute structures, loop orders and keep sets;
    a partial grouping's from its number of fused groups, see `_PartialGrouping`); a template
    is made from its block's recipe when a strategy first asks for it, and kept. The
    numbering never depends on which templates were asked for, or in which order. Iterating
    builds every template."""

    def __init__(self, blocks: list[_Block]):
        self._blocks = [b for b in blocks if b.count > 0]
        self._starts = np.concatenate([[0], np.cumsum([b.count for b in self._blocks])])
        self._starts = self._starts.astype(np.int64)
        self._first = self._starts.tolist()  # the same, for bisect on Python ints
        self._built: dict[int, Template] = {}
        self._structures: dict[int, tuple[tuple[str, str], ...]] = {}  # labels asked for

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"template {index} of {len(self)}")
        template = self._built.get(i)
        if template is None:
            b, local = self._locate(i)
            template = self._built[i] = self._blocks[b].build(local)
        return template

    def _locate(self, i: int) -> tuple[int, int]:
        b = bisect.bisect_right(self._first, i) - 1
        return b, i - self._first[b]

    @property
    def built(self) -> int:
        """How many templates have been built so far."""
        return len(self._built)

    def structure(self, i: int) -> tuple[tuple[str, str], ...]:
        """The labels of template i (`Template.structure`), from its recipe where the block
        has one (without building the template)."""
        if i in self._built:
            return self._built[i].structure
        if i not in self._structures:  # strategies ask for the same labels many times
            b, local = self._locate(i)
            labels = self._blocks[b].structure
            self._structures[i] = self[i].structure if labels is None else labels(local)
        return self._structures[i]

    def labels(self, i: int, dims) -> list[tuple[list[str], np.ndarray]]:
        """The labels of template i's grouping, per dimension in `dims`, factorized:
        (distinct labels, index per template of the grouping); '' where none."""
        b, _ = self._locate(i)
        block = self._blocks[b]
        if block.factorized is not None:
            return [block.factorized(d) for d in dims]
        rows = [dict(self.structure(u)) for u in self.block(i)]
        out = []
        for d in dims:
            code: dict[str, int] = {}
            index = [code.setdefault(r.get(d, ""), len(code)) for r in rows]
            out.append((list(code), np.array(index, dtype=np.int64)))
        return out

    def shared(self, i: int) -> tuple[tuple[str, str], ...]:
        """Labels every template of template i's grouping has, known without working out
        its kernels (a partial grouping's fusion and number of kernels); () where none."""
        return self._blocks[self._locate(i)[0]].shared

    def block(self, i: int) -> range:
        """The templates of template i's fusion grouping."""
        b, _ = self._locate(i)
        return range(int(self._starts[b]), int(self._starts[b + 1]))

    def groupings(self) -> list[tuple[str, int]]:
        """(fusion label, first template) of every grouping, in order."""
        return [(b.fusion, int(s)) for b, s in zip(self._blocks, self._starts, strict=False)]


@dataclass(frozen=True, eq=False)
class _Block:
    """The templates of one fusion grouping: how many, and how to make each (a local index
    in 0..count-1) and its labels."""

    fusion: str
    count: int
    build: Callable[[int], Template]
    structure: Callable[[int], tuple[tuple[str, str], ...]] | None  # None: build to know
    factorized: Callable[[str], tuple[list[str], np.ndarray]] | None = None
    shared: tuple[tuple[str, str], ...] = ()  # labels every template has, known unbuilt


def _listed(fusion: str, templates: list[Template]) -> _Block:
    """A block of templates already built."""
    structure = functools.partial(_structure, templates)
    return _Block(fusion, len(templates), templates.__getitem__, structure)


def _structure(templates: list[Template], i: int) -> tuple[tuple[str, str], ...]:
    return templates[i].structure


@dataclass(frozen=True)
class MapSpace:
    """Every template of (cascade, arch, shape) under constraints (`templates`: built lazily,
    see `Templates`)."""

    cascade: Cascade
    arch: Architecture
    shape: dict[str, int]
    constraints: Constraints
    templates: Templates
    notes: tuple[str, ...] = field(default=())

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The structural labels a strategy moves along, in the order greedy tries them."""
        masked = any(e.where is not None for e in self.cascade.einsums)
        dims = ("compute", "order", "onchip_order", "keep", "fusion", "kernels")
        return (*dims, "skip_empty_tiles") if masked else dims

    @functools.cached_property
    def sizes(self) -> np.ndarray:
        """Grid size of every template (builds them all; each at most `GRID_POINTS_LIMIT`)."""
        return np.array([t.size for t in self.templates], dtype=np.int64)

    @property
    def size(self) -> int:
        """Candidates before pruning: the sum of the templates' grid sizes (builds them), in
        Python integers (a sum of int64 sizes past 2^63 would wrap around)."""
        return sum(int(size) for size in self.sizes)


# ---------------------------------------------------------------------------- building


@dataclass
class _Context:
    cascade: Cascade
    arch: Architecture
    shape: dict[str, int]
    sizes: dict[str, int]
    batch: tuple[str, ...]
    constraints: Constraints
    work: dict[str, dict]  # einsum -> op counts (only Einsums with operations)
    supported: dict[str, list[str]]  # einsum -> units that support all its operators
    passes: dict[str, int]
    probes: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)  # per fused group: structures, templates

    def iterated(self, einsum: str) -> frozenset[str]:
        """The ranks an Einsum iterates, batch ranks aside (worked out once per space)."""
        return self.iterated_ranks[einsum]

    @functools.cached_property
    def iterated_ranks(self) -> dict[str, frozenset[str]]:
        batch = set(self.batch)
        return {
            e.output: frozenset({rank_of(v) for v in e.iter_vars} - batch)
            for e in self.cascade.einsums
        }

    @functools.cached_property
    def successors(self) -> dict[str, tuple[str, ...]]:
        """The readers of each tensor, in the dependency graph's order."""
        graph = self.cascade.graph
        return {t: tuple(graph.successors(t)) for t in graph.nodes}

    @functools.cached_property
    def readers(self) -> dict[str, tuple[str, ...]]:
        """The Einsums reading each tensor, in the cascade's topological order."""
        out: dict[str, list[str]] = {t: [] for t in self.cascade.graph.nodes}
        for r in self.cascade.order:
            for p in self.cascade.graph.predecessors(r):
                out[p].append(r)
        return {t: tuple(rs) for t, rs in out.items()}

    @functools.cached_property
    def reads(self) -> dict[str, tuple[tuple[str, bool], ...]]:
        """The tensors each tensor's Einsum reads, with whether the read is loop-carried."""
        graph = self.cascade.graph
        return {
            c: tuple((p, graph.edges[p, c]["carried"]) for p in graph.predecessors(c))
            for c in graph.nodes
        }

    @functools.cached_property
    def read_paths(self) -> dict[str, tuple[tuple[str, bool, frozenset[str]], ...]]:
        """Per Einsum with work, the other Einsums with work it reads: (source, whether the
        read is loop-carried, the Einsums without work the read passes through, a path
        without repeats). A direct read keeps its carried flag; one through a reshape is a
        forward read. `_edges` keeps those whose Einsums are all in a kernel."""
        out = {}
        for c in self.work:
            found = []
            for p, loop_carried in self.reads[c]:
                if p in self.work:
                    if p != c:
                        found.append((p, loop_carried, frozenset()))
                    continue
                stack = [(p, (p,))]
                while stack:
                    tensor, path = stack.pop()
                    for pred, _ in self.reads[tensor]:
                        if pred in self.work:
                            if pred != c:
                                found.append((pred, False, frozenset(path)))
                        elif pred not in path:
                            stack.append((pred, (*path, pred)))
            out[c] = tuple(found)
        return out

    @functools.cached_property
    def columns(self) -> dict[str, int]:
        """Each Einsum with work's column in the probe tables (`_probe_row`)."""
        return {e: i for i, e in enumerate(self.work)}

    @functools.cached_property
    def einsum_bits(self) -> dict[str, int]:
        """One bit per Einsum (a set of Einsums as an int: `_edges`)."""
        return {e.output: 1 << i for i, e in enumerate(self.cascade.einsums)}

    @functools.cached_property
    def read_edges(self) -> tuple[tuple[int, bool, tuple[str, str]], ...]:
        """Every read of `read_paths` as (the bits of its source, reader and pass-through
        Einsums, whether it is loop-carried, (source, reader))."""
        bit = self.einsum_bits
        out = []
        for c, found in self.read_paths.items():
            for src, loop_carried, through in found:
                need = bit[src] | bit[c]
                for t in through:
                    need |= bit[t]
                out.append((need, loop_carried, (src, c)))
        return tuple(out)

    @functools.cached_property
    def acyclic(self) -> bool:
        """Whether the forward reads between all the Einsums with work form no cycle: then
        neither do those of any kernel (a subset of them), and `_group_ranked` need not
        check each group's."""
        return not _cyclic(list(self.work), _edges(self, list(self.einsum_bits))[0])

    @functools.cached_property
    def iterative(self) -> frozenset[str]:
        """The Einsums that step through an iterative rank (state carried across it)."""
        return frozenset(e.output for e in self.cascade.einsums if e.iterative_var is not None)

    @functools.cached_property
    def operands(self) -> dict[str, tuple[str, ...]]:
        """The tensors each Einsum reads, in order (repeats kept)."""
        return {e.output: tuple(a.tensor for a in e.operands) for e in self.cascade.einsums}

    @functools.cached_property
    def scanned(self) -> frozenset[str]:
        """Iterative (scanned) ranks: they stay temporal."""
        return frozenset(
            rank_of(e.iterative_var) for e in self.cascade.einsums if e.iterative_var is not None
        )


def _context(cascade: Cascade, arch: Architecture, shape, constraints: Constraints) -> _Context:
    # The one rule of simulator/shape.py: the mapper's mappings name the default batch
    # ranks; a rank the cascade iterates is searched (and priced) as a cascade rank.
    split = split_shape(cascade, DEFAULT_BATCH, shape)
    sizes = {k: int(v) for k, v in split.sizes.items()}
    batch = tuple(split.outer)
    work, supported = {}, {}
    key = tuple(sizes.items())  # as `mapper.bound` keys them: one count per Einsum for both
    for einsum in cascade.einsums:
        counts = dict(_op_counts(cascade, einsum.output, key)[0])  # `einsum_op_counts`
        if not counts:
            continue
        work[einsum.output] = counts
        # Units that have every operator; where none has, units that lower the missing
        # ones into operators they have (simulator/lowering.py).
        units = [u.name for u in arch.units if all(u.supports(op) for op in counts)]
        units = units or [u.name for u in arch.units if all(u.runs(op) for op in counts)]
        pinned = constraints.pinned_unit(einsum.output)
        ops = ", ".join(sorted(op.value for op in counts))
        if pinned is not None:
            arch.unit(pinned, "constraints.binding: ")
            if not all(arch.unit(pinned).runs(op) for op in counts):
                lacking = sorted(o.value for o in counts if not arch.unit(pinned).runs(o))
                raise SpecError(
                    f"constraints.binding: {einsum.output} pinned to {pinned}, which lacks "
                    f"{', '.join(lacking)} (the Einsum needs {ops})"
                )
            units = [pinned]
        if not units:
            lacks = "; ".join(
                f"{u.name} lacks {', '.join(sorted(o.value for o in counts if not u.runs(o)))}"
                for u in arch.units
            )
            raise SpecError(
                f"cannot map {cascade.name} on {arch.name}: Einsum {einsum.output} needs "
                f"{ops} and no unit supports or lowers all of them ({lacks}; "
                "lowerings: simulator/lowering.py)"
            )
        supported[einsum.output] = units
    for einsum, _ in constraints.binding:
        cascade.einsum(einsum)  # raises with the known names
    for key in ("forbid_fusion", "require_fusion"):
        unknown = [e for g in getattr(constraints, key) for e in g if e not in cascade.producers]
        if unknown:
            raise SpecError(
                f"constraints.{key}: unknown Einsum(s) {', '.join(unknown)}; "
                f"Einsums: {', '.join(cascade.producers)}"
            )
    _check_names(cascade, arch, sizes, constraints)
    return _Context(
        cascade, arch, dict(shape), sizes, batch, constraints, work, supported,
        pass_analysis(cascade),
    )  # fmt: skip


def _check_names(cascade: Cascade, arch: Architecture, sizes, constraints: Constraints) -> None:
    """Levels, ranks and tensors that constraints name must exist (a typo would otherwise
    leave the constraint silently unapplied)."""
    levels = [lv.name for lv in arch.levels]
    for key, _ in constraints.factors:
        level, rank = key.split(".")[-2:] if "." in key else ("", key)
        if level not in (*levels, "spatial"):
            raise SpecError(
                f"constraints.factors.{key}: {level or key!r} is not a level; expected "
                f"[kernel.]LEVEL.RANK with LEVEL one of {', '.join([*levels, 'spatial'])}"
            )
        if rank not in sizes:
            raise SpecError(
                f"constraints.factors.{key}: unknown rank {rank!r}; ranks: {', '.join(sizes)}"
            )
    tensors = cascade.tensor_ranks
    for what, table in (("keep", constraints.keep), ("bypass", constraints.bypass)):
        for level, names in table:
            if level not in levels[1:]:
                raise SpecError(
                    f"constraints.{what}.{level}: not an on-chip level; levels: "
                    f"{', '.join(levels[1:])}"
                )
            unknown = [t for t in names if t not in tensors]
            if unknown:
                raise SpecError(
                    f"constraints.{what}.{level}: unknown tensor(s) {', '.join(unknown)}; "
                    f"tensors: {', '.join(tensors)}"
                )


def _pinned_keys_present(template: Template, constraints: Constraints) -> bool:
    """Whether the template has a loop or unrolled rank for every pinned factor (a kernel
    without that loop could not honour it)."""
    present = set()
    for kernel in template.mapping.kernels:
        keys = {f"{lp.level}.{lp.rank}" for lp in kernel.loops}
        keys |= {f"spatial.{r}" for _, ranks in kernel.spatial for r in ranks}
        present |= keys | {f"{kernel.name}.{k}" for k in keys}
    return all(key in present for key, _ in constraints.factors)


def _balanced_binding(ctx: _Context, work, units: list[str], cycles: dict) -> dict[str, str]:
    """Each Einsum with work on the unit that runs it fastest (`cycles[unit][einsum]`, the
    probe of one spatial choice); ties go to the least loaded unit, then the first listed.
    Einsums are placed longest first, so the load balance sees the big ones. The definition
    `_bindings` computes for every combination of unrollings at once; the search calls
    `_bindings`, the tests compare it with this."""
    binding: dict[str, str] = {}
    load = dict.fromkeys(units, 0.0)
    for e in sorted(work, key=lambda x: -min(cycles[u][x] for u in ctx.supported[x])):
        fastest = min(cycles[u][e] for u in ctx.supported[e])
        tied = [u for u in ctx.supported[e] if cycles[u][e] <= fastest * (1 + 1e-9)]
        binding[e] = min(tied, key=lambda u: (load[u], units.index(u)))
        load[binding[e]] += cycles[binding[e]][e]
    return binding


def _spatial_options(ctx: _Context, unit_name: str, einsums: list[str]) -> list[tuple[str, ...]]:
    """Ordered assignments of ranks to a unit's dimensions: distinct ranks that one of the
    Einsums it could run iterates together; iterative (scanned) ranks stay temporal.
    Memoized per (unit, the rank sets those Einsums iterate): the groups of a partial
    grouping share few such families."""
    unit = ctx.arch.unit(unit_name)
    pinned = dict(ctx.constraints.spatial).get(unit_name)
    k = len(unit.dims)
    if pinned is not None:
        if len(pinned) != k:
            raise SpecError(
                f"constraints.spatial.{unit_name}: {len(pinned)} rank(s) for a unit with "
                f"{k} dimension(s)"
            )
        unknown = [r for r in pinned if r not in ctx.sizes]
        if unknown:
            raise SpecError(
                f"constraints.spatial.{unit_name}: unknown rank(s) {', '.join(unknown)}; "
                f"ranks: {', '.join(sorted(ctx.sizes))}"
            )
        return [tuple(pinned)]
    family = frozenset(ctx.iterated(e) for e in einsums if unit_name in ctx.supported.get(e, ()))
    key = ("spatial options", unit_name, family)
    if key not in ctx.memo:
        ctx.memo[key] = _unrollings(ctx, k, family)
    return list(ctx.memo[key])


def _unrollings(ctx: _Context, k: int, family: frozenset[frozenset[str]]) -> tuple:
    """`_spatial_options` of a unit with k dimensions for Einsums iterating the rank sets
    `family`: the k-permutations of their ranks that one set holds whole, else those that
    meet one."""
    ranks = sorted(set().union(*family) - ctx.scanned)
    if len(ranks) < k:
        others = sorted(set(ctx.sizes) - set(ranks) - ctx.scanned)
        ranks = ranks + others[: k - len(ranks)]
    # the k-permutations of `ranks` that one set holds whole: those of each set's ranks,
    # in the order itertools.permutations(ranks, k) yields them
    position = {r: i for i, r in enumerate(ranks)}
    held = set()
    for s in family:
        held.update(itertools.permutations(sorted(s & position.keys(), key=position.get), k))
    options = tuple(sorted(held, key=lambda combo: [position[r] for r in combo]))
    sets = list(family)
    if not options:
        options = tuple(
            combo
            for combo in itertools.permutations(ranks, k)
            if any(not s.isdisjoint(combo) for s in sets)
        )
    return options


def _probe_table(ctx: _Context, unit: str, options) -> tuple[np.ndarray, np.ndarray]:
    """`_probe` cycles of the unrollings in `options` for every Einsum with work (columns;
    inf where the unit does not run it), as (distinct rows in the order first met, each
    option's row). Memoized per (unit, options): the groups of partial groupings share
    their units' unrollings, and each takes its columns from this (`_bindings`)."""
    key = ("probe table", unit, tuple(options))
    if key not in ctx.memo:
        table = np.stack([_probe_row(ctx, unit, option) for option in options])
        ctx.memo[key] = _distinct_rows(table)
    return ctx.memo[key]


def _distinct_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of a 2D array in the order first met, each row's index among
    them). Rows compare by their bytes: equal values with other bytes (0.0, -0.0) would
    only stay apart, and every use works per row, so the results are the same."""
    seen: dict[bytes, int] = {}
    first: list[int] = []
    index = np.empty(len(table), dtype=np.int64)
    for i, row in enumerate(table):
        j = index[i] = seen.setdefault(row.tobytes(), len(first))
        if j == len(first):
            first.append(i)
    return table[first], index


def _probe_row(ctx: _Context, unit: str, option: tuple[str, ...]) -> np.ndarray:
    """`_probe` as one row over every Einsum with work (inf where the unit does not run it)."""
    key = ("probe row", unit, option)
    if key not in ctx.memo:
        cycles = _probe(ctx, unit, option)
        ctx.memo[key] = np.array(
            [cycles[e] if unit in ctx.supported[e] else np.inf for e in ctx.work]
        )
    return ctx.memo[key]


@dataclass(frozen=True)
class _Bindings:
    """`_balanced_binding` of every combination of the units' unrollings, at once.

    Combinations whose unrollings probe the same cycles (they differ on dimensions no
    Einsum's cycles depend on) share one binding: it is worked out per distinct table.

    Attributes:
        choice: per combination (itertools.product order) and unit, its unrolling's index.
        of: per combination, its distinct cycles table (the rows below).
        cycles: per distinct table, unit and Einsum, the probed cycles (inf: not run there).
        unit: per distinct table and Einsum, the index of the unit it is bound to.
        placed: per distinct table, the Einsums' indices in the order they were placed.
        load: per distinct table and unit, the cycles bound to it, summed in placement order.
    """

    choice: np.ndarray
    of: np.ndarray
    cycles: np.ndarray
    unit: np.ndarray
    placed: np.ndarray
    load: np.ndarray

    def binding(self, c: int, work: list[str], units: list[str]) -> dict[str, str]:
        """Combination c's binding, as `_balanced_binding` returns it (placement order); made
        once per distinct table (combinations share them), a copy each time."""
        d = int(self.of[c])
        made = self._made.get(d)
        if made is None or made[0] is not work or made[1] is not units:
            binding = _binding_of(self.unit[d], self.placed[d], work, units)
            made = self._made[d] = (work, units, binding)
        return dict(made[2])

    @functools.cached_property
    def _made(self) -> dict:
        return {}

    def loads(self) -> np.ndarray:
        """Per combination and unit, the cycles bound to it (summed in placement order)."""
        return self.load[self.of]

    def busiest(self) -> np.ndarray:
        """`_busiest` of every combination: each unit's cycles summed in `work` order."""
        rows = np.arange(len(self.unit))
        load = np.zeros(self.load.shape)
        for j in range(self.unit.shape[1]):
            u = self.unit[:, j]
            load[rows, u] += self.cycles[rows, u, j]
        return load.max(axis=1)[self.of]


def _binding_of(unit: np.ndarray, placed: np.ndarray, work: list[str], units: list[str]):
    """One table's binding (`_place`'s `unit` and `placed` rows) as `_balanced_binding`
    returns it: Einsum -> unit name, in placement order."""
    on = unit.tolist()
    return {work[j]: units[on[j]] for j in placed.tolist()}


def _bindings(ctx: _Context, work: list[str], units: list[str], options) -> _Bindings:
    """Each combination of the units' unrollings with `_balanced_binding`'s binding, the
    Einsums placed longest first on their fastest unit (ties: least loaded, then first
    listed), vectorized over the distinct combinations of probed cycles: the same
    floating-point sums in the same order, so the same bindings and loads."""
    tables, choice, of = _combinations(ctx, work, units, options)
    k, n_work = len(tables), len(work)
    sizes = [len(t) for t in tables]
    # every combination of the units' tables (the first unit's slowest), by broadcasting
    cycles = np.empty((*sizes, k, n_work))
    for j, t in enumerate(tables):
        cycles[(slice(None),) * k + (j,)] = t.reshape(_along(sizes, j, n_work))
    cycles = cycles.reshape(-1, k, n_work)
    placed, unit, load = _place(cycles)
    return _Bindings(choice, of, cycles, unit, placed, load)


def _combinations(ctx: _Context, work: list[str], units: list[str], options) -> tuple:
    """(per unit, the distinct rows of its unrollings' probed cycles over `work`; per
    combination of unrollings in itertools.product order, each unit's unrolling; and its
    table: the index of its rows' combination, the first unit's slowest)."""
    columns = [ctx.columns[e] for e in work]
    tables, inverse = [], []
    for u in units:
        distinct, index = _probe_table(ctx, u, options[u])
        table, fold = _distinct_rows(distinct[:, columns])
        tables.append(table)
        inverse.append(fold[index])
    k = len(units)
    choice = np.indices([len(x) for x in inverse]).reshape(k, -1).T
    of = np.ravel_multi_index(
        tuple(inverse[j][choice[:, j]] for j in range(k)), [len(t) for t in tables]
    )
    return tables, choice, of


def _along(sizes: list[int], j: int, n_work: int) -> list[int]:
    """The shape that broadcasts unit j's table along its own axis of the combinations."""
    return [*(size if i == j else 1 for i, size in enumerate(sizes)), n_work]


def _place(cycles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_balanced_binding` of each table (tables x units x Einsums of probed cycles): per
    table, (the Einsums in placement order, the unit of each Einsum, each unit's load)."""
    n_tables, k, n_work = cycles.shape
    fastest = functools.reduce(np.minimum, [cycles[:, j] for j in range(k)])
    placed = np.argsort(-fastest, axis=1, kind="stable")
    # in placement order: each Einsum's cycles per unit, and the units it is tied on (flat
    # indices into the rows: numpy's take_along_axis, without its index arrays)
    rows = np.arange(n_tables)[:, None]
    offsets = (rows * (k * n_work))[:, :, None] + (np.arange(k) * n_work)[None, :, None]
    here = cycles.reshape(-1).take(offsets + placed[:, None, :])
    at = rows * n_work + placed  # the same, into `fastest` and `unit`
    tied = here <= (fastest.reshape(-1).take(at) * (1 + 1e-9))[:, None, :]
    place = _place_each if n_tables <= PLACE_EACH_COMBOS else _place_rows
    picks, load = place(here, tied)
    unit = np.empty_like(picks)
    unit.reshape(-1)[at.reshape(-1)] = picks.reshape(-1)
    return placed, unit, load


def _least_busiest(tables: list[np.ndarray], of: np.ndarray, top: int) -> tuple:
    """The combinations' tables whose busiest unit (loads summed in placement order, as
    `_bindings` places them) may be among the `top` least busy combinations, placed: (those
    tables, their placement as `_place`'s, their busiest unit's load, the top-th least
    busy combination's). Past a few tables, a table is placed when a bound on its busiest
    unit (at least its longest Einsum's fastest cycles and the mean over units of its
    Einsums' fastest, less a margin for rounding) is at most the top-th least of those
    placed so far: every other is busier than that, so the least busy are `_bindings`'."""
    k, n_work = len(tables), tables[0].shape[1]
    sizes = [len(t) for t in tables]
    n_tables = math.prod(sizes)
    top = min(top, len(of))
    chosen = np.arange(n_tables)
    if n_tables > PLACE_EACH_COMBOS:  # else all of them, placed one by one (`_place`)
        fastest = functools.reduce(
            np.minimum, [t.reshape(_along(sizes, j, n_work)) for j, t in enumerate(tables)]
        ).reshape(n_tables, n_work)
        bound = np.maximum(fastest.max(axis=1), fastest.sum(axis=1) / k)
        count = np.bincount(of, minlength=n_tables)  # combinations per table
        # the least bounds, until they hold `top` (no NaN among them: max propagates NaN)
        if not math.isnan(bound.max()):
            order = np.argsort(bound, kind="stable")
            chosen = np.sort(order[: int(np.searchsorted(np.cumsum(count[order]), top)) + 1])
    while True:
        index = np.unravel_index(chosen, sizes)
        placement = _place(np.stack([t[i] for t, i in zip(tables, index, strict=True)], axis=1))
        busiest = placement[2].max(axis=1)
        if len(chosen) == n_tables:  # every table: no bound to check
            return chosen, placement, busiest, np.partition(busiest[of], top - 1)[top - 1]
        cut = np.partition(np.repeat(busiest, count[chosen]), top - 1)[top - 1]
        within = set(np.flatnonzero(bound <= cut * (1 + 1e-9)).tolist())
        if within.issubset(chosen.tolist()):  # np.union1d(chosen, within) is chosen
            return chosen, placement, busiest, cut
        chosen = np.array(sorted(within.union(chosen.tolist())), dtype=np.int64)


#: Up to this many distinct tables, `_bindings` places the Einsums table by table in Python
#: (`_place_each`): one numpy step per Einsum (`_place_rows`) costs more than a few tables.
PLACE_EACH_COMBOS = 12


def _place_rows(here: np.ndarray, tied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per table (rows of `here`, `tied`: table x unit x Einsum in placement order), each
    Einsum on the least loaded unit it is tied on, the first on equal loads (0 added on
    those units, inf on the others: the argmin), its cycles added to that unit's load (and
    0.0 to the others': a load starts at +0.0 and never becomes -0.0, so x + 0.0 is x).
    Returns (the unit of each Einsum, the final loads), all tables one Einsum at a time."""
    tables, n_units, n_work = here.shape
    barred = np.where(tied, 0.0, np.inf).transpose(2, 0, 1).copy()  # Einsum, table, unit
    cycles = here.transpose(2, 0, 1).copy()
    units = np.arange(n_units)
    load = np.zeros((tables, n_units))
    picks = np.empty((n_work, tables), dtype=np.int64)
    for k in range(n_work):
        pick = (load + barred[k]).argmin(axis=1)
        picks[k] = pick
        load += np.where(pick[:, None] == units, cycles[k], 0.0)
    return picks.T.copy(), load


def _place_each(here: np.ndarray, tied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_place_rows` one table at a time, in Python floats: the same sums and comparisons
    (x + 0.0 is x, x + inf is inf; the first of equal minima)."""
    inf = math.inf
    picks, loads = [], []
    for cycles, ties in zip(here.tolist(), tied.tolist(), strict=True):
        load = [0.0] * len(cycles)
        chosen = []
        if len(cycles) == 2:  # two units, the common case: unit 1 only on a lower value
            (c0, c1), (t0, t1), l0, l1 = cycles, ties, 0.0, 0.0
            for k in range(len(c0)):
                if l1 + (0.0 if t1[k] else inf) < l0 + (0.0 if t0[k] else inf):
                    chosen.append(1)
                    l1 += c1[k]
                else:
                    chosen.append(0)
                    l0 += c0[k]
            picks.append(chosen)
            loads.append([l0, l1])
            continue
        for k in range(len(cycles[0]) if cycles else 0):
            pick, least = 0, None
            for u, tie in enumerate(ties):
                value = load[u] + (0.0 if tie[k] else inf)
                if least is None or value < least:
                    pick, least = u, value
            chosen.append(pick)
            load[pick] += cycles[pick][k]
        picks.append(chosen)
        loads.append(load)
    shape = here.shape
    return (
        np.array(picks, dtype=np.int64).reshape(shape[0], shape[2]),
        np.array(loads, dtype=float).reshape(shape[:2]),
    )


def _probe(ctx: _Context, unit: str, option: tuple[str, ...]) -> dict[str, float]:
    """Cycles of every Einsum the unit supports, with `option` unrolled on it, as the
    simulator reports them (one evaluation of a serial kernel holding the whole cascade)."""
    cache = ctx.probes
    if (unit, option) in cache:
        return cache[unit, option]
    names = [e.output for e in ctx.cascade.einsums]
    binding = tuple(
        (e, unit if unit in ctx.supported[e] else ctx.supported[e][0])
        for e in names
        if e in ctx.work
    )
    kernel = Kernel(
        name="probe",
        einsums=tuple(names),
        binding=binding,
        spatial=((unit, option),),
        overlap=Overlap.SERIAL,
        chained_ops=ctx.constraints.chained_ops,
    )
    mapping = Mapping("probe", ctx.cascade.name, (kernel,), batch=ctx.batch)
    found = einsum_cycles(ctx.cascade, ctx.arch, mapping, ctx.shape)
    cycles = {e: float(np.max(c)) for e, (on, c) in found.items() if on == unit}
    cache[unit, option] = cycles
    return cycles


def _edges(ctx: _Context, einsums: list[str]) -> tuple[list, list]:
    """(forward, carried) dependency edges between the Einsums with work of a kernel; an
    Einsum without work (a reshape such as BK) passes its inputs through: the reads of
    `_Context.read_paths` whose source and pass-through Einsums are all in the kernel
    (`_Context.read_edges`: each read's Einsums as bits, tested against the kernel's)."""
    bit = ctx.einsum_bits
    members = 0
    for e in einsums:
        members |= bit[e]
    forward, carried = set(), set()
    for need, loop_carried, edge in ctx.read_edges:
        if not need & ~members:
            (carried if loop_carried else forward).add(edge)
    return sorted(forward), sorted(carried)


def schedule_stages(
    work: list[str],
    unit_of: MappingABC[str, str],
    cycles: MappingABC[str, float],
    forward: list[tuple[str, str]],
    carried: list[tuple[str, str]],
) -> tuple[tuple[tuple[str, ...], ...], float]:
    """Pipeline stages for one binding: a legal (lag, stage) per Einsum found by local search.

    An Einsum runs in a stage of its own tile (lag 0) or of the next tile (lag 1: it finishes
    the previous tile, as RD, RNV and AV do in FuseMax). Legal: a consumer comes after its
    producer in (lag, stage) order, or in the same stage on the same unit (one unit runs its
    Einsums in sequence); a loop-carried read of the previous tile (SPD reads RD[m1]) only
    constrains a lagged producer to an earlier stage. The search starts as soon as possible
    (ASAP) and moves one Einsum at a time while the heuristic per-tile time, the sum over
    stages of the busiest unit's share of the reported `cycles`, falls: each round takes the
    largest fall of any legal (Einsum, lag, stage) move, ties to the first Einsum, then lag,
    then stage. Each Einsum's best move is kept between rounds and worked out again only
    where the last move changed what it depends on (its stage's loads, its neighbours'
    places, the loads of a stage it may move to); a move that cannot lower its own stage's
    peak gains nothing, and every empty stage gains the same (the first stands for all). It
    only proposes: the simulator costs every template built from it.

    Returns:
        (stages as Einsum names per stage, the heuristic per-tile time).

    Example:
        >>> schedule_stages(["A", "B"], {"A": "x", "B": "y"}, {"A": 2, "B": 3}, [("A", "B")], [])
        ((('A', 'B'),), 3.0)

        (B finishes the previous tile while A starts the next: one stage of max(2, 3).)
    """
    return _stages(_StagePlan(work, forward, carried), unit_of, cycles)


class _StagePlan:
    """What `schedule_stages` needs of a kernel before any binding, made once per kernel
    (`_stage_plan`): per Einsum (its index in `work`), its producers and readers over the
    forward and the carried edges, the Einsums whose legal stages bound its own (`near`),
    and ASAP's topological order (Kahn's algorithm with a heap, ties to text order: which
    Einsum is ready first does not depend on the binding). `error` is the SpecError message
    a schedule raises (an edge naming an Einsum not in `work`, or a cycle), raised by
    `_stages` as `schedule_stages` always did, not when the plan is made."""

    __slots__ = ("cpreds", "csuccs", "error", "near", "order", "preds", "succs", "work")

    def __init__(self, work, forward, carried):
        n = len(work)
        self.work = tuple(work)
        self.preds: list[list[int]] = [[] for _ in range(n)]
        self.succs: list[list[int]] = [[] for _ in range(n)]
        self.cpreds: list[list[int]] = [[] for _ in range(n)]
        self.csuccs: list[list[int]] = [[] for _ in range(n)]
        self.near: list[set[int]] = [set() for _ in range(n)]
        self.order: list[int] = []
        self.error: str | None = None
        position = {e: i for i, e in enumerate(work)}
        try:
            fw = [(position[p], position[c]) for p, c in forward]
            ca = [(position[p], position[c]) for p, c in carried]
        except KeyError as missing:
            self.error = f"stage edge names {missing}, not an Einsum of the kernel"
            return
        for edges, into, out in ((fw, self.preds, self.succs), (ca, self.cpreds, self.csuccs)):
            for p, c in edges:
                into[c].append(p)
                out[p].append(c)
                self.near[p].add(c)
                self.near[c].add(p)
        waiting = [len(ps) for ps in self.preds]
        ready = [i for i in range(n) if not waiting[i]]
        while ready:
            i = heapq.heappop(ready)
            self.order.append(i)
            for c in self.succs[i]:
                waiting[c] -= 1
                if not waiting[c]:
                    heapq.heappush(ready, c)
        if len(self.order) < n:
            stuck = sorted(e for e, i in position.items() if waiting[i])
            self.error = f"Einsums {', '.join(stuck)} form a cycle"


def _stage_plan(ctx: _Context, work: list[str], edges) -> _StagePlan:
    """The `_StagePlan` of a kernel's Einsums with work and its (forward, carried) edges,
    memoized per space (the one object stands for them in `_score`'s memo)."""
    forward, carried = edges
    key = ("stage plan", tuple(work), tuple(forward), tuple(carried))
    if key not in ctx.memo:
        ctx.memo[key] = _StagePlan(work, forward, carried)
    return ctx.memo[key]


def _stages(plan: _StagePlan, unit_of, cycles) -> tuple[tuple[tuple[str, ...], ...], float]:
    """`schedule_stages` of a kernel's plan for one binding of its Einsums."""
    if plan.error is not None:
        raise SpecError(plan.error)
    work = plan.work
    n = len(work)
    units = sorted(set(unit_of.values()))
    number = {u: k for k, u in enumerate(units)}
    on = [number[unit_of[e]] for e in work]
    w = [float(cycles[e]) for e in work]
    # per Einsum: its producers and readers (forward, then carried edges); an edge between
    # two units adds one to the key (`on[p] != on[c]`, a bool)
    preds, succs, cpreds, csuccs = plan.preds, plan.succs, plan.cpreds, plan.csuccs
    near = plan.near
    stage = [0] * n  # ASAP in the plan's topological order
    for i in plan.order:
        at, o = 0, on[i]  # the latest of its producers' stages (+1 on another unit)
        for p in preds[i]:
            v = stage[p] + (on[p] != o)
            if v > at:
                at = v
        stage[i] = at
    key = list(stage)  # lag * n + stage: the (lag, stage) order
    loads = [[0.0] * len(units) for _ in range(n)]  # per stage and unit
    for i in range(n):  # in Einsum order, one at a time
        loads[stage[i]][on[i]] += w[i]
    peaks = [0.0] * n  # an empty stage's row is zeros
    busy = []  # the stages with work, ascending
    for s in sorted(set(stage)):
        row = loads[s]
        peaks[s] = max(row)
        if any(row):
            busy.append(s)
    held = set(busy)
    last = n - 1
    # The helpers below are the builtins' max/min written out (the same value, the first of
    # equal ones): they run hundreds of thousands of times per space.

    def limits(e: int) -> tuple[int, int, int, int]:
        """e's legal stages given the others' places: [a0, b0] at lag 0, [a1, b1] at lag 1
        (a consumer after its producer in key order, or in the same stage on the same unit;
        a lagged producer of a carried read before its lag-0 reader, an unlagged reader of
        a carried read after its lagged producer)."""
        lo, o = -1, on[e]
        for p in preds[e]:
            v = key[p] + (on[p] != o)
            if v > lo:
                lo = v
        hi = 2 * n
        for c in succs[e]:
            v = key[c] - (on[c] != o)
            if v < hi:
                hi = v
        a0, b1 = lo, hi - n
        for p in cpreds[e]:
            if key[p] >= n and stage[p] + (on[p] != o) > a0:
                a0 = stage[p] + (on[p] != o)
        for c in csuccs[e]:
            if key[c] < n and stage[c] - (on[c] != o) < b1:
                b1 = stage[c] - (on[c] != o)
        return (
            a0 if a0 > 0 else 0,
            hi if hi < last else last,
            lo - n if lo > n else 0,
            b1 if b1 < last else last,
        )

    two = len(units) == 2  # two units, the common case

    def released(e: int) -> float:
        """What moving e out releases of its stage's peak (<= 0)."""
        s, we = stage[e], w[e]
        row = loads[s]
        if two:
            a, b = (row[0] - we, row[1]) if on[e] == 0 else (row[0], row[1] - we)
            return (b if b > a else a) - peaks[s]
        rest = max([x - we if k == on[e] else x for k, x in enumerate(row)])
        return rest - peaks[s]

    bl, br = bisect.bisect_left, bisect.bisect_right

    def best_move(e: int, release: float) -> tuple[float, int, int] | None:
        """(gain, lag, stage) of e's best legal move; None when none gains."""
        if not release < 0:  # a move raises the target's peak at least as much: no gain
            return None
        s0, u, we = stage[e], on[e], w[e]
        found = None
        least = -1e-9  # a move gains when it lowers the time by more than this
        a0, b0, a1, b1 = bounds[e]
        for lg, a, b in ((0, a0, b0), (1, a1, b1)):
            if a > b:
                continue
            at = busy[bl(busy, a) : br(busy, b)]
            free = a  # the first empty stage in [a, b]: every empty one gains the same
            while free in held:
                free += 1
            if free <= b:
                bisect.insort(at, free)
            for s in at:
                if s == s0:
                    continue
                pk = peaks[s]
                x = loads[s][u] + we
                gain = release + (x if x > pk else pk) - pk
                if gain < least:
                    least = gain
                    found = (gain, lg, s)
        return found

    bounds = [limits(e) for e in range(n)]
    release = [released(e) for e in range(n)]
    moves = [best_move(e, release[e]) for e in range(n)]
    inf = math.inf
    gains = [inf if m is None else m[0] for m in moves]  # each best move's gain
    while True:
        least = min(gains, default=inf)  # the first Einsum of the largest fall (inf: none)
        if least == inf:
            break
        e = gains.index(least)
        _, lg, s = moves[e]
        s1, u = stage[e], on[e]
        loads[s1][u] -= w[e]
        loads[s][u] += w[e]
        stage[e], key[e] = s, lg * n + s
        for t in (s1, s):
            peaks[t] = max(loads[t])
            if any(loads[t]) != (t in held):
                if t in held:
                    held.discard(t)
                    busy.remove(t)
                else:
                    held.add(t)
                    bisect.insort(busy, t)
        changed = {e}  # e, and its neighbours whose legal stages its new place changed
        for x in near[e]:
            again = limits(x)
            if again != bounds[x]:
                bounds[x] = again
                changed.add(x)
        # The moves that change: e's, its neighbours' whose legal stages changed, those that
        # may move to either stage (their own aside: a move never targets its own stage),
        # and those in either stage whose release changed (the loads of its own stage count
        # only through that).
        either = (s1, s)
        for x, (a0, b0, a1, b1) in enumerate(bounds):
            at = stage[x]
            if (
                x in changed
                or (s1 != at and (a0 <= s1 <= b0 or a1 <= s1 <= b1))
                or (s != at and (a0 <= s <= b0 or a1 <= s <= b1))
            ):
                release[x] = again = released(x)
                moves[x] = found = best_move(x, again)
                gains[x] = inf if found is None else found[0]
            elif at in either:
                again = released(x)
                if again != release[x]:
                    release[x] = again
                    moves[x] = found = best_move(x, again)
                    gains[x] = inf if found is None else found[0]
    stages: dict[int, list[str]] = {}
    for i in sorted(range(n), key=stage.__getitem__):
        stages.setdefault(stage[i], []).append(work[i])
    # np.sum's pairwise sum, or any order when every partial sum is exact: whole cycles
    # (each peak is a sum of some of them, all of them add up to less than 2**53)
    if min(w, default=0.0) >= 0 and all(map(float.is_integer, w)) and sum(w) < 2.0**53:
        total = float(sum(peaks))
    else:
        total = float(np.sum(np.array(peaks)))
    return tuple(map(tuple, stages.values())), total


def _busiest(work, binding, cycles) -> float:
    """The busiest unit's cycles per tile: a lower bound on `_score` (a schedule's sum over
    stages of each stage's busiest unit is at least any one unit's total)."""
    load: dict[str, float] = {}
    for e in work:
        load[binding[e]] = load.get(binding[e], 0.0) + cycles[binding[e]][e]
    return max(load.values())


def _score(ctx, work, binding, cycles, edges, plan=None) -> tuple[tuple, float]:
    """(stages, heuristic per-tile time) of a binding of exactly `work` (`schedule_stages`
    when pipelined on several units); `plan`, when given, is `_stage_plan(ctx, work, edges)`."""
    unit_cycles = {e: cycles[binding[e]][e] for e in work}
    overlap = ctx.constraints.overlap
    if overlap == "pipelined" and len(set(binding.values())) > 1:
        # memoized: unrollings that differ only on a unit's idle dimension probe the same
        # cycles, so a kernel's bindings meet the same schedule many times (the plan stands
        # for the Einsums and the edges)
        plan = plan or _stage_plan(ctx, work, edges)
        key = ("stages", plan, tuple(map(binding.__getitem__, work)),
               tuple(unit_cycles.values()))  # fmt: skip
        if key not in ctx.memo:
            ctx.memo[key] = _stages(plan, binding, unit_cycles)
        return ctx.memo[key]
    per_unit: dict[str, float] = {}
    for e in work:
        per_unit[binding[e]] = per_unit.get(binding[e], 0.0) + unit_cycles[e]
    total = max(per_unit.values()) if overlap == "perfect" else sum(per_unit.values())
    return (tuple(work),), total


def compute_structures(ctx: _Context, einsums: list[str], top: int = TOP_COMPUTE) -> list:
    """Candidate (spatial, binding, stages) of one kernel, best heuristic first.

    One Einsum: every supporting unit with every unrolling (no heuristic, nothing dropped).
    Several: each unit's unrollings are probed through the simulator (`_probe`); per
    combination, each Einsum goes to its fastest unit (ties to the less loaded), stages come
    from `schedule_stages`, and the two best combinations get a local search over single
    re-bindings. The `top` best distinct results are returned.
    """
    work = [e for e in einsums if e in ctx.work]
    units = [u.name for u in ctx.arch.units if any(u.name in ctx.supported[e] for e in work)]
    options = {u: _spatial_options(ctx, u, work) for u in units}
    if len(work) == 1:
        (e,) = work
        return [
            Compute(((u, opt),), ((e, u),), (), Overlap.SERIAL)
            for u in ctx.supported[e]
            for opt in options[u]
        ]
    units = [u for u in units if options[u]]
    edges = _edges(ctx, einsums)
    plan = _stage_plan(ctx, work, edges)
    results: dict = {}
    table = _bindings(ctx, work, units, options)
    bounds = table.busiest()
    # Stages are scheduled in the order of a bound on the score (the busiest unit's cycles:
    # no schedule beats a perfect overlap), and not at all for a combination whose bound
    # exceeds the score of `keep` already scheduled: it could enter neither the `top`
    # returned nor the two refined below, so the result is that of scheduling every one.
    keep, scores, combos = max(top, 2), [], []
    for index in np.argsort(bounds, kind="stable"):  # by (bound, combination)
        bound = bounds[index]
        if len(scores) >= keep and bound > scores[keep - 1] * (1 + 1e-9):
            break
        choice = table.choice[index]
        spatial = tuple((u, options[u][choice[k]]) for k, u in enumerate(units))
        cycles = {u: _probe(ctx, u, opt) for u, opt in spatial}
        binding = table.binding(index, work, units)
        stages, score = _score(ctx, work, binding, cycles, edges, plan)
        bisect.insort(scores, score)
        combos.append((score, index, spatial, binding, stages, cycles))
        # keyed by (unrollings, each Einsum's unit in `work` order): a binding binds
        # exactly `work`, so this stands for (unrollings, the binding's sorted items)
        results[spatial, tuple(map(binding.__getitem__, work))] = (score, stages)
    combos = [(c[0], *c[2:]) for c in sorted(combos, key=lambda c: c[:2])]
    for score, spatial, binding, stages, cycles in combos[:2]:
        current = (score, dict(binding), stages, tuple(map(binding.__getitem__, work)))
        while True:
            best = current
            for i, e in enumerate(work):
                for u in ctx.supported[e]:
                    if u == current[3][i]:
                        continue
                    units = (*current[3][:i], u, *current[3][i + 1 :])
                    key = (spatial, units)
                    trial = None
                    if key not in results:
                        trial = dict(current[1])
                        trial[e] = u
                        # hopeless (see above), and no better than the best move so far
                        bound = _busiest(work, trial, cycles)
                        top_k = len(scores) >= keep and bound > scores[keep - 1] * (1 + 1e-9)
                        if top_k and bound >= best[0] - 1e-9:
                            continue
                        results[key] = _score(ctx, work, trial, cycles, edges, plan)[::-1]
                        bisect.insort(scores, results[key][0])
                    s, st = results[key]
                    if s < best[0] - 1e-9:
                        if trial is None:
                            trial = dict(current[1])
                            trial[e] = u
                        best = (s, trial, st, units)
            if best is current:
                break
            current = best
    # the `top` first by (score, text of (unrollings, the binding's sorted items)): among
    # those at most the top-th least score (only those are written out as text and sorted)
    cut = max(heapq.nsmallest(top, (score for score, _ in results.values())), default=math.inf)
    ranked = sorted(
        (
            ((spatial, tuple(sorted(zip(work, units, strict=True)))), value)
            for (spatial, units), value in results.items()
            if value[0] <= cut
        ),
        key=lambda kv: (kv[1][0], str(kv[0])),
    )
    overlap = Overlap(ctx.constraints.overlap)
    out = []
    for (spatial, binding), (score, stages) in ranked[:top]:
        used = {u for _, u in binding}
        pipelined = overlap is Overlap.PIPELINED and len(used) > 1
        out.append(
            Compute(
                tuple((u, r) for u, r in spatial if u in used),
                tuple((e, dict(binding)[e]) for e in work),
                stages if pipelined else (),
                overlap if len(used) > 1 else Overlap.SERIAL,
                score,
            )
        )
    return out


def _kernel_memory(ctx: _Context, name: str, einsums: list[str], compute: Compute):
    """The memory choices of one kernel: tiled ranks, loop orders, keep candidates."""
    members = set(einsums)
    ranks: set[str] = set()
    for e in einsums:
        # A view without operations (BK[g,e,m1,m0] = K[...]) asks for no loop of its own:
        # GQA's G is walked by the loops over the heads that read it (h // (H // G)).
        if e in ctx.work or not any(w in ctx.work for w in einsums):
            ranks |= ctx.iterated(e)
    lower = {p.lower for p in ctx.cascade.partitions}
    fused = len([e for e in einsums if e in ctx.work]) > 1
    multipass = {r for r in ranks if fused and ctx.passes.get(r, 1) > 1}
    dims: dict[str, int] = {}
    for unit, unrolled in compute.spatial:
        for r, d in zip(unrolled, ctx.arch.unit(unit).dims, strict=True):
            dims[r] = min(dims.get(r, d), d)
    whole = {r for r in multipass if dims.get(r, 0) >= ctx.sizes[r]}  # the arrays hold it
    tiled = sorted(r for r in ranks if r not in lower and r not in whole)
    work = [e for e in einsums if e in ctx.work]
    # A rank few of a fused kernel's Einsums iterate (E, F in attention) may stay inside
    # the arrays' own iteration (no buffer-level loop): tiling it is a choice, not a given.
    # Alone in its kernel, an Einsum may stream a rank it does not unroll whole through the
    # arrays (K of an output-stationary GEMM): a loop over it would split every fold.
    if fused:
        iterating: dict[str, int] = {}  # per rank, how many of the Einsums iterate it
        for e in work:
            for r in ctx.iterated(e):
                iterating[r] = iterating.get(r, 0) + 1
        optional = [r for r in tiled if 2 * iterating.get(r, 0) < len(work)]
    else:
        unrolled = {r for _, rs in compute.spatial for r in rs}
        optional = [r for r in tiled if r not in unrolled]
    # state carried across the loop over its iterative rank
    required = {e for e in einsums if e in ctx.iterative} if fused else set()
    spread = multipass - whole  # an intermediate over such a rank read in the kernel
    if spread:
        required |= {
            e
            for e in einsums
            if e in ctx.work
            and not spread.isdisjoint(ctx.cascade.tensor_ranks[e])
            and not members.isdisjoint(ctx.successors[e])
        }
    candidates: dict[str, None] = {}  # in the order first met
    for e in einsums:
        if e in ctx.work:
            for t in ctx.operands[e]:
                if t not in members or t not in ctx.work:
                    candidates.setdefault(t)
    for e in einsums:
        if e in ctx.cascade.outputs or not members.issuperset(ctx.successors[e]):
            candidates.setdefault(e)
    candidates_ = [t for t in candidates if t not in required]
    return tiled, optional, spread, sorted(required), candidates_


def _keep_choices(ctx, level: str, required, candidates) -> list[tuple[str, ...]]:
    forced = set(dict(ctx.constraints.keep).get(level, ()))
    banned = set(dict(ctx.constraints.bypass).get(level, ()))
    clash = sorted(set(required) & banned)
    if clash:
        raise SpecError(
            f"constraints.bypass.{level}: {', '.join(clash)} must stay on chip (state carried "
            "across the tile loop, or an intermediate over a rank traversed more than once)"
        )
    free = [t for t in candidates if t not in forced and t not in banned]
    if len(free) > MAX_KEEP_CHOICES:
        subsets = [(), tuple(free)]
        subsets += [(t,) for t in free]
    else:
        subsets = [combo for k in range(len(free) + 1) for combo in itertools.combinations(free, k)]
    base = sorted(set(required) | forced)  # a fused kernel touches every tensor
    return [tuple(sorted({*base, *s})) for s in subsets]


def _orders(ctx, tiled: list[str]) -> tuple[tuple[tuple[str, ...], ...], bool]:
    """Off-chip loop orders (outer to inner) and whether they are every permutation."""
    return _allowed_orders(tuple(tiled), ctx.constraints.forbid_orders)


@functools.lru_cache(maxsize=4096)
def _allowed_orders(tiled: tuple[str, ...], forbid) -> tuple[tuple[tuple[str, ...], ...], bool]:
    """The first `MAX_ORDERS` permutations of `tiled` (itertools order) that put no
    `forbid` sequence in its order, and whether they are all of them (no forbidden order
    and at most `MAX_ORDERS`). Permutations are generated only until one past the cap."""

    def allowed(order: tuple[str, ...]) -> bool:
        at = {r: i for i, r in enumerate(order)}
        for bad in forbid:
            if all(r in at for r in bad):
                index = [at[r] for r in bad]
                if index == sorted(index):
                    return False
        return True

    found = tuple(itertools.islice(filter(allowed, itertools.permutations(tiled)), MAX_ORDERS + 1))
    if not found:
        raise SpecError(
            f"constraints.forbid_orders: every loop order of {', '.join(tiled)} is forbidden"
        )
    return found[:MAX_ORDERS], len(found) <= MAX_ORDERS and not forbid


def _unfused_template(ctx: _Context, fusion: str, groups: list[list[str]]) -> Template:
    """The one template of a grouping into several kernels that the strategies compare
    with fusion: each kernel on its fastest compute structure, streaming every operand
    once (no tiling, nothing kept): the unfused baseline."""
    kernels = []
    for einsums in groups:
        name = next(e for e in einsums if e in ctx.work)
        structures = _structures(ctx, einsums)
        fastest = _fastest(ctx, structures) if structures else None
        kernels.append(_kernel(ctx, name, einsums, fastest, (), _forced_keep(ctx, einsums), ()))
    labels = (("fusion", fusion), ("kernels", str(len(kernels))))
    mapping = Mapping(f"{ctx.cascade.name}_{fusion}", ctx.cascade.name, tuple(kernels), ctx.batch)
    return Template(mapping, (), (), labels)


class _FusedKernel:
    """The templates of one fused kernel as recipes: per compute structure (best-ranked
    first), per off-chip order and on-chip order, per keep set (and, masked, per
    skip_empty_tiles), in that nesting. A recipe's labels cost a few string joins; its
    template is built on demand (`template`), the grid of one (compute, orders) shared by
    its keep sets. The memory choices of a compute structure are worked out when a recipe
    of it is first asked for, so the first templates of a group cost one structure's.

    The (compute, orders) entries are kept as blocks, one per set of tiled ranks: its
    off-chip orders, each alone (the on-chip order follows) or with each on-chip order of
    the same ranks (`complete`); an entry is found by arithmetic, not stored."""

    def __init__(self, ctx: _Context, fusion: str, name: str, einsums, structures):
        self.ctx, self.fusion, self.name, self.einsums = ctx, fusion, name, list(einsums)
        self.structures = structures  # a list, or a group's `_Ranked`
        self.offchip = ctx.arch.levels[0].name
        self.onchip = [lv.name for lv in ctx.arch.levels[1:]]
        self.masked = any(e.where is not None for e in ctx.cascade.einsums)
        self.skips = (True, False) if self.masked else (True,)
        self._memory: list = []  # per compute structure: (keeps, multipass)
        self._blocks: list[tuple[int, tuple, bool]] = []  # (compute, orders, complete)
        self._pending: list | None = None  # the structure whose blocks are being added
        self._starts: list[int] = [0]  # first recipe of each block, and the count
        self._labels: dict[tuple[int, int], tuple] = {}

    def _expand(self) -> bool:
        """Add the next block of recipes: the next set of tiled ranks of the compute structure
        being worked out, else the next compute structure's memory choices; False when none
        is left. Without `constraints.forbid_orders` no set of ranks lacks an order, and
        whether a structure's orders are `complete` is known from its tiled ranks alone, so
        its sets are taken one at a time (the first templates of a group need the first
        set's); with it, every set is worked out at once (an empty one fails now)."""
        if self._pending:  # (compute, complete, tiled ranks, the sets dropped, next set)
            ci, complete, all_tiled, drops, k = self._pending
            if k < len(drops):
                tiled = [r for r in all_tiled if r not in drops[k]]
                self._add(ci, _orders(self.ctx, tiled)[0], complete)
                self._pending[-1] += 1
                return True
            self._pending = None
        ci = len(self._memory)
        if ci >= len(self.structures):
            return False
        ctx, compute = self.ctx, self.structures[ci]
        all_tiled, optional, multipass, required, candidates = _kernel_memory(
            ctx, self.name, self.einsums, compute
        )
        keeps = _keep_choices(ctx, self.onchip[0], required, candidates) if self.onchip else [()]
        self._memory.append((keeps, multipass))
        drops = [d for k in range(len(optional) + 1) for d in itertools.combinations(optional, k)]
        if not ctx.constraints.forbid_orders:  # every permutation allowed: one at a time
            complete = len(all_tiled) <= 3  # then every set has at most 3! <= MAX_ORDERS
            self._pending = [ci, complete, all_tiled, drops, 0]
            return self._expand()
        per_subset, complete = [], True  # the orders of each set of tiled ranks
        for dropped in drops:
            tiled = [r for r in all_tiled if r not in dropped]
            some, every = _orders(ctx, tiled)
            per_subset.append(some)
            complete = complete and every and len(tiled) <= 3
        for some in per_subset:
            self._add(ci, some, complete)
        return True

    def _add(self, ci: int, some: tuple, complete: bool) -> None:
        """Append the block of (compute ci, one set of tiled ranks' orders)."""
        keeps, _ = self._memory[ci]
        self._blocks.append((ci, some, complete))
        entries = len(some) ** 2 if complete else len(some)
        self._starts.append(self._starts[-1] + entries * len(keeps) * len(self.skips))

    @property
    def count(self) -> int:
        while self._expand():
            pass
        return self._starts[-1]

    def available(self, n: int) -> int:
        """How many of the first n recipes exist (expanding only as far as needed)."""
        while self._starts[-1] < n and self._expand():
            pass
        return min(n, self._starts[-1])

    def _locate(self, i: int) -> tuple[int, int, int]:
        """(block, entry in the block, recipe in the entry) of recipe i."""
        self.available(i + 1)
        b = bisect.bisect_right(self._starts, i) - 1
        keeps, _ = self._memory[self._blocks[b][0]]
        entry, r = divmod(i - self._starts[b], len(keeps) * len(self.skips))
        return b, entry, r

    def _entry(self, b: int, entry: int) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """(off-chip order, on-chip order or None: the same) of an entry of block b."""
        _, some, complete = self._blocks[b]
        if not complete:
            return some[entry], None
        o, on = divmod(entry, len(some))
        return some[o], some[on]

    def _recipe(self, i: int):
        b, entry, r = self._locate(i)
        ci, _, canonical = self._blocks[b]
        order, on_order = self._entry(b, entry)
        keeps, multipass = self._memory[ci]
        k, s = divmod(r, len(self.skips))
        return ci, order, on_order, canonical, keeps[k], self.skips[s], multipass

    def structure(self, i: int) -> tuple[tuple[str, str], ...]:
        b, entry, r = self._locate(i)
        ci = self._blocks[b][0]
        if (b, entry) not in self._labels:  # the labels its keep sets share
            order, on_order = self._entry(b, entry)
            compute = self.structures[ci]
            self._labels[b, entry] = (
                ("fusion", self.fusion),
                ("compute", str(ci)),
                ("spatial", " ".join(f"{u}:{','.join(r)}" for u, r in compute.spatial)),
                ("order", ",".join(order)),
                ("onchip_order", "same" if on_order is None else ",".join(on_order)),
            )
        keeps, _ = self._memory[ci]
        k, s = divmod(r, len(self.skips))
        labels = (*self._labels[b, entry], ("keep", ",".join(keeps[k]) or "-"))
        if self.masked:
            labels = (*labels, ("skip_empty_tiles", "yes" if self.skips[s] else "no"))
        return labels

    def factorized(self, dim: str) -> tuple[list[str], np.ndarray]:
        """Every recipe's label of one dimension as (distinct labels, index per recipe),
        without making the labels one by one ('' where the templates have none): per block,
        its entries' codes repeated over their recipes."""
        n = self.count
        if dim in ("compute", "order", "onchip_order", "keep"):
            code: dict = {}  # per distinct value, in the order first met
            skips = len(self.skips)
            values: list[int] = []  # codes, each for `repeats` recipes in a row
            repeats: list[int] = []
            keep_runs: list[tuple[list[int], int]] = []  # per run of blocks: keeps, entries
            for ci, some, complete in self._blocks:
                keeps, _ = self._memory[ci]
                m, per_entry = len(some), len(keeps) * skips
                entries = m * m if complete else m
                if dim == "compute":
                    values.append(code.setdefault(ci, len(code)))
                    repeats.append(entries * per_entry)
                elif dim == "keep":  # the keep sets in turn, per entry
                    ks = [code.setdefault(k, len(code)) for k in keeps]
                    if keep_runs and keep_runs[-1][0] == ks:
                        keep_runs[-1] = (ks, keep_runs[-1][1] + entries)
                    else:
                        keep_runs.append((ks, entries))
                else:
                    if dim == "onchip_order" and not complete:
                        index = [code.setdefault(None, len(code))] * m
                    else:
                        index = [code.setdefault(o, len(code)) for o in some]
                        if complete and dim == "order":  # entries (off-chip, on-chip order)
                            index = [c for c in index for _ in range(m)]
                        elif complete:
                            index = index * m
                    values += index
                    repeats += [per_entry] * len(index)
            if dim == "keep":
                parts = [np.tile(np.repeat(np.array(ks, dtype=np.int64), skips), entries)
                         for ks, entries in keep_runs]  # fmt: skip
                index = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            else:
                index = np.repeat(np.array(values, dtype=np.int64), repeats)
            if dim == "compute":
                labels = [str(ci) for ci in code]
            elif dim == "keep":
                labels = [",".join(k) or "-" for k in code]
            else:
                labels = ["same" if o is None else ",".join(o) for o in code]
            return labels, index
        if dim == "skip_empty_tiles" and self.masked:
            return ["yes", "no"], np.tile(np.arange(len(self.skips)), n // len(self.skips))
        if dim == "fusion":
            return [self.fusion], np.zeros(n, dtype=np.int64)
        return [""], np.zeros(n, dtype=np.int64)

    def template(self, i: int) -> Template:
        ctx = self.ctx
        ci, order, on_order, canonical, keep, skip, multipass = self._recipe(i)
        compute = self.structures[ci]
        inner = order if on_order is None else on_order
        key = ("grid", self.name, tuple(self.einsums), compute, order, inner, canonical)
        if key not in ctx.memo:
            ctx.memo[key] = _order_grid(
                ctx, self.name, self.einsums, compute, order, inner, multipass,
                self.offchip, self.onchip, canonical,
            )  # fmt: skip
        names, values, ranks, orders, base = ctx.memo[key]
        keep_spec = ((self.onchip[0], keep),) if self.onchip and keep else ()
        kernel = dataclasses.replace(base, keep=keep_spec) if keep_spec else base
        mapping = Mapping(
            f"{ctx.cascade.name}_{self.fusion}", ctx.cascade.name, (kernel,), ctx.batch
        )
        if self.masked:
            mapping = dataclasses.replace(mapping, skip_empty_tiles=skip)
        return Template(mapping, names, values, self.structure(i), ranks, orders)


class _PartialGrouping:
    """The templates of a grouping into several kernels, some fused (module docstring):
    slot 0 has every group at its first template; then, per fused group in order, slots
    1..`PARTIAL_TEMPLATES`-1 vary that group over its next templates while the others
    keep their first. Every fused group's tiles are free factors of the one grid. A
    one-Einsum group streams its operands once on its fastest structure, as in `unfused`.

    The number of slots is known without building any group; the groups are built when a
    slot is first asked for. A slot whose group has fewer templates, or a grouping whose
    groups the stage scheduler cannot order, is `absent` (an empty grid)."""

    def __init__(self, ctx: _Context, fusion: str, groups: list[list[str]]):
        self.ctx, self.fusion, self.groups = ctx, fusion, groups
        self.fused = [i for i, g in enumerate(groups) if sum(e in ctx.work for e in g) > 1]
        self.count = 1 + len(self.fused) * (PARTIAL_TEMPLATES - 1)
        self._options: list[_Group] | bool | None = False  # False: not yet built

    def options(self) -> list[_Group] | None:
        if self._options is False:
            found = []
            for einsums in self.groups:
                group = _group_kernel(self.ctx, einsums)
                if group is None:  # a group the stage scheduler cannot order: not in the space
                    found = None
                    break
                found.append(group)
            self._options = found
        return self._options

    def _slot(self, local: int) -> tuple[int, int] | None:
        """(varied group, its template) of a slot; None when absent."""
        options = self.options()
        if options is None:
            return None
        if local == 0:
            # the all-first template carries the labels of the last group that varies (as a
            # varied group's first template it is the same mapping)
            varied = [i for i in self.fused if options[i].count > 1]
            return (varied[-1] if varied else 0), 0
        k, j = divmod(local - 1, PARTIAL_TEMPLATES - 1)
        i = self.fused[k]
        return (i, j + 1) if j + 1 < options[i].count else None

    def template(self, local: int) -> Template:
        slot = self._slot(local)
        labels = (("fusion", self.fusion), ("kernels", str(len(self.groups))))
        if slot is None:
            mapping = Mapping(f"{self.ctx.cascade.name}_partial", self.ctx.cascade.name, ())
            return Template(mapping, (), (), labels, absent=True)
        options = self.options()
        i, j = slot
        parts = [options[i].template(j) if x == i else o.template(0) for x, o in enumerate(options)]
        return _joined(self.ctx, self.fusion, parts, options[i].template(j))

    def structure(self, local: int) -> tuple[tuple[str, str], ...]:
        """The labels `template(local)` has, without building the groups' templates."""
        slot = self._slot(local)
        if slot is None:
            return (("fusion", self.fusion), ("kernels", str(len(self.groups))))
        i, j = slot
        varied = dict(self.options()[i].structure(j))
        labels = varied | {"fusion": self.fusion, "kernels": str(len(self.groups))}
        return tuple(labels.items())


class _Group:
    """One kernel of a partial grouping: how many templates it offers (`count`), their
    labels from the recipes, and each template built when first asked for (and kept). A
    fused group's come from its `_FusedKernel`; a one-Einsum group (or one without compute
    structures) has one template streaming its operands on its fastest structure."""

    def __init__(self, ctx: _Context, einsums: list[str], structures, kernel):
        self.ctx, self.einsums, self.structures, self.kernel = ctx, einsums, structures, kernel
        self.count = 1 if kernel is None else kernel.available(PARTIAL_TEMPLATES)
        self._built: dict[int, Template] = {}

    def structure(self, j: int) -> tuple[tuple[str, str], ...]:
        return () if self.kernel is None else self.kernel.structure(j)

    def template(self, j: int) -> Template:
        if j not in self._built:
            self._built[j] = self._streamed() if self.kernel is None else self.kernel.template(j)
        return self._built[j]

    def _streamed(self) -> Template:
        ctx, einsums, structures = self.ctx, self.einsums, self.structures
        name = next(e for e in einsums if e in ctx.work)
        fastest = _fastest(ctx, structures) if structures else None
        kernel = _kernel(ctx, name, einsums, fastest, (), _forced_keep(ctx, einsums), ())
        mapping = Mapping(f"{ctx.cascade.name}_partial", ctx.cascade.name, (kernel,), ctx.batch)
        return Template(mapping, (), (), ())


def _group_kernel(ctx: _Context, einsums: list[str]) -> _Group | None:
    """The templates of one kernel of a partial grouping, memoized per group (groups recur
    across groupings): a fused group's first `PARTIAL_TEMPLATES`, or a one-Einsum group
    streaming its operands on its fastest structure; None when the group cannot be
    scheduled. Only the count and the labels are worked out now."""
    key = ("templates", tuple(einsums))
    if key in ctx.memo:
        return ctx.memo[key]
    name = next(e for e in einsums if e in ctx.work)
    try:
        structures = _group_ranked(ctx, einsums)
    except SpecError:
        ctx.memo[key] = None
        return None
    kernel = None
    if sum(e in ctx.work for e in einsums) > 1 and structures:
        kernel = _FusedKernel(ctx, "partial", name, einsums, structures)
    ctx.memo[key] = _Group(ctx, list(einsums), structures, kernel)
    return ctx.memo[key]


def _structures(ctx: _Context, einsums: list[str]) -> list[Compute]:
    """`compute_structures`, memoized per group of Einsums."""
    key = ("structures", tuple(einsums))
    if key not in ctx.memo:
        ctx.memo[key] = compute_structures(ctx, einsums)
    return ctx.memo[key]


def _whole_structures(ctx: _Context) -> list[tuple[tuple, dict[str, str]]]:
    """The whole cascade's compute structures as (spatial, binding as a dict), memoized per
    space: each group of a partial grouping starts from them restricted to its Einsums."""
    key = ("whole structures",)
    if key not in ctx.memo:
        names = [e.output for e in ctx.cascade.einsums]
        ctx.memo[key] = [(c.spatial, dict(c.binding)) for c in _structures(ctx, names)]
    return ctx.memo[key]


def _group_ranked(ctx: _Context, einsums: list[str]) -> SequenceABC[Compute]:
    """Compute structures of a group of a partial grouping. One Einsum: all of them
    (`compute_structures`). Several: the whole cascade's best structures restricted to the
    group (same unrollings and binding, unused units dropped), and the group's own best
    unrollings: every combination of its units' unrollings with each Einsum on its fastest
    unit, ranked by the busiest unit's cycles (a perfect overlap); stages are scheduled
    only for the `TOP_COMPUTE` best of those. `compute_structures` would run the stage
    scheduler for every combination of every one of the O(n^2) contiguous groups."""
    work = [e for e in einsums if e in ctx.work]
    if len(work) <= 1:
        return _structures(ctx, einsums)
    candidates: dict = {}
    for whole_spatial, whole_binding in _whole_structures(ctx):
        # whole_binding binds every Einsum with work, in text order, as `work` lists them
        binding = {e: whole_binding[e] for e in work}
        used = set(binding.values())
        spatial = tuple((u, r) for u, r in whole_spatial if u in used)
        candidates.setdefault((spatial, tuple(binding.values())), binding)
    units = [u.name for u in ctx.arch.units if any(u.name in ctx.supported[e] for e in work)]
    options = {u: _spatial_options(ctx, u, work) for u in units}
    units = [u for u in units if options[u]]
    # the TOP_COMPUTE first by (busiest unit, unrolling text) lie among those at most the
    # TOP_COMPUTE-th least busy: only those are made into structures and sorted, and only
    # the tables that may hold them are placed (`_least_busiest`)
    tables, choice, of = _combinations(ctx, work, units, options)
    chosen, (placed, unit, _), busiest, cut = _least_busiest(tables, of, TOP_COMPUTE)
    row = of  # per combination, its table's row among those placed (-1: not placed)
    if len(chosen) < math.prod(len(t) for t in tables):
        row = np.full(math.prod(len(t) for t in tables), -1)
        row[chosen] = np.arange(len(chosen))
        row = row[of]
    ranked = []
    inside = np.flatnonzero(row >= 0)
    for c in inside[busiest[row[inside]] <= cut]:  # the least busy, in combination order
        d = row[c]
        binding = _binding_of(unit[d], placed[d], work, units)
        used = set(binding.values())
        kept = tuple((u, options[u][choice[c, k]]) for k, u in enumerate(units) if u in used)
        ranked.append((float(busiest[d]), str(kept), kept, binding))
    ranked.sort(key=lambda item: (item[0], item[1]))
    for _, _, kept, binding in ranked[:TOP_COMPUTE]:  # every binding binds exactly `work`
        candidates.setdefault((kept, tuple(binding[e] for e in work)), binding)
    edges = _edges(ctx, einsums)
    bounded = []
    for (spatial, _), binding in candidates.items():
        cycles = {u: _probe(ctx, u, r) for u, r in spatial}
        bounded.append((_busiest(work, binding, cycles), len(bounded), spatial, binding, cycles))
    ranked = _Ranked(ctx, work, edges, sorted(bounded, key=lambda c: c[:2]))
    if not ctx.acyclic and _cyclic(work, edges[0]):
        ranked.every()  # the stage scheduler fails on some candidate: as before, now
    return ranked


class _Ranked(SequenceABC):
    """A group's `TOP_COMPUTE` best compute structures, by (score, unrolling text, binding
    text), from its candidates in the order of their bound (`_busiest`, at most the score).
    As in `compute_structures`, no candidate is scheduled whose bound exceeds the
    `TOP_COMPUTE`-th score found (`every`). The first is found with fewer schedules
    (`first`): past a bound above the best score found, no candidate can be first, so it is
    the first of `every` without scheduling the rest (a group's first templates, all a
    partial grouping's slots use as a rule, are the first structure's)."""

    def __init__(self, ctx: _Context, work: list[str], edges, bounded: list):
        self.ctx, self.work, self.edges, self.bounded = ctx, work, edges, bounded
        self.plan = _stage_plan(ctx, work, edges)
        self._made: dict[int, Compute] = {}
        self._first: Compute | None = None
        self._every: list[Compute] | None = None

    def __len__(self) -> int:
        return min(TOP_COMPUTE, len(self.bounded))  # `every` stops with TOP_COMPUTE at least

    def __getitem__(self, i):
        if isinstance(i, slice) or operator.index(i) not in (0, -len(self)) or not len(self):
            return self.every()[i]
        return self.first()

    def _compute(self, k: int) -> Compute:
        if k not in self._made:
            _, _, spatial, binding, cycles = self.bounded[k]
            used = set(binding.values())
            stages, score = _score(self.ctx, self.work, binding, cycles, self.edges, self.plan)
            overlap = Overlap(self.ctx.constraints.overlap)
            pipelined = overlap is Overlap.PIPELINED and len(used) > 1
            self._made[k] = Compute(
                spatial,
                tuple((e, binding[e]) for e in self.work),
                stages if pipelined else (),
                overlap if len(used) > 1 else Overlap.SERIAL,
                score,
            )
        return self._made[k]

    @staticmethod
    def _rank(c: Compute) -> tuple:
        return (c.score, str(c.spatial), str(c.binding))

    @staticmethod
    def _before(c: Compute, other: Compute) -> bool:
        """`_rank(c) < _rank(other)`, written out as tuples compare (a first item the same
        object or equal goes on to the next): the text only on equal scores."""
        a, b = c.score, other.score
        if not (a is b or a == b):
            return a < b
        return (str(c.spatial), str(c.binding)) < (str(other.spatial), str(other.binding))

    def first(self) -> Compute:
        if self._every is not None:
            return self._every[0]
        if self._first is None:
            best = None
            for k, (bound, *_) in enumerate(self.bounded):
                if best is not None and bound > best.score * (1 + 1e-9):
                    break
                c = self._compute(k)
                if best is None or self._before(c, best):
                    best = c
            self._first = best
        return self._first

    def every(self) -> list[Compute]:
        if self._every is None:
            scores: list[float] = []  # no schedule for a hopeless one
            out = []
            for k, (bound, *_) in enumerate(self.bounded):
                if len(scores) >= TOP_COMPUTE and bound > scores[TOP_COMPUTE - 1] * (1 + 1e-9):
                    break
                out.append(self._compute(k))
                bisect.insort(scores, out[-1].score)
            out.sort(key=self._rank)
            self._every = out[:TOP_COMPUTE]
        return self._every


def _cyclic(work: list[str], forward: list[tuple[str, str]]) -> bool:
    """Whether the forward edges among `work` form a cycle (`schedule_stages` then fails)."""
    waiting = dict.fromkeys(work, 0)
    succs: dict[str, list[str]] = {e: [] for e in work}
    for p, c in forward:
        waiting[c] += 1
        succs[p].append(c)
    ready = [e for e in work if not waiting[e]]
    done = 0
    while ready:
        done += 1
        for c in succs[ready.pop()]:
            waiting[c] -= 1
            if not waiting[c]:
                ready.append(c)
    return done < len(work)


def _joined(ctx: _Context, fusion: str, parts: list[Template], varied: Template) -> Template:
    """One template of several kernels: their free factors side by side in one grid."""
    names: list[str] = []
    values: list[np.ndarray] = []
    ranks: list = []
    orders: list = []
    for part in parts:
        offset = len(names)
        names += part.names
        values += part.values
        if not offset:  # the first part's grids index the joined grid as they are
            ranks += part.ranks
        else:
            ranks += [
                (
                    key,
                    _RankGrid(
                        grid.rank,
                        grid.size,
                        grid.spatial_param + offset if grid.spatial_param >= 0 else -1,
                        grid.spatial_fixed,
                        grid.onchip_param + offset if grid.onchip_param >= 0 else -1,
                        grid.offchip,
                    ),
                )
                for key, grid in part.ranks
            ]
        orders += part.orders
    kernels = tuple(k for part in parts for k in part.mapping.kernels)
    mapping = dataclasses.replace(
        varied.mapping, name=f"{ctx.cascade.name}_partial", kernels=kernels
    )
    labels = dict(varied.structure) | {"fusion": fusion, "kernels": str(len(kernels))}
    values = _thinned(values)
    return Template(mapping, tuple(names), tuple(values), tuple(labels.items()), tuple(ranks),
                    tuple(orders), parts=tuple(parts))  # fmt: skip


def _forced_keep(ctx: _Context, einsums: list[str]) -> tuple:
    """The tensors `constraints.keep` names that a kernel of `einsums` reads or writes."""
    touched = set(einsums) | {
        access.tensor for e in einsums for access in ctx.cascade.einsum(e).operands
    }
    return tuple(
        (level, kept)
        for level, tensors in ctx.constraints.keep
        if (kept := tuple(t for t in tensors if t in touched))
    )


def _fastest(ctx: _Context, structures: list[Compute]) -> Compute:
    def cycles(c: Compute) -> float:
        ((e, unit),) = c.binding
        return _probe(ctx, unit, dict(c.spatial)[unit]).get(e, math.inf)

    return min(structures, key=cycles)


def _kernel(ctx, name, einsums, compute, loops, keep, spatial_factors) -> Kernel:
    if compute is None:
        return Kernel(name, tuple(einsums), (), ())
    stages = tuple(tuple(StageItem(e) for e in stage) for stage in compute.stages)
    units = [u.name for u in ctx.arch.units]
    # grouped by unit (stable in Einsum order), as a mapping YAML writes it: round-trips
    binding = tuple(sorted(compute.binding, key=lambda eu: units.index(eu[1])))
    return Kernel(
        name=name,
        einsums=tuple(einsums),
        binding=binding,
        spatial=compute.spatial,
        loops=tuple(loops),
        keep=tuple(keep),
        stages=stages,
        overlap=Overlap.PIPELINED if stages else compute.overlap,
        chained_ops=ctx.constraints.chained_ops,
        spatial_factors=tuple(spatial_factors),
    )


def _order_grid(
    ctx, name, einsums, compute, order, on_order, multipass, offchip, onchip, canonical
) -> tuple:  # fmt: skip
    """The free factors of one (compute, off-chip order, on-chip order) of a fused kernel:
    (names, values, ranks, orders, the kernel without keep). Every keep choice shares it:
    the grid does not depend on what the buffer keeps."""
    padded = ctx.constraints.padded
    names: list[str] = []
    values: list[np.ndarray] = []
    dims: dict[str, int] = {}
    for unit, unrolled in compute.spatial:
        for r, d in zip(unrolled, ctx.arch.unit(unit).dims, strict=True):
            dims[r] = min(dims.get(r, d), d)

    def free(key: str, choices: tuple[int, ...]) -> int:
        fixed = ctx.constraints.factor(name, key)
        names.append(f"{name}.{key}")
        values.append(_grid((fixed,) if fixed is not None else choices))
        return len(names) - 1

    grids: dict[str, _RankGrid] = {}
    for r in dict.fromkeys(r for _, unrolled in compute.spatial for r in unrolled):
        size = ctx.sizes[r]
        if r in multipass or r not in order:
            grids[r] = _RankGrid(r, size, spatial_fixed=min(size, dims[r]), offchip=False)
            pinned = ctx.constraints.factor(name, f"spatial.{r}") is not None
            if r in multipass or pinned:  # held whole by the arrays, or tiled on chip below
                index = free(f"spatial.{r}", tile_choices(size, dims[r], padded))
                grids[r] = _RankGrid(r, size, spatial_param=index, offchip=False)
            continue
        index = free(f"spatial.{r}", tile_choices(size, dims[r], padded))
        grids[r] = _RankGrid(r, size, spatial_param=index)
    loops = []
    for r in order:
        if r in multipass:
            continue
        fixed = ctx.constraints.factor(name, f"{offchip}.{r}")
        loops.append(Loop(offchip, r, fixed if fixed is not None else "rest"))
    for level in onchip:
        for r in on_order:
            if r in multipass:
                fixed = ctx.constraints.factor(name, f"{level}.{r}")
                loops.append(Loop(level, r, fixed if fixed is not None else "rest"))
                continue
            loops.append(Loop(level, r, 1))
            index = free(f"{level}.{r}", tile_choices(ctx.sizes[r], ctx.sizes[r], padded))
            grid = grids.get(r, _RankGrid(r, ctx.sizes[r]))
            if level == onchip[0]:
                grids[r] = _RankGrid(
                    r, grid.size, grid.spatial_param, grid.spatial_fixed, index, grid.offchip
                )
    values = _thinned(values)
    ranks = tuple(
        ((name, r), g)
        for r, g in grids.items()
        if g.offchip and not (ctx.constraints.factor(name, f"{offchip}.{r}"))
    )
    orders = ((name, tuple(order), tuple(on_order)),) if canonical else ()
    base = _kernel(ctx, name, einsums, compute, loops, (), ())
    return tuple(names), tuple(values), ranks, orders, base


#: The most points one template's grid may hold: a row is an int64 flat index into its
#: template's grid (candidates are numbered by (template, row) pairs), so a grid past this
#: (many long ranks, e.g. a 3D token grid's three ranks on two levels, or a partial
#: grouping's kernels side by side) is thinned by `_thinned`. At 2^48, 130 of
#: hyper_attention's 210 partial groupings were thinned at 16K, and greedy sampled a kernel
#: again for every thinning of its grid (kernels costed: hyper_attention 16K 187 -> 153,
#: flexprefill 1M 254 -> 142 at 2^62; the 136 cells none worse, linear 1M 16% better).
GRID_POINTS_LIMIT = 2**62


def _thinned(values: list[np.ndarray]) -> list[np.ndarray]:
    """The grid's value lists, every other value dropped from the longest list (its first
    and last kept: one iteration and the whole rank) until the grid holds at most
    `GRID_POINTS_LIMIT` points or only the ends are left. A documented subset: tile factors
    stay spread over the same range, only more coarsely; a grid within the limit is returned
    unchanged."""
    values = list(values)
    while math.prod(len(v) for v in values) > GRID_POINTS_LIMIT:
        i = max(range(len(values)), key=lambda j: len(values[j]))
        v = values[i]
        if len(v) <= 2:
            break  # only the ends are left: nothing more to drop
        values[i] = v[np.unique(np.r_[np.arange(0, len(v), 2), len(v) - 1])]
    return values


#: Every partition of the legal cuts when there are at most this many (2^4 = 16 groupings);
#: beyond, the partitions with at most `MAX_CUTS` cuts (three kernels): each grouping adds
#: templates and a greedy move, and 2^(n-1) partitions of a long cascade (512 for FuseMax's
#: nine legal cuts) would cost more than the search they extend. A grouping outside the
#: subset is reachable by pinning it (`constraints.fusion: [[...], ...]`).
ALL_PARTITIONS_CUTS = 4
MAX_CUTS = 2


def fusion_groups(ctx: _Context) -> list[tuple[str, list[list[str]]]]:
    """Fusion groupings: everything in one kernel, one kernel per Einsum with work (an
    Einsum without work, a reshape, joins the kernel of its first reader), and the partial
    ones: the Einsums with work in the cascade's topological order cut into contiguous fused
    groups (`partial:QK-RM|SLN-SLD|PRM-AV`) at cuts that split no recurrence (a carried read
    such as SPD's of the previous RD; such an edge crosses back over any cut between its
    ends, so a set of cuts is legal when each of its cuts is): every set of legal cuts when
    there are at most `ALL_PARTITIONS_CUTS`, else every set of at most `MAX_CUTS`. Or the
    grouping `constraints.fusion` pins. Groupings that put two Einsums
    `constraints.forbid_fusion` names in one kernel, or split a `constraints.require_fusion`
    group, are left out."""
    names = [e.output for e in ctx.cascade.einsums]
    pinned = ctx.constraints.fusion
    if isinstance(pinned, tuple):
        return [("pinned", _pinned_grouping(ctx, names, pinned))]
    out = _whole_groupings(ctx, names)
    order = [e for e in ctx.cascade.order if e in ctx.work]
    if pinned in (None, "partial"):
        for cuts in _cut_sets(ctx, order):
            bounds = (0, *cuts, len(order))
            groups = [order[a:b] for a, b in itertools.pairwise(bounds)]
            if all(len(g) == 1 for g in groups):
                continue  # that is `unfused`
            label = "partial:" + "|".join(
                g[0] if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups
            )
            out.append((label, _with_reshapes(ctx, names, groups)))
    return [(label, groups) for label, groups in out if not _forbidden(ctx, groups)]


def _cut_sets(ctx: _Context, order: list[str]) -> list[tuple[int, ...]]:
    """Sets of cut positions (a cut at c: order[:c] | order[c:]) that split no recurrence
    and no `constraints.require_fusion` group (see `fusion_groups` for which sets)."""
    position = {e: i for i, e in enumerate(order)}
    legal = []
    for c in range(1, len(order)):
        if _backward(ctx, [order[:c], order[c:]]):
            continue  # the cut splits a recurrence (SPD reads the RD of the last M1)
        split = any(
            min(at) < c <= max(at)
            for group in ctx.constraints.require_fusion
            if len(at := [position[e] for e in group if e in position]) > 1
        )
        if not split:
            legal.append(c)
    most = len(legal) if len(legal) <= ALL_PARTITIONS_CUTS else MAX_CUTS
    return [cuts for k in range(1, most + 1) for cuts in itertools.combinations(legal, k)]


def _forbidden(ctx: _Context, groups: list[list[str]]) -> bool:
    """Whether the groups put two Einsums `forbid_fusion` names in one kernel, or split a
    `require_fusion` group over several."""
    apart = any(
        sum(e in group for e in names) > 1
        for names in ctx.constraints.forbid_fusion
        for group in groups
    )
    split = any(
        sum(any(e in group for e in names) for group in groups) > 1
        for names in ctx.constraints.require_fusion
    )
    return apart or split


def _with_reshapes(ctx: _Context, names: list[str], groups: list[list[str]]) -> list[list[str]]:
    """Groups of Einsums with work, each Einsum without work joining its first reader's
    group: the first of its readers in a group or joined already (`_reshape_anchors`), the
    first group where none; each group in the order of `names`."""
    home = {e: i for i, g in enumerate(groups) for e in g}
    joined = [list(g) for g in groups]
    for e, anchor in _reshape_anchors(ctx, tuple(names), frozenset(home)):
        joined[home[anchor] if anchor is not None else 0].append(e)
    position = _positions(ctx, tuple(names))
    return [sorted(g, key=position.__getitem__) for g in joined]


def _reshape_anchors(ctx: _Context, names: tuple, grouped: frozenset) -> list[tuple]:
    """(Einsum, the grouped Einsum whose group it joins, or None) of each Einsum of `names`
    not in `grouped`, latest first: its first reader that is grouped or joined before it
    (readers come later, so the latest is placed first), that reader's anchor where it was
    joined. Which reader that is does not depend on how `grouped` is cut into groups:
    worked out once per space (a space builds every partial grouping's groups)."""
    key = ("reshape anchors", names, grouped)
    found = ctx.memo.get(key)
    if found is None:
        anchor: dict[str, str | None] = {e: e for e in grouped}
        found = []
        for e in reversed(names):
            if e in anchor:
                continue
            reader = next((r for r in ctx.readers[e] if r in anchor), None)
            anchor[e] = anchor[reader] if reader is not None else None
            found.append((e, anchor[e]))
        ctx.memo[key] = found
    return found


def _positions(ctx: _Context, names: tuple) -> dict[str, int]:
    """Each Einsum's place in `names`, worked out once per space."""
    key = ("positions", names)
    found = ctx.memo.get(key)
    if found is None:
        found = ctx.memo[key] = {e: i for i, e in enumerate(names)}
    return found


def _pinned_grouping(ctx: _Context, names: list[str], pinned) -> list[list[str]]:
    """`constraints.fusion` as groups: every Einsum with work in exactly one, kernels in
    dependency order (no kernel reads what a later one writes)."""
    given = [e for g in pinned for e in g]
    unknown = [e for e in given if e not in names]
    missing = [e for e in ctx.work if e not in given]
    if unknown or missing:
        raise SpecError(
            "constraints.fusion: "
            + (f"unknown Einsum(s) {', '.join(unknown)}; " if unknown else "")
            + (f"Einsum(s) {', '.join(missing)} in no group; " if missing else "")
            + f"Einsums: {', '.join(names)}"
        )
    groups = sorted((list(g) for g in pinned), key=lambda g: min(map(ctx.cascade.order.index, g)))
    backward = _backward(ctx, groups)
    if backward:
        reader, e = backward
        raise SpecError(
            f"constraints.fusion: {reader} reads {e} but its group runs first; "
            "groups must follow the dependency graph"
        )
    return _with_reshapes(ctx, names, [[e for e in g if e in ctx.work] or g for g in groups])


def _backward(ctx: _Context, groups: list[list[str]]) -> tuple[str, str] | None:
    """(reader, tensor) where a kernel reads what a later kernel writes, carried reads (a
    recurrence such as RD into SPD) included; None when the groups follow the graph."""
    kernel_of = {e: i for i, g in enumerate(groups) for e in g}
    for e, i in kernel_of.items():
        for reader in ctx.successors[e]:
            if reader in kernel_of and kernel_of[reader] < i:
                return reader, e
    return None


def _whole_groupings(ctx: _Context, names: list[str]) -> list[tuple[str, list[list[str]]]]:
    out = []
    if ctx.constraints.fusion in (None, "fused"):
        out.append(("fused", [names]))
    work = [e for e in names if e in ctx.work]
    if ctx.constraints.fusion in (None, "unfused") and len(work) > 1:
        groups = {e: [e] for e in work}
        for e in names:
            if e in ctx.work:
                continue
            target = next((r for r in ctx.readers[e] if r in ctx.work), work[0])
            groups[target].insert(0, e)
        out.append(("unfused", [groups[e] for e in work]))
    return out


def build_space(
    cascade: Cascade,
    arch: Architecture,
    shape: MappingABC[str, int],
    constraints: Constraints | None = None,
) -> MapSpace:
    """The map space of `cascade` on `arch` at `shape` (see the module docstring).

    Spaces are cached per (cascade, arch, shape items in order, constraints): all frozen
    values, so a repeated search (a sweep, a test, the dashboard) does not rebuild its space.
    A space is read-only; its grids are read-only arrays.

    Raises:
        SpecError: an Einsum no unit can run (naming the missing operators per unit), or
            constraints that contradict each other or the cascade.
    """
    constraints = constraints or Constraints()
    items = tuple(shape.items())  # in order: the batch ranks' order is the mapping's
    try:
        hash(items)
    except TypeError:  # a malformed shape: built uncached, so that it fails with its reason
        return _build_space(cascade, arch, items, constraints)
    return _cached_space(cascade, arch, items, constraints)


@functools.lru_cache(maxsize=32)
def _cached_space(cascade, arch, items, constraints) -> MapSpace:
    return _build_space(cascade, arch, items, constraints)


def _build_space(
    cascade: Cascade, arch: Architecture, items: tuple, constraints: Constraints
) -> MapSpace:
    shape = dict(items)
    ctx = _context(cascade, arch, shape, constraints)
    blocks = [_grouping_block(ctx, fusion, groups) for fusion, groups in fusion_groups(ctx)]
    templates = Templates(blocks)
    if constraints.factors:  # a template must have a loop for every pinned factor: build all
        every = list(templates)
        honoured = [t for t in every if _pinned_keys_present(t, constraints)]
        if every and not honoured:
            keys = sorted(
                {f"{lp.level}.{lp.rank}" for t in every for k in t.mapping.kernels
                 for lp in k.loops}
                | {f"spatial.{r}" for t in every for k in t.mapping.kernels
                   for _, ranks in k.spatial for r in ranks}
            )  # fmt: skip
            pinned = ", ".join(key for key, _ in constraints.factors)
            raise SpecError(
                f"constraints.factors: no mapping of {cascade.name} on {arch.name} has a loop "
                f"for every pinned factor ({pinned}); loops in its space: {', '.join(keys)}"
            )
        by_fusion: dict[str, list[Template]] = {}
        for t in honoured:
            by_fusion.setdefault(dict(t.structure)["fusion"], []).append(t)
        templates = Templates([_listed(f, ts) for f, ts in by_fusion.items()])
    if isinstance(constraints.fusion, tuple) and all(t.absent for t in templates):
        templates = Templates([])  # the one pinned grouping cannot be scheduled
    if not len(templates):
        raise SpecError(f"constraints leave no mapping of {cascade.name} on {arch.name}")
    return MapSpace(cascade, arch, dict(shape), constraints, templates)


def _grouping_block(ctx: _Context, fusion: str, groups: list[list[str]]) -> _Block:
    """The templates of one fusion grouping, as a block of `Templates`. A fused kernel's
    compute structures and memory choices are worked out now (they number its templates,
    and a constraint they break fails here); a partial grouping's groups wait for a
    strategy to ask for one of its templates."""
    if len(groups) == 1:
        (einsums,) = groups
        kernel = _FusedKernel(ctx, fusion, "fused", einsums, _structures(ctx, einsums))
        return _Block(fusion, kernel.count, kernel.template, kernel.structure, kernel.factorized)
    if fusion.startswith("partial") or fusion == "pinned":
        grouping = _PartialGrouping(ctx, fusion, groups)
        shared = (("fusion", fusion), ("kernels", str(len(groups))))
        return _Block(fusion, grouping.count, grouping.template, grouping.structure, None, shared)
    return _listed(fusion, [_unfused_template(ctx, fusion, groups)])
