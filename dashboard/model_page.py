"""The dashboard's "Model" page: a whole zoo model on several targets (`einsim.estimate`).

Pick a model, targets, attention and sequence lengths; the page shows the head-to-head
table (`model_estimate.compare`), the per-layer breakdown of one estimate as bars stacked
by operator, latency vs sequence length, and downloads of the table (CSV) and the figures
(HTML). `model_page()` is the layout, `register_model_page(app)` its callbacks; both are
thin over the pure functions `run_compare` and `breakdown_figure`.
"""

from __future__ import annotations

import dash
import pandas as pd
from dash import Input, Output, State, dcc, html

from einsim.einsum import EinsimError, SpecError

from . import choices, inputs

DEFAULT_MODEL = "llama3_8b"
DEFAULT_TARGETS = ("fusemax_cloud", "h100_sxm")
SEQ_CHOICES = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
DEFAULT_SEQS = (4096, 16384)
_FORMS = ("fusemax_1pass", "online_2pass", "stable_3pass")
_ERROR = {"color": "#a00", "background": "#fee", "padding": "6px 10px", "whiteSpace": "pre-wrap"}
_PANEL = {"width": "330px", "flex": "none", "padding": "8px 16px", "borderRight": "1px solid #ddd"}
_MAIN = {"flex": "1", "padding": "8px 16px", "minWidth": "0"}


def attention_choices() -> tuple[str, ...]:
    """The forms (the model's own attention in them), then the registered variants."""
    from einsim.workloads import ATTENTION

    return (*_FORMS, *(name for name in ATTENTION if name not in _FORMS))


def run_compare(model, targets, attentions, seqs, phases) -> pd.DataFrame:
    """`model_estimate.compare` over the page's choices (the first target is the baseline)."""
    from einsim.model_estimate import compare

    if not targets:
        raise EinsimError("choose at least one target")
    if not seqs:
        raise EinsimError("choose at least one sequence length")
    atts = [None if a == "fusemax_1pass" else a for a in (attentions or ["fusemax_1pass"])]
    return compare(model, list(targets), atts, sorted(int(s) for s in seqs), list(phases))


def read_choices(model, targets, attentions, seqs, phases) -> tuple:
    """The page's choices as the client sent them, each checked against its dropdown's
    options (lists of at most as many entries as there are options).

    Raises:
        SpecError: a value that is not one of the options, or a list that is not a list.
    """

    def many(values, field, allowed) -> list:
        allowed = tuple(allowed)
        if not isinstance(values, list) or len(values) > len(allowed):
            raise SpecError(f"{field}: expected a list of at most {len(allowed)} choices")
        return [inputs.choice(v, field, allowed) for v in values]

    model = inputs.choice(model, "model", choices.models())
    targets = many(targets, "targets", choices.architectures())
    attentions = many(attentions, "attention", attention_choices())
    names = many(
        [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in seqs]
        if isinstance(seqs, list)
        else seqs,
        "sequence lengths",
        tuple(map(str, SEQ_CHOICES)),
    )
    seqs = [int(v) for v in names]
    phases = many(phases, "phases", ("prefill", "decode"))
    return model, targets, attentions, seqs, phases


def breakdown_figure(model: str, target: str, phase: str, seq_len: int, attention=None):
    """Latency of every layer, stacked by operator (one `estimate`), and its table."""
    import plotly.express as px

    from einsim.model_estimate import estimate

    att = None if attention == "fusemax_1pass" else attention
    result = estimate(model, target, phase, int(seq_len), attention=att)
    rows = result.breakdown.assign(latency_ms=result.breakdown.latency_s * 1e3)
    rows["where"] = rows.block.where(rows.block != "layer", rows.layer.astype(str))
    order = ["embed", *(str(i) for i in range(int(rows.layer.max()) + 1)), "head"]
    fig = px.bar(
        rows, x="where", y="latency_ms", color="operator",
        category_orders={"where": order},
        title=f"{result.model} on {result.target}, {phase} at {seq_len}: latency per layer",
        labels={"where": "layer", "latency_ms": "latency (ms)"},
    )  # fmt: skip
    fig.update_layout(barmode="stack", margin=dict(t=50, b=40))
    return fig, result


def _figure_html(figs) -> str:
    parts = [figs[0].to_html(full_html=False, include_plotlyjs=True)]
    parts += [f.to_html(full_html=False, include_plotlyjs=False) for f in figs[1:]]
    return "<html><body>\n" + "\n".join(parts) + "\n</body></html>\n"


def _field(label: str, component) -> html.Div:
    return html.Div(
        [html.Label(label, style={"fontWeight": "bold"}), component], style={"marginBottom": "8px"}
    )


def model_page() -> html.Div:
    """The page's layout: choices on the left, the results on the right."""
    targets = choices.options(choices.architectures())
    controls = [
        _field(
            "Model",
            dcc.Dropdown(
                id="model-name",
                options=choices.options(choices.models()),
                value=DEFAULT_MODEL,
                clearable=False,
            ),
        ),
        _field(
            "Targets (the first is the baseline)",
            dcc.Dropdown(
                id="model-targets", options=targets, value=list(DEFAULT_TARGETS), multi=True
            ),
        ),
        _field(
            "Attention (a form of the model's own, or a variant substituted)",
            dcc.Dropdown(
                id="model-attention",
                options=choices.options(attention_choices()),
                value=["fusemax_1pass"],
                multi=True,
            ),
        ),
        _field(
            "Sequence lengths (decode: the context)",
            dcc.Dropdown(
                id="model-seqs",
                options=[{"label": str(s), "value": s} for s in SEQ_CHOICES],
                value=list(DEFAULT_SEQS),
                multi=True,
            ),
        ),
        _field(
            "Phases",
            dcc.Checklist(
                id="model-phases",
                options=["prefill", "decode"],
                value=["prefill", "decode"],
                inline=True,
            ),
        ),
        html.Button("Estimate", id="model-run", n_clicks=0),
        html.P(
            "GPU rows are uncalibrated; their matrix products are rooflines and their energy "
            "is not modelled. Prefill latency is the time to first token, decode the time "
            "per output token.",
            style={"fontSize": "12px", "color": "#555"},
        ),
    ]
    results = [
        html.Div(id="model-error"),
        dcc.Loading(html.Div(id="model-table")),
        html.Div(
            [
                html.Button("Download CSV", id="model-csv-button", n_clicks=0),
                html.Button("Download figures (HTML)", id="model-html-button", n_clicks=0),
            ],
            style={"display": "flex", "gap": "8px", "margin": "8px 0"},
        ),
        dcc.Download(id="model-csv"),
        dcc.Download(id="model-html"),
        dcc.Graph(id="model-bars"),
        dcc.Graph(id="model-lines"),
        dcc.Graph(id="model-breakdown"),
        dcc.Store(id="model-result"),
    ]
    return html.Div(
        [html.Div(controls, style=_PANEL), html.Div(results, style=_MAIN)],
        style={"display": "flex"},
    )


_TABLE_COLUMNS = [
    "target", "attention", "phase", "seq_len", "latency_ms", "speedup", "tokens_per_s",
    "mJ_per_token", "dram_GB", "fits_memory", "valid",
]  # fmt: skip


def _table(frame: pd.DataFrame) -> html.Table:
    shown = frame.assign(
        latency_ms=(frame.latency_s * 1e3).round(4),
        speedup=frame.speedup.round(3),
        tokens_per_s=frame.tokens_per_s.round(1),
        dram_GB=(frame.dram_bytes / 1e9).round(3),
        mJ_per_token=(frame.energy_per_token_pj * 1e-9).round(3),
    )[_TABLE_COLUMNS]
    head = html.Tr([html.Th(c) for c in shown.columns])
    missing = {"mJ_per_token": "not modelled", "fits_memory": "DRAM not bounded"}
    body = [
        html.Tr(
            [
                html.Td(missing.get(column, "") if pd.isna(v) else str(v))
                for column, v in zip(shown.columns, row, strict=True)
            ]
        )
        for row in shown.itertuples(index=False)
    ]
    return html.Table([html.Thead(head), html.Tbody(body)], id="model-result-table")


def register_model_page(app: dash.Dash) -> None:
    """The page's callbacks: estimate on click, and the two downloads."""

    @app.callback(
        Output("model-table", "children"),
        Output("model-bars", "figure"),
        Output("model-lines", "figure"),
        Output("model-breakdown", "figure"),
        Output("model-error", "children"),
        Output("model-result", "data"),
        Input("model-run", "n_clicks"),
        State("model-name", "value"),
        State("model-targets", "value"),
        State("model-attention", "value"),
        State("model-seqs", "value"),
        State("model-phases", "value"),
        prevent_initial_call=True,
    )
    def estimate_clicked(_clicks, model, targets, attentions, seqs, phases):
        from einsim.model_estimate import compare_figures

        empty = {"data": [], "layout": {}}
        try:
            model, targets, attentions, seqs, phases = read_choices(
                model, targets, attentions, seqs, phases
            )
            table = run_compare(model, targets, attentions, seqs, phases)
            bars, lines = compare_figures(table)
            first = table.iloc[0]
            breakdown, _ = breakdown_figure(
                model, first.target, first.phase, int(first.seq_len), first.attention
            )
        except (EinsimError, ValueError) as error:
            message = html.Div(str(error).splitlines()[0], style=_ERROR, role="alert")
            return None, empty, empty, empty, message, None
        data = {"csv": table.to_csv(index=False), "html": _figure_html([bars, lines, breakdown])}
        return _table(table), bars, lines, breakdown, None, data

    @app.callback(
        Output("model-csv", "data"),
        Input("model-csv-button", "n_clicks"),
        State("model-result", "data"),
        prevent_initial_call=True,
    )
    def download_csv(_clicks, data):
        if not isinstance(data, dict) or not isinstance(data.get("csv"), str):
            return dash.no_update
        return dict(content=data["csv"], filename="einsim_compare.csv")

    @app.callback(
        Output("model-html", "data"),
        Input("model-html-button", "n_clicks"),
        State("model-result", "data"),
        prevent_initial_call=True,
    )
    def download_html(_clicks, data):
        if not isinstance(data, dict) or not isinstance(data.get("html"), str):
            return dash.no_update
        return dict(content=data["html"], filename="einsim_compare.html")
