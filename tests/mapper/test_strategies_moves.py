"""The structural moves greedy and anneal make (`strategies._Moves`), worked out per fusion
grouping on demand, against a brute force over every template's labels; and the screened
Pareto front of a search against `pareto_mask` on all points."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.mapper import space as space_module
from einsim.mapper import strategies as strategies_module
from einsim.mapper.constraints import Constraints
from einsim.mapper.objectives import pareto_mask
from einsim.mapper.search import _pareto
from einsim.mapper.strategies import _Moves
from einsim.simulator import load_architecture
from einsim.workloads import attention, cascade

SHAPE = dict(B=1, H=1, E=16, F=16, M=256, P=256)
TIED = {"order": {"order", "onchip_order"}, "compute": {"compute", "order", "onchip_order"}}


def _first_of_kernels(fusion: str) -> frozenset | None:
    """Reference: the first Einsum of every kernel but the first, from the label's text
    (`partial:QK-LM|RM-AV` -> {RM}); fused has none; any other grouping: None."""
    if fusion == "fused":
        return frozenset()
    if not fusion.startswith("partial:"):
        return None
    kernels = fusion.split(":", 1)[1].split("|")
    return frozenset(k.split("-")[0] for k in kernels[1:])


def _near(a, b) -> bool:
    if a is None or b is None:
        return True
    added, removed = b - a, a - b
    return len(added) + len(removed) <= 1 or (len(added) == 1 and len(removed) == 1)


@pytest.mark.parametrize("keyed", [0, 10**9])  # look-ups by one key, or by every column
@pytest.mark.parametrize("name", ["fusemax_1pass", "causal"])
def test_moves_are_the_brute_force_over_every_templates_labels(monkeypatch, name, keyed):
    monkeypatch.setattr(strategies_module, "KEYED", keyed)
    built = attention(name) if name == "causal" else cascade(name)
    arch = load_architecture("fusemax_cloud")
    space = space_module._build_space(built, arch, tuple(SHAPE.items()), Constraints())
    labels = [dict(t.structure) for t in space.templates]
    dims = list(space.dimensions)
    starts = {}
    for t, lab in enumerate(labels):
        starts.setdefault(lab["fusion"], t)
    moves = _Moves(space)
    rng = np.random.default_rng(5)
    for t in sorted({0, *rng.choice(len(labels), 25, replace=False).tolist()}):
        mine = labels[t]
        for d in dims:
            others = [x for x in dims if x not in TIED.get(d, {d})]

            def same(u, others=others, mine=mine):
                return all(labels[u].get(x, "") == mine.get(x, "") for x in others)

            if d != "fusion":
                expected = [u for u in range(len(labels)) if same(u)]
            else:
                near = {
                    f for f in starts
                    if _near(_first_of_kernels(mine["fusion"]), _first_of_kernels(f))
                }  # fmt: skip
                expected = sorted(
                    {starts[f] for f in near}
                    | {u for u in range(len(labels)) if labels[u]["fusion"] in near and same(u)}
                )
            assert moves.moves(t, d) == expected, (t, d)


def _one_per_structure_reference(labels, current, found):
    """Per compute label, the first of `found` whose orders are current's, else the first."""
    mine = (labels[current].get("order"), labels[current].get("onchip_order"))
    first, same = {}, {}
    for t in found:
        compute = labels[t].get("compute", "")
        first.setdefault(compute, t)
        if (labels[t].get("order"), labels[t].get("onchip_order")) == mine:
            same.setdefault(compute, t)
    return sorted((first | same).values())


@pytest.mark.parametrize("name", ["fusemax_1pass", "causal"])
def test_one_template_per_compute_structure_is_the_brute_force(name):
    built = attention(name) if name == "causal" else cascade(name)
    arch = load_architecture("fusemax_cloud")
    space = space_module._build_space(built, arch, tuple(SHAPE.items()), Constraints())
    labels = [dict(t.structure) for t in space.templates]
    moves = _Moves(space)
    rng = np.random.default_rng(7)
    for t in sorted({0, *rng.choice(len(labels), 40, replace=False).tolist()}):
        found = moves.moves(t, "compute")
        got = moves.one_per_structure(t, found)
        assert got == _one_per_structure_reference(labels, t, found), t
        assert len({labels[u].get("compute", "") for u in found}) == len(got)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 600),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_screened_pareto_front_is_the_front_of_every_point(n, spread, seed, anti):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, spread, size=(n, 3)).astype(float)
    if anti:  # a long front: latency and energy traded against each other
        points[:, 1] = spread - points[:, 0]
    np.testing.assert_array_equal(_pareto(points), pareto_mask(points))
