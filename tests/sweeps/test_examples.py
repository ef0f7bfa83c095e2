"""The bundled sweep examples load, and the target example covers what it says it does."""

import pytest

from einsim.simulator.shape import cascade_names
from einsim.simulator.targets import TARGETS, load, target_of
from einsim.sweeps import load_spec
from einsim.sweeps.spec import examples
from einsim.workloads import ATTENTION, attention


@pytest.mark.parametrize("name", examples())
def test_every_bundled_example_loads(name):
    assert load_spec(name).name == name


def test_the_target_example_is_every_variant_on_both_target_kinds():
    """Issue 14's sweep: every registered variant (so it stays complete when one is added)
    x spatial and GPU presets, each variant given only the ranks its cascade has."""
    spec = load_spec("targets_all_variants")
    archs = spec.values_of("arch")
    assert {target_of(load(a)).kind for a in archs} == set(TARGETS)
    assert set(spec.values_of("variant")) == set(ATTENTION)
    points = spec.points_at(range(len(archs) * len(ATTENTION)))
    assert len(points) == len(archs) * len(ATTENTION)
    for point in points:
        ranks = {k.removeprefix("shape.") for k in point if k.startswith("shape.")}
        assert ranks <= cascade_names(attention(point["variant"])) | {"B", "H"}, point
