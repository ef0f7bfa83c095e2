"""Greedy's own moves and refinement (`strategies._Moves.local`, `_Visits.refine`): the
order edits against an independent brute force over deletions, insertions and
permutations; the local moves against `moves` filtered by it; a bounded refinement costs
no more rounds than asked; greedy returns the best candidate it costed."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.mapper import space as space_module
from einsim.mapper import strategies as strategies_module
from einsim.mapper.constraints import Constraints
from einsim.mapper.search import search
from einsim.mapper.strategies import _Moves, _order_edit, _Visits
from einsim.simulator import load_architecture
from einsim.workloads import attention, cascade

SHAPE = dict(B=1, H=1, E=16, F=16, M=256, P=256)
RANKS = ("E", "F", "M1", "N", "P")


def _edit_reference(a: tuple, b: tuple) -> bool:
    """b is a permutation of a, or a with one rank deleted, or a with one rank inserted."""
    if sorted(a) == sorted(b):
        return True
    deleted = {a[:i] + a[i + 1 :] for i in range(len(a))}
    inserted = {b[:i] + b[i + 1 :] for i in range(len(b))}
    return b in deleted or a in inserted


orders = st.lists(st.sampled_from(RANKS), min_size=1, max_size=5, unique=True)


@settings(max_examples=300, deadline=None)
@given(orders, orders)
def test_order_edit_is_a_permutation_deletion_or_insertion(a, b):
    assert _order_edit(",".join(a), ",".join(b)) == _edit_reference(tuple(a), tuple(b))


def _space(name: str):
    built = attention(name) if name == "causal" else cascade(name)
    arch = load_architecture("fusemax_cloud")
    return space_module._build_space(built, arch, tuple(SHAPE.items()), Constraints())


@pytest.mark.parametrize("threshold", [0, strategies_module.LOCAL_ORDERS])
def test_local_order_moves_are_the_moves_one_order_edit_away(monkeypatch, threshold):
    monkeypatch.setattr(strategies_module, "LOCAL_ORDERS", threshold)
    space = _space("causal")
    moves = _Moves(space)
    rng = np.random.default_rng(3)
    for t in sorted({0, *rng.choice(len(space.templates), 20, replace=False).tolist()}):
        mine = tuple(dict(space.templates[t].structure).get("order", "").split(","))
        for d in moves.dims:
            every = moves.moves(t, d)
            if d != "order" or len(every) <= threshold:
                assert moves.local(t, d) == every
                continue
            expected = [u for u in every if _edit_reference(mine, _order_of(space, u))]
            assert moves.local(t, d) == expected
            assert t in expected


def _order_of(space, u: int) -> tuple[str, ...]:
    return tuple(dict(space.templates[u].structure)["order"].split(","))


class _Counting:
    """A runner stand-in: costs a row by a fixed random objective, counts the calls."""

    def __init__(self, space, seed: int):
        self.space, self.calls, self.remaining = space, 0, 10**9
        self._rng = np.random.default_rng(seed)
        self._values: dict[tuple[int, int], float] = {}

    def __call__(self, t, rows):
        self.calls += 1
        return np.array([
            self._values.setdefault((t, int(r)), float(self._rng.random())) for r in rows
        ])  # fmt: skip


def test_a_bounded_refinement_costs_at_most_its_rounds_and_never_gets_worse():
    space = _space("fusemax_1pass")
    t = next(i for i in range(len(space.templates)) if space.templates[i].size > 1)
    for rounds in (1, 2, 3):
        run = _Counting(space, seed=rounds)
        visits = _Visits(space, run, np.random.default_rng(0), budget=10**6)
        sampled = visits.visit(t)
        before = run.calls
        visits.refine(t, rounds)
        assert run.calls - before <= rounds
        assert visits.best[t][0] <= sampled


def test_greedy_returns_the_best_candidate_it_costed():
    arch = load_architecture("fusemax_cloud")
    result = search(attention("linear"), arch, SHAPE, "latency", "greedy", budget=200_000)
    costed = result.candidates[result.candidates.valid].latency_s.min()
    np.testing.assert_allclose(result.report.latency_s, costed, rtol=1e-9)


def test_tied_pairs_are_the_parameters_naming_one_rank():
    space = _space("linear")
    rng = np.random.default_rng(5)
    for t in sorted({0, len(space.templates) - 1, *rng.choice(len(space.templates), 20).tolist()}):
        template = space.templates[t]
        if template.absent:
            continue
        by_name = {
            (a, b)
            for a in range(len(template.names))
            for b in range(a + 1, len(template.names))
            if template.names[a].rsplit(".", 1)[1] == template.names[b].rsplit(".", 1)[1]
        }
        assert {tuple(sorted(p)) for p in strategies_module._tied(template)} == by_name


class _Ridge:
    """A runner stand-in whose objective has a ridge along one rank's two factors:
    10 |i_a + i_b - c| + |i_a - goal| (i: value indices); from a point on the ridge only a
    move of both factors at once improves."""

    def __init__(self, template, a: int, b: int, c: int, goal: int):
        self.template, self.a, self.b, self.c, self.goal = template, a, b, c, goal
        self.remaining = 10**9

    def __call__(self, t, rows):
        i = self.template.indices(np.asarray(rows))
        return 10.0 * np.abs(i[:, self.a] + i[:, self.b] - self.c) + np.abs(
            i[:, self.a] - self.goal
        )


@pytest.mark.parametrize("pairs", [0, 1])
def test_refinement_moves_a_ranks_two_factors_together(monkeypatch, pairs):
    monkeypatch.setattr(strategies_module, "PAIRS", pairs)
    space = _space("fusemax_1pass")
    t = next(
        i for i in range(len(space.templates))
        if any(min(len(space.templates[i].values[p]) for p in pair) >= 3
               for pair in strategies_module._tied(space.templates[i]))
    )  # fmt: skip
    template = space.templates[t]
    a, b = next(
        p for p in strategies_module._tied(template) if min(len(template.values[q]) for q in p) >= 3
    )
    start = np.zeros(len(template.names), dtype=np.int64)
    start[a], start[b] = 0, 2  # on the ridge c = 2, away from the goal i_a = 2
    run = _Ridge(template, a, b, c=2, goal=2)
    visits = _Visits(space, run, np.random.default_rng(0), budget=10**6)
    row = int(template.flat(start[None])[0])
    visits.best[t] = (float(run(t, [row])[0]), row)
    visits.refine(t)
    end = template.indices(np.array([visits.best[t][1]]))[0]
    assert (end[a], end[b]) == ((2, 0) if pairs else (0, 2))
    assert visits.best[t][0] == (0.0 if pairs else 2.0)


def test_a_multi_start_refinement_costs_one_batch_a_round_and_never_gets_worse():
    space = _space("fusemax_1pass")
    t = next(i for i in range(len(space.templates)) if space.templates[i].size > 16)
    for rounds in (1, 2, 3):
        run = _Counting(space, seed=7 + rounds)
        visits = _Visits(space, run, np.random.default_rng(0), budget=10**6)
        visits.visit(t)
        sampled, starts = visits.best[t][0], visits.starts[t]
        values = [v for v, _ in starts]
        assert values == sorted(values) and len(set(values)) == len(values)
        assert starts[0] == visits.best[t]
        assert list(run(t, np.array([r for _, r in starts]))) == values
        before = run.calls
        visits.refine(t, rounds, starts=strategies_module.STARTS)
        assert run.calls - before <= rounds
        assert visits.best[t][0] <= sampled


def test_neighbours_are_every_single_factor_change_then_the_tied_pairs():
    space = _space("linear")
    rng = np.random.default_rng(11)
    for t in rng.choice(len(space.templates), 15, replace=False).tolist():
        template = space.templates[t]
        if template.absent or template.size == 0:
            continue
        base = template.indices(rng.integers(0, template.size, 1))[0]
        expected = []
        for k, values in enumerate(template.values):
            for j in range(len(values)):
                if j != base[k]:
                    expected.append([j if i == k else int(x) for i, x in enumerate(base)])
        for a, b in strategies_module._tied(template):
            for da, db in ((1, -1), (-1, 1), (1, 1), (-1, -1)):
                trial = [int(x) for x in base]
                trial[a] += da
                trial[b] += db
                if 0 <= trial[a] < len(template.values[a]) and 0 <= trial[b] < len(
                    template.values[b]
                ):
                    expected.append(trial)
        got = strategies_module._neighbours(template, base)
        assert got.tolist() == expected


def _moves_logged(monkeypatch) -> list[str]:
    """The dimension of every move greedy looks at, in order."""
    logged: list[str] = []
    local = _Moves.local

    def logging(self, t, d):
        logged.append(d)
        return local(self, t, d)

    monkeypatch.setattr(_Moves, "local", logging)
    return logged


@pytest.mark.parametrize("first_rounds", [0, 1])
def test_the_first_rounds_cap_resumes_where_no_grouping_wins(monkeypatch, first_rounds):
    """`FIRST_ROUNDS`: greedy compares the groupings after at most so many rounds within
    the starting one; where none beats it, the rounds within it go on to the same answer
    as without the cap (a GEMM: one grouping; its descent takes it from ~1.6 s, the first
    template's best sample, to 4.45 ms on the systolic array)."""
    arch = load_architecture("systolic")
    shape = dict(M=4096, N=4096, K=4096)
    logged = _moves_logged(monkeypatch)
    monkeypatch.setattr(strategies_module, "FIRST_ROUNDS", None)
    free = search(cascade("gemm"), arch, shape, "latency", "greedy")
    assert logged.index("fusion") > logged.index("compute")
    logged.clear()
    monkeypatch.setattr(strategies_module, "FIRST_ROUNDS", first_rounds)
    capped = search(cascade("gemm"), arch, shape, "latency", "greedy")
    before = logged[: logged.index("fusion")]
    assert before.count("compute") == first_rounds  # the cap held ...
    assert logged.count("compute") > first_rounds  # ... and the rounds went on after it
    assert capped.report.latency_s == free.report.latency_s


@pytest.mark.parametrize("swept", [0, 1000])
def test_the_fusion_move_from_the_unfused_grouping(monkeypatch, swept):
    """`SWEPT_GROUPINGS`: from the unfused grouping (every grouping a merge away), a fusion
    move visits every grouping where the space has at most so many, else the groupings one
    cut from the best partial grouping sampled so far (stable_3pass at 1M: greedy passes
    through the unfused grouping)."""
    moved: list[tuple[bool, int, int]] = []  # (from unfused, groupings visited, in the space)
    local = _Moves.local

    def logging(self, t, d):
        found = local(self, t, d)
        if d == "fusion":
            visited = {self.labels(u).get("fusion") for u in found}
            moved.append((self.sweeps(t), len(visited), self.count))
        return found

    monkeypatch.setattr(_Moves, "local", logging)
    monkeypatch.setattr(strategies_module, "SWEPT_GROUPINGS", swept)
    shape = dict(B=64, H=12, E=64, F=64, M=1 << 20, P=1 << 20)
    search(cascade("stable_3pass"), load_architecture("fusemax_cloud"), shape, "latency", "greedy")
    count = moved[0][2]
    if swept >= count:
        assert (True, count, count) in moved
    else:
        assert moved and not any(unfused for unfused, _, _ in moved)
        assert all(visited < count for _, visited, _ in moved[1:])
