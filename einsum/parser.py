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

import math
import re
from dataclasses import dataclass

from . import validation
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

# One regex per token, applied at a position: the tokenizer is linear in the line's length.
# ASCII digits and letters only ([0-9], not \\d, which accepts every Unicode digit).
_TOKEN = re.compile(
    r"\s*(?:(?P<num>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|->|//|[-+*/%()\[\],=<>:])"
    r"|(?P<comment>#)|(?P<end>$))"
)
_SPACE = re.compile(r"\s*")
_COMPARE = {"<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE, "==": Op.EQ, "!=": Op.NE}
_INDEX_OPS = (Op.ADD, Op.SUB, Op.MUL, Op.NEG, Op.FLOORDIV, Op.MOD)
_BINARY: dict[str, tuple[int, Op]] = {
    "or": (1, Op.OR),
    "and": (2, Op.AND),
    **{text: (3, op) for text, op in _COMPARE.items()},
    "+": (4, Op.ADD),
    "-": (4, Op.SUB),
    "*": (5, Op.MUL),
    "/": (5, Op.DIV),
    "//": (5, Op.FLOORDIV),
    "%": (5, Op.MOD),
}
_INT64_MAX = 2**63 - 1
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
        # Tokens are scanned on demand, so a parse error early in a long line costs only
        # the tokens before it; each scan is one regex match at a position (linear).
        self.tokens: list[_Token] = []
        self.scanned = 0
        self.ended = False
        self.pos = 0
        self.nesting = 0
        # (tensor, column) of each access, so unknown tensors are reported in place.
        self.access_columns: list[tuple[str, int]] = []

    # -- tokens -----------------------------------------------------------------------
    def _scan(self) -> None:
        text = self.text
        match = _TOKEN.match(text, self.scanned)
        if match is None:
            column = _SPACE.match(text, self.scanned).end()
            self.fail(f"unexpected character {text[column]!r}", column)
        kind = match.lastgroup
        if kind in ("comment", "end"):
            self.skip_rest()
            return
        value = match.group(kind)
        if len(value) > validation.MAX_NAME_CHARS:
            what = "number" if kind == "num" else "name"
            self.fail(
                f"a {what} of {len(value)} characters; at most {validation.MAX_NAME_CHARS}",
                match.start(kind),
            )
        self.tokens.append(_Token(kind, value, match.start(kind)))
        self.scanned = match.end()

    def skip_rest(self) -> None:
        """End the token stream here (a comment, the end, or a `name:` directive's text)."""
        if not self.ended:
            self.ended = True
            self.tokens.append(_Token("end", "", len(self.text.rstrip())))
        self.pos = min(self.pos, len(self.tokens) - 1)

    def fail(self, what: str, column: int | None = None):
        if column is None:
            column = self.peek().column
        raise SpecError(caret_message(what, self.source, self.line_no, column, self.origin))

    def peek(self, ahead: int = 0) -> _Token:
        index = self.pos + ahead
        if index < len(self.tokens):  # the common case: already scanned
            return self.tokens[index]
        while len(self.tokens) <= index and not self.ended:
            self._scan()
        return self.tokens[min(index, len(self.tokens) - 1)]

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
        start = self.peek().column
        expr = self._climb(1)
        self._check_depth(expr, start)
        return expr

    def _check_depth(self, expr: Expr, column: int) -> None:
        """Refuse a tree deeper than the limit before anything walks it recursively (a
        chain `a + a + ...` parses in a loop but nests one level per operator)."""
        if _depth_exceeds(expr, validation.MAX_NESTING):
            self.fail(
                f"the expression nests deeper than {validation.MAX_NESTING} levels (brackets, "
                "calls, chained operators); split it into several Einsums",
                column,
            )

    def _enter(self, column: int) -> None:
        """Count one level of nesting (a bracket, a call); past the limit, refuse the line.

        The parser recurses once per level, so this bound is also its stack bound."""
        self.nesting += 1
        if self.nesting > validation.MAX_NESTING:
            self.fail(
                f"nesting deeper than {validation.MAX_NESTING} levels "
                "(brackets, calls); split the expression into several Einsums",
                column,
            )

    def _climb(self, minimum: int) -> Expr:
        """Binary operators by precedence climbing, left-associative (a chain is a loop)."""
        left = self._unary()
        chain = 0
        while True:
            token = self.peek()
            entry = _BINARY.get(token.text) if token.kind in ("op", "name") else None
            if entry is None or entry[0] < minimum:
                return left
            chain += 1  # a chain of n operators nests n levels (left-associative)
            if chain > validation.MAX_NESTING:
                self.fail(
                    f"a chain of more than {validation.MAX_NESTING} operators nests too "
                    "deep; split the expression into several Einsums",
                    token.column,
                )
            self.take()
            left = Call(entry[1], (left, self._climb(entry[0] + 1)))

    def _unary(self) -> Expr:
        signs = 0
        while self.at("-"):
            self.take()
            signs += 1
        operand = self._atom()
        for _ in range(signs):
            operand = (
                Const(-operand.value) if isinstance(operand, Const) else Call(Op.NEG, (operand,))
            )
        return operand

    def _atom(self) -> Expr:
        token = self.peek()
        if token.kind == "num":
            self.take()
            value = float(token.text)
            if not math.isfinite(value):
                self.fail(f"the number {token.text[:20]}... is too large", token.column)
            return Const(value)
        if self.at("("):
            self._enter(token.column)
            self.take()
            inner = self.expression()
            self.expect(")", "')' to close '('")
            self.nesting -= 1
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
        self._enter(name.column)
        self.expect("[")
        indices: list[Expr] = []
        if not self.at("]"):
            indices.append(self._index())
            while self.at(","):
                self.take()
                indices.append(self._index())
                if len(indices) > validation.MAX_TENSOR_DIMS:
                    self.fail(
                        f"{name.text} has more than {validation.MAX_TENSOR_DIMS} dimensions",
                        name.column,
                    )
        self.expect("]", "']' to close the index list")
        self.nesting -= 1
        if len(indices) > validation.MAX_TENSOR_DIMS:
            self.fail(
                f"{name.text} has {len(indices)} dimensions; at most {validation.MAX_TENSOR_DIMS}",
                name.column,
            )
        self.access_columns.append((name.text, name.column))
        return Access(name.text, tuple(indices))

    def _index(self) -> Expr:
        start = self.peek().column
        expr = self._climb(_BINARY["+"][0])
        self._check_depth(expr, start)
        for node in walk(expr):
            bad = isinstance(node, Access) or (isinstance(node, Call) and node.op not in _INDEX_OPS)
            if bad:
                self.fail(
                    "an index is integer arithmetic: rank variables, sizes, integers, + - * // %",
                    start,
                )
            if isinstance(node, Const) and not float(node.value).is_integer():
                self.fail("an index constant must be an integer", start)
            if isinstance(node, Const) and abs(node.value) > validation.MAX_INDEX_CONSTANT:
                self.fail(
                    f"an index constant must be at most {validation.MAX_INDEX_CONSTANT} "
                    "in magnitude",
                    start,
                )
        if _index_magnitude(expr) > _INT64_MAX:
            self.fail(
                "this index arithmetic can exceed 64-bit integers for rank sizes up to "
                f"{validation.MAX_RANK_SIZE}",
                start,
            )
        return expr

    def _call(self, name: _Token) -> Expr:
        op = FUNCTIONS.get(name.text)
        if op is None:
            known = ", ".join(sorted(FUNCTIONS))
            self.fail(f"unknown operator {name.text!r}; known functions: {known}", name.column)
        self._enter(name.column)
        self.expect("(")
        args = [self.expression()]
        while self.at(","):
            self.take()
            args.append(self.expression())
        self.expect(")", f"')' to close {name.text}(")
        self.nesting -= 1
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
            for index in lhs.indices:
                if not isinstance(index, Var) and not (
                    isinstance(index, Const) and index.value == 0
                ):
                    self.fail(
                        f"an initial value's indices are rank variables and 0, e.g. RM[0,p]; "
                        f"found `{index}`",
                        head.column,
                    )
            return Init(lhs.tensor, lhs.indices, expr.value, self.line_no)
        iterative = 0
        for i, index in enumerate(lhs.indices):
            offset = iterative_offset(index)
            if offset is None or offset[1] not in (0, 1):
                self.fail(
                    f"output index {i + 1} of {lhs.tensor} must be a rank variable `v` or "
                    f"`v+1`, found `{index}`",
                    head.column,
                )
            iterative += offset[1]
        if iterative > 1:
            self.fail(f"{lhs.tensor} steps more than one rank (at most one `v+1`)", head.column)
        einsum = Einsum(lhs.tensor, lhs.indices, expr, op or Op.ADD, where, self.line_no)
        out_vars = einsum.out_vars
        if len(set(out_vars)) != len(out_vars):
            self.fail(f"a rank variable repeats in the output of {lhs.tensor}", head.column)
        read = variables(expr) | variables(where)
        for var in out_vars:
            if var not in read:
                self.fail(
                    f"output rank {var} of {lhs.tensor} appears nowhere on the right-hand side "
                    "(no operand, value or filter binds it)",
                    head.column,
                )
        if len(einsum.iter_vars) > validation.MAX_EINSUM_VARIABLES:
            self.fail(
                f"{lhs.tensor} iterates {len(einsum.iter_vars)} rank variables; at most "
                f"{validation.MAX_EINSUM_VARIABLES}",
                head.column,
            )
        if named and set(named) != set(einsum.reduced_vars):
            reduced = ", ".join(einsum.reduced_vars) or "nothing"
            self.fail(
                f"the reduction names ({', '.join(named)}) but the Einsum reduces over ({reduced})",
                op_column,
            )
        return einsum


def _depth_exceeds(expr: Expr, limit: int) -> bool:
    """Whether the expression tree is more than `limit` levels deep (iterative: no recursion)."""
    stack = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, Call):
            stack += [(arg, depth + 1) for arg in node.args]
        elif isinstance(node, Access):
            stack += [(index, depth + 1) for index in node.indices]
    return False


def _index_magnitude(expr: Expr) -> int:
    """An upper bound of |index| when every variable and size is at most MAX_RANK_SIZE."""
    if isinstance(expr, Const):
        return int(abs(expr.value))
    if isinstance(expr, (Var, Size)):
        return validation.MAX_RANK_SIZE
    if not isinstance(expr, Call):
        return 0
    bounds = [_index_magnitude(arg) for arg in expr.args]
    if expr.op is Op.MUL:
        return bounds[0] * bounds[1]
    if expr.op in (Op.ADD, Op.SUB):
        return bounds[0] + bounds[1]
    if expr.op is Op.MOD:
        return bounds[1]
    return bounds[0]  # NEG, FLOORDIV


def _declaration(parser: _LineParser, declared: list[TensorDecl]) -> TensorDecl:
    token = parser.peek()
    if token.kind != "name" or parser.peek(1).text != "[":
        parser.fail("expected a tensor declaration like Q[e,p]")
    parser.take()
    access = parser._access(token)
    ranks = []
    for index in access.indices:
        if not isinstance(index, Var):
            parser.fail(f"declare {access.tensor}'s dimensions by rank variables, e.g. Q[e,p]")
        if rank_of(index.name) in ranks:
            parser.fail(f"rank {rank_of(index.name)} repeats in {access.tensor}", token.column)
        ranks.append(rank_of(index.name))
    if any(t.name == access.tensor for t in declared):
        parser.fail(f"input {access.tensor} is declared twice", token.column)
    if len(declared) >= validation.MAX_CASCADE_TENSORS:
        parser.fail(f"more than {validation.MAX_CASCADE_TENSORS} inputs", token.column)
    return TensorDecl(access.tensor, tuple(ranks))


def _count(parser: _LineParser, items: list, what: str, column: int) -> None:
    if len(items) > validation.MAX_CASCADE_TENSORS:
        parser.fail(f"more than {validation.MAX_CASCADE_TENSORS} {what} in one cascade", column)


def _check_partitions(
    partitions: list[Partition], lines: list[tuple[_LineParser, int]], ranks: set[str]
) -> None:
    """A partition splits a rank an input or `ranks:` declares into two parts. A rank may be
    split more than once (block_topk's M -> N, MB beside M -> M1, M0), and a part may be a
    rank an input also carries (a router's N), but no rank is the part of two partitions,
    nor a part of itself, nor both split and a part (no chains)."""
    parts: set[str] = set()
    split = {p.rank for p in partitions}
    for part, (parser, column) in zip(partitions, lines, strict=True):
        if part.rank not in ranks:
            parser.fail(
                f"partition of unknown rank {part.rank}; known ranks: {', '.join(sorted(ranks))}",
                column,
            )
        for new in (part.upper, part.lower):
            if new in parts or new in split or part.upper == part.lower:
                parser.fail(
                    f"partition {part}: {new} is already a part or a partitioned rank",
                    column,
                )
            parts.add(new)


def _name_list(parser: _LineParser) -> list[_Token]:
    """`AV, RD` or `AV[f,p]`: tensor names, each optionally with its index list."""
    names = []
    while True:
        token = parser.take()
        if token.kind != "name" or not token.text[0].isupper():
            parser.fail("expected a tensor name", token.column)
        if parser.at("["):
            parser._access(token)
            parser.access_columns.pop()
        names.append(token)
        _count(parser, names, "outputs", token.column)
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
    partition_lines: list[tuple[_LineParser, int]] = []
    output_columns: dict[str, tuple[_LineParser, int]] = {}
    if len(text) > validation.MAX_CASCADE_CHARS:
        raise SpecError(
            f"{origin} line 1, column 1: the text has {len(text)} characters; "
            f"at most {validation.MAX_CASCADE_CHARS}"
        )
    for line_no, line in enumerate(text.splitlines(), start=1):
        parser = _LineParser(text, line, line_no, origin)
        head = parser.peek()
        if head.kind == "end":
            continue
        if head.kind == "name" and parser.peek(1).text == ":" and head.text in _DIRECTIVES:
            parser.pos += 2
            if head.text == "inputs":
                inputs.append(_declaration(parser, inputs))
                while parser.at(","):
                    parser.take()
                    inputs.append(_declaration(parser, inputs))
            elif head.text == "outputs":
                for token in _name_list(parser):
                    if token.text in outputs:
                        parser.fail(f"output {token.text} is listed twice", token.column)
                    outputs.append(token.text)
                    output_columns[token.text] = (parser, token.column)
            elif head.text == "ranks":
                while True:
                    token = parser.take()
                    if token.kind != "name" or not token.text[0].isupper():
                        parser.fail(
                            "expected upper-case rank names, e.g. `ranks: M, P`", token.column
                        )
                    extra_ranks.append(token.text)
                    _count(parser, extra_ranks, "ranks", token.column)
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
                partition_lines.append((parser, rank.column))
            elif head.text == "sizes":
                while True:
                    key = parser.take()
                    if key.kind != "name" or not key.text[0].isupper():
                        parser.fail("expected an upper-case size name, as in `sizes: M0=256`")
                    parser.expect("=", "'=' as in `sizes: M0=256`")
                    value = parser.take()
                    if value.kind != "num" or not value.text.isdigit():
                        parser.fail(
                            f"{key.text}: a size is a plain positive integer such as 256",
                            value.column,
                        )
                    if len(value.text) > 10 or not 1 <= int(value.text) <= validation.MAX_RANK_SIZE:
                        parser.fail(
                            f"{key.text}: a size is an integer in [1, {validation.MAX_RANK_SIZE}]",
                            value.column,
                        )
                    if any(k == key.text for k, _ in sizes):
                        parser.fail(f"size {key.text} is given twice", key.column)
                    sizes.append((key.text, int(value.text)))
                    _count(parser, sizes, "sizes", key.column)
                    if not parser.at(","):
                        break
                    parser.take()
            elif head.text == "mask":
                masks.append((parser.expression(), parser))
            elif head.text == "name":
                name = line.split(":", 1)[1].strip()
                parser.skip_rest()
                parser.pos = len(parser.tokens) - 1
            parser.done()
            continue
        if head.kind == "name" and parser.peek(1).text == ":":
            parser.fail(
                f"unknown directive {head.text!r}; known: {', '.join(_DIRECTIVES)}", head.column
            )
        statements.append((parser.statement(), parser))
        if len(statements) > validation.MAX_CASCADE_STATEMENTS:
            parser.fail(
                f"more than {validation.MAX_CASCADE_STATEMENTS} statements in one cascade", 0
            )

    if not inputs:
        what = "no `inputs:` line declares the input tensors, e.g. Q[e,p]"
        raise SpecError(caret_message(what, text, 1, 0, origin))
    known_ranks = {r for t in inputs for r in t.ranks} | set(extra_ranks)
    _check_partitions(partitions, partition_lines, known_ranks)
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
            parser, column = output_columns[tensor]
            parser.fail(f"output {tensor!r} is never produced", column)
    for init, parser in ((s, p) for s, p in statements if isinstance(s, Init)):
        if init.tensor not in produced:
            parser.fail(f"initial value for {init.tensor}, which no Einsum produces", 0)
        producer = produced[init.tensor]
        stmt = next(s for s, p in statements if p is producer)
        for i, index in enumerate(init.indices):
            if isinstance(index, Const) and iterative_offset(stmt.out_indices[i])[1] != 1:
                parser.fail(
                    f"an initial value is written at index 0 of an iterative dimension; "
                    f"dimension {i + 1} of {init.tensor} is not iterative (written as "
                    f"`{stmt.out_indices[i]}` on line {stmt.line})",
                    0,
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

    # One cycle is enough to refuse; listing every cycle (simple_cycles) is exponential.
    try:
        edges = nx.find_cycle(cascade.forward_graph)
    except nx.NetworkXNoCycle:
        edges = []
    if edges:
        cycle = [u for u, _ in edges]
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
