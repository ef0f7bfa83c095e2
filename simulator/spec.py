"""Reading YAML specs strictly: unknown keys are refused with the list of known keys."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import yaml

from einsim.einsum import SpecError


def load_yaml(name_or_path: str | Path, kind: str, folder: str) -> tuple[dict, str]:
    """A bundled spec by name (`fusemax_cloud`) or a YAML file by path; returns (data, origin)."""
    path = Path(name_or_path)
    bundled = resources.files("einsim.simulator").joinpath(folder, f"{name_or_path}.yaml")
    if str(name_or_path).endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise SpecError(f"{kind} file {str(path)!r} does not exist")
        origin, text = str(path), path.read_text()
    elif bundled.is_file():
        origin, text = f"{kind} {name_or_path}", bundled.read_text()
    else:
        known = sorted(
            p.name[: -len(".yaml")]
            for p in resources.files("einsim.simulator").joinpath(folder).iterdir()
            if p.name.endswith(".yaml")
        )
        raise SpecError(f"unknown {kind} {str(name_or_path)!r}; bundled: {', '.join(known)}")
    return parse_yaml(text, origin), origin


def parse_yaml(text: str, origin: str) -> dict:
    """YAML text that must hold a mapping at the top level; a syntax error is one line
    naming `origin`, the line and the column.

    Example:
        >>> parse_yaml("a: [1", "spec.yaml")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        einsim.einsum.errors.SpecError: spec.yaml: line 1, column 6: invalid YAML: expected ...
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SpecError(f"{origin}:{where} invalid YAML: {problem}") from None
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


def number(value: object, where: str, *, positive: bool = True, allow_none: bool = False):
    """A float (YAML may give `940e6` as a string) checked to be positive."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool):
        raise SpecError(f"{where}: expected a number, got {value!r}")
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SpecError(f"{where}: expected a number, got {value!r}") from None
    if positive and not result > 0:
        raise SpecError(f"{where}: expected a positive number, got {value!r}")
    if not positive and result < 0:
        raise SpecError(f"{where}: expected a number >= 0, got {value!r}")
    return result


def apply_overrides(data: dict, overrides: Mapping[str, object], origin: str) -> dict:
    """`{"units.2d.rows": 64}` sets that value; a path that does not exist is an error."""
    import copy

    data = copy.deepcopy(data)
    for path, value in overrides.items():
        node = data
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
