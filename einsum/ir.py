"""The extended-Einsum IR: operators, expressions, Einsums and cascades.

Everything here is a frozen, hashable value. A `Cascade` says *what* is computed and has no
sizes: a shape dict binds rank sizes when the cascade is evaluated, analysed or costed.

Naming convention (FuseMax paper, Nayak et al., MICRO 2024): ranks are upper case (`M`,
`M1`, `P`), their index variables the same name in lower case (`m`, `m1`, `p`); tensors are
upper case too (`QK`, `RM`) and always written with brackets (`QK[m,p]`), so a bare upper
case name in an expression is a rank size or a parameter (`M1`, `W`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from .errors import SpecError


class Op(enum.Enum):
    """Operators of extended Einsums. Enums, not strings, because they key costs."""

    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    # Integer floor division and remainder: index arithmetic such as the KV group
    # `K[h//(H//G),e,m]` and the grid coordinates of a flattened position (`p // Y`, `p % Y`).
    FLOORDIV = "floordiv"
    MOD = "mod"
    MAX = "max"
    MIN = "min"
    NEG = "neg"
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    ABS = "abs"
    SIGMOID = "sigmoid"
    ELU = "elu"
    RELU = "relu"
    TANH = "tanh"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    EQ = "eq"
    NE = "ne"
    AND = "and"
    OR = "or"
    NOT = "not"
    # A multiply whose product is accumulated by a sum reduction: counted as one MAC.
    MAC = "mac"

    @property
    def arity(self) -> int:
        return 1 if self in _UNARY else 2


_UNARY = frozenset(
    {Op.NEG, Op.EXP, Op.LOG, Op.SQRT, Op.ABS, Op.SIGMOID, Op.ELU, Op.RELU, Op.TANH, Op.NOT}
)
#: Functions callable by name in the text syntax, with their operator.
FUNCTIONS: dict[str, Op] = {
    "exp": Op.EXP,
    "log": Op.LOG,
    "sqrt": Op.SQRT,
    "abs": Op.ABS,
    "sigmoid": Op.SIGMOID,
    "elu": Op.ELU,
    "relu": Op.RELU,
    "tanh": Op.TANH,
    "max": Op.MAX,
    "min": Op.MIN,
    "not": Op.NOT,
}
#: Operators usable as the reduction of an Einsum, with the identity an empty reduction gives.
REDUCE_OPS: dict[str, Op] = {"sum": Op.ADD, "max": Op.MAX, "min": Op.MIN, "prod": Op.MUL}
REDUCE_IDENTITY: dict[Op, float] = {
    Op.ADD: 0.0,
    Op.MAX: float("-inf"),
    Op.MIN: float("inf"),
    Op.MUL: 1.0,
}
INFIX_SYMBOL: dict[Op, str] = {
    Op.ADD: "+",
    Op.SUB: "-",
    Op.MUL: "*",
    Op.DIV: "/",
    Op.FLOORDIV: "//",
    Op.MOD: "%",
    Op.LT: "<",
    Op.LE: "<=",
    Op.GT: ">",
    Op.GE: ">=",
    Op.EQ: "==",
    Op.NE: "!=",
    Op.AND: "and",
    Op.OR: "or",
}
_PRECEDENCE: dict[Op, int] = {
    Op.OR: 1,
    Op.AND: 2,
    Op.LT: 3,
    Op.LE: 3,
    Op.GT: 3,
    Op.GE: 3,
    Op.EQ: 3,
    Op.NE: 3,
    Op.ADD: 4,
    Op.SUB: 4,
    Op.MUL: 5,
    Op.DIV: 5,
    Op.FLOORDIV: 5,
    Op.MOD: 5,
}


def rank_of(var: str) -> str:
    """The rank an index variable ranges over: `m1` -> `M1`."""
    return var.upper()


def var_of(rank: str) -> str:
    """The index variable of a rank: `M1` -> `m1`."""
    return rank.lower()


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Const:
    """A numeric literal (`0`, `1.5`, `-inf`)."""

    value: float

    def __str__(self) -> str:
        if self.value == float("inf"):
            return "inf"
        if self.value == float("-inf"):
            return "-inf"
        if abs(self.value) >= 1e16:  # `-1e+30`, not thirty-one digits of float noise
            return repr(self.value)
        return repr(int(self.value)) if float(self.value).is_integer() else repr(self.value)


@dataclass(frozen=True, slots=True)
class Var:
    """An index variable (`m1`); it ranges over rank `rank_of(name)`."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Size:
    """A rank size or a parameter bound by the shape (`M1`, `M0`, `W`)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Access:
    """A tensor element `T[i, j+1, m1*M0+m0]`: one index expression per tensor dimension."""

    tensor: str
    indices: tuple[Expr, ...]

    def __str__(self) -> str:
        # Index arithmetic is printed tight (`m1*M0+m0`) to read like the paper.
        return f"{self.tensor}[{','.join(str(i).replace(' ', '') for i in self.indices)}]"


@dataclass(frozen=True, slots=True)
class Call:
    """An operator applied to its arguments: infix (`a + b`, `a <= b`) or a function."""

    op: Op
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        if self.op is Op.NEG:
            return f"-{_wrap(self.args[0], 6)}"
        if self.op in INFIX_SYMBOL:
            level = _PRECEDENCE[self.op]
            left = _wrap(self.args[0], level)
            # Left-associative: a right operand of equal precedence needs brackets.
            right = _wrap(self.args[1], level + 1)
            return f"{left} {INFIX_SYMBOL[self.op]} {right}"
        return f"{self.op.value}({', '.join(str(a) for a in self.args)})"


Expr = Const | Var | Size | Access | Call


def _wrap(expr: Expr, level: int) -> str:
    if isinstance(expr, Call) and expr.op in _PRECEDENCE and _PRECEDENCE[expr.op] < level:
        return f"({expr})"
    return str(expr)


def walk(expr: Expr):
    """Yield `expr` and every sub-expression, pre-order (index expressions included)."""
    yield expr
    if isinstance(expr, Call):
        for arg in expr.args:
            yield from walk(arg)
    elif isinstance(expr, Access):
        for index in expr.indices:
            yield from walk(index)


def accesses(expr: Expr | None) -> tuple[Access, ...]:
    """Every tensor access in `expr`, in order of appearance."""
    if expr is None:
        return ()
    return tuple(e for e in walk(expr) if isinstance(e, Access))


def variables(expr: Expr | None) -> frozenset[str]:
    """Index variables used anywhere in `expr`."""
    if expr is None:
        return frozenset()
    return frozenset(e.name for e in walk(expr) if isinstance(e, Var))


def sizes_used(expr: Expr | None) -> frozenset[str]:
    """Rank sizes and parameters used anywhere in `expr`."""
    if expr is None:
        return frozenset()
    return frozenset(e.name for e in walk(expr) if isinstance(e, Size))


def value_ops(expr: Expr) -> tuple[Op, ...]:
    """Operators applied to values, one per node, excluding index arithmetic."""
    if isinstance(expr, Call):
        ops: tuple[Op, ...] = (expr.op,)
        for arg in expr.args:
            ops += value_ops(arg)
        return ops
    return ()


def iterative_offset(index: Expr) -> tuple[str, int] | None:
    """`(var, k)` when an index is `var` (k = 0) or `var + k` with an integer k, else None."""
    if isinstance(index, Var):
        return index.name, 0
    if (
        isinstance(index, Call)
        and index.op in (Op.ADD, Op.SUB)
        and isinstance(index.args[0], Var)
        and isinstance(index.args[1], Const)
        and float(index.args[1].value).is_integer()
    ):
        k = int(index.args[1].value)
        return index.args[0].name, k if index.op is Op.ADD else -k
    return None


# ---------------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class TensorDecl:
    """A declared input tensor and the ranks of its dimensions, e.g. `Q[E,P]`."""

    name: str
    ranks: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name}[{','.join(var_of(r) for r in self.ranks)}]"


@dataclass(frozen=True, slots=True)
class Partition:
    """`M -> M1, M0`: index m = m1 * M0 + m0 with 0 <= m0 < M0 and M1 = ceil(M / M0).

    When M is not a multiple of M0 the last tile is partial; an Einsum that iterates both
    parts only visits points with m1 * M0 + m0 < M (padding is never computed).
    """

    rank: str
    upper: str
    lower: str

    def combined(self) -> Expr:
        """The expression of the original variable in terms of the parts: `m1*M0+m0`."""
        return Call(
            Op.ADD,
            (Call(Op.MUL, (Var(var_of(self.upper)), Size(self.lower))), Var(var_of(self.lower))),
        )

    def __str__(self) -> str:
        return f"{self.rank} -> {self.upper}, {self.lower}"


@dataclass(frozen=True, slots=True)
class Init:
    """An initial value of an iterative tensor, e.g. `RM[0,p] = -inf`."""

    tensor: str
    indices: tuple[Expr, ...]
    value: float
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{Access(self.tensor, self.indices)} = {Const(self.value)}"


@dataclass(frozen=True, slots=True)
class Einsum:
    """One extended Einsum: `out[indices] = reduce(ranks) expr where filter`.

    The reduced variables are those iterated (used by `expr` or `where`) but absent from the
    output; `reduce_op` combines them (sum by default). `where` restricts the iteration
    space (causal `m <= p`, windows, selections); masked points are not computed and not
    counted. An output index `v + 1` makes the Einsum iterative over `v` (the paper's
    `RM[m1+1,p] = max(RM[m1,p], LM[m1,p])`).
    """

    output: str
    out_indices: tuple[Expr, ...]
    expr: Expr
    reduce_op: Op = Op.ADD
    where: Expr | None = None
    line: int = field(default=0, compare=False)
    # Derived once in __post_init__ (the cost model asks for them on every evaluation).
    _iter_vars: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _operands: tuple[Access, ...] = field(init=False, repr=False, compare=False)
    _sizes_used: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen = []
        for index in self.out_indices:
            parsed = iterative_offset(index)
            seen.append(parsed[0] if parsed is not None else None)
        for expr in (self.expr, self.where):
            for name in sorted(variables(expr)):
                if name not in seen:
                    seen.append(name)
        object.__setattr__(self, "_iter_vars", tuple(seen))
        operands = accesses(self.expr) + accesses(self.where)
        object.__setattr__(self, "_operands", operands)
        used = sizes_used(self.expr) | sizes_used(self.where)
        for index in self.out_indices + tuple(i for a in operands for i in a.indices):
            used |= sizes_used(index)
        object.__setattr__(self, "_sizes_used", used)

    @property
    def out_vars(self) -> tuple[str, ...]:
        """The variable of each output dimension (`m1` for an index `m1+1`)."""
        out = self._iter_vars[: len(self.out_indices)]
        if None in out:  # validated by Cascade; kept total for printing
            bad = self.out_indices[out.index(None)]
            raise SpecError(f"{self.output}: output index {bad} is not `v` or `v+k`")
        return out

    @property
    def iter_vars(self) -> tuple[str, ...]:
        """Every index variable of the iteration space, output ranks first."""
        self.out_vars  # noqa: B018  (raises for an output index that is not `v` or `v+k`)
        return self._iter_vars

    @property
    def reduced_vars(self) -> tuple[str, ...]:
        """Variables iterated but not in the output: the reduction ranks."""
        return self._iter_vars[len(self.out_indices) :]

    @property
    def iterative_var(self) -> str | None:
        """The variable this Einsum steps through (`m1` for `RM[m1+1,p]`), if any."""
        for index in self.out_indices:
            var, k = iterative_offset(index)  # type: ignore[misc]
            if k != 0:
                return var
        return None

    @property
    def operands(self) -> tuple[Access, ...]:
        """Tensor reads of the value expression and the filter."""
        return self._operands

    @property
    def sizes(self) -> frozenset[str]:
        """Rank sizes and parameters used anywhere (indices, value, filter)."""
        return self._sizes_used

    def __str__(self) -> str:
        lhs = str(Access(self.output, self.out_indices))
        reduced = self.reduced_vars
        rhs = str(self.expr)
        if reduced:
            name = next(k for k, v in REDUCE_OPS.items() if v is self.reduce_op)
            if name != "sum" or not _is_product(self.expr):
                rhs = f"{name}({','.join(reduced)}) {_wrap(self.expr, 6)}"
        text = f"{lhs} = {rhs}"
        if self.where is not None:
            text += f" where {self.where}"
        return text


def _is_product(expr: Expr) -> bool:
    return isinstance(expr, Call) and expr.op is Op.MUL


# ------------------------------------------------------------------------ the cascade


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a cascade's schedule: a single Einsum, or a loop (`loop_var` set)."""

    outputs: tuple[str, ...]
    loop_var: str | None


@dataclass(frozen=True)
class Cascade:
    """An ordered list of extended Einsums with declared inputs and outputs.

    `default_sizes` holds the structural sizes a builder chose (the tile M0 = 256, a window
    W); a shape given at evaluation overrides them.
    """

    name: str
    inputs: tuple[TensorDecl, ...]
    outputs: tuple[str, ...]
    einsums: tuple[Einsum, ...]
    inits: tuple[Init, ...] = ()
    partitions: tuple[Partition, ...] = ()
    default_sizes: tuple[tuple[str, int], ...] = ()

    def __hash__(self) -> int:
        # Computed once: the generated hash walks every Einsum's expression tree, and the
        # analyses' caches (op counts, occupancy) hash the cascade on every look-up.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(
                (self.name, self.inputs, self.outputs, self.einsums, self.inits,
                 self.partitions, self.default_sizes)
            )  # fmt: skip
            object.__setattr__(self, "_hash", cached)
        return cached

    def __getstate__(self) -> dict:
        # str hashes differ between processes: a pickled cascade recomputes its hash
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    # -- look-ups ---------------------------------------------------------------------
    @cached_property
    def producers(self) -> dict[str, Einsum]:
        return {e.output: e for e in self.einsums}

    @cached_property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    def einsum(self, output: str) -> Einsum:
        """The Einsum producing tensor `output`."""
        try:
            return self.producers[output]
        except KeyError:
            known = ", ".join(self.producers)
            raise SpecError(f"no Einsum produces {output!r}; produced: {known}") from None

    @cached_property
    def tensor_ranks(self) -> dict[str, tuple[str, ...]]:
        """The rank of every dimension of every tensor, inputs and intermediates."""
        ranks = {t.name: t.ranks for t in self.inputs}
        for e in self.einsums:
            ranks[e.output] = tuple(rank_of(v) for v in e.out_vars)
        return ranks

    @cached_property
    def iterative_dims(self) -> dict[str, tuple[bool, ...]]:
        """For each tensor, which dimensions are iterative (extended by one: 0..R)."""
        dims = {t.name: (False,) * len(t.ranks) for t in self.inputs}
        for e in self.einsums:
            dims[e.output] = tuple(iterative_offset(i)[1] != 0 for i in e.out_indices)  # type: ignore[index]
        return dims

    @cached_property
    def ranks(self) -> tuple[str, ...]:
        """Every rank the cascade uses, inputs' ranks first."""
        seen: list[str] = []
        for t in self.inputs:
            seen += [r for r in t.ranks if r not in seen]
        for p in self.partitions:
            seen += [r for r in (p.upper, p.lower) if r not in seen]
        for e in self.einsums:
            seen += [rank_of(v) for v in e.iter_vars if rank_of(v) not in seen]
        return tuple(seen)

    @cached_property
    def partition_of(self) -> dict[str, Partition]:
        """Partitions keyed by the original rank (`M`) and by each part (`M1`, `M0`)."""
        table: dict[str, Partition] = {}
        for p in self.partitions:
            table[p.rank] = table[p.upper] = table[p.lower] = p
        return table

    # -- dependency graph --------------------------------------------------------------
    @cached_property
    def graph(self) -> nx.DiGraph:
        """Tensor dependency graph: an edge operand -> output for every read.

        Edge attribute `carried` is True for a loop-carried read of an iterative tensor (a
        read one step behind the write, `RM[m1,p]` in the Einsum writing `RM[m1+1,p]`);
        attribute `terminal` marks a read of the last element of an iterative rank
        (`RM[M1,p]`). Nodes carry `kind` = "input" or "einsum".
        """
        g = nx.DiGraph()
        for t in self.inputs:
            g.add_node(t.name, kind="input")
        for e in self.einsums:
            g.add_node(e.output, kind="einsum")
        for e in self.einsums:
            for a in e.operands:
                carried, terminal = self.read_kind(e, a)
                if g.has_edge(a.tensor, e.output):
                    data = g.edges[a.tensor, e.output]
                    data["carried"] = data["carried"] and carried
                    data["terminal"] = data["terminal"] or terminal
                else:
                    g.add_edge(a.tensor, e.output, carried=carried, terminal=terminal)
        return g

    def read_kind(self, reader: Einsum, access: Access) -> tuple[bool, bool]:
        """`(carried, terminal)` of one read, see `graph`."""
        producer = self.producers.get(access.tensor)
        if producer is None or producer.iterative_var is None:
            return False, False
        carried = terminal = False
        for write, read in zip(producer.out_indices, access.indices, strict=True):
            w = iterative_offset(write)
            if w is None or w[1] == 0:
                continue
            var, k_write = w
            r = iterative_offset(read)
            if r is not None and r[0] == var and r[1] < k_write and var in reader.iter_vars:
                carried = True
            elif isinstance(read, Size) and read.name == rank_of(var):
                terminal = True
        return carried, terminal

    @cached_property
    def forward_graph(self) -> nx.DiGraph:
        """`graph` without the loop-carried edges that close a cycle: a DAG when valid.

        A loop-carried read from outside the cycle (`PRM` reading `RM[m1,p]`) stays an
        ordinary edge: the whole of `RM` exists before `PRM` runs.
        """
        component = {}
        for i, members in enumerate(nx.strongly_connected_components(self.graph)):
            component.update(dict.fromkeys(members, i))
        g = self.graph.copy()
        g.remove_edges_from(
            [
                (u, v)
                for u, v, d in self.graph.edges(data=True)
                if d["carried"] and component[u] == component[v]
            ]
        )
        return g

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Einsum outputs in a topological order of the forward graph (stable: text order)."""
        position = {e.output: i for i, e in enumerate(self.einsums)}
        topo = nx.lexicographical_topological_sort(
            self.forward_graph, key=lambda n: position.get(n, -1)
        )
        return tuple(n for n in topo if n in self.producers)

    @cached_property
    def steps(self) -> tuple[Step, ...]:
        """The execution schedule: Einsums and loops in dependency order.

        A loop is a strongly connected component of `graph` (Einsums that read each other's
        previous iteration: RD and SPD in FuseMax); it steps through its iterative variable,
        running its members in forward order at each step. Every other Einsum runs over its
        whole iteration space at once. The schedule is a topological order of the
        condensation, ties broken by text order.
        """
        position = {e.output: i for i, e in enumerate(self.einsums)}
        condensed = nx.condensation(self.graph)
        steps = []
        for node in nx.lexicographical_topological_sort(
            condensed,
            key=lambda n: min(position.get(m, -1) for m in condensed.nodes[n]["members"]),
        ):
            members = condensed.nodes[node]["members"]
            outputs = tuple(o for o in self.order if o in members)
            if not outputs:
                continue
            looped = len(outputs) > 1 or self.graph.has_edge(outputs[0], outputs[0])
            if looped:
                variables_ = sorted({self.producers[o].iterative_var for o in outputs} - {None})
                steps.append(Step(outputs, variables_[0] if variables_ else ""))
            else:
                steps.append(Step(outputs, None))
        return tuple(steps)

    @property
    def loops(self) -> tuple[Step, ...]:
        """The steps that iterate (see `steps`)."""
        return tuple(s for s in self.steps if s.loop_var is not None)

    def evaluate(self, inputs, shape, dtype=None, **options) -> dict:
        """Run the cascade with the numpy reference executor (see `executor.evaluate`;
        `options`: keep=, method=, tile=)."""
        from .executor import evaluate

        if dtype is not None:
            options["dtype"] = dtype
        return evaluate(self, inputs, shape, **options)

    def __str__(self) -> str:
        return format_cascade(self)


def format_cascade(cascade: Cascade) -> str:
    """The cascade in the text syntax `parse_cascade` reads (a round trip)."""
    lines = [f"# {cascade.name}"] if cascade.name else []
    lines.append("inputs: " + ", ".join(str(t) for t in cascade.inputs))
    lines.append("outputs: " + ", ".join(cascade.outputs))
    declared = {r for t in cascade.inputs for r in t.ranks}
    declared |= {r for p in cascade.partitions for r in (p.rank, p.upper, p.lower)}
    extra = [r for r in cascade.ranks if r not in declared]
    if extra:
        lines.append("ranks: " + ", ".join(extra))
    for p in cascade.partitions:
        lines.append(f"partition: {p}")
    if cascade.default_sizes:
        lines.append("sizes: " + ", ".join(f"{k}={v}" for k, v in cascade.default_sizes))
    lines += [str(i) for i in cascade.inits]
    lines += [str(e) for e in cascade.einsums]
    return "\n".join(lines) + "\n"
