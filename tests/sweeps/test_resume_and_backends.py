"""Killing a sweep at any moment loses nothing written; a rerun completes it with the rows
an uninterrupted run gives. Dask and the embedded backend give the same rows."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from einsim.sweeps import SweepWarning, sweep

#: 48 points, each its own template (a distinct architecture): about 0.1 s of work.
KILLED = {
    "name": "killed",
    "fixed": {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"},
    "axes": {
        "seq_len": [1024, 4096, 16384, 65536],
        "arch.units.2d.cols": {"from": 64, "to": 256, "step": 64},
        "options.fill_drain": [False, True, None],
    },
}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("point_id").reset_index(drop=True)


def test_killed_after_three_chunks_then_resumed(tmp_path):
    spec_path, out = tmp_path / "spec.json", tmp_path / "out.parquet"
    spec_path.write_text(json.dumps(KILLED))
    script = (
        "import json, os, signal, sys\n"
        "from einsim.sweeps import sweep\n"
        "def die(state):\n"
        "    if state.done >= 15:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"sweep(json.load(open({str(spec_path)!r})), {str(out)!r}, chunk_size=5, progress=die)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert len(list(out.glob("part-*.parquet"))) == 3
    with pytest.warns(SweepWarning, match="took over the lock of a sweep that is no longer"):
        resumed = sweep(KILLED, out, progress=False)  # the killed run's lock is stale
    assert (resumed.skipped, resumed.evaluated) == (15, 33)
    whole = sweep(KILLED, progress=False).to_pandas()
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(out)), _sorted(whole))


def test_cli_killed_at_an_arbitrary_moment_then_rerun(tmp_path):
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.parquet"
    spec_path.write_text(yaml.safe_dump(KILLED))
    command = [sys.executable, "-m", "einsim.cli", "sweep", str(spec_path), "-o", str(out)]
    proc = subprocess.Popen([*command, "--chunk-size", "2"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(out.glob("part-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(pd.read_parquet(out)) if list(out.glob("part-*")) else 0
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{written:,} already done" in rerun.stdout or written == 0
    frame = pd.read_parquet(out)
    assert len(frame) == 48 and frame.point_id.is_unique


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:
        yield local


def test_dask_gives_the_embedded_rows(cluster, small, tmp_path):
    embedded = sweep(small, progress=False).to_pandas()
    out = tmp_path / "dask.parquet"
    result = sweep(small, out, scheduler=cluster.scheduler_address, chunk_size=4, progress=False)
    assert result.evaluated == 12 and len(list(out.glob("part-*.parquet"))) == 3
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(out)), _sorted(embedded))
