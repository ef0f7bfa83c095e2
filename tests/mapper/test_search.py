"""The mapper: exhaustive against an independent brute force, the other strategies near it,
the FuseMax and FLAT hand-written mappings matched or beaten, every attention variant."""

import itertools
import re

import numpy as np
import pytest

from einsim.einsum import SpecError, op_counts
from einsim.mapper import STRATEGIES, build_space, pareto_mask, schedule_stages, search
from einsim.simulator import (
    Kernel,
    Loop,
    Mapping,
    evaluate,
    evaluate_batch,
    load_architecture,
    load_mapping,
)
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import ATTENTION, attention, cascade

GEMM = {"M": 8, "N": 6, "K": 4}


def _choices(n: int, cap: int) -> list[int]:
    """Divisors of n up to cap, powers of two up to cap, and cap: the padded tile set."""
    cap = min(n, cap)
    return sorted(
        {d for d in range(1, cap + 1) if n % d == 0}
        | {1 << k for k in range(8) if 1 << k <= cap}
        | {cap}
    )


def _brute_force(arch, shape, objective: str) -> float:
    """Every spatial pair, loop orders at both levels (each rank not unrolled may also be
    left out of the loops: streamed whole through the array), keep subset and factor, built
    here from scratch and costed by the simulator; nothing pruned."""
    best = np.inf
    ranks = ("K", "M", "N")
    gemm = cascade("gemm")
    units = [(u.name, u.dims) for u in arch.units]
    for unit, dims in units:
        pairs = itertools.permutations(ranks, len(dims))
        for spatial in pairs:
            streamed = [r for r in ranks if r not in spatial]
            looped_sets = [
                tuple(r for r in ranks if r not in dropped)
                for k in range(len(streamed) + 1)
                for dropped in itertools.combinations(streamed, k)
            ]
            for off, on in (
                (off, on)
                for lp in looped_sets
                for off in itertools.permutations(lp)
                for on in itertools.permutations(lp)
            ):
                for k in range(4):
                    for keep in itertools.combinations(("A", "B", "Z"), k):
                        loops = [Loop("DRAM", r, "rest") for r in off]
                        loops += [Loop("GB", r, 1) for r in on]
                        kernel = Kernel(
                            "g", ("Z",), (("Z", unit),), ((unit, spatial),),
                            tuple(loops), (("GB", keep),) if keep else (),
                        )  # fmt: skip
                        mapping = Mapping("bf", "gemm", (kernel,), ())
                        names, grids = [], []
                        for r, d in zip(spatial, dims, strict=True):
                            names.append(f"g.spatial.{r}")
                            grids.append(_choices(shape[r], d))
                        for r in on:
                            names.append(f"g.GB.{r}")
                            grids.append(_choices(shape[r], shape[r]))
                        mesh = np.meshgrid(*map(np.array, grids), indexing="ij")
                        params = {n: m.ravel() for n, m in zip(names, mesh, strict=True)}
                        batch = evaluate_batch(gemm, arch, mapping, shape, params)
                        value = {"latency": batch.latency_s, "energy": batch.energy_pj}.get(
                            objective, batch.latency_s * batch.energy_pj
                        )
                        value = np.where(batch.valid, value, np.inf)
                        best = min(best, float(value.min()))
    return best


@pytest.fixture(scope="module")
def small_array():
    return load_architecture("systolic", {"units.2d.rows": 4, "units.2d.cols": 4})


@pytest.fixture(scope="module")
def optimum(small_array):
    return search(cascade("gemm"), small_array, GEMM, "energy", "exhaustive", budget=10**6)


def test_exhaustive_finds_the_brute_force_optimum(small_array, optimum):
    result = optimum
    truth = _brute_force(small_array, GEMM, "energy")
    assert result.best_value == pytest.approx(truth, rel=1e-12)
    assert result.pruned > 0  # the pruning did something, and lost nothing


@pytest.mark.parametrize("strategy", ["random", "greedy", "anneal"])
def test_other_strategies_reach_within_5_percent_with_a_budget_of_3000(
    small_array, optimum, strategy
):
    result = search(cascade("gemm"), small_array, GEMM, "energy", strategy, budget=3000)
    assert result.evaluated <= 3000
    assert result.best_value <= 1.05 * optimum.best_value


def test_same_seed_same_result_and_the_registry_lists_every_strategy(small_array):
    assert set(STRATEGIES) >= {"exhaustive", "random", "greedy", "anneal"}
    one = search(cascade("gemm"), small_array, GEMM, "edp", "random", budget=3000, seed=7)
    two = search(cascade("gemm"), small_array, GEMM, "edp", "random", budget=3000, seed=7)
    assert one.mapping == two.mapping
    assert one.candidates.equals(two.candidates)


def test_best_mapping_re_evaluates_to_the_same_numbers(small_array):
    result = search(cascade("gemm"), small_array, GEMM, "latency", "greedy", budget=5000)
    report = evaluate(cascade("gemm"), small_array, result.mapping, GEMM)
    assert report.latency_s == result.report.latency_s
    row = result.candidates.set_index(["template", "row"]).loc[
        (result.best_template, result.best_row)
    ]
    assert row.latency_s == pytest.approx(report.latency_s, rel=1e-12)
    assert row.energy_pj == pytest.approx(report.energy_pj, rel=1e-12)


def test_a_space_is_built_once_per_problem_and_is_read_only(small_array):
    space = build_space(cascade("gemm"), small_array, GEMM)
    assert build_space(cascade("gemm"), small_array, dict(GEMM)) is space
    assert build_space(cascade("gemm"), small_array, GEMM | {"K": 8}) is not space
    with pytest.raises(ValueError, match="read-only"):
        space.templates[0].values[0][0] = 3


def test_a_progress_callable_is_told_every_costed_candidate_and_the_end(small_array):
    calls = []
    result = search(cascade("gemm"), small_array, GEMM, "latency", "random", budget=1000,
                    progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    *running, end = calls
    assert end == (result.evaluated, result.evaluated)
    done = [d for d, _ in running]
    assert done == sorted(done) and done[-1] == result.evaluated
    assert {total for _, total in running} == {1000}
    costed = result.candidates.costed.to_numpy()  # first costing of each, in order
    assert np.all(np.diff(costed) > 0) and costed[-1] < result.evaluated


def test_exhaustive_refuses_a_space_larger_than_the_budget(small_array):
    with pytest.raises(SpecError, match="raise the budget or use strategy 'anneal'"):
        search(cascade("gemm"), small_array, GEMM, strategy="exhaustive", budget=100)


def test_pareto_mask_matches_pairwise_dominance(rng):
    points = rng.integers(0, 6, size=(200, 3)).astype(float)
    dominated = [any(np.all(q <= p) and np.any(q < p) for q in points) for p in points]
    np.testing.assert_array_equal(pareto_mask(points), ~np.array(dominated))


def test_pareto_front_is_valid_and_holds_the_best(small_array):
    result = search(cascade("gemm"), small_array, GEMM, "latency", "greedy", budget=5000)
    assert result.pareto.valid.all()
    assert result.pareto.latency_s.min() == pytest.approx(result.report.latency_s)


def test_stages_respect_dependencies_and_lag_loop_carried_consumers():
    """A -> B on different units, C reads B's previous tile (carried). B cannot share A's
    stage of the same tile, but may finish the previous tile beside A (lag 1), and C then
    follows B on its unit: one stage of max(5, 2 + 4) = 6 cycles, not 5 + 2 + 4."""
    stages, score = schedule_stages(
        ["A", "B", "C"],
        {"A": "x", "B": "y", "C": "y"},
        {"A": 5.0, "B": 2.0, "C": 4.0},
        [("A", "B")],
        [("B", "C")],
    )
    assert stages == (("A", "B", "C"),)
    assert score == 6.0
    # without the lag B would wait for A: same-tile order is enforced
    stages, score = schedule_stages(
        ["A", "B"], {"A": "x", "B": "x"}, {"A": 5.0, "B": 2.0}, [("A", "B")], []
    )
    assert score == 7.0


FUSEMAX_SHAPES = [1024, 65536, 1 << 20]


@pytest.mark.parametrize("seq", FUSEMAX_SHAPES)
def test_mapper_rediscovers_fusemax_without_hints(seq):
    """No hints: the mapper's best is at least as fast as the hand-written +Binding mapping
    (FuseMax, MICRO 2024, Section 6.3) at BERT 1K, 64K and 1M."""
    shape = dict(B=64, H=12, E=64, F=64, M=seq, P=seq)
    arch = load_architecture("fusemax_cloud")
    fusemax = cascade("fusemax_1pass")
    hand = evaluate(fusemax, arch, load_mapping("fusemax"), shape)
    result = search(fusemax, arch, shape, "latency", "greedy", budget=100_000)
    assert result.report.valid
    assert result.report.latency_s <= hand.latency_s
    assert len(result.mapping.kernels) == 1 and result.mapping.kernels[0].stages


def test_mapper_matches_flat_on_flat_hardware():
    """FLAT's hardware pipelines subtract-and-exp (flat.yaml's chained_ops): given that,
    the mapper's best is at least as fast as the bundled FLAT mapping and spends no more
    energy (BERT 1K)."""
    shape = dict(B=64, H=12, E=64, F=64, M=1024, P=1024)
    arch = load_architecture("flat_cloud")
    stable = cascade("stable_3pass")
    hand = evaluate(stable, arch, load_mapping("flat"), shape)
    constraints = {"chained_ops": [["sub", "exp"]]}
    result = search(stable, arch, shape, "latency", "greedy", 100_000, constraints=constraints)
    assert result.report.latency_s <= hand.latency_s
    assert result.report.energy_pj <= hand.energy_pj


@pytest.mark.parametrize("variant", list(ATTENTION))
def test_every_attention_variant_maps_on_fusemax_cloud_or_says_why(variant):
    """Mappable exactly when every Einsum with work has a unit with all its operators
    (checked here from the op counts); otherwise the error names that Einsum."""
    arch = load_architecture("fusemax_cloud")
    built = attention(variant)
    every = dict(B=1, H=2, G=1, A=16, E=16, F=16, M=256, P=256, X=16, Y=16, T=4)
    # Only the ranks this cascade knows, and the batch ranks: any other is refused.
    shape = {k: v for k, v in every.items() if k in cascade_names(built) or k in DEFAULT_BATCH}
    try:
        counts_by_einsum = op_counts(built, shape)
    except SpecError as error:  # a data-dependent point count (top-k selection)
        words = f"({re.escape(str(error))}|cannot map {variant} on)"  # whichever comes first
        with pytest.raises(SpecError, match=words):
            search(built, arch, shape, "latency", "greedy", budget=600)
        return
    unmappable = [
        name
        for name, counts in counts_by_einsum.items()
        if counts and not any(all(u.runs(op) for op in counts) for u in arch.units)
    ]
    if unmappable:
        with pytest.raises(SpecError, match=f"cannot map {variant} .*Einsum {unmappable[0]} "):
            search(built, arch, shape, "latency", "greedy", budget=600)
        return
    result = search(built, arch, shape, "latency", "greedy", budget=600)
    assert result.report.valid
    assert np.isfinite(result.report.latency_s) and result.report.latency_s > 0


def test_an_unmappable_cascade_names_the_missing_operators():
    arch = load_architecture("flat_cloud", {"units.1d.ops": {"mac": {"cycles": 1, "energy_pj": 1}}})
    with pytest.raises(SpecError, match=r"Einsum GM needs max and no unit supports or lowers all"):
        build_space(cascade("stable_3pass"), arch, dict(E=4, F=4, M=8, P=8))


def test_unknown_strategy_and_objective_are_refused(small_array):
    with pytest.raises(SpecError, match="known: exhaustive"):
        search(cascade("gemm"), small_array, GEMM, strategy="bayes")
    with pytest.raises(SpecError, match="latency, energy, edp"):
        search(cascade("gemm"), small_array, GEMM, objective="speed")
