"""`einsim compare` and `einsim estimate`: the matrix of estimates and its files agree with
`einsim.estimate` called directly; bad input is one line and exit status 2."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from einsim.cli import main
from einsim.model_estimate import estimate


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


COMPARE = [
    "compare",
    "llama3_8b",
    "--targets",
    "h100_sxm,a100_sxm,fusemax_cloud",
    "--seq",
    "512,2048",
]


@pytest.mark.parametrize("ext", ["csv", "json", "parquet"])
def test_compare_writes_the_matrix_with_speedups(tmp_path, ext):
    out = tmp_path / f"m.{ext}"
    code, stdout, stderr = run(*COMPARE, "--baseline", "a100_sxm", "-o", out)
    assert code == 0, stderr
    table = {
        "csv": pd.read_csv,
        "json": lambda p: pd.read_json(p, orient="records"),
        "parquet": pd.read_parquet,
    }[ext](out)
    assert len(table) == 3 * 2 * 2  # targets x phases x seq
    for row in table.itertuples():
        direct = estimate("llama3_8b", row.target, row.phase, int(row.seq_len), 1)
        np.testing.assert_allclose(row.latency_s, direct.latency_s, rtol=1e-9)
        base = estimate("llama3_8b", "a100_sxm", row.phase, int(row.seq_len), 1)
        np.testing.assert_allclose(row.speedup, base.latency_s / direct.latency_s, rtol=1e-9)
    assert "speedup" in stdout and "a100_sxm" in stdout and "not modelled" in stdout


def test_compare_attention_matrix_and_html_plot(tmp_path):
    plot = tmp_path / "c.html"
    code, stdout, stderr = run(
        "compare", "mistral_7b", "--targets", "h100_sxm", "--attention",
        "fusemax_1pass,sliding_window", "--seq", "1024,4096", "--phase", "prefill",
        "--format", "json", "--plot", plot,
    )  # fmt: skip
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert {r["attention"] for r in rows} == {"fusemax_1pass", "sliding_window"}
    assert all(r["speedup"] == 1.0 for r in rows)  # the only target is the baseline
    html = plot.read_text()
    assert "plotly" in html and "latency vs sequence length" in html


def test_estimate_prints_ttft_and_writes_the_breakdown(tmp_path):
    out = tmp_path / "b.csv"
    code, stdout, stderr = run(
        "estimate", "gemma2_9b", "--target", "h100_sxm", "--seq", "8192", "-o", out
    )
    assert code == 0, stderr
    assert "time to first token" in stdout and "energy per token: not modelled" in stdout
    frame = pd.read_csv(out)
    direct = estimate("gemma2_9b", "h100_sxm", "prefill", 8192)
    np.testing.assert_allclose(frame.latency_s.sum(), direct.latency_s, rtol=1e-9)
    assert set(frame.layer[frame.operator == "attention"]) == set(range(42))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "llama3_8b", "--targets", "h100_sxm", "--seq", "0"], "--seq"),
        (["compare", "llama3_8b", "--targets", "h100_sxm", "--baseline", "tpu"], "baseline"),
        (["compare", "llama3_8b", "--targets", "h100_sxm", "-o", "x.txt"], ".csv"),
        (["compare", "nope", "--targets", "h100_sxm"], "unknown model"),
        (["estimate", "llama3_8b", "--target", "h100_sxm", "--attention", "zz"], "attention"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "x.txt" else a for a in args]
    code, _, stderr = run(*args)
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1


PLOT = ["compare", "llama3_8b", "--targets", "h100_sxm", "--seq", "512", "--phase", "decode"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _browser_or_skip():
    """kaleido >= 1 renders with a local Chrome/Chromium (`.ci/run` installs Debian's)."""
    pytest.importorskip("kaleido", reason="static plots need the plot extra (kaleido)")
    import shutil

    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chrome/Chromium for kaleido: apt-get install chromium (.ci/run does)")


@pytest.mark.slow
def test_static_plots_are_png_and_svg_files(tmp_path):
    _browser_or_skip()
    code, stdout, stderr = run(*PLOT, "--plot", tmp_path / "c.png")
    assert code == 0, stderr
    for name in ("c.png", "c_vs_seq.png"):  # the bars and the latency-vs-seq figure
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 300 and height >= 200  # plotly's default 700 x 500, not an empty image
        assert f"written {tmp_path / name}" in stdout
    code, _, stderr = run(*PLOT, "--plot", tmp_path / "c.svg")
    assert code == 0, stderr
    svg = (tmp_path / "c.svg").read_text()
    assert svg.startswith("<svg") and "h100_sxm" in svg  # the legend names the target


def test_static_plot_without_kaleido_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido raises ImportError
    code, _, stderr = run(*PLOT, "--plot", tmp_path / "c.png")
    assert code == 2 and "kaleido" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()


@pytest.mark.slow
def test_static_plot_without_a_browser_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("kaleido")
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    code, _, stderr = run(*PLOT, "--plot", tmp_path / "c.png")
    assert code == 2 and "chrom" in stderr.lower() and len(stderr.strip().splitlines()) == 1
