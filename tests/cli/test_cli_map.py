"""`einsim map`: the best mapping written with -o loads in `einsim
evaluate` and gives the same latency; bad input is one line and exit status 2."""

import json

from click.testing import CliRunner

from einsim.cli import main

MAP = ["map", "--variant", "gemm", "--arch", "systolic", "--shape", "M=32,N=16,K=8"]
SMALL = ["--set", "units.2d.rows=8", "--set", "units.2d.cols=8", "--budget", "3000"]


def run(*args):
    """In process (no interpreter start per call): exit status, stdout and stderr."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Proc(result.exit_code, result.stdout, result.stderr)


class _Proc:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def test_map_writes_a_mapping_that_evaluate_loads_with_the_same_latency(tmp_path):
    best = tmp_path / "best.yaml"
    proc = run(*MAP, *SMALL, "--strategy", "greedy", "--format", "json", "-o", str(best))
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["evaluated"] <= 3000 and found["evaluated"] > 0
    assert {"pruned", "invalid", "wall_s", "explain", "mapping"} <= set(found)
    text = best.read_text()
    assert text.startswith("# Found by: einsim map --variant gemm")
    evaluate = [
        *("evaluate", "--variant", "gemm", "--arch", "systolic", "--mapping", str(best)),
        *("--shape", "M=32,N=16,K=8", "--set", "units.2d.rows=8", "--set", "units.2d.cols=8"),
    ]
    again = run(*evaluate, "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["latency_s"] == found["latency_s"]
    # the file exists now: refused without --force, replaced with it
    proc = run(*MAP, *SMALL, "-o", str(best))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"einsim: error: -o {best}: the file exists; pass --force to overwrite it"
    ]
    assert best.read_text() == text
    proc = run(*MAP, *SMALL, "--objective", "energy", "-o", str(best), "--force")
    assert proc.returncode == 0, proc.stderr
    assert "--objective energy" in best.read_text().splitlines()[0]


def test_map_table_shows_the_numbers_counts_and_the_explanation():
    proc = run(*MAP, *SMALL, "--strategy", "random", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    for word in ("latency_s", "energy_pj", "util_2d", "evaluated", "pruned", "invalid", "wall_s"):
        assert word in proc.stdout
    assert "Best latency mapping of gemm on systolic" in proc.stdout


def test_map_bad_input_one_line_exit_2(tmp_path):
    cases = [
        ["--strategy", "bayes"],
        ["--shape", "M=x"],
        ["--constraints", str(tmp_path / "missing.yaml")],
        ["--strategy", "exhaustive", "--budget", "10"],
    ]
    for extra in cases:
        proc = run(*MAP, *SMALL, *extra)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    bad = tmp_path / "c.yaml"
    bad.write_text("factorz: {GB.M: 2}\n")
    proc = run(*MAP, *SMALL, "--constraints", str(bad))
    assert proc.returncode == 2 and "known keys: fusion" in proc.stderr
