"""Sweep specs: a design space as a product of axes, read from YAML or a dict.

A spec has `fixed` values every point shares and `axes` whose Cartesian product gives the
points. An axis is one key with a list of values, a `zip` of keys varied together, or
`cases` (a list of settings, each setting several keys). Keys name what a point sets:

    arch                a bundled architecture or a YAML path
    arch.<yaml path>    an override of the architecture (units.2d.rows)
    model, algorithm, seq_len, batch, phase   a model-zoo workload (`einsim.workload`)
    variant, variant.<param>                  a registered cascade and its parameters
    shape.<RANK>        a rank size (on top of the workload's shape)
    mapping             a bundled mapping, a YAML path, or {search: STRATEGY, budget: N}
    mapping.<param>     a free parameter of the mapping (`parameter_names`): batched
    options.<field>     a `ModelOptions` switch
    label               a free-form tag (e.g. the configuration's name)

A point is a flat dict key -> value; its id is a hash of that dict, so a resumed sweep
recognizes the points it already has whatever the order or chunking. Point ids never
repeat: axes set disjoint keys, so two points are equal only when every axis gives them
equal values, and a value (or case, or zip row) given twice on one axis is merged into
one, with a `SweepWarning`. A spec is bounded: at most `MAX_POINTS` points (the product
of its axes, checked before a range or the product is expanded; `max_points` lifts it)
and a normalized text of at most `MAX_SPEC_BYTES` (every part file carries it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from einsim.einsum import SpecError

#: Keys a point may set directly (prefixed keys are listed in `PREFIXES`).
KEYS = ("arch", "mapping", "model", "algorithm", "seq_len", "batch", "phase", "variant", "label")
PREFIXES = ("arch.", "mapping.", "variant.", "shape.", "options.")
_ALGORITHMS = ("naive_2pass", "stable_3pass", "online_2pass", "fusemax_1pass")
_PHASES = ("prefill", "decode")
_TOP = ("name", "description", "fixed", "axes")
_RANGE = ("from", "to", "step", "times")
#: The most points a spec may expand to unless the caller lifts it (`max_points`): 10^6
#: points take tens of seconds to minutes; a few bytes of YAML aliases must not ask more.
MAX_POINTS = 1_000_000
#: The longest normalized spec (canonical JSON): the manifest and every part carry it.
MAX_SPEC_BYTES = 1 << 20


class SweepWarning(UserWarning):
    """Something a sweep merged or recovered from (duplicate points, a stale lock, a dead
    worker); one line, shown by the CLI as `einsim: warning: ...`."""


@dataclass(frozen=True, slots=True)
class Axis:
    """One axis of the product: `keys` set together, one dict of values per position."""

    name: str
    keys: tuple[str, ...]
    values: tuple[tuple[tuple[str, object], ...], ...]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def batchable(self) -> bool:
        """Whether every key is a mapping parameter, which `evaluate_batch` takes as arrays."""
        return all(_is_mapping_param(k) for k in self.keys)


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """A validated design space. `points()` enumerates it; `size` is its point count.

    Example:
        >>> spec = parse_spec({"fixed": {"arch": "fusemax_cloud", "mapping": "fusemax",
        ...     "model": "bert_base"}, "axes": {"seq_len": [1024, 4096]}})
        >>> spec.size, [p["seq_len"] for p in spec.points()]
        (2, [1024, 4096])
    """

    name: str
    description: str
    fixed: tuple[tuple[str, object], ...]
    axes: tuple[Axis, ...]

    @property
    def size(self) -> int:
        return functools.reduce(lambda n, axis: n * len(axis), self.axes, 1)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key a point may set, in spec order (fixed first)."""
        keys = dict.fromkeys(k for k, _ in self.fixed)
        for axis in self.axes:
            keys.update(dict.fromkeys(axis.keys))
        return tuple(keys)

    def values_of(self, key: str) -> list[object]:
        """Every value the spec gives `key`, anywhere."""
        out = [v for k, v in self.fixed if k == key]
        for axis in self.axes:
            out += [v for position in axis.values for k, v in position if k == key]
        return out

    def ordered_axes(self) -> tuple[Axis, ...]:
        """Axes in enumeration order: the batchable ones innermost, so that points sharing a
        template are neighbours and land in one vectorized batch."""
        return tuple(sorted(self.axes, key=lambda axis: axis.batchable))

    def points(self) -> Iterator[dict[str, object]]:
        """Every point as a dict, in enumeration order (`ordered_axes`)."""
        fixed = dict(self.fixed)
        axes = [[dict(position) for position in axis.values] for axis in self.ordered_axes()]
        for combo in itertools.product(*axes):
            point = dict(fixed)
            for part in combo:
                point.update(part)
            yield point

    def point(self, index: int) -> dict[str, object]:
        """Point `index` of `points()`, so a task can name its points by index."""
        return self.points_at([index])[0]

    def points_at(self, indices) -> list[dict[str, object]]:
        """Points by index in `points()` order (a mixed-radix decode: the last axis varies
        fastest)."""
        axes = self.ordered_axes()[::-1]
        fixed = dict(self.fixed)
        values = [[dict(v) for v in axis.values] for axis in axes]
        out = []
        for index in indices:
            if not 0 <= index < self.size:
                raise IndexError(f"point {index} of a {self.size}-point sweep")
            point = dict(fixed)
            parts = []
            for choices in values:
                index, position = divmod(index, len(choices))
                parts.append(choices[position])
            for part in reversed(parts):
                point.update(part)
            out.append(point)
        return out

    def to_dict(self) -> dict:
        """The normalized spec (ranges expanded, every axis a `zip`-like list of dicts)."""
        return {
            "name": self.name,
            "description": self.description,
            "fixed": dict(self.fixed),
            "axes": [
                {"axis": axis.name, "values": [dict(v) for v in axis.values]} for axis in self.axes
            ],
        }

    @property
    def digest(self) -> str:
        """A hash of what the points are (fixed values and axes; not the name or description)."""
        body = self.to_dict()
        body = {"fixed": body["fixed"], "axes": body["axes"]}
        return hashlib.sha256(_canonical(body).encode()).hexdigest()


#: One encoder for every canonical text (building one per call costs as much as encoding).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _canonical(value) -> str:
    """Canonical JSON: sorted keys, no spaces; what point ids and spec hashes are taken of."""
    return _ENCODER.encode(value)


def point_id(point: Mapping[str, object]) -> str:
    """A stable 16-hex-digit id of a point: a hash of its keys and values.

    Example:
        >>> point_id({"seq_len": 1024, "arch": "fusemax_cloud"})
        '23ec1fef07ec44a6'
    """
    return hashlib.blake2b(_canonical(dict(point)).encode(), digest_size=8).hexdigest()


def _is_mapping_param(key: str) -> bool:
    return key.startswith("mapping.")


def _check_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not (key in KEYS or key.startswith(PREFIXES)):
        known = ", ".join(KEYS)
        raise SpecError(
            f"{where}: unknown key {key!r}; known keys: {known}, and the prefixes "
            f"{', '.join(p + '*' for p in PREFIXES)}"
        )
    if key.startswith(PREFIXES) and key.endswith("."):
        raise SpecError(f"{where}: key {key!r} names nothing after its prefix")
    return key


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_value(key: str, value: object, where: str) -> None:
    """Refuse a value of the wrong type for its key, naming the key and what is allowed."""

    def bad(expected: str):
        return SpecError(f"{where}: {key} must be {expected}, got {value!r}"[:300])

    stack = [value]
    while stack:  # nested mapping keys are names (point ids sort them)
        node = stack.pop()
        if isinstance(node, Mapping):
            odd = [k for k in node if not isinstance(k, str)]
            if odd:
                raise SpecError(f"{where}: {key} has a key that is not a name: {odd[0]!r}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int) and not isinstance(node, bool) and node.bit_length() > 63:
            # Every value becomes a column of the results (int64): refused here, not by a
            # traceback from Arrow when the first part is written.
            raise SpecError(
                f"{where}: {key} has a {node.bit_length()}-bit integer; values must fit in "
                "64 bits (no rank, size or number einsim takes is near 2^63)"
            )
    if key in ("seq_len", "batch") or key.startswith("shape.") or _is_mapping_param(key):
        if not _positive_int(value):
            raise bad("a positive integer")
    elif key == "mapping":
        if isinstance(value, Mapping):
            _check_search(value, where)
        elif not isinstance(value, str) or not value:
            raise bad("a bundled mapping name, a YAML path or {search: STRATEGY, budget: N}")
    elif key in ("arch", "model", "variant"):
        if not isinstance(value, str) or not value:
            raise bad("a name (a string)")
    elif key == "algorithm":
        if value not in _ALGORITHMS:
            raise bad(f"one of {', '.join(_ALGORITHMS)}")
    elif key == "phase":
        if value not in _PHASES:
            raise bad(f"one of {', '.join(_PHASES)}")
    elif key.startswith("options."):
        from einsim.simulator import ModelOptions

        fields = [f.name for f in dataclasses.fields(ModelOptions)]
        if key[len("options.") :] not in fields:
            raise SpecError(f"{where}: unknown key {key!r}; ModelOptions has: {', '.join(fields)}")
        if not (isinstance(value, bool) or value is None):
            raise bad("true, false or null")
    elif key == "label" or key.startswith("variant."):
        if not isinstance(value, str | int | float | bool):
            raise bad("a scalar (a string or a number)")
    elif key.startswith("arch.") and value is None:
        raise bad("a value")


def _check_search(value: Mapping, where: str) -> None:
    """`{search: STRATEGY, budget: N}` (optionally objective, seed), with a mapper present."""
    keys = set(value)
    if not {"search", "budget"} <= keys or keys - {"search", "budget", "objective", "seed"}:
        raise SpecError(
            f"{where}: a searched mapping is {{search: STRATEGY, budget: N}} (optionally "
            f"objective, seed), got keys {', '.join(map(str, value))}"
        )
    if not isinstance(value["search"], str) or not _positive_int(value["budget"]):
        raise SpecError(f"{where}: mapping search needs a strategy name and a positive budget")
    from einsim import mapper

    if not callable(getattr(mapper, "search", None)):
        raise SpecError(
            f"{where}: mapping {{search: {value['search']}, budget: {value['budget']}}}: the "
            "mapper (einsim.mapper.search) is not available in this einsim; use a fixed "
            "mapping (a bundled name or a YAML path)"
        )
    strategies = getattr(mapper, "STRATEGIES", None)
    if strategies is not None and value["search"] not in strategies:
        raise SpecError(
            f"{where}: unknown search strategy {value['search']!r}; known: {', '.join(strategies)}"
        )


def _too_many(where: str, count: int, what: str, limit: int) -> SpecError:
    return SpecError(
        f"{where}: {count:,} {what}, more than the {limit:,} points a sweep may have "
        "(--max-points, max_points= raise the bound)"
    )


def _values(raw: object, where: str, limit: int) -> list[object]:
    """An axis's values: a non-empty list, or a range {from, to, step} / {from, to, times};
    a range longer than `limit` is refused before it is expanded."""
    if isinstance(raw, Mapping) and set(raw) & set(_RANGE):
        unknown = set(raw) - set(_RANGE)
        if unknown:
            raise SpecError(
                f"{where}: unknown range key {sorted(unknown)[0]!r}; a range has from, to and "
                "step (arithmetic) or times (geometric)"
            )
        start, stop = raw.get("from"), raw.get("to")
        if not _positive_int(start) or not _positive_int(stop):
            raise SpecError(f"{where}: a range needs positive integers from and to")
        if ("step" in raw) == ("times" in raw):
            raise SpecError(f"{where}: a range needs exactly one of step and times")
        if "step" in raw:
            if not _positive_int(raw["step"]):
                raise SpecError(f"{where}: step must be a positive integer, got {raw['step']!r}")
            count = max(0, (stop - start) // raw["step"] + 1)
            if count > limit:
                raise _too_many(f"{where}: the range", count, "values", limit)
            values = list(range(start, stop + 1, raw["step"]))
        else:
            times = raw["times"]
            if not _positive_int(times) or times < 2:
                raise SpecError(f"{where}: times must be an integer >= 2, got {times!r}")
            values, value = [], start
            while value <= stop:
                values.append(value)
                value *= times
        if not values:
            raise SpecError(f"{where}: empty axis: the range from {start} to {stop} is empty")
        return values
    if not isinstance(raw, list):
        raise SpecError(
            f"{where}: expected a list of values or a range {{from, to, step|times}}, got "
            f"{type(raw).__name__}"
        )
    if not raw:
        raise SpecError(f"{where}: empty axis (no values)")
    if len(raw) > limit:
        raise _too_many(where, len(raw), "values", limit)
    return raw


def _axis(name: str, raw: object, where: str, limit: int) -> Axis:
    if name == "zip":
        if not isinstance(raw, Mapping) or not raw:
            raise SpecError(f"{where}: a zip is a non-empty mapping key -> list of values")
        columns = {}
        for key, values in raw.items():
            _check_key(key, f"{where}")
            columns[key] = _values(values, f"{where}.{key}", limit)
            for i, value in enumerate(columns[key]):
                _check_value(key, value, f"{where}.{key}[{i}]")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            listed = ", ".join(f"{k} {len(v)}" for k, v in columns.items())
            raise SpecError(f"{where}: zipped keys need equal lengths, got {listed}")
        keys = tuple(columns)
        rows = tuple(zip(*columns.values(), strict=True))
        return Axis(
            f"zip({','.join(keys)})", keys, tuple(tuple(zip(keys, r, strict=True)) for r in rows)
        )
    if name == "cases":
        if not isinstance(raw, list) or not raw:
            raise SpecError(f"{where}: empty axis: cases must be a non-empty list of settings")
        if len(raw) > limit:
            raise _too_many(where, len(raw), "cases", limit)
        keys: dict[str, None] = {}
        values = []
        for i, case in enumerate(raw):
            if not isinstance(case, Mapping) or not case:
                raise SpecError(f"{where}[{i}]: a case is a non-empty mapping key -> value")
            for key, value in case.items():
                _check_key(key, f"{where}[{i}]")
                _check_value(key, value, f"{where}[{i}].{key}")
                keys[key] = None
            values.append(tuple(case.items()))
        return Axis("cases", tuple(keys), tuple(values))
    _check_key(name, where)
    values = _values(raw, f"{where}.{name}", limit)
    for i, value in enumerate(values):
        _check_value(name, value, f"{where}.{name}[{i}]")
    return Axis(name, (name,), tuple(((name, v),) for v in values))


def _merge_duplicates(axis: Axis, where: str) -> Axis:
    """`axis` with each position (value, case, zip row) kept once, in first-seen order;
    a `SweepWarning` names the axis, the count and the first duplicate."""
    kept: dict[str, tuple] = {}
    first = None
    for position in axis.values:
        key = _canonical(dict(position))  # what point ids are taken of
        if key in kept:
            first = first or key
            continue
        kept[key] = position
    merged = len(axis.values) - len(kept)
    if merged:
        warnings.warn(
            f"{where}.{axis.name}: {merged} duplicate value(s) merged (first: {first}); each "
            "point is evaluated once",
            SweepWarning,
            stacklevel=3,
        )
        return Axis(axis.name, axis.keys, tuple(kept.values()))
    return axis


def parse_spec(
    data: object, origin: str = "sweep spec", *, max_points: int = MAX_POINTS
) -> SweepSpec:
    """Validate a sweep spec (parsed YAML or a dict) into a `SweepSpec`.

    Duplicate values on an axis are merged with a `SweepWarning` (point ids never repeat).

    Raises:
        SpecError: one line naming the offending key: an unknown key, an empty axis, a value
            of the wrong type, zipped lists of unequal lengths, a searched mapping without a
            mapper, more than `max_points` points, a normalized spec over `MAX_SPEC_BYTES`.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{origin}: expected a mapping at the top level")
    for key in data:
        if key not in _TOP:
            raise SpecError(f"{origin}: unknown key {key!r}; known keys: {', '.join(_TOP)}")
    fixed_raw = data.get("fixed") or {}
    if not isinstance(fixed_raw, Mapping):
        raise SpecError(f"{origin}: fixed must be a mapping key -> value")
    for key, value in fixed_raw.items():
        _check_key(key, f"{origin}: fixed")
        _check_value(key, value, f"{origin}: fixed.{key}")
    axes_raw = data.get("axes") or {}
    if isinstance(axes_raw, Mapping):
        items = list(axes_raw.items())
    elif isinstance(axes_raw, list):
        items = []
        for i, entry in enumerate(axes_raw):
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise SpecError(
                    f"{origin}: axes[{i}]: each entry of an axes list is one KEY: VALUES "
                    "(or zip: {...}, or cases: [...])"
                )
            items += list(entry.items())
    else:
        raise SpecError(f"{origin}: axes must be a mapping or a list of axes")
    axes = tuple(
        _merge_duplicates(_axis(name, raw, f"{origin}: axes", max_points), f"{origin}: axes")
        for name, raw in items
    )
    size = 1
    for axis in axes:
        size *= len(axis)
    if size > max_points:
        listed = " x ".join(f"{axis.name} {len(axis)}" for axis in axes)
        raise SpecError(
            f"{origin}: axes: {size:,} points ({listed}), more than the {max_points:,} a sweep "
            "may have; split the sweep, or raise the bound (--max-points, max_points=)"
        )
    seen: dict[str, str] = {}
    for axis in axes:
        for key in axis.keys:
            if key in seen or key in fixed_raw:
                other = seen.get(key, "fixed")
                raise SpecError(f"{origin}: axes: key {key!r} is set twice ({other}, {axis.name})")
            seen[key] = axis.name
    spec = SweepSpec(
        name=str(data.get("name", "sweep")),
        description=str(data.get("description", "")),
        fixed=tuple(fixed_raw.items()),
        axes=axes,
    )
    for key in ("arch", "mapping"):
        if key not in spec.keys:
            raise SpecError(f"{origin}: no {key!r} given (in fixed or an axis)")
    if "model" not in spec.keys and "variant" not in spec.keys:
        raise SpecError(f"{origin}: no workload: give model (and seq_len) or variant")
    text_bytes = len(_canonical(spec.to_dict()).encode())
    if text_bytes > MAX_SPEC_BYTES:
        raise SpecError(
            f"{origin}: the normalized spec is {text_bytes:,} bytes, more than "
            f"{MAX_SPEC_BYTES:,} (the manifest and every part file carry it)"
        )
    _check_against_specs(spec, origin)
    return spec


def _check_against_specs(spec: SweepSpec, origin: str) -> None:
    """Unknown architecture overrides and mapping parameters are refused up front, naming
    the key: each must exist in at least one architecture (mapping) the spec names."""
    from einsim.simulator import load_mapping, parameter_names
    from einsim.simulator.spec import apply_overrides

    data = {}
    for name in dict.fromkeys(spec.values_of("arch")):
        try:
            data[name] = arch_data(name)
        except SpecError as error:  # a missing or bad architecture: this file, key arch
            raise SpecError(f"{origin}: arch: {str(error).splitlines()[0]}") from None
    for key in spec.keys:
        if not key.startswith("arch."):
            continue
        errors = []
        for raw, where in data.values():
            try:
                apply_overrides(raw, {key[len("arch.") :]: 0}, where)
            except SpecError as error:
                errors.append(str(error))
        if len(errors) == len(data):
            raise SpecError(f"{origin}: unknown key {key!r}: {errors[0]}")
    mappings = [m for m in dict.fromkeys(map(_canonical, spec.values_of("mapping")))]
    names: set[str] = set()
    for m in mappings:
        value = json.loads(m)
        if isinstance(value, str):
            try:
                names.update(parameter_names(load_mapping(value)))
            except SpecError as error:
                raise SpecError(f"{origin}: mapping: {str(error).splitlines()[0]}") from None
    for key in spec.keys:
        if _is_mapping_param(key) and names and key[len("mapping.") :] not in names:
            raise SpecError(
                f"{origin}: unknown key {key!r}: no mapping of this spec has the parameter "
                f"{key[len('mapping.') :]!r}; known: {', '.join(sorted(names))}"
            )


@functools.lru_cache(maxsize=64)
def arch_data(name: str) -> tuple[dict, str]:
    """The parsed YAML of an architecture of any target (a bundled spatial or GPU preset,
    or a path), read once."""
    from einsim.simulator.spec import load_yaml
    from einsim.simulator.targets import TARGETS

    if name in TARGETS["gpu"].presets():
        return load_yaml(name, "GPU architecture", "gpus")
    return load_yaml(name, "architecture", "architectures")


def examples() -> list[str]:
    """The bundled example specs, by name."""
    folder = resources.files("einsim.sweeps").joinpath("examples")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_spec(
    source: str | Path | Mapping | SweepSpec, *, max_points: int = MAX_POINTS
) -> SweepSpec:
    """A `SweepSpec` from a YAML path, a bundled example name, a dict, or a spec.

    Raises:
        SpecError: a missing file, invalid YAML, or an invalid spec (one line), or a spec
            of more than `max_points` points.
    """
    if isinstance(source, SweepSpec):
        if source.size > max_points:
            raise SpecError(
                f"sweep spec {source.name}: {source.size:,} points, more than the "
                f"{max_points:,} a sweep may have; split it or raise max_points"
            )
        return source
    if isinstance(source, Mapping):
        return parse_spec(source, max_points=max_points)
    path = Path(source)
    if path.is_file():
        text, origin = path.read_text(), str(path)
    elif str(source) in examples():
        origin = f"example {source}"
        text = resources.files("einsim.sweeps").joinpath("examples", f"{source}.yaml").read_text()
    else:
        raise SpecError(
            f"sweep spec {str(source)!r} does not exist (a YAML path, or an example: "
            f"{', '.join(examples())})"
        )
    from einsim.simulator.spec import parse_yaml

    data = parse_yaml(text, origin)
    if path.is_file():
        data = _relative_to(data, path.resolve().parent)
    return parse_spec(data, origin, max_points=max_points)


def _relative_to(data, folder: Path):
    """`data` with each relative YAML path given for `arch` or `mapping` resolved against
    the spec's own folder (where the user wrote it from), wherever it sits in the spec."""

    def resolve(value):
        if isinstance(value, str) and value.endswith((".yaml", ".yml")):
            candidate = folder / value
            if not Path(value).is_absolute() and candidate.is_file():
                return str(candidate)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    if isinstance(data, Mapping):
        return {
            k: resolve(v) if k in ("arch", "mapping") else _relative_to(v, folder)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_relative_to(v, folder) for v in data]
    return data
