"""Running sweeps: rows equal the simulator's, errors are kept, outputs are Parquet
datasets with the spec as metadata, and foreign or different outputs are refused."""

import doctest
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from einsim import SpecError, workload
from einsim.simulator import bind, evaluate, load_architecture, load_mapping
from einsim.sweeps import SweepProgress, parse_spec, sweep
from einsim.sweeps import run as run_module
from einsim.sweeps import spec as spec_module


@pytest.mark.parametrize("module", [spec_module, run_module])
def test_docstring_examples(module):
    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_rows_equal_the_scalar_model(small):
    frame = sweep(small, progress=False).to_pandas()
    assert len(frame) == 12 and frame.valid.all() and frame.error.isna().all()
    mapping = load_mapping("fusemax")
    frame = frame.rename(columns={"arch.units.2d.cols": "cols", "mapping.attention.GB.P": "p1"})
    for row in frame.itertuples(index=False):
        w = workload("bert_base", "fusemax_1pass", row.seq_len)
        arch = load_architecture("fusemax_cloud", {"units.2d.cols": row.cols})
        bound = bind(mapping, {"attention.GB.P": row.p1})
        report = evaluate(w.cascade, arch, bound, w.sizes | dict(w.outer))
        assert row.valid == report.valid
        np.testing.assert_allclose(row.latency_s, report.latency_s, rtol=1e-12)
        np.testing.assert_allclose(row.energy_pj, report.energy_pj, rtol=1e-12)
        np.testing.assert_allclose(row.energy_GB_pj, report.energy_by_component_pj["GB"])
        np.testing.assert_allclose(row.util_1d, report.utilization["1d"], rtol=1e-12)
        np.testing.assert_allclose(row.buffer_words_GB, report.buffer_words["GB"])
        assert f"attention.GB.P={row.p1}," in row.factors


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(small):
    small["axes"]["cases"] = [{"mapping": "fusemax"}, {"mapping": "flat"}]  # flat: wrong cascade
    small["fixed"].pop("mapping")
    small["axes"].pop("mapping.attention.GB.P")
    result = sweep(small, progress=False)
    frame = result.to_pandas()
    assert result.errors == 4 and result.invalid == 0 and len(frame) == 8
    bad = frame[frame.mapping == "flat"]
    assert bad.error.str.startswith("MappingError: ").all() and not bad.valid.any()
    assert bad.latency_s.isna().all()
    assert frame[frame.mapping == "fusemax"].error.isna().all()


def test_one_bad_row_of_a_batch_does_not_sink_the_others(small):
    small["axes"]["variant.M0"] = [64]  # a model takes no variant parameters: every point fails
    result = sweep(small, progress=False)
    assert result.errors == 12
    assert "both model and variant" in result.to_pandas().error.iloc[0]


def test_invalid_points_keep_their_reason():
    spec = {
        "fixed": {"model": "bert_base", "seq_len": 4096, "arch": "fusemax_cloud"},
        "axes": {"mapping": ["fusemax"], "mapping.attention.spatial.P": [128, 512]},
    }
    frame = sweep(spec, progress=False).to_pandas()
    bad = frame[~frame.valid]
    assert len(bad) == 1 and "larger than the array dimension 256" in bad.reason.iloc[0]
    assert frame[frame.valid].reason.isna().all()


def test_parquet_dataset_metadata_and_readers(tmp_path, small):
    out = tmp_path / "results.parquet"
    seen, readable = [], []

    def progress(state):  # read the dataset while the sweep runs
        seen.append(state)
        readable.append(len(pd.read_parquet(out)))

    result = sweep(small, out, chunk_size=5, progress=progress)
    assert result.evaluated == 12 and result.skipped == 0
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3  # 5 + 5 + 2
    assert [s.done for s in seen] == readable == [5, 10, 12]
    assert isinstance(seen[0], SweepProgress)
    meta = pq.read_schema(parts[0]).metadata
    spec = parse_spec(small)
    assert meta[b"einsim.version"] == b"0.1.0"
    assert meta[b"einsim.spec_sha256"].decode() == spec.digest
    assert json.loads(meta[b"einsim.spec"])["fixed"]["model"] == "bert_base"
    frame = pd.read_parquet(out)
    assert len(frame) == 12 and frame.point_id.is_unique
    assert frame["arch.units.2d.cols"].dtype == np.int64
    duckdb = pytest.importorskip("duckdb")
    count = duckdb.sql(f"select count(*) from '{out}/*.parquet' where valid").fetchall()[0][0]
    assert count == 12


def test_rerun_skips_finished_points_and_leftovers_are_ignored(tmp_path, small):
    out = tmp_path / "r.parquet"
    first = sweep(small, out, chunk_size=4, progress=False)
    (out / ".part-deadbeef-00007.tmp").write_bytes(b"half a file")  # a killed write
    again = sweep(small, out, progress=False)
    assert (first.evaluated, again.evaluated, again.skipped) == (12, 0, 12)
    assert not list(out.glob(".*.tmp"))
    bigger = {**small, "axes": {**small["axes"], "seq_len": [1024, 4096, 16384]}}
    with pytest.raises(SpecError, match="different sweep"):
        sweep(bigger, out, progress=False)
    replaced = sweep(bigger, out, overwrite=True, progress=False)
    assert replaced.evaluated == 18 and len(pd.read_parquet(out)) == 18


def test_foreign_and_damaged_outputs_are_refused(tmp_path, small):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(SpecError, match=r"not einsim sweep results \(notes.txt\)") as info:
            sweep(small, foreign, overwrite=overwrite, progress=False)
        assert "\n" not in str(info.value)
    assert (foreign / "notes.txt").read_text() == "keep me"
    afile = tmp_path / "file.parquet"
    afile.write_text("x")
    with pytest.raises(SpecError, match="not a directory"):
        sweep(small, afile, progress=False)
    out = tmp_path / "r.parquet"
    sweep(small, out, chunk_size=6, progress=False)
    part = sorted(out.glob("part-*.parquet"))[0]
    part.write_bytes(b"PAR1 garbage")
    with pytest.raises(SpecError, match=f"{part.name} is not a readable part"):
        sweep(small, out, progress=False)
    part.unlink()
    assert sweep(small, out, progress=False).evaluated == 6
    (out / "_einsim_sweep.json").write_text("{")
    with pytest.raises(SpecError, match="unreadable"):
        sweep(small, out, progress=False)


def test_a_second_writer_is_refused(tmp_path, small):
    from einsim.sweeps.store import Store

    out = tmp_path / "r.parquet"
    holder = Store(out, parse_spec(small))
    try:
        with pytest.raises(SpecError, match="another sweep is writing"):
            sweep(small, out, progress=False)
    finally:
        holder.close()
    assert sweep(small, out, progress=False).evaluated == 12


def test_local_process_pool_gives_the_same_rows(small):
    embedded = sweep(small, progress=False, chunk_size=3).to_pandas()
    pooled = sweep(small, workers=2, progress=False, chunk_size=3).to_pandas()
    pd.testing.assert_frame_equal(
        embedded.sort_values("point_id").reset_index(drop=True),
        pooled.sort_values("point_id").reset_index(drop=True),
    )
