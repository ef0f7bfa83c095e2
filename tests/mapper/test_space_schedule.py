"""The stage scheduler and the binding table against their scalar definitions:
`schedule_stages` (a local search over (lag, stage) per Einsum, each Einsum's best move kept
between rounds) against the loop that tests every move of every round, on random dependency
graphs; and
`_bindings` (every combination of unrollings bound at once) against `_balanced_binding` per
combination, on the cascades of the registry."""

import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as hst

from einsim.einsum import SpecError
from einsim.mapper import schedule_stages
from einsim.mapper import space as space_module
from einsim.mapper.constraints import Constraints
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import attention


def _reference_schedule(
    work: list[str],
    unit_of: dict,
    cycles: dict,
    forward: list[tuple[str, str]],
    carried: list[tuple[str, str]],
) -> tuple[tuple[tuple[str, ...], ...], float]:
    """The scalar definition: one move at a time, every move tested in turn."""
    n = len(work)
    units = sorted(set(unit_of.values()))
    uidx = {u: i for i, u in enumerate(units)}
    preds = {e: [p for p, c in forward if c == e] for e in work}
    succs = {e: [c for p, c in forward if p == e] for e in work}
    cpreds = {e: [p for p, c in carried if c == e] for e in work}
    csuccs = {e: [c for p, c in carried if p == e] for e in work}
    position = {e: i for i, e in enumerate(work)}
    lag, stage = {}, {}
    done: set[str] = set()
    while len(done) < n:  # ASAP in a topological order (ties: text order)
        ready = [e for e in work if e not in done and all(p in done for p in preds[e])]
        if not ready:
            raise ValueError(f"Einsums {', '.join(sorted(set(work) - done))} form a cycle")
        e = min(ready, key=position.get)
        lag[e] = 0
        stage[e] = max((stage[p] + (unit_of[p] != unit_of[e]) for p in preds[e]), default=0)
        done.add(e)
    # per stage, per unit: lists, not an array (tiny rows, and max() of a list is cheap)
    loads = [[0.0] * len(units) for _ in range(n)]
    for e in work:
        loads[stage[e]][uidx[unit_of[e]]] += float(cycles[e])

    def ok(e: str, lg: int, st: int) -> bool:
        key, unit = lg * n + st, unit_of[e]
        for p in preds[e]:
            kp = lag[p] * n + stage[p]
            if kp > key or (kp == key and unit_of[p] != unit):
                return False
        for c in succs[e]:
            kc = lag[c] * n + stage[c]
            if kc < key or (kc == key and unit_of[c] != unit):
                return False
        if lg == 0:
            for p in cpreds[e]:
                if lag[p] == 1 and (stage[p] > st or (stage[p] == st and unit_of[p] != unit)):
                    return False
        else:
            for c in csuccs[e]:
                if lag[c] == 0 and (stage[c] < st or (stage[c] == st and unit_of[c] != unit)):
                    return False
        return True

    while True:
        best, best_delta = None, -1e-9
        peaks = [max(row) for row in loads]
        for e in work:
            u, w, s0 = uidx[unit_of[e]], float(cycles[e]), stage[e]
            row0 = loads[s0]
            release = max([row0[u] - w, *row0[:u], *row0[u + 1 :]]) - peaks[s0]
            # the gain first: the legality test is the costly part, and only a move that
            # would be the best so far needs it (the same move wins as testing every one)
            gains = [release + max(p, row[u] + w) - p for p, row in zip(peaks, loads, strict=True)]
            for lg in (0, 1):
                for st in range(n):
                    if st != s0 and gains[st] < best_delta and ok(e, lg, st):
                        best, best_delta = (e, lg, st), gains[st]
        if best is None:
            break
        e, lg, st = best
        loads[stage[e]][uidx[unit_of[e]]] -= float(cycles[e])
        loads[st][uidx[unit_of[e]]] += float(cycles[e])
        lag[e], stage[e] = lg, st
    used = sorted({stage[e] for e in work})
    stages = tuple(tuple(e for e in work if stage[e] == s) for s in used)
    return stages, float(np.sum([max(row) for row in loads]))


@hst.composite
def kernels(draw):
    """A kernel's Einsums, their units, cycles (with ties), forward edges (a DAG in text
    order) and carried edges (any direction, as RD into SPD)."""
    n = draw(hst.integers(1, 12))
    work = [f"E{i}" for i in range(n)]
    units = draw(hst.lists(hst.sampled_from("xyz"), min_size=n, max_size=n))
    cycles = draw(
        hst.lists(hst.sampled_from([0.0, 1.0, 2.0, 3.0, 2.5, 7.0, 1e6]), min_size=n, max_size=n)
    )
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    forward = draw(hst.lists(hst.sampled_from(pairs), unique=True)) if pairs else []
    others = [(a, b) for a in range(n) for b in range(n) if a != b]
    carried = draw(hst.lists(hst.sampled_from(others), unique=True, max_size=12)) if others else []
    name = lambda edges: sorted((work[a], work[b]) for a, b in edges)  # noqa: E731
    return (
        work,
        dict(zip(work, units, strict=True)),
        dict(zip(work, cycles, strict=True)),
        name(forward),
        name(carried),
    )


@settings(max_examples=500, deadline=None)
@given(kernels())
@example(  # a lagged producer's carried read bounds the reader's stage (rare at random)
    (
        ["E0", "E1", "E2", "E3", "E4"],
        {"E0": "x", "E1": "y", "E2": "x", "E3": "y", "E4": "y"},
        {"E0": 8.0, "E1": 8.0, "E2": 2.0, "E3": 2.0, "E4": 2.0},
        [("E0", "E1"), ("E0", "E2"), ("E1", "E4"), ("E2", "E4")],
        [("E0", "E4"), ("E1", "E2"), ("E2", "E4")],
    )
)
def test_schedule_is_that_of_one_move_at_a_time(kernel):
    assert schedule_stages(*kernel) == _reference_schedule(*kernel)


def test_schedule_of_a_cycle_names_its_einsums():
    with pytest.raises(SpecError, match="A, B form a cycle"):
        schedule_stages(
            ["A", "B"], {"A": "x", "B": "y"}, {"A": 1, "B": 1}, [("A", "B"), ("B", "A")], []
        )


@pytest.mark.parametrize("name", ["fusemax_1pass", "hyper_attention", "biformer", "gqa", "moh"])
def test_binding_table_is_balanced_binding_per_combination(name):
    arch = load_architecture("fusemax_cloud")
    built = attention(name)
    every_rank = dict(B=1, H=1, E=64, F=64, M=1024, P=1024, G=1, A=64, R=1024, X=32, Y=32, T=4)
    names_ = cascade_names(built) | set(DEFAULT_BATCH)
    shape = {k: v for k, v in every_rank.items() if k in names_}
    ctx = space_module._context(built, arch, shape, Constraints())
    work = [e.output for e in built.einsums if e.output in ctx.work]
    units = [u.name for u in arch.units if any(u.name in ctx.supported[e] for e in work)]
    options = {u: space_module._spatial_options(ctx, u, work) for u in units}
    units = [u for u in units if options[u]]
    table = space_module._bindings(ctx, work, units, options)
    busiest = table.busiest()
    combos = list(itertools.product(*(options[u] for u in units)))
    assert len(combos) == len(table.choice)
    for c, choice in enumerate(combos):
        cycles = {u: space_module._probe(ctx, u, opt) for u, opt in zip(units, choice, strict=True)}
        expected = space_module._balanced_binding(ctx, work, units, cycles)
        got = table.binding(c, work, units)
        assert list(got.items()) == list(expected.items())  # placement order too
        assert busiest[c] == space_module._busiest(work, expected, cycles)
        placed = [sum(cycles[u][e] for e, b in expected.items() if b == u) for u in units]
        np.testing.assert_array_equal(table.loads()[c], placed)


def _reference_placement(here: np.ndarray, tied: np.ndarray) -> tuple[list, list]:
    """Per table, one Einsum after another (placement order): the unit of least load + (0
    where it is tied, inf elsewhere), the first of equal ones (an inf load ties with the
    barred units); its cycles added to that unit's load."""
    picks, loads = [], []
    for cycles, ties in zip(here, tied, strict=True):
        load = [0.0] * len(cycles)
        chosen = []
        for k in range(cycles.shape[1]):
            barred = [0.0 if ties[u, k] else np.inf for u in range(len(cycles))]
            pick = min(range(len(cycles)), key=lambda u: (load[u] + barred[u], u))
            chosen.append(pick)
            load[pick] += float(cycles[pick, k])
        picks.append(chosen)
        loads.append(load)
    return picks, loads


@settings(max_examples=300, deadline=None)
@given(
    hst.integers(1, 20),
    hst.integers(1, 3),
    hst.integers(0, 8),
    hst.integers(0, 2**32 - 1),
    hst.booleans(),
)
def test_both_placements_are_the_reference(tables, units, work, seed, any_ties):
    """`_bindings` places Einsums with numpy over every table at once (`_place_rows`) or
    table by table in Python (`_place_each`, few tables): both are the scalar loop."""
    rng = np.random.default_rng(seed)
    values = np.array([0.0, 1.0, 2.0, 2.5, 3.0, 7.0, 1e6, np.inf, 0.1, 0.2])
    here = rng.choice(values, size=(tables, units, work))
    tied = here <= (here.min(axis=1) * (1 + 1e-9))[:, None, :]
    if any_ties:
        tied = rng.random((tables, units, work)) < 0.5
    expected_picks, expected_loads = _reference_placement(here, tied)
    for place in (space_module._place_rows, space_module._place_each):
        picks, loads = place(here, tied)
        np.testing.assert_array_equal(picks, np.array(expected_picks).reshape(tables, work))
        np.testing.assert_array_equal(loads, np.array(expected_loads).reshape(tables, units))
