"""The dashboard's Model page: its pure functions against `einsim.estimate` called directly,
and the page in a real browser (headless Chromium), with a screenshot."""

import numpy as np
import pandas as pd
import pytest

from einsim.dashboard.model_page import (
    DEFAULT_MODEL,
    DEFAULT_SEQS,
    DEFAULT_TARGETS,
    breakdown_figure,
    run_compare,
)
from einsim.einsum import EinsimError
from einsim.model_estimate import estimate


def test_run_compare_is_the_matrix_of_estimates():
    table = run_compare(
        "gemma2_9b", ["h100_sxm", "a100_sxm"], ["fusemax_1pass"], [2048], ["decode"]
    )
    for row in table.itertuples():
        direct = estimate("gemma2_9b", row.target, "decode", 2048)
        np.testing.assert_allclose(row.latency_s, direct.latency_s, rtol=1e-12)
    assert table.speedup.iloc[0] == 1.0


def test_breakdown_bars_stack_to_the_estimate():
    fig, result = breakdown_figure("mixtral_8x7b", "h100_sxm", "prefill", 1024)
    drawn_ms = sum(float(np.sum(trace.y)) for trace in fig.data)
    np.testing.assert_allclose(drawn_ms, result.latency_s * 1e3, rtol=1e-9)
    assert {trace.name for trace in fig.data} >= {"attention", "FFN_gate", "router", "lm_head"}


def test_empty_choices_are_refused():
    with pytest.raises(EinsimError, match="target"):
        run_compare("llama3_8b", [], ["fusemax_1pass"], [1024], ["prefill"])
    with pytest.raises(EinsimError, match="sequence"):
        run_compare("llama3_8b", ["h100_sxm"], ["fusemax_1pass"], [], ["prefill"])


@pytest.mark.slow
def test_model_page_in_the_browser(page, screenshots):
    pytest.importorskip("playwright")
    from einsim.dashboard.app import create_app, serve_in_thread

    served = serve_in_thread(create_app())
    try:
        page.goto(served.url)
        page.click("text=Model")
        page.click("#model-run")
        page.wait_for_selector("#model-result-table tbody tr", timeout=300_000)
        cells = page.eval_on_selector_all(
            "#model-result-table tbody tr",
            "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))",
        )
        shown = pd.DataFrame(cells).iloc[:, :5]
        shown.columns = ["target", "attention", "phase", "seq_len", "latency_ms"]
        assert len(shown) == len(DEFAULT_TARGETS) * len(DEFAULT_SEQS) * 2
        for row in shown.itertuples():
            direct = estimate(DEFAULT_MODEL, row.target, row.phase, int(row.seq_len))
            np.testing.assert_allclose(float(row.latency_ms), direct.latency_s * 1e3, rtol=1e-3)
        page.wait_for_selector("#model-breakdown .js-plotly-plot", timeout=60_000)
        page.screenshot(path=screenshots / "model.png", full_page=True)
    finally:
        served.shutdown()
