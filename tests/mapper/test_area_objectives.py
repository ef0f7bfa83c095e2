"""Area-aware objectives: latency x area and EDAP rank designs of different size."""

import numpy as np
import pytest

from einsim import attention
from einsim.einsum import SpecError
from einsim.mapper import search
from einsim.simulator import load_architecture
from einsim.simulator.spatial.area import area_mm2

SHAPE = dict(B=1, H=1, E=64, F=64, M=1024, P=1024)


def test_latency_area_is_latency_times_the_architecture_area():
    arch = load_architecture("fusemax_cloud", {"units.2d.rows": 64, "units.2d.cols": 64})
    by_latency = search(attention("fusemax"), arch, SHAPE, budget=2000)
    by_area = search(attention("fusemax"), arch, SHAPE, objective="latency_area", budget=2000)
    # one architecture, one area: the same best mapping, its value scaled by the area
    assert by_area.report.latency_s == pytest.approx(by_latency.report.latency_s)
    np.testing.assert_allclose(by_area.best_value, by_latency.best_value * area_mm2(arch))


def test_latency_area_charges_each_design_its_own_area():
    small = load_architecture("fusemax_cloud", {"units.2d.rows": 32, "units.2d.cols": 32})
    large = load_architecture("fusemax_cloud")
    found = {
        name: search(attention("fusemax"), arch, SHAPE, objective="latency_area", budget=2000)
        for name, arch in (("small", small), ("large", large))
    }
    assert found["large"].report.latency_s < found["small"].report.latency_s
    for result in found.values():
        np.testing.assert_allclose(
            result.best_value, result.report.latency_s * result.report.area_mm2
        )


@pytest.mark.parametrize("arch", ["systolic", "h100_sxm"])
def test_area_objectives_need_an_architecture_with_areas(arch):
    with pytest.raises(SpecError, match="needs areas"):
        search(attention("fusemax"), load_architecture(arch), SHAPE, objective="edap")
