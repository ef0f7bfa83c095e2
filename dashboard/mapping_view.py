"""The design page's mapping panel: the mapping in use (bundled, typed or found by the
mapper) shown as its YAML (fusion groups, loop nest, tiles, keep sets, binding, stages) and
downloadable as a file that `einsim evaluate --mapping FILE` reads back.

The design callback stores `mapping_data(result)` in the `mapping-file` store; the two
callbacks here show it and send it as a download. The text is built on the server from the
design point (`design.mapping_file`); a download only returns what the store holds.
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html

from .design import DesignResult, mapping_file
from .inputs import MAX_YAML_BYTES

_PRE = {
    "background": "#f6f6f6",
    "border": "1px solid #ddd",
    "padding": "6px 8px",
    "fontSize": "12px",
    "maxHeight": "420px",
    "overflow": "auto",
    "whiteSpace": "pre-wrap",
}


def mapping_data(result: DesignResult) -> dict[str, object]:
    """What the `mapping-file` store holds for a design point (JSON-ready)."""
    f = mapping_file(result)
    return {"filename": f.filename, "text": f.text, "command": f.command, "searched": f.searched}


def mapping_panel() -> html.Div:
    """The panel under the design page's metrics: a title, the download button and the YAML."""
    return html.Div(
        [
            html.Div(
                [
                    html.H4("Mapping", style={"margin": "0"}),
                    html.Span(id="mapping-origin"),
                    html.Button(
                        "Download mapping (YAML)",
                        id="mapping-download-button",
                        n_clicks=0,
                        disabled=True,
                    ),
                ],
                style={"display": "flex", "gap": "12px", "alignItems": "center"},
            ),
            html.Pre(id="mapping-yaml", style=_PRE),
            dcc.Download(id="mapping-download"),
            dcc.Store(id="mapping-file"),
        ],
        style={"margin": "8px 0"},
    )


def _valid(data: object) -> bool:
    """A store value as `mapping_data` writes it (the client sends it back on download)."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("text"), str)
        and isinstance(data.get("filename"), str)
        and len(data["text"]) <= MAX_YAML_BYTES
        and len(data["filename"]) <= 100
    )


def register_mapping_panel(app) -> None:
    """Show the stored mapping; send it as `<name>.yaml` on a click."""

    @app.callback(
        Output("mapping-yaml", "children"),
        Output("mapping-origin", "children"),
        Output("mapping-download-button", "disabled"),
        Input("mapping-file", "data"),
    )
    def show(data):
        if not _valid(data):
            return "no mapping (the design point did not evaluate)", None, True
        origin = "found by the mapper" if data.get("searched") else "bundled / as typed"
        command = html.Code(str(data.get("command", "")), style={"fontSize": "12px"})
        return data["text"], html.Span([f"{origin}; check it with ", command]), False

    @app.callback(
        Output("mapping-download", "data"),
        Input("mapping-download-button", "n_clicks"),
        State("mapping-file", "data"),
        prevent_initial_call=True,
    )
    def download(_, data):
        if not _valid(data):
            return None
        return dcc.send_string(data["text"], data["filename"])
