"""Binding rank sizes to a cascade: defaults, derived partition sizes and checks."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from . import validation
from .errors import SpecError
from .ir import Cascade


def _is_symbolic(value) -> bool:
    """A sympy expression that is not an integer. sympy (about 1 s to import) is never
    imported here: a symbolic size exists only once its caller has imported sympy."""
    sympy = sys.modules.get("sympy")
    return sympy is not None and isinstance(value, sympy.Basic) and not value.is_Integer


def _check_size(name: str, value) -> object:
    if _is_symbolic(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int):  # a sympy Integer converts
        try:
            as_int = int(value)
        except (TypeError, ValueError, OverflowError):
            raise SpecError(f"shape: {name} must be a positive integer, got {value!r}") from None
        if as_int != value:
            raise SpecError(f"shape: {name} must be a positive integer, got {value!r}")
        value = as_int
    if value < 1:
        raise SpecError(f"shape: {name} must be a positive integer, got {value}")
    # One bound for every size (einsim.einsum.validation): no product of a few sizes
    # overflows int64 and no rank is longer than a 32-bit index.
    return validation.rank_size(int(value), f"shape: {name}")


def _differs(given, derived, symbolic: bool) -> bool:
    if not symbolic:
        return given != derived
    import sympy

    return sympy.simplify(given - derived) != 0


def resolve_shape(cascade: Cascade, shape: Mapping[str, object]) -> dict[str, int]:
    """Every size the cascade needs, from `shape`, its defaults and its partitions.

    Keys the cascade does not use are ignored, so one shape dict serves every variant. For a
    partition `M -> M1, M0`: given M and M0, M1 = ceil(M / M0); given M and M1,
    M0 = ceil(M / M1); given M1 and M0, M = M1 * M0. A given size that contradicts the
    derived one is an error. Symbolic sizes (sympy symbols) assume M = M1 * M0.

    Raises:
        SpecError: a missing, non-positive or contradictory size, named.

    Example:
        >>> from einsim import attention
        >>> resolve_shape(attention("fusemax", M0=256), {"M": 1024, "P": 8, "E": 4, "F": 4})["M1"]
        4
    """
    sizes: dict[str, object] = dict(cascade.default_sizes)
    # The caller's shape wins over the builder's defaults, except where it fixes a derived
    # part: a given M1 then decides M0 rather than clashing with the default tile.
    given = dict(shape)
    for part in cascade.partitions:
        if part.upper in given and part.lower not in given and part.rank in given:
            sizes.pop(part.lower, None)
    sizes.update(given)
    sizes = {k: v for k, v in sizes.items() if v is not None}
    for key in list(sizes):
        sizes[key] = _check_size(key, sizes[key])

    for part in cascade.partitions:
        whole, upper, lower = (sizes.get(n) for n in (part.rank, part.upper, part.lower))
        symbolic = any(_is_symbolic(v) for v in (whole, upper, lower) if v is not None)
        if whole is not None and lower is not None:
            derived = whole / lower if symbolic else -(-whole // lower)
            if upper is not None and _differs(upper, derived, symbolic):
                raise SpecError(
                    f"shape: {part.upper}={upper} contradicts {part.rank}/{part.lower} = "
                    f"{whole}/{lower} -> {part.upper}={derived}"
                )
            sizes[part.upper] = derived
        elif whole is not None and upper is not None:
            sizes[part.lower] = whole / upper if symbolic else -(-whole // upper)
        elif upper is not None and lower is not None:
            sizes[part.rank] = upper * lower
        else:
            raise SpecError(
                f"shape: partition {part} needs {part.rank} and one of {part.upper}, "
                f"{part.lower} (given: {', '.join(sorted(map(str, shape))) or 'nothing'})"
            )
        if not symbolic and sizes[part.lower] > sizes[part.rank]:
            # A tile larger than the rank is one partial tile: clamp so no lane is invented.
            sizes[part.lower] = sizes[part.rank]
            sizes[part.upper] = 1

    needed = set(cascade.ranks)
    for einsum in cascade.einsums:
        needed |= einsum.sizes
    missing = sorted(needed - set(sizes))
    if missing:
        raise SpecError(
            f"shape: missing size(s) {', '.join(missing)} for cascade "
            f"{cascade.name or '(unnamed)'}; it uses {', '.join(sorted(needed))}"
        )
    return {k: v for k, v in sizes.items() if k in needed}
