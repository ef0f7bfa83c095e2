"""The Area page: the Pareto study and the iso-area table from the simulator, one click."""

import numpy as np

from einsim.dashboard.app import create_app
from einsim.dashboard.area_page import study
from einsim.simulator.spatial.reproduce import iso_area


def test_the_page_is_a_tab_of_the_app():
    layout = str(create_app().layout)
    assert "tab-area" in layout and "area-run" in layout


def test_study_plots_four_models_and_the_published_points():
    figure, table = study()
    names = [trace.name for trace in figure.data]
    assert names == ["BERT", "TrXL", "T5", "XLM", "published (artifact)"]
    bert = figure.data[0]
    # latency falls as the area grows, along the line
    assert np.all(np.diff(np.asarray(bert.x)) > 0) and np.all(np.diff(np.asarray(bert.y)) < 0)
    totals = iso_area().loc["total"].round(2)
    cells = [str(cell.children) for row in table.children for cell in row.children]
    assert str(totals["fusemax_cloud"]) in cells and str(totals["flat_cloud"]) in cells
