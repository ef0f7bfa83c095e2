"""The recipes of the lazy map space against what they stand for: the loop orders a space
tries are the first permutations that no `forbid_orders` sequence rules out; a fused
kernel's labels, factorized per dimension, are those of its recipes one by one, with the
on-chip order searched (complete) or following the off-chip one; a partial grouping's
labels are known before any of its kernels' templates is built."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from einsim.einsum import SpecError
from einsim.mapper import space as space_module
from einsim.mapper.constraints import Constraints
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import attention

RANKS = ["M1", "M0", "P", "E", "F", "B"]


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def _shape(built, length=256):
    every = dict(B=1, H=1, E=16, F=16, M=length, P=length, G=1, A=16, R=length, X=16, Y=16)
    names = cascade_names(built) | set(DEFAULT_BATCH)
    return {k: v for k, v in every.items() if k in names}


@settings(max_examples=200, deadline=None)
@given(
    hst.lists(hst.sampled_from(RANKS), unique=True, max_size=6),
    hst.lists(hst.lists(hst.sampled_from(RANKS), min_size=1, max_size=3), max_size=3),
)
def test_orders_are_the_first_allowed_permutations(tiled, forbid):
    forbid = tuple(tuple(bad) for bad in forbid)

    def allowed(order):  # no forbidden sequence appears in the order, outer to inner
        return not any(
            all(r in order for r in bad)
            and [order.index(r) for r in bad] == sorted(order.index(r) for r in bad)
            for bad in forbid
        )

    every = [o for o in itertools.permutations(tiled) if allowed(o)]
    ctx = type("Ctx", (), {"constraints": Constraints(forbid_orders=forbid)})()
    if not every:
        with pytest.raises(SpecError, match="forbid_orders"):
            space_module._orders(ctx, tiled)
        return
    orders, complete = space_module._orders(ctx, tiled)
    assert list(orders) == every[: space_module.MAX_ORDERS]
    assert complete == (len(every) <= space_module.MAX_ORDERS and not forbid)


@pytest.mark.parametrize("name", ["fusemax_1pass", "razor_attention", "hyper_attention"])
def test_factorized_labels_are_the_recipes_labels(arch, name):
    """Every template of the fused grouping: its recipe's labels (no template built) agree
    with the factorized columns the strategies read."""
    built = attention(name)
    space = space_module._build_space(built, arch, tuple(_shape(built).items()), Constraints())
    templates = space.templates
    (start,) = [s for f, s in templates.groupings() if f == "fused"]
    block = templates.block(start)
    for d, (labels, index) in zip(
        space.dimensions, templates.labels(start, space.dimensions), strict=True
    ):
        expected = [dict(templates.structure(t)).get(d, "") for t in block]
        assert [labels[i] for i in index] == expected, d
    assert templates.built == 0


def test_both_kinds_of_order_entries_are_met(arch):
    """A kernel tiling at most three ranks searches every on-chip order; one tiling more
    lets the on-chip order follow the off-chip one ('same'): FuseMax's space has both, so
    the test above sees both."""
    built = attention("fusemax_1pass")
    space = space_module._build_space(built, arch, tuple(_shape(built).items()), Constraints())
    labels = [dict(space.templates.structure(t)) for t in range(len(space.templates))]
    onchip = {lab["onchip_order"] for lab in labels if "onchip_order" in lab}
    assert "same" in onchip and len(onchip) > 1


@pytest.mark.parametrize("name", ["fusemax_1pass", "hyper_attention"])
def test_partial_labels_need_no_template(arch, name):
    """The labels of every grouping are known with no template of any kernel built; asking
    for one template builds the kernels of its grouping only."""
    built = attention(name)
    space = space_module._build_space(built, arch, tuple(_shape(built).items()), Constraints())
    templates = space.templates
    for _, start in templates.groupings():
        templates.labels(start, space.dimensions)
    groupings = [
        block.build.__self__
        for block in templates._blocks
        if isinstance(getattr(block.build, "__self__", None), space_module._PartialGrouping)
    ]
    assert groupings

    def kernels_built():  # groups recur across groupings: each counted once
        groups = {id(g): g for p in groupings for g in (p.options() or ())}
        return sum(len(g._built) for g in groups.values())

    assert templates.built == 0 and kernels_built() == 0
    (first,) = [s for f, s in templates.groupings() if f == groupings[0].fusion]
    templates[first]
    assert templates.built == 1 and kernels_built() == len(groupings[0].groups)
