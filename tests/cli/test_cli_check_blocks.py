"""`einsim check --shape`: the test case's block sizes give way to the variant's defaults
(a case's BS=2 at M = P = 4096 would make flexprefill's block-by-block Einsums cubic)."""

from click.testing import CliRunner

from einsim.cli import check_block_defaults, main
from einsim.workloads import ATTENTION
from einsim.workloads.attention import attention, parameters


def _case(name):
    return ATTENTION.entry(name).meta["cases"][0][0]


def test_a_case_block_size_takes_the_registry_default_at_a_real_shape():
    default = parameters("flexprefill")["BS"]
    assert _case("flexprefill")["BS"] != default
    blocks = check_block_defaults("flexprefill", {"M": 4096, "P": 4096}, {})
    assert blocks == {"BS": default}
    built = dict(attention("flexprefill", **{**_case("flexprefill"), **blocks}).default_sizes)
    assert built["MB"] == built["PQ"] == default


def test_block_sizes_stay_when_given_too_large_or_without_a_shape():
    default = parameters("flexprefill")["BS"]
    assert check_block_defaults("flexprefill", {"M": 4096, "P": 4096}, {"BS": 4}) == {}
    assert check_block_defaults("flexprefill", {"M": default - 1, "P": 4096}, {}) == {}
    assert check_block_defaults("flexprefill", None, {}) == {}
    assert check_block_defaults("flexprefill", {"E": 8}, {}) == {}
    # Parameters that are not block sizes stay as the case sets them.
    assert "GAMMA" not in check_block_defaults("flexprefill", {"M": 4096, "P": 4096}, {})
    assert check_block_defaults("causal", {"M": 4096, "P": 4096}, {}) == {}


def test_check_prints_the_block_size_it_ran():
    default = parameters("flexprefill")["BS"]
    size = default + 3
    result = CliRunner().invoke(main, ["check", "flexprefill", "--shape", f"M=P={size}"])
    assert result.exit_code == 0, result.output
    assert f"M={size}" in result.output and f"BS={default}" in result.output
    assert result.output.count(" ok") == 3
