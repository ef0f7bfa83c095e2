"""Pure analyses of a cascade: pass counts, operation counts, tensor footprints."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping

import numpy as np

from .errors import SpecError
from .ir import (
    Access,
    Call,
    Cascade,
    Einsum,
    Op,
    Size,
    rank_of,
    value_ops,
    var_of,
)
from .occupancy import occupancy
from .shape import _is_symbolic, resolve_shape

# ------------------------------------------------------------------------------ passes


def pass_analysis(cascade: Cascade) -> dict[str, int]:
    """Passes over every rank an Einsum iterates (parts of partitioned ranks separately).

    See `passes` for the rule. Ranks are keyed by name, e.g. {"E": 1, "M1": 1, "M0": 2}.
    Worked out once per cascade (a search's space and its lower bound both read it:
    flexprefill's 43 Einsums, 40 ms each time); each call gets its own dict.
    """
    return dict(_pass_analysis(cascade))


@functools.lru_cache(maxsize=64)
def _pass_analysis(cascade: Cascade) -> tuple[tuple[str, int], ...]:
    """`pass_analysis` as (rank, passes) pairs, in the order the ranks are first met."""
    ranks = []
    for einsum in cascade.einsums:
        for var in einsum.iter_vars:
            if rank_of(var) not in ranks:
                ranks.append(rank_of(var))
    return tuple((rank, _passes_over(cascade, var_of(rank))) for rank in ranks)


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


def iteration_points(
    cascade: Cascade,
    einsum: Einsum,
    sizes: Mapping[str, object],
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    density: float | Mapping[str, float] | None = None,
):
    """How many points of an Einsum's iteration space are computed (masks applied).

    Exact: an integer for numeric sizes, a sympy expression for symbolic ones. A partial
    last tile of a partition counts only its real points (m1*M0 + m0 < M). Numeric sizes
    are counted by `occupancy` (one implementation: its `points`), with the whole space as
    one tile: affine filters (`m <= p`, `p - m < W`) in closed form, O(P) for a causal
    P x P space; other filters by the compiled kernel. A filter that reads a tensor (a
    selection the cascade computes) is counted from `inputs` exactly, else from `density`
    or the cascade's declared density (`occupancy(...).method` says which).

    Raises:
        SpecError: symbolic sizes with a filter, or a data-dependent filter with neither
            inputs, a density nor a declared default.
    """
    extents = {v: sizes[rank_of(v)] for v in einsum.iter_vars}
    symbolic = any(_is_symbolic(s) for s in extents.values())
    if not symbolic:
        found = occupancy(cascade, sizes, {}, [einsum.output], inputs=inputs, density=density)
        return int(found[einsum.output].points[0])
    if einsum.where is not None:
        raise SpecError(f"{einsum.output}: counting a filtered iteration space needs numeric sizes")
    import sympy  # symbolic sizes only: the caller has imported it already

    # Partition pairs whose last tile is partial: the pair has exactly M points.
    total = sympy.Integer(1)
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in extents and lo in extents:
            total *= sizes[part.rank]
            extents.pop(hi), extents.pop(lo)
    for extent in extents.values():
        total *= extent
    return sympy.simplify(total)


def einsum_op_counts(
    cascade: Cascade,
    einsum: Einsum,
    sizes,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    density: float | Mapping[str, float] | None = None,
) -> dict[Op, object]:
    """Operations of one Einsum: each operator node once per computed point.

    A reduction accumulates every point into its output (an accumulator that starts at the
    identity, as a PE does), so it adds one reduce op per point; a product summed over the
    reduced ranks is counted as MACs (one per point) instead of a mul plus an add.
    `inputs` / `density` price a data-dependent filter (see `iteration_points`).
    """
    points = iteration_points(cascade, einsum, sizes, inputs=inputs, density=density)
    return _per_point_ops(einsum, points)


def _per_point_ops(einsum: Einsum, points) -> dict[Op, object]:
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


def op_counts(
    cascade: Cascade,
    shape: Mapping[str, object],
    inputs: Mapping[str, np.ndarray] | None = None,
    density: float | Mapping[str, float] | None = None,
) -> dict[str, dict[Op, object]]:
    """Per Einsum (keyed by output tensor), the count of each operation.

    Exact integers for numeric shapes, sympy expressions for symbolic ones. Masked points
    are not counted: a causal QK does P*(P+1)/2 * E MACs, not P*P*E. A data-dependent
    filter (MoBA's top-k selection) is priced from `inputs` exactly (the cascade's
    selection evaluated by the reference executor), else from `density` (a float in
    (0, 1] or {einsum: float}: the kept fraction of its static conjuncts) or the density
    the variant declared; `occupancy(cascade, shape, {}).method` says which was used.

    Example:
        >>> from einsim import attention
        >>> op_counts(attention("stable_3pass"), dict(E=64, F=64, M=1024, P=1024))["QK"]
        {<Op.MAC: 'mac'>: 67108864}
    """
    sizes = resolve_shape(cascade, shape)
    if any(_is_symbolic(v) for v in sizes.values()):
        return {e.output: einsum_op_counts(cascade, e, sizes) for e in cascade.einsums}
    found = occupancy(cascade, sizes, {}, inputs=inputs, density=density)
    return {e.output: _per_point_ops(e, int(found[e.output].points[0])) for e in cascade.einsums}


def footprints(cascade: Cascade, shape: Mapping[str, object]) -> dict[str, object]:
    """Elements held by each tensor (iterative ranks hold R + 1), exact or symbolic."""
    sizes = resolve_shape(cascade, shape)
    out = {}
    for name, ranks in cascade.tensor_ranks.items():
        total = 1
        for rank, iterative in zip(ranks, cascade.iterative_dims[name], strict=True):
            total = total * (sizes[rank] + int(iterative))
        out[name] = _expand(total) if _is_symbolic(total) else int(total)
    return out


def _expand(total):
    import sympy

    return sympy.expand(total)
