"""Which shape ranks a cascade prices and which are outer batch multipliers: one rule.

A shape (`{"B": 1, "H": 32, "G": 8, "E": 128, ...}`) names two kinds of ranks:

* the cascade's own ranks and parameters (every rank it iterates or declares, partition
  parts, sizes its masks use such as W): priced by the cascade (op counts, tiles, traffic),
  never also multiplied as a batch;
* outer batch ranks: ranks the cascade does not know that the mapping (`Mapping.batch`,
  default `DEFAULT_BATCH` = B, H) or the workload names as independent copies of the whole
  cascade. Every cost is multiplied by their product.

So H is a batch rank of a per-head cascade (`fusemax`: Q[e,p]) and a cascade rank of a
multi-head one (`gqa`: Q[h,e,p]); the same shape prices both as H heads. A shape rank
that neither the cascade nor the mapping knows is refused (a typo, or a rank the user
thinks is priced and is not). Every entry point (evaluate, map, sweep, dashboard, the
Python API) resolves shapes through `split_shape`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass

from einsim.einsum import Cascade, SpecError, resolve_shape

#: The outer ranks a mapping names when it names none (independent sequences and heads).
DEFAULT_BATCH = ("B", "H")


@dataclass(frozen=True)
class ShapeSplit:
    """A shape split by `split_shape`.

    Attributes:
        sizes: every size the cascade needs (`resolve_shape`: defaults and partition parts
            derived), the cascade's ranks and parameters only.
        outer: the batch ranks given in the shape that the cascade does not iterate, in
            the mapping's order.
    """

    sizes: dict[str, int]
    outer: dict[str, int]

    @property
    def multiplier(self) -> int:
        """The product of the outer ranks: how many copies of the cascade run."""
        return math.prod(self.outer.values())


@functools.lru_cache(maxsize=64)
def cascade_names(cascade: Cascade) -> frozenset[str]:
    """Ranks and parameters a cascade knows: its ranks, partition parts, every size its
    Einsums use (windows, block sizes) and its builder's defaults (the tile M0). Memoized
    per cascade (`split_shape` and the op counts' cache key ask on every call)."""
    names = set(cascade.ranks) | {name for name, _ in cascade.default_sizes}
    for part in cascade.partitions:
        names |= {part.rank, part.upper, part.lower}
    for einsum in cascade.einsums:
        names |= einsum.sizes
    return frozenset(names)


def split_shape(
    cascade: Cascade, batch: Iterable[str] | object, shape: MappingABC[str, object]
) -> ShapeSplit:
    """Split `shape` into the cascade's sizes and the outer batch ranks.

    Args:
        cascade: what is computed.
        batch: the batch rank names (`Mapping.batch`), or an object with a `batch`
            attribute (a `Mapping`); None for `DEFAULT_BATCH`.
        shape: rank sizes; a batch rank missing from it counts as 1.

    Returns:
        A `ShapeSplit`: sizes priced by the cascade, outer ranks multiplying every cost.

    Raises:
        SpecError: a shape rank neither the cascade nor `batch` knows (one line naming it
            and the known ranks), or a batch rank that is not a positive integer.

    Example:
        >>> from einsim import attention
        >>> shape = dict(B=2, H=32, G=8, E=128, F=128, M=4096, P=4096)
        >>> split_shape(attention("gqa"), None, shape).outer  # the cascade iterates h
        {'B': 2}
        >>> shape.pop("G")  # a per-head cascade knows no G: it would be refused
        8
        >>> split_shape(attention("fusemax"), None, shape).outer  # one cascade per head
        {'B': 2, 'H': 32}
    """
    if batch is None:
        names: tuple[str, ...] = DEFAULT_BATCH
    elif hasattr(batch, "batch"):
        names = tuple(batch.batch)
    else:
        names = tuple(batch)
    known = cascade_names(cascade)
    unknown = [k for k in shape if k not in known and k not in names]
    if unknown:
        key = unknown[0]
        raise SpecError(
            f"shape: {key}={shape[key]} is no rank of cascade {cascade.name or '(unnamed)'} "
            f"and no batch rank ({', '.join(names) or 'none'}); known: "
            f"{', '.join(sorted(known | set(names)))}"
        )
    outer: dict[str, int] = {}
    for rank in names:
        if rank in known or rank not in shape:
            continue  # the cascade prices it (or it is absent: 1)
        value = shape[rank]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"shape: {rank} must be a positive integer, got {value!r}")
        outer[rank] = value
    sizes = dict(resolve_shape(cascade, {k: v for k, v in shape.items() if k in known}))
    return ShapeSplit(sizes, outer)
