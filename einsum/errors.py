"""The exception hierarchy of einsim: one base class, one module.

Every error a user can provoke with bad input is a subclass of `EinsimError` and carries a
one-line message naming the offending file, key, line or character and what was expected.
"""

from __future__ import annotations


class EinsimError(Exception):
    """Base class of every error einsim raises on purpose."""


class SpecError(EinsimError, ValueError):
    """Malformed input: a cascade text, a YAML spec, a shape, a parameter."""


class MappingError(EinsimError, ValueError):
    """A mapping that does not fit its cascade or architecture."""


class InfeasibleError(EinsimError):
    """Well-formed input for which nothing fits; the message says the likely causes."""


class BackendUnavailable(EinsimError, RuntimeError):
    """An optional backend (CuPy, a GPU, Dask) is not installed or not reachable."""


def caret_message(what: str, text: str, line: int, column: int, source: str = "cascade") -> str:
    """Format a parse error with the offending line and a caret under the bad character.

    Example:
        >>> print(caret_message("expected ']'", "A[m = B[m]", 1, 4))
        cascade line 1, column 5: expected ']'
            A[m = B[m]
                ^
    """
    lines = text.splitlines() or [""]
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"{source} line {line}, column {column + 1}: {what}\n    {shown}\n    {' ' * column}^"
