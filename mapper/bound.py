"""A lower bound on a search's objective over the whole map space, and the certificate.

Every mapping the simulator costs (`simulator.spatial.cost`) takes at least

    latency >= max(compute, traffic / DRAM bandwidth) / clock
    compute  = max(largest Einsum, least busiest-unit load, work only one unit can do)
    energy  >= sum of Einsums' least compute energy + traffic x DRAM pJ/byte + leakage

where an Einsum's cycles on a unit are its op counts (the points its mask keeps:
`einsum_op_counts` through `occupancy`) x the unit's cycles per op, pipelined operator
groups (`chained_ops`) at the pace of the slowest, over the most lanes it can keep busy
(Timeloop's compute model, FuseMax Section 6: a mapping can only lose lanes to padding or
folding): each dimension d of the unit unrolls one of the Einsum's ranks, of size s, by a
factor f <= d, so (`_most_lanes`)

    lanes <= max over one-to-one placements of ranks on dimensions of prod s / ceil(s / d)

(FQ[e,p] of linear attention with E=64: 64 x 256 of the 256 x 256 array), the ranks a
recurrence carries left out for its Einsums (`_scanned_ranks`: titans' MEM[m+1] and the
Einsums in its dependency cycle step through M one m at a time: E x F lanes), and a filter
that reads a tensor (a data-dependent selection: MoBA's, landmark's or a router's top-k,
priced by a declared density) counts the points of its static conjuncts
instead (`_busy_counts`): the model cannot know which tiles the selection empties, so it
computes every tile the static part keeps whole (`einsum.occupancy`), and at the finest
tiles that is the static part's points,

    busy(F) = dense(F) x share(static part of F's filter) >= points(static part of F),

not the density's share of them (landmark at 1M: causal m <= p, 1,600x the 320 keys a
query keeps). Each Einsum takes the fastest unit the space may bind it to: the pinned
one, else those with all its operators, else those that lower the missing ones
(`simulator/lowering.py`). Units overlap at best perfectly, so the busiest unit carries at
least every Einsum only it supports and, on two units, the least busiest load of any split
of the Einsums' work between them (`_two_unit_makespan`: an Einsum cheap on the 2D array
but slow on the 1D unit cannot count as the 1D unit's spare time); on more units, the mean
of the fastest.

Traffic is the least DRAM traffic of any mapping: each output of the cascade written once,
each input read once. An input that only masked Einsums read may be fetched in part (a
mapping that skips empty tiles fetches only the tiles they touch); it is counted by the
projection bound: a consumer keeping a fraction f of its points touches at least f of the
input (|S| <= |proj(S)| x the other ranks' extent), taken where the input's indices are
plain variables. An Einsum without a mask in a masked cascade may skip tiles too (the
kernel's empty tiles): it computes at least the least kept fraction of the masked Einsums
it shares a rank with (`_least_busy_fraction`: a projection bound).

Passes (FuseMax Section 4, `einsum.pass_analysis`): a rank r the cascade traverses k > 1
times needs its state between passes (at least one row over r: size(r) words) somewhere.
When neither an array dimension holds r whole (registers) nor the largest on-chip level
holds size(r) words, no mapping keeps it: every pass after the first moves at least the
cheaper of re-reading the inputs over r (each input with r, or with the partitioned rank r
is a part of, once more) and spilling an intermediate over r (written and read back, the
smallest such tensor), per extra pass. Where the state fits (FuseMax's M0 on its 256-wide
arrays, a row of QK in the 16 MiB buffer), passes add nothing: a mapping holds the pass's
intermediate instead of re-reading the input.

Rows held between passes: where such a rank r is longer than every array dimension but
its rows fit, a mapping either fuses the whole cascade into one kernel, which keeps each
intermediate over r that another Einsum reads in the on-chip buffer with r whole
(`mapper.space`'s rule for an executable kernel), so a spatial factor f_q of another rank
q widens every such tile over q (`_held_rows`, `_held_lanes`):

    sum over kept X of prod over X's ranks (size if multi-pass, else f_q) <= on-chip words,

which caps the lanes of each Einsum; or it runs several kernels in an order the
dependency graph allows, so the Einsums of the first kernels form a down-closed set U and
every intermediate of U read outside U goes through DRAM, written and read back (written,
in a masked cascade; `_least_cut_bytes`, the least over every such U). So

    latency >= min(max(compute with capped lanes, traffic),
                   max(compute, traffic - passes' bytes + max(passes' bytes, least cut)))

(naive softmax at B=64, H=12, L=64K: 16 MiB hold 128 rows of M, 42 per kept tensor; the
bound goes from the 1D unit's divisions, 13.7 s, to 29.3 s). Buffer accesses and
fill/drain add only cost.

    >>> import einsim
    >>> from einsim.simulator import load_architecture
    >>> bound = lower_bound(einsim.cascade("gemm"), load_architecture("fusemax_cloud"),
    ...                     {"M": 256, "N": 256, "K": 256})
    >>> bound.traffic_bytes == 3 * 256 * 256 * 2
    True
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

import networkx as nx
import numpy as np

from einsim.einsum import Cascade, pass_analysis
from einsim.einsum.analysis import _per_point_ops
from einsim.einsum.ir import Access, Var, accesses, rank_of, walk
from einsim.einsum.occupancy import occupancy
from einsim.simulator import Architecture, ComputeUnit
from einsim.simulator.shape import DEFAULT_BATCH, split_shape
from einsim.simulator.spatial.cost import _op_counts


@dataclass(frozen=True, slots=True)
class LowerBound:
    """The least latency and energy any mapping in the space can take (see module doc).

    Attributes:
        compute_cycles: the compute term; memory_cycles: traffic / DRAM bytes per cycle.
        traffic_bytes: the least DRAM traffic.
        latency_s, energy_pj: the bounds; compute_energy_pj, dram_energy_pj: its parts.
        passes: the most passes the pass analysis requires over any rank (reported).
    """

    compute_cycles: float
    memory_cycles: float
    traffic_bytes: float
    latency_s: float
    energy_pj: float
    compute_energy_pj: float
    dram_energy_pj: float
    passes: int

    def objective(self, objective: str, area_mm2: float = 0.0) -> float:
        """The bound on `objective` (as `mapper.objectives.objective_values`)."""
        from .objectives import objective_values

        return float(objective_values(objective, self.latency_s, self.energy_pj, area_mm2))


def _cycles_per_einsum(unit: ComputeUnit, counts: dict, chained) -> float:
    """count x cycles per op, each chained group at the pace of its slowest operator."""
    per_op = {op: count * unit.cost(op).cycles for op, count in counts.items()}
    total = sum(per_op.values())
    for group in chained:
        inside = [per_op[op] for op in per_op if op.value in group]
        if len(inside) > 1:
            total -= sum(inside) - max(inside)
    return total


def _runs(unit: ComputeUnit, op) -> bool:
    """The unit has `op` or lowers it (`ComputeUnit.runs`, where this einsim has it)."""
    runs = getattr(unit, "runs", None)
    return runs(op) if runs is not None else unit.supports(op)


def _chained_values(chained_ops) -> tuple[frozenset, ...]:
    return tuple(frozenset(getattr(op, "value", op) for op in group) for group in chained_ops)


def lower_bound(
    cascade: Cascade,
    arch: Architecture,
    shape: MappingABC[str, int],
    chained_ops=(),
    binding=(),
    spatial=(),
) -> LowerBound:
    """The least latency and energy of any mapping of `cascade` on `arch` at `shape`.

    Args:
        cascade, arch, shape: as `mapper.search`.
        chained_ops: operator groups the PEs pipeline (`Constraints.chained_ops`).
        binding: (Einsum, unit) pairs the space pins (`Constraints.binding`).
        spatial: (unit, ranks) the space pins (`Constraints.spatial`): a pinned rank counts
            as unrolled even where a recurrence carries it (`_scanned_ranks`).

    Returns:
        A `LowerBound`; `.objective(name)` for a search's objective.
    """
    split = split_shape(cascade, DEFAULT_BATCH, shape)
    sizes = {k: int(v) for k, v in split.sizes.items()}
    batch = float(split.multiplier)
    key = tuple(sizes.items())
    chained = _chained_values(chained_ops)
    masked = any(e.where is not None for e in cascade.einsums)
    capable = [u for u in arch.units if u.ops]
    energy = 0.0
    kept_fraction: dict[str, float] = {}
    op_counts: dict[str, dict] = {}
    for einsum in cascade.einsums:
        counts, dense = _busy_counts(cascade, einsum.output, key)
        kept = op_counts[einsum.output] = {op: float(n) for op, n in counts.items() if n}
        whole = sum(float(n) for n in dense.values())
        kept_fraction[einsum.output] = sum(kept.values()) / whole if whole else 0.0
    work: list[tuple[frozenset, list[tuple[ComputeUnit, float]]]] = []  # ranks, (unit, ops)
    pinned_ranks = {r for _, ranks in spatial for r in ranks}
    scanned = {e: ranks - pinned_ranks for e, ranks in _scanned_ranks(cascade).items()}
    for einsum in cascade.einsums:
        counts = op_counts[einsum.output]
        if masked and einsum.where is None:  # the kernel's empty tiles may skip part of it
            least = _least_busy_fraction(cascade, einsum, kept_fraction)
            counts = {op: n * least for op, n in counts.items() if n * least}
        if not counts:
            continue
        # the units the space binds it to (`mapper.space._context`): the pinned one, else
        # those with every operator, else those that lower the missing ones
        pinned = dict(binding).get(einsum.output)
        units = [u for u in capable if u.name == pinned]
        units = units or [u for u in capable if all(u.supports(op) for op in counts)]
        units = units or [u for u in capable if all(_runs(u, op) for op in counts)]
        if not units:
            continue  # no mapping exists; the search says why
        ranks = frozenset(rank_of(v) for v in einsum.iter_vars) - scanned.get(einsum.output, set())
        work.append((ranks, [(u, _cycles_per_einsum(u, counts, chained) * batch) for u in units]))
        energy += batch * min(
            sum(n * u.cost(op).energy_pj for op, n in counts.items()) for u in units
        )
    compute = _compute_cycles(capable, work, lambda u, ranks: _most_lanes(u.dims, ranks, key))
    traffic = 0.0
    word = arch.word_bytes
    for tensor in cascade.outputs:
        traffic += math.prod(sizes[r] for r in cascade.tensor_ranks[tensor]) * batch * word
    for tensor in cascade.input_names:
        elements = math.prod(sizes[r] for r in cascade.tensor_ranks[tensor]) * batch
        traffic += elements * word * _read_fraction(cascade, tensor, masked, kept_fraction)
    extra_passes = _extra_pass_bytes(cascade, arch, sizes, batch)
    traffic += extra_passes
    dram = arch.levels[0]
    memory = traffic / dram.bandwidth_bytes_per_cycle
    # the Einsums with operators (`mapper.space`'s work: a masked-out one counts too)
    with_work = {e.output for e in cascade.einsums if _op_counts(cascade, e.output, key)[0]}
    held = _held_rows(cascade, arch, sizes, with_work)
    if held is not None and max(compute, memory) > 0:
        # one kernel holds every pass's rows on chip, or a cut sends a tensor through DRAM
        fused = _compute_cycles(
            capable, work, lambda u, ranks: _held_lanes(u.dims, ranks, key, held)
        )
        cut = _least_cut_bytes(cascade, sizes, batch, word, masked)
        # a spill counted by the passes' term may be the cut's tensor: the larger, not both
        through = (traffic - extra_passes + max(extra_passes, cut)) / dram.bandwidth_bytes_per_cycle
        if max(fused, memory) <= max(compute, through):
            compute = fused
        else:
            memory = through
    latency_s = max(compute, memory) / arch.clock_hz
    dram_pj = traffic * (dram.read_pj_per_byte + dram.write_pj_per_byte) / 2
    leakage_pj = arch.leakage_w * latency_s * 1e12
    return LowerBound(
        compute_cycles=compute,
        memory_cycles=memory,
        traffic_bytes=traffic,
        latency_s=latency_s,
        energy_pj=energy + dram_pj + leakage_pj,
        compute_energy_pj=energy,
        dram_energy_pj=dram_pj,
        passes=max(pass_analysis(cascade).values(), default=1),
    )


@functools.lru_cache(maxsize=64)
def _scanned_ranks(cascade: Cascade) -> dict[str, frozenset]:
    """The ranks each Einsum of a recurrence may not unroll: an Einsum carried over a rank
    (MEM[m+1,f,e] = ... MEM[m,f,e]: its iterative rank M) and every Einsum in a cycle of
    the dependency graph with it (titans' PRED, ERR, UPD read MEM[m] and feed MEM[m+1]) run
    one step of the rank after another, so no array dimension holds two of its steps."""
    names = [e.output for e in cascade.einsums]
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from((a, b) for a in names for b in cascade.graph.successors(a) if b in graph)
    out: dict[str, frozenset] = {}
    for component in nx.strongly_connected_components(graph):
        carried = frozenset(
            rank_of(e.iterative_var)
            for e in cascade.einsums
            if e.output in component and e.iterative_var is not None
        )
        if carried:
            out |= dict.fromkeys(component, carried)
    return out


def _compute_cycles(capable, work, lanes_of) -> float:
    """max(largest Einsum, least busiest-unit load, work only one unit can do) (module doc):
    `work` holds each Einsum's (ranks, [(unit, cycles x batch on one lane)]), divided by
    `lanes_of(unit, ranks)` (0: the unit cannot run it there)."""
    fastest: list[float] = []
    per_unit: list[list[float]] = []  # each Einsum's cycles on each capable unit (inf: not)
    only: dict[str, float] = {u.name: 0.0 for u in capable}
    for ranks, options in work:
        cycles = {}
        for unit, one_lane in options:
            lanes = lanes_of(unit, ranks)
            cycles[unit.name] = one_lane / lanes if lanes else math.inf
        fastest.append(min(cycles.values()))
        per_unit.append([cycles.get(u.name, math.inf) for u in capable])
        if len(options) == 1:
            only[options[0][0].name] += fastest[-1]
    if len(capable) == 2:
        shared = _two_unit_makespan(per_unit)
    else:
        shared = sum(fastest) / max(len(capable), 1)
    return max([max(fastest, default=0.0), shared, *only.values()])


@dataclass(frozen=True, slots=True)
class _Held:
    """What one kernel fusing a whole multi-pass cascade keeps on chip (`_held_rows`): the
    on-chip words, and per kept tensor its ranks with the size of each multi-pass rank (held
    whole) or None (at least its spatial factor)."""

    words: float
    tensors: tuple[tuple[tuple[str, int | None], ...], ...]


def _held_rows(cascade: Cascade, arch: Architecture, sizes, work: set[str]) -> _Held | None:
    """The tensors one fused kernel of the whole cascade keeps on chip: in a kernel fusing
    several Einsums with work, a rank r traversed more than once that no unit dimension
    holds whole (size > the widest) is never tiled off chip and each intermediate over r
    another Einsum reads stays in the on-chip buffer, r whole (`mapper.space`'s rule: what
    makes the kernel executable). None when no rank needs it (or a level is unbounded)."""
    if len(work) < 2 or any(lv.capacity_bytes is None for lv in arch.levels[1:]):
        return None
    widest = max((d for u in arch.units for d in u.dims), default=0)
    passes = pass_analysis(cascade)
    multi = {r for r, n in passes.items() if n > 1 and r in sizes and sizes[r] > widest}
    if not multi:
        return None
    tensors = []
    for name in work:
        ranks = cascade.tensor_ranks[name]
        readers = set(cascade.graph.successors(name)) - {name}
        if multi & set(ranks) and readers:
            tensors.append(tuple((r, int(sizes[r]) if r in multi else None) for r in ranks))
    if not tensors:
        return None
    words = sum(lv.capacity_bytes for lv in arch.levels[1:]) / arch.word_bytes
    return _Held(words, tuple(sorted(tensors)))


@functools.lru_cache(maxsize=1024)
def _held_lanes(dims: tuple[int, ...], ranks: frozenset, sizes: tuple, held: _Held) -> float:
    """`_most_lanes` of an Einsum in the one kernel of `held`: a spatial factor f of rank q
    makes the tile of each kept tensor over q at least f wide, so the placements count only
    where the kept tiles fit on chip,

        sum over kept X of prod over X's ranks (size if multi-pass, else spatial factor)
            <= on-chip words,

    the ranks the Einsum does not unroll at factor 1 (0 when even that overflows).

    Example: naive softmax at M=65536 keeps QK, SN and A over (m, p) whole over m in 16 MiB
    (8 Mi words): 3 x 65536 x f_P <= 8 Mi words, so f_P <= 42 and SN[m,p] keeps at most
    256 x 42 lanes of the 2D array busy (less 42's padding of P: 65536 / 1561 per lane).
        >>> held = _Held(8 * 2**20, 3 * ((("M", 65536), ("P", None)),))
        >>> sizes = (("M", 65536), ("P", 65536))
        >>> round(_held_lanes((256, 256), frozenset({"M", "P"}), sizes, held))
        10748
    """
    extents = dict(sizes)
    best = 0.0
    names = sorted(ranks)
    for placed in itertools.permutations([*names, *[None] * len(dims)], len(dims)):
        # open grids (one axis each): the products below broadcast to the full grid only
        # at their last factor, each element the same floats as on a full meshgrid
        grids = np.meshgrid(
            *[
                np.arange(1, (min(d, extents[r]) if r else 1) + 1)
                for r, d in zip(placed, dims, strict=True)
            ],
            indexing="ij",
            sparse=True,
        )
        shape = np.broadcast_shapes(*(g.shape for g in grids))  # the full grid's
        factor = {r: g for r, g in zip(placed, grids, strict=True) if r is not None}
        need = sum(
            math.prod(size if size is not None else factor.get(r, 1) for r, size in tensor)
            for tensor in held.tensors
        )
        lanes = math.prod(
            extents[r] / np.ceil(extents[r] / g) for r, g in factor.items()
        ) * np.ones(shape, dtype=float)
        fits = np.broadcast_to(need <= held.words, lanes.shape)
        if fits.any():
            best = max(best, float(lanes[fits].max()))
    return best


def _least_cut_bytes(cascade: Cascade, sizes, batch: float, word: int, masked: bool) -> float:
    """The least DRAM traffic a mapping of several kernels adds: the kernels run in an order
    the dependency graph allows, so the Einsums of the first k kernels form a down-closed
    set U (a recurrence, RD and SPD, whole), and every intermediate U produces that an
    Einsum outside U reads is written out and read back (`simulator.spatial.cost`: the
    tensors crossing kernels go through DRAM); in a masked cascade only the write counts (a
    reader may skip tiles). The least over every proper U (0 past `_MAX_IDEALS` of them),
    all at once over `_cuts`' table.
    """
    cuts = _cuts(cascade)
    if cuts is None or not len(cuts.inside):
        return 0.0
    per_element = word * (1 if masked else 2)
    tensor_bytes = [
        0.0 if ranks is None else math.prod(sizes[r] for r in ranks) * batch * per_element
        for ranks in cuts.ranks
    ]
    crossing = cuts.inside & cuts.read_outside
    if all(b.is_integer() for b in tensor_bytes) and sum(tensor_bytes) < 2**62:
        least = int((crossing.astype(np.int64) @ np.array(tensor_bytes, dtype=np.int64)).min())
        if least < 2**53:  # every partial sum of its terms is exact, in any order
            return float(least)
    rows = (sum(b for b, c in zip(tensor_bytes, row, strict=True) if c) for row in crossing)
    return float(min(rows))


@dataclass(frozen=True, eq=False)
class _Cuts:
    """`_least_cut_bytes`' view of a cascade's structure, sizes aside: per proper down-closed
    set U of Einsums (rows) and Einsum (columns), whether it is in U (`inside`) and whether
    an Einsum outside U reads it (`read_outside`); per Einsum, its tensor's ranks, or None
    for an output of the cascade (written anyway: no cut adds it) or a tensor nobody reads."""

    inside: np.ndarray
    read_outside: np.ndarray
    ranks: tuple[tuple[str, ...] | None, ...]


@functools.lru_cache(maxsize=64)
def _cuts(cascade: Cascade) -> _Cuts | None:
    """The down-closed sets of the dependency graph's condensation (a cycle's Einsums
    together), built one node at a time in topological order (each set so far, and it with
    the node where the node's predecessors are all in); None past `_MAX_IDEALS` sets."""
    names = [e.output for e in cascade.einsums]
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    graph.add_edges_from(
        (a, b) for a in names for b in cascade.graph.successors(a) if b in graph and a != b
    )
    dag = nx.condensation(graph)
    order = list(nx.topological_sort(dag))
    position = {node: k for k, node in enumerate(order)}
    chosen = np.zeros((1, len(order)), dtype=bool)
    for k, node in enumerate(order):
        preds = [position[p] for p in dag.predecessors(node)]
        grown = chosen[chosen[:, preds].all(axis=1)]  # a copy
        grown[:, k] = True
        chosen = np.concatenate([chosen, grown])
        if len(chosen) > _MAX_IDEALS:
            return None
    proper = chosen[chosen.any(axis=1) & ~chosen.all(axis=1)]
    node_of = {n: position[c] for c, ms in dag.nodes(data="members") for n in ms}
    inside = proper[:, [node_of[n] for n in names]]
    column = {n: j for j, n in enumerate(names)}
    readers = np.zeros((len(names), len(names)), dtype=np.int64)  # (reader, tensor)
    elsewhere = np.zeros(len(names), dtype=bool)  # read by a node that is no Einsum
    for j, n in enumerate(names):
        for r in cascade.graph.successors(n):
            if r in column:
                readers[column[r], j] = 1
            else:
                elsewhere[j] = True
    read_outside = ((~inside).astype(np.int64) @ readers > 0) | elsewhere
    outputs = set(cascade.outputs)
    ranks = tuple(
        None
        if n in outputs or not (readers[:, j].any() or elsewhere[j])
        else tuple(cascade.tensor_ranks[n])
        for j, n in enumerate(names)
    )
    return _Cuts(inside, read_outside, ranks)


_MAX_IDEALS = 1 << 14  # down-closed sets of Einsums `_least_cut_bytes` looks at, at most


@functools.lru_cache(maxsize=256)
def _busy_counts(cascade: Cascade, name: str, sizes: tuple) -> tuple[dict, dict]:
    """(op counts of the least work any mapping computes, dense op counts) of one Einsum:
    the kept points (`_op_counts`), but for a filter that reads a tensor (a data-dependent
    selection priced by a declared density) the points of its static part: the model
    cannot know which tile the selection empties, so a tile its static conjuncts keep is
    computed whole (`einsum.occupancy._totals`) and the least busy work is the static kept
    points (each point its own tile), not the density's share of them."""
    counts, dense = _op_counts(cascade, name, sizes)
    einsum = cascade.einsum(name)
    if einsum.where is None or not any(isinstance(e, Access) for e in walk(einsum.where)):
        return counts, dense
    found = occupancy(cascade, dict(sizes), {}, [name], density=1.0)[name]
    return _per_point_ops(einsum, int(found.points[0])), dense


@functools.lru_cache(maxsize=1024)
def _most_lanes(dims: tuple[int, ...], ranks: frozenset, sizes: tuple) -> float:
    """The most lanes of a unit with `dims` an Einsum iterating `ranks` keeps busy: each
    dimension unrolls one of its ranks r (the model multiplies the spatial factors of the
    Einsum's ranks on the unit), by a factor f <= the dimension d, with the padding
    ceil(s/f) f / s of a rank of size s: cycles per lane-op >= prod ceil(s/d) / s, so

        lanes <= max over one-to-one placements of ranks on dimensions of prod s / ceil(s/d).

    Example: E=64 on a 256-row dimension holds 64 lanes; FQ[e,p] of linear attention keeps
    at most 64 x 256 of the 256 x 256 array busy.
        >>> _most_lanes((256, 256), frozenset({"E", "P"}), (("E", 64), ("P", 4096)))
        16384.0
    """
    extents = dict(sizes)
    held = {r: [s / math.ceil(s / d) for d in dims] for r in ranks if (s := int(extents[r]))}
    best = 1.0
    for placed in itertools.permutations([*held, *[None] * len(dims)], len(dims)):
        lanes = math.prod(held[r][i] for i, r in enumerate(placed) if r is not None)
        best = max(best, lanes)
    return best


def _least_busy_fraction(cascade: Cascade, einsum, kept_fraction: dict[str, float]) -> float:
    """The least share of an unfiltered Einsum U's points any mapping computes: a tile of U is
    skipped only where no filtered Einsum F fused with it keeps a point in the tile's
    projection onto the ranks they share (`einsum.occupancy`), so at the finest tiles U
    computes |proj(kept F)| x the extent of its other ranks, and |proj(kept F)| >= |kept F|
    / the extent of F's other ranks: a share of at least F's kept fraction. The least over
    the filtered Einsums U shares a rank with (a mapping fuses U with any of them, or none:
    then U computes every point)."""
    ranks = {rank_of(v) for v in einsum.iter_vars}
    shares = [
        kept_fraction[f.output]
        for f in cascade.einsums
        if f.where is not None and ranks & {rank_of(v) for v in f.iter_vars}
    ]
    return min(shares, default=1.0)


def _two_unit_makespan(per_unit: list[list[float]]) -> float:
    """The least busiest-unit load of two units when each Einsum's work may be split between
    them at will: the LP relaxation of scheduling unrelated machines (R2||Cmax), a bound on
    every binding (each binds an Einsum to one unit). Its optimum puts the Einsums in
    order of w1/w2 (relatively cheapest on unit 1 first), a prefix on unit 1 and the rest
    on unit 2, one Einsum split where the loads meet (exchange argument; Lenstra, Shmoys &
    Tardos, Math. Prog. 1990, for the LP). `per_unit`: [w1, w2] per Einsum, inf where a
    unit cannot run it.

    Example: two Einsums of 4 cycles on either unit share the units: 4 each.
        >>> _two_unit_makespan([[4.0, 4.0], [4.0, 4.0]])
        4.0
    """
    if not per_unit:
        return 0.0
    order = sorted(per_unit, key=lambda w: 0.0 if math.isinf(w[1]) else w[0] / w[1])
    first = [w[0] for w in order]
    second = [w[1] for w in order]
    before = [0.0, *itertools.accumulate(first)]  # before[k]: Einsums ..k-1 on unit 1
    after = [*reversed([*itertools.accumulate(reversed(second))]), 0.0]  # after[k]: k.. on 2
    best = math.inf
    for k, (w1, w2) in enumerate(zip(first, second, strict=True)):
        load1, load2 = before[k], after[k + 1]
        if math.isinf(w2):
            share = 1.0
        elif math.isinf(w1):
            share = 0.0
        else:  # the share of Einsum k on unit 1 that balances the loads
            share = min(1.0, max(0.0, (load2 + w2 - load1) / (w1 + w2)))
        one = load1 + share * w1 if share else load1
        two = load2 + (1 - share) * w2 if share < 1 else load2
        best = min(best, max(one, two))
    return best


def _extra_pass_bytes(cascade: Cascade, arch: Architecture, sizes, batch: float) -> float:
    """Least DRAM bytes the passes add (module doc): over the ranks whose between-pass state
    fits neither an array dimension nor the largest on-chip level, the most any one rank
    forces (the ranks' extra traffic may be shared, so not their sum)."""
    capacity = max((lv.capacity_bytes or 0.0 for lv in arch.levels[1:]), default=0.0)
    if any(lv.capacity_bytes is None for lv in arch.levels[1:]):
        return 0.0  # an unbounded level holds any state
    widest = max((d for u in arch.units for d in u.dims), default=0)
    word = arch.word_bytes
    most = 0.0
    for rank, count in pass_analysis(cascade).items():
        if count <= 1 or rank not in sizes:
            continue
        size = sizes[rank]
        if size <= widest or size * word <= capacity:
            continue
        part = cascade.partition_of.get(rank)
        names = {rank} | ({part.rank} if part is not None else set())

        def elements(tensor: str) -> float:
            return math.prod(sizes[r] for r in cascade.tensor_ranks[tensor]) * batch

        reread = sum(
            elements(t) for t in cascade.input_names if names & set(cascade.tensor_ranks[t])
        )
        spills = [
            2 * elements(e.output)
            for e in cascade.einsums
            if names & set(cascade.tensor_ranks[e.output]) and e.output not in cascade.outputs
        ]
        per_pass = min([reread, *spills])
        most = max(most, (count - 1) * per_pass * word)
    return most


def _read_fraction(cascade: Cascade, tensor: str, masked: bool, kept: dict) -> float:
    """The least share of an input any mapping reads from DRAM (module doc)."""
    best = 0.0
    for einsum in cascade.einsums:
        reads = [a for a in accesses(einsum.expr) if a.tensor == tensor]
        if not reads:
            continue
        if not masked:
            return 1.0
        if einsum.where is None:
            continue  # may skip the kernel's empty tiles
        if all(isinstance(i, Var) for a in reads for i in a.indices):
            best = max(best, kept[einsum.output])
    return best


def gap(best: float, bound: float) -> float:
    """best / bound - 1: how far the best mapping found may be from the best possible
    (0 proves it optimal over every mapping the model can cost, not just the space).

    Example:
        >>> gap(1.25, 1.0)
        0.25
    """
    if bound <= 0:
        return math.inf
    return best / bound - 1
