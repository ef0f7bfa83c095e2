"""The `einsim` command: output, formats and exit status 2 with one line on bad input."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from einsim.cli import main
from einsim.workloads import ATTENTION


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("show", "passes", "variants"):
        assert command in result.output


@pytest.mark.parametrize("name", list(ATTENTION))
def test_show_prints_a_parsable_cascade(name):
    from einsim import attention, parse_cascade

    result = run("show", name)
    assert result.exit_code == 0
    assert parse_cascade(result.output, name=name) == attention(name)


def test_show_with_param():
    assert "sizes: M0=64" in run("show", "fusemax", "--param", "M0=64").output


def test_passes_json():
    result = run("passes", "fusemax", "--format", "json")
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert payload["passes"]["M1"] == 1 and payload["passes"]["M0"] == 2


def test_passes_table():
    lines = run("passes", "stable_3pass").output.splitlines()
    assert lines[0].split() == ["rank", "passes"]
    assert ["M", "3"] in [line.split() for line in lines]


def test_variants_lists_registry():
    output = run("variants").output
    for name in ATTENTION:
        assert name in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "unknown cascade 'nope'; known:"),
        (["passes", "nope"], "unknown cascade 'nope'; known:"),
        (["show", "fusemax", "--param", "X=1"], "unknown parameter(s) X"),
        (["show", "fusemax", "--param", "M0"], "expected KEY=VALUE"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    # A real process, so the exit status and stderr are what a shell sees.
    proc = subprocess.run(
        [sys.executable, "-m", "einsim.cli", *args], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in proc.stderr
