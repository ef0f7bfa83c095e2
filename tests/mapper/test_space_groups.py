"""What a partial grouping's fused groups are built from, against their definitions on the
cascades of the registry: each group's dependency edges (`_edges`, a read's Einsums tested as
bits) against the reads of `read_paths` whose Einsums are all in the group; the per-space
cycle check (`_Context.acyclic`) against every group's own; the optional tiled ranks of a
fused kernel (`_kernel_memory`) against counting, per rank, the Einsums that iterate it."""

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
