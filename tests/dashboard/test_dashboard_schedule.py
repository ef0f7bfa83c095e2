"""The Gantt schedule is the cost model's per-tile account laid out in time."""

import numpy as np
import pytest

from einsim import SpecError
from einsim.dashboard.design import DesignSpec, evaluate_design
from einsim.dashboard.schedule import MEMORY_ROW, dominant_kernel, schedule, tile_period_cycles

POINTS = [
    dict(),
    dict(mapping="fusemax_serial"),
    dict(algorithm="stable_3pass", arch="flat_cloud", mapping="flat"),
    dict(algorithm="stable_3pass", arch="flat_cloud", mapping="unfused"),
    dict(algorithm="stable_3pass", arch="flat_cloud", mapping="flat_spill"),
    dict(mapping="cascade_on_flat", arch="flat_cloud"),
]


@pytest.fixture(scope="module", params=POINTS, ids=lambda p: p.get("mapping", "fusemax"))
def result(request):
    return evaluate_design(DesignSpec(seq_len=4096, **request.param))


def test_tile_period_times_tiles_is_the_kernel(result):
    """The layout's period x T equals max(compute, memory) of the kernel in the report."""
    report = result.report
    for kernel in report.kernels:
        bars = schedule(result.cascade, result.mapping, report, kernel["kernel"], tiles=2)
        compute = bars[bars.row != MEMORY_ROW]
        first = compute[compute.start_cycles < tile_period_cycles(bars, report)]
        period = tile_period_cycles(bars, report, kernel["kernel"])
        expected = max(kernel["compute_cycles"], kernel["memory_cycles"]) / kernel["tiles"]
        np.testing.assert_allclose(period, expected, rtol=1e-12)
        if kernel["tiles"] >= 2:  # the second tile starts one period after the first
            second = bars[(bars.row != MEMORY_ROW) & (bars.start_cycles >= period)]
            np.testing.assert_allclose(second.start_cycles.min(), period, rtol=1e-12)
        # A tile's compute (its stages, each as long as its longest row) fits the period.
        assert first.end_cycles.max() <= period * (1 + 1e-12)


def test_every_busy_einsum_appears_with_its_share(result):
    report = result.report
    name = dominant_kernel(report)
    kernel = next(k for k in report.kernels if k["kernel"] == name)
    bars = schedule(result.cascade, result.mapping, report, tiles=3)
    rows = report.per_einsum[(report.per_einsum.kernel == name) & (report.per_einsum.cycles > 0)]
    shown = bars[(bars.row != MEMORY_ROW) & (bars.row != "(drain)")]
    for einsum, cycles in zip(rows.einsum, rows.cycles, strict=True):
        lengths = (shown.end_cycles - shown.start_cycles)[shown.einsum == einsum]
        assert len(lengths), einsum
        np.testing.assert_allclose(lengths, cycles / kernel["tiles"], rtol=1e-12)


def test_fusemax_stage_zero_finishes_the_previous_tile():
    """FuseMax's stage 0 runs QK of tile t beside RD, RNV and AV of tile t - 1 (the
    mapping's comment); the first tile has no previous one (the pipeline fills)."""
    r = evaluate_design(DesignSpec(seq_len=4096))
    bars = schedule(r.cascade, r.mapping, r.report, tiles=3)
    stage0 = bars[bars.stage == 0]
    period = tile_period_cycles(bars, r.report)
    slot = (stage0.start_cycles // period).astype(int)
    lag = slot - stage0.tile
    assert dict(zip(stage0.einsum, lag, strict=False)) == {
        "QK": 0,
        "LM": 0,
        "RD": 1,
        "RNV": 1,
        "AV": 1,
    }
    assert not ((slot == 0) & stage0.einsum.isin(["RD", "RNV", "AV"])).any()
    # Units overlap inside a stage: SLNV (2d) and SPNV (1d) start together.
    stage3 = bars[(bars.stage == 3) & (bars.tile == 0)].set_index("einsum")
    assert stage3.start_cycles["SLNV"] == stage3.start_cycles["SPNV"]


def test_bad_arguments():
    r = evaluate_design(DesignSpec(seq_len=1024))
    with pytest.raises(SpecError, match="no kernel"):
        schedule(r.cascade, r.mapping, r.report, kernel="nope")
    with pytest.raises(SpecError, match="tiles"):
        schedule(r.cascade, r.mapping, r.report, tiles=0)
