"""The lazily built map space (`mapper.space.Templates`): its numbering does not depend on
which templates were built or in which order, a recipe's labels are its template's, slots a
partial grouping cannot fill are empty and searched as such, and the compute structures
found with the scheduler's bound are those of scheduling every combination."""

import dataclasses
import pickle

import numpy as np
import pytest

from einsim.mapper import search
from einsim.mapper import space as space_module
from einsim.mapper.constraints import Constraints
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import attention, cascade

SHAPE = dict(B=1, H=1, E=16, F=16, M=256, P=256)


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def _fresh(built, arch, shape, constraints=None):
    """A space built now (not the cached one), so that nothing in it is built yet."""
    return space_module._build_space(
        built, arch, tuple(shape.items()), constraints or Constraints()
    )


@pytest.mark.parametrize("name", ["fusemax_1pass", "causal"])
def test_numbering_does_not_depend_on_the_order_templates_are_built(arch, rng, name):
    built = attention(name) if name == "causal" else cascade(name)
    forward = _fresh(built, arch, SHAPE)
    backward = _fresh(built, arch, SHAPE)
    n = len(forward.templates)
    assert n == len(backward.templates)
    assert forward.templates.built == 0  # nothing built before it is asked for
    order = rng.permutation(n)
    shuffled = {int(i): backward.templates[int(i)] for i in order}
    for i, template in enumerate(forward.templates):
        other = shuffled[i]
        assert template.mapping == other.mapping
        assert template.structure == other.structure
        assert template.names == other.names
        for a, b in zip(template.values, other.values, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["fusemax_1pass", "causal", "stable_3pass"])
def test_recipe_labels_are_the_built_templates_labels(arch, name):
    built = attention(name) if name == "causal" else cascade(name)
    space = _fresh(built, arch, SHAPE)
    templates = space.templates
    cheap = [templates.structure(i) for i in range(len(templates))]  # before building
    assert [t.structure for t in templates] == cheap
    dims = space.dimensions
    for _, start in templates.groupings():
        factorized = templates.labels(start, dims)
        block = templates.block(start)
        for d, (labels, index) in zip(dims, factorized, strict=True):
            expected = [dict(cheap[t]).get(d, "") for t in block]
            assert [labels[i] for i in index] == expected, (d, dict(cheap[start])["fusion"])


def test_every_fusion_grouping_is_a_block_of_templates(arch):
    """Templates of a grouping are contiguous; a space, built or not, pickles whole."""
    unbuilt = pickle.loads(pickle.dumps(_fresh(cascade("fusemax_1pass"), arch, SHAPE)))
    space = _fresh(cascade("fusemax_1pass"), arch, SHAPE)
    assert [t.mapping for t in unbuilt.templates] == [t.mapping for t in space.templates]
    space = pickle.loads(pickle.dumps(space))
    templates = space.templates
    groupings = templates.groupings()
    fusions = [f for f, _ in groupings]
    assert len(set(fusions)) == len(fusions)
    ends = [start for _, start in groupings[1:]] + [len(templates)]
    for (fusion, start), end in zip(groupings, ends, strict=True):
        for t in range(start, end):
            assert dict(templates[t].structure)["fusion"] == fusion
            assert templates.block(t) == range(start, end)


def test_slots_a_group_cannot_fill_are_empty_and_searched_as_such(arch, monkeypatch):
    """More slots per fused group than any group has templates: the extra ones are absent
    (no rows), costed by no strategy, and the search still finds a valid mapping."""
    monkeypatch.setattr(space_module, "PARTIAL_TEMPLATES", 48)
    built = cascade("stable_3pass")
    shape = dict(B=1, H=1, E=4, F=4, M=8, P=8)
    space = _fresh(built, arch, shape, Constraints(fusion="partial"))
    absent = [t for t in space.templates if t.absent]
    present = [t for t in space.templates if not t.absent]
    assert absent and present
    assert all(t.size == 0 for t in absent)
    assert space.size == sum(t.size for t in present)
    # every present template of a grouping is a distinct mapping (no slot repeats another)
    for fusion, start in space.templates.groupings():
        block = [space.templates[t] for t in space.templates.block(start)]
        real = [t.mapping for t in block if not t.absent]
        assert len(set(real)) == len(real), fusion
    cached = space_module._cached_space
    monkeypatch.setattr(space_module, "_cached_space", lambda *args: space)
    try:
        for strategy in ("greedy", "random"):
            result = search(
                built, arch, shape, strategy=strategy, budget=5_000,
                constraints=Constraints(fusion="partial"),
            )  # fmt: skip
            assert result.report.valid
            assert not space.templates[result.best_template].absent
            costed = set(result.candidates.template)
            assert not any(space.templates[t].absent for t in costed)
    finally:
        monkeypatch.setattr(space_module, "_cached_space", cached)


@pytest.mark.parametrize(
    "name", ["fusemax_1pass", "online_2pass", "gqa", "linear", "causal", "biformer"]
)
def test_bounded_compute_structures_are_those_of_scheduling_every_combination(arch, name):
    """`compute_structures` schedules stages only for combinations whose bound can still
    make the top; asking for more than there are combinations schedules every one."""
    built = attention(name)
    every_rank = dict(B=1, H=1, E=64, F=64, M=1024, P=1024, G=1, A=64, R=1024, X=32, Y=32)
    names_ = cascade_names(built) | set(DEFAULT_BATCH)
    shape = {k: v for k, v in every_rank.items() if k in names_}
    ctx = space_module._context(built, arch, shape, Constraints())
    names = [e.output for e in built.einsums]
    every = space_module.compute_structures(ctx, names, top=100_000)
    for top in (1, 2, 3, 5):
        assert space_module.compute_structures(ctx, names, top=top) == every[:top]


@pytest.mark.parametrize("name", ["fusemax_1pass", "razor_attention"])
def test_bounded_group_structures_are_those_of_scheduling_every_candidate(arch, monkeypatch, name):
    """A partial grouping's group: the structures found with the bound are those found
    with a bound of zero (which schedules every candidate)."""
    built = attention(name)
    every_rank = SHAPE | dict(G=1, A=16, R=256)
    names_ = cascade_names(built) | set(DEFAULT_BATCH)
    shape = {k: v for k, v in every_rank.items() if k in names_}
    ctx = space_module._context(built, arch, shape, Constraints())
    order = [e for e in built.order if e in ctx.work]
    groups = [order[i : i + k] for k in (2, 3, 5) for i in range(0, len(order) - k + 1, 2)]
    bounded = [list(space_module._group_ranked(ctx, g)) for g in groups]
    monkeypatch.setattr(space_module, "_busiest", lambda *args: 0.0)
    ctx.memo.clear()
    assert [list(space_module._group_ranked(ctx, g)) for g in groups] == bounded


def test_bound_is_below_the_scheduled_score(arch):
    """`_busiest` (the bound the pruning uses) is at most the score `_score` reports, for
    every combination and binding of a fused kernel."""
    built = cascade("fusemax_1pass")
    ctx = space_module._context(built, arch, SHAPE, Constraints(overlap="pipelined"))
    names = [e.output for e in built.einsums]
    work = [e for e in names if e in ctx.work]
    units = [u.name for u in arch.units]
    options = {u: space_module._spatial_options(ctx, u, work) for u in units}
    edges = space_module._edges(ctx, names)
    checked = 0
    for a in options[units[0]][:4]:
        for b in options[units[1]][:4]:
            cycles = {units[0]: space_module._probe(ctx, units[0], a)}
            cycles[units[1]] = space_module._probe(ctx, units[1], b)
            binding = space_module._balanced_binding(ctx, work, units, cycles)
            for e in work[:3]:  # and a few re-bindings
                for u in ctx.supported[e]:
                    trial = binding | {e: u}
                    _, score = space_module._score(ctx, work, trial, cycles, edges)
                    bound = space_module._busiest(work, trial, cycles)
                    assert bound <= score * (1 + 1e-12)
                    checked += 1
    assert checked > 10


def test_template_of_the_space_is_the_mapping_searched(arch):
    """What a search reports as its best template is the template the space holds there."""
    result = search(cascade("fusemax_1pass"), arch, SHAPE, budget=20_000)
    template = result.space.templates[result.best_template]
    assert dataclasses.replace(result.mapping, name=template.mapping.name).kernels[0].name == (
        template.mapping.kernels[0].name
    )
    assert result.space.templates.built < len(result.space.templates)
