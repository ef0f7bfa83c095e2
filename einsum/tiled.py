"""The tiled, streaming reference executor: the same results as the materializing one, in
memory proportional to the outputs and a tile.

Plan (from the cascade's structure only):
  * Runs. Consecutive steps of the schedule that iterate a loop rank (`m1` in the FuseMax
    forms) and read each other only at the current index (`QK[m1,m0,p]`) or, for an
    iterative tensor, the previous and current ones (`RM[m1,p]`, `RM[m1+1,p]`) are fused
    into one loop: at step i every member runs with m1 = i. A member that reduces m1
    (`AV[f,p] = A[m1,m0,p] * BV[f,m1,m0]`) accumulates into its output across the steps.
  * Slots. A tensor made in a run and not read outside it (except an iterative tensor's
    last element, `RNV[M1,f,p]`), nor asked for in `keep`, holds only the current index
    (two for an iterative tensor: i and i + 1): the live state, not the whole M1 range.
  * Tiles. An Einsum with a filter (or a partial last partition tile) is cut into tiles
    along its largest filtered rank; interval arithmetic on the filter over each tile says
    empty (skipped; a reduction writes its identity), full (computed without a mask) or
    partial (the filter evaluated point-wise on the tile's index grid). Every evaluation
    covers at most TILE_POINTS points (a contraction: its operands and output), never a
    whole iteration space such as E x M x P.
  * Chunks. When a tensor that is not kept must still be held across passes (QK[m,p] of
    the three-pass form), the whole plan runs once per chunk of a parallel rank (one that
    is never reduced and always read as the plain variable: P, the queries), so it is held
    for one chunk only (`parallel_rank`).
  * Reads and writes by slicing where an index is `v`, `v+k`, a constant or a partition's
    `m1*M0+m0` (a reshape); a gather with the materializing executor's bounds check only
    where it is not. A sum of products goes to BLAS (matmul; np.einsum's own loop when a
    side is at most SKINNY) whether masked or not: the mask is applied to the result when
    it depends only on output ranks, else to the operand that carries all of the mask's
    ranks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

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
    iterative_offset,
    rank_of,
    var_of,
    variables,
    walk,
)

#: Extent of a tile along the tiled rank of a filtered Einsum when `tile` does not name it.
DEFAULT_TILE = 256
#: Most points of one Einsum evaluated at once (bounds every temporary array: 32 MB in float64).
TILE_POINTS = 1 << 22
#: Most elements of a tensor held in full but not kept, per chunk of a parallel rank (64 MB).
CHUNK_POINTS = 1 << 23
#: A product with rows, columns or a contracted size this small (QK with E = 2, AV with
#: F = 3) runs on np.einsum's own loop: BLAS is no faster on it (memory-bound), and its
#: worker threads spin after each call, up to doubling the CPU time on a busy machine
#: (benchmarks/executor_speed.py).
SKINNY = 8
#: Smallest temporary an operation overwrites in place (below, a new array costs less than
#: the checks).
IN_PLACE_POINTS = 1 << 12
#: Tile-sized product buffers an executor keeps for reuse (`Executor._scratch`).
SCRATCH_SHAPES = 4
_EMPTY, _PARTIAL, _FULL = 0, 1, 2
_COMPARE = {
    Op.LT: np.less,
    Op.LE: np.less_equal,
    Op.GT: np.greater,
    Op.GE: np.greater_equal,
    Op.EQ: np.equal,
    Op.NE: np.not_equal,
}
_LOGICAL = {Op.AND: np.logical_and, Op.OR: np.logical_or, Op.NOT: np.logical_not}
#: The comparison with its operands swapped (a < b is b > a).
_FLIPPED = {
    Op.LT: Op.GT,
    Op.LE: Op.GE,
    Op.GT: Op.LT,
    Op.GE: Op.LE,
    Op.EQ: Op.EQ,
    Op.NE: Op.NE,
}


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class Run:
    """Einsums fused into one loop over `var`; `accumulate`: members that reduce `var`."""

    var: str
    einsums: tuple[Einsum, ...]
    accumulate: frozenset[str]


@dataclass(frozen=True, slots=True)
class Plan:
    """The items in execution order (an `Einsum` runs whole, a `Run` steps its rank), and
    the tensors held as slots: name -> (dimension, iterative) along the run's rank."""

    items: tuple[Einsum | Run, ...]
    slots: tuple[tuple[str, int, bool], ...]


def _rank_dims(cascade: Cascade, tensor: str, rank: str) -> list[int]:
    return [d for d, r in enumerate(cascade.tensor_ranks[tensor]) if r == rank]


def _joins(cascade: Cascade, einsum: Einsum, var: str, made: dict[str, Einsum], acc) -> bool:
    """Whether `einsum` can run at step i of a loop over `var` after the members `made`."""
    if var not in einsum.iter_vars:
        return False
    rank = rank_of(var)
    if var in einsum.out_vars:
        for index, out_var in zip(einsum.out_indices, einsum.out_vars, strict=True):
            if out_var == var and iterative_offset(index)[1] not in (0, 1):  # type: ignore[index]
                return False
    for access in einsum.operands:
        producer = made.get(access.tensor)
        if access.tensor == einsum.output:
            producer = einsum
        if producer is None:
            continue
        if producer.output in acc:
            return False  # complete only after the loop
        dims = _rank_dims(cascade, access.tensor, rank)
        if len(dims) != 1:
            return False
        parsed = iterative_offset(access.indices[dims[0]])
        if parsed is None or parsed[0] != var:
            return False
        iterative = cascade.iterative_dims[access.tensor][dims[0]]
        # An iterative tensor: the previous (k=0) or, once made this step, the current
        # element (k=1); any other tensor: the current element only.
        allowed = (0, 1) if iterative and producer is not einsum else (0,)
        if not iterative and producer is einsum:
            return False
        if parsed[1] not in allowed:
            return False
    return True


class Unsupported(Exception):
    """A cascade the tiled plan cannot express; `evaluate` then materializes."""


def plan(cascade: Cascade, keep: Collection[str] | None) -> Plan:
    """Fuse the schedule into runs and choose the slot tensors (see the module docstring)."""
    loop_vars = {s.loop_var for s in cascade.steps if s.loop_var}
    items: list[Einsum | Run] = []
    run_var: str | None = None
    members: list[Einsum] = []
    acc: set[str] = set()

    uppers = {p.upper for p in cascade.partitions}

    def close():
        nonlocal run_var, members, acc
        recurrent = any(iterative_offset(o) == (run_var, 1) for e in members for o in e.out_indices)
        if run_var is not None and (recurrent or rank_of(run_var) in uppers):
            items.append(Run(run_var, tuple(members), frozenset(acc)))
        elif run_var is not None:
            # No recurrence over a plain rank (QK[h,m,p] of a three-pass form whose cascade
            # loops over m elsewhere): stepping one key at a time gains nothing; each
            # Einsum runs whole (tiled, and chunked along P when held).
            items.extend(members)
        run_var, members, acc = None, [], set()

    for step in cascade.steps:
        group = [cascade.producers[o] for o in step.outputs]
        if run_var is not None and step.loop_var in (None, run_var):
            made = {e.output: e for e in members}
            ok = True
            for e in group:
                if not _joins(cascade, e, run_var, made, acc):
                    ok = False
                    break
                made[e.output] = e
            if ok:
                for e in group:
                    members.append(e)
                    if run_var in e.reduced_vars:
                        acc.add(e.output)
                continue
        close()
        start = step.loop_var
        if start == "":
            raise Unsupported(f"a loop without an iterative rank: {', '.join(step.outputs)}")
        if start is None:
            candidates = [v for v in group[0].out_vars if v in loop_vars]
            start = candidates[0] if candidates else None
        if start is None:
            items.append(group[0])
            continue
        made: dict[str, Einsum] = {}
        for e in group:
            if not _joins(cascade, e, start, made, set()):
                if step.loop_var is not None:
                    raise Unsupported(f"{e.output} reads its loop at an index other than m1/m1+1")
                items.append(e)
                break
            made[e.output] = e
        else:
            run_var, members = start, list(group)
    close()

    # Slots: tensors made in a run, read outside it only at the last element.
    where_made = {}
    for i, item in enumerate(items):
        if isinstance(item, Run):
            for e in item.einsums:
                if e.output not in item.accumulate:
                    where_made[e.output] = (i, item.var)
    wanted = set(cascade.outputs) if keep is None else set(keep)
    if keep is None:
        wanted |= set(cascade.producers)
    slots = []
    for tensor, (position, var) in where_made.items():
        if tensor in wanted:
            continue
        (dim,) = _rank_dims(cascade, tensor, rank_of(var))
        iterative = cascade.iterative_dims[tensor][dim]
        ok = all(
            isinstance(init.indices[dim], Const) and init.indices[dim].value == 0
            for init in cascade.inits
            if init.tensor == tensor
        )
        for i, item in enumerate(items):
            readers = item.einsums if isinstance(item, Run) else (item,)
            for e in readers:
                for access in e.operands:
                    if access.tensor != tensor or i == position:
                        continue
                    index = access.indices[dim]
                    if not (iterative and isinstance(index, Size) and index.name == rank_of(var)):
                        ok = False
        if ok:
            slots.append((tensor, dim, iterative))
    return Plan(tuple(items), tuple(slots))


# ----------------------------------------------------------------- interval arithmetic


def _fix(lo, hi):
    lo = np.where(np.isnan(lo), -np.inf, lo)
    hi = np.where(np.isnan(hi), np.inf, hi)
    return lo, hi


def _corners(f, a, b):
    with np.errstate(all="ignore"):
        values = [f(x, y) for x in a for y in b]
    lo = np.minimum.reduce([np.where(np.isnan(v), -np.inf, v) for v in values])
    hi = np.maximum.reduce([np.where(np.isnan(v), np.inf, v) for v in values])
    return lo, hi


def _truth(can_true, can_false):
    return np.where(can_false, 0.0, 1.0), np.where(can_true, 1.0, 0.0)


def interval(expr: Expr, env: Mapping[str, tuple], sizes: Mapping[str, int]):
    """Bounds (lo, hi) of `expr` over a box of index values (numpy arrays, one per tile).

    Sound, not always tight: a tensor read is unbounded; comparisons and `and`/`or` give
    bounds within [0, 1] (0 possible: the point may be dropped; 1: it may be kept).
    """
    unknown = (np.array(-np.inf), np.array(np.inf))
    if isinstance(expr, Const):
        return np.array(float(expr.value)), np.array(float(expr.value))
    if isinstance(expr, Var):
        return env[expr.name]
    if isinstance(expr, Size):
        return np.array(float(sizes[expr.name])), np.array(float(sizes[expr.name]))
    if isinstance(expr, Access):
        return unknown
    args = [interval(a, env, sizes) for a in expr.args]
    op = expr.op
    if op is Op.NEG:
        return -args[0][1], -args[0][0]
    if op is Op.EXP:
        return np.exp(args[0][0]), np.exp(args[0][1])
    if op.arity == 1 and op is not Op.NOT:
        return unknown
    a = args[0]
    if op is Op.NOT:
        maybe_zero = (a[0] <= 0) & (a[1] >= 0)
        return _truth(maybe_zero, ~((a[0] == 0) & (a[1] == 0)))
    b = args[1]
    with np.errstate(all="ignore"):
        if op is Op.ADD:
            return _fix(a[0] + b[0], a[1] + b[1])
        if op is Op.SUB:
            return _fix(a[0] - b[1], a[1] - b[0])
        if op is Op.MUL:
            return _corners(np.multiply, a, b)
        if op in (Op.DIV, Op.FLOORDIV):
            positive = b[0] > 0
            negative = b[1] < 0
            f = np.divide if op is Op.DIV else np.floor_divide
            lo, hi = _corners(f, a, b)
            ok = positive | negative
            return np.where(ok, lo, -np.inf), np.where(ok, hi, np.inf)
        if op is Op.MOD:
            positive = b[0] > 0
            same = (b[0] == b[1]) & (np.floor_divide(a[0], b[0]) == np.floor_divide(a[1], b[0]))
            lo = np.where(same, np.mod(a[0], b[0]), 0.0)
            hi = np.where(same, np.mod(a[1], b[0]), b[1])
            return _fix(np.where(positive, lo, -np.inf), np.where(positive, hi, np.inf))
    if op is Op.MAX:
        return np.maximum(a[0], b[0]), np.maximum(a[1], b[1])
    if op is Op.MIN:
        return np.minimum(a[0], b[0]), np.minimum(a[1], b[1])
    if op is Op.LT:
        return _truth(a[0] < b[1], a[1] >= b[0])
    if op is Op.LE:
        return _truth(a[0] <= b[1], a[1] > b[0])
    if op is Op.GT:
        return _truth(a[1] > b[0], a[0] <= b[1])
    if op is Op.GE:
        return _truth(a[1] >= b[0], a[0] < b[1])
    if op in (Op.EQ, Op.NE):
        overlap = (a[0] <= b[1]) & (b[0] <= a[1])
        single = (a[0] == a[1]) & (b[0] == b[1]) & (a[0] == b[0])
        return _truth(overlap, ~single) if op is Op.EQ else _truth(~single, overlap)
    a_nonzero = ~((a[0] == 0) & (a[1] == 0))
    a_zero = (a[0] <= 0) & (a[1] >= 0)
    b_nonzero = ~((b[0] == 0) & (b[1] == 0))
    b_zero = (b[0] <= 0) & (b[1] >= 0)
    if op is Op.AND:
        return _truth(a_nonzero & b_nonzero, a_zero | b_zero)
    if op is Op.OR:
        return _truth(a_nonzero | b_nonzero, a_zero & b_zero)
    return unknown


# ---------------------------------------------------------------------------- execution


class _Buffer:
    """A tensor's storage: `array` holds indices offset..offset+n along each dimension."""

    __slots__ = ("array", "clear", "dirty", "offsets")

    def __init__(self, array: np.ndarray, dirty: bool = False):
        self.array = array
        self.offsets = [0] * array.ndim
        self.dirty: list | None = [] if dirty else None
        self.clear = True


class _Box:
    """A box of an Einsum's iteration space: one [lo, hi) range per iteration variable."""

    __slots__ = ("_env", "extents", "hi", "lo", "vars")

    def __init__(self, names, lo, hi):
        self.vars, self.lo, self.hi = names, lo, hi
        self.extents = [b - a for a, b in zip(lo, hi, strict=True)]
        self._env = None

    def with_range(self, var, lo, hi) -> _Box:
        k = self.vars.index(var)
        los, his = list(self.lo), list(self.hi)
        los[k], his[k] = lo, hi
        return _Box(self.vars, los, his)

    def env(self):
        if self._env is None:
            n = len(self.vars)
            self._env = {}
            for axis, var in enumerate(self.vars):
                shape = [1] * n
                shape[axis] = self.hi[axis] - self.lo[axis]
                self._env[var] = np.arange(self.lo[axis], self.hi[axis]).reshape(shape)
        return self._env


class Executor:
    """Runs a `Plan` (internal to `evaluate_tiled`)."""

    def __init__(self, cascade, sizes, shapes, dtype, tile):
        from .executor import _BINARY_NUMPY, _INDEX_NUMPY, _REDUCE_NUMPY, _UNARY_NUMPY

        self.unary, self.binary, self.index_ops = _UNARY_NUMPY, _BINARY_NUMPY, _INDEX_NUMPY
        self.reduce = _REDUCE_NUMPY
        self.cascade, self.sizes, self.shapes, self.dtype = cascade, sizes, shapes, dtype
        self.tile = {k: int(v) for k, v in (tile or {}).items()}
        self.store: dict[str, _Buffer] = {}
        # Masks per filter and box: per step of a run, or across consecutive Einsums with
        # the same filter until a tensor the filter reads is written.
        self._masks: dict = {}
        self._mask_reads: dict = {}  # clause ids -> tensors the clauses read
        self._classes: dict = {}  # per item of the plan: tile classes
        self._loop: tuple[str, int] | None = None  # the running loop's variable and extent
        self._full: dict = {}  # per item: filter nodes of one free variable, over its range
        self._node_vars: dict = {}
        self._canonical: dict[int, Expr] = {}
        self._by_value: dict[Expr, Expr] = {}
        # One object per partition's bound `m1*M0+m0 < M` (the caches key clauses by id).
        self._inside = {p: Call(Op.LT, (p.combined(), Size(p.rank))) for p in cascade.partitions}
        self._kinds: dict = {}
        self._buffers: dict[tuple[int, ...], np.ndarray] = {}  # see `_scratch`
        self.share_masks = True  # whether `mask` keeps what it computes for later Einsums

    def _scratch(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float64 array of `shape` reused from call to call (a tile's product, consumed
        by its store before the next tile): the same memory each tile instead of a fresh
        one the kernel faults in and zeroes. The last SCRATCH_SHAPES shapes are kept."""
        buffer = self._buffers.pop(shape, None)
        if buffer is None:
            buffer = np.empty(shape)
            if len(self._buffers) >= SCRATCH_SHAPES:
                del self._buffers[next(iter(self._buffers))]
        self._buffers[shape] = buffer
        return buffer

    # -- index arithmetic ---------------------------------------------------------------
    def _index(self, expr, env):
        if isinstance(expr, Const):
            return int(expr.value)
        if isinstance(expr, Var):
            return env[expr.name]
        if isinstance(expr, Size):
            return int(self.sizes[expr.name])
        if expr.op is Op.NEG:
            return -self._index(expr.args[0], env)
        left, right = (self._index(a, env) for a in expr.args)
        return self.index_ops[expr.op](left, right)

    def _kind(self, access: Access):
        """Per dimension: ('var', v, k), ('const', c), ('split', hi, lo, M0) or None."""
        kinds = self._kinds.get(id(access))  # by identity: hashing an Access walks it
        if kinds is not None:
            return kinds[0]
        kinds = []
        ranks = self.cascade.tensor_ranks[access.tensor]
        for dim, expr in enumerate(access.indices):
            parsed = iterative_offset(expr)
            part = self.cascade.partition_of.get(ranks[dim])
            if parsed is not None:
                kinds.append(("var", parsed[0], parsed[1]))
            elif not variables(expr):
                kinds.append(("const", int(self._index(expr, {}))))
            elif part is not None and part.rank == ranks[dim] and expr == part.combined():
                kinds.append(("split", var_of(part.upper), var_of(part.lower), part.lower))
            else:
                kinds.append(None)
        self._kinds[id(access)] = (kinds, access)  # the access kept alive: its id stays its own
        return kinds

    # -- reads ------------------------------------------------------------------------
    def read(self, access: Access, box: _Box, mask, array: np.ndarray | None = None):
        """`access` over `box`: an array broadcastable to the box (axes in box order).
        `array`: read it instead of the stored tensor (an element-wise function of it, of
        the same shape: a comparison pushed below the read)."""
        buf = self.store[access.tensor]
        source = buf.array if array is None else array
        full = self.shapes[access.tensor]
        position = {v: i for i, v in enumerate(box.vars)}
        index, axes = [], []
        for dim, kind in enumerate(self._kind(access)):
            off, stored = buf.offsets[dim], buf.array.shape[dim]
            if kind is None:
                return self._gather(access, box, mask, array)
            if kind[0] == "const":
                c = kind[1]
                if not 0 <= c < full[dim]:
                    return self._gather(access, box, mask, array)
                self._window(access, dim, c - off, c - off + 1, stored)
                index.append(c - off)
            elif kind[0] == "var":
                _, var, k = kind
                lo, hi = box.lo[position[var]] + k, box.hi[position[var]] + k
                if lo < 0 or hi > full[dim]:
                    return self._gather(access, box, mask, array)
                self._window(access, dim, lo - off, hi - off, stored)
                index.append(slice(lo - off, hi - off))
                axes.append((var,))
            else:
                _, upper, lower, lower_rank = kind
                size = int(self.sizes[lower_rank])
                a1, b1 = box.lo[position[upper]], box.hi[position[upper]]
                a0, b0 = box.lo[position[lower]], box.hi[position[lower]]
                if b1 - a1 == 1:
                    lo, hi = a1 * size + a0, a1 * size + b0
                elif a0 == 0 and b0 == size:
                    lo, hi = a1 * size, b1 * size
                else:
                    return self._gather(access, box, mask, array)
                end = min(hi, full[dim])
                if lo >= end:
                    return self._gather(access, box, mask, array)
                self._window(access, dim, lo - off, end - off, stored)
                index.append(slice(lo - off, end - off))
                axes.append((upper, lower, b1 - a1, b0 - a0, hi - end))
        names = [v for ax in axes for v in (ax[:2] if len(ax) == 5 else ax)]
        if len(set(names)) != len(names):
            return self._gather(access, box, mask, array)
        array = source[tuple(index)]
        if any(len(ax) == 5 for ax in axes):
            pads = [(0, ax[4]) if len(ax) == 5 else (0, 0) for ax in axes]
            if any(p for _, p in pads):
                array = np.pad(array, pads)
            shape = []
            for k, ax in enumerate(axes):
                shape += [ax[2], ax[3]] if len(ax) == 5 else [array.shape[k]]
            array = array.reshape(shape)
        order = sorted(range(len(names)), key=lambda i: position[names[i]])
        array = array.transpose(order)
        used = set(names)
        extents = box.extents
        return array.reshape([extents[i] if v in used else 1 for i, v in enumerate(box.vars)])

    def _window(self, access, dim, lo, hi, stored):
        if lo < 0 or hi > stored:
            raise RuntimeError(
                f"tiled executor: {access} reads indices {lo}..{hi} of a stored window of "
                f"{stored} along dimension {dim + 1} (a planning error)"
            )
        return True

    def _gather(self, access: Access, box: _Box, mask, array: np.ndarray | None = None):
        buf = self.store[access.tensor]
        source = buf.array if array is None else array
        full = self.shapes[access.tensor]
        env = self._local(box)
        index = []
        for dim, expr in enumerate(access.indices):
            value = np.asarray(self._index(expr, env))
            stored = value - buf.offsets[dim]
            if value.size and stored.min() >= 0 and stored.max() < buf.array.shape[dim]:
                index.append(stored)  # inside the stored window (so the tensor): no clip
                continue
            outside = (value < 0) | (value >= full[dim])
            if np.any(outside if mask is None else outside & mask):
                raise SpecError(
                    f"evaluate: {access} reads outside {access.tensor}'s dimension {dim + 1} "
                    f"(size {full[dim]}); check the index arithmetic and the shape"
                )
            index.append(np.clip(stored, 0, buf.array.shape[dim] - 1))
        return _take(source, index)

    def _local(self, box: _Box):
        env = dict(box.env())
        for part in self.cascade.partitions:
            hi, lo = var_of(part.upper), var_of(part.lower)
            if hi in env and lo in env:
                env.setdefault(var_of(part.rank), env[hi] * int(self.sizes[part.lower]) + env[lo])
        return env

    # -- values and masks -------------------------------------------------------------
    def value(self, expr: Expr, box: _Box, env, mask):
        return self._eval(expr, box, env, mask)[0]

    def _eval(self, expr: Expr, box: _Box, env, mask):
        """`value` of `expr`, and whether it is a temporary made here: the next operation
        then writes into it (exp(QK - RM) / RD makes one tile-sized array, not three; each
        fresh array of that size is memory the kernel must fault in and zero)."""
        if isinstance(expr, Const):
            return expr.value, False
        if isinstance(expr, Var):
            return np.asarray(env[expr.name], dtype=float), False
        if isinstance(expr, Size):
            return float(self.sizes[expr.name]), False
        if isinstance(expr, Access):
            return self.read(expr, box, mask), False
        done = [self._eval(a, box, env, mask) for a in expr.args]
        args = [value for value, _ in done]
        function = self.unary[expr.op] if expr.op.arity == 1 else self.binary[expr.op]
        if isinstance(function, np.ufunc):
            for value, owned in done:
                if not owned or value.size < IN_PLACE_POINTS or value.dtype != np.float64:
                    continue
                shape = np.broadcast_shapes(*(np.shape(a) for a in args))
                if value.shape == shape and np.result_type(*args) == np.float64:
                    return function(*args, out=value), True
        result = function(*args)
        owned = (
            isinstance(result, np.ndarray)
            and result.flags.owndata
            and not any(result is a for a in args)
        )
        return result, owned

    def _clauses(self, einsum: Einsum, names) -> list[Expr]:
        clauses = []
        for part in self.cascade.partitions:
            hi, lo = var_of(part.upper), var_of(part.lower)
            padded = int(self.sizes[part.upper]) * int(self.sizes[part.lower])
            if hi in names and lo in names and padded != int(self.sizes[part.rank]):
                clauses.append(self._inside[part])
        if einsum.where is not None:
            where = self._canonical.get(id(einsum.where))
            if where is None:  # Einsums with equal filters share one object (and caches)
                where = self._by_value.setdefault(einsum.where, einsum.where)
                self._canonical[id(einsum.where)] = where
            clauses.append(where)
        return clauses

    def _filtered_box(self, einsum: Einsum, box: _Box):
        """The filter's clauses and the box cut down to the variables they use (so Einsums
        sharing a filter share its masks and tile classes): (clause ids, clauses, box)."""
        clauses = self._clauses(einsum, set(box.vars))
        used: set[str] = set()
        for clause in clauses:
            used |= self._vars_of(clause)[0]
        keep = sorted((i for i, v in enumerate(box.vars) if v in used), key=lambda i: box.vars[i])
        sub = _Box(
            [box.vars[i] for i in keep], [box.lo[i] for i in keep], [box.hi[i] for i in keep]
        )
        return tuple(id(c) for c in clauses), clauses, sub

    def mask(self, einsum: Einsum, box: _Box):
        """The kept points of a box (the materializing executor's `mask_of`), cached per
        filter and box, shaped to broadcast against `box`."""
        ids, clauses, sub = self._filtered_box(einsum, box)
        key = (ids, tuple(sub.vars), tuple(sub.lo), tuple(sub.hi))
        keep = self._masks.get(key)
        if keep is None:
            env = self._local(sub)
            keep = np.bool_(True)
            for i, clause in enumerate(clauses):
                value = self._truth(clause, sub, env)
                keep = value if i == 0 else keep & value
            keep = np.broadcast_to(keep, sub.extents) if sub.vars else keep
            if self.share_masks:
                self._masks[key] = keep
            if ids not in self._mask_reads:
                self._mask_reads[ids] = frozenset(
                    e.tensor for c in clauses for e in walk(c) if isinstance(e, Access)
                )
        if not sub.vars:
            return keep
        # From the canonical (sorted) axes of `sub` to the order of `box`, with size-1 axes
        # for the box's other variables.
        order = sorted(range(len(sub.vars)), key=lambda i: box.vars.index(sub.vars[i]))
        extents = dict(zip(sub.vars, sub.extents, strict=True))
        return keep.transpose(order).reshape([extents.get(v, 1) for v in box.vars])

    def same_filter(self, first: Einsum, second: Einsum) -> bool:
        """Whether two Einsums have the same filter clauses (so they share masks)."""
        ids = self._filter_ids(first)
        return bool(ids) and ids == self._filter_ids(second)

    def _filter_ids(self, einsum: Einsum, names=None) -> tuple[int, ...]:
        """The ids of `einsum`'s filter clauses over `names` (default: its own variables):
        the key Einsums sharing a filter share masks by."""
        names = set(einsum.iter_vars) if names is None else set(names)
        return tuple(id(c) for c in self._clauses(einsum, names))

    def keep_masks(self, einsum: Einsum) -> None:
        """Before `einsum` runs outside a loop: keep only the cached masks of its own filter,
        so consecutive Einsums sharing a data-dependent filter (the six of a masked softmax)
        evaluate it once per tile, while the cache holds one filter's masks at most."""
        ids = self._filter_ids(einsum)
        for key in [k for k in self._masks if k[0] != ids]:
            del self._masks[key]

    def drop_masks_reading(self, tensor: str) -> None:
        """Forget the cached masks of filters that read `tensor` (just written)."""
        for key in [k for k in self._masks if tensor in self._mask_reads[k[0]]]:
            del self._masks[key]

    def _vars_of(self, expr: Expr):
        """(variables, reads a tensor) of a filter node; a partition's whole variable (m)
        counts as its parts (m1, m0)."""
        found = self._node_vars.get(id(expr))
        if found is None:
            names = set(variables(expr))
            for part in self.cascade.partitions:
                if var_of(part.rank) in names:
                    names |= {var_of(part.upper), var_of(part.lower)}
            reads = any(isinstance(e, Access) for e in walk(expr))
            found = self._node_vars[id(expr)] = (frozenset(names), reads, expr)
        return found[0], found[1]

    def _filter_value(self, expr: Expr, box: _Box, env, boolean: bool = False):
        """`value` of a filter node over `box`; a node varying along one variable of the box
        only (p // Y % X, the window start of p) is computed once over that variable's whole
        range and sliced, so a tile costs only the nodes mixing two variables. `boolean`:
        the caller only asks whether the value is nonzero (comparisons and and/or then stay
        boolean arrays instead of the 0.0/1.0 floats `value` makes)."""
        if not isinstance(expr, Call):
            return self.value(expr, box, env, None)
        names, reads = self._vars_of(expr)
        if not reads:
            varying = [
                v
                for v in box.vars
                if v in names and box.hi[box.vars.index(v)] - box.lo[box.vars.index(v)] > 1
            ]
            if len(varying) == 1:
                v = varying[0]
                k = box.vars.index(v)
                pinned = tuple(
                    (w, box.lo[i]) for i, w in enumerate(box.vars) if w in names and w != v
                )
                key = (id(expr), tuple(box.vars), v, pinned)  # axes follow box.vars
                whole = self._full.get(key)
                if whole is None:
                    span = box.with_range(v, 0, int(self.sizes[rank_of(v)]))
                    whole = np.asarray(self.value(expr, span, self._local(span), None))
                    self._full[key] = whole
                if whole.ndim == 0:
                    return whole
                index = [slice(None)] * whole.ndim
                index[k] = slice(box.lo[k], box.hi[k])
                return whole[tuple(index)]
        if boolean and expr.op in (Op.AND, Op.OR):
            return self._logical(expr, box, env)
        if boolean and expr.op is Op.NOT:
            return np.logical_not(self._truth(expr.args[0], box, env))
        if boolean and expr.op in _COMPARE:
            pushed = self._compare_read(expr, box)
            if pushed is not None:
                return pushed
            left, right = (self._filter_value(a, box, env) for a in expr.args)
            return _COMPARE[expr.op](left, right)
        args = [self._filter_value(a, box, env) for a in expr.args]
        if expr.op.arity == 1:
            return self.unary[expr.op](args[0])
        return self.binary[expr.op](args[0], args[1])

    def _truth(self, expr: Expr, box: _Box, env) -> np.ndarray:
        """Whether filter node `expr` is nonzero over `box` (a boolean array)."""
        value = np.asarray(self._filter_value(expr, box, env, True))
        return value if value.dtype == bool else np.not_equal(value, 0)

    def _logical(self, expr: Expr, box: _Box, env) -> np.ndarray:
        """`a and b` / `a or b` over `box`, short-circuited: the operand of fewer variables
        first, the other only where the first leaves the answer open (`a` true for and,
        false for or). When the first varies along one axis of the box only (QA[h] > 0, a
        head's choice of pattern), the second is evaluated on the runs of that axis where
        it is needed, so a head skips the branch it does not take. The same values."""
        first, second = sorted(expr.args, key=lambda a: len(self._vars_of(a)[0]))
        decided = expr.op is Op.OR  # the first operand's value that decides the result
        a = self._truth(first, box, env)
        needed = a if not decided else ~a
        if not needed.any():
            return a
        if needed.all():
            return self._truth(second, box, env)
        varying = [k for k, n in enumerate(a.shape) if n != 1]
        if a.ndim != len(box.vars) or len(varying) != 1:
            return _LOGICAL[expr.op](a, self._truth(second, box, env))
        (k,) = varying
        flags = needed.reshape(-1)
        edges = np.flatnonzero(np.diff(np.concatenate([[False], flags, [False]]).astype(np.int8)))
        pieces = []
        for lo, hi in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            sub = box.with_range(box.vars[k], box.lo[k] + lo, box.lo[k] + hi)
            pieces.append((lo, hi, self._truth(second, sub, self._local(sub))))
        shape = [
            box.extents[i] if i == k or any(p.ndim and p.shape[i] != 1 for *_, p in pieces) else 1
            for i in range(len(box.vars))
        ]
        out = np.full(shape, decided)
        for lo, hi, piece in pieces:
            index = [slice(None)] * len(shape)
            index[k] = slice(lo, hi)
            out[tuple(index)] = piece
        return out

    def _compare_read(self, expr: Expr, box: _Box):
        """`X[...] > c` as a read of `X > c`: the comparison on the stored array, then one
        read of booleans (a gather of 1-byte elements, and no comparison over the box),
        when one side reads a tensor, the other is a constant and the stored array is no
        larger than the box. None otherwise."""
        points = int(np.prod(box.extents, dtype=np.int64))
        for access, other, op in (
            (expr.args[0], expr.args[1], expr.op),
            (expr.args[1], expr.args[0], _FLIPPED[expr.op]),
        ):
            if not isinstance(access, Access) or variables(other):
                continue
            if any(isinstance(e, Access) for e in walk(other)):
                continue
            stored = self.store[access.tensor].array
            if stored.size > points:
                continue
            constant = self.value(other, box, {}, None)
            return self.read(access, box, None, _COMPARE[op](stored, constant))
        return None

    def classify(self, einsum: Einsum, box: _Box, var: str, step: int):
        """Runs (lo, hi, status) of tiles of `step` along `var` (empty, partial or full).

        Inside a run, the classes of every step of the loop are computed at once (the
        loop's variable as a second axis of the interval arrays) and cached for the run.
        """
        ids, clauses, sub = self._filtered_box(einsum, box)
        loop = self._loop
        row = 0
        if loop is not None and loop[0] in sub.vars and loop[0] != var:
            row = sub.lo[sub.vars.index(loop[0])]
            sub = sub.with_range(loop[0], 0, loop[1])
        if var not in sub.vars:
            k = box.vars.index(var)
            sub = _Box([*sub.vars, var], [*sub.lo, box.lo[k]], [*sub.hi, box.hi[k]])
        key = (ids, tuple(sub.vars), tuple(sub.lo), tuple(sub.hi), var, step)
        classes = self._classes.get(key)
        if classes is None:
            rows = loop[0] if loop is not None and loop[0] in sub.vars and loop[0] != var else None
            classes = self._classes[key] = self._classify(clauses, sub, var, step, rows)
        starts, ends, status = classes
        runs: list[tuple[int, int, int]] = []
        for i, s in enumerate(status[row].tolist()):
            lo, hi = int(starts[i]), int(ends[i]) + 1
            if runs and runs[-1][2] == s:
                runs[-1] = (runs[-1][0], hi, s)
            else:
                runs.append((lo, hi, s))
        return runs

    def _classify(self, clauses, box: _Box, var: str, step: int, rows: str | None):
        """Tile classes by interval arithmetic: an array (rows, tiles), one row per value of
        `rows` (or a single row)."""
        k = box.vars.index(var)
        starts = np.arange(box.lo[k], box.hi[k], step)
        ends = np.minimum(starts + step, box.hi[k]) - 1
        env = {}
        for v, lo, hi in zip(box.vars, box.lo, box.hi, strict=True):
            env[v] = (np.array(float(lo)), np.array(float(hi - 1)))
        env[var] = (starts[None, :].astype(float), ends[None, :].astype(float))
        n_rows = 1
        if rows is not None:
            j = box.vars.index(rows)
            values = np.arange(box.lo[j], box.hi[j], dtype=float)[:, None]
            env[rows] = (values, values)
            n_rows = len(values)
        for part in self.cascade.partitions:
            hi, lo = var_of(part.upper), var_of(part.lower)
            if hi in env and lo in env:
                size = Const(float(self.sizes[part.lower]))
                combined = Call(Op.ADD, (Call(Op.MUL, (Var(hi), size)), Var(lo)))
                env.setdefault(var_of(part.rank), interval(combined, env, self.sizes))
        shape = (n_rows, len(starts))
        status = np.full(shape, _FULL)
        for clause in clauses:
            lo, hi = (np.broadcast_to(x, shape) for x in interval(clause, env, self.sizes))
            never = (lo == 0) & (hi == 0)
            always = (lo > 0) | (hi < 0)
            status = np.where(never, _EMPTY, np.where(always, status, np.minimum(status, _PARTIAL)))
        return starts, ends, status

    def tile_step(self, var: str) -> int:
        """Tile extent along `var` for a filtered Einsum: `tile`'s, else one index of a
        partition's upper rank (M1), else DEFAULT_TILE."""
        rank = rank_of(var)
        part = self.cascade.partition_of.get(rank)
        default = 1 if part is not None and part.upper == rank else DEFAULT_TILE
        return max(1, self.tile.get(rank, default))

    def active(self, quiet: Quiet, at) -> list[tuple[int, int]] | None:
        """Ranges of `quiet.var` where some filtered member of the run keeps a point at
        this step (merged), or None when the step must run whole: every tile is active,
        or a tensor the proof subtracts from itself is not finite."""
        for tensor in quiet.finite:
            if not np.isfinite(self.store[tensor].array).all():
                return None
        ranges: list[tuple[int, int]] = []
        step = self.tile_step(quiet.var)
        for einsum in quiet.filtered:
            names = list(einsum.iter_vars)
            box = _Box(
                names,
                [at[v][0] if v in at else 0 for v in names],
                [at[v][1] if v in at else int(self.sizes[rank_of(v)]) for v in names],
            )
            for lo, hi, status in self.classify(einsum, box, quiet.var, step):
                if status != _EMPTY:
                    ranges.append((lo, hi))
        ranges.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in ranges:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        k = quiet.var
        whole = at[k] if k in at else (0, int(self.sizes[rank_of(k)]))
        if merged == [whole]:
            return None
        return merged

    # -- one Einsum ---------------------------------------------------------------------
    def run(self, einsum: Einsum, bounds: Mapping[str, tuple[int, int]], accumulate=False):
        """Evaluate `einsum` over its iteration space with the variables in `bounds` held to
        a range (one index for a loop's step, a chunk of a parallel rank), tile by tile;
        `accumulate`: combine into the output with the reduction."""
        names = list(einsum.iter_vars)
        lo = [bounds[v][0] if v in bounds else 0 for v in names]
        hi = [bounds[v][1] if v in bounds else int(self.sizes[rank_of(v)]) for v in names]
        box = _Box(names, lo, hi)
        free = [v for v, a, b in zip(names, lo, hi, strict=True) if b - a > 1]
        total = self._points(einsum, box)
        clauses = self._clauses(einsum, set(names))
        if not clauses:
            if total <= TILE_POINTS or not free:
                self._compute(einsum, box, None, accumulate)
                return
            var = max(free, key=lambda v: box.extents[names.index(v)])
            k = names.index(var)
            runs = [(box.lo[k], box.hi[k], _FULL)]
        else:
            filtered: set[str] = set()
            for clause in clauses:
                filtered |= self._vars_of(clause)[0]
            candidates = [v for v in free if v in filtered] or free or names
            # Ties broken by name, so Einsums sharing a filter cut the same tiles.
            var = max(candidates, key=lambda v: (box.extents[names.index(v)], v))
            runs = self.classify(einsum, box, var, self.tile_step(var))
        k = names.index(var)
        # Bound every box to TILE_POINTS points (merged runs of full tiles included); a power
        # of two, so Einsums whose point counts differ a little (a contraction's operands)
        # cut the same tiles and share their masks.
        step = max(1, TILE_POINTS // max(1, total // max(1, box.extents[k])))
        step = 1 << (step.bit_length() - 1)
        reduced = bool(einsum.reduced_vars)
        combine = accumulate or var in einsum.reduced_vars
        if combine and not accumulate:
            self._fill_identity(einsum, box)
        for lo_, hi_, status in runs:
            if status == _EMPTY:
                if reduced and not combine:
                    self._fill_identity(einsum, box.with_range(var, lo_, hi_))
                continue
            for start in range(lo_, hi_, step):
                sub = box.with_range(var, start, min(start + step, hi_))
                mask = self.mask(einsum, sub) if status == _PARTIAL else None
                self._compute(einsum, sub, mask, combine)

    def _points(self, einsum: Einsum, box: _Box) -> int:
        """The largest array evaluating `box` builds: the iteration space, or for a sum of
        products (BLAS, no iteration-space array) the output and the operands."""
        extent = dict(zip(box.vars, box.extents, strict=True))
        factors = _product(einsum.expr) if einsum.reduce_op is Op.ADD else None
        if not einsum.reduced_vars or factors is None:
            return int(np.prod(box.extents, dtype=np.int64))
        # A filter along a reduced variable that no single operand carries whole cannot be
        # folded into an operand (`_contract`): the iteration space is built.
        masked: set[str] = set()
        for clause in self._clauses(einsum, set(box.vars)):
            masked |= self._vars_of(clause)[0] & set(box.vars)
        if masked & set(einsum.reduced_vars) and not any(
            masked <= variables_of(a) for a in factors
        ):
            return int(np.prod(box.extents, dtype=np.int64))
        arrays = [list(einsum.out_vars)] + [sorted(variables_of(a)) for a in factors]
        return max(int(np.prod([extent[v] for v in vs], dtype=np.int64)) for vs in arrays)

    def _fill_identity(self, einsum: Einsum, box: _Box):
        dst, _ = self._target(einsum, box)
        dst[...] = REDUCE_IDENTITY[einsum.reduce_op]

    def _target(self, einsum: Einsum, box: _Box):
        buf = self.store[einsum.output]
        index = []
        for dim, expr in enumerate(einsum.out_indices):
            var, k = iterative_offset(expr)  # type: ignore[misc]
            i = box.vars.index(var)
            index.append(slice(box.lo[i] + k - buf.offsets[dim], box.hi[i] + k - buf.offsets[dim]))
        if buf.dirty is not None:
            buf.dirty.append(tuple(index))
        return buf.array[tuple(index)], len(einsum.out_indices)

    def _compute(self, einsum: Einsum, box: _Box, mask, combine: bool):
        n_out = len(einsum.out_indices)
        out_shape = box.extents[:n_out]
        result = None
        if einsum.reduced_vars and einsum.reduce_op is Op.ADD:
            result = self._contract(einsum, box, mask)
            if result is not None and mask is not None and not _depends(mask, n_out):
                mask_out = mask.reshape(mask.shape[:n_out])
                dst, _ = self._target(einsum, box)
                self._store(einsum, dst, result, combine, mask_out, out_shape)
                return
            if result is not None:
                mask = None
        if result is None and not einsum.reduced_vars and not combine:
            dst, _ = self._target(einsum, box)
            if mask is None:
                if self._into(einsum.expr, box, self._local(box), dst):
                    return
            else:  # into a reused buffer, then the kept points into the output
                buffer = self._scratch(tuple(dst.shape))
                if self._into(einsum.expr, box, self._local(box), buffer, mask):
                    self._store(einsum, dst, buffer, False, mask, out_shape)
                    return
        if result is None:
            env = self._local(box)
            values = self.value(einsum.expr, box, env, mask)
            if einsum.reduced_vars:
                if mask is not None and einsum.reduce_op is Op.ADD and np.isfinite(values).all():
                    # sum of values * mask by einsum: the mask is read as 0/1 in its loop, no
                    # masked copy of the values (VAB[h,m] = sum(mj) VS[h,mj] where VS[h,mj] >
                    # VS[h,m]: 3x faster than np.where then sum); finite values only (0 * inf)
                    result = _masked_sum(values, mask, box.extents, n_out)
                    dst, _ = self._target(einsum, box)
                    self._store(einsum, dst, result, combine, None, out_shape)
                    return
                values = np.broadcast_to(values, box.extents)
                axes = tuple(range(n_out, len(box.vars)))
                reduce = self.reduce[einsum.reduce_op]
                if mask is None:
                    result = reduce(values, axis=axes)
                else:  # the kept points only, no masked copy of the values
                    identity = REDUCE_IDENTITY[einsum.reduce_op]
                    keep = np.broadcast_to(mask, box.extents)
                    result = reduce(values, axis=axes, where=keep, initial=identity)
                mask = None
            else:
                values = np.asarray(values)
                result = values.reshape(values.shape[:n_out]) if values.ndim else values
                if mask is not None:
                    mask = mask.reshape(mask.shape[:n_out]) if mask.ndim else mask
        dst, _ = self._target(einsum, box)
        self._store(einsum, dst, result, combine, mask, out_shape)

    def _into(self, expr: Expr, box: _Box, env, dst: np.ndarray, mask=None) -> bool:
        """Evaluate an element-wise `expr` straight into `dst` (no temporary for the last
        operations: exp(QK - RM) subtracts into the output, then exponentiates it in place);
        False (nothing written) when its top is not a numpy ufunc of the box's shape. `mask`:
        the kept points, for the reads' bounds check (as `value`)."""
        if not isinstance(expr, Call) or dst.dtype != np.float64:
            return False
        function = self.unary.get(expr.op) if expr.op.arity == 1 else self.binary.get(expr.op)
        if not isinstance(function, np.ufunc):
            return False
        if expr.op.arity == 1:
            if not self._into(expr.args[0], box, env, dst, mask):
                value = self.value(expr.args[0], box, env, mask)
                if np.broadcast_shapes(np.shape(value), dst.shape) != dst.shape:
                    return False
                function(np.broadcast_to(value, dst.shape), out=dst)
                return True
            function(dst, out=dst)
            return True
        right = self.value(expr.args[1], box, env, mask)
        if np.broadcast_shapes(np.shape(right), dst.shape) != dst.shape:
            return False
        # The left operand straight into dst when it is itself a ufunc of the box's shape
        # (exp(QK - RM) / RD: no temporary at all), unless the right one reads dst's memory.
        if not np.may_share_memory(right, dst) and self._into(expr.args[0], box, env, dst, mask):
            function(dst, right, out=dst)
            return True
        left = self.value(expr.args[0], box, env, mask)
        if np.broadcast_shapes(np.shape(left), dst.shape) != dst.shape:
            return False
        function(left, right, out=dst)
        return True

    def _store(self, einsum, dst, result, combine, mask, out_shape):
        result = np.broadcast_to(result, out_shape)
        if combine:
            op = {Op.ADD: np.add, Op.MAX: np.maximum, Op.MIN: np.minimum, Op.MUL: np.multiply}
            if mask is not None:  # a tile one index wide along the reduced rank
                keep = np.broadcast_to(mask, out_shape)
                result = np.where(keep, result, REDUCE_IDENTITY[einsum.reduce_op])
            op[einsum.reduce_op](dst, result, out=dst)
        elif mask is None:
            dst[...] = result
        else:
            np.copyto(dst, result, where=np.broadcast_to(mask, out_shape))

    def _contract(self, einsum: Einsum, box: _Box, mask):
        """A sum of products of reads by matmul/einsum (BLAS), or None when it is not one."""
        factors = _product(einsum.expr)
        if factors is None:
            return None
        n_out = len(einsum.out_indices)
        names = box.vars
        extents = box.extents
        arrays, used = [], []
        for access in factors:
            array = self.read(access, box, mask)
            if array.ndim != len(extents) or any(
                n not in (1, e) for n, e in zip(array.shape, extents, strict=True)
            ):
                return None  # a gather of constants only: the general path handles it
            mine = variables_of(access)
            keep = [v for v in names if v in mine]
            arrays.append(array.reshape([extents[names.index(v)] for v in keep]))
            used.append(keep)
        if mask is not None and _depends(mask, n_out):
            mvars = {v for v, n in zip(names, mask.shape, strict=True) if n != 1}
            owner = next((i for i, u in enumerate(used) if mvars <= set(u)), None)
            if owner is None:
                return None
            for i, array in enumerate(arrays):
                if i != owner and not np.isfinite(array).all():
                    return None
            if not self._zero_outside(factors[owner], einsum, box):
                axes = [names.index(v) for v in used[owner]]
                m = mask.reshape([mask.shape[a] for a in axes]) if mask.ndim else mask
                arrays[owner] = np.where(m, arrays[owner], 0.0)
        out_vars = list(names[:n_out])
        if len(arrays) == 2:
            result = _matmul(arrays, used, out_vars, self._scratch)
        else:
            letters = {v: chr(ord("a") + i) for i, v in enumerate(names)}
            spec = ",".join("".join(letters[v] for v in u) for u in used)
            present = [v for v in out_vars if any(v in u for u in used)]
            result = np.einsum(
                spec + "->" + "".join(letters[v] for v in present), *arrays, optimize=True
            )
            result = _expand(result, present, out_vars)
        return result

    def _zero_outside(self, access: Access, reader: Einsum, box: _Box) -> bool:
        """Whether `access` reads 0 at every point `reader`'s filter drops: its producer
        keeps exactly those points (same clauses, written at the same variables) and never
        writes the others, which hold 0 (fresh storage, or cleared slots)."""
        producer = self.cascade.producers.get(access.tensor)
        if producer is None or producer.reduced_vars or access.indices != producer.out_indices:
            return False
        return self._filter_ids(reader, box.vars) == self._filter_ids(producer)


def variables_of(access: Access) -> set[str]:
    found = set()
    for index in access.indices:
        found |= variables(index)
    return found


def _depends(mask, n_out: int) -> bool:
    """Whether a box mask varies along a reduced (trailing) axis."""
    return (
        mask is not None and np.ndim(mask) > n_out and any(n != 1 for n in np.shape(mask)[n_out:])
    )


def _product(expr: Expr) -> list[Access] | None:
    if isinstance(expr, Access):
        return [expr]
    if isinstance(expr, Call) and expr.op is Op.MUL:
        left, right = _product(expr.args[0]), _product(expr.args[1])
        return left + right if left is not None and right is not None else None
    return None


def _masked_sum(values, mask: np.ndarray, extents: list[int], n_out: int) -> np.ndarray:
    """sum over the trailing (reduced) axes of a box of `values` where `mask` holds, both
    broadcast to the box (`extents`), by one np.einsum over the two."""
    letters = "".join(chr(ord("a") + i) for i in range(len(extents)))
    return np.einsum(
        f"{letters},{letters}->{letters[:n_out]}",
        np.broadcast_to(values, extents),
        np.broadcast_to(mask, extents),
    )


def _take(array: np.ndarray, index: list) -> np.ndarray:
    """`array[tuple(index)]` for index arrays broadcasting against each other (a gather over
    a box). Where each index varies along its own axes of the box (BKP[h, m // MB, p // PQ];
    SK[h, (p - m) % P]: h alone, then m and p), one `np.take` per dimension, the shrinking
    ones first: a copy per element of the result, instead of numpy's advanced indexing, which
    broadcasts every index to the whole result and combines them per element (~10x slower).
    Indices varying along a shared axis (X[m, m]) use advanced indexing."""
    arrays = [np.asarray(i) for i in index]
    n = max((a.ndim for a in arrays), default=0)
    varying = []
    for a in arrays:
        shape = (1,) * (n - a.ndim) + a.shape
        varying.append(tuple(k for k, size in enumerate(shape) if size != 1))
    seen: set[int] = set()
    for axes in varying:
        if seen & set(axes):
            return array[tuple(index)]
        seen |= set(axes)
    extent = {}
    for a, axes in zip(arrays, varying, strict=True):
        shape = (1,) * (n - a.ndim) + a.shape
        extent.update({k: shape[k] for k in axes})
    layout: list = [("dim", d) for d in range(array.ndim)]  # the axes of `result` so far
    result = array
    for d in sorted(range(array.ndim), key=lambda d: arrays[d].size / max(1, array.shape[d])):
        axes = varying[d]
        ix = arrays[d].reshape([extent[k] for k in axes]) if axes else arrays[d].reshape(())
        position = layout.index(("dim", d))
        result = np.take(result, ix, axis=position)
        layout[position : position + 1] = [("box", k) for k in axes]
    result = result.transpose(sorted(range(len(layout)), key=lambda i: layout[i][1]))
    return result.reshape([extent.get(k, 1) for k in range(n)])


def _expand(result, present: list[str], out_vars: list[str]):
    """Insert size-1 axes for output variables no operand uses (they broadcast)."""
    shape = []
    it = iter(result.shape)
    for v in out_vars:
        shape.append(next(it) if v in present else 1)
    return result.reshape(shape)


def _matmul(arrays, used, out_vars, scratch=None):
    """Two operands: batch x left x contracted @ batch x contracted x right, by BLAS, or
    by numpy's own loop (np.einsum) when a side is at most SKINNY; `scratch(shape)`: an
    array to write the product into (a reused buffer), else a new one."""
    (a, b), (ua, ub) = arrays, used
    sum_a = [v for v in ua if v not in ub and v not in out_vars]
    sum_b = [v for v in ub if v not in ua and v not in out_vars]
    if sum_a:
        a = a.sum(axis=tuple(ua.index(v) for v in sum_a))
        ua = [v for v in ua if v not in sum_a]
    if sum_b:
        b = b.sum(axis=tuple(ub.index(v) for v in sum_b))
        ub = [v for v in ub if v not in sum_b]
    batch = [v for v in out_vars if v in ua and v in ub]
    first = next((v for v in out_vars if v not in batch and (v in ua) != (v in ub)), None)
    if first is not None and first in ub:  # the result comes out in the output's order
        a, b, ua, ub = b, a, ub, ua
    left = [v for v in ua if v not in ub]
    right = [v for v in ub if v not in ua]
    inner = [v for v in ua if v in ub and v not in out_vars]
    size = dict(zip(ua, a.shape, strict=True)) | dict(zip(ub, b.shape, strict=True))

    def prod(vs):
        return int(np.prod([size[v] for v in vs], dtype=np.int64))

    a2 = a.transpose([ua.index(v) for v in batch + left + inner]).reshape(
        prod(batch), prod(left), prod(inner)
    )
    b2 = b.transpose([ub.index(v) for v in batch + inner + right]).reshape(
        prod(batch), prod(inner), prod(right)
    )
    shape = (prod(batch), prod(left), prod(right))
    out = scratch(shape) if scratch is not None and a2.dtype == b2.dtype == np.float64 else None
    if min(shape[1], shape[2], prod(inner)) <= SKINNY:
        product = np.einsum("bij,bjk->bik", a2, b2, out=out)
    else:
        product = np.matmul(a2, b2, out=out)
    result = product.reshape([size[v] for v in batch + left + right])
    order = batch + left + right
    present = [v for v in out_vars if v in order]
    result = result.transpose([order.index(v) for v in present])
    return _expand(result, present, out_vars)


def parallel_rank(cascade: Cascade, the_plan: Plan, keep, sizes, shapes, tile) -> tuple[str, int]:
    """A rank the cascade never mixes (every Einsum iterating it writes it as a plain output
    index and every read of it is the plain variable: P, the queries, in attention) and
    its chunk: sized so the largest tensor held in full but not kept (QK[m,p] of the
    multi-pass forms) takes at most CHUNK_POINTS per chunk, or as `tile` says for that rank.
    ("", 0) when none pays off."""
    slots = {name for name, _, _ in the_plan.slots}
    kept = set(shapes) if keep is None else set(keep)
    best, best_chunk, best_size = "", 0, 0
    for rank in cascade.ranks:
        var = var_of(rank)
        ok = rank not in cascade.partition_of
        for einsum in cascade.einsums:
            if not ok:
                break
            if var in einsum.iter_vars and var not in einsum.out_vars:
                ok = False
            for index, out_var in zip(einsum.out_indices, einsum.out_vars, strict=True):
                if out_var == var and index != Var(var):
                    ok = False
            for access in einsum.operands:
                for r, index in zip(
                    cascade.tensor_ranks[access.tensor], access.indices, strict=True
                ):
                    if r == rank and index != Var(var):
                        ok = False
        for init in cascade.inits:
            for r, index in zip(cascade.tensor_ranks[init.tensor], init.indices, strict=True):
                if r == rank and index != Var(var):
                    ok = False
        if not ok:
            continue
        held = [
            int(np.prod(shapes[t], dtype=np.int64))
            for t, ranks in cascade.tensor_ranks.items()
            if rank in ranks and t not in slots and t not in kept and t in cascade.producers
        ]
        extent = int(sizes[rank])
        if held and tile and rank in tile:  # a chunk asked for (the tests' partial chunks)
            return rank, max(1, int(tile[rank]))
        if held and max(held) > CHUNK_POINTS:
            per_index = max(1, max(held) // extent)
            chunk = max(1, CHUNK_POINTS // per_index)
            if chunk < extent and (not best or per_index * chunk < best_size):
                best, best_chunk, best_size = rank, chunk, per_index * chunk
    return best, best_chunk


def evaluate_tiled(
    cascade: Cascade,
    tensors: dict[str, np.ndarray],
    sizes: Mapping[str, int],
    shapes: Mapping[str, tuple[int, ...]],
    dtype,
    keep: Collection[str] | None,
    tile: Mapping[str, int] | None,
) -> dict[str, np.ndarray]:
    """Run `cascade` by its `plan` on validated `tensors` (the inputs); see `evaluate`.

    When a parallel rank exists (`parallel_rank`) and a tensor that is not kept would be
    large, the whole plan runs once per chunk of that rank, holding those tensors for one
    chunk only.
    """
    the_plan = plan(cascade, keep)
    ex = Executor(cascade, sizes, shapes, dtype, tile)
    for name, array in tensors.items():
        ex.store[name] = _Buffer(array)
    slot = {name: (dim, iterative) for name, dim, iterative in the_plan.slots}
    kept = set(shapes) if keep is None else set(keep)
    rank, chunk = parallel_rank(cascade, the_plan, keep, sizes, shapes, tile)
    filtered = {e.output for e in cascade.einsums if ex._clauses(e, set(e.iter_vars))}
    local = []  # buffers reset for every chunk
    for einsum in cascade.einsums:
        shape = list(shapes[einsum.output])
        ranks = cascade.tensor_ranks[einsum.output]
        chunked = rank and einsum.output not in kept
        if chunked:
            shape = [chunk if r == rank else n for r, n in zip(ranks, shape, strict=True)]
        if einsum.output in slot:
            dim, iterative = slot[einsum.output]
            shape[dim] = 2 if iterative else 1
            # A filtered Einsum that reduces writes its identity where it keeps nothing, so
            # only the others leave stale points to clear at the next step.
            partial = einsum.output in filtered and not einsum.reduced_vars
            # Dirty regions: cleared after each step (a partial slot), or for a carried
            # iterative one, the only part `_advance` copies to the next step.
            buf = _Buffer(np.zeros(shape, dtype=dtype), dirty=partial != iterative)
            buf.clear = partial
        else:
            buf = _Buffer(np.zeros(shape, dtype=dtype))
        ex.store[einsum.output] = buf
        if chunked or einsum.output in slot:
            local.append(einsum.output)
    inits = [
        (
            init.tensor,
            tuple(
                slice(None) if isinstance(i, Var) else int(ex._index(i, {})) for i in init.indices
            ),
            init.value,
        )
        for init in cascade.inits
    ]
    for name, index, value in inits:
        ex.store[name].array[index] = value

    extent = int(sizes[rank]) if rank else 1
    starts = range(0, extent, chunk) if rank else (0,)
    with np.errstate(all="ignore"):
        for c0 in starts:
            bounds = {var_of(rank): (c0, min(c0 + chunk, extent))} if rank else {}
            if c0:
                _reset(ex, cascade, local, inits, rank, c0)
            _run_plan(ex, the_plan, slot, sizes, bounds, kept)
    return {name: buf.array for name, buf in ex.store.items() if name in kept}


def _reset(ex: Executor, cascade: Cascade, local, inits, rank: str, c0: int) -> None:
    """Fresh buffers for the chunk starting at c0 of `rank` (zeros, then the inits)."""
    for name in local:
        buf = ex.store[name]
        buf.array[...] = 0.0
        ranks = cascade.tensor_ranks[name]
        buf.offsets = [c0 if r == rank else 0 for r in ranks]
        if buf.dirty is not None:
            buf.dirty.clear()
    names = set(local)
    for name, index, value in inits:
        if name in names:
            ex.store[name].array[index] = value


@dataclass(frozen=True, slots=True)
class Quiet:
    """A run whose steps may skip the columns (values of `var`) where every filtered
    member keeps nothing: there, each member's result is provably what the step already
    holds (see `quiet_columns`). `finite`: tensors the proof subtracts from themselves."""

    var: str
    filtered: tuple[Einsum, ...]
    finite: tuple[str, ...]


_SAME = "same"  # abstract value: the tensor's element at the previous step, unchanged


def _abstract(expr: Expr, state, carried, run_rank: str, cascade: Cascade, finite: set):
    """The value of `expr` at a quiet column, as far as it is known: ("const", c),
    (_SAME, T) (T's previous element, for an iterative tensor the run carries) or None.
    Only exact identities are used (x + 0, x * 1, max(x, -inf), x - x for finite x)."""
    if isinstance(expr, Const):
        return ("const", float(expr.value))
    if isinstance(expr, Access):
        dims = [d for d, r in enumerate(cascade.tensor_ranks[expr.tensor]) if r == run_rank]
        if len(dims) != 1:
            return None
        parsed = iterative_offset(expr.indices[dims[0]])
        if parsed is None:
            return None
        if expr.tensor in carried and parsed[1] == 0:
            return (_SAME, expr.tensor)
        if expr.tensor in state:  # made earlier in this step
            iterative = expr.tensor in carried
            return state[expr.tensor] if parsed[1] == (1 if iterative else 0) else None
        return None
    if not isinstance(expr, Call):
        return None
    args = [_abstract(a, state, carried, run_rank, cascade, finite) for a in expr.args]
    if any(a is None for a in args):
        return None
    if all(a[0] == "const" for a in args):
        from .executor import _BINARY_NUMPY, _UNARY_NUMPY

        values = [np.float64(a[1]) for a in args]
        with np.errstate(all="ignore"):
            if expr.op.arity == 1:
                return ("const", float(_UNARY_NUMPY[expr.op](values[0])))
            return ("const", float(_BINARY_NUMPY[expr.op](values[0], values[1])))
    if len(args) != 2:
        return None
    a, b = args
    op = expr.op
    neutral = {Op.ADD: 0.0, Op.MUL: 1.0, Op.MAX: -np.inf, Op.MIN: np.inf}
    if op in neutral:
        if b == ("const", neutral[op]):
            return a
        if a == ("const", neutral[op]):
            return b
    if op in (Op.SUB, Op.DIV) and b == ("const", 0.0 if op is Op.SUB else 1.0):
        return a
    if op in (Op.MAX, Op.MIN) and a == b:
        return a
    if op is Op.SUB and a == b and a[0] == _SAME:
        finite.add(a[1])  # x - x = 0 only for finite x: checked on the data at each step
        return ("const", 0.0)
    return None


def quiet_columns(ex: Executor, run: Run, slot, kept) -> Quiet | None:
    """Whether the run's steps may skip, along one variable, the tiles where every filtered
    member is empty, and along which variable.

    At such a column a filtered member's result is known (its reduction's identity, or 0
    for an unreduced one: the point is never written), so the unfiltered members are
    evaluated abstractly (`_abstract`). The run qualifies when, there, every iterative
    tensor it carries is provably unchanged (RM[m1+1] = max(RM[m1], -inf) = RM[m1];
    PRM = exp(RM - RM) = 1; RNV[m1+1] = 1 * RNV[m1] + 0), every accumulated output
    receives its reduction's identity, and every other output is a slot only the run reads.
    The variable (P in attention) is one every member writes and reads plainly. Skipping
    then changes no value: the slots keep the previous step where nothing is written
    (`_advance` copies only what was written)."""
    cascade = ex.cascade
    filtered = [e for e in run.einsums if ex._clauses(e, set(e.iter_vars))]
    if not filtered:
        return None
    run_rank = rank_of(run.var)
    candidates: set[str] = set()
    for e in filtered:
        for clause in ex._clauses(e, set(e.iter_vars)):
            candidates |= ex._vars_of(clause)[0]
    carried = {
        e.output
        for e in run.einsums
        if e.output in slot and slot[e.output][1] and e.output not in run.accumulate
    }
    for var in sorted(candidates - {run.var}, key=lambda v: -int(ex.sizes[rank_of(v)])):
        rank = rank_of(var)
        # Members that do not iterate `var` (BK[e,m1,m0], filtered by a partial last M0
        # tile) run whole at every step.
        across = [e for e in filtered if var in e.iter_vars]
        if not across or not _plain_everywhere(cascade, run, var, rank):
            continue
        state: dict = {}
        finite: set[str] = set()
        ok = True
        for e in run.einsums:
            iterative = any(cascade.iterative_dims[e.output])
            if var not in e.iter_vars:  # runs whole at every step
                state[e.output] = None
                continue
            if e in across:
                if e.output in run.accumulate:
                    continue  # empty tiles add nothing
                if e.output not in slot or iterative:
                    ok = False
                    break
                value = ("const", REDUCE_IDENTITY[e.reduce_op] if e.reduced_vars else 0.0)
            else:
                value = _abstract(e.expr, state, carried, run_rank, cascade, finite)
                if e.reduced_vars and value is not None:
                    c = value[1]
                    if value[0] != "const" or not (
                        e.reduce_op in (Op.MAX, Op.MIN) or c == REDUCE_IDENTITY[e.reduce_op]
                    ):
                        value = None
                if e.output in run.accumulate:
                    if value != ("const", REDUCE_IDENTITY[e.reduce_op]):
                        ok = False
                        break
                    continue
                if e.output in carried:
                    if value != (_SAME, e.output):
                        ok = False
                        break
                elif e.output not in slot or iterative or e.output in kept:
                    ok = False
                    break
            state[e.output] = value
        if ok:
            return Quiet(var, tuple(across), tuple(sorted(finite)))
    return None


def _plain_everywhere(cascade: Cascade, run: Run, var: str, rank: str) -> bool:
    """Every member that iterates `var` writes it as its own plain index, every read of
    `rank` in the run is the plain `var` (and `var` indexes nothing else), and the members
    that do not iterate it (BK[e,m1,m0], run whole) read nothing along `rank`."""
    for e in run.einsums:
        if var not in e.iter_vars:
            if any(rank in cascade.tensor_ranks[a.tensor] for a in e.operands):
                return False
            continue
        if var not in e.out_vars:
            return False
        for r, index in zip(cascade.tensor_ranks[e.output], e.out_indices, strict=True):
            if (r == rank) != (index == Var(var)) or (r != rank and var in variables(index)):
                return False
        for access in e.operands:
            for r, index in zip(cascade.tensor_ranks[access.tensor], access.indices, strict=True):
                if (r == rank and index != Var(var)) or (r != rank and var in variables(index)):
                    return False
    return True


def _run_plan(ex: Executor, the_plan: Plan, slot, sizes, bounds, kept=frozenset()) -> None:
    ex._masks.clear()
    items = the_plan.items
    for position, item in enumerate(items):
        ex._classes.clear()
        ex._full.clear()
        if isinstance(item, Einsum):
            ex._loop = None
            ex.keep_masks(item)
            # Its masks are kept for the next item only when that one shares its filter
            # (else each tile's mask is freed once used: VAB's comparison, unshared, would
            # otherwise hold a byte per point of its whole iteration space).
            after = items[position + 1] if position + 1 < len(items) else None
            ex.share_masks = isinstance(after, Einsum) and ex.same_filter(item, after)
            ex.run(item, bounds)
            ex.drop_masks_reading(item.output)
            continue
        ex.share_masks = True  # the members of a run share a filter at each step
        ex._masks.clear()
        if _scan(ex, item, slot, bounds):
            ex._masks.clear()
            continue
        quiet = quiet_columns(ex, item, slot, kept)
        for e in item.einsums:  # the step-i and i+1 elements agree where nothing is written
            if e.output in slot and slot[e.output][1] and ex.store[e.output].dirty is not None:
                array, dim = ex.store[e.output].array, slot[e.output][0]
                first = [slice(None)] * array.ndim
                second = [slice(None)] * array.ndim
                first[dim], second[dim] = 0, 1
                array[tuple(second)] = array[tuple(first)]
        for e in item.einsums:
            if e.output in item.accumulate:
                box = _Box(
                    list(e.out_vars),
                    [bounds[v][0] if v in bounds else 0 for v in e.out_vars],
                    [bounds[v][1] if v in bounds else int(sizes[rank_of(v)]) for v in e.out_vars],
                )
                ex._fill_identity(e, box)
        steps = int(sizes[rank_of(item.var)])
        ex._loop = (item.var, steps)
        for i in range(steps):
            at = {**bounds, item.var: (i, i + 1)}
            ranges = ex.active(quiet, at) if quiet is not None else None
            for e in item.einsums:
                accumulate = e.output in item.accumulate
                if ranges is None:
                    ex.run(e, at, accumulate=accumulate)
                    continue
                if quiet.var not in e.iter_vars:
                    ex.run(e, at, accumulate=accumulate)
                    continue
                for lo, hi in ranges:
                    ex.run(e, {**at, quiet.var: (lo, hi)}, accumulate=accumulate)
            ex._masks.clear()
            if i + 1 < steps:
                _advance(ex, item, slot, i + 1)


_ACCUMULATE = {Op.ADD: np.add, Op.MUL: np.multiply, Op.MAX: np.maximum, Op.MIN: np.minimum}


def _scan(ex: Executor, run: Run, slot, bounds) -> bool:
    """Run a loop of recurrences `T[..,v+1,..] = T[..,v,..] op X` (a prefix sum such as
    CK[h,m+1,e] = CK[h,m,e] + K[h,e,m]) at once: X over every step, then `op.accumulate`
    along v from T[0], which combines in the loop's order (the same numbers). False (nothing
    done) unless every member is such a recurrence, unfiltered, unreduced, held in full,
    with X reading no member, and X over all steps fits in TILE_POINTS."""
    jobs = []
    made = {e.output for e in run.einsums}
    steps = int(ex.sizes[rank_of(run.var)])
    for e in run.einsums:
        expr = e.expr
        if (
            e.output in slot
            or e.reduced_vars
            or ex._clauses(e, set(e.iter_vars))
            or not isinstance(expr, Call)
            or expr.op not in _ACCUMULATE
        ):
            return False
        own = [
            i
            for i, a in enumerate(expr.args)
            if isinstance(a, Access) and a.tensor == e.output and a.indices == _previous(e, run.var)
        ]
        if len(own) != 1 or [iterative_offset(o) for o in e.out_indices].count((run.var, 1)) != 1:
            return False
        rest = expr.args[1 - own[0]]
        if any(isinstance(x, Access) and x.tensor in made for x in walk(rest)):
            return False
        if any(iterative_offset(o) is None for o in e.out_indices):
            return False
        jobs.append((e, rest, own[0]))
    for e, _, _ in jobs:
        names = list(e.iter_vars)
        lo = [bounds[v][0] if v in bounds else 0 for v in names]
        hi = [bounds[v][1] if v in bounds else int(ex.sizes[rank_of(v)]) for v in names]
        lo[names.index(run.var)], hi[names.index(run.var)] = 0, steps
        if int(np.prod([b - a for a, b in zip(lo, hi, strict=True)])) > TILE_POINTS:
            return False
    for e, rest, _ in jobs:
        names = list(e.iter_vars)
        lo = [bounds[v][0] if v in bounds else 0 for v in names]
        hi = [bounds[v][1] if v in bounds else int(ex.sizes[rank_of(v)]) for v in names]
        k = names.index(run.var)
        lo[k], hi[k] = 0, steps
        box = _Box(names, lo, hi)
        values = np.broadcast_to(ex.value(rest, box, ex._local(box), None), box.extents)
        dst, _ = ex._target(e, box)  # elements 1..steps
        start = box.with_range(run.var, 0, 1)
        first = ex.read(Access(e.output, _previous(e, run.var)), start, None)
        first = np.broadcast_to(first, [*box.extents[:k], 1, *box.extents[k + 1 :]])
        # Folded left from T[0] as the loop does (T op X and X op T agree: commutative).
        both = np.concatenate([first, values], axis=k)
        result = _ACCUMULATE[e.expr.op].accumulate(both, axis=k)  # type: ignore[union-attr]
        dst[...] = result.take(range(1, steps + 1), axis=k).reshape(dst.shape)
    return True


def _previous(einsum: Einsum, var: str) -> tuple[Expr, ...]:
    """The output's indices at the previous step (`m+1` read as `m`)."""
    return tuple(Var(var) if iterative_offset(o) == (var, 1) else o for o in einsum.out_indices)


def _advance(ex: Executor, run: Run, slot, i: int) -> None:
    """Move the run's slots to step i: the iterative ones keep their last element."""
    for e in run.einsums:
        if e.output not in slot:
            continue
        dim, iterative = slot[e.output]
        buf = ex.store[e.output]
        array = buf.array
        if iterative and buf.dirty is not None and all(r[dim] == slice(1, 2) for r in buf.dirty):
            for region in buf.dirty:  # copy what this step wrote; the rest already agrees
                earlier = list(region)
                earlier[dim] = slice(0, 1)
                array[tuple(earlier)] = array[region]
            buf.dirty.clear()
        elif iterative:
            if buf.dirty is not None:
                buf.dirty.clear()
            first = [slice(None)] * array.ndim
            second = [slice(None)] * array.ndim
            first[dim], second[dim] = 0, 1
            array[tuple(first)] = array[tuple(second)]
            if buf.clear:  # an unfiltered producer overwrites the whole step
                array[tuple(second)] = 0.0
        elif buf.dirty is not None:
            for region in buf.dirty:
                array[region] = 0.0
            buf.dirty.clear()
        buf.offsets[dim] = i
