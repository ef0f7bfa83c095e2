"""The mapper searches whether to skip the tiles a mask empties (issue 13, part 4)."""

import numpy as np

import einsim
from einsim import attention
from einsim.mapper import build_space
from einsim.simulator import load_architecture

ARCH = {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}
SHAPE = dict(B=1, H=1, E=4, F=3, M=32, P=32)


def _skip_labels(space) -> set[str]:
    """The skip labels of the fused templates (the unfused baseline keeps the default)."""
    labels = [dict(t.structure) for t in space.templates]
    return {d.get("skip_empty_tiles") for d in labels if d["fusion"] == "fused"}


def test_a_masked_space_has_both_schedules_and_a_dense_one_has_no_choice():
    arch = load_architecture("fusemax_cloud", ARCH)
    assert _skip_labels(build_space(attention("causal", M0=4), arch, SHAPE)) == {"yes", "no"}
    assert _skip_labels(build_space(attention("fusemax", M0=4), arch, SHAPE)) == {None}


def test_the_best_masked_mapping_skips_and_beats_every_dense_schedule():
    arch = load_architecture("fusemax_cloud", ARCH)
    found = einsim.search(
        attention("sliding_window", M0=4, W=4), arch, SHAPE, strategy="greedy", budget=20_000
    )
    assert found.mapping.skip_empty_tiles
    labels = [dict(t.structure).get("skip_empty_tiles") for t in found.space.templates]
    table = found.candidates[found.candidates.valid]
    computing_all = np.array([labels[t] == "no" for t in table.template])
    assert computing_all.any()
    assert found.report.latency_s < table.latency_s[computing_all].min()
