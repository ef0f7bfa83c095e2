"""Greedy costs a partial grouping's kernels apart (`_Visits._visit_apart`): the rows it
records are the simulator's own numbers for those mappings, and where every kernel's grid is
sampled whole, the best row it finds is the best of the grouping's whole grid."""

import numpy as np
import pytest

from einsim.mapper import build_space
from einsim.mapper.search import Runner
from einsim.mapper.strategies import PART_SAMPLE, _groups_of, _Visits
from einsim.simulator import ModelOptions, evaluate_batch, load_architecture
from einsim.workloads import cascade

SHAPE = dict(B=1, H=2, E=8, F=8, M=32, P=32)


@pytest.fixture(scope="module")
def space():
    small = {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}
    return build_space(cascade("online_2pass"), load_architecture("fusemax_cloud", small), SHAPE)


def _small_groupings(space, most_rows: int):
    """Templates of partial groupings of two or more kernels with free factors, whose every
    kernel's grid is sampled whole and whose own grid can be costed row by row."""
    found = []
    for _, start in space.templates.groupings():
        template = space.templates[start]
        if len(template.parts) < 2 or template.absent or not 1 < template.size <= most_rows:
            continue
        lo, sizes = 0, []
        for part in template.parts:
            sizes.append(int(np.prod([len(v) for v in template.values[lo : lo + len(part.names)]])))
            lo += len(part.names)
        if max(sizes) <= PART_SAMPLE and sum(size > 1 for size in sizes) >= 2:
            found.append(start)
    return found


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_apart_finds_the_best_of_the_whole_grid(space, objective):
    templates = _small_groupings(space, 20_000)
    assert len(templates) >= 3
    for t in templates[:6]:
        apart = _Visits(space, Runner(space, objective, ModelOptions(), 10**7, None),
                        np.random.default_rng(0), 10**7, resample=False)  # fmt: skip
        found = apart.visit(t)
        every = Runner(space, objective, ModelOptions(), 10**7, None)
        brute = every(t, np.arange(space.templates[t].size))
        assert np.isfinite(brute).any()
        # the same best up to the tie-break's nudge (1e-9 relative, by the secondary)
        assert found == pytest.approx(brute.min(), rel=1e-8), t


def _masked_space():
    """sinks_window's partial groupings: kernels that skip empty tiles beside ones that
    do not (the grouping's switch is its varied kernel's)."""
    arch = load_architecture("fusemax_cloud")
    return build_space(cascade("sinks_window"), arch, dict(B=1, H=2, E=64, F=64, M=4096, P=4096))


@pytest.mark.parametrize("masked", [False, True])
def test_recorded_rows_are_the_simulators_numbers(space, masked):
    """Every row a visit or a kernel-by-kernel descent records, costed again as a whole."""
    if masked:
        space = _masked_space()
        templates = [
            start for _, start in space.templates.groupings()
            if len(space.templates[start].parts) > 1 and not space.templates[start].absent
        ]  # fmt: skip
        slots = [t + k for t in templates[:6] for k in range(len(space.templates.block(t)))]
        templates = [t for t in slots if not space.templates[t].absent]
        assert {space.templates[t].mapping.skip_empty_tiles for t in templates} == {False, True}
    else:
        templates = _small_groupings(space, 10**9)
    runner = Runner(space, "latency", ModelOptions(), 10**7, None)
    visits = _Visits(space, runner, np.random.default_rng(1), 10**7, resample=False)
    for t in templates[:12]:
        visits.visit(t)
        visits.refine(t, 2, 2)
    assert runner.records
    for record in runner.records:
        t = int(record["template"][0])
        template = space.templates[t]
        batch = evaluate_batch(
            space.cascade, space.arch, template.mapping, space.shape,
            template.params(record["row"]),
        )  # fmt: skip
        for field in ("cycles", "latency_s", "energy_pj", "dram_bytes", "valid"):
            assert np.array_equal(record[field], getattr(batch, field)), field


def test_the_budget_counts_candidates_not_kernels_costed_apart():
    """A short budget still reaches partial groupings: their kernels' samples (thousands of
    rows) are not candidates; the candidates they combine into are, within the budget."""
    from einsim.mapper import search

    tight = load_architecture("fusemax_cloud", {"levels.GB.capacity_bytes": 32768})
    shape = dict(B=64, H=12, E=64, F=64, M=4096, P=4096)
    result = search(cascade("fusemax_1pass"), tight, shape, "latency", "greedy", budget=30_000)
    assert result.evaluated <= 30_000
    assert len(result.mapping.kernels) == 2  # a partial grouping beats fused and unfused here
    assert result.gap >= 0


def _sum_of_least(visits, template) -> float:
    """The sum of a template's kernels' best sampled terms (each kernel sampled already)."""
    return sum(visits._parts_found(template, k).least for k in range(len(template.parts)))


def test_a_grouping_is_judged_at_least_its_kernels_best_terms():
    """What pruning a fusion move's groupings rests on: the terms are non-negative and add
    over kernels, so a grouping's judged value is at least the sum of its kernels' best."""
    space = _masked_space()
    runner = Runner(space, "latency", ModelOptions(), 10**7, None)
    visits = _Visits(space, runner, np.random.default_rng(2), 10**7, resample=False)
    starts = [s for _, s in space.templates.groupings() if len(space.templates[s].parts) > 1]
    checked = 0
    for t in starts[:8]:
        value = visits.visit(t)
        if np.isfinite(value):
            assert value >= _sum_of_least(visits, space.templates[t])
            assert value <= _sum_of_least(visits, space.templates[t]) * (1 + 1e-6)
            checked += 1
    assert checked >= 3


def test_a_grouping_past_the_threshold_costs_nothing():
    """A grouping whose kernels sampled already add past `above` is left unvisited: no
    candidate recorded, no kernel costed; under it, it is visited as before."""
    space = _masked_space()
    runner = Runner(space, "latency", ModelOptions(), 10**7, None)
    visits = _Visits(space, runner, np.random.default_rng(3), 10**7, resample=False)
    starts = [s for _, s in space.templates.groupings() if len(space.templates[s].parts) > 1]
    first = starts[0]
    visits.visit(first)

    # another grouping holding one of the kernels sampled (a kernel recurs across groupings)
    def sampled(t: int) -> bool:
        template = space.templates[t]
        return any(visits._parts_found(template, k) for k in range(len(template.parts)))

    again = next(t for t in starts[1:] if sampled(t))
    template = space.templates[again]
    known = sum(
        x.least for k in range(len(template.parts)) if (x := visits._parts_found(template, k))
    )
    evaluated, kernel_rows = runner.evaluated, runner.kernel_rows
    assert visits.visit(again, above=known / 2) == np.inf
    assert again not in visits.best
    assert (runner.evaluated, runner.kernel_rows) == (evaluated, kernel_rows)
    value = visits.visit(again, above=np.inf)
    assert np.isfinite(value) and again in visits.best
    assert runner.evaluated > evaluated


def test_a_grouping_holding_a_kernel_with_no_valid_row_costs_nothing_more():
    """Where one kernel's sample holds no valid row, no row of a grouping holding it is
    valid (each row takes one of that sample's): the grouping is judged inf without its
    other kernels costed or any candidate recorded (biformer at 64K: 277 of 323 visits)."""
    import dataclasses

    space = _masked_space()
    runner = Runner(space, "latency", ModelOptions(), 10**7, None)
    visits = _Visits(space, runner, np.random.default_rng(5), 10**7, resample=False)
    starts = [s for _, s in space.templates.groupings() if len(space.templates[s].parts) > 1]
    visits.visit(starts[0])
    first = space.templates[starts[0]]

    def beside_unsampled(t: int, sample) -> bool:
        template = space.templates[t]
        found = [visits._parts_found(template, k) for k in range(len(template.parts))]
        return any(x is sample for x in found) and any(x is None for x in found)

    # one of the first grouping's kernels, made invalid in every sampled row, and a
    # grouping holding it beside a kernel not sampled yet
    sample, again = next(
        (x, t) for k in range(len(first.parts)) if (x := visits._parts_found(first, k))
        for t in starts[1:] if beside_unsampled(t, x)
    )  # fmt: skip
    visits._parts[sample.key] = dataclasses.replace(
        sample, scores=np.full(len(sample.scores), np.inf)
    )
    evaluated, kernel_rows = runner.evaluated, runner.kernel_rows
    assert visits.visit(again) == np.inf
    assert (runner.evaluated, runner.kernel_rows) == (evaluated, kernel_rows)
    assert visits.best[again][0] == np.inf
    assert visits.visit(again) == np.inf  # remembered


def test_pruning_leaves_greedy_where_it_was(monkeypatch):
    """Greedy with its fusion moves pruned finds what it finds with every grouping visited,
    and costs fewer candidates (hyper_attention: most groupings hold a first kernel that
    costs several times the best grouping)."""
    from einsim.mapper import search, strategies

    shape = dict(B=64, H=12, E=64, F=64, M=1024, P=1024)
    arch = load_architecture("fusemax_cloud")
    pruned = search(cascade("hyper_attention"), arch, shape, "latency", "greedy")
    visit_apart = strategies._Visits._visit_apart
    monkeypatch.setattr(
        strategies._Visits, "_visit_apart",
        lambda self, t, template, above=np.inf: visit_apart(self, t, template),
    )  # fmt: skip
    monkeypatch.setattr(strategies._Visits, "_unbuilt_above", lambda self, groups, above: False)
    every = search(cascade("hyper_attention"), arch, shape, "latency", "greedy")
    assert pruned.report.latency_s == every.report.latency_s
    assert pruned.evaluated < every.evaluated


def test_a_first_template_past_the_threshold_stays_unbuilt():
    """A partial grouping's first template whose groups' kernels, sampled in other
    groupings' first templates, add past `above` is neither built nor costed; under it, it
    is built and visited (a space of its own: nothing in it built by other tests)."""
    arch = load_architecture("fusemax_cloud")
    shape = dict(B=1, H=2, E=64, F=64, M=2048, P=2048)
    space = build_space(cascade("sinks_window"), arch, shape)
    runner = Runner(space, "latency", ModelOptions(), 10**7, None)
    visits = _Visits(space, runner, np.random.default_rng(4), 10**7, resample=False)
    partial = [(f, s) for f, s in space.templates.groupings() if _groups_of(f)]
    (label, first), rest = partial[0], partial[1:]
    assert np.isfinite(visits.visit(first, groups=_groups_of(label)))
    known = visits._first_least
    assert set(known) == set(_groups_of(label))
    # a grouping sharing a group with the first: its known kernels' best terms
    label, again = next((f, s) for f, s in rest if set(_groups_of(f)) & set(known))
    least = sum(known[g] for g in _groups_of(label) if g in known)
    assert least > 0
    built, evaluated = space.templates.built, runner.evaluated
    assert visits.visit(again, above=least / 2, groups=_groups_of(label)) == np.inf
    assert (space.templates.built, runner.evaluated) == (built, evaluated)
    assert again not in visits.best
    assert np.isfinite(visits.visit(again, above=np.inf, groups=_groups_of(label)))
    assert space.templates.built > built and runner.evaluated > evaluated


def test_a_fusion_move_visits_the_lowest_known_bound_first():
    """`_Visits.least_first`: a move's templates by the sum of their groups' best terms
    known so far (an unknown group adds 0), ties in order, each bound read again when its
    template comes up (a visit samples groups); a search that does not cost kernels apart
    keeps the order."""
    space = _masked_space()
    runner = Runner(space, "latency", ModelOptions(), 10**7, None)
    visits = _Visits(space, runner, np.random.default_rng(4), 10**7, resample=False)
    visits._first_least.update({"B": 1.0})
    groups = {10: ("A", "X"), 11: ("B",), 12: ("C",), 13: ()}
    order = visits.least_first([11, 10, 12, 13], groups.__getitem__)
    assert next(order) == 10  # bound 0, ties in order (12, 13 come later)
    visits._first_least["C"] = 2.0  # as if the visit of 10 had sampled C
    assert list(order) == [13, 11, 12]
    resampled = _Visits(space, runner, np.random.default_rng(4), 10**7, resample=True)
    resampled._first_least.update({"B": 1.0})
    assert list(resampled.least_first([11, 10, 12], groups.__getitem__)) == [11, 10, 12]
