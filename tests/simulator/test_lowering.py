"""Lowerings (simulator/lowering.py): each identity equals its operator numerically (numpy
references written here, not the executor's), uses exactly its listed steps, and a unit
that lowers an operator charges the sum of the steps' own costs."""

from collections import Counter

import numpy as np
import pytest

from einsim.einsum import Op, SpecError
from einsim.mapper import search
from einsim.simulator import load_architecture
from einsim.simulator.lowering import LOWERINGS, resolve
from einsim.simulator.spatial.architecture import ComputeUnit, OpCost
from einsim.workloads import ATTENTION, attention

REFERENCE = {
    Op.NEG: lambda x: -x,
    Op.SUB: lambda a, b: a - b,
    Op.MAC: lambda a, b: a * b,
    Op.MIN: np.minimum,
    Op.MAX: np.maximum,
    Op.RELU: lambda x: np.where(x > 0, x, 0.0),
    Op.ABS: np.abs,
    Op.SIGMOID: lambda x: 1.0 / (1.0 + np.exp(-x)),
    Op.TANH: np.tanh,
    Op.ELU: lambda x: np.where(x > 0, x, np.expm1(x)),
    Op.DIV: lambda a, b: a / b,
    Op.SQRT: np.sqrt,
    Op.LOG: np.log,
    Op.LT: lambda a, b: (a < b) * 1.0,
    Op.GT: lambda a, b: (a > b) * 1.0,
    Op.LE: lambda a, b: (a <= b) * 1.0,
    Op.GE: lambda a, b: (a >= b) * 1.0,
    Op.NE: lambda a, b: (a != b) * 1.0,
}
PRIMITIVE = {
    Op.MAC: lambda a, b, acc=0.0: a * b + acc,
    Op.ADD: np.add,
    Op.SUB: np.subtract,
    Op.MUL: np.multiply,
    Op.DIV: np.divide,
    Op.MAX: np.maximum,
    Op.MIN: np.minimum,
    Op.NEG: np.negative,
    Op.EXP: np.exp,
    Op.LOG: np.log,
    Op.GT: lambda a, b: np.greater(a, b) * 1.0,
    Op.LT: lambda a, b: np.less(a, b) * 1.0,
    Op.GE: lambda a, b: np.greater_equal(a, b) * 1.0,
    Op.LE: lambda a, b: np.less_equal(a, b) * 1.0,
    Op.EQ: lambda a, b: np.equal(a, b) * 1.0,
    Op.NOT: lambda x: np.equal(x, 0) * 1.0,
}


class _Counting(dict):
    """The step operators as numpy functions, counting each call (per element: the calls
    are vectorised, so one call is one operation per element)."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def __missing__(self, op):
        def call(*args):
            self.calls[op] += 1
            return PRIMITIVE[op](*args)

        return call


def test_every_lowered_operator_has_a_reference():
    assert {lowering.op for lowering in LOWERINGS} <= set(REFERENCE)


@pytest.mark.parametrize("lowering", LOWERINGS, ids=lambda lw: f"{lw.op.value}:{lw.formula}")
def test_a_lowering_equals_its_operator_and_uses_exactly_its_steps(lowering):
    rng = np.random.default_rng(0)
    low, high = lowering.domain
    if low > 0 and high / low > 1e3:  # wide positive domains: log-uniform, every binade
        logs = (np.log(low), np.log(high))
        args = [np.exp(rng.uniform(*logs, 4097)) for _ in range(lowering.op.arity)]
        args[0][:3] = (low, 1.0, high)
    else:
        args = [rng.uniform(low, high, 257) for _ in range(lowering.op.arity)]
    if lowering.op.arity == 2:  # comparisons: ties too
        args[1][:32] = args[0][:32]
    f = _Counting()
    got = lowering.compute(f, *args)
    want = REFERENCE[lowering.op](*args)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=max(lowering.atol, 1e-12))
    assert f.calls == Counter(dict(lowering.steps))


def _unit(ops: dict[Op, tuple[float, float]]) -> ComputeUnit:
    return ComputeUnit("u", (4,), tuple((op, OpCost(c, e)) for op, (c, e) in ops.items()))


@pytest.mark.parametrize("lowering", LOWERINGS, ids=lambda lw: f"{lw.op.value}:{lw.formula}")
def test_a_lowered_operator_costs_the_sum_of_its_steps(lowering):
    # A unit with exactly the steps, each with distinct (prime) costs: the lowered cost
    # must be sum(count x step cost) whichever lowering of the operator is picked first.
    primes = [2, 3, 5, 7, 11, 13, 17, 19]
    ops = {step: (primes[i], 10.0 * primes[-1 - i]) for i, (step, _) in enumerate(lowering.steps)}
    unit = _unit(ops)
    native = unit.supports
    assert not native(lowering.op)
    parts = resolve(lowering.op, native)
    assert parts is not None and unit.lowers(lowering.op)
    cost = unit.cost(lowering.op)
    assert cost.cycles == pytest.approx(sum(n * ops[p][0] for p, n in parts.items()))
    assert cost.energy_pj == pytest.approx(sum(n * ops[p][1] for p, n in parts.items()))
    first = next(lw for lw in LOWERINGS if lw.op is lowering.op)
    if first is lowering:  # the first lowering is the one taken where all its steps are native
        assert parts == Counter(dict(lowering.steps))


def test_lowerings_nest_and_stop_at_cycles():
    # sigmoid on a unit without neg: neg runs as 0 - x
    unit = _unit({Op.SUB: (1, 1), Op.EXP: (6, 100), Op.ADD: (1, 8), Op.DIV: (1, 36)})
    assert resolve(Op.SIGMOID, unit.supports) == Counter(
        {Op.SUB: 1, Op.EXP: 1, Op.ADD: 1, Op.DIV: 1}
    )
    assert unit.cost(Op.SIGMOID) == OpCost(1 + 6 + 1 + 1, 1 + 100 + 8 + 36)
    # min and max lower into each other: neither is refused by a loop
    only_add = _unit({Op.ADD: (1, 1)})
    assert resolve(Op.MIN, only_add.supports) is None
    with pytest.raises(SpecError, match="does not support 'min' and has no lowering"):
        only_add.cost(Op.MIN)


def test_an_operator_without_lowering_is_refused_naming_it():
    # Units with a MAC only: sigmoid needs exp, which nothing lowers (log does lower, as
    # a polynomial of MACs, so div alone would run).
    mac_only = {"mac": {"cycles": 1, "energy_pj": 1}}
    arch = load_architecture("fusemax_cloud", {"units.1d.ops": mac_only, "units.2d.ops": mac_only})
    with pytest.raises(SpecError, match=r"Einsum A needs sigmoid .*1d lacks sigmoid"):
        search(attention("sigmoid"), arch, dict(B=1, H=1, E=16, F=16, M=64, P=64), budget=50)


@pytest.mark.parametrize("variant", ["gated", "sigmoid", "linear", "block_topk"])
def test_variants_with_operators_the_units_lack_map_on_fusemax_cloud(variant):
    arch = load_architecture("fusemax_cloud")
    shape = dict(B=1, H=2, E=16, F=16, M=256, P=256)
    result = search(attention(variant), arch, shape, budget=200)
    assert result.report.valid
    lowered = result.report.lowered_einsums
    assert lowered, "an Einsum ran lowered, and the report says which"
    for einsum, ops in lowered.items():
        unit = arch.unit(result.report.per_einsum.set_index("einsum").loc[einsum, "unit"])
        for op in ops.split(", "):
            assert not unit.supports(Op(op)) and unit.runs(Op(op))


def test_the_inexact_lowerings_state_an_error_they_reach():
    # log is the one identity that is not exact: its stated error is within a factor of 2
    # of the largest error seen over its domain (a stated bound that is not loose).
    for lowering in (lw for lw in LOWERINGS if lw.atol > 0):
        low, high = lowering.domain
        x = np.exp(np.linspace(np.log(low), np.log(high), 200_001))
        err = np.abs(lowering.compute(_Counting(), x) - REFERENCE[lowering.op](x)).max()
        assert lowering.atol / 2 <= err <= lowering.atol


def test_log_runs_on_every_spatial_unit_as_its_polynomial_of_macs():
    # No preset unit has log; each has a MAC (or mul and add), so each runs log lowered,
    # at (degree + 1) MACs: the cost of FuseMax's degree-6 exp plus one MAC.
    for name in ("fusemax_cloud", "flat_cloud", "systolic"):
        for unit in load_architecture(name).units:
            assert not unit.supports(Op.LOG) and unit.runs(Op.LOG)
            mac = unit.cost(Op.MAC)
            lowered = unit.cost(Op.LOG)
            assert lowered.cycles == pytest.approx(7 * mac.cycles)
            assert lowered.energy_pj == pytest.approx(7 * mac.energy_pj)


def _refusals(arch, cascade, sizes):
    """Einsum -> the operators no unit of `arch` runs (natively or lowered)."""
    from einsim.einsum.analysis import einsum_op_counts

    out = {}
    for einsum in cascade.einsums:
        counts = einsum_op_counts(cascade, einsum, sizes)
        if counts and not any(all(u.runs(op) for op in counts) for u in arch.units):
            out[einsum.output] = {op for op in counts if not any(u.runs(op) for u in arch.units)}
    return out


@pytest.mark.parametrize("variant", list(ATTENTION))
def test_every_registered_variant_finds_units_on_the_attention_arrays(variant):
    # Every Einsum of every registered variant (default parameters) has a unit on
    # fusemax_cloud and flat_cloud that runs all its operators, natively or lowered; the
    # systolic preset (a GEMM array: MAC only) refuses only for max or exp (no lowering:
    # neither is a polynomial of MACs without a rounding operator), or for operators that
    # lower only through them.
    from einsim.simulator.shape import DEFAULT_BATCH, cascade_names, split_shape

    cascade = attention(variant)
    names = cascade_names(cascade)
    every = dict(B=1, H=2, G=2, A=4, E=4, F=3, M=12, P=12, R=12, X=3, Y=4, T=1)
    shape = {k: v for k, v in every.items() if k in names or k in DEFAULT_BATCH}
    sizes = {k: int(v) for k, v in split_shape(cascade, DEFAULT_BATCH, shape).sizes.items()}
    for name in ("fusemax_cloud", "flat_cloud"):
        assert _refusals(load_architecture(name), cascade, sizes) == {}
    systolic = load_architecture("systolic")
    (unit,) = systolic.units
    with_max_exp = {Op.MAX, Op.EXP, *(op for op, _ in unit.ops)}.__contains__
    for lacking in _refusals(systolic, cascade, sizes).values():
        assert all(resolve(op, with_max_exp) is not None for op in lacking)


def test_lower_counts_is_resolve_times_the_count_and_names_what_has_no_lowering():
    from einsim.simulator.lowering import lower_counts

    native = {Op.ADD, Op.SUB, Op.MUL, Op.EXP, Op.DIV, Op.MAX}.__contains__
    counts = {Op.SIGMOID: 3, Op.ELU: 2, Op.MUL: 7, Op.EQ: 4}
    done, missing = lower_counts(counts, native)
    want = Counter({Op.MUL: 7})
    for op in (Op.SIGMOID, Op.ELU):
        for part, k in resolve(op, native).items():
            want[part] += k * counts[op]
    assert done == want and missing == (Op.EQ,)
