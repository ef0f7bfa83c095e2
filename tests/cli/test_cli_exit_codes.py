"""The exit-status contract, as a shell sees it: 0 success; 1 it ran but the result is
invalid (a mapping that does not fit, a sweep whose points all failed); 2 bad input or
an OS error, with exactly one line on stderr and no traceback unless `--debug`."""

import json
import subprocess
import sys
from importlib import resources

import pytest
import yaml


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "einsim.cli", *args], capture_output=True, text=True, timeout=300
    )


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("einsim: error: ")
    return lines[0]


def test_an_os_error_is_one_line_and_exit_2(tmp_path):
    best = tmp_path / "missing-folder" / "best.yaml"
    proc = run(
        *("map", "--variant", "gemm", "--arch", "systolic", "--shape", "M=64,N=64,K=64"),
        *("--strategy", "random", "--budget", "20", "-o", str(best)),
    )
    line = _one_error_line(proc)
    assert "No such file or directory" in line and str(best) in line


def test_a_sweep_output_under_a_file_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    line = _one_error_line(run("sweep", "fusemax_pareto", "-o", str(tmp_path / "afile" / "o")))
    assert "Not a directory" in line and "afile" in line


def test_debug_shows_the_traceback_and_still_the_line():
    proc = run("--debug", "show", "nope")
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("einsim: error: unknown cascade 'nope'")


def _oversized_mapping(tmp_path):
    """The bundled FuseMax mapping with 4096 query rows per buffer tile instead of `fit`."""
    text = resources.files("einsim.simulator").joinpath("mappings", "fusemax.yaml").read_text()
    data = yaml.safe_load(text)
    for loop in data["kernels"][0]["loops"]:
        if loop["level"] == "GB":
            loop["factor"] = 4096
    path = tmp_path / "oversized.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_evaluate_of_a_mapping_that_does_not_fit_exits_1(tmp_path, fmt):
    proc = run(
        *("evaluate", "--variant", "fusemax", "--arch", "fusemax_cloud"),
        *("--mapping", str(_oversized_mapping(tmp_path))),
        *("--shape", "B=1,H=1,E=64,F=64,M=65536,P=65536", "--format", fmt),
        *("--set", "levels.GB.capacity_bytes=65536"),
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("einsim: invalid: the mapping does not fit")
    assert "capacity 65536 B" in lines[0]
    if fmt == "json":
        assert json.loads(proc.stdout)["valid"] is False  # the report is still printed


def _sweep_spec(tmp_path, capacities, name="caps"):
    spec = {
        "fixed": {
            "model": "bert_base",
            "seq_len": 1024,
            "arch": "fusemax_cloud",
            "mapping": "fusemax",
        },
        "axes": {"arch.levels.GB.capacity_bytes": capacities},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_sweep_whose_points_all_failed_exits_1(tmp_path):
    proc = run("sweep", str(_sweep_spec(tmp_path, [1024, 2048])), "-o", str(tmp_path / "o"))
    assert proc.returncode == 1, proc.stderr
    assert "2 points, 2 evaluated" in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "every point evaluated failed (2 invalid, 0 raised)" in lines[0]


def test_a_sweep_with_one_valid_point_exits_0(tmp_path):
    spec = _sweep_spec(tmp_path, [1024, 16 * 2**20])
    proc = run("sweep", str(spec), "-o", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert "1 invalid" in proc.stdout


def test_duplicates_are_one_warning_line_and_evaluated_once(tmp_path):
    spec = _sweep_spec(tmp_path, [16 * 2**20, 8 * 2**20, 16 * 2**20])
    proc = run("sweep", str(spec), "-o", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"einsim: warning: {spec}: axes.arch.levels.GB.capacity_bytes: 1 duplicate value(s) "
        f'merged (first: {{"arch.levels.GB.capacity_bytes":{16 * 2**20}}}); each point is '
        "evaluated once"
    ]
    assert "2 points, 2 evaluated" in proc.stdout


def test_max_points_bounds_a_sweep_and_lifts_the_bound(tmp_path):
    spec = _sweep_spec(tmp_path, [8 * 2**20, 16 * 2**20, 32 * 2**20])
    refused = run("sweep", str(spec), "-o", str(tmp_path / "o"), "--max-points", "2")
    assert "3 values, more than the 2 points" in _one_error_line(refused)
    assert not (tmp_path / "o").exists()
    assert run("sweep", str(spec), "-o", str(tmp_path / "o"), "--max-points", "3").returncode == 0


def test_a_bug_is_one_line_and_exit_3_and_debug_shows_the_traceback(monkeypatch):
    from click.testing import CliRunner

    import einsim.workloads
    from einsim.cli import main

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(einsim.workloads, "cascade", broken)
    plain = CliRunner().invoke(main, ["show", "causal"])
    assert plain.exit_code == 3
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in plain.stderr
    assert lines[0].startswith("einsim: internal error: ZeroDivisionError: a bug")
    debug = CliRunner().invoke(main, ["--debug", "show", "causal"])
    assert debug.exit_code == 3 and "Traceback" in debug.stderr
