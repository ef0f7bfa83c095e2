"""The text syntax of cascades: one statement a line, close to the FuseMax paper.

```
# FuseMax 1-pass attention (Cascade 5)
inputs: Q[e,p], K[e,m], V[f,m]
outputs: AV[f,p]
partition: M -> M1, M0
sizes: M0=256
RM[0,p] = -inf
BK[e,m1,m0] = K[e, m1*M0+m0]
QK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]          # sum over e is implied
LM[m1,p] = max(m0) QK[m1,m0,p]              # explicit reduction operator
RM[m1+1,p] = max(RM[m1,p], LM[m1,p])        # iterative rank m1
AV[f,p] = RNV[M1,f,p] / RD[M1,p]            # M1: the terminal element
QK[m,p] = Q[e,p] * K[e,m] where m <= p      # a filter on the iteration space
```

Directives: `inputs:` (required; tensors and the ranks of their dimensions), `outputs:`
(default: every produced tensor nobody reads), `ranks:` (ranks no input carries, e.g. the
M and P of a generated bias), `partition: M -> M1, M0`, `sizes:` (default
sizes such as the tile M0), `mask: COND` (added as a filter to every Einsum whose iteration
space can express COND: the causal mask once for the whole cascade), `name:`.

A reduction prefix `OP(v, ...)` with OP in sum/max/min/prod names the reduction; it must list
exactly the variables that vanish from the output. Without it, vanishing variables are summed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SpecError, caret_message
from .ir import (
    FUNCTIONS,
    REDUCE_OPS,
    Access,
    Call,
    Cascade,
    Const,
    Einsum,
    Expr,
    Init,
    Op,
    Partition,
    Size,
    TensorDecl,
    Var,
    accesses,
    iterative_offset,
    rank_of,
    var_of,
    variables,
    walk,
)

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|->|//|[-+*/%()\[\],=<>:]))"
)
_COMPARE = {"<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE, "==": Op.EQ, "!=": Op.NE}
_INDEX_OPS = (Op.ADD, Op.SUB, Op.MUL, Op.NEG, Op.FLOORDIV, Op.MOD)
_DIRECTIVES = ("inputs", "outputs", "ranks", "partition", "sizes", "mask", "name")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    column: int


class _LineParser:
    """Parses one line; every error carries the line and the column of the bad token."""

    def __init__(self, source: str, text: str, line_no: int, origin: str):
        self.source, self.text, self.line_no, self.origin = source, text, line_no, origin
        self.tokens = self._tokenize(text)
        self.pos = 0
        # (tensor, column) of each access, so unknown tensors are reported in place.
        self.access_columns: list[tuple[str, int]] = []

    # -- tokens -----------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[_Token]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "" or text[pos:].lstrip().startswith("#"):
                break
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                column = pos + len(text[pos:]) - len(text[pos:].lstrip())
                self.fail(f"unexpected character {text[column]!r}", column)
            kind = match.lastgroup
            tokens.append(_Token(kind, match.group(kind), match.start(kind)))
            pos = match.end()
        tokens.append(_Token("end", "", len(text.rstrip())))
        return tokens

    def fail(self, what: str, column: int | None = None):
        if column is None:
            column = self.peek().column
        raise SpecError(caret_message(what, self.source, self.line_no, column, self.origin))

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.pos += 1
        return token

    def expect(self, text: str, what: str | None = None) -> _Token:
        token = self.peek()
        if token.text != text or (token.kind == "end" and text):
            found = "end of line" if token.kind == "end" else repr(token.text)
            self.fail(f"expected {what or repr(text)}, found {found}")
        return self.take()

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token.kind != "end" and token.text in texts

    def done(self) -> None:
        if self.peek().kind != "end":
            self.fail(f"unexpected {self.peek().text!r} after the end of the statement")

    # -- expressions ------------------------------------------------------------------
    def expression(self) -> Expr:
        return self._or()

    def _binary(self, operand, table: dict[str, Op]) -> Expr:
        left = operand()
        while self.at(*table):
            op = table[self.take().text]
            left = Call(op, (left, operand()))
        return left

    def _or(self) -> Expr:
        return self._binary(self._and, {"or": Op.OR})

    def _and(self) -> Expr:
        return self._binary(self._compare, {"and": Op.AND})

    def _compare(self) -> Expr:
        return self._binary(self._sum, _COMPARE)

    def _sum(self) -> Expr:
        return self._binary(self._product, {"+": Op.ADD, "-": Op.SUB})

    def _product(self) -> Expr:
        return self._binary(self._unary, {"*": Op.MUL, "/": Op.DIV, "//": Op.FLOORDIV, "%": Op.MOD})

    def _unary(self) -> Expr:
        if self.at("-"):
            self.take()
            operand = self._unary()
            if isinstance(operand, Const):
                return Const(-operand.value)
            return Call(Op.NEG, (operand,))
        return self._atom()

    def _atom(self) -> Expr:
        token = self.peek()
        if token.kind == "num":
            self.take()
            return Const(float(token.text))
        if self.at("("):
            self.take()
            inner = self.expression()
            self.expect(")", "')' to close '('")
            return inner
        if token.kind != "name" or token.text in ("where", "and", "or"):
            found = "end of line" if token.kind == "end" else repr(token.text)
            self.fail(f"expected a tensor, a number, a rank variable or a function; found {found}")
        self.take()
        if token.text == "inf":
            return Const(float("inf"))
        if self.at("["):
            return self._access(token)
        if self.at("("):
            return self._call(token)
        if token.text[0].isupper():
            return Size(token.text)
        return Var(token.text)

    def _access(self, name: _Token) -> Access:
        if not name.text[0].isupper():
            self.fail(f"tensor names start with an upper-case letter: {name.text!r}", name.column)
        self.expect("[")
        indices: list[Expr] = []
        if not self.at("]"):
            indices.append(self._index())
            while self.at(","):
                self.take()
                indices.append(self._index())
        self.expect("]", "']' to close the index list")
        self.access_columns.append((name.text, name.column))
        return Access(name.text, tuple(indices))

    def _index(self) -> Expr:
        start = self.peek().column
        expr = self._sum()
        for node in walk(expr):
            bad = isinstance(node, Access) or (isinstance(node, Call) and node.op not in _INDEX_OPS)
            if bad:
                self.fail(
                    "an index is integer arithmetic: rank variables, sizes, integers, + - * // %",
                    start,
                )
            if isinstance(node, Const) and not float(node.value).is_integer():
                self.fail("an index constant must be an integer", start)
        return expr

    def _call(self, name: _Token) -> Expr:
        op = FUNCTIONS.get(name.text)
        if op is None:
            known = ", ".join(sorted(FUNCTIONS))
            self.fail(f"unknown operator {name.text!r}; known functions: {known}", name.column)
        self.expect("(")
        args = [self.expression()]
        while self.at(","):
            self.take()
            args.append(self.expression())
        self.expect(")", f"')' to close {name.text}(")
        if len(args) != op.arity:
            self.fail(f"{name.text} takes {op.arity} argument(s), got {len(args)}", name.column)
        return Call(op, tuple(args))

    # -- statements -------------------------------------------------------------------
    def reduce_prefix(self) -> tuple[Op | None, tuple[str, ...], int]:
        """`max(m0)` before the body; `(None, (), column)` when the line has none.

        A prefix is `OP(v, ...)` followed by the start of an expression, which tells it
        apart from the binary function `max(a, b)` (followed by an operator or the end).
        """
        token = self.peek()
        no_prefix = (None, (), token.column)
        if token.kind != "name" or token.text not in REDUCE_OPS or self.peek(1).text != "(":
            return no_prefix
        names, k = [], 2
        while True:
            var = self.peek(k)
            if var.kind != "name" or not var.text[0].islower():
                break
            names.append(var.text)
            if self.peek(k + 1).text == ",":
                k += 2
                continue
            if self.peek(k + 1).text == ")":
                after = self.peek(k + 2)
                if after.kind in ("name", "num") or after.text == "(":
                    self.pos += k + 2
                    return REDUCE_OPS[token.text], tuple(names), token.column
            break
        if token.text in ("sum", "prod"):
            self.fail(f"expected {token.text}(v, ...) followed by an expression")
        return no_prefix

    def statement(self) -> Einsum | Init:
        head = self.peek()
        if head.kind != "name" or not head.text[0].isupper() or self.peek(1).text != "[":
            self.fail("expected a statement `T[i,...] = expression` or a directive")
        self.take()
        lhs = self._access(head)
        self.access_columns.pop()
        self.expect("=", "'=' after the output tensor")
        op, named, op_column = self.reduce_prefix()
        body_column = self.peek().column
        expr = self.expression()
        where = None
        if self.at("where"):
            self.take()
            where = self.expression()
        self.done()
        if op is None and not accesses(expr) and where is None:
            if not isinstance(expr, Const):
                self.fail("an initial value must be a number", body_column)
            if not any(isinstance(i, Const) for i in lhs.indices):
                self.fail("an initial value is written at a constant index, e.g. RM[0,p]")
            return Init(lhs.tensor, lhs.indices, expr.value, self.line_no)
        for i, index in enumerate(lhs.indices):
            if iterative_offset(index) is None:
                self.fail(
                    f"output index {i + 1} of {lhs.tensor} must be a rank variable `v` or "
                    f"`v+k`, found `{index}`",
                    head.column,
                )
        einsum = Einsum(lhs.tensor, lhs.indices, expr, op or Op.ADD, where, self.line_no)
        out_vars = einsum.out_vars
        if len(set(out_vars)) != len(out_vars):
            self.fail(f"a rank variable repeats in the output of {lhs.tensor}", head.column)
        if named and set(named) != set(einsum.reduced_vars):
            reduced = ", ".join(einsum.reduced_vars) or "nothing"
            self.fail(
                f"the reduction names ({', '.join(named)}) but the Einsum reduces over ({reduced})",
                op_column,
            )
        return einsum


def _declaration(parser: _LineParser) -> TensorDecl:
    token = parser.peek()
    if token.kind != "name" or parser.peek(1).text != "[":
        parser.fail("expected a tensor declaration like Q[e,p]")
    parser.take()
    access = parser._access(token)
    ranks = []
    for index in access.indices:
        if not isinstance(index, Var):
            parser.fail(f"declare {access.tensor}'s dimensions by rank variables, e.g. Q[e,p]")
        ranks.append(rank_of(index.name))
    return TensorDecl(access.tensor, tuple(ranks))


def _name_list(parser: _LineParser) -> list[str]:
    """`AV, RD` or `AV[f,p]`: tensor names, each optionally with its index list."""
    names = []
    while True:
        token = parser.take()
        if token.kind != "name" or not token.text[0].isupper():
            parser.fail("expected a tensor name", token.column)
        if parser.at("["):
            parser._access(token)
            parser.access_columns.pop()
        names.append(token.text)
        if not parser.at(","):
            return names
        parser.take()


def parse_cascade(text: str, name: str = "", origin: str = "cascade") -> Cascade:
    """Parse the text syntax into a validated `Cascade`.

    Args:
        text: the cascade, one statement or directive a line; `#` starts a comment.
        name: the cascade's name (a `name:` directive overrides it).
        origin: what to call the text in error messages (a file name).

    Raises:
        SpecError: with the line, the column and a caret under the offending character.

    Example:
        >>> c = parse_cascade("inputs: A[k,m], B[k,n]\\nZ[m,n] = A[k,m] * B[k,n]")
        >>> c.einsums[0].reduced_vars
        ('k',)
    """
    inputs: list[TensorDecl] = []
    outputs: list[str] = []
    partitions: list[Partition] = []
    sizes: list[tuple[str, int]] = []
    masks: list[tuple[Expr, _LineParser]] = []
    extra_ranks: list[str] = []
    statements: list[tuple[Einsum | Init, _LineParser]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        parser = _LineParser(text, line, line_no, origin)
        head = parser.peek()
        if head.kind == "end":
            continue
        if head.kind == "name" and parser.peek(1).text == ":" and head.text in _DIRECTIVES:
            parser.pos += 2
            if head.text == "inputs":
                inputs.append(_declaration(parser))
                while parser.at(","):
                    parser.take()
                    inputs.append(_declaration(parser))
            elif head.text == "outputs":
                outputs += _name_list(parser)
            elif head.text == "ranks":
                while True:
                    token = parser.take()
                    if token.kind != "name" or not token.text[0].isupper():
                        parser.fail(
                            "expected upper-case rank names, e.g. `ranks: M, P`", token.column
                        )
                    extra_ranks.append(token.text)
                    if not parser.at(","):
                        break
                    parser.take()
            elif head.text == "partition":
                rank = parser.take()
                parser.expect("->", "'->' as in `partition: M -> M1, M0`")
                upper = parser.take()
                parser.expect(",", "',' as in `partition: M -> M1, M0`")
                lower = parser.take()
                for token in (rank, upper, lower):
                    if token.kind != "name" or not token.text[0].isupper():
                        parser.fail("a partition names upper-case ranks", token.column)
                partitions.append(Partition(rank.text, upper.text, lower.text))
            elif head.text == "sizes":
                while True:
                    key = parser.take()
                    parser.expect("=", "'=' as in `sizes: M0=256`")
                    value = parser.take()
                    if key.kind != "name" or value.kind != "num" or "." in value.text:
                        parser.fail("expected NAME=integer", key.column)
                    sizes.append((key.text, int(value.text)))
                    if not parser.at(","):
                        break
                    parser.take()
            elif head.text == "mask":
                masks.append((parser.expression(), parser))
            elif head.text == "name":
                name = line.split(":", 1)[1].strip()
                parser.pos = len(parser.tokens) - 1
            parser.done()
            continue
        if head.kind == "name" and parser.peek(1).text == ":":
            parser.fail(
                f"unknown directive {head.text!r}; known: {', '.join(_DIRECTIVES)}", head.column
            )
        statements.append((parser.statement(), parser))

    if not inputs:
        raise SpecError(f"{origin}: no `inputs:` line declares the input tensors, e.g. Q[e,p]")
    known_ranks = {r for t in inputs for r in t.ranks} | set(extra_ranks)
    for p in partitions:
        known_ranks |= {p.rank, p.upper, p.lower}
    declared = {t.name: t for t in inputs}
    produced: dict[str, _LineParser] = {}
    einsums: list[Einsum] = []
    inits: list[Init] = []
    for stmt, parser in statements:
        if isinstance(stmt, Init):
            inits.append(stmt)
            continue
        if stmt.output in declared:
            parser.fail(f"{stmt.output} is an input; it cannot also be produced", 0)
        if stmt.output in produced:
            first = produced[stmt.output].line_no
            parser.fail(f"tensor {stmt.output} is produced twice (first on line {first})", 0)
        produced[stmt.output] = parser
        einsums.append(stmt)

    arity = {t.name: len(t.ranks) for t in inputs} | {e.output: len(e.out_indices) for e in einsums}
    for stmt, parser in statements:
        for tensor, column in parser.access_columns:
            if tensor not in arity:
                known = ", ".join(sorted(arity))
                parser.fail(f"unknown tensor {tensor!r}; known tensors: {known}", column)
        target = stmt if isinstance(stmt, Einsum) else None
        reads = list(accesses(target.expr) + accesses(target.where)) if target else []
        reads.append(Access(stmt.output if target else stmt.tensor, _indices_of(stmt)))
        for access in reads:
            if access.tensor not in arity:
                parser.fail(f"unknown tensor {access.tensor!r} (no Einsum produces it)", 0)
            if len(access.indices) != arity[access.tensor]:
                parser.fail(
                    f"{access.tensor} has {arity[access.tensor]} dimension(s), "
                    f"indexed with {len(access.indices)}",
                    0,
                )
        used = set(variables(target.expr) | variables(target.where)) if target else set()
        used |= {v for i in _indices_of(stmt) for v in variables(i)}
        for var in sorted(used):
            if rank_of(var) not in known_ranks:
                parser.fail(
                    f"rank {var!r} is used but never bound: no input, partition or `ranks:` "
                    f"line has rank {rank_of(var)} (known: {', '.join(sorted(known_ranks))})",
                    0,
                )

    for tensor in outputs:
        if tensor not in produced and tensor not in declared:
            raise SpecError(f"{origin}: output {tensor!r} is never produced")
    for init in inits:
        if init.tensor not in produced:
            raise SpecError(
                f"{origin} line {init.line}: initial value for {init.tensor}, "
                "which no Einsum produces"
            )
    if not outputs:
        read = {a.tensor for e in einsums for a in e.operands}
        outputs = [e.output for e in einsums if e.output not in read]

    partition_table = {p.rank: p for p in partitions}
    with_masks = []
    for einsum in einsums:
        for condition, _ in masks:
            if _expressible(condition, einsum, partition_table):
                where = (
                    condition if einsum.where is None else Call(Op.AND, (einsum.where, condition))
                )
                einsum = Einsum(
                    einsum.output,
                    einsum.out_indices,
                    einsum.expr,
                    einsum.reduce_op,
                    where,
                    einsum.line,
                )
        with_masks.append(_filter_in_parts(einsum, partitions))

    cascade = Cascade(
        name=name,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        einsums=tuple(with_masks),
        inits=tuple(inits),
        partitions=tuple(partitions),
        default_sizes=tuple(sizes),
    )
    validate(cascade, text, origin)
    return cascade


def _indices_of(stmt: Einsum | Init) -> tuple[Expr, ...]:
    return stmt.out_indices if isinstance(stmt, Einsum) else stmt.indices


def _substitute(expr: Expr, var: str, value: Expr) -> Expr:
    if isinstance(expr, Var):
        return value if expr.name == var else expr
    if isinstance(expr, Call):
        return Call(expr.op, tuple(_substitute(a, var, value) for a in expr.args))
    if isinstance(expr, Access):
        return Access(expr.tensor, tuple(_substitute(i, var, value) for i in expr.indices))
    return expr


def _filter_in_parts(einsum: Einsum, partitions: list[Partition]) -> Einsum:
    """Write a filter's original variable (`m`) as its parts (`m1*M0+m0`) where the Einsum
    iterates the parts and not `m` itself, so `m` does not become a rank of its own."""
    if einsum.where is None:
        return einsum
    iterated = set(einsum.out_vars) | variables(einsum.expr)
    where = einsum.where
    for var in sorted(variables(where) - iterated):
        for part in partitions:
            if part.rank == rank_of(var) and {var_of(part.upper), var_of(part.lower)} <= iterated:
                where = _substitute(where, var, part.combined())
                break
    if where is einsum.where:
        return einsum
    return Einsum(
        einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, where, einsum.line
    )


def _expressible(condition: Expr, einsum: Einsum, partitions: dict[str, Partition]) -> bool:
    """Whether a cascade-level mask can be evaluated in an Einsum's iteration space."""
    iterated = set(einsum.iter_vars)
    for var in variables(condition):
        if var in iterated:
            continue
        part = partitions.get(rank_of(var))
        if part is None or not {var_of(part.upper), var_of(part.lower)} <= iterated:
            return False
    return True


def validate(cascade: Cascade, text: str = "", origin: str = "cascade") -> None:
    """Structural checks that need the whole cascade: cycles must step an iterative rank.

    Raises:
        SpecError: naming the Einsum (and its line) at fault.
    """
    import networkx as nx

    def fail(einsum: Einsum, what: str):
        if text and einsum.line:
            raise SpecError(caret_message(what, text, einsum.line, 0, origin))
        raise SpecError(f"{origin}: {einsum.output}: {what}")

    for cycle in nx.simple_cycles(cascade.forward_graph):
        einsum = cascade.producers[cycle[0]]
        path = " -> ".join([*cycle, cycle[0]])
        fail(einsum, f"cycle outside an iterative rank: {path}")
    for step in cascade.loops:
        var, members = step.loop_var, step.outputs
        if not var:
            fail(cascade.producers[members[0]], "cycle without an iterative index such as m1+1")
        for member in members:
            einsum = cascade.producers[member]
            if var not in einsum.iter_vars:
                fail(einsum, f"{member} is in the loop over {var} but does not iterate {var}")
