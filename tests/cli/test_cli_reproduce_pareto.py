"""`einsim reproduce fusemax --pareto [--plot]` and the iso-area table."""

import io

import pandas as pd
from click.testing import CliRunner

from einsim.cli import main


def test_pareto_csv_matches_the_published_points_and_writes_the_figure(tmp_path):
    plot = tmp_path / "pareto.html"
    result = CliRunner().invoke(
        main, ["reproduce", "fusemax", "--pareto", "--format", "csv", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout))
    assert len(table) == 4 * 6
    published = table.dropna(subset=["published_area_mm2"])
    assert ((published.area_mm2 / published.published_area_mm2 - 1).abs() < 0.05).all()
    assert ((published.latency_s / published.published_latency_s - 1).abs() < 0.01).all()
    assert plot.read_text().count("plotly") > 0


def test_reproduce_shows_fusemax_and_flat_areas_side_by_side():
    result = CliRunner().invoke(main, ["reproduce", "fusemax"])
    assert result.exit_code == 0, result.output
    assert "fusemax_cloud  flat_cloud" in result.output
    assert "The arrays differ by" in result.output


def test_plot_without_pareto_is_refused_in_one_line():
    result = CliRunner().invoke(main, ["reproduce", "fusemax", "--plot", "x.html"])
    assert result.exit_code == 2
    assert "--pareto" in result.output
