"""The dashboard in a real browser: headless Chromium driven by Playwright.

Each test loads the page served from a thread, acts as a user would (dropdowns, typing,
uploads, clicks on a plotted point) and checks the numbers on the page against
`einsim.simulator.evaluate` called directly. A screenshot of each page is saved (see the
`screenshots` fixture).
"""

from importlib import resources

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("playwright")
from einsim.dashboard.app import create_app, serve_in_thread
from einsim.dashboard.design import DesignSpec, evaluate_design
from einsim.dashboard.validation import agreement
from einsim.simulator import evaluate, load_architecture, load_mapping
from einsim.workloads import workload

# A browser per test: `-m "not slow"` leaves them out of a quick run.
pytestmark = pytest.mark.slow
TIMEOUT_MS = 20_000
FLAT = dict(algorithm="stable_3pass", arch="flat_cloud", mapping="flat")


ARRAYS = ("units.2d.rows", "units.2d.cols", "units.1d.lanes")


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    """A small sweep result as `einsim sweep` writes it (FuseMax's Pareto sweep in small):
    FuseMax and FLAT on BERT at 1K tokens with arrays of 64, 128 and 256, evaluated for
    real, and one invalid point (FLAT's tiles overflow a 100 kB buffer)."""
    rows = []
    fusemax = dict(algorithm="fusemax_1pass", arch="fusemax_cloud", mapping="fusemax")
    points = [
        (case, tuple(zip(ARRAYS, (n, n, n), strict=True)))
        for case in (fusemax, FLAT)
        for n in (64, 128, 256)
    ]
    tiny_buffer = (*zip(ARRAYS, (256, 256, 256), strict=True), ("levels.GB.capacity_bytes", 1e5))
    for case, overrides in [*points, (FLAT, tiny_buffer)]:
        sizes = [n for _, n in overrides]
        report = evaluate_design(DesignSpec(seq_len=1024, overrides=overrides, **case)).report
        rows.append(
            {
                "point_id": f"{case['mapping']}-{'x'.join(map(str, sizes))}",
                "model": "bert_base",
                "seq_len": 1024,
                **case,
                **{f"arch.{path}": n for path, n in overrides},
                "latency_s": report.latency_s,
                "energy_pj": report.energy_pj,
                "dram_bytes": report.dram_bytes,
                "util_2d": report.utilization["2d"],
                "valid": report.valid,
                "error": None,
            }
        )
    path = tmp_path_factory.mktemp("sweep") / "results.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def url(sweep_file):
    served = serve_in_thread(create_app(data=sweep_file))
    yield served.url
    served.shutdown()


def choose(page, component_id: str, value: str) -> None:
    """Pick `value` in a Dash dropdown as a user does: open it, click the option."""
    page.click(f"#{component_id}")
    page.click(f'.dash-dropdown-option:has(input[value="{value}"])')


def type_number(page, component_id: str, value) -> None:
    page.fill(f"#{component_id}", str(value))
    page.press(f"#{component_id}", "Enter")


def wait_for_title(page, selector: str, expected: float, rtol: float = 1e-9) -> float:
    """Wait until the element's exact value (its title) is `expected`; return it."""
    page.wait_for_function(
        """([sel, v, tol]) => {
            const el = document.querySelector(sel);
            return el && Math.abs(parseFloat(el.title) / v - 1) < tol;
        }""",
        arg=[selector, expected, rtol],
        timeout=TIMEOUT_MS,
    )
    return float(page.get_attribute(selector, "title"))


def figure_data(page, graph_id: str):
    """The traces plotly drew in a dcc.Graph (what the user sees)."""
    return page.evaluate(
        """id => document.querySelector('#' + id + ' .js-plotly-plot')._fullData.map(
            t => ({type: t.type, name: t.name, x: Array.from(t.x || []),
                   y: Array.from(t.y || []), text: t.text ? Array.from(t.text) : null,
                   customdata: t.customdata ? Array.from(t.customdata) : null}))""",
        graph_id,
    )


def direct(model: str, seq_len: int, algorithm="fusemax_1pass", arch="fusemax_cloud",
           mapping="fusemax"):  # fmt: skip
    w = workload(model, algorithm, seq_len)
    return evaluate(
        w.cascade, load_architecture(arch), load_mapping(mapping), {**w.sizes, **dict(w.outer)}
    )


def test_design_page_follows_model_and_sequence_length(page, url, screenshots):
    page.goto(url)
    default = direct("bert_base", 4096)
    wait_for_title(page, "#metric-latency", default.latency_s)

    choose(page, "model", "xlm")
    type_number(page, "seq-len", 2048)
    expected = direct("xlm", 2048)
    assert expected.latency_s != default.latency_s
    wait_for_title(page, "#metric-latency", expected.latency_s)
    np.testing.assert_allclose(
        float(page.get_attribute("#metric-energy", "title")), expected.energy_pj, rtol=1e-12
    )
    util = float(page.get_attribute("#metric-utilization-2d", "title"))
    np.testing.assert_allclose(util, expected.utilization["2d"], rtol=1e-12)

    # The per-Einsum bars are the report's cycles; the energy bars its components.
    page.wait_for_function(
        "v => { const g = document.querySelector('#einsum-graph .js-plotly-plot');"
        " return g && g._fullData && g._fullData.filter(t => t.type === 'bar')"
        ".reduce((s, t) => s + Array.from(t.y).reduce((a, b) => a + b, 0), 0) === v; }",
        arg=float(expected.per_einsum.cycles.sum()),
        timeout=TIMEOUT_MS,
    )
    (energy,) = figure_data(page, "energy-graph")
    shown = dict(zip(energy["x"], energy["y"], strict=True))
    assert shown == pytest.approx({k: v for k, v in expected.energy_by_component_pj.items() if v})
    gantt = figure_data(page, "gantt-graph")
    assert {"QK", "SLNV", "DRAM"} <= {t["name"] for t in gantt}

    # The side-by-side comparison with FLAT gives the speedup and the energy ratio.
    flat = direct("xlm", 2048, **FLAT)
    speedup = wait_for_title(page, "#speedup", flat.latency_s / expected.latency_s)
    assert speedup > 1
    np.testing.assert_allclose(
        float(page.get_attribute("#energy-ratio", "title")),
        expected.energy_pj / flat.energy_pj,
        rtol=1e-9,
    )
    assert page.inner_text("#passes-table").split()[:4] == ["rank", "passes", "E", "1"]
    page.screenshot(path=screenshots / "design.png", full_page=True)


def test_design_page_on_a_gpu_preset(page, url, screenshots):
    from einsim.dashboard.design import DEFAULT_TILING, gpu_summary
    from einsim.simulator.gpu import evaluate_gpu, load_gpu_architecture, parse_gpu_mapping

    page.goto(url)
    type_number(page, "seq-len", 2048)
    wait_for_title(page, "#metric-latency", direct("bert_base", 2048).latency_s)
    assert not page.is_visible("#gpu-tiling")
    w = workload("bert_base", "fusemax_1pass", 2048)
    shape = {**w.sizes, **dict(w.outer)}

    def gpu(tiling, **overrides):
        arch = load_gpu_architecture("h100_sxm", overrides or None)
        return evaluate_gpu(w.cascade, arch, parse_gpu_mapping(tiling), shape=shape)

    # Choosing the H100: the mapping becomes a tiling (prefilled), the numbers the GPU's.
    choose(page, "arch", "h100_sxm")
    page.wait_for_selector("#gpu-tiling", state="visible", timeout=TIMEOUT_MS)
    assert page.input_value("#gpu-tiling") == DEFAULT_TILING
    assert not page.is_visible("#mapping")
    expected = gpu(DEFAULT_TILING)
    wait_for_title(page, "#metric-latency", expected.latency_s, rtol=1e-12)
    result = evaluate_design(DesignSpec(seq_len=2048, arch="h100_sxm"))
    summary = gpu_summary(result)
    np.testing.assert_allclose(
        float(page.get_attribute("#metric-achieved-tflop-s", "title")),
        summary.achieved_flops_per_s / 1e12,
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        float(page.get_attribute("#metric-hbm-traffic", "title")), expected.dram_bytes, rtol=1e-12
    )
    assert page.get_attribute("#metric-bound", "title") == summary.bound
    occupancy = int(expected.kernels[0]["occupancy_ctas_per_sm"])
    assert page.inner_text("#metric-occupancy") == f"{occupancy} CTAs per SM"
    assert page.get_attribute("#metric-energy", "title") == "nan"
    assert page.input_value('[id*="gpu.sms"]') == str(load_gpu_architecture("h100_sxm").sms)
    # Compared with B (FLAT on its spatial array): latency only, energy not available.
    flat = direct("bert_base", 2048, **FLAT)
    wait_for_title(page, "#speedup", flat.latency_s / expected.latency_s)
    assert page.inner_text("#energy-ratio").startswith("n/a")
    page.screenshot(path=screenshots / "design_gpu.png", full_page=True)

    # An edited GPU number and another tiling reach the GPU model.
    page.fill('[id*="gpu.sms"]', "66")
    page.press('[id*="gpu.sms"]', "Enter")
    unfused = "unfused:Br=64,Bc=64,stages=2,warps=4"
    page.fill("#gpu-tiling", unfused)
    page.press("#gpu-tiling", "Enter")
    wait_for_title(page, "#metric-latency", gpu(unfused, **{"gpu.sms": 66}).latency_s)
    kernels = page.inner_text("#gpu-kernels-table")
    assert all(k in kernels for k in ("qk", "softmax", "av"))

    # A cascade the GPU kernels do not implement: the usual one-line message.
    choose(page, "attention", "linear")
    page.wait_for_selector("#design-error >> text=GPU model", timeout=TIMEOUT_MS)
    assert "linear" in page.inner_text("#design-error")
    assert len(page.inner_text("#design-error").strip().splitlines()) == 1


def test_bad_input_shows_a_message_and_the_server_lives_on(page, url, screenshots):
    page.goto(url)
    page.wait_for_selector("#metric-latency", timeout=TIMEOUT_MS)

    type_number(page, "seq-len", 0)
    page.wait_for_selector("#design-error >> text=sequence length", timeout=TIMEOUT_MS)
    # "1k" is refused, naming the field (a number input read it as 1).
    type_number(page, "seq-len", "1k")
    page.wait_for_selector("#design-error >> text=sequence length: '1k'", timeout=TIMEOUT_MS)

    page.set_input_files(
        "#arch-upload input[type=file]",
        files=[{"name": "broken.yaml", "mimeType": "text/yaml", "buffer": b"name: [unclosed\n"}],
    )
    status = page.wait_for_selector("#arch-upload-status >> text=invalid YAML", timeout=TIMEOUT_MS)
    assert "broken.yaml" in status.inner_text() and "line 2" in status.inner_text()
    page.screenshot(path=screenshots / "bad_input.png", full_page=True)

    # A mapping that does not fit: a global buffer of 1 kB.
    type_number(page, "seq-len", 1024)
    page.wait_for_selector("#metric-latency", timeout=TIMEOUT_MS)
    page.fill('[id*="levels.GB.capacity_bytes"]', "1000")
    page.press('[id*="levels.GB.capacity_bytes"]', "Enter")
    page.wait_for_selector("#design-error >> text=InfeasibleError", timeout=TIMEOUT_MS)

    # A valid upload becomes the architecture (its numbers are what the page evaluates).
    text = resources.files("einsim.simulator").joinpath("architectures", "flat_cloud.yaml")
    text = text.read_text()
    page.set_input_files(
        "#arch-upload input[type=file]",
        files=[{"name": "mine.yaml", "mimeType": "text/yaml", "buffer": text.encode()}],
    )
    page.wait_for_selector("#upload-ok", timeout=TIMEOUT_MS)
    choose(page, "algorithm", "stable_3pass")
    wait_for_title(page, "#metric-latency", direct("bert_base", 1024, **FLAT).latency_s)


def test_cascade_page(page, url, screenshots):
    page.goto(url)
    page.wait_for_selector("#metric-latency", timeout=TIMEOUT_MS)
    page.click("text=Cascade")
    page.wait_for_selector("#cascade-graph .js-plotly-plot", timeout=TIMEOUT_MS)
    traces = figure_data(page, "cascade-graph")
    names = {n for t in traces for n in (t["text"] or [])}
    cascade = workload("bert_base", "fusemax_1pass", 4096).cascade
    assert names == {*cascade.input_names, *cascade.order}
    assert {"on 2d", "on 1d", "input"} <= {t["name"] for t in traces}
    page.screenshot(path=screenshots / "cascade.png", full_page=True)


def test_sweep_explorer_opens_a_point(page, url, sweep_file, screenshots):
    frame = pd.read_parquet(sweep_file)
    page.goto(url)
    page.click("text=Sweep explorer")
    valid = frame[frame.valid]
    assert len(valid) == 6 and len(frame) == 7
    page.wait_for_selector("#sweep-loaded >> text=7 points", timeout=TIMEOUT_MS)
    page.wait_for_function(
        "() => { const g = document.querySelector('#sweep-graph .js-plotly-plot');"
        " return g && g._fullData && g._fullData.some(t => t.customdata); }",
        timeout=TIMEOUT_MS,
    )
    traces = [t for t in figure_data(page, "sweep-graph") if t["customdata"]]
    assert sum(len(t["x"]) for t in traces) == len(valid)  # "valid points only"
    title = page.text_content("#sweep-graph .gtitle")
    assert "6 points" in title and "Pareto front" in title, title
    # The filter is the dashboard's own language: code is a one-line error, never run.
    type_number(page, "sweep-query", "@pd.io.common.os.system('true')")
    page.wait_for_selector("#sweep-click-status >> text=unexpected '@'", timeout=TIMEOUT_MS)
    type_number(page, "sweep-query", "arch.units.2d.rows >= 128")
    page.wait_for_function(
        "() => { const t = document.querySelector('#sweep-graph .gtitle');"
        " return t && t.textContent.startsWith('energy_pj vs latency_s: 4 points'); }",
        timeout=TIMEOUT_MS,
    )
    type_number(page, "sweep-query", "")
    page.wait_for_function(
        "() => { const t = document.querySelector('#sweep-graph .gtitle');"
        " return t && t.textContent.includes(': 6 points'); }",
        timeout=TIMEOUT_MS,
    )
    page.screenshot(path=screenshots / "sweep.png", full_page=True)

    point = page.locator("#sweep-graph .scatterlayer .trace .points path").first
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    # The design page opens on that point: its latency is one of the sweep's.
    page.wait_for_function(
        """values => { const el = document.querySelector('#metric-latency');
            return el && values.some(v => Math.abs(parseFloat(el.title) / v - 1) < 1e-12); }""",
        arg=valid.latency_s.tolist(),
        timeout=TIMEOUT_MS,
    )
    shown = float(page.get_attribute("#metric-latency", "title"))
    clicked = frame[np.isclose(frame.latency_s, shown, rtol=1e-12)]
    assert len(clicked) == 1, "the design page shows one of the sweep's points"
    row = clicked.iloc[0]
    for path in ARRAYS:
        shown_size = page.locator(f'[id*="{path}"]').input_value()
        assert int(shown_size) == row[f"arch.{path}"]
    assert page.inner_text("#mapping") == row["mapping"]


def test_gpu_validation_page(page, url, screenshots):
    frame = pd.DataFrame(
        {
            "mapping": ["flash2", "flash2", "flash3", "flash3", "naive"],
            "shape": ["1k", "4k", "1k", "4k", "1k"],
            "model_s": [1.0e-4, 1.5e-3, 0.8e-4, 1.1e-3, 4.0e-4],
            "gpu_s": [1.2e-4, 1.4e-3, 0.9e-4, 1.3e-3, 3.5e-4],
        }
    )
    page.goto(url)
    page.click("text=GPU validation")
    page.set_input_files(
        "#gpu-upload input[type=file]",
        files=[{"name": "v.csv", "mimeType": "text/csv",
                "buffer": frame.to_csv(index=False).encode()}],
    )  # fmt: skip
    page.wait_for_selector("#gpu-loaded", timeout=TIMEOUT_MS)
    # The names differ from predicted_s / measured_s: the user picks the two columns.
    choose(page, "gpu-predicted", "model_s")
    choose(page, "gpu-measured", "gpu_s")
    expected = agreement(frame.model_s, frame.gpu_s)
    wait_for_title(page, "#gpu-mape", expected.mape)
    np.testing.assert_allclose(
        float(page.get_attribute("#gpu-spearman", "title")), expected.spearman, rtol=1e-12
    )
    page.screenshot(path=screenshots / "gpu_validation.png", full_page=True)


def test_search_runs_in_the_background_and_its_mapping_is_shown(page, url, screenshots):
    mapper = pytest.importorskip("einsim.mapper")
    if not hasattr(mapper, "search"):
        pytest.skip("the mapper has no search yet")
    page.goto(url)
    page.wait_for_selector("#metric-latency", timeout=TIMEOUT_MS)
    type_number(page, "seq-len", 1024)
    type_number(page, "search-budget", 500)
    page.click("#search-run")
    # The page answers while the search runs: the status shows progress, then the result.
    page.wait_for_selector("#search-found", timeout=TIMEOUT_MS)
    w = workload("bert_base", "fusemax_1pass", 1024)
    found = mapper.search(
        w.cascade, load_architecture("fusemax_cloud"), {**w.sizes, **dict(w.outer)},
        objective="latency", strategy="greedy", budget=500, seed=0,
    )  # fmt: skip
    wait_for_title(page, "#metric-latency", found.report.latency_s)
    assert "searched" in page.inner_text("#comparison")
    page.screenshot(path=screenshots / "design_searched.png", full_page=True)
