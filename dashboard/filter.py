"""The sweep explorer's filter: a small expression language parsed by hand into a boolean
mask over a results table. The text is never evaluated as code (no `eval`, no
`DataFrame.query`, no `pd.eval`): the parser knows column names, comparisons, constants
and and/or/not, nothing else.

Grammar (loosest first)::

    filter     := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" filter ")" | comparison
    comparison := value [OP value]          # a value alone must be a true/false column
    value      := NAME | `ANY NAME` | NUMBER | 'text' | "text" | true | false
    OP         := == | != | < | <= | > | >=

NAME is a column such as `seq_len` or `arch.units.2d.rows` (dotted parts may start with a
digit); a backquoted name may hold any character but a backquote. A missing value (NaN,
None) satisfies no comparison. Texts are bounded (`MAX_CHARS`) and so is the nesting of
parentheses and `not` (`MAX_DEPTH`), so parsing is linear and never recursion-bound.
Every error is a `SpecError` naming the column (character position, from 1) and the offending token.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from einsim.einsum import SpecError

#: The longest filter text accepted, in characters.
MAX_CHARS = 1000
#: The deepest nesting of parentheses and `not` accepted.
MAX_DEPTH = 32

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KEYWORDS = ("and", "or", "not", "true", "false")
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_.]))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    |(?P<quoted>`[^`]*`)
    |(?P<text>'[^']*'|"[^"]*")
    |(?P<op>==|!=|<=|>=|<|>)
    |(?P<paren>[()])""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind (name, number, text, op, paren, keyword, end), text and position
    (0-based character offset)."""

    kind: str
    text: str
    at: int


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    at: int


@dataclass(frozen=True, slots=True)
class Constant:
    value: float | int | str | bool
    at: int


@dataclass(frozen=True, slots=True)
class Compare:
    left: Column | Constant
    op: str
    right: Column | Constant
    at: int


@dataclass(frozen=True, slots=True)
class Truth:
    """A value standing alone: a true/false column or constant."""

    value: Column | Constant


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class Combine:
    """`and` / `or` over two or more items."""

    op: str
    items: tuple[Node, ...]


Node = Compare | Truth | Not | Combine


def _error(text: str, at: int, what: str) -> SpecError:
    return SpecError(f"filter, column {at + 1}: {what}")


def _shown(token: Token) -> str:
    return "end of the filter" if token.kind == "end" else repr(token.text[:40])


def tokenize(text: str) -> list[Token]:
    """The tokens of a filter text, ending with an `end` token.

    Raises:
        SpecError: a character no token starts with, an unclosed quote.

    Example:
        >>> [t.text for t in tokenize("seq_len >= 4096 and arch == 'flat'")][:4]
        ['seq_len', '>=', '4096', 'and']
    """
    tokens = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            char = text[at]
            if char in "'\"`":
                raise _error(text, at, f"unclosed quote {char}")
            hint = " (write == to compare)" if char == "=" else ""
            hint = hint or (" (write and / or / not)" if char in "&|~!" else "")
            raise _error(
                text,
                at,
                f"unexpected {char!r}{hint}; expected a column name, a number, a quoted "
                "text, a comparison, and/or/not or parentheses",
            )
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "name" and value in _KEYWORDS:
            kind = "keyword"
        if kind != "space":
            tokens.append(Token(kind, value, at))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the tokens, with the depth bounded by `MAX_DEPTH`."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        node = self.disjunction(0)
        token = self.peek()
        if token.kind != "end":
            raise _error(
                self.text,
                token.at,
                f"unexpected {_shown(token)}; expected and, or, "
                "a closing parenthesis or the end of the filter",
            )
        return node

    def disjunction(self, depth: int) -> Node:
        items = [self.conjunction(depth)]
        while self.peek().kind == "keyword" and self.peek().text == "or":
            self.take()
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else Combine("or", tuple(items))

    def conjunction(self, depth: int) -> Node:
        items = [self.negation(depth)]
        while self.peek().kind == "keyword" and self.peek().text == "and":
            self.take()
            items.append(self.negation(depth))
        return items[0] if len(items) == 1 else Combine("and", tuple(items))

    def negation(self, depth: int) -> Node:
        token = self.peek()
        if depth >= MAX_DEPTH and (token.text == "not" or token.text == "("):
            raise _error(self.text, token.at, f"nested deeper than {MAX_DEPTH} levels")
        if token.kind == "keyword" and token.text == "not":
            self.take()
            return Not(self.negation(depth + 1))
        if token.kind == "paren" and token.text == "(":
            self.take()
            node = self.disjunction(depth + 1)
            close = self.take()
            if close.text != ")":
                raise _error(
                    self.text,
                    close.at,
                    f"expected ')' to close the '(' at column {token.at + 1}, got {_shown(close)}",
                )
            return node
        left = self.value()
        if self.peek().kind != "op":
            return Truth(left)
        op = self.take()
        right = self.value()
        return Compare(left, op.text, right, op.at)

    def value(self) -> Column | Constant:
        token = self.take()
        if token.kind == "name":
            return Column(token.text, token.at)
        if token.kind == "quoted":
            return Column(token.text[1:-1], token.at)
        if token.kind == "text":
            return Constant(token.text[1:-1], token.at)
        if token.kind == "number":
            return Constant(_number(token, self.text), token.at)
        if token.kind == "keyword" and token.text in ("true", "false"):
            return Constant(token.text == "true", token.at)
        raise _error(
            self.text,
            token.at,
            f"unexpected {_shown(token)}; expected a column "
            "name, a number, a quoted text, true/false, not or '('",
        )


def _number(token: Token, text: str) -> float | int:
    digits = token.text.lstrip("+-")
    if digits.isdigit() and len(digits) <= 18:  # exact below 2**63
        return int(token.text)
    if len(digits) > 40:
        raise _error(text, token.at, f"number {token.text[:20]}... is too long")
    return float(token.text)


def parse_filter(text: str) -> Node:
    """A filter text as a tree of comparisons and and/or/not (see the module docstring).

    Raises:
        SpecError: not a string, longer than `MAX_CHARS`, nested deeper than `MAX_DEPTH`,
            or a token out of place (named with its character position).

    Example:
        >>> parse_filter("not valid or seq_len > 1024")  # doctest: +ELLIPSIS
        Combine(op='or', items=(Not(item=Truth(value=Column(name='valid', at=4))), Compare(...
    """
    if not isinstance(text, str):
        raise SpecError(f"filter: expected a text, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise SpecError(f"filter: {len(text)} characters; at most {MAX_CHARS}")
    return _Parser(text).parse()


def _kind(series: pd.Series) -> str:
    """bool, number or text: what a column can be compared with."""
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    if series.dtype == object:
        present = series.dropna()
        if len(present) and all(isinstance(v, (bool, np.bool_)) for v in present):
            return "bool"
    return "text"


def _constant_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    return "text" if isinstance(value, str) else "number"


def _column(frame: pd.DataFrame, column: Column) -> pd.Series:
    if column.name not in frame.columns:
        names = [str(c) for c in frame.columns]
        listed = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        raise SpecError(
            f"filter, column {column.at + 1}: no column {column.name[:60]!r}; columns: {listed}"
        )
    found = frame[column.name]
    if isinstance(found, pd.DataFrame):  # duplicated column names
        raise SpecError(f"filter, column {column.at + 1}: column {column.name!r} is repeated")
    return found


def _side(frame: pd.DataFrame, value: Column | Constant):
    """(kind, values as an array or a scalar, missing mask or None)."""
    if isinstance(value, Constant):
        return _constant_kind(value.value), value.value, None
    series = _column(frame, value)
    kind = _kind(series)
    missing = series.isna().to_numpy(dtype=bool)
    if kind == "number":
        numbers = series.to_numpy(dtype=float, na_value=np.nan)
        return kind, numbers, missing
    if kind == "bool":
        return kind, series.fillna(False).to_numpy(dtype=bool), missing
    return kind, series.astype("string").fillna("").to_numpy(dtype=object), missing


def _compare(frame: pd.DataFrame, node: Compare) -> np.ndarray:
    if isinstance(node.left, Constant) and isinstance(node.right, Constant):
        raise SpecError(
            f"filter, column {node.at + 1}: {node.op} compares two constants; "
            "one side must be a column"
        )
    left_kind, left, left_missing = _side(frame, node.left)
    right_kind, right, right_missing = _side(frame, node.right)
    if left_kind != right_kind:
        raise SpecError(
            f"filter, column {node.at + 1}: {node.op} compares {_describe(node.left, left_kind)}"
            f" with {_describe(node.right, right_kind)}"
        )
    if left_kind == "bool" and node.op not in ("==", "!="):
        raise SpecError(
            f"filter, column {node.at + 1}: true/false values compare with == or != only, "
            f"not {node.op}"
        )
    if left_kind == "number":
        left = np.asarray(left, dtype=float) if isinstance(left, np.ndarray) else float(left)
        right = np.asarray(right, dtype=float) if isinstance(right, np.ndarray) else float(right)
    with np.errstate(invalid="ignore"):
        result = np.asarray(_OPS[node.op](left, right), dtype=bool)
    result = np.broadcast_to(result, (len(frame),)).copy()
    for missing in (left_missing, right_missing):
        if missing is not None:
            result &= ~missing
    return result


def _describe(value: Column | Constant, kind: str) -> str:
    if isinstance(value, Column):
        return f"column {value.name[:60]!r} ({kind})"
    return f"the {kind} {str(value.value)[:40]!r}"


def _truth(frame: pd.DataFrame, node: Truth) -> np.ndarray:
    value = node.value
    if isinstance(value, Constant):
        if isinstance(value.value, bool):
            return np.full(len(frame), value.value)
        raise SpecError(
            f"filter, column {value.at + 1}: {str(value.value)[:40]!r} alone is not a "
            "condition; compare it with a column"
        )
    series = _column(frame, value)
    if _kind(series) != "bool":
        raise SpecError(
            f"filter, column {value.at + 1}: column {value.name[:60]!r} is not true/false; "
            "compare it (e.g. seq_len >= 4096)"
        )
    return series.fillna(False).to_numpy(dtype=bool)


def evaluate_filter(node: Node, frame: pd.DataFrame) -> np.ndarray:
    """The boolean mask of the rows of `frame` that satisfy a parsed filter.

    Raises:
        SpecError: an unknown column, or a comparison of a number with a text.
    """
    # Recursion is safe: only parentheses and `not` nest, at most MAX_DEPTH deep.
    if isinstance(node, Compare):
        return _compare(frame, node)
    if isinstance(node, Truth):
        return _truth(frame, node)
    if isinstance(node, Not):
        return ~evaluate_filter(node.item, frame)
    masks = [evaluate_filter(item, frame) for item in node.items]
    reduce = np.logical_and if node.op == "and" else np.logical_or
    return reduce.reduce(masks, axis=0) if masks else np.ones(len(frame), dtype=bool)


def filter_mask(frame: pd.DataFrame, text: str) -> np.ndarray:
    """The rows of `frame` that satisfy the filter `text` (all rows for an empty text).

    Raises:
        SpecError: a malformed filter or one naming a column the table lacks.

    Example:
        >>> frame = pd.DataFrame({"seq_len": [1024, 4096], "arch": ["flat", "fusemax"]})
        >>> filter_mask(frame, "seq_len >= 2048 or arch == 'flat'").tolist()
        [True, True]
        >>> filter_mask(frame, "not (arch == 'flat')").tolist()
        [False, True]
    """
    if isinstance(text, str) and not text.strip():
        return np.ones(len(frame), dtype=bool)
    return evaluate_filter(parse_filter(text), frame)
