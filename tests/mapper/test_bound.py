"""The lower bound (mapper.bound): below every costed candidate of random small spaces and of
every registered attention variant, equal to the GEMM's closed form, and the exhaustive
optimum of the systolic GEMM (checked by the brute force of test_search) above it."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.einsum import SpecError, pass_analysis
from einsim.mapper import search
from einsim.mapper.bound import gap, lower_bound
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import ATTENTION, attention, cascade

REL = 1e-9  # float rounding of the model's sums


def _assert_below_every_candidate(result, bound) -> None:
    valid = result.candidates[result.candidates.valid]
    assert len(valid) > 0
    assert valid.latency_s.min() >= bound.latency_s * (1 - REL)
    assert valid.energy_pj.min() >= bound.energy_pj * (1 - REL)
    assert result.best_value >= result.lower_bound * (1 - REL)
    assert result.gap == pytest.approx(result.best_value / result.lower_bound - 1)


def test_gemm_bound_is_the_closed_form():
    """M N K MACs over R x C lanes; A, B read once and Z written once."""
    arch = load_architecture("systolic", {"units.2d.rows": 4, "units.2d.cols": 4})
    m, n, k = 8, 6, 4
    bound = lower_bound(cascade("gemm"), arch, {"M": m, "N": n, "K": k})
    assert bound.compute_cycles == pytest.approx(m * n * k / 16)
    assert bound.traffic_bytes == (m * k + k * n + m * n) * arch.word_bytes
    dram = arch.levels[0]
    cycles = max(m * n * k / 16, bound.traffic_bytes / dram.bandwidth_bytes_per_cycle)
    assert bound.latency_s == pytest.approx(cycles / arch.clock_hz)
    mac_pj = dict(arch.units[0].ops)[next(op for op, _ in arch.units[0].ops if op.value == "mac")]
    dram_pj = bound.traffic_bytes * (dram.read_pj_per_byte + dram.write_pj_per_byte) / 2
    leak = arch.leakage_w * bound.latency_s * 1e12
    assert bound.energy_pj == pytest.approx(m * n * k * mac_pj.energy_pj + dram_pj + leak)


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_systolic_gemm_exhaustive_optimum_against_the_bound(objective):
    """Exhaustive proves the optimum in the space; the bound lies below it. Latency: the
    array is charged fill and drain per fold, which no bound-free mapping avoids, so the gap
    is positive; the optimum must still respect it."""
    arch = load_architecture("systolic", {"units.2d.rows": 4, "units.2d.cols": 4})
    shape = {"M": 8, "N": 6, "K": 4}
    result = search(cascade("gemm"), arch, shape, objective, "exhaustive", budget=10**6)
    bound = lower_bound(cascade("gemm"), arch, shape)
    _assert_below_every_candidate(result, bound)
    assert result.optimal
    assert 0 <= result.gap < 10  # a bound within an order of magnitude of the optimum
    assert result.lower_bound == pytest.approx(bound.objective(objective))


def test_gemm_without_fill_and_drain_meets_the_bound():
    """On an array without fill/drain, a 16 x 16 x 16 GEMM on 4 x 4 PEs has a mapping with
    every lane busy every cycle: the best found meets the compute bound (gap 0)."""
    arch = load_architecture(
        "systolic", {"units.2d.rows": 4, "units.2d.cols": 4, "units.2d.fill_drain": False}
    )
    shape = {"M": 16, "N": 16, "K": 16}
    result = search(cascade("gemm"), arch, shape, "latency", "greedy", budget=20_000)
    assert result.gap == pytest.approx(0.0, abs=1e-9)
    assert result.optimal


@settings(max_examples=12, deadline=None)
@given(
    m=st.integers(1, 24),
    n=st.integers(1, 24),
    k=st.integers(1, 24),
    rows=st.sampled_from([2, 4, 8]),
    cols=st.sampled_from([2, 4, 8]),
    capacity=st.sampled_from([64, 512, 65536]),
    seed=st.integers(0, 2**16),
)
def test_bound_below_every_candidate_of_random_gemm_spaces(m, n, k, rows, cols, capacity, seed):
    arch = load_architecture(
        "systolic",
        {"units.2d.rows": rows, "units.2d.cols": cols, "levels.GB.capacity_bytes": capacity},
    )
    shape = {"M": m, "N": n, "K": k}
    try:
        result = search(cascade("gemm"), arch, shape, "latency", "random", 300, seed=seed)
    except SpecError:  # nothing fits the buffer: no candidate to check
        return
    _assert_below_every_candidate(result, lower_bound(cascade("gemm"), arch, shape))


SMALL = dict(B=1, H=2, G=1, A=16, E=16, F=16, M=128, P=128, X=8, Y=16, T=4)


@pytest.mark.parametrize("variant", list(ATTENTION))
def test_bound_below_every_candidate_of_every_variant(variant):
    arch = load_architecture("fusemax_cloud")
    built = attention(variant)
    shape = {k: v for k, v in SMALL.items() if k in cascade_names(built) or k in DEFAULT_BATCH}
    try:
        result = search(built, arch, shape, "latency", "random", budget=150, seed=1)
    except SpecError:  # unmappable on fusemax_cloud or unpriced (test_search says why)
        return
    _assert_below_every_candidate(result, lower_bound(built, arch, shape))


def test_gap():
    assert gap(2.0, 1.0) == 1.0
    assert math.isinf(gap(1.0, 0.0))
    assert np.isfinite(gap(1.0, 1e-30))


@pytest.mark.parametrize("variant", ["naive_2pass", "stable_3pass"])
def test_passes_raise_the_traffic_term_only_where_their_state_does_not_fit(variant):
    """FuseMax's pass rule: with a buffer smaller than one row over M, each input over M is
    read once per pass (K and V here are smaller than any P x M intermediate spilled);
    with a buffer that holds the row, once. Every costed candidate stays above."""
    built = attention(variant)
    shape = dict(B=1, H=1, E=16, F=16, M=2048, P=64)
    small = {"units.2d.rows": 8, "units.2d.cols": 8, "units.1d.lanes": 8}
    roomy = load_architecture("fusemax_cloud", small)
    tight = load_architecture("fusemax_cloud", small | {"levels.GB.capacity_bytes": 2048})
    word = roomy.word_bytes
    q, k, v, out = 16 * 64, 16 * 2048, 16 * 2048, 16 * 64
    count = pass_analysis(built)["M"]
    assert count > 1
    assert lower_bound(built, roomy, shape).traffic_bytes == (q + k + v + out) * word
    bound = lower_bound(built, tight, shape)
    assert bound.traffic_bytes == (q + count * (k + v) + out) * word
    result = search(built, tight, shape, "latency", "greedy", budget=5000)
    _assert_below_every_candidate(result, bound)


_WORK = st.one_of(st.floats(0.5, 100.0), st.just(math.inf))  # inf: the unit cannot run it


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(_WORK, st.floats(0.5, 100.0), st.booleans()).map(
            lambda t: [t[1], t[0]] if t[2] else [t[0], t[1]]  # either unit may lack it
        ),
        min_size=1,
        max_size=4,
    )
)
def test_two_unit_makespan_is_the_least_split_load(per_unit):
    """Against a brute force over every split of each Einsum's work in steps of 1/40: never
    above the best split found (it is the least), and never below it by more than one step
    of the largest finite load; never below the mean of the fastest (the old bound)."""
    from einsim.mapper.bound import _two_unit_makespan

    found = _two_unit_makespan([list(w) for w in per_unit])
    steps = np.linspace(0.0, 1.0, 41)
    shares = np.array(np.meshgrid(*[steps] * len(per_unit))).reshape(len(per_unit), -1)
    work = np.array(per_unit)  # (einsums, 2); a share of 0 on a unit costs nothing there
    with np.errstate(invalid="ignore"):  # 0 x inf where a unit lacks it and takes none
        one = np.where(shares > 0, shares * work[:, :1], 0.0).sum(axis=0)
        two = np.where(shares < 1, (1 - shares) * work[:, 1:], 0.0).sum(axis=0)
    best = float(np.maximum(one, two).min())
    largest = max(x for w in per_unit for x in w if math.isfinite(x))
    assert found <= best * (1 + 1e-12)
    assert found >= best - largest / 40 * len(per_unit)
    assert found >= sum(min(w) for w in per_unit) / 2 * (1 - 1e-12)


@pytest.mark.parametrize("variant", ["landmark", "block_topk"])
def test_a_data_dependent_filter_is_bounded_by_its_static_part(variant):
    """The model cannot know which tiles a data-dependent selection empties: a tile its
    static conjuncts keep is computed whole. The bound's compute energy holds at least the
    MACs of QK and SLNV over the causal points m <= p (their static part, counted here by
    numpy), not the declared density's share of them (at L=2048, 5 of 128 blocks: 8x less);
    every costed candidate, tile-skipping ones included, stays above the bound."""
    arch = load_architecture("fusemax_cloud", {"units.2d.rows": 16, "units.2d.cols": 16})
    built = attention(variant, M0=16, BS=16)
    mac_pj = next(cost for op, cost in arch.unit("2d").ops if op.value == "mac")
    for length in (128, 2048):
        m, p = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
        static_macs = 2 * np.count_nonzero(m <= p) * 8  # QK over e, SLNV over f
        bound = lower_bound(built, arch, dict(B=1, H=1, E=8, F=8, M=length, P=length))
        assert bound.compute_energy_pj >= static_macs * mac_pj.energy_pj * (1 - REL)
    shape = dict(B=1, H=1, E=8, F=8, M=128, P=128)
    result = search(built, arch, shape, "latency", "random", budget=400, seed=3)
    _assert_below_every_candidate(result, lower_bound(built, arch, shape))
    templates = set(result.candidates.template[result.candidates.valid])
    skips = {dict(result.space.templates[t].structure)["skip_empty_tiles"] for t in templates}
    assert "yes" in skips


@pytest.mark.parametrize(
    "shape",
    [
        {"M": 2, "N": 2, "K": 64},  # two ranks of 2: at most 4 x 2 lanes of 4 x 4
        {"M": 3, "N": 16, "K": 2},  # 3 on a dimension of 4
        {"M": 6, "N": 5, "K": 8},  # padding: 6 on 4 rows takes 2 folds, 3 lanes each
        {"M": 1, "N": 64, "K": 64},  # a rank of 1 leaves the array to the other two
    ],
)
def test_lanes_of_small_ranks_meet_the_exhaustive_optimum(shape):
    """A unit's dimension unrolls one rank of the Einsum, by at most its size (with the
    padding of a partial fold): the bound's compute term is the exhaustive optimum of a GEMM
    on a 4 x 4 array without fill/drain (gap 0), where MACs / 16 lanes is below it."""
    arch = load_architecture(
        "systolic", {"units.2d.rows": 4, "units.2d.cols": 4, "units.2d.fill_drain": False}
    )
    result = search(cascade("gemm"), arch, shape, "latency", "exhaustive", budget=10**6)
    bound = lower_bound(cascade("gemm"), arch, shape)
    assert result.optimal
    _assert_below_every_candidate(result, bound)
    assert result.gap == pytest.approx(0.0, abs=1e-9)
    macs = shape["M"] * shape["N"] * shape["K"]
    # brute force: the fewest cycles over every pair of ranks on the two dimensions and
    # every factor up to 4, padding included
    best = math.inf
    for first, second in itertools.permutations(shape, 2):
        for f1 in range(1, 5):
            for f2 in range(1, 5):
                folds = math.ceil(shape[first] / f1) * math.ceil(shape[second] / f2)
                others = macs // (shape[first] * shape[second])
                best = min(best, folds * others)
    assert bound.compute_cycles == pytest.approx(best)
    if shape["M"] * shape["N"] * shape["K"] / 16 < best:
        assert result.best_value > macs / 16 / arch.clock_hz


_SMALL_ARRAYS = {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}


@pytest.mark.parametrize("variant", ["naive_2pass", "stable_3pass"])
@pytest.mark.parametrize("capacity", [512, 1024])
def test_rows_held_between_passes_meet_the_exhaustive_optimum(variant, capacity):
    """M=64 rows on 4 x 4 arrays with a buffer of a few rows: one kernel keeps QK, SN, A
    over the whole of M for each query it unrolls, so few queries fit the buffer (few
    lanes busy), or a cut sends an M x P tensor through a slow DRAM. The bound takes the
    cheaper case; the exhaustive optimum over the space stays above it, and the bound
    exceeds the one a roomy buffer gives (where the rows fit for every lane)."""
    slow = {"levels.DRAM.bandwidth_bytes_per_s": 1.88e9}  # 2 bytes a cycle
    arch = load_architecture(
        "fusemax_cloud", _SMALL_ARRAYS | slow | {"levels.GB.capacity_bytes": capacity}
    )
    roomy = load_architecture("fusemax_cloud", _SMALL_ARRAYS | slow)
    built, shape = attention(variant), dict(B=1, H=1, E=4, F=4, M=64, P=16)
    bound = lower_bound(built, arch, shape)
    result = search(built, arch, shape, "latency", "exhaustive", budget=3_000_000)
    assert result.optimal
    _assert_below_every_candidate(result, bound)
    assert bound.latency_s > lower_bound(built, roomy, shape).latency_s * 1.1


@pytest.mark.parametrize(
    "variant", ["naive_2pass", "stable_3pass", "landmark", "biformer", "vmoba", "hip"]
)
def test_bound_below_every_candidate_where_rows_outgrow_the_arrays(variant):
    """Every multi-pass variant whose passes run over a rank longer than the arrays (16 x
    16 here: M, N or P of 128): random and greedy candidates stay above the bound."""
    arch = load_architecture(
        "fusemax_cloud",
        {"units.2d.rows": 16, "units.2d.cols": 16, "units.1d.lanes": 16}
        | {"levels.GB.capacity_bytes": 4096, "levels.DRAM.bandwidth_bytes_per_s": 1.88e10},
    )
    built = attention(variant)
    shape = {k: v for k, v in SMALL.items() if k in cascade_names(built) or k in DEFAULT_BATCH}
    bound = lower_bound(built, arch, shape)
    for strategy, budget in (("random", 150), ("greedy", 3000)):
        try:
            result = search(built, arch, shape, "latency", strategy, budget=budget, seed=2)
        except SpecError:  # nothing fits the small buffer
            continue
        _assert_below_every_candidate(result, bound)


@pytest.mark.parametrize(
    "shape", [dict(B=1, H=1, E=2, F=2, M=32, P=8), dict(B=1, H=1, E=4, F=2, M=16, P=8)]
)
def test_a_recurrence_does_not_unroll_its_scanned_rank(shape, monkeypatch):
    """titans' memory MEM[m+1] = 0.99 MEM[m] + UPD[m] and the Einsums in its cycle (PRED,
    ERR, UPD read MEM[m]) step through M one m at a time: E x F lanes at most, not M x F.
    The exhaustive optimum on 4 x 4 arrays stays above the bound, which is above the bound
    that lets them unroll M (E x F = 4 or 8 of 16 lanes here)."""
    from einsim.mapper import bound as bound_module

    arch = load_architecture(
        "fusemax_cloud", {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}
    )
    built = attention("titans_memory")
    assert bound_module._scanned_ranks(built) == dict.fromkeys(
        ["PRED", "ERR", "UPD", "MEM"], frozenset({"M"})
    )
    bound = lower_bound(built, arch, shape)
    result = search(built, arch, shape, "latency", "exhaustive", budget=3_000_000)
    assert result.optimal
    _assert_below_every_candidate(result, bound)
    monkeypatch.setattr(bound_module, "_scanned_ranks", lambda cascade: {})
    assert bound.latency_s > lower_bound(built, arch, shape).latency_s * 1.5
