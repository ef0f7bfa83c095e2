"""The shared and lazy work of a partial grouping's groups, against the definitions it
shortens: a group's first compute structure found with fewer schedules is the first of
its ranked structures (`_Ranked.first` vs `every`); a fused kernel's blocks of loop orders
added one set of tiled ranks at a time are those of working out every set at once; the
binding table of a group (its columns taken from the per-unit probe table) is
`_balanced_binding` per combination; rows deduplicated by their bytes are `np.unique`'s
rows; `_cyclic` is networkx's acyclicity test."""

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from einsim.mapper import space as space_module
from einsim.mapper.constraints import Constraints
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import attention

EVERY_RANK = dict(B=1, H=1, E=64, F=64, M=1024, P=1024, G=1, A=64, R=1024, X=32, Y=32, T=4)
VARIANTS = ["fusemax_1pass", "hip", "hyper_attention", "flexprefill", "razor_attention"]


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def _ctx(arch, name: str, constraints: Constraints | None = None):
    built = attention(name)
    names = cascade_names(built) | set(DEFAULT_BATCH)
    shape = {k: v for k, v in EVERY_RANK.items() if k in names}
    return space_module._context(built, arch, shape, constraints or Constraints())


def _groups(ctx, sizes=(2, 3, 5, 8), step: int = 3) -> list[list[str]]:
    """Contiguous runs of the Einsums with work, as partial groupings cut them."""
    order = [e for e in ctx.cascade.order if e in ctx.work]
    return [order[i : i + k] for k in sizes for i in range(0, len(order) - k + 1, step)]


@pytest.mark.parametrize("name", VARIANTS)
def test_first_structure_is_the_first_of_every_ranked_structure(arch, name):
    ctx = _ctx(arch, name)
    checked, shorter = 0, 0
    for group in _groups(ctx):
        ranked = space_module._group_ranked(ctx, group)
        if not isinstance(ranked, space_module._Ranked):
            continue
        first = ranked[0]  # before `every` is known: found with the shorter search
        made = len(ranked._made)
        fresh = space_module._Ranked(ranked.ctx, ranked.work, ranked.edges, ranked.bounded)
        every = fresh.every()
        shorter += made < len(fresh._made)
        assert len(ranked) == len(every)
        assert first == every[0]
        assert list(ranked) == every
        checked += 1
    assert checked >= 3
    assert shorter >= 1  # some first structures were found with fewer schedules


@pytest.mark.parametrize("name", ["fusemax_1pass", "hip", "flexprefill"])
def test_order_blocks_one_set_at_a_time_are_those_of_every_set(arch, name):
    """Blocks of a group's fused kernel, added lazily (first recipes asked for, then all),
    against the definition: per compute structure, per set of optional ranks dropped
    (fewest first, itertools order), the permutations of the rest, `complete` when every
    set has all its permutations and at most three ranks."""
    ctx = _ctx(arch, name)
    checked = 0
    for group in _groups(ctx, sizes=(3, 6), step=4):
        ranked = space_module._group_ranked(ctx, group)
        if not len(ranked):
            continue
        kernel = space_module._FusedKernel(ctx, "partial", group[0], group, ranked)
        assert kernel.available(space_module.PARTIAL_TEMPLATES) >= 1
        labels = [kernel.structure(j) for j in range(kernel.available(4))]
        kernel.count  # noqa: B018 (expands every block)
        expected = []
        for ci, compute in enumerate(ranked):
            tiled, optional, *_ = space_module._kernel_memory(ctx, group[0], group, compute)
            sets = [
                [r for r in tiled if r not in dropped]
                for k in range(len(optional) + 1)
                for dropped in itertools.combinations(optional, k)
            ]
            orders = [list(itertools.permutations(s))[: space_module.MAX_ORDERS] for s in sets]
            complete = all(len(s) <= 3 for s in sets)
            expected += [(ci, tuple(o), complete) for o in orders]
        assert kernel._blocks == expected
        assert [kernel.structure(j) for j in range(len(labels))] == labels
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("name", ["hip", "flexprefill", "hyper_attention"])
def test_group_binding_table_is_balanced_binding_per_combination(arch, name):
    ctx = _ctx(arch, name)
    for group in _groups(ctx, sizes=(2, 4, 7), step=5)[:12]:
        work = [e for e in group if e in ctx.work]
        units = [u.name for u in arch.units if any(u.name in ctx.supported[e] for e in work)]
        options = {u: space_module._spatial_options(ctx, u, work) for u in units}
        units = [u for u in units if options[u]]
        table = space_module._bindings(ctx, work, units, options)
        combos = list(itertools.product(*(options[u] for u in units)))
        assert len(combos) == len(table.choice)
        loads = table.loads()
        for c, choice in enumerate(combos):
            cycles = {u: space_module._probe(ctx, u, o) for u, o in zip(units, choice, strict=True)}
            expected = space_module._balanced_binding(ctx, work, units, cycles)
            assert list(table.binding(c, work, units).items()) == list(expected.items())
            placed = [0.0] * len(units)
            for e, u in expected.items():  # summed in placement order
                placed[units.index(u)] += cycles[u][e]
            np.testing.assert_array_equal(loads[c], placed)


@settings(max_examples=60, deadline=None)
@given(
    hst.integers(1, 12).flatmap(
        lambda rows: hst.integers(1, 4).flatmap(
            lambda cols: hst.lists(
                hst.sampled_from([0.0, 1.0, 2.5, np.inf]), min_size=rows * cols,
                max_size=rows * cols,
            ).map(lambda v: np.array(v).reshape(rows, cols))
        )
    )
)  # fmt: skip
def test_distinct_rows_are_numpys_unique_rows(table):
    distinct, index = space_module._distinct_rows(table)
    np.testing.assert_array_equal(distinct[index], table)
    unique = np.unique(table, axis=0)
    assert len(distinct) == len(unique)
    np.testing.assert_array_equal(distinct[np.lexsort(distinct.T[::-1])], unique)
    firsts = [int(np.flatnonzero(index == k)[0]) for k in range(len(distinct))]
    assert firsts == sorted(firsts)  # in the order first met


@settings(max_examples=80, deadline=None)
@given(hst.integers(1, 7).flatmap(
    lambda n: hst.lists(hst.tuples(hst.integers(0, n - 1), hst.integers(0, n - 1)),
                        max_size=12).map(lambda edges: (n, edges))
))  # fmt: skip
def test_cyclic_is_networkx_acyclicity(graph):
    n, edges = graph
    work = [f"E{i}" for i in range(n)]
    forward = sorted({(work[p], work[c]) for p, c in edges if p != c})
    g = nx.DiGraph()
    g.add_nodes_from(work)
    g.add_edges_from(forward)
    assert space_module._cyclic(work, forward) == (not nx.is_directed_acyclic_graph(g))


def _reference_edges(ctx, einsums: list[str]) -> tuple[list, list]:
    """Edges by their definition on the cascade's graph: (src, c) of two Einsums with work
    in the kernel is forward where c reads src directly (not loop-carried) or through a
    chain of the kernel's Einsums without work (reshapes), found from src forwards; carried
    where c reads src directly, loop-carried."""
    graph = ctx.cascade.graph
    members = set(einsums)
    work = [e for e in einsums if e in ctx.work]
    forward, carried = set(), set()
    for src in work:
        for c in graph.successors(src):
            if c in members and c in ctx.work and c != src:
                (carried if graph.edges[src, c]["carried"] else forward).add((src, c))
        seen = set()
        frontier = [x for x in graph.successors(src) if x in members and x not in ctx.work]
        while frontier:
            x = frontier.pop()
            if x in seen:
                continue
            seen.add(x)
            for c in graph.successors(x):
                if c not in members:
                    continue
                if c in ctx.work:
                    if c != src:
                        forward.add((src, c))
                else:
                    frontier.append(c)
    return sorted(forward), sorted(carried)


@pytest.mark.parametrize("name", [*VARIANTS, "gqa", "biformer", "titans_memory"])
def test_edges_are_those_of_the_graph(arch, name, rng):
    """`_edges` (the per-space table of reads, filtered per kernel) against the graph's own
    paths, for runs of Einsums and random subsets (reshapes included or not)."""
    ctx = _ctx(arch, name)
    names = [e.output for e in ctx.cascade.einsums]
    subsets = [names, *_groups(ctx, sizes=(2, 3, 5), step=1)]
    subsets += [list(rng.choice(names, size=rng.integers(1, len(names) + 1), replace=False))
                for _ in range(60)]  # fmt: skip
    for einsums in subsets:
        assert space_module._edges(ctx, einsums) == _reference_edges(ctx, einsums)
