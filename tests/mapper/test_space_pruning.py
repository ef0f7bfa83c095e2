"""`Template.keep_rows` (every row of a batch pruned at once) against its definition applied
to one row at a time in plain Python (module docstring of `mapper.space`): a factor whose
last iteration would be empty, (g - 1) * s >= size, is dropped; and where a kernel's loop
orders are every permutation, a one-iteration loop may only sit outermost, before every
real loop, and one-iteration loops in name order."""

import itertools

import numpy as np
import pytest

from einsim.mapper import space as space_module
from einsim.mapper.constraints import Constraints
from einsim.simulator import load_architecture
from einsim.simulator.shape import DEFAULT_BATCH, cascade_names
from einsim.workloads import attention

EVERY_RANK = dict(B=1, H=1, E=64, F=64, M=1024, P=1024, G=1, A=64, R=1024, X=32, Y=32, T=4)


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def _kept(template, row: int) -> bool:
    """The definition, for one row."""
    values = dict(zip(template.names, template.indices(np.array([row]))[0], strict=True))
    values = {n: int(v[values[n]]) for n, v in zip(template.names, template.values, strict=True)}
    ones: dict[tuple[str, str], tuple[bool, bool]] = {}
    for key, grid in template.ranks:
        names = template.names
        s = values[names[grid.spatial_param]] if grid.spatial_param >= 0 else grid.spatial_fixed
        g = values[names[grid.onchip_param]] if grid.onchip_param >= 0 else 1
        if (g - 1) * s >= grid.size:
            return False
        ones[key] = (-(-grid.size // (s * g)) == 1, g == 1)
    for kernel, off_order, on_order in template.orders:
        for level, order in ((0, off_order), (1, on_order)):
            loops = [(r, ones[kernel, r][level]) for r in order if (kernel, r) in ones]
            for (_, one_a), (_, one_b) in itertools.pairwise(loops):
                if one_b and not one_a:
                    return False  # a one-iteration loop inside a real one
            for j, (b, one_b) in enumerate(loops):
                if one_b and any(a > b for a, _ in loops[:j]):
                    return False  # a one-iteration loop after one whose name sorts above
    return True


@pytest.mark.parametrize(
    "name", ["fusemax_1pass", "causal", "hip", "hyper_attention", "flexprefill"]
)
def test_keep_rows_is_the_definition_row_by_row(arch, rng, name):
    built = attention(name)
    names = cascade_names(built) | set(DEFAULT_BATCH)
    shape = {k: v for k, v in EVERY_RANK.items() if k in names}
    space = space_module._build_space(built, arch, tuple(shape.items()), Constraints())
    templates = space.templates
    starts = [s for _, s in templates.groupings()]
    starts = starts[:8] + [s + 1 for s in starts[:8]]
    picked = sorted(set(starts + list(rng.integers(0, len(templates), 12))))
    checked = pruned = 0
    for t in picked:
        template = templates[int(t)]
        if template.size == 0 or not template.names:
            continue
        rows = np.unique(rng.integers(0, template.size, size=min(template.size, 300)))
        keep = template.keep_rows(rows)
        assert keep.dtype == bool and keep.shape == rows.shape
        assert keep.tolist() == [_kept(template, int(r)) for r in rows]
        np.testing.assert_array_equal(template.keep_rows(rows.reshape(-1, 1))[:, 0], keep)
        checked += 1
        pruned += int((~keep).sum())
    assert checked >= 4 and pruned > 0
