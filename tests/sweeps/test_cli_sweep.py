"""`einsim sweep`: a summary on success; a bad spec or output exits 2 with one line."""

import pandas as pd
import pytest
from click.testing import CliRunner

from einsim.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_bundled_example_runs_and_resumes(tmp_path):
    out = tmp_path / "pareto.parquet"
    first = run("sweep", "fusemax_pareto", "-o", str(out))
    assert first.exit_code == 0, first.output
    assert "fusemax_pareto: 24 points, 24 evaluated" in first.output
    frame = pd.read_parquet(out)
    assert frame.valid.all()
    for _, model in frame.groupby("label"):
        model = model.sort_values("arch.units.2d.rows")
        assert model.latency_s.is_monotonic_decreasing  # bigger arrays, less time
        assert model.area_mm2.is_monotonic_increasing  # ... more silicon
    second = run("sweep", "fusemax_pareto", "-o", str(out))
    assert "(24 already done), 0 evaluated" in second.output


def test_bad_spec_exits_2_with_one_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "fixed: {model: bert_base, arch: fusemax_cloud, mapping: fusemax}\n"
        "axes: {seq_len: [], arch.units.2d.rows: [64]}\n"
    )
    result = run("sweep", str(spec), "-o", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "einsim: error:" in result.output and "seq_len: empty axis" in result.output
    assert not (tmp_path / "o").exists()


def test_foreign_output_exits_2(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n")
    result = run("sweep", "fusemax_pareto", "-o", str(tmp_path))
    assert result.exit_code == 2 and "not einsim sweep results (x.csv)" in result.output


def test_bad_scheduler_exits_2(tmp_path):
    pytest.importorskip("distributed")  # without the dist extra: the test below
    result = run("sweep", "fusemax_pareto", "-o", str(tmp_path / "o"), "--scheduler", "bogus://x:1")
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at bogus://x:1" in result.output


def test_scheduler_without_the_dist_extra_exits_2(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    result = run("sweep", "fusemax_pareto", "-o", str(tmp_path / "o"), "--scheduler", "tcp://x:1")
    assert result.exit_code == 2
    assert "pip install 'einsim[dist]'" in result.output and result.output.count("\n") == 1
