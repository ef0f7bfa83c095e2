"""Figures and tables of one design point, from a `DesignResult` (pure functions).

Every function takes values (a result, a report, a cascade) and returns a plotly figure or
plain rows; the app's callbacks only place them on the page.
"""

from __future__ import annotations

import math

import networkx as nx
import plotly.express as px
import plotly.graph_objects as go

from einsim.einsum import Cascade, Op, op_counts, pass_analysis
from einsim.simulator import Architecture, GpuArchitecture, Report
from einsim.simulator.targets import target_of

from .design import Comparison, DesignResult, gpu_summary
from .schedule import DRAIN_ROW, MEMORY_ROW

#: Colours of compute units and of the other rows (stable across figures).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
#: Colours of Einsums in the schedule (plotly's Dark24: enough for a 14-Einsum kernel).
EINSUM_PALETTE = px.colors.qualitative.Dark24
FIXED_COLOURS = {
    "input": "#bbbbbb",
    "(none)": "#dddddd",
    MEMORY_ROW: "#7f7f7f",
    DRAIN_ROW: "#17becf",
}


def unit_colours(units) -> dict[str, str]:
    """A colour per unit name, in the order given, plus the fixed rows."""
    return {u: PALETTE[i % len(PALETTE)] for i, u in enumerate(units)} | FIXED_COLOURS


def _layout(fig: go.Figure, title: str, **extra) -> go.Figure:
    fig.update_layout(
        title=title, margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white", **extra
    )
    return fig


def metrics(report: Report) -> dict[str, str]:
    """The headline numbers as display strings (latency, energy, DRAM traffic, utilization).

    Example:
        >>> from einsim.dashboard.design import DesignSpec, evaluate_design
        >>> metrics(evaluate_design(DesignSpec(seq_len=1024)).report)["latency"]
        '2.01 ms'
    """
    out = {
        "latency": format_seconds(report.latency_s),
        "energy": format_energy(report.energy_pj),
        "DRAM traffic": format_bytes(report.dram_bytes),
        "cycles": f"{report.cycles:,.0f}",
    }
    out |= {f"utilization {u}": f"{v:.1%}" for u, v in report.utilization.items()}
    return out


def metric_values(result: DesignResult) -> dict[str, tuple[str, object]]:
    """The result panel's headline numbers: name -> (display text, exact value). On a
    spatial array `metrics`; on a GPU latency, achieved TFLOP/s, bound, HBM traffic,
    cycles, occupancy, waves and utilization, with energy not available.

    Example:
        >>> from einsim.dashboard.design import DesignSpec, evaluate_design
        >>> result = evaluate_design(DesignSpec(seq_len=1024, arch="h100_sxm"))
        >>> shown = metric_values(result)
        >>> shown["latency"][1] == result.report.latency_s, shown["energy"]
        (True, ('not modelled on a GPU', nan))
    """
    report = result.report
    if not result.is_gpu:
        exact = {
            "latency": report.latency_s,
            "energy": report.energy_pj,
            "DRAM traffic": report.dram_bytes,
            "cycles": report.cycles,
        } | {f"utilization {u}": v for u, v in report.utilization.items()}
        return {key: (text, exact[key]) for key, text in metrics(report).items()}
    summary = gpu_summary(result)
    tiled = [k for k in summary.kernels if k.occupancy > 0]
    if len(summary.kernels) == 1:
        occupancy = f"{tiled[0].occupancy} CTAs per SM" if tiled else "0 (does not fit)"
        waves = f"{summary.kernels[0].waves:,}"
    else:
        occupancy = ", ".join(f"{k.kernel} {k.occupancy}" for k in tiled) + " CTAs per SM"
        waves = ", ".join(f"{k.kernel} {k.waves:,}" for k in tiled)
    out = {
        "latency": (format_seconds(summary.latency_s), summary.latency_s),
        "achieved TFLOP/s": (
            f"{summary.achieved_flops_per_s / 1e12:.4g}",
            summary.achieved_flops_per_s / 1e12,
        ),
        "bound": (summary.bound, summary.bound),
        "HBM traffic": (format_bytes(summary.hbm_bytes), summary.hbm_bytes),
        "cycles": (f"{summary.cycles:,.0f}", summary.cycles),
        "occupancy": (occupancy, {k.kernel: k.occupancy for k in summary.kernels}),
        "waves": (waves, {k.kernel: k.waves for k in summary.kernels}),
    }
    out |= {f"utilization {u}": (f"{v:.1%}", v) for u, v in report.utilization.items()}
    out["energy"] = ("not modelled on a GPU", math.nan)
    return out


def gpu_kernel_rows(result: DesignResult) -> list[dict[str, str]]:
    """The per-kernel table of a GPU design point: time, compute and memory cycles, bound,
    occupancy and waves of each kernel (`gpu_summary`).

    Example:
        >>> from einsim.dashboard.design import DesignSpec, evaluate_design
        >>> spec = DesignSpec(seq_len=1024, arch="h100_sxm", tiling="unfused:Br=64,Bc=64")
        >>> rows = gpu_kernel_rows(evaluate_design(spec))  # softmax reads S three times
        >>> [r["kernel"] for r in rows], rows[1]["bound"]
        (['qk', 'softmax', 'av'], 'memory')
    """
    return [
        {
            "kernel": k.kernel,
            "einsums": k.einsums or "-",
            "unit": k.unit,
            "time": format_seconds(k.latency_s),
            "cycles": f"{k.cycles:,.0f}",
            "compute cycles": f"{k.compute_cycles:,.0f}",
            "memory cycles": f"{k.memory_cycles:,.0f}",
            "bound": k.bound,
            "CTAs per SM": f"{k.occupancy}" if k.occupancy else "-",
            "waves": f"{k.waves:,}" if k.waves else "-",
        }
        for k in gpu_summary(result).kernels
    ]


def gpu_kernel_figure(result: DesignResult) -> go.Figure:
    """Per GPU kernel: its time in cycles beside its compute and its HBM (memory) time; the
    larger of the two is what bounds it."""
    kernels = gpu_summary(result).kernels
    names = [k.kernel for k in kernels]
    fig = go.Figure()
    for label, values, colour in (
        ("time", [k.cycles for k in kernels], "#1f77b4"),
        ("compute", [k.compute_cycles for k in kernels], "#2ca02c"),
        ("memory (HBM)", [k.memory_cycles for k in kernels], "#7f7f7f"),
    ):
        fig.add_bar(
            x=names,
            y=values,
            name=label,
            marker_color=colour,
            hovertemplate=f"%{{x}}: {label} %{{y:,.0f}} cycles<extra></extra>",
        )
    return _layout(
        fig,
        f"Per-kernel time on {result.arch.name} (cycles at {result.arch.clock_hz / 1e9:.3g} GHz)",
        barmode="group",
        yaxis={"title": "cycles", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2},
    )


def einsum_rows(report: Report) -> list[dict[str, str]]:
    """The per-Einsum table for display: integers with separators, energy in pJ, shares.

    Example:
        >>> from einsim.dashboard.design import DesignSpec, evaluate_design
        >>> einsum_rows(evaluate_design(DesignSpec(seq_len=1024)).report)[2]["cycles"]
        '786,432'
    """
    return [
        {
            "kernel": row.kernel,
            "einsum": row.einsum,
            "unit": row.unit or "-",
            "ops": f"{row.ops:,.0f}",
            "cycles": f"{row.cycles:,.0f}",
            "energy (pJ)": f"{row.energy_pj:.4g}",
            "share of time": f"{row.busy_fraction:.1%}",
        }
        for row in report.per_einsum.itertuples()
    ]


def format_seconds(seconds: float) -> str:
    """3.2e-3 -> '3.2 ms'."""
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_energy(pj: float) -> str:
    """3.09e13 pJ -> '30.9 J'."""
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def format_bytes(count: float) -> str:
    """2.5e9 -> '2.5 GB' (decimal units)."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if abs(count) >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


def einsum_figure(report: Report, colours: dict[str, str] | None = None) -> go.Figure:
    """Cycles per Einsum (bars coloured by the unit it runs on), energy on a second axis."""
    table = report.per_einsum
    colours = colours or unit_colours(sorted(u for u in table.unit.unique() if u))
    fig = go.Figure()
    for unit, rows in table.groupby(table.unit.replace("", "(none)"), sort=False):
        fig.add_bar(
            x=rows.einsum,
            y=rows.cycles,
            name=f"cycles on {unit}",
            marker_color=colours.get(unit, "#999999"),
            customdata=rows[["kernel", "energy_pj", "busy_fraction"]].to_numpy(),
            hovertemplate="%{x} (kernel %{customdata[0]}): %{y:,.0f} cycles, "
            "%{customdata[2]:.1%} of the time, %{customdata[1]:.3g} pJ<extra></extra>",
        )
    fig.add_scatter(
        x=table.einsum,
        y=table.energy_pj,
        name="energy (pJ)",
        mode="markers",
        marker={"symbol": "diamond", "color": "black"},
        yaxis="y2",
    )
    return _layout(
        fig,
        "Per-Einsum breakdown",
        xaxis={"categoryorder": "array", "categoryarray": list(table.einsum)},
        yaxis={"title": "cycles", "rangemode": "tozero"},
        yaxis2={
            "title": "energy (pJ)",
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "rangemode": "tozero",
        },
        legend={"orientation": "h", "y": -0.2},
    )


def energy_figure(report: Report) -> go.Figure:
    """Energy by component (compute, each storage level, leakage) as a bar chart in pJ."""
    items = [(k, v) for k, v in report.energy_by_component_pj.items() if v]
    total = sum(v for _, v in items) or 1.0
    fig = go.Figure(
        go.Bar(
            x=[k for k, _ in items],
            y=[v for _, v in items],
            text=[f"{v / total:.1%}" for _, v in items],
            textposition="auto",
            marker_color=PALETTE[: len(items)] if items else None,
            hovertemplate="%{x}: %{y:.4g} pJ<extra></extra>",
        )
    )
    return _layout(
        fig, f"Energy by component (total {format_energy(total)})", yaxis={"title": "pJ"}
    )


def gantt_figure(bars, colours: dict[str, str] | None = None) -> go.Figure:
    """A Gantt chart of `schedule.schedule`'s bars: rows are units, bars are Einsums."""
    fig = go.Figure()
    if len(bars) == 0:
        return _layout(fig, "Pipeline schedule (no work)")
    names = list(dict.fromkeys(e for e in bars.einsum if e != MEMORY_ROW))
    einsum_colours = {e: EINSUM_PALETTE[i % len(EINSUM_PALETTE)] for i, e in enumerate(names)}
    einsum_colours[MEMORY_ROW] = FIXED_COLOURS[MEMORY_ROW]
    rows = list(dict.fromkeys(bars.row))
    for einsum, group in bars.groupby("einsum", sort=False):
        fig.add_bar(
            y=group.row,
            x=group.end_cycles - group.start_cycles,
            base=group.start_cycles,
            orientation="h",
            name=einsum,
            text=[f"{einsum} t{t}" for t in group.tile],
            textposition="inside",
            insidetextanchor="middle",
            marker_color=einsum_colours[einsum],
            customdata=group[["stage", "tile"]].to_numpy(),
            hovertemplate=f"{einsum}" + " tile %{customdata[1]}, stage %{customdata[0]}: "
            "%{base:,.1f} to %{x:,.1f} cycles long<extra></extra>",
        )
    kernel = bars.kernel.iloc[0]
    return _layout(
        fig,
        f"Pipelined schedule of kernel {kernel}, first tiles (cycles)",
        barmode="overlay",
        xaxis={"title": "cycles"},
        yaxis={"categoryorder": "array", "categoryarray": rows[::-1]},
        legend={"orientation": "h", "y": -0.25},
    )


def roofline_figure(
    points: list[tuple[str, DesignResult]], arch: Architecture | GpuArchitecture | None = None
) -> go.Figure:
    """A roofline (ops/s vs ops per DRAM byte, log-log) with each design point on it.

    Roofs: each unit's peak (lanes x clock, one op per PE-cycle), all units together, and
    DRAM bandwidth x intensity; the first point's architecture draws them. On a GPU: the
    tensor-core peak and HBM bandwidth, points at useful FLOPs (`gpu_summary`). Points on
    the other kind of target (a GPU beside a spatial array) are left out, as the title says.
    """
    fig = go.Figure()
    if not points:
        return _layout(fig, "Roofline")
    arch = arch or points[0][1].arch
    gpu = target_of(arch).kind == "gpu"
    drawn = [(n, r) for n, r in points if r.is_gpu == gpu]
    left_out = [n for n, r in points if r.is_gpu != gpu]
    if gpu:
        dtype = drawn[0][1].problem.dtype if drawn and drawn[0][1].problem else "bf16"
        bandwidth = arch.hbm_bytes_per_s
        peaks = {f"tensor cores ({dtype})": arch.mma_flops_per_s(dtype)}
        total_peak = sum(peaks.values())
        roof_name = f"roof: tensor cores, HBM {bandwidth / 1e9:.4g} GB/s"
        work = "FLOPs"
    else:
        clock = arch.clock_hz
        bandwidth = arch.levels[0].bandwidth_bytes_per_cycle * clock
        peaks = {u.name: u.lanes * clock for u in arch.units}
        total_peak = sum(peaks.values())
        roof_name = f"roof: all units, DRAM {bandwidth / 1e9:.4g} GB/s"
        work = "ops"
    intensities = []
    for name, result in drawn:
        if gpu:
            summary = gpu_summary(result)
            ops, moved = summary.useful_flops, summary.hbm_bytes or math.nan
        else:
            ops = float(result.report.per_einsum.ops.sum())
            moved = result.report.dram_bytes or math.nan
        x, y = ops / moved, ops / result.report.latency_s
        intensities.append(x)
        fig.add_scatter(
            x=[x],
            y=[y],
            mode="markers+text",
            text=[name],
            textposition="top center",
            marker={"size": 14},
            name=name,
            hovertemplate=f"{name}: %{{x:.3g}} {work}/B, %{{y:.3g}} {work}/s<extra></extra>",
        )
    finite = [i for i in intensities if math.isfinite(i) and i > 0] or [1.0]
    ridge = total_peak / bandwidth
    lo, hi = min([*finite, ridge]) / 10, max([*finite, ridge]) * 10
    xs = [lo * (hi / lo) ** (k / 50) for k in range(51)]
    fig.add_scatter(
        x=xs,
        y=[min(total_peak, bandwidth * x) for x in xs],
        mode="lines",
        name=roof_name,
        line={"color": "black"},
    )
    for peak_name, peak in peaks.items():
        fig.add_scatter(
            x=[lo, hi], y=[peak, peak], mode="lines", line={"dash": "dot"}, name=f"peak {peak_name}"
        )
    title = f"Roofline of {arch.name}" if gpu else "Roofline"
    if left_out:
        other = "a spatial array" if gpu else "a GPU"
        title += f" ({', '.join(left_out)} on {other}: not drawn)"
    return _layout(
        fig,
        title,
        xaxis={"type": "log", "title": f"operational intensity ({work} / DRAM byte)"},
        yaxis={"type": "log", "title": f"performance ({work} / s)"},
    )


def pass_rows(cascade: Cascade) -> list[dict[str, object]]:
    """The pass analysis as rows {rank, passes} (FuseMax's lower bound per rank).

    Example:
        >>> from einsim import attention
        >>> pass_rows(attention("fusemax"))[1:3]
        [{'rank': 'M1', 'passes': 1}, {'rank': 'M0', 'passes': 2}]
    """
    return [{"rank": r, "passes": n} for r, n in pass_analysis(cascade).items()]


def graph_layout(cascade: Cascade) -> dict[str, tuple[float, float]]:
    """Positions of the cascade's tensors: layer = longest chain of forward reads from an
    input (loop-carried reads, which point back in the order, are ignored)."""
    order = [*cascade.input_names, *cascade.order]
    index = {name: i for i, name in enumerate(order)}
    layer = dict.fromkeys(cascade.input_names, 0)
    for name in cascade.order:
        forward = [
            p for p in cascade.graph.predecessors(name) if p in layer and index[p] < index[name]
        ]
        layer[name] = 1 + max((layer[p] for p in forward), default=-1)
    by_layer: dict[int, list[str]] = {}
    for name in order:
        by_layer.setdefault(layer[name], []).append(name)
    positions = {}
    for depth, names in by_layer.items():
        for k, name in enumerate(names):
            positions[name] = (float(depth), (len(names) - 1) / 2 - k)
    return positions


def graph_figure(result: DesignResult) -> go.Figure:
    """The cascade's dependency graph: nodes coloured by bound unit, sized by time share."""
    cascade, report = result.cascade, result.report
    if result.is_gpu:
        return _gpu_graph_figure(result)
    table = report.per_einsum.drop_duplicates("einsum").set_index("einsum")
    units = [u.name for u in result.arch.units]
    colours = unit_colours(units)
    total = float(table.cycles.sum()) or 1.0
    pos = graph_layout(cascade)
    fig = _edges_figure(cascade, pos)
    counts = op_counts(cascade, {r: v for r, v in result.shape.items() if r in cascade.ranks})
    groups: dict[str, list[str]] = {}
    for name in pos:
        key = "input" if name in cascade.input_names else str(table.unit.get(name, "")) or "(none)"
        groups.setdefault(key, []).append(name)
    for key, names in groups.items():
        share = [float(table.cycles.get(n, 0.0)) / total for n in names]
        hover = []
        for n, s in zip(names, share, strict=True):
            if n in cascade.input_names:
                hover.append(f"{n}: input")
                continue
            ops = ", ".join(f"{_op_name(op)} {c:,}" for op, c in counts[n].items()) or "no ops"
            hover.append(f"{n} on {key}: {s:.1%} of the cycles; {ops}")
        size = [16 + 60 * math.sqrt(s) for s in share]
        _add_nodes(fig, pos, names, key, f"on {key}", size, colours, hover)
    return _graph_layout(
        fig,
        f"Cascade {cascade.name or ''}: dependency graph (size = share of cycles; red = "
        "loop-carried)",
    )


def _add_nodes(fig, pos, names, key, label, size, colours, hover) -> None:
    """One legend group of graph nodes (inputs and unmapped Einsums keep their key as name)."""
    fig.add_scatter(
        x=[pos[n][0] for n in names],
        y=[pos[n][1] for n in names],
        mode="markers+text",
        text=names,
        textposition="middle center",
        name=key if key in ("input", "(none)") else label,
        marker={
            "size": size,
            "color": colours.get(key, "#999999"),
            "line": {"width": 1, "color": "white"},
        },
        hovertext=hover,
        hoverinfo="text",
    )


def _graph_layout(fig: go.Figure, title: str) -> go.Figure:
    return _layout(fig, title, xaxis={"visible": False}, yaxis={"visible": False}, height=520)


def _edges_figure(cascade: Cascade, pos: dict[str, tuple[float, float]]) -> go.Figure:
    """A figure with the cascade's reads drawn as arrows (red: loop-carried)."""
    graph: nx.DiGraph = cascade.graph
    fig = go.Figure()
    for src, dst in graph.edges:
        if src == dst or src not in pos or dst not in pos:
            continue
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        back = x1 <= x0
        fig.add_annotation(
            x=x1,
            y=y1,
            ax=x0,
            ay=y0,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=2,
            arrowsize=1,
            arrowwidth=1,
            arrowcolor="#d62728" if back else "#888888",
            opacity=0.7,
            standoff=12,
        )
    return fig


def _gpu_graph_figure(result: DesignResult) -> go.Figure:
    """The cascade's dependency graph on a GPU: nodes coloured by the kernel that runs them
    (one fused kernel, or the unfused QK / softmax / AV kernels)."""
    cascade = result.cascade
    pos = graph_layout(cascade)
    kernel_of = {}
    for row in result.report.per_einsum.itertuples():
        for name in str(row.einsum).split(", "):
            kernel_of.setdefault(name, (row.kernel, row.unit))
    fig = _edges_figure(cascade, pos)
    colours = unit_colours(list(dict.fromkeys(k for k, _ in kernel_of.values())))
    groups: dict[str, list[str]] = {}
    for name in pos:
        inside = kernel_of.get(name, ("(none)", ""))[0]
        key = "input" if name in cascade.input_names else inside
        groups.setdefault(key, []).append(name)
    for key, names in groups.items():
        hover = [
            f"{n}: input"
            if key == "input"
            else f"{n}: in kernel {key} ({kernel_of.get(n, ('', '-'))[1]})"
            for n in names
        ]
        _add_nodes(fig, pos, names, key, f"kernel {key}", 34, colours, hover)
    return _graph_layout(
        fig,
        f"Cascade {cascade.name or ''} on {result.arch.name}: dependency graph (colour = the "
        "GPU kernel that runs it; red = loop-carried)",
    )


def _op_name(op: Op) -> str:
    return op.value if isinstance(op, Op) else str(op)


def comparison_figure(a: DesignResult, b: DesignResult, comparison: Comparison) -> go.Figure:
    """Latency and energy of two design points side by side, normalized to B (latency only
    when a side is a GPU: energy is not modelled there)."""
    metrics_: tuple[str, ...] = ("latency",)
    values_a: tuple[float, ...] = (comparison.latency_a_s / comparison.latency_b_s,)
    energy_known = math.isfinite(comparison.energy_ratio)
    if energy_known:
        metrics_ += ("energy",)
        values_a += (comparison.energy_a_pj / comparison.energy_b_pj,)
    ones = (1.0,) * len(metrics_)
    fig = go.Figure(
        [
            go.Bar(
                x=metrics_,
                y=values_a,
                name=f"A: {comparison.a}",
                text=[f"{v:.3g}" for v in values_a],
            ),
            go.Bar(x=metrics_, y=ones, name=f"B: {comparison.b}", text=["1"] * len(metrics_)),
        ]
    )
    energy = (
        f"{comparison.energy_ratio:.1%} of the energy"
        if energy_known
        else "energy not modelled on a GPU"
    )
    return _layout(
        fig,
        f"A vs B: {comparison.speedup:.3g}x faster, {energy}",
        barmode="group",
        yaxis={"title": "relative to B"},
        legend={"orientation": "h", "y": -0.2},
    )


def empty_figure(message: str) -> go.Figure:
    """A blank figure carrying a message (shown where a figure cannot be drawn)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return _layout(fig, "", xaxis={"visible": False}, yaxis={"visible": False})
