"""The spatial model shares what it derives from parts of a kernel's structure across the
kernels of a search (`cost._UNIT_PLANS`: an Einsum's plan by its unit and what that unit
unrolls; `_STORAGE`: off-chip and on-chip rows by Einsums and keep sets; `_LOOP_TABLES`:
re-fetch plans by loops; `_Members`' plans by cut ranks). Whatever was costed before, a batch
costs exactly what it costs with every table empty."""

import contextlib

import numpy as np
import pytest

from einsim import attention
from einsim.mapper import build_space
from einsim.simulator import evaluate_batch, load_architecture
from einsim.simulator.spatial import cost, kernel_totals

ARCH = {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}
SHAPE = dict(B=1, H=2, E=4, F=3, M=32, P=32)

#: every table the model keeps between calls, and the memoized functions
TABLES = (
    *("_SHARES", "_EINSUM_PLANS", "_UNIT_PLANS", "_LAYOUTS", "_LOOP_TABLES", "_STORAGE"),
    *("_WORK", "_ELEMENTS", "_SIZED", "_AREAS", "_LANES_IDS", "_SIZES_TOKENS"),
    "_PARAMETER_NAMES",
)
MEMOIZED = (
    *("_members", "_coarse_of", "_reads", "_read_table", "_tensor_roles", "_reuse_plan"),
    *("_fetch_need", "_op_counts_of", "_coarse_ranks", "_head_groups", "_block_groups"),
)


@contextlib.contextmanager
def _cold(monkeypatch):
    """Every table of the model empty (and given back afterwards), every memo cleared."""
    with monkeypatch.context() as patch:
        for name in TABLES:
            patch.setattr(cost, name, type(getattr(cost, name))())
        patch.setattr(cost, "_SHARES_HELD", [0])
        for name in MEMOIZED:
            getattr(cost, name).cache_clear()
        yield


def _rows(template, rng, n=24):
    return template.params(rng.integers(0, template.size, n)) if template.size > 1 else {}


def _assert_same_report(got, want):
    for name in ("cycles", "energy_pj", "dram_bytes", "valid"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for field in ("dram_bytes_by_tensor", "buffer_words", "utilization", "energy_by_component_pj"):
        mine, theirs = getattr(got, field), getattr(want, field)
        assert mine.keys() == theirs.keys(), field
        for key in theirs:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{field}.{key}")
    assert len(got.einsums) == len(want.einsums)
    for mine, theirs in zip(got.einsums, want.einsums, strict=True):
        assert mine.keys() == theirs.keys()
        for key in theirs:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    assert [got.reasons(i) for i in range(got.n)] == [want.reasons(i) for i in range(want.n)]


def _assert_same_totals(got, want):
    np.testing.assert_array_equal(got.cycles, want.cycles)
    np.testing.assert_array_equal(got.valid, want.valid)
    for field in ("unit_cycles", "energy_pj", "traffic_bytes", "factors"):
        mine, theirs = getattr(got, field), getattr(want, field)
        assert mine.keys() == theirs.keys(), field
        for key in theirs:
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=f"{field}.{key}")


@pytest.mark.parametrize("variant", ["causal", "razor_attention", "hip", "flexprefill"])
def test_templates_cost_alike_after_the_others(variant, monkeypatch):
    """Templates of one space (fused and not, skipping and not, partial groupings' kernels
    costed apart) costed one after another, sharing every table, against each one costed
    with the tables empty. The masked variants hold several filters on several rank sets."""
    rng = np.random.default_rng(7)
    arch = load_architecture("fusemax_cloud", ARCH)
    cascade = attention(variant, M0=4)
    space = build_space(cascade, arch, SHAPE)
    count = len(space.templates)
    chosen = sorted({*range(min(count, 8)), *rng.choice(count, min(count, 40), replace=False)})
    checked = parts = 0
    for t in chosen:
        template = space.templates[int(t)]
        if template.absent:
            continue
        for part in template.parts:  # one kernel of a partial grouping, costed on its own
            part_params = _rows(part, rng)
            got = kernel_totals(cascade, arch, part.mapping, SHAPE, part_params)
            with _cold(monkeypatch):
                want = kernel_totals(cascade, arch, part.mapping, SHAPE, part_params)
            for mine, theirs in zip(got, want, strict=True):
                _assert_same_totals(mine, theirs)
            parts += 1
        if template.parts:
            continue
        params = _rows(template, rng)
        got = evaluate_batch(cascade, arch, template.mapping, SHAPE, params)
        with _cold(monkeypatch):
            want = evaluate_batch(cascade, arch, template.mapping, SHAPE, params)
        _assert_same_report(got, want)
        checked += 1
    assert checked >= 8 and parts >= 2
