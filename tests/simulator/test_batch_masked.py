"""A batch of masked mappings that skip empty tiles costs each row as that row alone: which
ranks a batch's tiles cut depends on its other rows, a row's cost must not."""

import numpy as np
import pytest

from einsim import attention
from einsim.mapper import build_space
from einsim.simulator import evaluate_batch, load_architecture

CELLS = [("flexprefill", 16384), ("sinks_window", 4096), ("block_topk", 16384)]


@pytest.mark.parametrize(("variant", "length"), CELLS)
def test_each_row_costs_what_it_costs_alone(variant, length):
    built = attention(variant)
    arch = load_architecture("fusemax_cloud")
    space = build_space(built, arch, dict(B=1, H=2, E=64, F=64, M=length, P=length))
    rng = np.random.default_rng(5)
    checked = 0
    for _, start in space.templates.groupings():
        template = space.templates[start]
        if template.absent or not template.mapping.skip_empty_tiles or template.size < 2:
            continue
        rows = rng.choice(template.size, min(template.size, 48), replace=False)
        rows = rows[template.keep_rows(rows)]
        batch = evaluate_batch(built, arch, template.mapping, space.shape, template.params(rows))
        for i, row in enumerate(rows):
            alone = evaluate_batch(
                built, arch, template.mapping, space.shape, template.params(np.array([row]))
            )
            assert alone.cycles[0] == batch.cycles[i], (start, int(row))
            assert alone.energy_pj[0] == batch.energy_pj[i], (start, int(row))
        checked += 1
        if checked == 6:
            break
    assert checked >= 2
