"""What the dashboard accepts from a browser: every callback's inputs pass through these
readers, which check the type, bound the size and name the field in a one-line
`SpecError`, through the shared validation layer (`einsim.einsum.validation`: integers,
finite numbers, names, choices) with the dashboard's tighter bounds. A callback's JSON can
hold anything (a list where a number is expected, a megabyte of text, a 10^7 parameter),
so nothing a client sends is trusted.

The bounds keep the work of one request small (the server answers within seconds): they
are the dashboard's own, on top of the checks of the shared readers (`parse_yaml`, the
variant builders), and generous for any real design point (the FuseMax paper's longest
sequence is 2^20 tokens).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re

import yaml

from einsim.einsum import SpecError, validation

#: The longest text a field takes (parameters, overrides, tilings, names), in characters.
MAX_TEXT_CHARS = 2000
#: Sequence lengths and rank sizes the design page evaluates (2^24 tokens).
MAX_SEQ_LEN = 1 << 24
MAX_RANK_SIZE = 1 << 24
MAX_BATCH = 1 << 16
#: A variant parameter's integers (window, block and tile sizes, counts).
MAX_PARAMETER = 1 << 24
#: KEY=VALUE items in one field.
MAX_ITEMS = 32
#: Einsums in a cascade the page builds (a variant's count parameter, e.g. block_topk's
#: TOPK, adds Einsums: TOPK=10^7 would build 10^7 of them).
MAX_EINSUMS = 256
#: A mapping search's candidates, and the searches one server runs at once.
MAX_BUDGET = 1_000_000
MAX_RUNNING_SEARCHES = 2
#: Uploads: a sweep's Parquet, a validation CSV, an architecture's YAML.
MAX_UPLOAD_BYTES = 32 << 20
MAX_CSV_BYTES = 4 << 20
MAX_YAML_BYTES = 64 << 10
#: YAML aliases (`*name`) and nesting in an uploaded architecture (a few KB alias bomb
#: expands to gigabytes when walked).
MAX_YAML_ALIASES = 64
MAX_YAML_DEPTH = 32
#: A Parquet table read from a file or an upload: rows x columns and decoded bytes, from
#: its footer before any data is read (a compressed file can expand a thousandfold).
MAX_TABLE_CELLS = 50_000_000
MAX_TABLE_BYTES = 1 << 30
#: An architecture number (clock, array size, capacity, bandwidth).
MAX_ARCH_NUMBER = 1e18

_WHOLE = re.compile(r"\s*[0-9]+\s*")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def text(value: object, field: str, *, maximum: int = MAX_TEXT_CHARS, empty: bool = True) -> str:
    """A text field: a string of at most `maximum` characters (None reads as "").

    Raises:
        SpecError: a value that is not text, too long, or empty when `empty` is False.
    """
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise SpecError(f"{field}: expected a text, got {type(value).__name__}")
    if len(value) > maximum:
        raise SpecError(f"{field}: {len(value):,} characters; at most {maximum:,}")
    if not empty and not value.strip():
        raise SpecError(f"{field}: empty")
    return value


def choice(value: object, field: str, allowed) -> str:
    """One of `allowed` (a dropdown's value as the client sent it).

    Raises:
        SpecError: anything else, listing the allowed values.
    """
    return validation.choice(value, field, tuple(allowed))


def whole_number(
    value: object, field: str, *, maximum: int, minimum: int = 1, optional: bool = False
) -> int | None:
    """A whole number from a field: an integer, an integral float, or digits as text.
    Text such as "1k", "4096.5" or "1e3" is refused (never read as its leading digits).

    Raises:
        SpecError: not a whole number, below `minimum` or above `maximum` (names `field`).

    Example:
        >>> whole_number(" 4096 ", "sequence length", maximum=2**24)
        4096
        >>> whole_number("1k", "sequence length", maximum=2**24)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: sequence length: '1k' is not a whole number ...
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise SpecError(f"{field}: enter a whole number from {minimum} to {maximum:,}")
    if isinstance(value, str):
        if len(value) > 40 or not _WHOLE.fullmatch(value):
            raise SpecError(
                f"{field}: {value[:40]!r} is not a whole number (digits only, e.g. 4096)"
            )
        value = int(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SpecError(f"{field}: expected a whole number, got {type(value).__name__}")
    # The shared reader: integral, finite, within [minimum, maximum] (the dashboard's bound).
    return validation.integer(value, field, minimum=minimum, maximum=maximum)


def scalar_value(value: object, field: str) -> object:
    """A parameter or override value: a number (finite, bounded), true/false or a short
    name; never a list or a mapping (a YAML alias nest in 200 characters explodes).

    Raises:
        SpecError: anything else, naming `field`.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        validation.real(value, field, minimum=-MAX_ARCH_NUMBER, maximum=MAX_ARCH_NUMBER)
        return value
    if isinstance(value, str):
        return validation.name(value, field)
    raise SpecError(
        f"{field}: expected a number, true/false or a name, got a {type(value).__name__}"
    )


def bounded_parameters(values: dict[str, object], field: str) -> dict[str, object]:
    """Variant parameters (`M0=64, TOPK=3`): at most `MAX_ITEMS`, scalar values, integers
    within +-`MAX_PARAMETER`.

    Raises:
        SpecError: a parameter out of bounds, naming it.
    """
    if len(values) > MAX_ITEMS:
        raise SpecError(f"{field}: {len(values)} items; at most {MAX_ITEMS}")
    for key, value in values.items():
        scalar_value(value, f"{field}: {key}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_PARAMETER:
            raise SpecError(
                f"{field}: {key}={value} is above {MAX_PARAMETER:,}, the dashboard's limit"
            )
    return values


def arch_number(value: object, field: str) -> float | int:
    """An architecture number typed in the page: positive, finite, at most
    `MAX_ARCH_NUMBER` (text is read strictly: "1k" is refused).

    Raises:
        SpecError: naming `field`.
    """
    if isinstance(value, str) and (len(value) > 40 or not _DECIMAL.fullmatch(value.strip())):
        raise SpecError(f"{field}: {value[:40]!r} is not a number")
    number = validation.positive(value, field, maximum=MAX_ARCH_NUMBER)
    return int(number) if number.is_integer() else number


def upload_bytes(contents: object, filename: object, maximum: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of a dcc.Upload value (`data:<type>;base64,<payload>`), at most `maximum`.

    Raises:
        SpecError: not an upload, not base64, too large (names the file).
    """
    name = text(filename, "upload file name", maximum=300) or "upload"
    if not isinstance(contents, str):
        raise SpecError(f"{name}: expected an uploaded file, got {type(contents).__name__}")
    _, _, payload = contents.partition(",")
    if len(payload) > (maximum // 3 + 1) * 4 + 8:
        raise SpecError(f"{name}: larger than {maximum >> 20} MiB, the dashboard's limit")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise SpecError(f"{name}: not a base64 upload") from None


def check_yaml_text(source: object, origin: str) -> str:
    """YAML text small enough to read safely: at most `MAX_YAML_BYTES`, `MAX_YAML_ALIASES`
    aliases and `MAX_YAML_DEPTH` levels of nesting, counted on the event stream (linear
    in the text, nothing is built).

    Raises:
        SpecError: text over a bound, naming `origin` and the line of the offending alias.
    """
    source = text(source, origin, maximum=MAX_YAML_BYTES)
    if len(source.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise SpecError(f"{origin}: larger than {MAX_YAML_BYTES >> 10} KiB, the limit")
    aliases = depth = 0
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for event in yaml.parse(source, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise SpecError(
                        f"{origin}: line {line}: more than {MAX_YAML_ALIASES} YAML aliases"
                    )
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise SpecError(
                        f"{origin}: line {line}: nested deeper than {MAX_YAML_DEPTH} levels"
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        pass  # a syntax error: `parse_yaml` reports it with its line and column
    return source


@functools.lru_cache(maxsize=256)
def _einsum_count(name: str, params: tuple[tuple[str, object], ...]) -> int | None:
    from einsim.einsum import EinsimError
    from einsim.workloads import cascade

    try:
        return len(cascade(name, **dict(params)).einsums)
    except EinsimError:
        return None


def check_cascade_growth(name: str, params: dict[str, object]) -> None:
    """Refuse parameters that would build a cascade of more than `MAX_EINSUMS` Einsums,
    before building it: for each integer parameter above its default, the growth of the
    cascade per unit (built at the default and at the default + 1, cached) projects the
    size at the given value. Read from the cascades built, never from parameter names.

    Raises:
        SpecError: naming the parameter and the projected number of Einsums.
    """
    from einsim.workloads import ATTENTION, parameters

    if name not in ATTENTION:
        return
    defaults = parameters(name)
    base = tuple(sorted(defaults.items()))
    at_default = _einsum_count(name, base)
    if at_default is None:
        return
    projected = at_default
    growing = []
    for key, value in params.items():
        start = defaults.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if isinstance(start, bool) or not isinstance(start, int) or value <= start:
            continue
        bigger = _einsum_count(name, tuple(sorted({**defaults, key: start + 1}.items())))
        if bigger is not None and bigger > at_default:
            projected += (bigger - at_default) * (value - start)
            growing.append(f"{key}={value}")
    if projected > MAX_EINSUMS:
        raise SpecError(
            f"parameters: {', '.join(growing)} would build about {projected:,} Einsums; the "
            f"dashboard builds at most {MAX_EINSUMS}"
        )
