"""Lowering: an operator a compute unit lacks runs as a sequence of operators it has.

One table, `LOWERINGS`: each entry is an identity (`formula`) that computes the operator
from other operators, the operators it uses with their counts per lowered operation
(`steps`), and the identity as code (`compute`, written against a namespace of operators
so the tests can check that it uses exactly `steps` and equals the operator numerically).
A lowered operation costs the sum of its steps on the unit: cycles and energy both add
(the steps are dependent, so a PE runs them one after another).

Steps may themselves be lowered (sigmoid uses neg; a unit without neg runs neg as 0 - x);
`resolve` expands them recursively, never through a cycle. An operator with no lowering
into what a unit has is refused by the caller, naming it.

Every identity is exact (up to rounding) except log's, which no exact identity gives from
the units' operators: log runs as its hardware implementations do, a fixed polynomial on
the mantissa (`Lowering.atol` states its error). The exponent/mantissa split is bit wiring,
not an operator, as in the presets' exp (FuseMax's "degree-6 polynomial: 6 MACs", whose
range reduction is charged nothing either).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from einsim.einsum import Op


@dataclass(frozen=True, slots=True)
class Lowering:
    """`op` computed as `formula` from `steps` ((operator, count) per lowered operation).

    `compute(f, *args)` evaluates the identity with `f[op]` the (numpy) function of each
    step operator (`f[Op.MAC](a, b, acc)` = a * b + acc); `domain` is the interval of
    arguments where the identity holds (log and sqrt need positive arguments); `atol` the
    identity's largest absolute error there (0: exact up to rounding).
    """

    op: Op
    formula: str
    steps: tuple[tuple[Op, int], ...]
    compute: Callable
    domain: tuple[float, float] = (-8.0, 8.0)
    atol: float = 0.0


def _elu(f, x):
    # x > 0: x + min(0, e^x - 1) = x; x <= 0: 0 + (e^x - 1)
    return f[Op.ADD](f[Op.MAX](x, 0.0), f[Op.MIN](f[Op.SUB](f[Op.EXP](x), 1.0), 0.0))


def _tanh(f, x):
    e = f[Op.EXP](f[Op.MUL](2.0, x))
    return f[Op.DIV](f[Op.SUB](e, 1.0), f[Op.ADD](e, 1.0))


#: Degree of log's mantissa polynomial: FuseMax's exp is a degree-6 polynomial (6 MACs);
#: log takes the same degree, absolute error 1.7e-6 on [1, 2) (below fp16's 2^-11).
LOG_DEGREE = 6
_LN2 = float(np.log(2.0))


def _log_polynomial(degree: int) -> tuple[float, ...]:
    """Coefficients (highest power first) of the polynomial interpolating log(m) at the
    `degree + 1` Chebyshev nodes of [1, 2] (near-minimax: error 1.7e-6 at degree 6)."""
    k = np.arange(degree + 1)
    nodes = 1.5 + 0.5 * np.cos((2 * k + 1) * np.pi / (2 * degree + 2))
    return tuple(float(c) for c in np.polyfit(nodes, np.log(nodes), degree))


_LOG_COEFFS = _log_polynomial(LOG_DEGREE)


def _log(f, x):
    # x = m 2^e with m in [1, 2): the exponent field and mantissa are wiring (no operator).
    half, e = np.frexp(x)
    m, e = 2.0 * half, e - 1.0
    p = _LOG_COEFFS[0]
    for c in _LOG_COEFFS[1:]:  # Horner: one MAC per degree
        p = f[Op.MAC](p, m, c)
    return f[Op.MAC](e, _LN2, p)  # e ln 2 + log(m)


#: The lowerings, several per operator where there is a choice: the first whose steps the
#: unit has (directly or lowered) is taken.
LOWERINGS: tuple[Lowering, ...] = (
    Lowering(Op.NEG, "-x = 0 - x", ((Op.SUB, 1),), lambda f, x: f[Op.SUB](0.0, x)),
    Lowering(Op.NEG, "-x = -1 * x", ((Op.MUL, 1),), lambda f, x: f[Op.MUL](-1.0, x)),
    Lowering(
        Op.SUB,
        "a - b = a + (-1 * b)",
        ((Op.MUL, 1), (Op.ADD, 1)),
        lambda f, a, b: f[Op.ADD](a, f[Op.MUL](-1.0, b)),
    ),
    Lowering(
        Op.MAC,
        "a * b (accumulated) = a * b, then an add",
        ((Op.MUL, 1), (Op.ADD, 1)),
        lambda f, a, b: f[Op.ADD](f[Op.MUL](a, b), 0.0),
    ),
    Lowering(
        Op.MIN,
        "min(a, b) = -max(-a, -b)",
        ((Op.NEG, 3), (Op.MAX, 1)),
        lambda f, a, b: f[Op.NEG](f[Op.MAX](f[Op.NEG](a), f[Op.NEG](b))),
    ),
    Lowering(
        Op.MAX,
        "max(a, b) = -min(-a, -b)",
        ((Op.NEG, 3), (Op.MIN, 1)),
        lambda f, a, b: f[Op.NEG](f[Op.MIN](f[Op.NEG](a), f[Op.NEG](b))),
    ),
    Lowering(Op.RELU, "relu(x) = max(x, 0)", ((Op.MAX, 1),), lambda f, x: f[Op.MAX](x, 0.0)),
    Lowering(
        Op.ABS,
        "|x| = max(x, -x)",
        ((Op.NEG, 1), (Op.MAX, 1)),
        lambda f, x: f[Op.MAX](x, f[Op.NEG](x)),
    ),
    Lowering(
        Op.SIGMOID,
        "sigmoid(x) = 1 / (1 + exp(-x))",
        ((Op.NEG, 1), (Op.EXP, 1), (Op.ADD, 1), (Op.DIV, 1)),
        lambda f, x: f[Op.DIV](1.0, f[Op.ADD](1.0, f[Op.EXP](f[Op.NEG](x)))),
    ),
    Lowering(
        Op.TANH,
        "tanh(x) = (exp(2x) - 1) / (exp(2x) + 1)",
        ((Op.MUL, 1), (Op.EXP, 1), (Op.SUB, 1), (Op.ADD, 1), (Op.DIV, 1)),
        _tanh,
    ),
    Lowering(
        Op.ELU,
        "elu(x) = max(x, 0) + min(exp(x) - 1, 0)",
        ((Op.MAX, 1), (Op.EXP, 1), (Op.SUB, 1), (Op.MIN, 1), (Op.ADD, 1)),
        _elu,
    ),
    Lowering(
        Op.DIV,
        "a / b = a * exp(-log(b)), b > 0",
        ((Op.LOG, 1), (Op.NEG, 1), (Op.EXP, 1), (Op.MUL, 1)),
        lambda f, a, b: f[Op.MUL](a, f[Op.EXP](f[Op.NEG](f[Op.LOG](b)))),
        domain=(0.125, 8.0),
    ),
    Lowering(
        Op.SQRT,
        "sqrt(x) = exp(0.5 * log(x)), x > 0",
        ((Op.LOG, 1), (Op.MUL, 1), (Op.EXP, 1)),
        lambda f, x: f[Op.EXP](f[Op.MUL](0.5, f[Op.LOG](x))),
        domain=(0.125, 8.0),
    ),
    Lowering(
        Op.LOG,
        f"log(x) = e ln2 + P{LOG_DEGREE}(m), x = m 2^e, m in [1, 2) (Horner), x > 0",
        ((Op.MAC, LOG_DEGREE + 1),),
        _log,
        domain=(2.0**-30, 2.0**30),
        atol=2e-6,
    ),
    Lowering(Op.LT, "a < b = b > a", ((Op.GT, 1),), lambda f, a, b: f[Op.GT](b, a)),
    Lowering(Op.GT, "a > b = b < a", ((Op.LT, 1),), lambda f, a, b: f[Op.LT](b, a)),
    Lowering(Op.LE, "a <= b = b >= a", ((Op.GE, 1),), lambda f, a, b: f[Op.GE](b, a)),
    Lowering(Op.GE, "a >= b = b <= a", ((Op.LE, 1),), lambda f, a, b: f[Op.LE](b, a)),
    Lowering(
        Op.NE,
        "a != b = not(a == b)",
        ((Op.EQ, 1), (Op.NOT, 1)),
        lambda f, a, b: f[Op.NOT](f[Op.EQ](a, b)),
    ),
)


def resolve(op: Op, native: Callable[[Op], bool]) -> Counter | None:
    """The native operators (with counts) that one `op` costs on a unit whose native
    operators are those where `native(op)` holds: {op: 1} where it is native, the first
    lowering whose steps all resolve (recursively, never revisiting an operator on the
    path) otherwise, None where nothing lowers it.

        >>> native = {Op.ADD, Op.SUB, Op.EXP, Op.DIV}.__contains__
        >>> dict(resolve(Op.SIGMOID, native))
        {<Op.SUB: 'sub'>: 1, <Op.EXP: 'exp'>: 1, <Op.ADD: 'add'>: 1, <Op.DIV: 'div'>: 1}
    """
    return _resolve(op, native, frozenset())


def _resolve(op: Op, native, path: frozenset) -> Counter | None:
    if native(op):
        return Counter({op: 1})
    if op in path:
        return None
    for lowering in LOWERINGS:
        if lowering.op is not op:
            continue
        total: Counter = Counter()
        for step, count in lowering.steps:
            parts = _resolve(step, native, path | {op})
            if parts is None:
                break
            for part, n in parts.items():
                total[part] += n * count
        else:
            return total
    return None


def describe(op: Op, native: Callable[[Op], bool]) -> str:
    """One line: 'sigmoid -> sub, exp, add, div' (the resolved native operators)."""
    parts = resolve(op, native)
    if parts is None:
        return f"{op.value}: no lowering"
    body = ", ".join(f"{n}x {p.value}" if n > 1 else p.value for p, n in parts.items())
    return f"{op.value} -> {body}"


def lower_counts(counts, native: Callable[[Op], bool]) -> tuple[Counter, tuple[Op, ...]]:
    """Operation counts ({op: n}) as the native operators they run as (`resolve` of each,
    times n), and the operators nothing lowers (sorted by name; their counts are left out).

        >>> native = {Op.ADD, Op.MUL, Op.EXP, Op.DIV, Op.SUB}.__contains__
        >>> done, missing = lower_counts({Op.SIGMOID: 10, Op.MUL: 5, Op.GE: 1}, native)
        >>> sorted((op.value, n) for op, n in done.items()), missing
        ([('add', 10), ('div', 10), ('exp', 10), ('mul', 5), ('sub', 10)], (<Op.GE: 'ge'>,))
    """
    total: Counter = Counter()
    missing = []
    for op, n in counts.items():
        parts = resolve(op, native)
        if parts is None:
            missing.append(op)
            continue
        for part, k in parts.items():
            total[part] += k * n
    return total, tuple(sorted(missing, key=lambda op: op.value))
