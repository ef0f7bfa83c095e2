"""What one attention kernel computes, read from the cascade: `AttentionKernel`
(`attention_kernel`), and the launch parameters `AttentionProblem`, `Mask`, `Form`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
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
from einsim.einsum.analysis import footprints
from einsim.einsum.executor import expression_value
from einsim.einsum.ir import Const, accesses, rank_of, value_ops, var_of, variables

from ..lowering import lower_counts
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
# the softmax's max, exp, sum and divide, and scalar multiplies and adds (FP32). The CUDA
# kernels (gpu_validate) implement exactly these.
GPU_OPERATORS = frozenset({Op.MUL, Op.MAC, Op.ADD, Op.SUB, Op.DIV, Op.MAX, Op.EXP})
# The instructions a cascade's other work runs as (PTX ISA 8.x): the SFU's MUFU
# approximations ex2, lg2, sqrt, rcp (a divide) and tanh (sm_75 and later), one per
# result; the FP32 pipe's FADD/FMUL/FFMA, FMNMX (max, min), negation and absolute value
# (operand modifiers), FSETP compares and predicate logic; index arithmetic (floor
# division, remainder) counted as FP32 work. Anything else is lowered into these
# (simulator/lowering.py: sigmoid = 1/(1+exp(-x)), elu, relu = max(x, 0), ...).
SFU_OPERATORS = frozenset({Op.EXP, Op.LOG, Op.SQRT, Op.DIV, Op.TANH})
FP32_OPERATORS = frozenset(
    {Op.ADD, Op.SUB, Op.MUL, Op.MAC, Op.MAX, Op.MIN, Op.NEG, Op.ABS, Op.LT, Op.LE, Op.GT,
     Op.GE, Op.EQ, Op.NE, Op.AND, Op.OR, Op.NOT, Op.FLOORDIV, Op.MOD}
)  # fmt: skip
GPU_INSTRUCTIONS = SFU_OPERATORS | FP32_OPERATORS


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
        head_classes: where the mask depends on the head (DuoAttention's retrieval and
            streaming heads), the classes of heads with one mask: (a representative's
            head indices, the number of heads); () when every head has the same mask.
        extra_inputs / extra_elements: inputs besides Q, K, V the attention reads (a bias,
            a gate, relative embeddings) and their elements per instance, read from HBM.
        extra: the Einsums besides the FA2 template's (score, softmax, AV) that the fused
            kernel also runs: those reading an extra input or an operator outside
            `GPU_OPERATORS`; their operations are charged on the pipes (`extra_work`).
        lowered: (Einsum, operators) run lowered into `GPU_INSTRUCTIONS`.
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
    head_classes: tuple[tuple[tuple[tuple[str, int], ...], int], ...] = ()
    extra_inputs: tuple[str, ...] = ()
    extra_elements: int = 0
    extra: tuple[str, ...] = ()
    lowered: tuple[tuple[str, str], ...] = ()

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def head_class(self, index: int) -> AttentionKernel:
        """The kernel of head class `index` (`head_classes`): the score's mask with the
        class's head indices substituted (`specialize`), heads unchanged."""
        binding = dict(self.head_classes[index][0])
        einsum = self.cascade.producers[self.score]
        where = specialize(einsum.where, binding, dict(self.sizes))
        score = dataclasses.replace(einsum, where=where)
        einsums = tuple(score if e is einsum else e for e in self.cascade.einsums)
        cascade = dataclasses.replace(self.cascade, einsums=einsums)
        return dataclasses.replace(self, cascade=cascade, head_classes=())

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


def _feed(cascade: Cascade, access: Access) -> str:
    """The input an operand of the scores comes from: through copies (`_source`), or
    through one elementwise prologue over the same indices that reads it (selective
    attention's QS[e,p] = TAU[p] * Q[e,p]: a per-query scale the kernel applies to its Q
    tile; the prologue's work is charged as `extra`)."""
    found = _source(cascade, access)
    producer = cascade.producers.get(access.tensor)
    if found or producer is None or producer.reduced_vars or producer.where is not None:
        return found
    same = [a for a in accesses(producer.expr) if set(variables(a)) == set(producer.out_vars)]
    if len(same) != 1:
        return ""
    return _source(cascade, same[0])


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

    Beyond the FA2 template: a mask whose static part depends on the head gives head
    classes (`head_classes`); inputs besides Q, K, V are read (`extra_inputs`); operators
    outside `GPU_OPERATORS` run as GPU instructions, lowered where needed (`lowered`), in
    `extra` Einsums whose work `extra_work` prices.

    Raises:
        SpecError: naming the capability the GPU kernels lack: an operator no GPU
            instruction computes and nothing lowers, a mask that depends on a rank other
            than keys, queries and heads, work over the keys outside the attention, no
            softmax, or not exactly one score contraction of two inputs.

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
    lowered, beyond = [], set()
    for einsum in cascade.einsums:
        if einsum.output in selection | dead:
            continue  # the gate kernel runs any operator, on the CUDA cores
        ops = _einsum_ops(einsum)
        _, missing = lower_counts(dict.fromkeys(ops, 1), GPU_INSTRUCTIONS.__contains__)
        if missing:
            raise _refuse(
                cascade,
                f"Einsum {einsum.output} needs {', '.join(op.value for op in missing)}, which "
                "no GPU instruction computes and nothing lowers (simulator/lowering.py); the "
                f"GPU runs {', '.join(sorted(op.value for op in GPU_INSTRUCTIONS))}",
            )
        if ops - GPU_OPERATORS:
            beyond.add(einsum.output)
        if ops - GPU_INSTRUCTIONS:
            lowered.append(
                (einsum.output, ", ".join(sorted(op.value for op in ops - GPU_INSTRUCTIONS)))
            )
    scores = [
        e
        for e in cascade.einsums
        if e.output not in selection
        and {query, *key} <= set(e.out_vars)
        and e.reduced_vars
        and e.reduce_op is Op.ADD
        and (reads := _product_reads(e.expr)) is not None
        and all(_feed(cascade, a) for a in reads)
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
    q_in, k_in = _feed(cascade, q_read), _feed(cascade, k_read)
    # The mask's static part (its conjuncts reading no tensor) may depend on the head: one
    # class of heads per mask (a data-dependent part is priced over all heads by occupancy).
    static = [t for t in _terms(qk.where) if not accesses(t)] if qk.where is not None else []
    other = sorted(frozenset().union(*map(variables, static)) - {query, *key})
    head_vars = [v for v in qk.out_vars if v not in (query, *key)]
    if set(other) - set(head_vars):
        raise _refuse(
            cascade,
            f"the mask of {qk.output} depends on {', '.join(other)}; the GPU kernels mask by "
            "key and query position, and by head",
        )
    head_classes = _head_classes(static, other, sizes) if other else ()
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
    # Inputs besides Q, K, V that the attention itself reads (a selection's own inputs are
    # the gate kernel's): read once from HBM per instance.
    attending = [e for e in cascade.einsums if e.output not in selection | dead]
    read = {a.tensor for e in attending for a in e.operands}
    extra_inputs = sorted((set(cascade.input_names) - {q_in, k_in, v_in}) & read)
    held = footprints(cascade, sizes)
    extra = _extra_einsums(cascade, attending, set(extra_inputs), beyond, {qk.output, av}, set(key))
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
        head_classes=head_classes,
        extra_inputs=tuple(extra_inputs),
        extra_elements=int(sum(int(held[x]) for x in extra_inputs)),
        extra=extra,
        lowered=tuple(lowered),
    )


def _einsum_ops(einsum: Einsum) -> set[Op]:
    ops = set(value_ops(einsum.expr))
    if einsum.reduced_vars:
        ops.add(einsum.reduce_op)
    return ops


def _extra_einsums(cascade, attending, extra_inputs, beyond, core, key_vars) -> tuple:
    """The Einsums the fused kernel runs besides the FA2 template: those with an operator
    outside `GPU_OPERATORS`, those reading an extra input, and those reading what such an
    Einsum produced outside the key loop (relative attention's Q·Er, then its gather into
    the scores); the score and AV contractions themselves excepted."""
    found: list[str] = []
    prologue = set(extra_inputs)
    for einsum in attending:
        reads = {a.tensor for a in einsum.operands}
        if einsum.output in beyond or reads & prologue:
            if not _copies(cascade, einsum) and einsum.output not in core:
                found.append(einsum.output)
            if not key_vars & set(einsum.iter_vars):
                prologue.add(einsum.output)
    return tuple(found)


def specialize(expr, binding: MappingABC[str, int], sizes):
    """`expr` with every subexpression over `binding`'s variables alone (no tensor read)
    replaced by its value, and `and`/`or` with a constant side simplified; None when the
    result keeps everything.

    Example:
        >>> from einsim.einsum import parse_cascade
        >>> text = "X[h,m,p] = A[h,m,p] where h < 2 or m <= p"
        >>> where = parse_cascade(f"inputs: A[h,m,p]\\noutputs: X\\n{text}\\n").einsums[0].where
        >>> specialize(where, {"h": 0}, {}), str(specialize(where, {"h": 3}, {}))
        (None, 'm <= p')
    """
    out = _specialize(expr, binding, sizes)
    return None if isinstance(out, Const) and out.value != 0 else out


def _specialize(expr, binding, sizes):
    if expr is None:
        return None
    names = variables(expr)
    if names and names <= set(binding) and not accesses(expr):
        return Const(float(expression_value(expr, dict(binding), sizes)))
    if not isinstance(expr, Call):
        return expr
    args = tuple(_specialize(a, binding, sizes) for a in expr.args)
    if expr.op in (Op.AND, Op.OR):
        absorbing = 0.0 if expr.op is Op.AND else 1.0
        for i, arg in enumerate(args):
            if isinstance(arg, Const):
                if (arg.value != 0) == bool(absorbing):
                    return Const(absorbing)
                return args[1 - i]
    return Call(expr.op, args)


#: More head classes than this are refused (a mask with one pattern per head of thousands).
MAX_HEAD_CLASSES = 4096


def _head_classes(static, head_vars, sizes) -> tuple:
    """Heads grouped by the values of the mask's subexpressions over head variables alone:
    ((representative head indices, count), ...), in head order of first appearance."""
    atoms = []
    for term in static:
        atoms += _head_atoms(term, set(head_vars))
    ranges = [range(int(sizes[rank_of(v)])) for v in head_vars]
    if math.prod(len(r) for r in ranges) > MAX_HEAD_CLASSES:
        raise SpecError(
            f"GPU model: the mask depends on {', '.join(head_vars)} over more than "
            f"{MAX_HEAD_CLASSES} heads"
        )
    classes: dict[tuple, list] = {}
    for values in itertools.product(*ranges):
        env = dict(zip(head_vars, values, strict=True))
        signature = tuple(float(expression_value(a, env, sizes)) for a in atoms)
        entry = classes.setdefault(signature, [tuple(env.items()), 0])
        entry[1] += 1
    return tuple((binding, count) for binding, count in classes.values())


def _head_atoms(expr, head_vars: set[str]) -> list:
    names = variables(expr)
    if not names & head_vars:
        return []
    if names <= head_vars and not accesses(expr):
        return [expr]
    if isinstance(expr, Call):
        return [a for arg in expr.args for a in _head_atoms(arg, head_vars)]
    return []


def extra_work(kernel: AttentionKernel) -> tuple[float, float, float]:
    """(tensor-core FLOPs, SFU ops, FP32 ops) per instance of the `extra` Einsums, from the
    cascade's op counts lowered into `GPU_INSTRUCTIONS`: a MAC of a contraction over 16 or
    more elements runs on the tensor cores (2 FLOPs), any other MAC is an FFMA; SFU
    operators one MUFU op each; the rest one FP32 op each."""
    if not kernel.extra:
        return 0.0, 0.0, 0.0
    from einsim.einsum import op_counts

    sizes = dict(kernel.sizes)
    counts = op_counts(kernel.cascade, sizes, density=kernel.density)
    mma = sfu = fp32 = 0.0
    for name in kernel.extra:
        einsum = kernel.cascade.producers[name]
        depth = math.prod(int(sizes[rank_of(v)]) for v in einsum.reduced_vars)
        done, _ = lower_counts(counts[name], GPU_INSTRUCTIONS.__contains__)
        for op, n in done.items():
            if op is Op.MAC and depth >= 16:
                mma += 2.0 * float(n)
            elif op in SFU_OPERATORS:
                sfu += float(n)
            else:
                fp32 += float(n)
    return mma, sfu, fp32


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
    for einsum in cascade.einsums:
        missing = sorted(op.value for op in _einsum_ops(einsum) - GPU_OPERATORS)
        if missing and einsum.output not in kernel.selection:
            raise _refuse(
                cascade,
                f"Einsum {einsum.output} needs {', '.join(missing)}; the CUDA kernels implement "
                f"{', '.join(sorted(op.value for op in GPU_OPERATORS))}",
            )
    if kernel.extra_inputs:
        raise _refuse(
            cascade,
            f"reads input(s) {', '.join(kernel.extra_inputs)} besides Q, K and V; the CUDA "
            "kernels take no score bias, gate or other operand",
        )
    if kernel.head_classes:
        raise _refuse(cascade, "its mask depends on the head; the CUDA kernels take one mask")
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
