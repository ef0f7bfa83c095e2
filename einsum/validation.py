"""The one validation layer for user input: numbers, integers, names and their bounds.

Every entry point that reads user text (cascade text, YAML specs, `--param/--shape/--set`,
sweep specs, dashboard fields) checks values through these functions, so one bound means
the same everywhere and every refusal is a `SpecError` naming where (`file: key.path`) and
what was expected. Nothing here allocates in proportion to the value it checks.

The bounds are chosen so that no accepted input can overflow an int64 product of a few
sizes, make the cost model return nan or inf, or grow work far beyond its text:

- a rank size (a sequence length, a tile, `sizes: M0=256`): an integer in [1, 2^31 - 1];
- an index constant in cascade text (`m + 3`): |k| <= 2^31 - 1;
- a real number in a spec: finite, and within [MIN_POSITIVE, MAX_NUMBER] when positive;
- expression nesting in cascade text: at most MAX_NESTING levels;
- YAML: at most MAX_YAML_BYTES of text, MAX_YAML_DEPTH levels, MAX_YAML_ALIASES aliases
  and MAX_YAML_NODES nodes (counted while composing, so an alias bomb is refused early).
"""

from __future__ import annotations

import math
import numbers
import re

from .errors import SpecError

#: Largest rank size (and variant size parameter): a 32-bit signed index.
MAX_RANK_SIZE = 2**31 - 1
#: Largest |constant| in index arithmetic (`m + k`).
MAX_INDEX_CONSTANT = 2**31 - 1
#: Deepest nesting of an expression (parentheses, calls, operator chains).
MAX_NESTING = 64
#: Most dimensions of one tensor, and most index variables of one Einsum.
MAX_TENSOR_DIMS = 16
MAX_EINSUM_VARIABLES = 24
#: Most input tensors, outputs or sizes in one cascade, and most statements (the largest
#: bundled variant has 23; block_topk at TOPK = 64 has 87).
MAX_CASCADE_TENSORS = 256
MAX_CASCADE_STATEMENTS = 256
#: Longest cascade text, in characters.
MAX_CASCADE_CHARS = 4 * 2**20
#: Longest digit string accepted for a number (beyond it no value is meaningful).
MAX_NUMBER_CHARS = 40
#: Real numbers in specs: positive ones lie in [MIN_POSITIVE, MAX_NUMBER].
MIN_POSITIVE = 1e-12
MAX_NUMBER = 1e18
#: YAML limits (see `simulator.spec.parse_yaml`).
MAX_YAML_BYTES = 2**15  # the bundled specs are under 6 KiB; PyYAML reads ~100 KiB/s
MAX_YAML_DEPTH = 32
MAX_YAML_ALIASES = 64
MAX_YAML_NODES = 200_000
#: Longest name (a tensor, a unit, a parameter string value).
MAX_NAME_CHARS = 128

_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def real(
    value: object,
    where: str,
    *,
    minimum: float | None = None,
    maximum: float | None = MAX_NUMBER,
    exclusive_minimum: bool = False,
) -> float:
    """A finite real number within bounds; YAML 1.1 strings such as `940e6` count.

    Raises:
        SpecError: not a number, nan or inf, or out of bounds, naming `where`.

    Example:
        >>> real("940e6", "arch.yaml: clock_hz", minimum=0, exclusive_minimum=True)
        940000000.0
        >>> real(".nan", "x")
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: x: expected a finite number, got '.nan'
    """
    if isinstance(value, bool) or value is None:
        raise SpecError(f"{_prefix(where)}expected a number, got {_show(value)}")
    if isinstance(value, numbers.Integral) and not isinstance(value, int):  # numpy integers
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_NUMBER_CHARS or not _DECIMAL.fullmatch(text):
            lowered = text.lower().lstrip("+-.")
            what = "a finite number" if lowered in ("nan", "inf", "infinity") else "a number"
            raise SpecError(f"{_prefix(where)}expected {what}, got {_show(value)}")
        result = float(text)
    elif isinstance(value, int):
        if abs(value) > 10**MAX_NUMBER_CHARS:
            raise SpecError(f"{_prefix(where)}expected a number, got an integer of over 40 digits")
        result = float(value)
    elif isinstance(value, float):
        result = value
    else:
        raise SpecError(f"{_prefix(where)}expected a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise SpecError(f"{_prefix(where)}expected a finite number, got {_show(value)}")
    if minimum is not None:
        if minimum >= 0 and (result < 0 or (result == 0 and (minimum > 0 or exclusive_minimum))):
            sign = "positive number" if minimum > 0 or exclusive_minimum else "number >= 0"
            raise SpecError(f"{_prefix(where)}expected a {sign}, got {_show(value)}")
        if exclusive_minimum and not result > minimum:
            raise SpecError(f"{_prefix(where)}expected a number > {minimum:g}, got {_show(value)}")
        if not exclusive_minimum and result < minimum:
            raise SpecError(f"{_prefix(where)}expected a number >= {minimum:g}, got {_show(value)}")
    if maximum is not None and result > maximum:
        raise SpecError(f"{_prefix(where)}expected at most {maximum:g}, got {_show(value)}")
    return result


def positive(
    value: object, where: str, *, minimum: float = MIN_POSITIVE, maximum: float = MAX_NUMBER
) -> float:
    """A finite number in [minimum, maximum] (defaults: 1e-12 .. 1e18).

    Example:
        >>> positive(1e-300, "h100.yaml: gpu.sms")
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: h100.yaml: gpu.sms: expected a number >= 1e-12, got 1e-300
    """
    return real(value, where, minimum=minimum, maximum=maximum)


def nonnegative(value: object, where: str, *, maximum: float = MAX_NUMBER) -> float:
    """A finite number in [0, maximum]."""
    return real(value, where, minimum=0.0, maximum=maximum)


def integer(value: object, where: str, *, minimum: int = 1, maximum: int = MAX_RANK_SIZE) -> int:
    """An integer in [minimum, maximum]; an integral float or numeric string (`1e6`) counts.

    Raises:
        SpecError: a fraction (`256.5`), a non-number, or a value out of bounds.

    Example:
        >>> integer(256.0, "arch.yaml: units.2d.rows")
        256
        >>> integer(2**40, "M")
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: M: expected an integer <= 2147483647, got 1099511627776
    """
    if isinstance(value, bool) or value is None:
        raise SpecError(f"{_prefix(where)}expected an integer, got {_show(value)}")
    if isinstance(value, numbers.Integral) and not isinstance(value, int):  # numpy integers
        value = int(value)
    if isinstance(value, int):
        if value > maximum:
            shown = _show(value) if value < 10**MAX_NUMBER_CHARS else "a huge integer"
            raise SpecError(f"{_prefix(where)}expected an integer <= {maximum}, got {shown}")
        if value < minimum:
            shown = _show(value) if value > -(10**MAX_NUMBER_CHARS) else "a huge negative integer"
            raise SpecError(f"{_prefix(where)}expected {_at_least(minimum)}, got {shown}")
        return value
    number = real(value, where, minimum=None, maximum=None)
    if not number.is_integer():
        raise SpecError(f"{_prefix(where)}expected an integer, got {_show(value)}")
    if number > maximum:
        raise SpecError(f"{_prefix(where)}expected an integer <= {maximum}, got {_show(value)}")
    if number < minimum:
        raise SpecError(f"{_prefix(where)}expected {_at_least(minimum)}, got {_show(value)}")
    return int(number)


def _at_least(minimum: int) -> str:
    return "a positive integer" if minimum == 1 else f"an integer >= {minimum}"


def rank_size(value: object, where: str) -> int:
    """A rank size: an integer in [1, 2^31 - 1]."""
    return integer(value, where, minimum=1, maximum=MAX_RANK_SIZE)


def flag(value: object, where: str) -> bool:
    """`true` or `false` (YAML booleans only)."""
    if not isinstance(value, bool):
        raise SpecError(f"{_prefix(where)}expected true or false, got {_show(value)}")
    return value


def name(value: object, where: str) -> str:
    """A non-empty name (a string, or a YAML scalar such as `2d` read as text)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, tuple, set)):
        raise SpecError(f"{_prefix(where)}expected a name, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{_prefix(where)}expected a name, got {_show(value)}")
    if not isinstance(value, (str, int, float)):
        raise SpecError(f"{_prefix(where)}expected a name, got {type(value).__name__}")
    text = str(value)
    if not text or len(text) > MAX_NAME_CHARS:
        raise SpecError(
            f"{_prefix(where)}expected a name of 1 to {MAX_NAME_CHARS} characters, "
            f"got {_show(value)}"
        )
    return text


def names(value: object, where: str) -> tuple[str, ...]:
    """A name or a list of names."""
    if isinstance(value, str):
        return (name(value, where),)
    if not isinstance(value, list):
        raise SpecError(f"{_prefix(where)}expected a name or a list of names, got {_show(value)}")
    return tuple(name(v, f"{where}[{i}]") for i, v in enumerate(value))


def choice(value: object, where: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed`, naming them when it is not."""
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{_prefix(where)}{_show(value)} is not one of {', '.join(allowed)}")
    return value


def parameter_value(text: str, where: str) -> int | float | str:
    """A `KEY=VALUE` value from the command line: an int, a finite float, or a short string.

    Integers are plain digit strings (`256`, `-1`); `1e3` or `2.5` are floats; `1k`, `2^40`
    stay strings (and fail wherever a number is meant). nan and inf are refused.

    Example:
        >>> parameter_value("64", "--param M0"), parameter_value("0.5", "--param b")
        (64, 0.5)
    """
    text = text.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        if len(text.lstrip("+-")) > MAX_NUMBER_CHARS:
            raise SpecError(f"{_prefix(where)}expected at most {MAX_NUMBER_CHARS} digits")
        return int(text)
    if _DECIMAL.fullmatch(text):
        return real(text, where, minimum=None, maximum=None)
    if text.lower().lstrip("+-.") in ("nan", "inf", "infinity"):
        raise SpecError(f"{_prefix(where)}expected a finite number, got {text!r}")
    if len(text) > MAX_NAME_CHARS:
        raise SpecError(f"{_prefix(where)}value longer than {MAX_NAME_CHARS} characters")
    return text
