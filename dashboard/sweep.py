"""The sweep explorer's data side: read a sweep's Parquet results, filter them, find the
Pareto front, draw the scatter, and turn a row back into a design point (pure functions).

A sweep (`einsim sweep`) writes one row per design point: its input keys (`model`,
`seq_len`, `arch`, `arch.units.2d.rows`, `mapping`, ...), then outputs (`latency_s`,
`energy_pj`, `dram_bytes`, `util_<unit>`, `valid`, `error`, ...), as a directory of part
files or one file; both read the same way.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from einsim.einsum import SpecError

from .choices import MODEL_ATTENTION
from .design import DesignSpec
from .filter import filter_mask
from .inputs import (
    MAX_CSV_BYTES,
    MAX_TABLE_BYTES,
    MAX_TABLE_CELLS,
    MAX_UPLOAD_BYTES,
    upload_bytes,
)

#: Columns a sweep computes; every other column is an input of the design point.
OUTPUT_COLUMNS = frozenset(
    {
        "point_id",
        "latency_s",
        "cycles",
        "energy_pj",
        "dram_bytes",
        "valid",
        "reason",
        "error",
        "cascade",
        "shape",
        "factors",
    }
)
OUTPUT_PREFIXES = ("util_", "energy_", "buffer_words_")
PARETO = "pareto"


def read_results(path: str | Path) -> pd.DataFrame:
    """A sweep's results: a Parquet file, or a directory of part files (a dataset). The
    dashboard passes paths through `security.confine` first.

    Raises:
        SpecError: a path that does not exist, is not Parquet, or holds more than
            `MAX_TABLE_CELLS` cells (read from the footer, before any data).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SpecError(f"sweep results {str(path)!r} do not exist")
    if path.is_file():
        check_parquet_size(path, f"sweep results {str(path)!r}")
    try:
        return pd.read_parquet(path).reset_index(drop=True)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise SpecError(
            f"sweep results {str(path)!r}: not a Parquet file or dataset ({error})"
        ) from None


def check_parquet_size(source, name: str) -> None:
    """Refuse a Parquet file whose footer announces more than `MAX_TABLE_CELLS` cells or
    `MAX_TABLE_BYTES` decoded bytes (a small compressed file can decode to gigabytes).

    Raises:
        SpecError: naming the file and the bound.
    """
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(source).metadata
    except Exception as error:  # pyarrow's several error types for a file that is not Parquet
        raise SpecError(f"{name}: not a readable Parquet file ({error})") from None
    cells = meta.num_rows * max(meta.num_columns, 1)
    decoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if cells > MAX_TABLE_CELLS or decoded > MAX_TABLE_BYTES:
        raise SpecError(
            f"{name}: {meta.num_rows:,} rows x {meta.num_columns} columns ({decoded:,} bytes "
            f"decoded); the dashboard reads at most {MAX_TABLE_CELLS:,} cells and "
            f"{MAX_TABLE_BYTES >> 20} MiB"
        )


def read_uploaded(contents: str, filename: str = "upload") -> pd.DataFrame:
    """A Parquet or CSV file from a browser upload (`data:...;base64,...`), bounded by
    `MAX_UPLOAD_BYTES` (CSV: `MAX_CSV_BYTES`).

    Raises:
        SpecError: contents that are neither Parquet nor CSV, or too large.
    """
    filename = filename if isinstance(filename, str) else "upload"
    is_csv = filename.endswith(".csv")
    data = upload_bytes(contents, filename, MAX_CSV_BYTES if is_csv else MAX_UPLOAD_BYTES)
    if not is_csv:
        check_parquet_size(io.BytesIO(data), filename[:200])
    try:
        if is_csv:
            return pd.read_csv(io.BytesIO(data))
        return pd.read_parquet(io.BytesIO(data)).reset_index(drop=True)
    except Exception as error:
        raise SpecError(f"{filename[:200]}: not a readable Parquet or CSV file ({error})") from None


def decode_upload(contents: str, filename: str = "upload", maximum: int = MAX_UPLOAD_BYTES):
    """The bytes of a dcc.Upload value (`data:<type>;base64,<payload>`), at most `maximum`.

    Raises:
        SpecError: not base64, or larger than `maximum`.
    """
    return upload_bytes(contents, filename, maximum)


def default_colour(frame: pd.DataFrame, inputs: list[str]) -> str | None:
    """The input to colour by at first: the sweep's case label, else the first text input
    that varies over at most 12 values (mapping, arch, ...)."""
    for name in ("label", "mapping", "arch", "algorithm", "model"):
        if name in inputs and 1 < frame[name].nunique(dropna=True) <= 12:
            return name
    texts = [
        c for c in inputs if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])
    ]
    return next((c for c in texts if 1 < frame[c].nunique(dropna=True) <= 12), None)


def is_output(column: str) -> bool:
    """Whether a column is something the sweep computed (not an input of the point)."""
    return column in OUTPUT_COLUMNS or column.startswith(OUTPUT_PREFIXES)


def columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(inputs, numeric outputs) of a results table."""
    inputs = [c for c in frame.columns if not is_output(c) and c != PARETO]
    outputs = [
        c
        for c in frame.columns
        if is_output(c) and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool
    ]
    return inputs, outputs


def pareto_mask(x, y) -> np.ndarray:
    """Points no other point beats on both x and y (both minimized); NaN is never on it.

    Example:
        >>> pareto_mask([1, 2, 3, 2], [3, 1, 2, 2]).tolist()
        [True, True, False, False]
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = np.zeros(len(x), dtype=bool)
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    best = np.inf
    # Sorted by x then y, a point is on the front when its y beats every earlier one.
    for i in finite[np.lexsort((y[finite], x[finite]))]:
        if y[i] < best:
            mask[i] = True
            best = y[i]
    return mask


def filter_results(frame: pd.DataFrame, query: str | None = None, valid_only: bool = True):
    """Rows that are valid (when asked) and satisfy a filter in the dashboard's own small
    language (`einsim.dashboard.filter`: comparisons, and/or/not; never evaluated as
    code), e.g. `seq_len >= 4096 and arch == "fusemax_cloud"` (dotted names as they are:
    `arch.units.2d.rows > 64`).

    Raises:
        SpecError: a malformed filter, naming the column of the offending token.
    """
    out = frame
    if valid_only and "valid" in out:
        out = out[out["valid"].fillna(False).astype(bool)]
    if query is not None and not isinstance(query, str):
        raise SpecError(f"filter: expected a text, got {type(query).__name__}")
    if query and query.strip():
        out = out[filter_mask(out, query)]
    return out


def with_pareto(frame: pd.DataFrame, x: str = "latency_s", y: str = "energy_pj") -> pd.DataFrame:
    """A copy with a boolean `pareto` column: the latency-energy front of the rows."""
    out = frame.copy()
    if x in out and y in out and len(out):
        out[PARETO] = pareto_mask(out[x], out[y])
    else:
        out[PARETO] = False
    return out


def scatter_figure(
    frame: pd.DataFrame,
    x: str,
    y: str,
    colour: str | None = None,
    facet: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
) -> go.Figure:
    """Any column against any other, coloured and faceted; Pareto points drawn as stars
    (and joined by a line when the axes are latency and energy). Each point's customdata
    holds its row label, for a click to open it."""
    data = with_pareto(frame)
    data["_row"] = data.index
    data["_front"] = np.where(data[PARETO], "Pareto front", "dominated")
    colour = colour or None
    facet = facet or None
    fig = px.scatter(
        data,
        x=x,
        y=y,
        color=colour,
        facet_col=facet,
        facet_col_wrap=3 if facet else 0,
        symbol="_front",
        symbol_map={"Pareto front": "star", "dominated": "circle"},
        custom_data=["_row"],
        hover_data=[c for c in data.columns if not c.startswith("_") and c not in (x, y)][:12],
        log_x=log_x,
        log_y=log_y,
        labels={"_front": "latency-energy"},
        template="plotly_white",
    )
    fig.update_traces(marker={"size": 9})
    if {x, y} == {"latency_s", "energy_pj"} and not facet:
        front = data[data[PARETO]].sort_values(x)
        fig.add_scatter(
            x=front[x],
            y=front[y],
            mode="lines",
            name="Pareto front (latency, energy)",
            line={"color": "black", "dash": "dash"},
            hoverinfo="skip",
        )
    fig.update_layout(
        title=f"{y} vs {x}: {len(data)} points, {int(data[PARETO].sum())} on the "
        "latency-energy Pareto front",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    return fig


def _value(value):
    """A plain Python value from a numpy/pandas scalar."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def spec_from_row(row: Mapping[str, object], base: DesignSpec | None = None) -> DesignSpec:
    """The design point a sweep row describes: `model` (or `variant`), `seq_len` (else
    `shape.P`, else `shape.M`), `arch`, `mapping`, optional `algorithm`, `batch`, `phase`,
    `variant.<param>`, `shape.<rank>` and `arch.<path>` overrides, as `einsim sweep` writes
    them.

    Raises:
        SpecError: a row missing the columns that identify a point (it names them).

    Example:
        >>> spec_from_row({"model": "bert_base", "seq_len": 4096, "arch": "flat_cloud",
        ...                "mapping": "flat", "algorithm": "stable_3pass",
        ...                "arch.units.2d.rows": 128}).overrides
        (('units.2d.rows', 128),)
    """
    base = base or DesignSpec()
    row = {k: _value(v) for k, v in row.items() if v is not None and not _missing(v)}
    if "seq_len" not in row:  # a sweep over shapes: the query (else key) rank's size
        found = next((row[k] for k in ("shape.P", "shape.M") if k in row), None)
        if found is not None:
            row["seq_len"] = found
    needed = [k for k in ("seq_len", "arch", "mapping") if k not in row]
    if "model" not in row and "variant" not in row:
        needed.insert(0, "model or variant")
    if needed or not isinstance(row.get("mapping"), str):
        missing = ", ".join(needed) or "mapping (a bundled name, not a search)"
        raise SpecError(f"this point does not identify a design point: no {missing} column")
    options = sorted(k for k in row if k.startswith("options."))
    if options:
        raise SpecError(
            f"this point sets model options ({', '.join(options)}), which the design page "
            "does not offer"
        )
    prefixed = {
        p: {k[len(p) :]: v for k, v in row.items() if k.startswith(p)}
        for p in ("variant.", "shape.", "arch.")
    }
    return DesignSpec(
        model=str(row.get("model", base.model)),
        seq_len=int(row["seq_len"]),
        algorithm=str(row.get("algorithm", base.algorithm)),
        attention=str(row["variant"]) if "variant" in row else MODEL_ATTENTION,
        params=tuple(prefixed["variant."].items()),
        sizes=tuple((k, int(v)) for k, v in prefixed["shape."].items()),
        batch=int(row["batch"]) if "batch" in row else None,
        phase=str(row.get("phase", "prefill")),
        arch=str(row["arch"]),
        overrides=tuple(prefixed["arch."].items()),
        mapping=str(row["mapping"]),
    )


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
