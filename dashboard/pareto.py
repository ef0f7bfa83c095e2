"""The FuseMax Pareto figure (MICRO 2024, Fig. 12): latency against total area as the array
grows, one line per model, the artifact's published points starred. A pure function of the
table `einsim.simulator.spatial.reproduce.pareto()` returns."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def pareto_figure(table: pd.DataFrame) -> go.Figure:
    """Latency (s, log) against total area (mm^2, log), a line per model, PE_dim on hover."""
    figure = go.Figure()
    for model, rows in table.sort_values("pe_dim").groupby("model", sort=False):
        figure.add_trace(
            go.Scatter(
                x=rows.area_mm2,
                y=rows.latency_s,
                mode="lines+markers",
                name=str(model),
                text=[f"PE_dim {d}" for d in rows.pe_dim],
                hovertemplate="%{text}<br>%{x:.4g} mm²<br>%{y:.4g} s",
            )
        )
    published = table.dropna(subset=["published_latency_s"])
    if len(published):
        figure.add_trace(
            go.Scatter(
                x=published.published_area_mm2,
                y=published.published_latency_s,
                mode="markers",
                marker={"symbol": "star", "size": 14, "color": "black"},
                name="published (artifact)",
            )
        )
    seq = int(table.seq_len.iloc[0]) if len(table) else 0
    figure.update_layout(
        title=f"FuseMax: latency vs area at {seq:,} tokens (MICRO 2024, Fig. 12)",
        xaxis={"title": "total area (mm²)", "type": "log"},
        yaxis={"title": "latency (s)", "type": "log"},
        template="plotly_white",
    )
    return figure
