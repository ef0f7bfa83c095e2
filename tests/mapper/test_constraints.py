"""Constraints: strict parsing, contradictions named, and every strategy honouring a pinned
factor, a pinned binding, a fixed fusion, a forbidden loop order and a kept tensor."""

import pytest

from einsim.einsum import Op, SpecError
from einsim.mapper import STRATEGIES, Constraints, build_space, constraints_from_dict, search
from einsim.simulator import load_architecture
from einsim.workloads import cascade

GEMM = {"M": 8, "N": 6, "K": 4}
ATTENTION = dict(B=1, H=1, E=2, F=2, M=8, P=8)
BUDGET = {"exhaustive": 10**6, "random": 1500, "greedy": 1500, "anneal": 1500}


@pytest.fixture(scope="module")
def systolic():
    return load_architecture("systolic", {"units.2d.rows": 4, "units.2d.cols": 4})


@pytest.fixture(scope="module")
def two_arrays():
    small = {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}
    return load_architecture("fusemax_cloud", small)


def _search(cascade_name, arch, shape, strategy, constraints):
    budget = BUDGET[strategy]
    if strategy == "exhaustive":
        space = build_space(cascade(cascade_name), arch, shape, constraints_from_dict(constraints))
        budget = max(space.size, 1)
    return search(cascade(cascade_name), arch, shape, "latency", strategy, budget, 0, constraints)


def _templates(result):
    """The templates of every costed candidate (what a strategy actually looked at)."""
    return [result.space.templates[t] for t in sorted(set(result.candidates.template))]


def test_unknown_keys_are_refused_with_the_known_ones():
    with pytest.raises(SpecError, match=r"unknown key 'factorz'; known keys: fusion, binding"):
        constraints_from_dict({"factorz": {"GB.M": 2}})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"factors": {"GB.M": 2, "fused.GB.M": 4}}, "GB.M pinned to 2 .* and to 4"),
        ({"keep": {"GB": ["A"]}, "bypass": {"GB": ["A", "B"]}}, "A both kept and bypassed at GB"),
        ({"fusion": "sometimes"}, "'sometimes' is not one of"),
        ({"factors": {"GB.M": 0}}, "expected a positive integer"),
    ],
)
def test_a_contradictory_or_malformed_set_names_the_conflict(data, words):
    with pytest.raises(SpecError, match=words):
        constraints_from_dict(data)


def test_pinned_factors_on_one_key_twice_conflict():
    with pytest.raises(SpecError, match=r"GB.M pinned to 2 .* and to 3"):
        Constraints(factors=(("GB.M", 2), ("GB.M", 3)))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"binding": {"QK": "3d"}}, r"has no unit '3d'; units: 2d, 1d"),
        ({"factors": {"SRAM.P": 2}}, r"'SRAM' is not a level; .* DRAM, GB, spatial"),
        ({"factors": {"GB.Q": 2}}, r"unknown rank 'Q'"),
        ({"keep": {"GB": ["QQ"]}}, r"unknown tensor\(s\) QQ"),
        ({"bypass": {"DRAM": ["Q"]}}, r"bypass.DRAM: not an on-chip level"),
        ({"bypass": {"GB": ["RM"]}}, r"RM must stay on chip"),
        ({"forbid_orders": [["P", "M1"], ["M1", "P"]], "fusion": "fused"}, "is forbidden"),
    ],
)
def test_constraints_that_contradict_the_cascade_or_hardware_name_the_conflict(
    two_arrays, data, words
):
    with pytest.raises(SpecError, match=words):
        build_space(cascade("fusemax_1pass"), two_arrays, ATTENTION, constraints_from_dict(data))


def test_a_binding_to_a_unit_that_lowers_an_operator_runs_it_lowered(two_arrays):
    # 2d has no div of its own (fusemax_cloud.yaml): pinned there, AV runs it lowered
    assert not two_arrays.unit("2d").supports(Op.DIV)
    result = search(cascade("fusemax_1pass"), two_arrays, ATTENTION, "latency", "greedy", 2000,
                    constraints={"binding": {"AV": "2d"}, "fusion": "fused"})  # fmt: skip
    assert result.mapping.kernels[0].unit_of("AV") == "2d"
    assert "AV" in result.report.lowered_einsums


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_honours_a_pinned_factor_and_a_forbidden_order(systolic, strategy):
    constraints = {"factors": {"GB.M": 2, "spatial.N": 2}, "forbid_orders": [["N", "M"]]}
    result = _search("gemm", systolic, GEMM, strategy, constraints)
    loops = {f"{lp.level}.{lp.rank}": lp.factor for lp in result.mapping.kernels[0].loops}
    assert loops["GB.M"] == 2
    assert dict(result.mapping.kernels[0].spatial_factors)["N"] == 2
    for template in _templates(result):
        for kernel in template.mapping.kernels:
            order = [lp.rank for lp in kernel.loops if lp.level == "DRAM"]
            assert "N" not in order or "M" not in order or order.index("M") < order.index("N")


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_honours_a_binding_a_fusion_and_a_kept_tensor(two_arrays, strategy):
    pinned = {"binding": {"SLNV": "1d"}, "fusion": "fused", "keep": {"GB": ["QK"]}}
    pinned |= {"factors": {"spatial.P": 4, "GB.P": 2}, "forbid_orders": [["E", "P"], ["F", "P"]]}
    result = _search("fusemax_1pass", two_arrays, ATTENTION, strategy, pinned)
    ((kernel),) = result.mapping.kernels
    assert kernel.unit_of("SLNV") == "1d"
    assert "QK" in kernel.kept_at("GB")
    assert dict(kernel.spatial_factors)["P"] == 4
    assert [lp.factor for lp in kernel.loops if (lp.level, lp.rank) == ("GB", "P")] == [2]
    for template in _templates(result):
        assert len(template.mapping.kernels) == 1
        assert template.mapping.kernels[0].unit_of("SLNV") == "1d"
        assert "QK" in template.mapping.kernels[0].kept_at("GB")
        order = [lp.rank for lp in template.mapping.kernels[0].loops if lp.level == "DRAM"]
        assert all(order.index("P") < order.index(r) for r in ("E", "F") if r in order)


@pytest.mark.parametrize("strategy", ["random", "greedy", "anneal"])
def test_unfused_kernels_keep_what_they_are_told_to(two_arrays, strategy):
    constraints = {"fusion": "unfused", "keep": {"GB": ["Q"]}}
    result = _search("fusemax_1pass", two_arrays, ATTENTION, strategy, constraints)
    readers = [k for k in result.mapping.kernels if "QK" in k.einsums]
    assert readers and all("Q" in k.kept_at("GB") for k in readers)


def test_a_factor_no_mapping_can_honour_is_refused(systolic):
    # fusion unfused streams every operand with no loops: nothing to pin GB.M on
    data = {"fusion": "unfused", "factors": {"GB.P": 2}}
    with pytest.raises(SpecError, match=r"no mapping of fusemax_1pass .* pinned factor \(GB.P\)"):
        two = load_architecture("fusemax_cloud", {"units.2d.rows": 4, "units.2d.cols": 4})
        build_space(cascade("fusemax_1pass"), two, ATTENTION, constraints_from_dict(data))
