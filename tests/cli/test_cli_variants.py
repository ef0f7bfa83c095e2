"""`einsim variants` pass counts, `einsim show` with variant parameters, `einsim check`."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from einsim.cli import main
from einsim.workloads import ATTENTION, pass_counts


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_variants_lists_pass_counts_of_every_form():
    output = run("variants").output
    assert "passes over M: stable_3pass 3; online_2pass M1=2,M0=3; fusemax_1pass M1=1,M0=2" in (
        output
    )
    assert output.count("passes over M:") == len(ATTENTION)
    assert "linear: " in output and "direct 1; blocked M1=1,M0=1" in output


def test_pass_counts_cover_every_form():
    for entry in ATTENTION.entries():
        forms = entry.meta.get("forms", ())
        assert len(pass_counts(entry.name)) == max(1, len(forms))


def test_show_with_variant_parameters():
    result = run("show", "sliding_window", "--param", "W=128", "--param", "form=stable_3pass")
    assert result.exit_code == 0
    assert "sizes: W=128" in result.output and "where m <= p and p - m < W" in result.output


@pytest.mark.parametrize(
    "args", [["causal"], ["moba", "--param", "TOPK=2"], ["linear", "--param", "form=direct"]]
)
def test_check_prints_small_errors(args):
    result = run("check", *args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "vs its direct formula" in lines[0]
    assert all(line.endswith("ok") for line in lines[1:]) and len(lines) > 1


def test_check_bad_parameter_exits_2_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "einsim.cli", "check", "causal", "--param", "W=3"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown parameter(s) W" in lines[0]
