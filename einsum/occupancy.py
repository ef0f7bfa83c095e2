"""Tile occupancy of masked iteration spaces: empty, partial and full tiles, exactly.

An Einsum's iteration space (one axis per index variable) is cut into tiles by a tiling
({RANK: extent}); a tile is *empty* when its filter keeps no point in it, *full* when it
keeps every real point (a partition's padding, m1*M0 + m0 >= M, is never a point), else
*partial*. Hardware that skips empty tiles and computes partial tiles in full iterates the
*busy points*: the real points of every non-empty tile.

Three exact ways to count, chosen from the filter's structure (never from a name):

- `closed_form`: a filter that is a conjunction of comparisons affine in one "key"
  variable x (`m`, or `m1*M0+m0` with M0 untiled) for each value of one "query" variable y,
  whose kept interval [lo(y), hi(y)] moves monotonically: per tile row one interval of
  tiles, computed in a compiled loop over rows (causal, windows, decode offsets).
- `compiled`: any other filter without tensor reads is compiled (numba) into one loop nest
  over the filter's variables that counts kept and real points per tile (NATTEN 2D/3D
  with dilation and stride, sinks + window, block masks written with `//`).
- `data` / `declared_density`: a filter that reads a tensor (a selection computed by the
  cascade, MoBA's top-k blocks) is evaluated on the caller's inputs with the reference
  executor, or priced from a declared density of its data-dependent conjuncts.

Many tilings are evaluated at once: the distinct tilings are counted once each and
scattered back to the n requested.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np

from .errors import SpecError
from .ir import Access, Call, Cascade, Const, Einsum, Expr, Op, Size, Var, rank_of, var_of, walk
from .ir import variables as variables_of
from .shape import resolve_shape

METHODS = ("dense", "closed_form", "compiled", "data", "declared_density")


@dataclass(frozen=True, eq=False)
class Occupancy:
    """One Einsum's iteration space cut into tiles, for n tilings at once (int64 arrays (n,)).

    `empty + partial + full == tiles`; `points` are the exact kept points (equal to the
    op-count points); `busy_points` the real points of the non-empty tiles, each tile
    counted whole (clipped to the rank extents and to M for a partition's padded tile).
    `method` says how the filter was counted (see `METHODS`).
    """

    einsum: str
    ranks: tuple[str, ...]
    tiles: np.ndarray
    empty: np.ndarray
    partial: np.ndarray
    full: np.ndarray
    points: np.ndarray
    busy_points: np.ndarray
    method: str


# ------------------------------------------------------------------ declared densities

_DECLARED: dict[Cascade, float | Callable[[Mapping[str, int]], float]] = {}


def declare_density(cascade: Cascade, density) -> Cascade:
    """Declare the default density of a cascade's data-dependent filters; returns `cascade`.

    `density` is a float in (0, 1] or a callable of the resolved sizes giving one: the
    fraction of the points kept by the filter's static conjuncts (those reading no tensor)
    that the data-dependent conjuncts also keep. A variant builder declares it (MoBA: TOPK+1
    blocks of BS per query over the causal prefix); `occupancy` and `op_counts` use it when
    the caller gives neither inputs nor a density. Keyed by the cascade's value, so an equal
    cascade built again finds it.
    """
    _DECLARED[cascade] = density
    return cascade


def declared_density(cascade: Cascade) -> float | Callable | None:
    """The density `declare_density` recorded for this cascade, or None."""
    return _DECLARED.get(cascade)


# ------------------------------------------------------------------ the public function


def occupancy(
    cascade: Cascade,
    sizes: Mapping[str, int],
    tile: Mapping[str, object],
    einsums: Sequence[str] | None = None,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    density: float | Mapping[str, float] | None = None,
) -> dict[str, Occupancy]:
    """Empty, partial and full tiles and the exact points of each Einsum, for n tilings.

    Args:
        cascade: the cascade.
        sizes: rank sizes (ints; derived partition sizes are filled in).
        tile: {RANK: extent} over ranks of the iteration spaces, each an int or an int array
            of shape (n,) (all arrays the same n). A rank not given is whole in each tile.
        einsums: output names of the Einsums to analyse (default: all). An Einsum without a
            filter listed with filtered ones has a tile empty when no filtered Einsum among
            them that shares a cut rank with it (a tile smaller than the rank) keeps a point
            in that tile projected onto their shared ranks (PRM[m1,p] under a causal QK: the
            key tiles past p are skipped, as the correction work of a skipped tile is).
        inputs: the cascade's inputs, to evaluate data-dependent filters exactly.
        density: a float in (0, 1] or {einsum: float}: the kept fraction of the static part
            of data-dependent filters, when no inputs are given.

    Returns:
        {einsum output: Occupancy}, in cascade order.

    Raises:
        SpecError: an unknown Einsum or tiled rank, a non-positive tile, arrays of different
            lengths, or a data-dependent filter with no inputs, density or declared default.

    Example:
        >>> from einsim import parse_cascade
        >>> c = parse_cascade("inputs: Q[e,p], K[e,m]\\nS[m,p] = Q[e,p] * K[e,m] where m <= p")
        >>> o = occupancy(c, {"E": 4, "M": 8, "P": 8}, {"M": 4, "P": 4})["S"]
        >>> o.empty.tolist(), o.partial.tolist(), o.full.tolist(), o.points.tolist()
        ([1], [2], [1], [144])
    """
    sizes = resolve_shape(cascade, sizes)
    chosen = _chosen(cascade, einsums)
    n, table, names = _tile_table(cascade, chosen, tile)
    unique, inverse = np.unique(table, axis=0, return_inverse=True) if n else (table, table)
    inverse = np.asarray(inverse).reshape(-1)
    tilings = [dict(zip(names, map(int, row), strict=True)) for row in unique]
    tensors = cascade.evaluate(inputs, sizes) if inputs is not None else None

    filtered = [e for e in chosen if e.where is not None]
    results: dict[str, Occupancy] = {}
    grids: dict[str, list[_Grid]] = {}
    for einsum in filtered:
        frac = _density_for(cascade, einsum, sizes, density) if tensors is None else None
        counts, method = [], ""
        for t in tilings:
            grid, method = _filtered_grid(cascade, einsum, sizes, t, tensors, frac)
            counts.append(grid)
        grids[einsum.output] = counts
    for einsum in chosen:
        if einsum.where is not None:
            per = grids[einsum.output]
            method = per[0].method
        else:
            per = [
                _unfiltered_grid(
                    cascade,
                    einsum,
                    sizes,
                    t,
                    [grids[f.output][i] for f in filtered if _share_tiled(t, sizes, f, einsum)],
                )
                for i, t in enumerate(tilings)
            ]
            method = "dense"
        stats = np.array([_totals(einsum, sizes, t, g) for t, g in zip(tilings, per, strict=True)])
        stats = stats.reshape(len(tilings), 6)[inverse]
        results[einsum.output] = Occupancy(
            einsum=einsum.output,
            ranks=tuple(rank_of(v) for v in einsum.iter_vars),
            tiles=stats[:, 0].copy(),
            empty=stats[:, 1].copy(),
            partial=stats[:, 2].copy(),
            full=stats[:, 3].copy(),
            points=stats[:, 4].copy(),
            busy_points=stats[:, 5].copy(),
            method=method,
        )
    return results


def _share_tiled(t, sizes, f: Einsum, u: Einsum) -> bool:
    """Whether two Einsums share a rank this tiling cuts (a tile smaller than the rank)."""
    shared = {rank_of(v) for v in f.iter_vars} & {rank_of(v) for v in u.iter_vars}
    return any(t.get(r, int(sizes[r])) < int(sizes[r]) for r in shared)


def _chosen(cascade: Cascade, einsums) -> list[Einsum]:
    if einsums is None:
        return list(cascade.einsums)
    if isinstance(einsums, str):
        einsums = (einsums,)
    wanted = set(einsums)
    unknown = sorted(wanted - set(cascade.producers))
    if unknown:
        raise SpecError(
            f"occupancy: no Einsum produces {', '.join(unknown)}; "
            f"produced: {', '.join(cascade.producers)}"
        )
    return [e for e in cascade.einsums if e.output in wanted]


def _tile_table(cascade, chosen, tile) -> tuple[int, np.ndarray, tuple[str, ...]]:
    """The tilings as an (n, ranks) int64 table; n = 1 when every value is a scalar."""
    known = {rank_of(v) for e in chosen for v in e.iter_vars}
    names = tuple(tile)
    for rank in names:
        if rank not in known:
            raise SpecError(
                f"occupancy: tile rank {rank!r} is not iterated by the Einsums analysed; "
                f"their ranks: {', '.join(sorted(known))}"
            )
    columns = [np.asarray(tile[r]) for r in names]
    lengths = {c.shape[0] for c in columns if c.ndim == 1}
    if len(lengths) > 1 or any(c.ndim > 1 for c in columns):
        raise SpecError(
            "occupancy: tile values must be ints or int arrays of one length (n,), got "
            + ", ".join(f"{r}: shape {c.shape}" for r, c in zip(names, columns, strict=True))
        )
    n = lengths.pop() if lengths else 1
    table = np.empty((n, len(names)), dtype=np.int64)
    for j, (rank, column) in enumerate(zip(names, columns, strict=True)):
        values = np.broadcast_to(column, (n,))
        if values.size and (not np.issubdtype(values.dtype, np.integer) or int(values.min()) < 1):
            raise SpecError(f"occupancy: tile {rank} must be positive integers, got {column}")
        table[:, j] = values
    return n, table, names


# ------------------------------------------------------------------------- tile grids


@dataclass(frozen=True, eq=False)
class _Grid:
    """Per-tile counts over some variables of one Einsum, for one tiling.

    `vars` are the axes (each cut into ceil(extent / tile) tiles); `kept` and `valid` the
    kept and real points of each tile over those variables only (the other variables are
    unmasked: each of their tiles repeats the same counts). `scale` multiplies kept points
    for a declared density (1 otherwise).
    """

    vars: tuple[str, ...]
    kept: np.ndarray
    valid: np.ndarray
    method: str
    scale: float = 1.0
    total_kept: int | None = None  # exact total when known without the per-tile grid


def _extent(sizes, var: str) -> int:
    return int(sizes[rank_of(var)])


def _tile_of(t: Mapping[str, int], sizes, var: str) -> int:
    return min(int(t.get(rank_of(var), _extent(sizes, var))), _extent(sizes, var))


def _ntiles(t, sizes, var) -> int:
    return -(-_extent(sizes, var) // _tile_of(t, sizes, var))


def mask_vars(cascade: Cascade, einsum: Einsum, sizes) -> tuple[str, ...]:
    """The variables that decide whether a point is kept: the filter's (a partitioned
    rank's variable brings both parts) and both parts of a partition with a partial tile."""
    wanted = set(variables_of(einsum.where))
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if var_of(part.rank) in wanted:
            wanted |= {hi, lo}
        both = hi in einsum.iter_vars and lo in einsum.iter_vars
        if both and _partial(part, sizes):
            wanted |= {hi, lo}
    return tuple(v for v in einsum.iter_vars if v in wanted)


def _partial(part, sizes) -> bool:
    return int(sizes[part.upper]) * int(sizes[part.lower]) != int(sizes[part.rank])


def _totals(einsum: Einsum, sizes, t, grid: _Grid) -> tuple[int, ...]:
    """(tiles, empty, partial, full, points, busy_points) of one Einsum for one tiling."""
    others = [v for v in einsum.iter_vars if v not in grid.vars]
    other_tiles = math.prod(_ntiles(t, sizes, v) for v in others)
    other_points = math.prod(_extent(sizes, v) for v in others)
    tiles = math.prod(_ntiles(t, sizes, v) for v in einsum.iter_vars)
    kept, valid = grid.kept, grid.valid
    nonempty = kept > 0
    full = int(np.count_nonzero(nonempty & (kept == valid))) * other_tiles
    empty = int(kept.size - np.count_nonzero(nonempty)) * other_tiles
    total = int(kept.sum()) if grid.total_kept is None else grid.total_kept
    busy = int(valid[nonempty].sum()) * other_points
    points = total * other_points
    if grid.scale != 1.0:  # declared density: whole tiles of the static part kept
        nonempty_tiles = tiles - empty
        kept_tiles = round(grid.scale * nonempty_tiles)
        full = round(grid.scale * full)
        empty = tiles - kept_tiles
        points = round(grid.scale * points)
        busy = round(grid.scale * busy)
    partial = tiles - empty - full
    return tiles, empty, partial, full, points, busy


def _filtered_grid(cascade, einsum, sizes, t, tensors, frac) -> tuple[_Grid, str]:
    data = _reads_tensor(einsum.where)
    if data and tensors is not None:
        grid = _numpy_grid(cascade, einsum, sizes, t, einsum.where, tensors)
        return _with(grid, "data"), "data"
    if data:
        static = _static_part(einsum.where)
        grid = _static_grid(cascade, einsum, sizes, t, static)
        return _with(grid, "declared_density", frac), "declared_density"
    grid = _static_grid(cascade, einsum, sizes, t, einsum.where)
    return grid, grid.method


def _with(grid: _Grid, method: str, scale: float = 1.0) -> _Grid:
    return _Grid(grid.vars, grid.kept, grid.valid, method, scale, grid.total_kept)


def _static_grid(cascade, einsum, sizes, t, where) -> _Grid:
    """A tensor-free filter (or None): closed form when affine, else the compiled kernel."""
    vars_ = _mask_vars_of(cascade, einsum, sizes, where)
    closed = _closed_form_grid(cascade, einsum, sizes, t, where, vars_)
    if closed is not None:
        return closed
    return _compiled_grid(cascade, einsum, sizes, t, where, vars_)


def _mask_vars_of(cascade, einsum, sizes, where) -> tuple[str, ...]:
    probe = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, where)
    return tuple(v for v in mask_vars(cascade, probe, sizes) if v in einsum.iter_vars)


def _reads_tensor(expr: Expr | None) -> bool:
    return expr is not None and any(isinstance(e, Access) for e in walk(expr))


def _conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.op is Op.AND:
        return _conjuncts(expr.args[0]) + _conjuncts(expr.args[1])
    return [expr]


def _static_part(where: Expr) -> Expr | None:
    """The conjuncts of a filter that read no tensor (None when there are none)."""
    static = [c for c in _conjuncts(where) if not _reads_tensor(c)]
    if not static:
        return None
    out = static[0]
    for c in static[1:]:
        out = Call(Op.AND, (out, c))
    return out


def _density_for(cascade, einsum, sizes, density) -> float | None:
    if not _reads_tensor(einsum.where):
        return None
    value = density.get(einsum.output) if isinstance(density, Mapping) else density
    if value is None:
        value = declared_density(cascade)
        if callable(value):
            value = value(sizes)
    if value is None:
        raise SpecError(
            f"{einsum.output}: its filter reads a tensor (a data-dependent selection); "
            "pass inputs= to evaluate it or density= (the kept fraction, in (0, 1])"
        )
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise SpecError(f"{einsum.output}: density must be in (0, 1], got {value}")
    return value


def _unfiltered_grid(cascade, einsum, sizes, t, sharing: list[_Grid]) -> _Grid:
    """Real points per tile of an Einsum without a filter; a tile no filtered Einsum of the
    kernel keeps a point in (projected onto the shared variables) is emptied."""
    own = mask_vars(cascade, einsum, sizes)
    projected = [v for g in sharing for v in g.vars if v in einsum.iter_vars]
    vars_ = tuple(v for v in einsum.iter_vars if v in own or v in projected)
    valid = _compiled_grid(cascade, einsum, sizes, t, None, vars_).valid
    if not sharing:
        return _Grid(vars_, valid, valid, "dense")
    busy = np.zeros(valid.shape, dtype=bool)
    for g in sharing:
        nonempty = g.kept > 0
        drop = tuple(i for i, v in enumerate(g.vars) if v not in vars_)
        nonempty = nonempty.any(axis=drop) if drop else nonempty
        kept_vars = [v for v in g.vars if v in vars_]
        # Lay the projection along this Einsum's axes (absent axes broadcast).
        order = sorted(range(len(kept_vars)), key=lambda i: vars_.index(kept_vars[i]))
        nonempty = np.transpose(nonempty, order)
        shape = [valid.shape[i] if v in kept_vars else 1 for i, v in enumerate(vars_)]
        busy |= nonempty.reshape(shape)
    kept = np.where(busy, valid, 0)
    return _Grid(vars_, kept, kept, "dense", total_kept=int(valid.sum()))


# ---------------------------------------------------------------- the compiled kernel


def _gen(expr: Expr, names: dict[str, str], size_index: dict[str, int]) -> str:
    """Python source of a filter expression, in floats as the executor computes it."""
    if isinstance(expr, Const):
        v = expr.value
        return "math.inf" if v == math.inf else "(-math.inf)" if v == -math.inf else repr(v)
    if isinstance(expr, Var):
        return names[expr.name]
    if isinstance(expr, Size):
        return f"sz[{size_index[expr.name]}]"
    if isinstance(expr, Access):
        raise SpecError(f"occupancy: cannot compile a tensor read {expr}")
    a = [_gen(x, names, size_index) for x in expr.args]
    op = expr.op
    if op in _INFIX:
        return f"({a[0]} {_INFIX[op]} {a[1]})"
    if op in _COMPARE:
        return f"(1.0 if {a[0]} {_COMPARE[op]} {a[1]} else 0.0)"
    if op is Op.AND:
        return f"(1.0 if ({a[0]} != 0.0 and {a[1]} != 0.0) else 0.0)"
    if op is Op.OR:
        return f"(1.0 if ({a[0]} != 0.0 or {a[1]} != 0.0) else 0.0)"
    if op is Op.NOT:
        return f"(1.0 if {a[0]} == 0.0 else 0.0)"
    if op is Op.NEG:
        return f"(-{a[0]})"
    if op in (Op.MAX, Op.MIN):
        return f"{op.value}({a[0]}, {a[1]})"
    if op is Op.ABS:
        return f"abs({a[0]})"
    if op is Op.RELU:
        return f"max({a[0]}, 0.0)"
    if op in (Op.EXP, Op.LOG, Op.SQRT, Op.TANH):
        return f"math.{op.value}({a[0]})"
    raise SpecError(f"occupancy: operator {op.value} is not supported in a filter")


_INFIX = {
    Op.ADD: "+",
    Op.SUB: "-",
    Op.MUL: "*",
    Op.DIV: "/",
    Op.FLOORDIV: "//",
    Op.MOD: "%",
}
_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">=", Op.EQ: "==", Op.NE: "!="}


def _kernel_parts(cascade, einsum, sizes, where, vars_):
    """(source, size names): a loop nest over `vars_` counting kept and real points per
    tile. Tiles are walked block by block so the innermost loop has no division."""
    names = {v: f"x{i}" for i, v in enumerate(vars_)}
    size_names = sorted(
        {e.name for e in walk(where) if isinstance(e, Size)} if where is not None else set()
    )
    checks, derived = [], []
    for part in cascade.partitions:
        hi, lo = var_of(part.upper), var_of(part.lower)
        if hi in names and lo in names:
            for s in (part.lower, part.rank):
                if s not in size_names:
                    size_names.append(s)
            if _partial(part, sizes):
                checks.append((names[hi], names[lo], part.lower, part.rank))
            combined = var_of(part.rank)
            if combined not in names and combined not in {d[0] for d in derived}:
                derived.append((combined, names[hi], part.lower, names[lo]))
    size_index = {s: i for i, s in enumerate(size_names)}
    local = dict(names)
    for combined, _, _, _ in derived:
        local[combined] = f"c_{combined}"
    keep = "True" if where is None else f"{_gen(where, local, size_index)} != 0.0"
    k = len(vars_)
    lines = ["def kernel(ext, tile, sz, kept, valid):"]
    for i in range(k):
        lines.append(f"    n{i} = (ext[{i}] + tile[{i}] - 1) // tile[{i}]")
    indent = "    "
    for i in range(k):
        lines.append(f"{indent}for t{i} in range(n{i}):")
        indent += "    "
        if i == k - 1:
            lines.append(f"{indent}ck = 0")
            lines.append(f"{indent}cv = 0")
        lines.append(
            f"{indent}for i{i} in range(t{i} * tile[{i}], min(t{i} * tile[{i}] + tile[{i}], "
            f"ext[{i}])):"
        )
        indent += "    "
        lines.append(f"{indent}x{i} = float(i{i})")
    for combined, hi, lo_size, lo in derived:
        lines.append(f"{indent}c_{combined} = {hi} * sz[{size_index[lo_size]}] + {lo}")
    valid = " and ".join(
        f"{hi} * sz[{size_index[lo_s]}] + {lo} < sz[{size_index[whole]}]"
        for hi, lo, lo_s, whole in checks
    )
    lines.append(f"{indent}if {valid or 'True'}:")
    lines.append(f"{indent}    cv += 1")
    lines.append(f"{indent}    if {keep}:")
    lines.append(f"{indent}        ck += 1")
    index = ", ".join(f"t{i}" for i in range(k)) + ("," if k == 1 else "")
    indent = "    " * (2 * k)
    lines.append(f"{indent}kept[{index}] += ck")
    lines.append(f"{indent}valid[{index}] += cv")
    return "\n".join(lines) + "\n", tuple(size_names)


@cache
def _compile(source: str):
    scope: dict = {"math": math}
    exec(compile(source, "<occupancy kernel>", "exec"), scope)  # source generated from the IR
    return numba.njit(error_model="numpy", nogil=True)(scope["kernel"])


def _compiled_grid(cascade, einsum, sizes, t, where, vars_) -> _Grid:
    if not vars_:
        one = np.ones((), dtype=np.int64)
        keep = 1
        if where is not None:
            from .executor import _value

            keep = int(_value(where, {}, sizes, {}, None) != 0)
        return _Grid((), one * keep, one, "compiled" if where is not None else "dense")
    source, size_names = _kernel_parts(cascade, einsum, sizes, where, vars_)
    kernel = _compile(source)
    ext = np.array([_extent(sizes, v) for v in vars_], dtype=np.int64)
    tiles = np.array([_tile_of(t, sizes, v) for v in vars_], dtype=np.int64)
    shape = tuple(-(-ext // tiles))
    kept = np.zeros(shape, dtype=np.int64)
    valid = np.zeros(shape, dtype=np.int64)
    sz = np.array([float(sizes[s]) for s in size_names], dtype=np.float64)
    kernel(ext, tiles, sz, kept, valid)
    return _Grid(tuple(vars_), kept, valid, "compiled" if where is not None else "dense")


# --------------------------------------------------------------- the numpy reference


def _numpy_grid(cascade, einsum, sizes, t, where, tensors=None, budget: int = 2**24) -> _Grid:
    """Per-tile counts by evaluating the mask with the reference executor over the grid of
    mask variables, in chunks of whole tile rows (plain numpy; tensors for data filters)."""
    from .executor import _value, mask_of

    vars_ = _mask_vars_of(cascade, einsum, sizes, where)
    probe = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, where)
    bare = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, None)
    if not vars_:
        keep, _ = mask_of(cascade, probe, {}, sizes, tensors)
        one = np.ones((), dtype=np.int64)
        return _Grid((), one * int(keep is None or bool(keep)), one, "numpy")
    ext = [_extent(sizes, v) for v in vars_]
    tiles = [_tile_of(t, sizes, v) for v in vars_]
    shape = tuple(-(-e // s) for e, s in zip(ext, tiles, strict=True))
    kept = np.zeros(shape, dtype=np.int64)
    valid = np.zeros(shape, dtype=np.int64)
    rows = max(1, budget // max(1, math.prod(ext[1:])) // tiles[0]) * tiles[0]
    for start in range(0, ext[0], rows):
        stop = min(ext[0], start + rows)
        env = {}
        for axis, var in enumerate(vars_):
            values = np.arange(start, stop) if axis == 0 else np.arange(ext[axis])
            axes = [1] * len(vars_)
            axes[axis] = len(values)
            env[var] = values.reshape(axes)
        full = [stop - start, *ext[1:]]
        real, local = mask_of(cascade, bare, env, sizes, tensors)
        real = np.ones(full, bool) if real is None else np.broadcast_to(real, full)
        keep = real
        if where is not None:
            # Reads at padded points (past M) are masked by `real`, not refused.
            keep = real & (np.asarray(_value(where, local, sizes, tensors, real)) != 0)
        sl = slice(start // tiles[0], -(-stop // tiles[0]))
        kept[sl] += _tile_sums(keep, tiles)
        valid[sl] += _tile_sums(real, tiles)
    return _Grid(tuple(vars_), kept, valid, "numpy")


def _tile_sums(mask: np.ndarray, tiles: list[int]) -> np.ndarray:
    out = mask.astype(np.int64)
    for axis, size in enumerate(tiles):
        out = np.add.reduceat(out, np.arange(0, out.shape[axis], size), axis=axis)
    return out


# ---------------------------------------------------------------- the closed form


def _closed_form_grid(cascade, einsum, sizes, t, where, vars_) -> _Grid | None:
    """Placeholder until the affine closed form lands: None means 'not applicable'."""
    return None
