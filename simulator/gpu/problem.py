"""What one attention kernel computes, read from the cascade: `AttentionKernel`
(`attention_kernel`), and the launch parameters `AttentionProblem`, `Mask`, `Form`.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

import numpy as np

from einsim.einsum import (
    Access,
    Call,
    Cascade,
    Einsum,
    Op,
    SpecError,
    Var,
)
from einsim.einsum.executor import expression_value
from einsim.einsum.ir import accesses, rank_of, value_ops, var_of, variables

from ..shape import split_shape
from .spec import DTYPE_BYTES


class Mask(enum.Enum):
    """The masks the CUDA kernels (gpu_validate/kernels/attention.cu) are launched with, as
    one key interval per query row. The cost model reads masks from the cascade's filters
    (`attention_kernel`); this enum only describes launches (`AttentionProblem`)."""

    NONE = "none"
    CAUSAL = "causal"  # m <= p
    WINDOW = "window"  # m <= p and p - m < W (Mistral)
    SYMMETRIC_WINDOW = "symmetric_window"  # 2 |p - m| <= W


class Form(enum.Enum):
    """How a CUDA launch sweeps the keys (1, 2 or 3 times); the cost model reads the sweeps
    from the cascade's passes over M (`attention_kernel`)."""

    FUSEMAX_1PASS = "fusemax_1pass"
    ONLINE_2PASS = "online_2pass"
    STABLE_3PASS = "stable_3pass"

    @property
    def sweeps(self) -> int:
        return {"fusemax_1pass": 1, "online_2pass": 2, "stable_3pass": 3}[self.value]


@dataclass(frozen=True, slots=True)
class AttentionProblem:
    """One launch of the CUDA kernels (`gpu_validate`): B x H heads of P queries over M keys,
    head dims E (QK), F (V), one of their masks. Costed as the registered cascade that
    builds it (`as_kernel`)."""

    batch: int
    heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    head_dim_v: int
    mask: Mask = Mask.NONE
    window: int = 0
    form: Form = Form.FUSEMAX_1PASS
    dtype: str = "bf16"

    def __post_init__(self):
        for key in ("batch", "heads", "seq_q", "seq_kv", "head_dim", "head_dim_v"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"attention problem: {key} must be a positive integer")
        if self.dtype not in DTYPE_BYTES:
            raise SpecError(
                f"attention problem: dtype {self.dtype!r}; known: {', '.join(DTYPE_BYTES)}"
            )
        if self.mask in (Mask.WINDOW, Mask.SYMMETRIC_WINDOW) and self.window < 1:
            raise SpecError("attention problem: a window mask needs window W >= 1")

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def keep(self, m: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The mask as a boolean array over broadcast key positions m and query positions p."""
        if self.mask is Mask.NONE:
            return np.ones(np.broadcast(m, p).shape, dtype=bool)
        if self.mask is Mask.CAUSAL:
            return m <= p
        if self.mask is Mask.WINDOW:
            return (m <= p) & (p - m < self.window)
        return 2 * np.abs(p - m) <= self.window


# The IR's rank names (paper names, `einsim.einsum.ir`): keys M, queries P.
KEY_RANK, QUERY_RANK = "M", "P"


# Shape ranks a single-head cascade leaves outside: each value is one more kernel instance.
OUTER_RANKS = ("B", "H")


# What the fused and unfused kernels compute per score: the QK and AV MACs (tensor cores),
# the softmax's max, exp, sum and divide, and scalar multiplies and adds (FP32).
GPU_OPERATORS = frozenset({Op.MUL, Op.MAC, Op.ADD, Op.SUB, Op.DIV, Op.MAX, Op.EXP})


@dataclass(frozen=True)
class AttentionKernel:
    """The attention a cascade computes, as the GPU kernels run it: read from the cascade's
    structure (ranks, operators, filters), never from its name.

    Attributes:
        cascade: the cascade. sizes: its resolved sizes, with the key tile of a tiled form
            set to one key (`M0 = 1`: the GPU kernel tiles the keys by its own Bc).
        score: the Einsum of the scores (a MAC of two inputs, iterating keys and queries);
            value: the Einsum contracting weights with V over the keys (AV, or SLNV).
        key: its key variables, ("m",) or ("m1", "m0"); query: the query variable.
        batch: kernel instances (shape ranks the cascade does not iterate, `OUTER_RANKS`).
        heads / kv_heads: query heads and K/V heads per instance (GQA: kv_heads < heads,
            K/V tiles shared by the heads of a group).
        seq_q, seq_kv: P and M. head_dim: the QK contraction (K's ranks V lacks); head_dim_v:
            V's ranks K lacks. sweeps: passes over the keys (1: FA2, 2, 3).
        selection: the Einsums of a data-dependent mask (MoBA's gate: block means, gate
            scores, top-k), run as a gate kernel before the attention. density: the kept
            share of the mask's static part (None: the inputs' declared default).
    """

    cascade: Cascade
    sizes: tuple[tuple[str, int], ...]
    score: str
    value: str
    key: tuple[str, ...]
    query: str
    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    head_dim_v: int
    sweeps: int
    dtype: str = "bf16"
    selection: tuple[str, ...] = ()
    density: float | None = None

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def data_dependent(self) -> bool:
        """Whether the mask reads tensors (a selection computed in the cascade)."""
        return bool(accesses(self.where))

    @property
    def where(self):
        """The score Einsum's filter (None: every key of every query)."""
        return self.cascade.producers[self.score].where

    def keep(self, m: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The filter over broadcast key positions m and query positions p (bool)."""
        shape = np.broadcast(m, p).shape
        if self.where is None:
            return np.ones(shape, dtype=bool)
        env = {self.query: p, self.key[0]: m}
        env.update(dict.fromkeys(self.key[1:], 0))
        return np.broadcast_to(expression_value(self.where, env, dict(self.sizes)) != 0, shape)


def _refuse(cascade: Cascade, why: str) -> SpecError:
    return SpecError(f"GPU model: {cascade.name or 'the cascade'}: {why}")


def _source(cascade: Cascade, access: Access) -> str:
    """The input an access reads, through Einsums that only copy (`BK = K[e, m1*M0+m0]`)."""
    producer = cascade.producers.get(access.tensor)
    while producer is not None and isinstance(producer.expr, Access) and producer.where is None:
        if producer.reduced_vars:
            break
        access = producer.expr
        producer = cascade.producers.get(access.tensor)
    return access.tensor if producer is None else ""


def _needed(cascade: Cascade, names) -> set[str]:
    """The Einsums producing `names`, transitively (the work an output needs)."""
    todo, found = list(names), set()
    while todo:
        name = todo.pop()
        producer = cascade.producers.get(name)
        if producer is None or name in found:
            continue
        found.add(name)
        todo += [a.tensor for a in producer.operands]
    return found


def _selection(cascade: Cascade, attend: set[str]) -> set[str]:
    """The Einsums whose outputs a mask over the keys and queries reads, transitively (a
    data-dependent selection: MoBA's KS, KMEAN, GATE, T1..Tk)."""
    reads = [a.tensor for e in cascade.einsums if attend <= set(e.iter_vars)
             for a in accesses(e.where)]  # fmt: skip
    return _needed(cascade, reads)


def _copies(cascade: Cascade, einsum: Einsum) -> bool:
    return isinstance(einsum.expr, Access) and einsum.where is None and not einsum.reduced_vars


def _product_reads(expr) -> tuple[Access, ...] | None:
    """The two accesses of `A[...] * B[...]`, else None."""
    product = isinstance(expr, Call) and expr.op is Op.MUL
    if product and all(isinstance(a, Access) for a in expr.args):
        return expr.args  # type: ignore[return-value]
    return None


def attention_kernel(
    cascade: Cascade,
    shape: MappingABC[str, int],
    dtype: str = "bf16",
    density: float | None = None,
) -> AttentionKernel:
    """The `AttentionKernel` a cascade asks the GPU for, at `shape`.

    Read from the structure: the score Einsum is the MAC of two inputs (Q, K) iterating the
    keys (M, or the tile parts M1, M0) and the queries P; the AV contraction the MAC over
    the keys that reads a third input (V); heads are the score's other output ranks, K/V
    groups the ranks K and V share besides M; sweeps are the passes over the keys
    (`einsim.pass_analysis`); the mask is the score's filter. B and H of the shape that the
    cascade does not iterate multiply the kernel instances.

    Raises:
        SpecError: naming the capability the GPU kernels lack: an operator outside
            `GPU_OPERATORS` (sigmoid, elu, ...), an input besides Q, K, V (a bias, a gate),
            a filter that reads a tensor (a data-dependent selection), work over the keys
            outside the attention, no softmax, or no score Einsum at all.

    Example:
        >>> import einsim
        >>> k = attention_kernel(einsim.attention("gqa"), dict(H=32, G=8, E=128, F=128,
        ...                      M=4096, P=4096))
        >>> k.heads, k.kv_heads, k.sweeps
        (32, 8, 1)
    """
    from einsim.einsum import pass_analysis

    if dtype not in DTYPE_BYTES:
        raise SpecError(f"GPU model: dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    query = var_of(QUERY_RANK)
    # The key tile of a tiled form: the partition of M whose parts an Einsum iterates with
    # the queries (block_topk's M -> N, MB only groups keys into blocks for its gate).
    part, key = None, (var_of(KEY_RANK),)
    for candidate in cascade.partitions:
        parts = {query, var_of(candidate.upper), var_of(candidate.lower)}
        if candidate.rank == KEY_RANK and any(parts <= set(e.iter_vars) for e in cascade.einsums):
            part, key = candidate, (var_of(candidate.upper), var_of(candidate.lower))
    if part is not None:
        shape = {k: v for k, v in shape.items() if k not in (part.upper, part.lower)}
        shape[part.lower] = 1
    if (KEY_RANK not in cascade.ranks and part is None) or QUERY_RANK not in cascade.ranks:
        raise _refuse(cascade, f"no ranks {KEY_RANK} (keys) and {QUERY_RANK} (queries)")
    # The one rule of every entry point (simulator/shape.py): an unknown rank is refused.
    split = split_shape(cascade, OUTER_RANKS, shape)
    sizes = dict(split.sizes)
    # Einsums no output needs (MoBA's gate with TOPK = 0) are not run.
    dead = {e.output for e in cascade.einsums} - _needed(cascade, cascade.outputs)
    selection = _selection(cascade, {query, *key}) - dead
    for einsum in cascade.einsums:
        if einsum.output in selection | dead:
            continue  # the gate kernel runs any operator, on the CUDA cores
        ops = set(value_ops(einsum.expr))
        if einsum.reduced_vars:
            ops.add(einsum.reduce_op)
        missing = sorted(op.value for op in ops - GPU_OPERATORS)
        if missing:
            raise _refuse(
                cascade,
                f"Einsum {einsum.output} needs {', '.join(missing)}; the GPU kernels implement "
                f"{', '.join(sorted(op.value for op in GPU_OPERATORS))}",
            )
    scores = [
        e
        for e in cascade.einsums
        if e.output not in selection
        and {query, *key} <= set(e.out_vars)
        and e.reduced_vars
        and e.reduce_op is Op.ADD
        and (reads := _product_reads(e.expr)) is not None
        and all(_source(cascade, a) for a in reads)
    ]
    if len(scores) != 1:
        found = ", ".join(e.output for e in scores) or "none"
        raise _refuse(
            cascade,
            f"the GPU kernels need one score contraction of two inputs over keys {KEY_RANK} "
            f"and queries {QUERY_RANK}; found {found}",
        )
    qk = scores[0]
    # Q is the operand without a key index, K the one with it.
    q_read, k_read = sorted(_product_reads(qk.expr), key=lambda a: bool(variables(a) & set(key)))
    q_in, k_in = _source(cascade, q_read), _source(cascade, k_read)
    other = sorted(variables(qk.where) - {query, *key})
    if other:
        raise _refuse(
            cascade,
            f"the mask of {qk.output} depends on {', '.join(other)}; the GPU kernels mask by "
            "key and query position only",
        )
    key_vars = set(key)
    if not any(Op.EXP in value_ops(e.expr) for e in cascade.einsums if key_vars & set(e.iter_vars)):
        raise _refuse(cascade, "no exp over the keys: the GPU kernels run softmax attention")
    v_in, av = "", ""
    for einsum in cascade.einsums:
        reads = _product_reads(einsum.expr)
        if reads and key_vars & set(einsum.reduced_vars) and einsum is not qk and not v_in:
            sources = {_source(cascade, a) for a in reads} - {"", q_in, k_in}
            v_in, av = next(iter(sources), ""), einsum.output
    if not v_in:
        raise _refuse(cascade, "no contraction of the scores with a value input over the keys")
    extra = sorted(set(cascade.input_names) - {q_in, k_in, v_in})
    if extra:
        raise _refuse(
            cascade,
            f"reads input(s) {', '.join(extra)} besides Q, K and V; the GPU kernels take no "
            "score bias, gate or other operand",
        )
    for einsum in cascade.einsums:
        outside = key_vars & set(einsum.iter_vars) and query not in einsum.iter_vars
        if outside and not _copies(cascade, einsum) and einsum.output not in selection | dead:
            raise _refuse(
                cascade,
                f"Einsum {einsum.output} works over the keys without the queries; the GPU "
                "kernels have no key-side pass",
            )
    ranks = cascade.tensor_ranks
    k_ranks, v_ranks = set(ranks[k_in]), set(ranks[v_in])

    def product(names) -> int:
        return math.prod(int(sizes[n]) for n in names)

    head_vars = [v for v in qk.out_vars if v not in (query, *key)]
    heads = product(rank_of(v) for v in head_vars)
    kv_heads = product(r for r in k_ranks & v_ranks if r != KEY_RANK)
    sweeps = pass_analysis(cascade)[rank_of(key[0])]  # passes over M, or over the tiles M1
    batch = split.multiplier
    return AttentionKernel(
        cascade=cascade,
        sizes=tuple(sorted(sizes.items())),
        score=qk.output,
        value=av,
        key=key,
        query=query,
        batch=batch,
        heads=heads,
        kv_heads=kv_heads,
        seq_q=int(sizes[QUERY_RANK]),
        seq_kv=int(sizes[KEY_RANK]),
        head_dim=product(k_ranks - v_ranks - {KEY_RANK}),
        head_dim_v=product(v_ranks - k_ranks - {KEY_RANK}),
        sweeps=int(sweeps),
        dtype=dtype,
        selection=tuple(e.output for e in cascade.einsums if e.output in selection),
        density=density,
    )


def _kernel_mask(kernel: AttentionKernel) -> tuple[Mask, int] | None:
    """The CUDA kernels' mask (gpu_validate/kernels/attention.cu: none, causal, window,
    symmetric window) that keeps exactly the cascade's filter, with its window; else None."""
    bounds = row_bounds(kernel)
    if bounds is None:
        return None
    lo, hi = bounds
    p = np.arange(kernel.seq_q, dtype=np.float64)
    if np.all(np.isneginf(lo)) and np.all(np.isposinf(hi)):
        return Mask.NONE, 0
    if not np.all(np.isfinite(hi)) or not np.all(hi == p + (hi[0] - p[0])):
        return None
    reach = int(hi[0] - p[0])
    if np.all(np.isneginf(lo)):
        return (Mask.CAUSAL, 0) if reach == 0 else None
    if not np.all(np.isfinite(lo)) or not np.all(lo == p + (lo[0] - p[0])):
        return None
    back = int(p[0] - lo[0])
    if reach == 0 and back >= 0:
        return Mask.WINDOW, back + 1
    if reach == back and reach >= 0:
        return Mask.SYMMETRIC_WINDOW, 2 * reach
    return None


def problem_from_cascade(
    cascade: Cascade, shape: MappingABC[str, int], dtype: str = "bf16"
) -> AttentionProblem:
    """The launch parameters of the CUDA kernels (`gpu_validate`) for a cascade: its
    `attention_kernel`, when its filter is one of their four masks and each query head has
    its own K/V head.

    Raises:
        SpecError: what the cascade needs that the CUDA kernels lack (or `attention_kernel`'s
            reason).
    """
    kernel = attention_kernel(cascade, shape, dtype)
    if kernel.kv_heads != kernel.heads:
        raise _refuse(
            cascade,
            f"{kernel.heads} query heads share {kernel.kv_heads} K/V heads; the CUDA kernels "
            "read one K/V head per query head",
        )
    mask = _kernel_mask(kernel)
    if mask is None:
        raise _refuse(
            cascade,
            "its mask is not one key interval of the CUDA kernels' forms (none, causal, "
            "window, symmetric window)",
        )
    if kernel.sweeps not in (1, 2, 3):
        raise _refuse(cascade, f"{kernel.sweeps} sweeps over the keys; the kernels do 1 to 3")
    batch = int(shape.get("B", 1)) if "B" not in cascade.ranks else 1
    return AttentionProblem(
        batch=batch,
        heads=kernel.batch * kernel.heads // batch,
        seq_q=kernel.seq_q,
        seq_kv=kernel.seq_kv,
        head_dim=kernel.head_dim,
        head_dim_v=kernel.head_dim_v,
        mask=mask[0],
        window=mask[1],
        form=(Form.FUSEMAX_1PASS, Form.ONLINE_2PASS, Form.STABLE_3PASS)[kernel.sweeps - 1],
        dtype=dtype,
    )


@functools.lru_cache(maxsize=256)
def _problem_kernel(problem: AttentionProblem) -> AttentionKernel:
    from einsim.workloads import attention

    form = problem.form.value
    if problem.mask is Mask.NONE:
        cascade = attention(form)
    elif problem.mask is Mask.CAUSAL:
        cascade = attention("causal", form=form)
    else:
        causal = problem.mask is Mask.WINDOW
        cascade = attention("sliding_window", form=form, W=problem.window, causal=causal)
    shape = dict(
        B=problem.batch,
        H=problem.heads,
        E=problem.head_dim,
        F=problem.head_dim_v,
        M=problem.seq_kv,
        P=problem.seq_q,
    )
    return attention_kernel(cascade, shape, problem.dtype)


def as_kernel(problem: AttentionProblem | AttentionKernel) -> AttentionKernel:
    """An `AttentionProblem` (a CUDA launch) as the kernel of the registered cascade that
    builds it (mask and form by construction); an `AttentionKernel` as it is."""
    return problem if isinstance(problem, AttentionKernel) else _problem_kernel(problem)


def _terms(where) -> list:
    """The conjuncts of a filter (`a and b and c`)."""
    if isinstance(where, Call) and where.op is Op.AND:
        return _terms(where.args[0]) + _terms(where.args[1])
    return [where]


def _linear_in(expr, var: str) -> bool:
    """Whether `expr` is affine in `var` (var only under +, -, negation and constant factors)."""
    if var not in variables(expr):
        return True
    if isinstance(expr, Var):
        return True
    if isinstance(expr, Call) and expr.op in (Op.ADD, Op.SUB):
        return all(_linear_in(a, var) for a in expr.args)
    if isinstance(expr, Call) and expr.op is Op.NEG:
        return _linear_in(expr.args[0], var)
    if isinstance(expr, Call) and expr.op is Op.MUL:
        free = [var not in variables(a) for a in expr.args]
        return any(free) and all(_linear_in(a, var) for a in expr.args)
    return False


_BOUNDS = {Op.LT, Op.LE, Op.GT, Op.GE}


@functools.lru_cache(maxsize=64)
def row_bounds(kernel: AttentionKernel) -> tuple[np.ndarray, np.ndarray] | None:
    """Per query row p, the kept keys lo(p) <= m <= hi(p) before clipping to [0, M - 1]
    (-inf / +inf where no term bounds that side), when the filter is a conjunction of
    comparisons affine in the key position; None for any other filter (sinks, NATTEN).

    Example:
        >>> import einsim
        >>> k = attention_kernel(einsim.attention("sliding_window", W=3), dict(E=8, F=8,
        ...                      M=6, P=6))
        >>> [b.tolist() for b in row_bounds(k)]
        [[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]
    """
    p = np.arange(kernel.seq_q, dtype=np.float64)
    lo, hi = np.full(p.shape, -np.inf), np.full(p.shape, np.inf)
    if kernel.where is None:
        return lo, hi
    if kernel.data_dependent:
        return None
    sizes, m = dict(kernel.sizes), kernel.key[0]
    rest = dict.fromkeys(kernel.key[1:], 0)
    for term in _terms(kernel.where):
        if not (isinstance(term, Call) and term.op in _BOUNDS):
            return None
        diff = Call(Op.SUB, term.args)
        if not _linear_in(diff, m) or (variables(diff) - {m, kernel.query, *rest}):
            return None
        c = np.broadcast_to(
            expression_value(diff, {m: 0.0, kernel.query: p, **rest}, sizes), p.shape
        )
        a = np.broadcast_to(
            expression_value(diff, {m: 1.0, kernel.query: p, **rest}, sizes), p.shape
        )
        a = a - c
        op = term.op
        if np.all(a == 0):  # a condition on the query alone: keeps all keys or none
            holds = expression_value(term, {m: 0.0, kernel.query: p, **rest}, sizes) != 0
            hi = np.where(holds, hi, -np.inf)
            continue
        if np.any(a == 0) or not (np.all(a > 0) or np.all(a < 0)):
            return None
        t = -c / a  # a*m + c  op  0   <=>   m  op'  t  (op flipped when a < 0)
        if a[0] < 0:
            op = {Op.LT: Op.GT, Op.LE: Op.GE, Op.GT: Op.LT, Op.GE: Op.LE}[op]
        if op is Op.LE:
            hi = np.minimum(hi, np.floor(t))
        elif op is Op.LT:
            hi = np.minimum(hi, np.ceil(t) - 1)
        elif op is Op.GE:
            lo = np.maximum(lo, np.ceil(t))
        else:
            lo = np.maximum(lo, np.floor(t) + 1)
    return lo + 0.0, hi + 0.0  # no negative zeros
