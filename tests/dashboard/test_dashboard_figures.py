"""Figures carry the report's numbers."""

import numpy as np
import pytest

from einsim import attention, pass_analysis
from einsim.dashboard import figures
from einsim.dashboard.design import DesignSpec, compare, evaluate_design, gpu_summary
from einsim.dashboard.schedule import schedule


@pytest.fixture(scope="module")
def pair():
    a = evaluate_design(DesignSpec(seq_len=2048))
    b = evaluate_design(
        DesignSpec(seq_len=2048, algorithm="stable_3pass", arch="flat_cloud", mapping="flat")
    )
    return a, b


def test_einsum_bars_sum_to_the_per_einsum_cycles(pair):
    a, _ = pair
    fig = figures.einsum_figure(a.report)
    bars = [t for t in fig.data if t.type == "bar"]
    total = sum(float(np.sum(t.y)) for t in bars)
    np.testing.assert_allclose(total, a.report.per_einsum.cycles.sum(), rtol=1e-12)
    names = {n for t in bars for n in t.x}
    assert names == set(a.report.per_einsum.einsum)


def test_energy_bars_are_the_components(pair):
    a, _ = pair
    (bar,) = figures.energy_figure(a.report).data
    expected = {k: v for k, v in a.report.energy_by_component_pj.items() if v}
    assert dict(zip(bar.x, bar.y, strict=True)) == pytest.approx(expected)


def test_gantt_has_a_bar_per_scheduled_item(pair):
    a, _ = pair
    bars = schedule(a.cascade, a.mapping, a.report, tiles=2)
    fig = figures.gantt_figure(bars)
    assert sum(len(t.x) for t in fig.data) == len(bars)
    assert figures.gantt_figure(bars.iloc[:0]).layout.title.text.endswith("(no work)")


def test_roofline_point_is_ops_per_byte_and_ops_per_second(pair):
    a, b = pair
    fig = figures.roofline_figure([("A", a), ("B", b)])
    point = next(t for t in fig.data if t.name == "A")
    ops = a.report.per_einsum.ops.sum()
    np.testing.assert_allclose(point.x[0], ops / a.report.dram_bytes)
    np.testing.assert_allclose(point.y[0], ops / a.report.latency_s)
    roof = next(t for t in fig.data if t.name.startswith("roof"))
    peak = sum(u.lanes for u in a.arch.units) * a.arch.clock_hz
    assert max(roof.y) == pytest.approx(peak)


def test_graph_has_every_tensor_coloured_by_unit(pair):
    a, _ = pair
    fig = figures.graph_figure(a)
    names = [n for t in fig.data for n in t.text]
    assert sorted(names) == sorted([*a.cascade.input_names, *a.cascade.order])
    by_group = {t.name: set(t.text) for t in fig.data}
    assert {"QK", "SLNV"} <= by_group["on 2d"] and {"RM", "AV"} <= by_group["on 1d"]
    assert by_group["input"] == {"Q", "K", "V"}


def test_graph_layout_puts_producers_left_of_consumers():
    cascade = attention("stable_3pass")
    pos = figures.graph_layout(cascade)
    for src, dst in cascade.graph.edges:
        assert pos[src][0] < pos[dst][0]


def test_pass_rows_and_comparison(pair):
    a, b = pair
    assert figures.pass_rows(a.cascade) == [
        {"rank": r, "passes": n} for r, n in pass_analysis(a.cascade).items()
    ]
    c = compare(a, b)
    fig = figures.comparison_figure(a, b, c)
    np.testing.assert_allclose(fig.data[0].y, [1 / c.speedup, c.energy_ratio])


@pytest.mark.parametrize(
    "fn, value, text",
    [
        (figures.format_seconds, 2.5e-3, "2.5 ms"),
        (figures.format_seconds, 3e-8, "30 ns"),
        (figures.format_energy, 3.09e13, "30.9 J"),
        (figures.format_bytes, 2.5e9, "2.5 GB"),
        (figures.format_bytes, 12, "12 B"),
    ],
)
def test_formats(fn, value, text):
    assert fn(value) == text


@pytest.fixture(scope="module")
def gpu_pair():
    a = evaluate_design(DesignSpec(seq_len=2048, arch="h100_sxm"))
    b = evaluate_design(
        DesignSpec(
            seq_len=2048,
            algorithm="stable_3pass",
            arch="h100_sxm",
            tiling="unfused:Br=64,Bc=64,stages=2,warps=4",
        )
    )
    return a, b


def test_gpu_metrics_are_the_report(gpu_pair):
    a, _ = gpu_pair
    shown = figures.metric_values(a)
    summary = gpu_summary(a)
    assert shown["latency"][1] == a.report.latency_s
    assert shown["achieved TFLOP/s"][1] == summary.achieved_flops_per_s / 1e12
    assert shown["HBM traffic"][1] == a.report.dram_bytes
    (attention,) = a.report.kernels  # the fused kernel's row: its occupancy and waves
    assert shown["occupancy"][1] == {"attention": attention["occupancy_ctas_per_sm"]}
    assert shown["waves"][1] == {"attention": attention["waves"]}
    assert {f"utilization {u}" for u in a.report.utilization} <= set(shown)
    assert shown["energy"][0] == "not modelled on a GPU" and np.isnan(shown["energy"][1])


def test_gpu_kernel_figure_and_rows(gpu_pair):
    _, b = gpu_pair
    fig = figures.gpu_kernel_figure(b)
    time = next(t for t in fig.data if t.name == "time")
    assert list(time.x) == ["qk", "softmax", "av"]
    np.testing.assert_allclose(time.y, b.report.per_einsum.cycles)
    memory = next(t for t in fig.data if t.name == "memory (HBM)")
    np.testing.assert_allclose(memory.y, [k["memory_cycles"] for k in b.report.kernels])
    rows = figures.gpu_kernel_rows(b)
    assert [r["kernel"] for r in rows] == ["qk", "softmax", "av"]
    assert rows[0]["einsums"] == "QK"


def test_gpu_roofline_uses_useful_flops_and_hbm(gpu_pair, pair):
    a, b = gpu_pair
    fig = figures.roofline_figure([("A", a), ("B", b), ("C", pair[0])])
    point = next(t for t in fig.data if t.name == "A")
    summary = gpu_summary(a)
    np.testing.assert_allclose(point.x[0], summary.useful_flops / a.report.dram_bytes)
    np.testing.assert_allclose(point.y[0], summary.achieved_flops_per_s)
    roof = next(t for t in fig.data if t.name.startswith("roof"))
    assert max(roof.y) == pytest.approx(a.arch.mma_flops_per_s("bf16"))
    assert "C" not in {t.name for t in fig.data}  # a spatial array: not on a GPU roofline
    assert "not drawn" in fig.layout.title.text


def test_gpu_graph_colours_tensors_by_kernel(gpu_pair):
    a, b = gpu_pair
    fig = figures.graph_figure(b)
    names = [n for t in fig.data for n in t.text]
    assert sorted(names) == sorted([*b.cascade.input_names, *b.cascade.order])
    by_group = {t.name: set(t.text) for t in fig.data}
    assert by_group["kernel qk"] == {"QK"} and by_group["input"] == {"Q", "K", "V"}
    fused = {t.name: set(t.text) for t in figures.graph_figure(a).data}
    assert fused["kernel attention"] == set(a.cascade.order)


def test_comparison_figure_with_a_gpu_shows_latency_only(gpu_pair, pair):
    spatial, gpu = pair[0], gpu_pair[0]
    c = compare(spatial, gpu)
    fig = figures.comparison_figure(spatial, gpu, c)
    assert list(fig.data[0].x) == ["latency"]
    np.testing.assert_allclose(fig.data[0].y, [1 / c.speedup])
    assert "energy not modelled on a GPU" in fig.layout.title.text
