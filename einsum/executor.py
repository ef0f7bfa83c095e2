"""The numpy reference executor: runs any cascade exactly as written.

It is the ground truth every other part of einsim is checked against. Two methods give the
same results (tests/einsum/test_tiled.py checks every registered variant and form):

* "tiled" (the default, `tiled.py`): loops of the schedule fused with the Einsums that
  iterate their rank and streamed one step at a time, keeping only the live state of
  tensors nobody reads later; filtered Einsums evaluated tile by tile (empty tiles skipped,
  full ones unmasked); slicing instead of gathers where indices are affine; contractions
  by BLAS. Memory is the kept tensors plus a tile.
* "materialize" (the original executor, below, and the fallback for a cascade the tiled
  plan cannot express): each Einsum evaluated over its whole iteration space with numpy
  broadcasting (one axis per index variable); a loop of the schedule (an iterative rank
  such as m1) is stepped one index at a time, so running numerators and maxima are
  computed exactly as the paper's cascade says.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping

import numpy as np

from .errors import SpecError
from .ir import (
    REDUCE_IDENTITY,
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
    var_of,
)
from .shape import resolve_shape


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_UNARY_NUMPY = {
    Op.NEG: np.negative,
    Op.EXP: np.exp,
    Op.LOG: np.log,
    Op.SQRT: np.sqrt,
    Op.ABS: np.abs,
    Op.SIGMOID: lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
    Op.ELU: _elu,
    Op.RELU: lambda x: np.maximum(x, 0.0),
    Op.TANH: np.tanh,
    Op.NOT: lambda x: (x == 0).astype(float),
}
_BINARY_NUMPY = {
    Op.ADD: np.add,
    Op.SUB: np.subtract,
    Op.MUL: np.multiply,
    Op.DIV: np.divide,
    Op.FLOORDIV: np.floor_divide,
    Op.MOD: np.mod,
    Op.MAX: np.maximum,
    Op.MIN: np.minimum,
    Op.LT: lambda a, b: (a < b).astype(float),
    Op.LE: lambda a, b: (a <= b).astype(float),
    Op.GT: lambda a, b: (a > b).astype(float),
    Op.GE: lambda a, b: (a >= b).astype(float),
    Op.EQ: lambda a, b: (a == b).astype(float),
    Op.NE: lambda a, b: (a != b).astype(float),
    Op.AND: lambda a, b: np.logical_and(a, b).astype(float),
    Op.OR: lambda a, b: np.logical_or(a, b).astype(float),
}
_INDEX_NUMPY = {
    Op.ADD: np.add,
    Op.SUB: np.subtract,
    Op.MUL: np.multiply,
    Op.FLOORDIV: np.floor_divide,
    Op.MOD: np.mod,
}
_REDUCE_NUMPY = {Op.ADD: np.sum, Op.MAX: np.max, Op.MIN: np.min, Op.MUL: np.prod}


def tensor_shapes(cascade: Cascade, sizes: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """Array shape of every tensor; an iterative dimension holds R + 1 elements (0..R)."""
    return {
        name: tuple(
            int(sizes[r]) + int(iterative)
            for r, iterative in zip(ranks, cascade.iterative_dims[name], strict=True)
        )
        for name, ranks in cascade.tensor_ranks.items()
    }


class _Space:
    """The iteration space of one Einsum run: a broadcast axis per free variable."""

    def __init__(self, free: list[str], fixed: dict[str, int], sizes: Mapping[str, int]):
        self.free = free
        self.extent = [int(sizes[rank_of(v)]) for v in free]
        self.env: dict[str, np.ndarray | int] = dict(fixed)
        for axis, var in enumerate(free):
            shape = [1] * len(free)
            shape[axis] = self.extent[axis]
            self.env[var] = np.arange(self.extent[axis]).reshape(shape)
        self.sizes = sizes


METHODS = ("tiled", "materialize")


def evaluate(
    cascade: Cascade,
    inputs: Mapping[str, np.ndarray],
    shape: Mapping[str, int],
    dtype=np.float64,
    *,
    keep: Collection[str] | None = None,
    method: str = "tiled",
    tile: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Run `cascade` on `inputs` and return every tensor (inputs included), or those in `keep`.

    Args:
        cascade: the cascade to run.
        inputs: an array for every declared input, laid out as declared (Q[e,p] is E x P).
        shape: rank sizes; keys the cascade does not use are ignored, derived partition
            sizes are computed (see `resolve_shape`).
        dtype: the floating-point type to compute in.
        keep: names of the tensors to return (e.g. `cascade.outputs`); None returns every
            tensor. Only what is kept is held in full: with `keep=cascade.outputs` the
            tiled method holds the outputs, the inputs, tensors read across passes and,
            for the rest, the current step of their loop.
        method: "tiled" (default) or "materialize" (the whole-iteration-space executor;
            also used automatically for a cascade the tiled plan cannot express).
        tile: tile extent per rank for filtered Einsums (default 256 points; a partition's
            upper rank, M1, one index): {"P": 64}.

    Returns:
        A dict of numpy arrays keyed by tensor name. Iterative tensors keep all R + 1
        elements along their iterative rank (RM[0..M1, p]).

    Raises:
        SpecError: a missing input, an input of the wrong shape, a read out of bounds, an
            unknown method or an unknown tensor in `keep`.

    Example:
        >>> import numpy as np
        >>> from einsim import parse_cascade
        >>> c = parse_cascade("inputs: A[k,m], B[k,n]\\nZ[m,n] = A[k,m] * B[k,n]")
        >>> data = {"A": np.ones((3, 2)), "B": np.ones((3, 4))}
        >>> out = evaluate(c, data, {"K": 3, "M": 2, "N": 4})
        >>> out["Z"].tolist()[0]
        [3.0, 3.0, 3.0, 3.0]
    """
    sizes = resolve_shape(cascade, shape)
    shapes = tensor_shapes(cascade, sizes)
    tensors: dict[str, np.ndarray] = {}
    for decl in cascade.inputs:
        if decl.name not in inputs:
            raise SpecError(
                f"evaluate: missing input {decl.name} (declared {decl}); "
                f"given: {', '.join(sorted(inputs)) or 'nothing'}"
            )
        array = np.asarray(inputs[decl.name], dtype=dtype)
        if array.shape != shapes[decl.name]:
            raise SpecError(
                f"evaluate: input {decl.name} has shape {array.shape}, expected "
                f"{shapes[decl.name]} for {decl} with "
                + ", ".join(f"{r}={sizes[r]}" for r in decl.ranks)
            )
        tensors[decl.name] = array
    if method not in METHODS:
        raise SpecError(f"evaluate: unknown method {method!r}; known: {', '.join(METHODS)}")
    if keep is not None:
        keep = tuple(keep) if not isinstance(keep, str) else (keep,)
        unknown = sorted(set(keep) - set(shapes))
        if unknown:
            raise SpecError(
                f"evaluate: keep names unknown tensor(s) {', '.join(unknown)}; "
                f"tensors: {', '.join(shapes)}"
            )
    if method == "tiled":
        from .tiled import Unsupported, evaluate_tiled

        try:
            return evaluate_tiled(cascade, tensors, sizes, shapes, dtype, keep, tile)
        except Unsupported:
            pass
    result = _materialize(cascade, tensors, sizes, shapes, dtype)
    return result if keep is None else {name: result[name] for name in keep}


def _materialize(cascade, tensors, sizes, shapes, dtype) -> dict[str, np.ndarray]:
    """The whole-iteration-space executor (method "materialize")."""
    for einsum in cascade.einsums:
        tensors[einsum.output] = np.zeros(shapes[einsum.output], dtype=dtype)
    for init in cascade.inits:
        index = tuple(
            slice(None) if isinstance(i, Var) else int(_index_value(i, {}, sizes))
            for i in init.indices
        )
        tensors[init.tensor][index] = init.value

    with np.errstate(all="ignore"):
        for step in cascade.steps:
            members = [cascade.producers[o] for o in step.outputs]
            if step.loop_var is None:
                _run(cascade, members[0], tensors, sizes, {})
                continue
            for i in range(int(sizes[rank_of(step.loop_var)])):
                for einsum in members:
                    _run(cascade, einsum, tensors, sizes, {step.loop_var: i})
    return tensors


def _index_value(expr: Expr, env: Mapping[str, np.ndarray | int], sizes: Mapping[str, int]):
    if isinstance(expr, Const):
        return int(expr.value)
    if isinstance(expr, Var):
        return env[expr.name]
    if isinstance(expr, Size):
        return int(sizes[expr.name])
    if expr.op is Op.NEG:
        return -_index_value(expr.args[0], env, sizes)
    left, right = (_index_value(a, env, sizes) for a in expr.args)
    return _INDEX_NUMPY[expr.op](left, right)


def mask_of(cascade: Cascade, einsum: Einsum, env, sizes, tensors=None):
    """The points of an iteration space that are computed, or None when all are.

    Partitioned ranks contribute `m1*M0 + m0 < M` where an Einsum iterates both parts
    (the last tile of a non-multiple size is partial); the Einsum's filter adds its own
    condition. A filter may use an original variable (`m`) where the parts are iterated.
    """
    mask = None
    local = dict(env)
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in env and lo in env:
            combined = np.asarray(env[hi]) * int(sizes[part.lower]) + env[lo]
            local.setdefault(var_of(part.rank), combined)
            if int(sizes[part.upper]) * int(sizes[part.lower]) != int(sizes[part.rank]):
                inside = combined < int(sizes[part.rank])
                mask = inside if mask is None else mask & inside
    if einsum.where is not None:
        keep = _value(einsum.where, local, sizes, tensors, None) != 0
        mask = keep if mask is None else mask & keep
    return mask, local


def expression_value(expr: Expr, env, sizes):
    """An expression that reads no tensor (a mask, an index bound) over numpy arrays of its
    variables, as the executor evaluates filters: comparisons and logic give 0.0 / 1.0."""
    return _value(expr, env, sizes, None, None)


def _value(expr: Expr, env, sizes, tensors, mask):
    if isinstance(expr, Const):
        return expr.value
    if isinstance(expr, Var):
        return np.asarray(env[expr.name], dtype=float)
    if isinstance(expr, Size):
        return float(sizes[expr.name])
    if isinstance(expr, Access):
        return _read(expr, env, sizes, tensors, mask)
    args = [_value(a, env, sizes, tensors, mask) for a in expr.args]
    if expr.op.arity == 1:
        return _UNARY_NUMPY[expr.op](args[0])
    return _BINARY_NUMPY[expr.op](args[0], args[1])


def _read(access: Access, env, sizes, tensors, mask):
    array = tensors[access.tensor]
    index = []
    for dim, expr in enumerate(access.indices):
        value = np.asarray(_index_value(expr, env, sizes))
        extent = array.shape[dim]
        outside = (value < 0) | (value >= extent)
        if np.any(outside if mask is None else outside & mask):
            raise SpecError(
                f"evaluate: {access} reads outside {access.tensor}'s dimension {dim + 1} "
                f"(size {extent}); check the index arithmetic and the shape"
            )
        index.append(np.clip(value, 0, extent - 1))
    return array[tuple(index)]


def _product_operands(expr: Expr) -> list[Access] | None:
    """The accesses of a pure product of plain-variable reads, else None."""
    if isinstance(expr, Access):
        ok = all(isinstance(i, Var) for i in expr.indices)
        return [expr] if ok and len({i.name for i in expr.indices}) == len(expr.indices) else None
    if isinstance(expr, Call) and expr.op is Op.MUL:
        left, right = _product_operands(expr.args[0]), _product_operands(expr.args[1])
        return left + right if left is not None and right is not None else None
    return None


def _run(cascade: Cascade, einsum: Einsum, tensors, sizes, fixed: dict[str, int]) -> None:
    free = [v for v in einsum.iter_vars if v not in fixed]
    space = _Space(free, fixed, sizes)
    mask, local = mask_of(cascade, einsum, space.env, sizes, tensors)
    reduced = [v for v in einsum.reduced_vars if v not in fixed]
    axes = tuple(free.index(v) for v in reduced)
    operands = _product_operands(einsum.expr) if mask is None else None
    if reduced and einsum.reduce_op is Op.ADD and operands:
        result = _contract(operands, space, tensors, sizes, free, axes)
    else:
        values = np.broadcast_to(_value(einsum.expr, local, sizes, tensors, mask), space.extent)
        if reduced:
            if mask is not None:
                identity = REDUCE_IDENTITY[einsum.reduce_op]
                values = np.where(np.broadcast_to(mask, space.extent), values, identity)
            result = _REDUCE_NUMPY[einsum.reduce_op](values, axis=axes, keepdims=True)
        else:
            result = values
    target = tuple(np.asarray(_index_value(i, space.env, sizes)) for i in einsum.out_indices)
    if reduced or mask is None:
        shape = np.broadcast_shapes(np.shape(result), *(np.shape(t) for t in target))
        tensors[einsum.output][tuple(np.broadcast_to(t, shape) for t in target)] = np.broadcast_to(
            result, shape
        )
        return
    keep = np.broadcast_to(mask, space.extent)
    points = tuple(np.broadcast_to(t, space.extent)[keep] for t in target)
    tensors[einsum.output][points] = np.broadcast_to(result, space.extent)[keep]


def _contract(operands: list[Access], space: _Space, tensors, sizes, free, axes):
    """A sum of products of plain reads through np.einsum (no full iteration grid)."""
    letters = dict(zip(free, string.ascii_letters, strict=False))
    arrays, subscripts = [], []
    for access in operands:
        values = _read(access, space.env, sizes, tensors, None)
        used = [v for v in free if v in {i.name for i in access.indices}]
        arrays.append(np.reshape(values, [space.extent[free.index(v)] for v in used]))
        subscripts.append("".join(letters[v] for v in used))
    kept = [v for v in free if free.index(v) not in axes]
    spec = ",".join(subscripts) + "->" + "".join(letters[v] for v in kept)
    result = np.einsum(spec, *arrays, optimize=True)
    return np.reshape(result, [1 if i in axes else n for i, n in enumerate(space.extent)])
