"""`einsim evaluate` and `einsim reproduce` as a shell sees them."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "einsim.cli", *args], capture_output=True, text=True
    )


BASE = ["evaluate", "--variant", "fusemax", "--arch", "fusemax_cloud", "--mapping", "fusemax"]


def test_evaluate_json_has_the_documented_fields():
    proc = run(*BASE, "--shape", "B=64,H=12,E=64,F=64,M=1024,P=1024", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for key in (
        "latency_s",
        "cycles",
        "energy_pj",
        "dram_bytes",
        "valid",
        "utilization",
        "per_einsum",
    ):
        assert key in report
    assert abs(report["latency_s"] / 2.01314e-3 - 1) < 0.01  # the published BERT 1K point


def test_evaluate_set_override_changes_the_answer():
    shape = "B=1,H=1,E=64,F=64,M=1024,P=1024"
    full = json.loads(run(*BASE, "--shape", shape, "--format", "json").stdout)
    small = json.loads(
        run(
            *BASE,
            "--shape",
            shape,
            "--set",
            "units.2d.rows=64",
            "--set",
            "units.1d.lanes=64",
            "--format",
            "json",
        ).stdout
    )
    assert small["latency_s"] > full["latency_s"]


def test_evaluate_bad_input_one_line_exit_2():
    for extra in (["--shape", "M=x"], ["--shape", "M=1024", "--set", "units.9d.rows=1"]):
        proc = run(*BASE, *extra)
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_reproduce_csv_columns():
    proc = run("reproduce", "fusemax", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split(",")
    assert header == [
        "model",
        "seq_len",
        "config",
        "latency_s",
        "energy_pj",
        "util_2d",
        "util_1d",
        "dram_bytes",
        "published_latency_s",
        "published_energy_pj",
    ]
    assert len(proc.stdout.splitlines()) == 1 + 4 * 6 * 5


def test_reproduce_end_to_end_csv_has_the_layer_columns():
    proc = run("reproduce", "fusemax", "--end-to-end", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split(",")
    assert header[-4:] == ["matmul_latency_s", "matmul_energy_pj", "e2e_latency_s", "e2e_energy_pj"]
    assert len(proc.stdout.splitlines()) == 1 + 4 * 6 * 5


def test_reproduce_end_to_end_prints_its_headline():
    from click.testing import CliRunner

    from einsim.cli import main

    result = CliRunner().invoke(main, ["reproduce", "fusemax", "--end-to-end"])
    assert result.exit_code == 0, result.output
    last = result.output.splitlines()[-1]
    assert last.startswith("End to end") and "(published 5.3x)" in last


def test_evaluate_on_a_gpu_preset_takes_a_tiling_and_matches_the_gpu_model():
    from einsim import attention
    from einsim.simulator import load_architecture
    from einsim.simulator.gpu import evaluate_gpu, parse_gpu_mapping

    shape = "B=2,H=8,E=64,F=64,M=4096,P=4096"
    tiling = "fused:Br=128,Bc=64,stages=2,warps=4"
    result = run(
        "evaluate",
        "--variant",
        "causal",
        "--arch",
        "h100_sxm",
        "--mapping",
        tiling,
        "--shape",
        shape,
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    expected = evaluate_gpu(
        attention("causal"),
        load_architecture("h100_sxm"),
        parse_gpu_mapping(tiling),
        shape=dict(B=2, H=8, E=64, F=64, M=4096, P=4096),
    )
    assert json.loads(result.stdout)["latency_s"] == expected.latency_s
    bad = run(
        "evaluate",
        "--variant",
        "causal",
        "--arch",
        "h100_sxm",
        "--mapping",
        "fusemax",
        "--shape",
        shape,
    )
    assert bad.returncode == 2 and "kernel must be one of" in bad.stderr
