"""The least cut of the lower bound (`mapper.bound._least_cut_bytes`) against a brute force:
every subset of the Einsums that is down-closed in the dependency graph (a reader's
producers in it), each tensor it produces that an Einsum outside reads counted once (a
masked cascade: written) or twice (written and read back), outputs of the cascade never."""

import itertools
import math

import pytest

from einsim.mapper import bound
from einsim.simulator.shape import DEFAULT_BATCH, split_shape
from einsim.workloads import attention

SHAPE = dict(B=2, H=3, E=16, F=16, M=512, P=256, R=512, G=1, A=16, X=8, Y=8, T=4)
SMALL = [
    "naive_2pass", "stable_3pass", "online_2pass", "fusemax_1pass", "linear", "softplus",
    "titans_memory",
]  # fmt: skip


def _brute_force(cascade, sizes, batch, word, masked, most_sets=math.inf) -> float:
    names = [e.output for e in cascade.einsums]
    producers = {
        n: {p for p in cascade.graph.predecessors(n) if p in names and p != n} for n in names
    }
    outputs = set(cascade.outputs)
    closed, least = 0, math.inf
    for k in range(len(names) + 1):
        for subset in itertools.combinations(names, k):
            inside = set(subset)
            if any(not producers[n] <= inside for n in inside):
                continue
            closed += 1
            if not 0 < k < len(names):
                continue
            total = 0  # exact (ints)
            for t in inside:
                if t in outputs or set(cascade.graph.successors(t)) <= inside:
                    continue
                elements = math.prod(sizes[r] for r in cascade.tensor_ranks[t]) * int(batch)
                total += elements * word * (1 if masked else 2)
            least = min(least, total)
    if closed > most_sets or math.isinf(least):
        return 0.0
    return float(least)


@pytest.mark.parametrize("variant", SMALL)
@pytest.mark.parametrize("masked", [False, True])
def test_least_cut_is_the_brute_force_least(variant, masked):
    built = attention(variant)
    names = {r for e in built.einsums for r in built.tensor_ranks[e.output]}
    names |= {r for t in built.input_names for r in built.tensor_ranks[t]}
    shape = {k: v for k, v in SHAPE.items() if k in names or k in DEFAULT_BATCH}
    split = split_shape(built, DEFAULT_BATCH, shape)
    sizes, batch = {k: int(v) for k, v in split.sizes.items()}, float(split.multiplier)
    expected = _brute_force(built, sizes, batch, 2, masked)
    assert bound._least_cut_bytes(built, sizes, batch, 2, masked) == expected


def test_least_cut_is_zero_past_the_most_sets(monkeypatch):
    """Past `_MAX_IDEALS` down-closed sets the bound gives up (0); at exactly that many it
    does not."""
    built = attention("online_2pass")
    shape = {k: v for k, v in SHAPE.items() if k in ("B", "H", "E", "F", "M", "P")}
    split = split_shape(built, DEFAULT_BATCH, shape)
    sizes, batch = {k: int(v) for k, v in split.sizes.items()}, float(split.multiplier)
    every = bound._cuts(built).inside.shape[0] + 2  # the proper sets, the empty and the whole
    try:
        for most in (every - 1, every):
            bound._cuts.cache_clear()
            monkeypatch.setattr(bound, "_MAX_IDEALS", most)
            expected = _brute_force(built, sizes, batch, 2, False, most_sets=most)
            assert bound._least_cut_bytes(built, sizes, batch, 2, False) == expected
        assert expected > 0
    finally:
        bound._cuts.cache_clear()
