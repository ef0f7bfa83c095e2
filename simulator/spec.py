"""Reading YAML specs strictly: unknown keys are refused with the list of known keys."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from einsim.einsum import SpecError, validation

try:  # libyaml's event parser (C): ~7x faster than PyYAML's scanner and parser
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _LimitedLoader(Composer, _Parser, SafeConstructor, Resolver):
    """A safe loader that refuses, while composing (before anything is expanded), a
    document nested deeper than MAX_YAML_DEPTH, with more than MAX_YAML_ALIASES aliases, or
    whose nodes, each alias counted as the whole node it names, exceed MAX_YAML_NODES: an
    alias bomb fails after reading its few kilobytes, not after expanding them.

    Events come from libyaml's parser when PyYAML has it (a 2.7 KB architecture loads in
    ~1.7 ms instead of ~12 ms); composing (where the limits are counted) and constructing
    stay PyYAML's Python classes, so the safe tags and the limits are the same either way."""

    def __init__(self, stream: str, origin: str):
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.origin = origin
        self.depth = 0
        self.aliases = 0
        self.expanded: dict[int, int] = {}  # id(node) -> nodes it stands for, expanded

    def _refuse(self, what: str) -> None:
        mark = self.peek_event().start_mark if self.check_event() else None
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise SpecError(f"{self.origin}:{where} {what}")

    def construct_object(self, node, deep=False):
        """A constructor failing on a bad scalar (`!!float ""`) is refused at its node."""
        try:
            return super().construct_object(node, deep)
        except SpecError:
            raise
        except (ValueError, OverflowError, TypeError, IndexError, KeyError, AttributeError) as e:
            mark = node.start_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SpecError(f"{self.origin}: {where}: invalid YAML value: {message}") from None

    def compose_node(self, parent, index):
        alias = self.check_event(yaml.AliasEvent)
        if alias:
            self.aliases += 1
            if self.aliases > validation.MAX_YAML_ALIASES:
                self._refuse(f"more than {validation.MAX_YAML_ALIASES} YAML aliases (*name)")
        self.depth += 1
        if self.depth > validation.MAX_YAML_DEPTH:
            self._refuse(f"YAML nested deeper than {validation.MAX_YAML_DEPTH} levels")
        node = super().compose_node(parent, index)
        self.depth -= 1
        if alias:
            if id(node) not in self.expanded:  # `&a [*a]`: a node that contains itself
                self._refuse("a YAML alias refers to a node that contains it (recursive)")
            size = self.expanded[id(node)]
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self.expanded.get(id(child), 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(
                self.expanded.get(id(key), 1) + self.expanded.get(id(value), 1)
                for key, value in node.value
            )
        else:
            size = 1
        if size > validation.MAX_YAML_NODES:
            self._refuse(
                f"the YAML expands to more than {validation.MAX_YAML_NODES} values "
                "(through aliases)"
            )
        self.expanded[id(node)] = size
        return node


def load_yaml(name_or_path: str | Path, kind: str, folder: str) -> tuple[dict, str]:
    """A bundled spec by name (`fusemax_cloud`) or a YAML file by path; returns (data, origin).

    A bare name (no `/`, no `.yaml`) that names a bundled spec is that spec, even where the
    working directory holds a file of that name; anything else is read as a path."""
    path = Path(name_or_path)
    bundled = resources.files("einsim.simulator").joinpath(folder, f"{name_or_path}.yaml")
    given = str(name_or_path)
    shown = repr(given[:200])
    try:
        exists = path.exists()
    except OSError as error:  # a name too long for a path, say
        raise SpecError(f"unknown {kind} {shown}: {error.strerror or error}") from None
    named = not given.endswith((".yaml", ".yml")) and "/" not in given and "\\" not in given
    if named and bundled.is_file():  # a preset's name is the preset, whatever the CWD holds
        origin, text = f"{kind} {name_or_path}", bundled.read_text()
    elif not named or exists:
        if not path.is_file():
            raise SpecError(f"{kind} file {shown} does not exist")
        origin, text = str(path), path.read_text()
    else:
        known = sorted(
            p.name[: -len(".yaml")]
            for p in resources.files("einsim.simulator").joinpath(folder).iterdir()
            if p.name.endswith(".yaml")
        )
        raise SpecError(f"unknown {kind} {shown}; bundled: {', '.join(known)}")
    return parse_yaml(text, origin), origin


def parse_yaml(text: str, origin: str) -> dict:
    """YAML text that must hold a mapping at the top level; a syntax error is one line
    naming `origin`, the line and the column.

    Example:
        >>> parse_yaml("a: [1", "spec.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: spec.yaml: line 2, column 1: invalid YAML: did not find ...
    """
    if not isinstance(text, str):
        raise SpecError(f"{origin}: expected YAML text, got {type(text).__name__}")
    if len(text) > validation.MAX_YAML_BYTES:
        raise SpecError(
            f"{origin}: the YAML has {len(text)} characters; at most {validation.MAX_YAML_BYTES}"
        )
    loader = None
    try:
        loader = _LimitedLoader(text, origin)  # the reader refuses control characters here
        data = loader.get_single_data()
    except SpecError:
        raise
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        if isinstance(error, yaml.reader.ReaderError):  # a control character: its position
            before = text[: error.position]
            line, column = before.count("\n") + 1, error.position - before.rfind("\n")
            where = f" line {line}, column {column}:"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"{origin}:{where} invalid YAML: {problem}") from None
    except (ValueError, OverflowError, TypeError, IndexError, KeyError, AttributeError) as error:
        # a constructor on a bad scalar (`!!float ""`, `!!int x`)
        raise SpecError(f"{origin}: invalid YAML value: {str(error).splitlines()[0]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping at the top level")
    return data


def check_keys(
    data: object, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping:
    """Refuse a non-mapping, unknown keys (listing the known ones) and missing required keys."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = (*required, *optional)
    for key in data:
        if key not in known:
            raise SpecError(f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
    for key in required:
        if key not in data:
            raise SpecError(f"{where}: missing required key {key!r}")
    return data


def number(
    value: object,
    where: str,
    *,
    positive: bool = True,
    allow_none: bool = False,
    minimum: float | None = None,
    maximum: float = validation.MAX_NUMBER,
):
    """A finite float (YAML may give `940e6` as a string): positive (at least `minimum`,
    default `validation.MIN_POSITIVE`) or, with `positive=False`, >= 0; at most `maximum`.
    nan, inf and non-numbers are refused (`einsim.einsum.validation.real`)."""
    if value is None and allow_none:
        return None
    if minimum is None:
        minimum = validation.MIN_POSITIVE if positive else 0.0
    return validation.real(value, where, minimum=minimum, maximum=maximum)


def integer(value: object, where: str, *, minimum: int = 1, maximum: int = 2**50) -> int:
    """An integer in [minimum, maximum] (`256.0` and `1e6` count, `256.5` does not)."""
    return validation.integer(value, where, minimum=minimum, maximum=maximum)


def apply_overrides(data: dict, overrides: Mapping[str, object], origin: str) -> dict:
    """`{"units.2d.rows": 64}` sets that value; a path that does not exist is an error."""
    import copy

    data = copy.deepcopy(data)
    for path, value in overrides.items():
        node = data
        if not isinstance(path, str) or not path:
            raise SpecError(f"--set {path!r}: expected a dotted key such as units.2d.rows")
        keys = path.split(".")
        for depth, key in enumerate(keys):
            if isinstance(node, list):
                names = [item.get("name") for item in node if isinstance(item, dict)]
                if key not in names:
                    raise SpecError(
                        f"--set {path}: {'.'.join(keys[:depth]) or origin} has no entry "
                        f"{key!r}; entries: {', '.join(map(str, names))}"
                    )
                index = names.index(key)
                if depth == len(keys) - 1:
                    node[index] = value
                else:
                    node = node[index]
                continue
            if not isinstance(node, dict) or key not in node:
                known = ", ".join(node) if isinstance(node, dict) else "none"
                raise SpecError(
                    f"--set {path}: no key {key!r} at {'.'.join(keys[:depth]) or 'the top'} "
                    f"of {origin}; keys there: {known}"
                )
            if depth == len(keys) - 1:
                node[key] = value
            else:
                node = node[key]
    return data
