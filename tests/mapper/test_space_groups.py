"""What a partial grouping's fused groups are built from, against their definitions on the
cascades of the registry: each group's dependency edges (`_edges`, a read's Einsums tested as
bits) against the reads of `read_paths` whose Einsums are all in the group; the per-space
cycle check (`_Context.acyclic`) against every group's own; the optional tiled ranks of a
fused kernel (`_kernel_memory`) against counting, per rank, the Einsums that iterate it."""

import numpy as np
import pytest

from einsim.mapper import space as space_module
from einsim.mapper.constraints import Constraints
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import attention

NAMES = ["fusemax_1pass", "gqa", "hyper_attention", "moh", "flexprefill", "hip", "biformer"]


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def _context(name, arch):
    built = attention(name)
    every_rank = dict(B=1, H=2, E=64, F=64, M=1024, P=1024, G=1, A=64, R=1024, X=32, Y=32, T=4)
    names = cascade_names(built) | set(DEFAULT_BATCH)
    shape = {k: v for k, v in every_rank.items() if k in names}
    return space_module._context(built, arch, shape, Constraints())


def _groups(ctx):
    """Every group of contiguous Einsums with work, with its reshapes (as groupings make)."""
    names = [e.output for e in ctx.cascade.einsums]
    order = [e for e in ctx.cascade.order if e in ctx.work]
    out = []
    for a in range(len(order)):
        for b in range(a + 1, len(order) + 1):
            groups = [order[:a], order[a:b], order[b:]]
            groups = [g for g in groups if g]
            made = space_module._with_reshapes(ctx, names, groups)
            out.append(made[1 if a else 0])
    return out


def _reference_edges(ctx, einsums):
    """The definition: per reader in the group, its reads whose source and pass-through
    Einsums are all in the group, carried or forward as read."""
    members = set(einsums)
    forward, carried = set(), set()
    for c in einsums:
        for src, loop_carried, through in ctx.read_paths.get(c, ()):
            if src in members and through <= members:
                (carried if loop_carried else forward).add((src, c))
    return sorted(forward), sorted(carried)


@pytest.mark.parametrize("name", NAMES)
def test_group_edges_are_the_reads_inside_the_group(arch, rng, name):
    """Every group a grouping makes, and random sets of Einsums (a reshape left out of a
    set cuts the reads that pass through it)."""
    ctx = _context(name, arch)
    groups = _groups(ctx)
    assert groups
    names = [e.output for e in ctx.cascade.einsums]
    subsets = [[e for e in names if rng.random() < 0.7] for _ in range(200)]
    for einsums in groups + subsets:
        assert space_module._edges(ctx, einsums) == _reference_edges(ctx, einsums)


@pytest.mark.parametrize("name", NAMES)
def test_no_group_has_a_cycle_when_the_cascade_has_none(arch, name):
    ctx = _context(name, arch)
    cyclic = [
        space_module._cyclic(
            [e for e in einsums if e in ctx.work], _reference_edges(ctx, einsums)[0]
        )
        for einsums in _groups(ctx)
    ]
    whole = [e.output for e in ctx.cascade.einsums]
    forward, _ = _reference_edges(ctx, whole)
    assert ctx.acyclic == (not space_module._cyclic(list(ctx.work), forward))
    if ctx.acyclic:
        assert not any(cyclic)


@pytest.mark.parametrize("name", NAMES)
def test_optional_ranks_are_those_fewer_than_half_the_einsums_iterate(arch, name):
    ctx = _context(name, arch)
    for einsums in _groups(ctx):
        work = [e for e in einsums if e in ctx.work]
        if len(work) < 2:
            continue
        structures = space_module._group_ranked(ctx, einsums)
        tiled, optional, *_ = space_module._kernel_memory(ctx, "k", einsums, structures[0])
        expected = [r for r in tiled if 2 * sum(r in ctx.iterated(e) for e in work) < len(work)]
        assert optional == expected


@pytest.mark.parametrize("seed", range(40))
def test_least_busiest_tables_are_those_of_placing_every_table(seed):
    """`_least_busiest` places only the tables whose bound may hold the least busy
    combinations: the same top-th least load, and the same placements for every combination
    at most that busy, as placing every table."""
    rng = np.random.default_rng(seed)
    units, n_work = int(rng.integers(1, 4)), int(rng.integers(1, 9))
    values = np.array([0.0, 1.0, 2.0, 2.5, 3.0, 7.0, 1e6, np.inf])
    tables = [rng.choice(values, size=(int(rng.integers(1, 9)), n_work)) for _ in range(units)]
    for t in tables:  # a unit runs each Einsum in at least one of its rows
        t[0] = np.where(np.isinf(t[0]), 1.0, t[0])
    n_tables = int(np.prod([len(t) for t in tables]))
    of = rng.integers(0, n_tables, size=int(rng.integers(1, 3 * n_tables + 1)))
    grid = np.meshgrid(*(np.arange(len(t)) for t in tables), indexing="ij")
    every = np.stack([t[g.reshape(-1)] for t, g in zip(tables, grid, strict=True)], axis=1)
    placed, unit, load = space_module._place(every)
    busiest = load.max(axis=1)[of]
    top = min(space_module.TOP_COMPUTE, len(of))
    cut = np.partition(busiest, top - 1)[top - 1]
    chosen, (placed_, unit_, _), busiest_, cut_ = space_module._least_busiest(
        tables, of, space_module.TOP_COMPUTE
    )
    assert cut_ == cut
    row = {int(t): r for r, t in enumerate(chosen)}
    for c in np.flatnonzero(busiest <= cut):
        r = row[int(of[c])]
        assert busiest_[r] == busiest[c]
        np.testing.assert_array_equal(placed_[r], placed[of[c]])
        np.testing.assert_array_equal(unit_[r], unit[of[c]])
