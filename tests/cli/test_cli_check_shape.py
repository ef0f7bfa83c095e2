"""`einsim check --shape`: the variant checked at the sizes given (`M=P=...` sets both)."""

import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from einsim.cli import main
from einsim.workloads import attention, check, direct
from einsim.workloads.direct import random_inputs


def test_check_runs_at_the_shape_given():
    result = CliRunner().invoke(main, ["check", "sliding_window", "--shape", "M=P=300,E=F=5"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The case's E, F, M, P replaced; its small tile M0 dropped for the default.
    assert (
        lines[0] == "sliding_window on random inputs (E=5, F=5, M=300, P=300) vs its direct formula"
    )
    assert [line.split()[0] for line in lines[1:]] == [
        "stable_3pass",
        "online_2pass",
        "fusemax_1pass",
    ]
    assert all(line.endswith("ok") for line in lines[1:])


def test_check_shape_keeps_what_it_does_not_name():
    """Only the named sizes change; M0 stays when it is named; the errors are measured
    against an independent evaluation of the same inputs."""
    result = check("causal", shape={"M": 40, "P": 33, "M0": 7})
    assert dict(result.shape) == {"E": 4, "F": 3, "M": 40, "P": 33, "M0": 7}
    shape = dict(result.shape)
    cascade = attention("causal")
    inputs = random_inputs(cascade, shape, np.random.default_rng(1))
    got = cascade.evaluate(inputs, shape, keep=("AV",))["AV"]
    np.testing.assert_allclose(got, direct("causal", inputs), rtol=1e-9, atol=1e-12)
    assert result.ok and len(result.max_error) == 3


def test_check_bad_shape_exits_2_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "einsim.cli", "check", "causal", "--shape", "M=P=many"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--shape M=many: expected an integer size" in lines[0]
