"""The GPU validation page's data side: predicted vs measured times from a validate-gpu
CSV, their error (MAPE) and rank agreement (Spearman), and the scatter (pure functions)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from einsim.einsum import SpecError

from .inputs import MAX_CSV_BYTES, upload_bytes


def read_csv_upload(contents: str, filename: str = "upload.csv") -> pd.DataFrame:
    """A CSV from a browser upload, at most `MAX_CSV_BYTES`.

    Raises:
        SpecError: contents pandas cannot read as CSV, or too large.
    """
    filename = filename if isinstance(filename, str) else "upload.csv"
    data = upload_bytes(contents, filename, MAX_CSV_BYTES)
    try:
        return pd.read_csv(io.BytesIO(data))
    except Exception as error:
        raise SpecError(f"{filename}: not a readable CSV file ({error})") from None


def guess_columns(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    """(predicted, measured) column names: `predicted_s`/`measured_s` when present, else
    the first numeric columns whose names contain `pred` / `meas`.

    Example:
        >>> guess_columns(pd.DataFrame({"pred_ms": [1.0], "measured_ms": [2.0]}))
        ('pred_ms', 'measured_ms')
    """
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]

    def pick(exact: str, part: str) -> str | None:
        if exact in numeric:
            return exact
        return next((c for c in numeric if part in c.lower()), None)

    return pick("predicted_s", "pred"), pick("measured_s", "meas")


@dataclass(frozen=True, slots=True)
class Agreement:
    """How well predictions track measurements.

    Attributes:
        mape: mean of |predicted - measured| / measured (0.1 = 10%).
        spearman: rank correlation of predicted and measured (1 = same order).
        n: the number of rows with both values finite and measured > 0.
    """

    mape: float
    spearman: float
    n: int


def agreement(predicted, measured) -> Agreement:
    """MAPE and Spearman's rank correlation over the rows where both are usable.

    Example:
        >>> a = agreement([1.0, 2.0, 4.0], [1.0, 2.5, 5.0])
        >>> round(a.mape, 4), a.spearman, a.n
        (0.1333, 1.0, 3)
    """
    p = pd.to_numeric(pd.Series(predicted), errors="coerce").to_numpy(dtype=float)
    m = pd.to_numeric(pd.Series(measured), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(p) & np.isfinite(m) & (m > 0)
    p, m = p[ok], m[ok]
    if not len(p):
        return Agreement(math.nan, math.nan, 0)
    mape = float(np.mean(np.abs(p - m) / m))
    if len(p) < 2:
        return Agreement(mape, math.nan, len(p))
    # Spearman = Pearson correlation of the ranks (average ranks for ties).
    rp, rm = pd.Series(p).rank().to_numpy(), pd.Series(m).rank().to_numpy()
    spearman = float(np.corrcoef(rp, rm)[0, 1]) if rp.std() and rm.std() else math.nan
    return Agreement(mape, spearman, len(p))


def validation_figure(
    frame: pd.DataFrame, predicted: str, measured: str, colour: str | None = None
) -> go.Figure:
    """Predicted vs measured, log-log, with the y = x line and the agreement in the title.

    Raises:
        SpecError: a column that is not in the table.
    """
    for name in (predicted, measured, colour):
        if name and name not in frame:
            raise SpecError(f"validation CSV has no column {name!r}; columns: {', '.join(frame)}")
    result = agreement(frame[predicted], frame[measured])
    hover = [c for c in frame.columns if c not in (predicted, measured)][:8]
    fig = px.scatter(
        frame,
        x=measured,
        y=predicted,
        color=colour or None,
        hover_data=hover,
        log_x=True,
        log_y=True,
        template="plotly_white",
    )
    values = pd.to_numeric(pd.concat([frame[predicted], frame[measured]]), errors="coerce")
    values = values[np.isfinite(values) & (values > 0)]
    if len(values):
        lo, hi = float(values.min()) / 1.5, float(values.max()) * 1.5
        fig.add_scatter(
            x=[lo, hi],
            y=[lo, hi],
            mode="lines",
            name="predicted = measured",
            line={"color": "black", "dash": "dash"},
        )
    fig.update_layout(
        title=f"Predicted vs measured: MAPE {result.mape:.1%}, Spearman "
        f"{result.spearman:.3f} over {result.n} rows",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    return fig
