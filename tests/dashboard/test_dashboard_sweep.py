"""The sweep explorer's pure functions: reading, filtering, Pareto, rows -> design points."""

import numpy as np
import pandas as pd
import pytest

from einsim import SpecError
from einsim.dashboard.design import DesignSpec
from einsim.dashboard.sweep import (
    columns,
    filter_results,
    pareto_mask,
    read_results,
    read_uploaded,
    scatter_figure,
    spec_from_row,
)


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "point_id": ["a", "b", "c", "d", "e"],
            "model": ["bert_base"] * 5,
            "seq_len": [1024, 1024, 4096, 4096, 4096],
            "arch": ["fusemax_cloud", "flat_cloud", "fusemax_cloud", "flat_cloud", "flat_cloud"],
            "mapping": ["fusemax", "flat", "fusemax", "flat", "flat"],
            "arch.units.2d.rows": [256, 128, 256, 128, 64],
            "latency_s": [1.0, 3.0, 2.0, 4.0, np.nan],
            "energy_pj": [5.0, 1.0, 2.0, 6.0, np.nan],
            "util_2d": [0.9, 0.5, 0.8, 0.4, np.nan],
            "valid": [True, True, True, True, False],
            "error": [None, None, None, None, "SpecError: boom"],
        }
    )


def test_pareto_mask_matches_brute_force(rng):
    x, y = rng.uniform(size=(2, 300))  # continuous: no ties
    x[:5] = np.nan
    finite = np.isfinite(x) & np.isfinite(y)
    brute = [
        bool(finite[i]) and not np.any(finite & (x < x[i]) & (y < y[i])) for i in range(len(x))
    ]
    np.testing.assert_array_equal(pareto_mask(x, y), brute)


def test_pareto_mask_keeps_one_of_equal_points():
    assert pareto_mask([1, 1, 2], [1, 1, 0]).tolist() == [True, False, True]


def test_read_a_file_and_a_directory_of_parts(tmp_path, frame):
    frame.to_parquet(tmp_path / "one.parquet")
    parts = tmp_path / "results.parquet"
    parts.mkdir()
    frame.iloc[:2].to_parquet(parts / "part-0-0.parquet")
    frame.iloc[2:].to_parquet(parts / "part-0-1.parquet")
    (parts / "_einsim_sweep.json").write_text("{}")
    for path in (tmp_path / "one.parquet", parts):
        got = read_results(path).sort_values("point_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    with pytest.raises(SpecError, match="do not exist"):
        read_results(tmp_path / "missing.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(SpecError, match="not a readable Parquet"):
        read_results(tmp_path / "text.parquet")


def test_read_an_upload(frame):
    import base64
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    contents = (
        "data:application/octet-stream;base64," + base64.b64encode(buffer.getvalue()).decode()
    )
    assert len(read_uploaded(contents, "x.parquet")) == len(frame)
    with pytest.raises(SpecError, match="not a readable"):
        read_uploaded("data:x;base64," + base64.b64encode(b"junk").decode(), "x.parquet")


def test_columns_split_inputs_and_outputs(frame):
    inputs, outputs = columns(frame)
    assert inputs == ["model", "seq_len", "arch", "mapping", "arch.units.2d.rows"]
    assert outputs == ["latency_s", "energy_pj", "util_2d"]


def test_filters(frame):
    assert len(filter_results(frame)) == 4
    assert len(filter_results(frame, valid_only=False)) == 5
    assert list(filter_results(frame, "seq_len >= 4096").point_id) == ["c", "d"]
    assert list(filter_results(frame, "`arch.units.2d.rows` < 256").point_id) == ["b", "d"]
    with pytest.raises(SpecError, match="filter"):
        filter_results(frame, "no_such_column > 1")


def test_scatter_marks_the_front(frame):
    fig = scatter_figure(filter_results(frame), "latency_s", "energy_pj", colour="arch")
    stars = [t for t in fig.data if getattr(t.marker, "symbol", None) == "star"]
    starred = sorted(int(i[0]) for t in stars for i in t.customdata)
    assert starred == [0, 1, 2]  # a (1, 5), b (3, 1), c (2, 2); d (4, 6) is dominated
    line = next(t for t in fig.data if t.mode == "lines")
    assert list(line.x) == [1.0, 2.0, 3.0]
    faceted = scatter_figure(filter_results(frame), "seq_len", "util_2d", facet="arch")
    assert len(faceted.layout.annotations) == 2


def test_a_row_is_a_design_point(frame):
    spec = spec_from_row(frame.iloc[1].to_dict())
    assert spec == DesignSpec(
        model="bert_base",
        seq_len=1024,
        arch="flat_cloud",
        mapping="flat",
        overrides=(("units.2d.rows", 128),),
    )
    with pytest.raises(SpecError, match="no model or variant, mapping"):
        spec_from_row({"seq_len": 1, "arch": "flat_cloud"})
    searched = {"model": "bert_base", "seq_len": 1, "arch": "x", "mapping": {"search": "greedy"}}
    with pytest.raises(SpecError, match="search"):
        spec_from_row(searched)


def test_every_point_of_a_real_sweep_reopens_as_itself(tmp_path):
    """`einsim sweep fusemax_pareto` output: each row, opened as a design point, evaluates
    to the latency and energy the sweep stored."""
    from einsim.dashboard.design import evaluate_design
    from einsim.sweeps import sweep

    sweep("fusemax_pareto", tmp_path / "pareto.parquet")
    frame = read_results(tmp_path / "pareto.parquet")
    assert len(frame) and frame.point_id.is_unique
    for _, row in frame.iterrows():
        report = evaluate_design(spec_from_row(row.to_dict())).report
        np.testing.assert_allclose(
            [report.latency_s, report.energy_pj], [row.latency_s, row.energy_pj], rtol=1e-12
        )
        assert report.valid == row.valid


def test_model_options_are_refused():
    row = {"model": "bert_base", "seq_len": 1, "arch": "a", "mapping": "m"}
    with pytest.raises(SpecError, match=r"options\.drop_exp_energy"):
        spec_from_row({**row, "options.drop_exp_energy": True})
