"""The Dash app: layout and thin callbacks over the pure functions of this package.

`create_app(data=...)` builds the app; `einsim dashboard` runs it. Four pages: the design
point (spatial-array and GPU presets, with a side-by-side comparison), the cascade view, the
sweep explorer and the GPU validation. Every dropdown is filled from a registry or the
bundled specs. A callback reads its inputs, calls a pure function (`design`, `figures`,
`schedule`, `sweep`, `validation`) and places the result; einsim's errors become a message
on the page.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import dash
from dash import ALL, Input, Output, State, dcc, html

from einsim.einsum import EinsimError, SpecError

from . import bounded, choices, figures, inputs, security
from .area_page import area_page, register_area_page
from .design import (
    DEFAULT_TILING,
    UPLOADED,
    DesignResult,
    DesignSpec,
    architecture_data,
    build_workload,
    bundled_architecture,
    bundled_mapping,
    changed_overrides,
    compare,
    editable_numbers,
    error_message,
    evaluate_design,
    format_assignments,
    is_gpu,
    parse_assignments,
)
from .mapping_view import mapping_data, mapping_panel, register_mapping_panel
from .model_page import model_page, register_model_page
from .schedule import schedule
from .search import JobStatus, SearchJobs, SearchRequest, default_of, describe
from .search import objectives as search_objectives
from .sweep import (
    columns,
    default_colour,
    filter_results,
    read_results,
    read_uploaded,
    spec_from_row,
)
from .validation import agreement, guess_columns, read_csv_upload, validation_figure

_PANEL = {"width": "330px", "flex": "none", "padding": "8px 16px", "borderRight": "1px solid #ddd"}
_MAIN = {"flex": "1", "padding": "8px 16px", "minWidth": "0"}
_ERROR = {"color": "#a00", "background": "#fee", "padding": "6px 10px", "whiteSpace": "pre-wrap"}
_WARN = {"color": "#850", "background": "#ffd", "padding": "6px 10px", "whiteSpace": "pre-wrap"}
_TWO = {"display": "grid", "gridTemplateColumns": "repeat(auto-fit, minmax(480px, 1fr))"}


def _field(label: str, component) -> html.Div:
    return html.Div(
        [html.Label(label, style={"fontWeight": "bold"}), component], style={"marginBottom": "8px"}
    )


def _message(text: str | None, style: dict, id_: str | None = None):
    return html.Div(text, style=style, role="alert", className="einsim-message") if text else None


def _table(rows: list[dict], id_: str | None = None) -> html.Table:
    """A plain HTML table of dict rows (headers from the first row)."""
    if not rows:
        return html.Table(id=id_) if id_ else html.Table()
    head = html.Tr([html.Th(k) for k in rows[0]])
    body = [html.Tr([html.Td(str(v)) for v in row.values()]) for row in rows]
    props = {"id": id_} if id_ else {}
    return html.Table([html.Thead(head), html.Tbody(body)], className="einsim-table", **props)


def _metric_cells(result: DesignResult) -> html.Table:
    """The headline numbers; each cell's `title` holds the exact value (for tests, copies):
    `metric-latency`, `metric-utilization-2d`, on a GPU `metric-achieved-tflop-s`, ..."""
    rows = []
    for key, (text, exact) in figures.metric_values(result).items():
        slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
        rows.append(html.Tr([html.Th(key), html.Td(text, id=f"metric-{slug}", title=str(exact))]))
    return html.Table(rows, className="einsim-table")


def _shown(visible: bool) -> dict:
    return {} if visible else {"display": "none"}


def _tiling_field(id_: str, label: str) -> html.Div:
    """A GPU tiling as `parse_gpu_mapping` reads it, prefilled with the default tiling."""
    return html.Div(
        [
            _field(
                label,
                dcc.Input(
                    id=id_,
                    type="text",
                    value=DEFAULT_TILING,
                    debounce=True,
                    style={"width": "100%"},
                ),
            ),
            html.Div(
                "fused or unfused:Br=ROWS,Bc=KEYS,stages=N,warps=N[,split=N] (split-KV: fused "
                "only); Br a multiple of 16 x warps, Bc of 16. A search on a GPU costs its "
                "grid of tilings (the strategy does not apply).",
                style={"fontSize": "12px", "color": "#555", "marginBottom": "8px"},
            ),
        ],
        id=f"{id_}-box",
        style=_shown(False),
    )


# ------------------------------------------------------------------------------ layout


def _design_controls() -> html.Div:
    models = choices.models()
    attention = [{"label": "the model's own attention", "value": choices.MODEL_ATTENTION}]
    attention += choices.options(choices.cascades())
    return html.Div(
        [
            html.H3("Workload"),
            _field(
                "model",
                dcc.Dropdown(choices.options(models), "bert_base", id="model", clearable=False),
            ),
            _field(
                "sequence length",
                dcc.Input(
                    id="seq-len", type="text", value=4096, debounce=True, style={"width": "100%"}
                ),
            ),
            _field(
                "batch (empty: the model's)",
                dcc.Input(id="batch", type="text", debounce=True, style={"width": "100%"}),
            ),
            _field(
                "phase", dcc.RadioItems(["prefill", "decode"], "prefill", id="phase", inline=True)
            ),
            _field(
                "attention",
                dcc.Dropdown(attention, choices.MODEL_ATTENTION, id="attention", clearable=False),
            ),
            _field(
                "algorithm",
                dcc.Dropdown(
                    choices.options(choices.ALGORITHMS),
                    "fusemax_1pass",
                    id="algorithm",
                    clearable=False,
                ),
            ),
            _field(
                "parameters (KEY=VALUE, ...)",
                dcc.Input(
                    id="params", type="text", value="", debounce=True, style={"width": "100%"}
                ),
            ),
            _field(
                "extra rank sizes (RANK=SIZE, ...)",
                dcc.Input(
                    id="sizes", type="text", value="", debounce=True, style={"width": "100%"}
                ),
            ),
            html.H3("Architecture"),
            _field(
                "preset",
                dcc.Dropdown(
                    choices.architecture_options(), "fusemax_cloud", id="arch", clearable=False
                ),
            ),
            dcc.Upload(
                html.Div(["upload an architecture YAML: ", html.A("choose a file")]),
                id="arch-upload",
                style={"border": "1px dashed #999", "padding": "6px", "marginBottom": "6px"},
            ),
            html.Div(id="arch-upload-status"),
            html.Div(id="arch-numbers"),
            _field(
                "more overrides (YAML.PATH=VALUE, ...)",
                dcc.Input(
                    id="arch-overrides",
                    type="text",
                    value="",
                    debounce=True,
                    style={"width": "100%"},
                ),
            ),
            html.H3("Mapping"),
            html.Div(
                _field(
                    "bundled mapping",
                    dcc.Dropdown(
                        choices.options(choices.mappings()),
                        "fusemax",
                        id="mapping",
                        clearable=False,
                    ),
                ),
                id="mapping-box",
            ),
            _tiling_field("gpu-tiling", "GPU tiling (kernel form and tiles)"),
            *_search_controls(),
            html.H3("Compare with (B)"),
            dcc.Checklist([{"label": "compare", "value": "on"}], ["on"], id="compare-on"),
            html.Button("FuseMax vs FLAT", id="preset-fusemax-flat", n_clicks=0),
            _field(
                "algorithm B",
                dcc.Dropdown(
                    choices.options(choices.ALGORITHMS),
                    "stable_3pass",
                    id="compare-algorithm",
                    clearable=False,
                ),
            ),
            _field(
                "architecture B",
                dcc.Dropdown(
                    choices.architecture_options(),
                    "flat_cloud",
                    id="compare-arch",
                    clearable=False,
                ),
            ),
            html.Div(
                _field(
                    "mapping B",
                    dcc.Dropdown(
                        choices.options(choices.mappings()),
                        "flat",
                        id="compare-mapping",
                        clearable=False,
                    ),
                ),
                id="compare-mapping-box",
            ),
            _tiling_field("compare-tiling", "GPU tiling B"),
        ],
        style=_PANEL,
    )


def _search_controls() -> list:
    """ "Search with a strategy" (only when the mapper provides `search`): strategies from
    its registry, a budget, a seed; the search runs in a thread, polled for progress."""
    strategies = choices.strategies()
    sources = [{"label": "bundled", "value": "bundled"}]
    if not strategies:
        return [dcc.RadioItems(sources, "bundled", id="mapping-source", inline=True)]
    sources.append({"label": "search with a strategy", "value": "search"})
    # Text, read strictly (`inputs.whole_number`): a number input turns "1k" into 1.
    number = {"type": "text", "debounce": True, "style": {"width": "100%"}}
    default_strategy = default_of("strategy", strategies[0])
    default_strategy = default_strategy if default_strategy in strategies else strategies[0]
    return [
        dcc.RadioItems(sources, "bundled", id="mapping-source", inline=True),
        _field(
            "strategy",
            dcc.Dropdown(choices.options(strategies), default_strategy, id="search-strategy",
                         clearable=False),
        ),
        _field(
            "objective",
            dcc.Dropdown(choices.options(search_objectives()), search_objectives()[0],
                         id="search-objective", clearable=False),
        ),
        _field("budget (candidates)", dcc.Input(id="search-budget", value=20000, **number)),
        _field("seed", dcc.Input(id="search-seed", value=0, **number)),
        html.Button("search", id="search-run", n_clicks=0),
        html.Div(id="search-status"),
        dcc.Interval(id="search-poll", interval=400, disabled=True),
    ]  # fmt: skip


def _graph(id_: str) -> dcc.Graph:
    return dcc.Graph(id=id_, figure=figures.empty_figure("…"), config={"displaylogo": False})


def _design_page() -> html.Div:
    return html.Div(
        [
            _design_controls(),
            html.Div(
                [
                    html.Div(id="design-error"),
                    html.Div(id="design-warning"),
                    html.Div(
                        [html.Div(id="metrics"), html.Div(id="comparison")],
                        style={"display": "flex", "gap": "32px"},
                    ),
                    mapping_panel(),
                    html.Div([_graph("einsum-graph"), _graph("energy-graph")], style=_TWO),
                    html.Div([_graph("gantt-graph"), _graph("roofline-graph")], style=_TWO),
                    html.Div(
                        [
                            _graph("comparison-graph"),
                            html.Div(
                                [
                                    html.H4("Pass analysis (lower bound per rank)"),
                                    html.Div(id="passes"),
                                ]
                            ),
                        ],
                        style=_TWO,
                    ),
                ],
                style=_MAIN,
            ),
        ],
        style={"display": "flex"},
    )


def _cascade_page() -> html.Div:
    return html.Div(
        [
            html.P(
                "The cascade of the design point on the first page: each node a tensor, "
                "coloured by the unit its Einsum runs on and sized by its share of the "
                "cycles; arrows are reads (red: loop-carried)."
            ),
            dcc.Graph(id="cascade-graph", figure=figures.empty_figure("…")),
            html.Div(id="cascade-table"),
        ],
        style=_MAIN,
    )


def _sweep_page(data: str | None) -> html.Div:
    def dropdown(id_, label, clearable=True):
        return _field(label, dcc.Dropdown(id=id_, clearable=clearable))

    return html.Div(
        [
            html.Div(
                [
                    html.H3("Results"),
                    _field(
                        "Parquet file or dataset directory",
                        dcc.Input(
                            id="sweep-path", type="text", value=data or "", style={"width": "100%"}
                        ),
                    ),
                    html.Button("load", id="sweep-load", n_clicks=0),
                    dcc.Upload(
                        html.Div(["or upload: ", html.A("a .parquet file")]),
                        id="sweep-upload",
                        style={"border": "1px dashed #999", "padding": "6px", "margin": "6px 0"},
                    ),
                    html.Div(id="sweep-status"),
                    dropdown("sweep-x", "x", clearable=False),
                    dropdown("sweep-y", "y", clearable=False),
                    dropdown("sweep-colour", "colour"),
                    dropdown("sweep-facet", "facet"),
                    dcc.Checklist(
                        [{"label": "log x", "value": "x"}, {"label": "log y", "value": "y"}],
                        [],
                        id="sweep-log",
                        inline=True,
                    ),
                    dcc.Checklist(
                        [{"label": "valid points only", "value": "valid"}],
                        ["valid"],
                        id="sweep-valid",
                    ),
                    _field(
                        "filter (e.g. seq_len >= 4096 and not arch == 'flat_cloud')",
                        dcc.Input(
                            id="sweep-query",
                            type="text",
                            value="",
                            debounce=True,
                            style={"width": "100%"},
                        ),
                    ),
                    html.P("Click a point to open it as a design point."),
                    html.Div(id="sweep-click-status"),
                ],
                style=_PANEL,
            ),
            html.Div(
                [
                    dcc.Graph(
                        id="sweep-graph",
                        figure=figures.empty_figure("load a sweep's Parquet results"),
                        style={"height": "640px"},
                    )
                ],
                style=_MAIN,
            ),
        ],
        style={"display": "flex"},
    )


def _gpu_page() -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.H3("Validation CSV"),
                    dcc.Upload(
                        html.Div(["upload: ", html.A("a validate-gpu CSV")]),
                        id="gpu-upload",
                        style={"border": "1px dashed #999", "padding": "6px"},
                    ),
                    _field(
                        "or a path",
                        dcc.Input(
                            id="gpu-path",
                            type="text",
                            value="",
                            debounce=True,
                            style={"width": "100%"},
                        ),
                    ),
                    html.Div(id="gpu-status"),
                    _field("predicted column", dcc.Dropdown(id="gpu-predicted", clearable=False)),
                    _field("measured column", dcc.Dropdown(id="gpu-measured", clearable=False)),
                    _field("colour", dcc.Dropdown(id="gpu-colour")),
                    html.Div(id="gpu-metrics"),
                ],
                style=_PANEL,
            ),
            html.Div(
                [
                    dcc.Graph(
                        id="gpu-graph",
                        figure=figures.empty_figure(
                            "upload the CSV that einsim validate-gpu writes"
                        ),
                    )
                ],
                style=_MAIN,
            ),
        ],
        style={"display": "flex"},
    )


def layout(data: str | None = None) -> html.Div:
    """The page: a title, four tabs, and the stores the callbacks share."""
    return html.Div(
        [
            html.H2("einsim: attention on accelerators", style={"margin": "8px 16px"}),
            dcc.Store(id="arch-yaml"),
            dcc.Store(id="pending-overrides"),
            dcc.Store(id="sweep-source", data={"path": data} if data else None),
            dcc.Store(id="gpu-source"),
            dcc.Store(id="search-job"),
            dcc.Store(id="search-done"),
            dcc.Tabs(
                id="tabs",
                value="design",
                children=[
                    dcc.Tab(_design_page(), label="Design point", value="design", id="tab-design"),
                    dcc.Tab(_cascade_page(), label="Cascade", value="cascade", id="tab-cascade"),
                    dcc.Tab(
                        _sweep_page(data), label="Sweep explorer", value="sweep", id="tab-sweep"
                    ),
                    dcc.Tab(_gpu_page(), label="GPU validation", value="gpu", id="tab-gpu"),
                    dcc.Tab(model_page(), label="Model", value="model", id="tab-model"),
                    dcc.Tab(area_page(), label="Area", value="area", id="tab-area"),
                ],
            ),
        ],
        style={"fontFamily": "Liberation Sans, Arial, sans-serif", "fontSize": "14px"},
    )


# --------------------------------------------------------------------------- callbacks


def spec_from_inputs(
    model,
    seq_len,
    batch,
    phase,
    attention,
    algorithm,
    params,
    sizes,
    arch,
    arch_yaml,
    number_ids,
    number_values,
    more_overrides,
    mapping,
    tiling=DEFAULT_TILING,
) -> DesignSpec:
    """The `DesignSpec` the design page's controls describe, every field checked as the
    client sent it (`inputs`): names from the registries, whole numbers within the
    dashboard's bounds, texts of bounded length.

    Raises:
        SpecError: a malformed field (parameters, sizes, an override, an array number),
            naming it.
    """
    seq = inputs.whole_number(seq_len, "sequence length", maximum=inputs.MAX_SEQ_LEN)
    batch_size = inputs.whole_number(batch, "batch", maximum=inputs.MAX_BATCH, optional=True)
    model = inputs.choice(model, "model", choices.models())
    phase = inputs.choice(phase, "phase", ("prefill", "decode"))
    attention = inputs.choice(attention or "", "attention", ("", *choices.cascades()))
    algorithm = inputs.choice(algorithm, "algorithm", choices.ALGORITHMS)
    if arch == UPLOADED:
        arch_yaml = inputs.text(arch_yaml, "uploaded architecture", maximum=inputs.MAX_YAML_BYTES)
        data = architecture_data(DesignSpec(arch=UPLOADED, arch_yaml=arch_yaml))[0]
    else:
        data = architecture_data(DesignSpec(arch=bundled_architecture(arch)))[0]
    if not isinstance(number_ids, list) or not isinstance(number_values, list):
        raise SpecError("architecture numbers: expected lists of fields and values")
    if len(number_ids) != len(number_values) or len(number_ids) > 4 * inputs.MAX_ITEMS:
        raise SpecError("architecture numbers: fields and values do not match")
    if not all(isinstance(i, dict) and isinstance(i.get("path"), str) for i in number_ids):
        raise SpecError("architecture numbers: malformed field ids")
    values = {i["path"]: v for i, v in zip(number_ids, number_values, strict=True)}
    overrides = changed_overrides(editable_numbers(data), values)
    overrides += tuple(parse_assignments(more_overrides, "more overrides").items())
    size_values = parse_assignments(sizes, "extra rank sizes")
    tiling = inputs.text(tiling, "GPU tiling", maximum=200)
    return DesignSpec(
        model=model,
        seq_len=seq,  # type: ignore[arg-type]
        algorithm=algorithm,
        attention=attention or choices.MODEL_ATTENTION,
        params=tuple(parse_assignments(params).items()) if attention else (),
        sizes=tuple(size_values.items()),  # type: ignore[arg-type]
        batch=batch_size,
        phase=phase,
        arch=arch,
        arch_yaml=arch_yaml if arch == UPLOADED else None,
        overrides=overrides,
        mapping=bundled_mapping(mapping) if "gpu" not in data else inputs.text(mapping, "mapping"),
        tiling=tiling.strip() or DEFAULT_TILING,
    )


def spec_b(
    spec: DesignSpec, algorithm: str, arch: str, mapping: str, tiling: str | None = None
) -> DesignSpec:
    """Configuration B of a comparison: A's workload with B's algorithm (or `form`),
    architecture (no overrides) and mapping (on a GPU, its tiling).

    Raises:
        SpecError: a field that is not one of the page's choices.
    """
    algorithm = inputs.choice(algorithm, "algorithm B", choices.ALGORITHMS)
    arch = bundled_architecture(arch)
    mapping = inputs.text(mapping, "mapping B", maximum=100)
    tiling = inputs.text(tiling, "GPU tiling B", maximum=200)
    params = dict(spec.params)
    if "form" in params:
        params["form"] = algorithm
    return DesignSpec(
        model=spec.model,
        seq_len=spec.seq_len,
        algorithm=algorithm,
        attention=spec.attention,
        params=tuple(params.items()),
        sizes=spec.sizes,
        batch=spec.batch,
        phase=spec.phase,
        arch=arch,
        mapping=mapping,
        tiling=(tiling or "").strip() or DEFAULT_TILING,
    )


@dataclass(frozen=True)
class DesignView:
    """Everything the design page and the cascade page show for one set of inputs."""

    error: str | None = None
    warning: str | None = None
    result: DesignResult | None = None
    other: DesignResult | None = None
    other_error: str | None = None


def bounded_evaluation(spec: DesignSpec) -> DesignResult:
    """`evaluate_design`, in a child process with a deadline when the cascade's masks span
    more than `bounded.FORK_POINTS` points (`bounded.run_bounded`).

    Raises:
        EinsimError: as `evaluate_design`; SpecError past the deadline.
    """
    cascade, shape = build_workload(spec)
    if bounded.filter_points(cascade, shape) > bounded.FORK_POINTS:
        return bounded.run_bounded(evaluate_design, spec, what=spec.label())
    return evaluate_design(spec)


def design_view(spec: DesignSpec, other: DesignSpec | None) -> DesignView:
    """Evaluate A (and B); einsim's errors become messages, never exceptions."""
    try:
        result = bounded_evaluation(spec)
    except Exception as error:  # shown on the page (einsim's errors, or a bug, named)
        return DesignView(error=error_message(error))
    warning = None
    if not result.report.valid:
        warning = "This mapping is invalid:\n" + "\n".join(result.report.reasons)
    if other is None:
        return DesignView(warning=warning, result=result)
    try:
        return DesignView(warning=warning, result=result, other=bounded_evaluation(other))
    except Exception as error:
        return DesignView(warning=warning, result=result, other_error=error_message(error))


#: The design page's fields, in the order `spec_from_inputs` takes them.
DESIGN_FIELDS = (
    ("model", "value"),
    ("seq-len", "value"),
    ("batch", "value"),
    ("phase", "value"),
    ("attention", "value"),
    ("algorithm", "value"),
    ("params", "value"),
    ("sizes", "value"),
    ("arch", "value"),
    ("arch-yaml", "data"),
    ({"type": "arch-number", "path": ALL}, "id"),
    ({"type": "arch-number", "path": ALL}, "value"),
    ("arch-overrides", "value"),
    ("mapping", "value"),
    ("gpu-tiling", "value"),
)


def searched_spec(spec: DesignSpec, status: JobStatus | None) -> tuple[DesignSpec, str | None]:
    """The spec with the searched mapping when `status` is a finished search for this very
    workload and architecture; otherwise the spec as is and why the search is not used."""
    if status is None:
        return spec, "no search yet: press search (the bundled mapping is shown)"
    if status.state != "done":
        return spec, f"{describe(status)} (the bundled mapping is shown meanwhile)"
    request = SearchRequest(spec, status.request.strategy, status.request.objective, 1)
    if request.target() != status.request.target():
        return spec, "the search was for another design point: press search again"
    return replace(spec, searched=status.result.mapping), None


def _register_design(app: dash.Dash, jobs: SearchJobs) -> None:
    outputs = [
        Output("design-error", "children"),
        Output("design-warning", "children"),
        Output("metrics", "children"),
        Output("comparison", "children"),
        Output("einsum-graph", "figure"),
        Output("energy-graph", "figure"),
        Output("gantt-graph", "figure"),
        Output("roofline-graph", "figure"),
        Output("comparison-graph", "figure"),
        Output("passes", "children"),
        Output("cascade-graph", "figure"),
        Output("cascade-table", "children"),
        Output("mapping-file", "data"),
    ]
    triggers = [Input(i, p) for i, p in DESIGN_FIELDS] + [
        Input("compare-on", "value"),
        Input("compare-algorithm", "value"),
        Input("compare-arch", "value"),
        Input("compare-mapping", "value"),
        Input("compare-tiling", "value"),
        Input("mapping-source", "value"),
        Input("search-done", "data"),
    ]

    @app.callback(outputs, triggers)
    def update_design(*values):
        *a, compare_on, algorithm_b, arch_b, mapping_b, tiling_b, source, done = values
        blank = figures.empty_figure("no result")
        note = None
        try:
            spec = spec_from_inputs(*a)
            if compare_on is not None and not isinstance(compare_on, list):
                raise SpecError("compare: expected a list of checked boxes")
            other = spec_b(spec, algorithm_b, arch_b, mapping_b, tiling_b) if compare_on else None
            if source == "search":
                job = inputs.whole_number(done, "search job", maximum=2**62, optional=True)
                status = jobs.status(job) if job else None
                spec, note = searched_spec(spec, status)
        except (EinsimError, ValueError) as error:
            message = _message(error_message(error), _ERROR)
            return message, None, None, None, *[blank] * 5, None, blank, None, None
        view = design_view(spec, other)
        if view.result is None:
            message = _message(view.error, _ERROR)
            return message, None, None, None, *[blank] * 5, None, blank, None, None
        if note:
            view = replace(view, warning="\n".join(filter(None, [note, view.warning])))
        result = view.result
        if result.is_gpu:
            per_einsum = figures.gpu_kernel_figure(result)
            energy = figures.empty_figure(
                "energy is not modelled on a GPU (the report's figure is only the board's "
                "power limit x time)"
            )
            gantt = figures.empty_figure(
                "a GPU runs its kernels one after another: no pipelined schedule of units"
            )
            table = figures.gpu_kernel_rows(result)
        else:
            colours = figures.unit_colours([u.name for u in result.arch.units])
            per_einsum = figures.einsum_figure(result.report, colours)
            energy = figures.energy_figure(result.report)
            gantt = figures.gantt_figure(
                schedule(result.cascade, result.mapping, result.report), colours
            )
            table = figures.einsum_rows(result.report)
        points = [("A", result)] + ([("B", view.other)] if view.other else [])
        comparison, comparison_fig = None, figures.empty_figure("comparison off")
        if view.other is not None:
            c = compare(result, view.other)
            comparison = html.Div(
                [
                    html.H4("A vs B"),
                    html.Div(
                        [
                            "speedup of A over B: ",
                            html.B(f"{c.speedup:.3g}x", id="speedup", title=repr(c.speedup)),
                        ]
                    ),
                    html.Div(
                        [
                            "energy of A / energy of B: ",
                            html.B(
                                f"{c.energy_ratio:.1%}"
                                if math.isfinite(c.energy_ratio)
                                else "n/a (energy is not modelled on a GPU)",
                                id="energy-ratio",
                                title=repr(c.energy_ratio),
                            ),
                        ]
                    ),
                    html.Div(f"A: {c.a}"),
                    html.Div(f"B: {c.b}"),
                ]
            )
            comparison_fig = figures.comparison_figure(result, view.other, c)
        elif view.other_error:
            comparison = _message("B: " + view.other_error, _ERROR)
        metrics = _metric_cells(result)
        if result.is_gpu:
            metrics = html.Div([metrics, html.H4("Per kernel"), _table(table, "gpu-kernels-table")])
        return (
            None,
            _message(view.warning, _WARN),
            metrics,
            comparison,
            per_einsum,
            energy,
            gantt,
            figures.roofline_figure(points),
            comparison_fig,
            _table(figures.pass_rows(result.cascade), "passes-table"),
            figures.graph_figure(result),
            _table(table),
            mapping_data(result),
        )


def _register_form(app: dash.Dash) -> None:
    @app.callback(
        Output("params", "value"),
        Output("mapping", "value"),
        Input("attention", "value"),
        Input("algorithm", "value"),
        State("params", "value"),
        State("mapping", "value"),
    )
    def defaults(attention, algorithm, params, mapping):
        """A variant's default parameters (keeping values already given for known keys)
        and, unless the chosen mapping was written for the cascade, its default mapping."""
        try:
            attention = inputs.choice(attention or "", "attention", ("", *choices.cascades()))
            algorithm = inputs.choice(algorithm, "algorithm", choices.ALGORITHMS)
            mapping = inputs.text(mapping, "mapping", maximum=100)
        except SpecError:
            return dash.no_update, dash.no_update
        known = choices.default_params(attention) if attention else {}
        try:
            given = parse_assignments(params)
        except SpecError:
            given = {}
        merged = known | {k: v for k, v in given.items() if k in known}
        changed_algorithm = dash.ctx.triggered_id == "algorithm"
        if attention and "form" in merged and changed_algorithm:
            merged["form"] = algorithm
        target = attention or algorithm
        if attention and "form" in merged:
            target = str(merged["form"])
        written = choices.mapping_cascades().get(mapping)
        keep = written == target or (attention and written == attention)
        new_mapping = mapping if keep else (choices.default_mapping(target) or mapping)
        return format_assignments(merged), new_mapping

    @app.callback(
        Output("compare-algorithm", "value"),
        Output("compare-arch", "value"),
        Output("compare-mapping", "value"),
        Output("algorithm", "value"),
        Output("arch", "value", allow_duplicate=True),
        Output("compare-on", "value"),
        Input("preset-fusemax-flat", "n_clicks"),
        prevent_initial_call=True,
    )
    def fusemax_vs_flat(_):
        return "stable_3pass", "flat_cloud", "flat", "fusemax_1pass", "fusemax_cloud", ["on"]

    @app.callback(
        Output("arch-yaml", "data"),
        Output("arch", "options"),
        Output("arch", "value", allow_duplicate=True),
        Output("arch-upload-status", "children"),
        Input("arch-upload", "contents"),
        State("arch-upload", "filename"),
        State("arch", "value"),
        prevent_initial_call=True,
    )
    def upload_architecture(contents, filename, current):
        from .design import build_architecture
        from .sweep import decode_upload

        presets = choices.architecture_options()
        filename = filename if isinstance(filename, str) else "upload"
        filename = filename[:200]
        current = current if current in choices.architectures() else dash.no_update
        try:
            data = decode_upload(contents, filename, inputs.MAX_YAML_BYTES)
            text = data.decode("utf-8")
            arch = build_architecture(DesignSpec(arch=UPLOADED, arch_yaml=text))
        except (EinsimError, UnicodeDecodeError) as error:
            message = f"{filename}: {error_message(error)}"
            return dash.no_update, presets, current, _message(message, _ERROR)
        options = [*presets, {"label": f"uploaded: {arch.name}", "value": UPLOADED}]
        status = html.Div(f"{filename}: loaded architecture {arch.name}", id="upload-ok")
        return text, options, UPLOADED, status

    @app.callback(
        Output("mapping-box", "style"),
        Output("gpu-tiling-box", "style"),
        Input("arch", "value"),
        Input("arch-yaml", "data"),
    )
    def mapping_control(arch, arch_yaml):
        """A GPU is mapped by a tiling, a spatial array by a bundled mapping."""
        gpu = is_gpu(DesignSpec(arch=arch, arch_yaml=arch_yaml))
        return _shown(not gpu), _shown(gpu)

    @app.callback(
        Output("compare-mapping-box", "style"),
        Output("compare-tiling-box", "style"),
        Input("compare-arch", "value"),
    )
    def compare_mapping_control(arch):
        gpu = is_gpu(DesignSpec(arch=arch))
        return _shown(not gpu), _shown(gpu)

    @app.callback(
        Output("arch-numbers", "children"),
        Input("arch", "value"),
        Input("arch-yaml", "data"),
        Input("pending-overrides", "data"),
    )
    def arch_numbers(arch, arch_yaml, pending):
        try:
            data, _ = architecture_data(DesignSpec(arch=arch, arch_yaml=arch_yaml))
        except EinsimError:
            return None
        preset = {}
        if isinstance(pending, dict) and pending.get("arch") == arch:
            given = pending.get("overrides")
            if isinstance(given, list) and all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in given
            ):
                preset = dict(given)
        fields = []
        for number in editable_numbers(data):
            try:
                value = inputs.arch_number(preset.get(number.path, number.value), number.path)
            except SpecError:
                value = inputs.arch_number(number.value, number.path)
            fields.append(
                html.Div(
                    [
                        html.Label(number.label, style={"width": "42%", "display": "inline-block"}),
                        dcc.Input(
                            id={"type": "arch-number", "path": number.path},
                            type="text",
                            value=value,
                            debounce=True,
                            style={"width": "56%"},
                        ),
                    ],
                    style={"marginBottom": "4px"},
                )
            )
        return fields


def _register_search(app: dash.Dash, jobs: SearchJobs) -> None:
    if not jobs.available or not choices.strategies():
        return

    @app.callback(
        Output("search-job", "data"),
        Output("search-poll", "disabled", allow_duplicate=True),
        Output("search-status", "children", allow_duplicate=True),
        Output("mapping-source", "value"),
        Input("search-run", "n_clicks"),
        [State(i, p) for i, p in DESIGN_FIELDS],
        State("search-strategy", "value"),
        State("search-objective", "value"),
        State("search-budget", "value"),
        State("search-seed", "value"),
        prevent_initial_call=True,
    )
    def start_search(_, *values):
        *fields, strategy, objective, budget, seed = values
        try:
            spec = spec_from_inputs(*fields)
            request = SearchRequest(
                spec,
                inputs.choice(strategy, "strategy", choices.strategies()),
                inputs.choice(objective, "objective", search_objectives()),
                inputs.whole_number(budget, "budget", maximum=inputs.MAX_BUDGET),  # type: ignore[arg-type]
                inputs.whole_number(seed, "seed", minimum=0, maximum=2**32 - 1, optional=True) or 0,
            )
            job = jobs.start(request)
        except (EinsimError, ValueError) as error:
            return dash.no_update, True, _message(error_message(error), _ERROR), dash.no_update
        return job, False, _search_status(jobs.status(job)), "search"

    @app.callback(
        Output("search-status", "children", allow_duplicate=True),
        Output("search-poll", "disabled", allow_duplicate=True),
        Output("search-done", "data"),
        Input("search-poll", "n_intervals"),
        State("search-job", "data"),
        prevent_initial_call=True,
    )
    def poll_search(_, job):
        if job is None:
            return None, True, dash.no_update
        try:
            status = jobs.status(inputs.whole_number(job, "search job", maximum=2**62))
        except EinsimError as error:
            return _message(error_message(error), _ERROR), True, dash.no_update
        if status.state == "running":
            return _search_status(status), False, dash.no_update
        return _search_status(status), True, job


def _search_status(status: JobStatus):
    text = describe(status)
    if status.state == "running":
        bar = html.Progress() if status.fraction is None else html.Progress(value=status.fraction)
        return html.Div([bar, html.Div(text)], id="search-running")
    if status.state == "failed":
        return _message(text, _ERROR)
    return html.Div(text, id="search-found")


def _column(frame, name: object, field: str) -> str | None:
    """A column picked in a dropdown: None, or a column of `frame`.

    Raises:
        SpecError: a name the table does not have.
    """
    if name is None or name == "":
        return None
    if not isinstance(name, str) or name not in frame.columns:
        raise SpecError(f"{field}: no column {str(name)[:60]!r} in the table")
    return name


def _checked(values: object, field: str, allowed: tuple[str, ...]) -> list[str]:
    """A checklist's value: a list of some of `allowed`.

    Raises:
        SpecError: anything else.
    """
    if values is None:
        return []
    if not isinstance(values, list) or not all(v in allowed for v in values):
        raise SpecError(f"{field}: expected some of {', '.join(allowed)}")
    return values


def _register_sweep(app: dash.Dash, load: Callable) -> None:
    @app.callback(
        Output("sweep-source", "data", allow_duplicate=True),
        Input("sweep-load", "n_clicks"),
        State("sweep-path", "value"),
        prevent_initial_call=True,
    )
    def choose_path(_, path):
        return {"path": path} if isinstance(path, str) and path.strip() else None

    @app.callback(
        Output("sweep-source", "data", allow_duplicate=True),
        Input("sweep-upload", "contents"),
        State("sweep-upload", "filename"),
        prevent_initial_call=True,
    )
    def choose_upload(contents, filename):
        return {"upload": contents, "filename": filename}

    @app.callback(
        Output("sweep-status", "children"),
        Output("sweep-x", "options"),
        Output("sweep-x", "value"),
        Output("sweep-y", "options"),
        Output("sweep-y", "value"),
        Output("sweep-colour", "options"),
        Output("sweep-colour", "value"),
        Output("sweep-facet", "options"),
        Input("sweep-source", "data"),
    )
    def sweep_columns(source):
        if not source:
            return None, [], None, [], None, [], None, []
        try:
            frame = load(source)
        except EinsimError as error:
            return _message(error_message(error), _ERROR), [], None, [], None, [], None, []
        given, outputs = columns(frame)
        every = [*given, *outputs]
        x = "latency_s" if "latency_s" in outputs else (given or every or [None])[0]
        y = "energy_pj" if "energy_pj" in outputs else (outputs or every or [None])[0]
        status = html.Div(
            f"{len(frame)} points, {len(given)} inputs, {len(outputs)} outputs", id="sweep-loaded"
        )
        facets = [c for c in given if frame[c].nunique(dropna=True) <= 12]
        return status, every, x, every, y, given, default_colour(frame, given), facets

    @app.callback(
        Output("sweep-graph", "figure"),
        Output("sweep-click-status", "children", allow_duplicate=True),
        Input("sweep-source", "data"),
        Input("sweep-x", "value"),
        Input("sweep-y", "value"),
        Input("sweep-colour", "value"),
        Input("sweep-facet", "value"),
        Input("sweep-log", "value"),
        Input("sweep-valid", "value"),
        Input("sweep-query", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def sweep_figure(source, x, y, colour, facet, log, valid, query):
        from .sweep import scatter_figure

        if not source or not x or not y:
            return figures.empty_figure("load a sweep's Parquet results"), None
        try:
            frame = load(source)
            x, y = _column(frame, x, "x"), _column(frame, y, "y")
            colour, facet = _column(frame, colour, "colour"), _column(frame, facet, "facet")
            log = _checked(log, "log axes", ("x", "y"))
            valid = _checked(valid, "valid points only", ("valid",))
            frame = filter_results(frame, query, valid_only=bool(valid))
            fig = scatter_figure(frame, x, y, colour, facet, "x" in log, "y" in log)
        except EinsimError as error:
            return figures.empty_figure("no figure"), _message(error_message(error), _ERROR)
        except (ValueError, KeyError, TypeError) as error:  # plotly on a column it cannot draw
            return figures.empty_figure("no figure"), _message(error_message(error), _ERROR)
        return fig, None

    @app.callback(
        Output("tabs", "value"),
        Output("model", "value"),
        Output("seq-len", "value"),
        Output("batch", "value"),
        Output("phase", "value"),
        Output("attention", "value"),
        Output("algorithm", "value", allow_duplicate=True),
        Output("params", "value", allow_duplicate=True),
        Output("sizes", "value"),
        Output("arch", "value", allow_duplicate=True),
        Output("mapping", "value", allow_duplicate=True),
        Output("pending-overrides", "data"),
        Output("arch-overrides", "value"),
        Output("sweep-click-status", "children", allow_duplicate=True),
        Input("sweep-graph", "clickData"),
        State("sweep-source", "data"),
        prevent_initial_call=True,
    )
    def open_point(click, source):
        keep = [dash.no_update] * 13
        try:
            index = click["points"][0]["customdata"][0]
            if isinstance(index, bool) or not isinstance(index, int):
                raise SpecError(f"clicked point: expected a row number, got {str(index)[:40]!r}")
            row = load(source).loc[index].to_dict()
            spec = spec_from_row(row)
            if spec.arch not in choices.spatial_architectures():
                raise SpecError(f"architecture {spec.arch!r} is not a bundled spatial preset")
            editable = {n.path for n in editable_numbers(architecture_data(spec)[0])}
        except (EinsimError, KeyError, IndexError, TypeError) as error:
            return *keep, _message(error_message(error), _ERROR)
        numbers = [(p, v) for p, v in spec.overrides if p in editable]
        more = {p: v for p, v in spec.overrides if p not in editable}
        return (
            "design",
            spec.model,
            spec.seq_len,
            spec.batch,
            spec.phase,
            spec.attention,
            spec.algorithm,
            format_assignments(dict(spec.params)),
            format_assignments(dict(spec.sizes)),
            spec.arch,
            spec.mapping,
            {"arch": spec.arch, "overrides": numbers},
            format_assignments(more),
            None,
        )


def _register_gpu(app: dash.Dash, load_csv: Callable) -> None:
    @app.callback(
        Output("gpu-source", "data"),
        Input("gpu-upload", "contents"),
        Input("gpu-path", "value"),
        State("gpu-upload", "filename"),
        prevent_initial_call=True,
    )
    def choose(contents, path, filename):
        if dash.ctx.triggered_id == "gpu-path":
            return {"path": path} if isinstance(path, str) and path.strip() else None
        return {"upload": contents, "filename": filename}

    @app.callback(
        Output("gpu-status", "children"),
        Output("gpu-predicted", "options"),
        Output("gpu-predicted", "value"),
        Output("gpu-measured", "options"),
        Output("gpu-measured", "value"),
        Output("gpu-colour", "options"),
        Output("gpu-colour", "value"),
        Input("gpu-source", "data"),
    )
    def gpu_columns(source):
        if not source:
            return None, [], None, [], None, [], None
        try:
            frame = load_csv(source)
        except EinsimError as error:
            return _message(error_message(error), _ERROR), [], None, [], None, [], None
        predicted, measured = guess_columns(frame)
        every = list(frame.columns)
        colour = "mapping" if "mapping" in frame else None
        status = html.Div(f"{len(frame)} rows", id="gpu-loaded")
        return status, every, predicted, every, measured, every, colour

    @app.callback(
        Output("gpu-graph", "figure"),
        Output("gpu-metrics", "children"),
        Input("gpu-source", "data"),
        Input("gpu-predicted", "value"),
        Input("gpu-measured", "value"),
        Input("gpu-colour", "value"),
    )
    def gpu_figure(source, predicted, measured, colour):
        if not source or not predicted or not measured:
            return figures.empty_figure("pick the predicted and measured columns"), None
        try:
            frame = load_csv(source)
            predicted = _column(frame, predicted, "predicted column")
            measured = _column(frame, measured, "measured column")
            colour = _column(frame, colour, "colour")
            fig = validation_figure(frame, predicted, measured, colour)
        except EinsimError as error:
            return figures.empty_figure("no figure"), _message(error_message(error), _ERROR)
        a = agreement(frame[predicted], frame[measured])
        shown = html.Div(
            [
                html.Div(["MAPE: ", html.B(f"{a.mape:.1%}", id="gpu-mape", title=repr(a.mape))]),
                html.Div(
                    [
                        "Spearman: ",
                        html.B(f"{a.spearman:.3f}", id="gpu-spearman", title=repr(a.spearman)),
                    ]
                ),
                html.Div(f"over {a.n} rows"),
            ]
        )
        return fig, shown


def _source(source: object) -> dict:
    """A sweep-source / gpu-source store's value: {"path": text} or {"upload": data URL,
    "filename": text}.

    Raises:
        SpecError: anything else.
    """
    if isinstance(source, dict) and set(source) == {"path"} and isinstance(source["path"], str):
        return source
    if (
        isinstance(source, dict)
        and set(source) <= {"upload", "filename"}
        and isinstance(source.get("upload"), str)
        and isinstance(source.get("filename"), (str, type(None)))
    ):
        return source
    raise SpecError("results: expected a path or an uploaded file")


def _loaders(roots: security.Roots, cache_size: int = 4):
    """Readers of a sweep source and a CSV source, remembering the last few tables (keyed
    by path and modification time, so a sweep still writing parts is read anew). A path
    is read only inside `roots` (`security.confine`: the same refusal whether or not the
    path exists)."""
    import pandas as pd

    cache: dict = {}
    lock = threading.Lock()

    def remember(key, read):
        with lock:
            if key in cache:
                return cache[key]
        frame = read()
        with lock:
            if len(cache) >= cache_size:
                cache.pop(next(iter(cache)))
            cache[key] = frame
        return frame

    def stamp(path: Path) -> int:
        if not path.exists():
            return 0
        entries = [path, *path.iterdir()] if path.is_dir() else [path]
        return max((p.stat().st_mtime_ns for p in entries), default=0)

    def upload_key(source: dict):
        return ("upload", source.get("filename"), hash(source["upload"]))

    def load_sweep(source: object):
        source = _source(source)
        if "path" in source:
            path = security.confine(source["path"], roots, "sweep results")
            return remember(("sweep", str(path), stamp(path)), lambda: read_results(path))
        return remember(
            ("sweep", *upload_key(source)),
            lambda: read_uploaded(source["upload"], source.get("filename") or "upload"),
        )

    def load_csv(source: object):
        source = _source(source)
        if "path" in source:
            path = security.confine(source["path"], roots, "validation CSV")
            if not path.is_file():
                raise SpecError(f"validation CSV {source['path'][:200]!r} does not exist")
            if path.stat().st_size > inputs.MAX_UPLOAD_BYTES:
                raise SpecError(f"validation CSV {source['path'][:200]!r}: larger than "
                                f"{inputs.MAX_UPLOAD_BYTES >> 20} MiB")  # fmt: skip

            def read():
                try:
                    return pd.read_csv(path)
                except Exception as error:  # pandas' several parser errors
                    raise SpecError(f"{path}: not a readable CSV file ({error})") from None

            return remember(("csv", str(path), stamp(path)), read)
        return remember(
            ("csv", *upload_key(source)),
            lambda: read_csv_upload(source["upload"], source.get("filename") or "upload.csv"),
        )

    return load_sweep, load_csv


def create_app(
    data: str | Path | None = None, search: Callable | None = None, allow: tuple = ()
) -> dash.Dash:
    """The dashboard as a Dash app (serve it with `security.make_server(app, host, port)`
    or `serve_in_thread`), guarded by `security.install_guards` (Host header, malformed
    callbacks, short errors).

    Args:
        data: a sweep's Parquet results to open in the sweep explorer; its folder (or the
            directory itself) is one the path fields may read.
        search: the mapping search behind "search with a strategy" (default
            `einsim.mapper.search`; the option is left out when there is none).
        allow: more folders the path fields may read (`einsim dashboard --allow`).
    """
    app = dash.Dash(__name__, title="einsim", suppress_callback_exceptions=True)
    app.layout = layout(str(data) if data else None)
    security.install_guards(app)
    load_sweep, load_csv = _loaders(security.roots_for(data, allow))
    jobs = SearchJobs(search)
    _register_design(app, jobs)
    _register_search(app, jobs)
    _register_form(app)
    _register_sweep(app, load_sweep)
    _register_gpu(app, load_csv)
    register_model_page(app)
    register_area_page(app)
    register_mapping_panel(app)
    return app


@dataclass
class Served:
    """An app served from a background thread (`serve_in_thread`)."""

    url: str
    server: object
    thread: threading.Thread

    def shutdown(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def serve_in_thread(app: dash.Dash, host: str = "127.0.0.1", port: int = 0) -> Served:
    """Serve `app` with werkzeug from a daemon thread; port 0 picks a free one."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # one line per request drowns the output
            pass

    server = make_server(host, port, app.server, threaded=True, request_handler=Quiet)
    security.bind(app, host, server.server_port)
    thread = threading.Thread(target=server.serve_forever, name="einsim-dashboard", daemon=True)
    thread.start()
    return Served(f"http://{host}:{server.server_port}", server, thread)
