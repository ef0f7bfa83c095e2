"""A map space whose grids would overflow the int64 candidate numbering is thinned, not
crashed (a 3D token grid's long ranks on two levels: Wan2.1 with VMoBA, 21 x 20 x 32)."""

import dataclasses
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from einsim.mapper import build_space, search
from einsim.mapper import space as space_module
from einsim.simulator import load_architecture
from einsim.workloads import cascade

GEMM = dict(M=64, N=48, K=32)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 12))
def test_thinning_keeps_the_ends_and_a_subset_within_the_limit(lengths, log_limit):
    values = [np.arange(1, n + 1) * 3 for n in lengths]
    limit = 2**log_limit
    old = space_module.GRID_POINTS_LIMIT
    space_module.GRID_POINTS_LIMIT = limit
    try:
        thinned = space_module._thinned(values)
    finally:
        space_module.GRID_POINTS_LIMIT = old
    total = math.prod(len(v) for v in thinned)
    # each list keeps at least its two ends, so a limit below 2^lists cannot always be met
    assert total <= max(limit, math.prod(min(len(v), 2) for v in values))
    for before, after in zip(values, thinned, strict=True):
        assert set(after) <= set(before)
        assert after[0] == before[0] and after[-1] == before[-1]
    if math.prod(lengths) <= limit:
        assert all(np.array_equal(a, b) for a, b in zip(values, thinned, strict=True))


def test_a_space_over_the_limit_is_thinned_and_still_searched(monkeypatch):
    arch = load_architecture("systolic", {"units.2d.rows": 4, "units.2d.cols": 4})
    gemm = cascade("gemm")
    full = build_space(gemm, arch, GEMM)
    biggest = max(t.size for t in full.templates)
    monkeypatch.setattr(space_module, "GRID_POINTS_LIMIT", 64)
    small = build_space(gemm, arch, dict(GEMM, K=33))  # a new problem: not the cached space
    assert biggest > 64
    # at most the limit, or only each value list's two ends
    assert all(t.size <= max(64, 2 ** len(t.names)) for t in small.templates)
    assert max(t.size for t in small.templates) < biggest
    result = search(gemm, arch, dict(GEMM, K=33), "latency", "exhaustive", budget=10**6)
    assert result.report.valid


def test_the_size_of_a_space_past_int64_is_exact():
    """A space's candidate count adds its templates' sizes in Python integers: three grids
    of 2^62 points each (62 parameters of two values) hold 3 * 2^62, past int64's range."""
    arch = load_architecture("systolic", {"units.2d.rows": 4, "units.2d.cols": 4})
    small = build_space(cascade("gemm"), arch, GEMM)
    names = tuple(f"p{i}" for i in range(62))
    wide = dataclasses.replace(
        small.templates[0], names=names, values=tuple(np.array([1, 2]) for _ in names)
    )
    assert wide.size == 2**62 == space_module.GRID_POINTS_LIMIT
    space = dataclasses.replace(
        small, templates=space_module.Templates([space_module._listed("fused", [wide] * 3)])
    )
    assert space.size == 3 * 2**62
