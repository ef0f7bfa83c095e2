"""Pure analyses of a cascade: pass counts, operation counts, tensor footprints."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np
import sympy

from .errors import SpecError
from .executor import mask_of
from .ir import (
    Access,
    Call,
    Cascade,
    Const,
    Einsum,
    Expr,
    Op,
    Size,
    Var,
    rank_of,
    value_ops,
    var_of,
)
from .ir import variables as variables_of
from .shape import _is_symbolic, resolve_shape

# ------------------------------------------------------------------------------ passes


def pass_analysis(cascade: Cascade) -> dict[str, int]:
    """Passes over every rank an Einsum iterates (parts of partitioned ranks separately).

    See `passes` for the rule. Ranks are keyed by name, e.g. {"E": 1, "M1": 1, "M0": 2}.
    """
    ranks = []
    for einsum in cascade.einsums:
        for var in einsum.iter_vars:
            if rank_of(var) not in ranks:
                ranks.append(rank_of(var))
    return {rank: _passes_over(cascade, var_of(rank)) for rank in ranks}


def passes(cascade: Cascade, rank: str) -> int | dict[str, int]:
    """The FuseMax lower bound on the number of passes over an input rank.

    An Einsum starts a new pass over rank r when it iterates r and reads a value that
    exists only after a complete traversal of r: a tensor without an r dimension produced
    (directly or transitively) by a full reduction over r, or the terminal element of an
    iterative rank over r (`RM[M1,p]`). Reading the current element of an iterative rank
    costs no pass. Passes propagate through the dependency graph in topological order
    (Nayak et al., FuseMax, MICRO 2024, Section 4).

    Args:
        cascade: the cascade.
        rank: a rank (`M`), or a part of a partitioned rank (`M1`, `M0`).

    Returns:
        The number of passes; for a partitioned rank, a dict with each part's count.

    Example:
        >>> from einsim import attention
        >>> passes(attention("stable_3pass"), "M"), passes(attention("fusemax"), "M")
        (3, {'M1': 1, 'M0': 2})
    """
    part = cascade.partition_of.get(rank)
    if part is not None and part.rank == rank:
        return {p: _passes_over(cascade, var_of(p)) for p in (part.upper, part.lower)}
    if rank not in cascade.ranks:
        raise SpecError(
            f"passes: {cascade.name or 'the cascade'} has no rank {rank!r}; "
            f"ranks: {', '.join(cascade.ranks)}"
        )
    return _passes_over(cascade, var_of(rank))


def _passes_over(cascade: Cascade, r: str) -> int:
    pass_of: dict[str, int] = dict.fromkeys(cascade.input_names, 1)
    summarizes: dict[str, bool] = dict.fromkeys(cascade.input_names, False)
    # Loop-carried reads see the previous round's values; iterate to a fixed point.
    for _ in range(len(cascade.einsums) + 2):
        before = (dict(pass_of), dict(summarizes))
        for output in cascade.order:
            einsum = cascade.producers[output]
            iterates = r in einsum.iter_vars
            count, needs = 1, r in einsum.reduced_vars
            for access in einsum.operands:
                if access.tensor not in pass_of:
                    continue  # a loop-carried read not reached yet in this round
                _, terminal = cascade.read_kind(einsum, access)
                terminal = terminal and _terminal_over(cascade, access, r)
                complete = summarizes[access.tensor] or terminal
                count = max(count, pass_of[access.tensor] + int(complete and iterates))
                needs = needs or complete
            pass_of[output] = count
            summarizes[output] = needs and r not in einsum.out_vars
        if (pass_of, summarizes) == before:
            break
    iterating = [pass_of[e.output] for e in cascade.einsums if r in e.iter_vars]
    return max(iterating, default=1)


def _terminal_over(cascade: Cascade, access: Access, r: str) -> bool:
    producer = cascade.producers[access.tensor]
    return any(
        isinstance(read, Size) and read.name == rank_of(r) and var == r
        for read, var in zip(access.indices, producer.out_vars, strict=True)
    )


# ------------------------------------------------------------------------ op counts


def iteration_points(cascade: Cascade, einsum: Einsum, sizes: Mapping[str, object]):
    """How many points of an Einsum's iteration space are computed (masks applied).

    Exact: an integer for numeric sizes, a sympy expression for symbolic ones. A partial
    last tile of a partition counts only its real points (m1*M0 + m0 < M). A filter made of
    affine comparisons (`m <= p`, `p - m < W`) is counted by closed-form intervals along one
    variable, vectorized over the others, so a causal 1M x 1M space costs O(1M) work.

    Raises:
        SpecError: for a filter that reads a tensor (data-dependent) or symbolic sizes with
            a filter.
    """
    extents = {v: sizes[rank_of(v)] for v in einsum.iter_vars}
    symbolic = any(_is_symbolic(s) for s in extents.values())
    # Partition pairs whose last tile is partial: the pair has exactly M points.
    partial = []
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in extents and lo in extents:
            whole = sizes[part.rank]
            if symbolic or extents[hi] * extents[lo] != whole:
                partial.append((hi, lo, whole))
    if einsum.where is None:
        total = sympy.Integer(1) if symbolic else 1
        for hi, lo, whole in partial:
            total *= whole
            extents.pop(hi), extents.pop(lo)
        for extent in extents.values():
            total *= extent
        return sympy.simplify(total) if symbolic else int(total)
    if symbolic:
        raise SpecError(f"{einsum.output}: counting a filtered iteration space needs numeric sizes")
    if any(isinstance(n, Access) for n in _walk_values(einsum.where)):
        raise SpecError(
            f"{einsum.output}: its filter reads a tensor, so its point count depends on the data"
        )
    return _count_filtered(cascade, einsum, sizes)


def _walk_values(expr: Expr):
    yield expr
    if isinstance(expr, Call):
        for arg in expr.args:
            yield from _walk_values(arg)


def _count_filtered(cascade: Cascade, einsum: Einsum, sizes) -> int:
    """Count points satisfying the mask: enumerate all mask variables but the largest one,
    and count that one by evaluating the mask in chunks (exact for any mask)."""
    mask_vars = set(variables_of(einsum.where))
    for part in cascade.partitions:
        if var_of(part.rank) in mask_vars:
            mask_vars |= {var_of(part.upper), var_of(part.lower)}
        hi, lo = var_of(part.upper), var_of(part.lower)
        both = hi in einsum.iter_vars and lo in einsum.iter_vars
        if both and int(sizes[part.upper]) * int(sizes[part.lower]) != int(sizes[part.rank]):
            mask_vars |= {hi, lo}
    mask_vars &= set(einsum.iter_vars)
    outside = math.prod(int(sizes[rank_of(v)]) for v in einsum.iter_vars if v not in mask_vars)
    inner = sorted(mask_vars, key=lambda v: (int(sizes[rank_of(v)]), v))
    affine = _affine_bounds(einsum.where, inner[-1]) if inner else None
    if affine is not None and not _has_partial_partition(cascade, einsum, sizes, inner[-1]):
        return outside * _count_affine(cascade, einsum, sizes, inner, affine)
    # General path: evaluate the mask over the grid of mask variables, in chunks.
    order = inner
    extent = [int(sizes[rank_of(v)]) for v in order]
    total = 0
    for start, stop, env in _chunked_grids(order, extent, 2**24):
        mask, _ = mask_of(cascade, einsum, env, sizes)
        size = [stop - start, *extent[1:]]
        total += (
            int(np.count_nonzero(np.broadcast_to(mask, size)))
            if mask is not None
            else (math.prod(size))
        )
    return outside * total


def _chunked_grids(order: list[str], extent: list[int], budget: int):
    """Broadcast index grids over `order`, split along the first variable so that each
    chunk holds about `budget` points: yields (start, stop, env). With no variables, one
    empty grid."""
    rows = extent[0] if extent else 1
    chunk = max(1, budget // max(1, math.prod(extent[1:])))
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        env = {}
        for axis, var in enumerate(order):
            shape = [1] * len(order)
            values = np.arange(start, stop) if axis == 0 else np.arange(extent[axis])
            shape[axis] = len(values)
            env[var] = values.reshape(shape)
        yield start, stop, env


def _has_partial_partition(cascade, einsum, sizes, var) -> bool:
    for part in cascade.partitions:
        if var in (var_of(part.upper), var_of(part.lower)):
            return int(sizes[part.upper]) * int(sizes[part.lower]) != int(sizes[part.rank])
    return False


def _linear(expr: Expr, var: str) -> tuple[Expr, Expr] | None:
    """`expr = a * var + rest` with a an integer constant: returns (a, rest) or None."""
    if isinstance(expr, Var):
        return (Const(1.0), Const(0.0)) if expr.name == var else (Const(0.0), expr)
    if isinstance(expr, Const | Size):
        return Const(0.0), expr
    if isinstance(expr, Call) and expr.op in (Op.ADD, Op.SUB):
        left, right = _linear(expr.args[0], var), _linear(expr.args[1], var)
        if left is None or right is None:
            return None
        sign = 1 if expr.op is Op.ADD else -1
        a = left[0].value + sign * right[0].value  # type: ignore[union-attr]
        return Const(a), Call(expr.op, (left[1], right[1]))
    if isinstance(expr, Call) and expr.op is Op.NEG:
        inner = _linear(expr.args[0], var)
        if inner is None:
            return None
        return Const(-inner[0].value), Call(Op.NEG, (inner[1],))  # type: ignore[union-attr]
    if var not in variables_of(expr):
        return Const(0.0), expr
    return None


def _affine_bounds(where: Expr, var: str):
    """The filter as a list of (a, rest, op) with `a*var + rest  op  0`, when it is a
    conjunction of comparisons linear in `var` with integer coefficients; else None."""
    if isinstance(where, Call) and where.op is Op.AND:
        left, right = _affine_bounds(where.args[0], var), _affine_bounds(where.args[1], var)
        return None if left is None or right is None else left + right
    if isinstance(where, Call) and where.op in (Op.LT, Op.LE, Op.GT, Op.GE):
        diff = Call(Op.SUB, where.args)
        linear = _linear(diff, var)
        if linear is None or not float(linear[0].value).is_integer():  # type: ignore[union-attr]
            return None
        return [(int(linear[0].value), linear[1], where.op)]  # type: ignore[union-attr]
    return None


def _count_affine(cascade, einsum, sizes, order, bounds) -> int:
    """For each point of the other mask variables, the integer interval of the last one."""
    from .executor import _value

    var, others = order[-1], order[:-1]
    extent = [int(sizes[rank_of(v)]) for v in others]
    n = int(sizes[rank_of(var)])
    total = 0
    for start, stop, env in _chunked_grids(others, extent, 2**22):
        # The other variables may carry a partial-tile mask (m1*M0 + m0 < M) of their own.
        outer_mask, local = mask_of(cascade, _without_filter(einsum), env, sizes)
        lo = np.zeros([stop - start, *extent[1:]] if extent else [], dtype=np.int64)
        hi = np.full_like(lo, n - 1)
        for a, rest, op in bounds:
            value = np.broadcast_to(
                np.asarray(_value(rest, local, sizes, {}, None), dtype=float), lo.shape
            )
            if a == 0:
                holds = _BINARY_HOLDS[op](value, 0.0)
                hi = np.where(holds, hi, -1)
                continue
            # a*x + rest  op  0   <=>   x  op'  t   with t = -rest / a, op' flipped if a < 0.
            t = -value / a
            flipped = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE}
            op = flipped[op] if a < 0 else op
            if op is Op.LE:
                hi = np.minimum(hi, np.floor(t).astype(np.int64))
            elif op is Op.LT:
                hi = np.minimum(hi, np.ceil(t).astype(np.int64) - 1)
            elif op is Op.GE:
                lo = np.maximum(lo, np.ceil(t).astype(np.int64))
            else:
                lo = np.maximum(lo, np.floor(t).astype(np.int64) + 1)
        counts = np.clip(hi - lo + 1, 0, None)
        if outer_mask is not None:
            counts = np.where(np.broadcast_to(outer_mask, counts.shape), counts, 0)
        total += int(counts.sum())
    return total


_BINARY_HOLDS = {
    Op.LT: np.less,
    Op.LE: np.less_equal,
    Op.GT: np.greater,
    Op.GE: np.greater_equal,
}


def _without_filter(einsum: Einsum) -> Einsum:
    return Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, None)


def einsum_op_counts(cascade: Cascade, einsum: Einsum, sizes) -> dict[Op, object]:
    """Operations of one Einsum: each operator node once per computed point.

    A reduction accumulates every point into its output (an accumulator that starts at the
    identity, as a PE does), so it adds one reduce op per point; a product summed over the
    reduced ranks is counted as MACs (one per point) instead of a mul plus an add.
    """
    points = iteration_points(cascade, einsum, sizes)
    counter: Counter[Op] = Counter(value_ops(einsum.expr))
    if einsum.reduced_vars:
        if (
            einsum.reduce_op is Op.ADD
            and isinstance(einsum.expr, Call)
            and (einsum.expr.op is Op.MUL)
        ):
            counter[Op.MUL] -= 1
            counter[Op.MAC] += 1
        else:
            counter[einsum.reduce_op] += 1
    return {op: n * points for op, n in counter.items() if n}


def op_counts(cascade: Cascade, shape: Mapping[str, object]) -> dict[str, dict[Op, object]]:
    """Per Einsum (keyed by output tensor), the count of each operation.

    Exact integers for numeric shapes, sympy expressions for symbolic ones. Masked points
    are not counted: a causal QK does P*(P+1)/2 * E MACs, not P*P*E.

    Example:
        >>> from einsim import attention
        >>> op_counts(attention("stable_3pass"), dict(E=64, F=64, M=1024, P=1024))["QK"]
        {<Op.MAC: 'mac'>: 67108864}
    """
    sizes = resolve_shape(cascade, shape)
    return {e.output: einsum_op_counts(cascade, e, sizes) for e in cascade.einsums}


def footprints(cascade: Cascade, shape: Mapping[str, object]) -> dict[str, object]:
    """Elements held by each tensor (iterative ranks hold R + 1), exact or symbolic."""
    sizes = resolve_shape(cascade, shape)
    out = {}
    for name, ranks in cascade.tensor_ranks.items():
        total = 1
        for rank, iterative in zip(ranks, cascade.iterative_dims[name], strict=True):
            total = total * (sizes[rank] + int(iterative))
        out[name] = sympy.expand(total) if isinstance(total, sympy.Basic) else int(total)
    return out
