"""Hostile conditions for a sweep's output directory: two writers at once, a stale lock,
disk full, a read-only file system, a killed pool worker. Each gives one line (an error
with exit status 2, or a warning), loses nothing, duplicates nothing, and a rerun
completes the directory with the rows an undisturbed in-memory run gives."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from einsim.sweeps import sweep
from einsim.sweeps.lock import LOCK
from einsim.sweeps.spec import SweepWarning

#: 48 points, each its own template (a distinct architecture).
SPEC = {
    "name": "kills",
    "fixed": {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"},
    "axes": {
        "seq_len": [1024, 4096, 16384, 65536],
        "arch.units.2d.cols": {"from": 64, "to": 256, "step": 64},
        "options.fill_drain": [False, True, None],
    },
}


@pytest.fixture(scope="module")
def whole():
    """The reference: the same spec evaluated in memory, in one process, undisturbed."""
    return _sorted(sweep(SPEC, progress=False).to_pandas())


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("point_id").reset_index(drop=True)


def _complete(out: Path, whole: pd.DataFrame) -> None:
    """`out` holds every point once, with the reference's rows, and nothing left over."""
    frame = pd.read_parquet(out)
    assert frame.point_id.is_unique
    pd.testing.assert_frame_equal(_sorted(frame), whole)
    assert not list(out.glob(".*.tmp")) and not (out / LOCK).exists()


def _cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "einsim.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def _one_error_line(proc, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("einsim: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (root only); skips where mount is refused."""
    path.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


# -- one writer per directory ------------------------------------------------------------

RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from einsim.einsum import SpecError
    from einsim.sweeps import sweep
    spec, folder = json.loads(sys.argv[1]), Path(sys.argv[2])
    me, rounds = sys.argv[3], int(sys.argv[4])
    nap = lambda state: time.sleep(0.01)
    for i in range(rounds):
        (folder / f"ready-{i}-{me}").touch()
        while not (folder / f"go-{i}").exists():
            time.sleep(0.0005)
        try:
            result = sweep(spec, folder / f"out-{i}", chunk_size=4, progress=nap)
        except SpecError as error:
            print(json.dumps({"refused": str(error)}), flush=True)
        else:
            done = {"evaluated": result.evaluated, "skipped": result.skipped}
            print(json.dumps(done), flush=True)
    """
)
ROUNDS = 6


def test_two_sweeps_started_at_once_never_both_write(tmp_path, whole):
    """Two processes, imported and waiting; one file releases both at once, six times
    over. Each time exactly one evaluates the points; the other is refused in one line,
    or (had it come after the first finished) finds every point done."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, json.dumps(SPEC), str(tmp_path), me, str(ROUNDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for me in ("a", "b")
    ]
    for i in range(ROUNDS):
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{i}-{me}").exists() for me in "ab"):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.001)
        (tmp_path / f"go-{i}").touch()
    outputs = [p.communicate(timeout=120)[0].splitlines() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    refusals = 0
    for i in range(ROUNDS):
        results = [json.loads(lines[i]) for lines in outputs]
        ran = [r for r in results if "evaluated" in r]
        assert sum(r["evaluated"] for r in ran) == 48, results
        for result in results:
            if "refused" in result:
                refusals += 1
                assert "another sweep is writing to it right now" in result["refused"]
                assert "\n" not in result["refused"]
            elif result["evaluated"] == 0:
                assert result["skipped"] == 48  # it started after the winner had finished
        _complete(tmp_path / f"out-{i}", whole)
    print(f"{refusals} of {ROUNDS} rounds had one sweep refused")


def test_the_cli_refuses_a_second_writer_in_one_line(tmp_path, whole):
    from einsim.sweeps import parse_spec
    from einsim.sweeps.store import Store

    out, spec_path = tmp_path / "out.parquet", tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    holder = Store(out, parse_spec(SPEC))
    try:
        line = _one_error_line(
            _cli("sweep", str(spec_path), "-o", str(out)), "another sweep is writing"
        )
        assert f"pid {os.getpid()} on {socket.gethostname()}" in line
    finally:
        holder.close()
    assert not (out / LOCK).exists()  # released on close
    assert _cli("sweep", str(spec_path), "-o", str(out)).returncode == 0
    _complete(out, whole)


def _write_lock(out: Path, pid: int, host: str) -> None:
    out.mkdir(exist_ok=True)
    body = {"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00"}
    (out / LOCK).write_text(json.dumps(body))


def test_a_stale_lock_of_a_dead_run_is_taken_over(tmp_path, whole):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process
    out = tmp_path / "out.parquet"
    _write_lock(out, dead.pid, socket.gethostname())
    with pytest.warns(SweepWarning, match=f"no longer running \\(pid {dead.pid} on"):
        result = sweep(SPEC, out, progress=False)
    assert result.evaluated == 48
    _complete(out, whole)


def test_a_lock_naming_a_reused_pid_is_stale_when_nobody_holds_it(tmp_path):
    """A live process that is not a sweep (the pid was reused): nobody holds the lock's
    flock, so the lock is stale."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "out.parquet"
        _write_lock(out, bystander.pid, socket.gethostname())
        with pytest.warns(SweepWarning, match="took over the lock"):
            assert sweep(SPEC, out, progress=False).evaluated == 48
    finally:
        bystander.kill()
        bystander.wait()


def test_a_lock_from_another_host_is_refused_naming_it(tmp_path):
    out = tmp_path / "out.parquet"
    _write_lock(out, 4242, "elsewhere.example")
    proc = _cli("sweep", "fusemax_pareto", "-o", str(out))
    _one_error_line(proc, "pid 4242 on elsewhere.example", f"delete {out / LOCK}")
    assert (out / LOCK).exists() and not (out / "_einsim_sweep.json").exists()


def test_a_sigkilled_cli_run_leaves_a_lock_the_rerun_takes_over(tmp_path, whole):
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.parquet"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    proc = subprocess.Popen(
        [sys.executable, "-m", "einsim.cli", "sweep", str(spec_path), "-o", str(out)],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (out / LOCK).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = _cli("sweep", str(spec_path), "-o", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert len(rerun.stderr.strip().splitlines()) <= 1  # at most the take-over warning
    _complete(out, whole)


def test_sigterm_releases_the_lock(tmp_path):
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.parquet"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    proc = subprocess.Popen(
        [sys.executable, "-m", "einsim.cli", "sweep", str(spec_path), "-o", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / LOCK).exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before SIGTERM arrived")
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "einsim: terminated; finished chunks are kept, rerun to resume"
    ]
    assert not (out / LOCK).exists()


# -- the manifest --------------------------------------------------------------------------


def test_a_leftover_manifest_temp_is_cleaned_not_damage(tmp_path, whole):
    out = tmp_path / "out.parquet"
    out.mkdir()
    (out / ".manifest.tmp").write_text('{"format": "einsim-sw')  # ENOSPC mid-write
    assert sweep(SPEC, out, progress=False).evaluated == 48
    _complete(out, whole)


# -- disk full and read-only ---------------------------------------------------------------


def test_disk_full_is_one_line_and_the_directory_resumable(tmp_path, whole):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    with _tmpfs(tmp_path / "disk", "160k") as disk:
        out = disk / "out.parquet"
        full = _cli("sweep", str(spec_path), "-o", str(out), "--chunk-size", "2")
        line = _one_error_line(full, "No space left on device", "rerun")
        assert "while writing part-" in line
        assert not list(out.glob(".*.tmp")) and not (out / LOCK).exists()
        done = len(pd.read_parquet(out)) if list(out.glob("part-*")) else 0
        assert 0 < done < 48
        _remount(disk, "size=16m")
        rerun = _cli("sweep", str(spec_path), "-o", str(out), "--chunk-size", "2")
        assert rerun.returncode == 0, rerun.stderr
        assert f"({done:,} already done), {48 - done:,} evaluated" in rerun.stdout
        _complete(out, whole)


def _fill(disk: Path, leave_bytes: int) -> Path:
    """Fill `disk` up, then free `leave_bytes` (tmpfs counts whole pages)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    os.truncate(filler, max(0, filler.stat().st_size - leave_bytes))
    return filler


def test_disk_full_while_writing_the_manifest_leaves_no_temporary(tmp_path, whole):
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "sub" / "out.parquet"
        out.mkdir(parents=True)
        filler = _fill(disk, 4096)  # room for the lock file's page, not the manifest
        proc = _cli("sweep", "fusemax_pareto", "-o", str(out))
        _one_error_line(proc, "No space left on device while writing _einsim_sweep.json")
        assert sorted(p.name for p in out.iterdir()) == []  # no temporary, no lock
        filler.unlink()
        assert _cli("sweep", "fusemax_pareto", "-o", str(out)).returncode == 0
        assert pd.read_parquet(out).point_id.is_unique


def test_read_only_output_is_one_line_and_resumable(tmp_path, whole):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    with _tmpfs(tmp_path / "disk", "16m") as disk:
        out = disk / "out.parquet"
        half = {**SPEC, "axes": {**SPEC["axes"], "seq_len": [1024, 4096]}}
        sweep(half, disk / "other.parquet", progress=False)  # something else on the disk
        # a run into `out` that stopped half-way: its parts and manifest, as written
        first = subprocess.Popen(
            [sys.executable, "-m", "einsim.cli", "sweep", str(spec_path), "-o", str(out)],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not list(out.glob("part-*")) and time.monotonic() < deadline:
            time.sleep(0.002)
        first.send_signal(signal.SIGKILL)
        first.wait()
        _remount(disk, "ro")
        try:
            refused = _cli("sweep", str(spec_path), "-o", str(out))
            _one_error_line(refused, "Read-only file system", "choose a writable output")
            fresh = _cli("sweep", str(spec_path), "-o", str(disk / "new.parquet"))
            _one_error_line(fresh, "Read-only file system")
        finally:
            _remount(disk, "rw")
        rerun = _cli("sweep", str(spec_path), "-o", str(out))
        assert rerun.returncode == 0, rerun.stderr
        _complete(out, whole)


# -- a killed pool worker ------------------------------------------------------------------


def test_a_killed_pool_worker_is_retried_in_process(tmp_path, whole):
    import multiprocessing

    out, killed = tmp_path / "out.parquet", []

    def kill_one_worker(state):
        if state.done >= 6 and not killed:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    with pytest.warns(SweepWarning, match="a worker process died") as caught:
        result = sweep(SPEC, out, workers=2, chunk_size=3, progress=kill_one_worker)
    assert killed and result.evaluated == 48
    died = [w for w in caught if "worker process died" in str(w.message)]
    assert len(died) == 1 and "\n" not in str(died[0].message)
    _complete(out, whole)


KILLER = textwrap.dedent(
    """
    import sys, time
    import einsim.sweeps.run as run
    evaluate_table = run.evaluate_table
    def slowly(*args):  # a few ms per chunk, so the test can kill a worker mid-run
        time.sleep(0.05)
        return evaluate_table(*args)
    run.evaluate_table = slowly
    from einsim.cli import main
    main(sys.argv[1:])
    """
)


def test_the_cli_reports_a_killed_worker_in_one_line_and_loses_nothing(tmp_path, whole):
    spec_path, out = tmp_path / "spec.yaml", tmp_path / "out.parquet"
    spec_path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    argv = ["sweep", str(spec_path), "-o", str(out), "--workers", "2", "--chunk-size", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        workers = [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]
        if workers and len(list(out.glob("part-*"))) >= 2:
            workers[0].kill()
            break
        time.sleep(0.005)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("einsim: warning: sweep: a worker process died")
    assert "48 points" in stdout
    _complete(out, whole)


def _dies_on_the_first_point(spec, indices, schema):
    if 0 in indices:
        os._exit(1)  # a point that takes its worker down every time (a crash, the OOM killer)
    from einsim.sweeps.store import evaluate_table

    return evaluate_table(spec, indices, schema)


def test_a_chunk_that_always_kills_its_worker_stops_after_bounded_retries(
    tmp_path, monkeypatch, whole
):
    from einsim.einsum import BackendUnavailable
    from einsim.sweeps import run

    monkeypatch.setattr(run, "evaluate_table", _dies_on_the_first_point)
    out = tmp_path / "out.parquet"
    with (
        pytest.warns(SweepWarning, match="a worker process died"),
        pytest.raises(BackendUnavailable, match=r"died 4 times on the same points") as info,
    ):
        sweep(SPEC, out, workers=2, chunk_size=4, progress=False)
    assert "\n" not in str(info.value) and "rerun to resume" in str(info.value)
    kept = pd.read_parquet(out)
    assert 0 < len(kept) < 48 and kept.point_id.is_unique and not (out / LOCK).exists()
    monkeypatch.undo()
    assert sweep(SPEC, out, progress=False).evaluated == 48 - len(kept)
    _complete(out, whole)
