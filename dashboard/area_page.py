"""The dashboard's "Area" page: FuseMax's area-latency study (MICRO 2024, Fig. 12) and the
FuseMax/FLAT iso-area table, one click each. Thin over the pure functions
`simulator.spatial.reproduce.pareto`, `simulator.spatial.reproduce.iso_area` and
`pareto.pareto_figure`."""

from __future__ import annotations

import dash
from dash import Input, Output, dcc, html

from .pareto import pareto_figure

_PAGE = {"padding": "8px 16px"}


def area_page() -> html.Div:
    """The layout: a button, the latency-vs-area figure and the iso-area table."""
    return html.Div(
        [
            html.P(
                "Latency against total area at 256K tokens as the array grows (PE_dim 16 to "
                "512, M0 = PE_dim, the buffer PE_dim x E x 16 B doubled while memory-bound), "
                "four models, the artifact's published points starred; below, FuseMax's and "
                "FLAT's accelerators by component (mm², 45 nm)."
            ),
            html.Button("Run the Pareto study", id="area-run"),
            dcc.Loading(dcc.Graph(id="area-pareto")),
            html.Div(id="area-table"),
        ],
        style=_PAGE,
    )


def study():
    """(the Pareto figure, the iso-area table as a Dash table) from the simulator."""
    from einsim.simulator.spatial.reproduce import iso_area, pareto

    figure = pareto_figure(pareto())
    table = iso_area().round(2).reset_index()
    rows = [html.Tr([html.Th(column) for column in table.columns])]
    rows += [html.Tr([html.Td(value) for value in row]) for row in table.itertuples(index=False)]
    return figure, html.Table(rows, id="area-iso")


def register_area_page(app: dash.Dash) -> None:
    """The page's one callback: run the study on click."""

    @app.callback(
        Output("area-pareto", "figure"),
        Output("area-table", "children"),
        Input("area-run", "n_clicks"),
        prevent_initial_call=True,
    )
    def run_clicked(_clicks):
        return study()
