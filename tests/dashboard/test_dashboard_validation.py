"""GPU validation: MAPE and Spearman from a validate-gpu CSV."""

import base64
import math

import numpy as np
import pandas as pd
import pytest

from einsim import SpecError
from einsim.dashboard.validation import (
    agreement,
    guess_columns,
    read_csv_upload,
    validation_figure,
)


def test_agreement_against_the_formulas(rng):
    measured = rng.uniform(1e-4, 1e-2, size=50)
    predicted = measured * rng.uniform(0.7, 1.3, size=50)
    a = agreement(predicted, measured)
    np.testing.assert_allclose(a.mape, np.mean(np.abs(predicted - measured) / measured))
    ranks = pd.Series(predicted).rank(), pd.Series(measured).rank()
    np.testing.assert_allclose(a.spearman, ranks[0].corr(ranks[1]))
    assert a.n == 50


def test_agreement_skips_unusable_rows():
    a = agreement([1.0, 2.0, np.nan, 5.0], [1.0, 2.0, 3.0, 0.0])
    assert a.n == 2 and a.mape == 0 and a.spearman == pytest.approx(1.0)
    assert math.isnan(agreement([], []).mape)


def test_guess_columns():
    assert guess_columns(pd.DataFrame({"predicted_s": [1], "measured_s": [1]})) == (
        "predicted_s",
        "measured_s",
    )
    assert guess_columns(pd.DataFrame({"a": [1], "b": ["x"]})) == (None, None)


def test_figure_and_upload():
    frame = pd.DataFrame(
        {"predicted_s": [1e-3, 2e-3], "measured_s": [1.1e-3, 2.5e-3], "mapping": ["a", "b"]}
    )
    contents = (
        "data:text/csv;base64," + base64.b64encode(frame.to_csv(index=False).encode()).decode()
    )
    pd.testing.assert_frame_equal(read_csv_upload(contents), frame)
    fig = validation_figure(frame, "predicted_s", "measured_s", "mapping")
    assert "MAPE 14.5%" in fig.layout.title.text and "Spearman 1.000" in fig.layout.title.text
    with pytest.raises(SpecError, match="no column"):
        validation_figure(frame, "nope", "measured_s")
