"""Area model: per-component areas from the published 45 nm figures, the Pareto study against
the artifact's published points, and the FuseMax/FLAT iso-area check."""

import numpy as np
import pytest

from einsim.einsum import SpecError
from einsim.simulator import load_architecture
from einsim.simulator.spatial.area import area_by_component_mm2, area_mm2, models_area
from einsim.simulator.spatial.cost import _with_arch_params
from einsim.simulator.spatial.reproduce import FUSEMAX_MODELS, iso_area, pareto

# The paper's 45 nm Accelergy areas (shared/reference/README.md), um^2.
MAC, MAX, DIVIDE, EXP_UNIT, REGISTER_FILE = 1545, 49.29, 23740.94, 8240, 16849


def test_fusemax_cloud_arrays_from_the_published_unit_areas():
    area = area_by_component_mm2(load_architecture("fusemax_cloud"))
    pes_2d, lanes_1d = 256 * 256, 256
    np.testing.assert_allclose(area["2d.ops"], pes_2d * (MAC + MAX) / 1e6)
    np.testing.assert_allclose(area["2d.register_files"], pes_2d * REGISTER_FILE / 1e6)
    np.testing.assert_allclose(area["1d.ops"], lanes_1d * (MAC + MAX + DIVIDE) / 1e6)
    np.testing.assert_allclose(area["1d.register_files"], lanes_1d * REGISTER_FILE / 1e6)
    arch = load_architecture("fusemax_cloud")
    gb = arch.level("GB")
    np.testing.assert_allclose(area["GB"], gb.capacity_bytes * gb.area_um2_per_byte / 1e6)


def test_flat_has_the_exponential_unit_and_no_max_in_its_2d_pes():
    area = area_by_component_mm2(load_architecture("flat_cloud"))
    np.testing.assert_allclose(area["2d.ops"], 256 * 256 * MAC / 1e6)
    np.testing.assert_allclose(area["1d.ops"], 256 * (MAC + MAX + DIVIDE + EXP_UNIT) / 1e6)


def test_a_spec_without_areas_models_none():
    arch = load_architecture("systolic")
    assert not models_area(arch)
    assert area_mm2(arch) == 0.0


def test_area_is_vectorized_over_architecture_numbers():
    arch = load_architecture("fusemax_cloud")
    dims = np.array([16, 64, 256])
    caps = np.array([2**14, 2**16, 2**20])
    params = {
        "arch.units.2d.rows": dims,
        "arch.units.2d.cols": dims,
        "arch.units.1d.lanes": dims,
        "arch.levels.GB.capacity_bytes": caps,
    }
    batch = area_mm2(_with_arch_params(arch, params))
    one_by_one = [
        area_mm2(
            load_architecture(
                "fusemax_cloud",
                {
                    "units.2d.rows": int(d),
                    "units.2d.cols": int(d),
                    "units.1d.lanes": int(d),
                    "levels.GB.capacity_bytes": int(c),
                },
            )
        )
        for d, c in zip(dims, caps, strict=True)
    ]
    np.testing.assert_allclose(batch, one_by_one)


def test_negative_area_is_refused():
    with pytest.raises(SpecError, match="area_um2"):
        load_architecture("fusemax_cloud", {"units.2d.ops.mac.area_um2": -5})


@pytest.fixture(scope="module")
def pareto_table():
    return pareto()


def test_pareto_matches_the_published_points(pareto_table):
    """PE_dim 256: 118.279 s and 1,220.9 mm^2; PE_dim 16: 30,266.7 s and 5.44 mm^2
    (the artifact's Fig. 12 data): within 1% in latency and 5% in area."""
    published = pareto_table.dropna(subset=["published_latency_s"])
    assert len(published) == 2
    np.testing.assert_allclose(published.latency_s, published.published_latency_s, rtol=0.01)
    np.testing.assert_allclose(published.area_mm2, published.published_area_mm2, rtol=0.05)


def test_pareto_covers_four_models_and_latency_scales_with_the_array(pareto_table):
    assert set(pareto_table.model) == set(FUSEMAX_MODELS)
    assert pareto_table.valid.all()
    for _, rows in pareto_table.groupby("model"):
        rows = rows.sort_values("pe_dim")
        halving = rows.latency_s.to_numpy()[:-1] / rows.latency_s.to_numpy()[1:]
        # compute-bound at every size: about 4x per doubling of PE_dim (1/PE_dim^2)
        assert np.all((halving > 3.8) & (halving < 4.2)), halving
        assert np.all(rows.memory_s <= rows.compute_s)
        assert np.all(np.diff(rows.area_mm2.to_numpy()) > 0)


def test_iso_area_table_shows_both_designs():
    table = iso_area()
    assert list(table.columns) == ["fusemax_cloud", "flat_cloud"]
    np.testing.assert_allclose(table.loc["total"], table.drop(index="total").sum())
    # FLAT's extra 16 MiB of buffer is the difference; the arrays are within 0.1%.
    arrays = table.drop(index=["total", "GB"]).sum()
    np.testing.assert_allclose(arrays["fusemax_cloud"], arrays["flat_cloud"], rtol=1e-3)
