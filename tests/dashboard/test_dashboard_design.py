"""Design points: built and evaluated exactly as `einsim.simulator.evaluate` does."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import einsim.dashboard
from einsim import InfeasibleError, MappingError, SpecError
from einsim.dashboard import choices
from einsim.dashboard.design import (
    DEFAULT_TILING,
    UPLOADED,
    DesignSpec,
    architecture_data,
    build_architecture,
    changed_overrides,
    compare,
    design_target,
    editable_numbers,
    error_message,
    evaluate_design,
    format_assignments,
    gpu_summary,
    is_gpu,
    parse_assignments,
)
from einsim.simulator import Architecture, evaluate, load_architecture, load_mapping
from einsim.simulator.gpu import (
    GpuMapping,
    evaluate_gpu,
    gpu_presets,
    load_gpu_architecture,
    parse_gpu_mapping,
    problem_from_cascade,
    useful_flops,
)
from einsim.workloads import ATTENTION, KERNELS, MODELS, workload
from einsim.workloads import cascade as build_cascade

FLAT = dict(algorithm="stable_3pass", arch="flat_cloud", mapping="flat")


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(einsim.dashboard.__path__)])
def test_docstring_examples(name):
    module = importlib.import_module(f"einsim.dashboard.{name}")
    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


@pytest.mark.parametrize("model", ["bert_base", "xlm", "llama3_8b"])
@pytest.mark.parametrize("seq_len", [1024, 5000])
def test_evaluate_design_is_the_simulator(model, seq_len):
    w = workload(model, "fusemax_1pass", seq_len)
    expected = evaluate(
        w.cascade,
        load_architecture("fusemax_cloud"),
        load_mapping("fusemax"),
        {**w.sizes, **dict(w.outer)},
    )
    got = evaluate_design(DesignSpec(model=model, seq_len=seq_len)).report
    np.testing.assert_allclose(
        [got.latency_s, got.energy_pj, got.dram_bytes],
        [expected.latency_s, expected.energy_pj, expected.dram_bytes],
        rtol=1e-12,
    )


def test_overrides_reach_the_architecture():
    spec = DesignSpec(seq_len=2048, overrides=(("units.2d.rows", 128), ("clock_hz", 1e9)))
    result = evaluate_design(spec)
    assert result.arch.unit("2d").dims == (128, 256)
    assert result.arch.clock_hz == 1e9
    expected = load_architecture("fusemax_cloud", {"units.2d.rows": 128, "clock_hz": 1e9})
    assert result.arch == expected


def test_a_registered_variant_with_parameters():
    result = evaluate_design(
        DesignSpec(seq_len=2048, attention="causal", params=(("M0", 128),), mapping="fusemax")
    )
    assert result.cascade.name == "causal"
    assert dict(result.cascade.default_sizes)["M0"] == 128
    assert result.shape["B"] == MODELS["bert_base"].batch


def test_a_kernel_takes_its_sizes_from_the_model():
    result = evaluate_design(
        DesignSpec(
            attention="gemm", seq_len=512, arch="systolic", mapping="gemm_os", sizes=(("N", 256),)
        )
    )
    assert result.shape == {"K": 768, "M": 512, "N": 256}


@pytest.mark.parametrize("seq_len", [0, -3])
def test_bad_sequence_length_is_a_spec_error(seq_len):
    with pytest.raises(SpecError, match="sequence length"):
        evaluate_design(DesignSpec(seq_len=seq_len))


def test_a_mapping_for_another_cascade_is_a_mapping_error():
    with pytest.raises(MappingError):
        evaluate_design(DesignSpec(algorithm="stable_3pass", mapping="fusemax"))


def test_nothing_fits_is_infeasible():
    spec = DesignSpec(overrides=(("levels.GB.capacity_bytes", 1000),))
    with pytest.raises(InfeasibleError) as caught:
        evaluate_design(spec)
    assert error_message(caught.value).startswith("InfeasibleError: ")


@pytest.mark.parametrize(
    "text, match",
    [
        ("name: [unclosed", "invalid YAML"),
        ("- a list", "expected a mapping"),
        ("name: x\nclock_hz: 1e9\n", "missing required key"),
        ("", "nothing uploaded"),
    ],
)
def test_bad_uploaded_yaml_is_a_readable_spec_error(text, match):
    with pytest.raises(SpecError, match=match):
        build_architecture(DesignSpec(arch=UPLOADED, arch_yaml=text))


def test_uploaded_yaml_is_the_preset_when_identical():
    data, _ = architecture_data(DesignSpec(arch="flat_cloud"))
    import yaml

    uploaded = build_architecture(
        DesignSpec(arch=UPLOADED, arch_yaml=yaml.safe_dump(data, sort_keys=False))
    )
    assert uploaded == load_architecture("flat_cloud")


def test_editable_numbers_and_changed_overrides():
    data, _ = architecture_data(DesignSpec(arch="fusemax_cloud"))
    numbers = editable_numbers(data)
    paths = [n.path for n in numbers]
    assert paths[:4] == ["clock_hz", "units.2d.rows", "units.2d.cols", "units.1d.lanes"]
    assert "levels.GB.capacity_bytes" in paths and "levels.DRAM.bandwidth_bytes_per_s" in paths
    values = {n.path: n.value for n in numbers} | {"units.2d.rows": 128.0}
    assert changed_overrides(numbers, values) == (("units.2d.rows", 128),)
    with pytest.raises(SpecError, match="positive"):
        changed_overrides(numbers, {"units.2d.rows": 0})


def test_assignments_round_trip():
    values = {"M0": 64, "form": "stable_3pass", "causal": True, "b": 0.5}
    assert parse_assignments(format_assignments(values)) == values
    with pytest.raises(SpecError, match="KEY=VALUE"):
        parse_assignments("M0")


def test_fusemax_vs_flat_comparison():
    a = evaluate_design(DesignSpec(seq_len=4096))
    b = evaluate_design(DesignSpec(seq_len=4096, **FLAT))
    c = compare(a, b)
    assert c.speedup == pytest.approx(b.report.latency_s / a.report.latency_s)
    assert c.energy_ratio == pytest.approx(a.report.energy_pj / b.report.energy_pj)
    assert c.speedup > 3 and 0.5 < c.energy_ratio < 1  # FuseMax: faster, less energy


def test_choices_come_from_the_registries():
    assert choices.cascades() == (*ATTENTION, *KERNELS)
    assert choices.models() == tuple(MODELS)
    assert {"fusemax_cloud", "flat_cloud", "systolic"} <= set(choices.spatial_architectures())
    assert choices.gpu_architectures() == tuple(gpu_presets())
    assert choices.architectures() == (
        *choices.spatial_architectures(),
        *choices.gpu_architectures(),
    )
    for name in choices.spatial_architectures():  # every spatial preset builds as one
        assert isinstance(build_architecture(DesignSpec(arch=name)), Architecture)
        assert not is_gpu(DesignSpec(arch=name))
    for name in choices.gpu_architectures():  # every GPU preset is the GPU model's
        assert build_architecture(DesignSpec(arch=name)) == load_gpu_architecture(name)
        assert is_gpu(DesignSpec(arch=name))
    labels = {o["value"]: o["label"] for o in choices.architecture_options()}
    assert labels["h100_sxm"] == "h100_sxm (GPU)" and labels["flat_cloud"] == "flat_cloud"
    assert {"fusemax", "flat", "unfused"} <= set(choices.mappings())
    for mapping, cascade in choices.mapping_cascades().items():
        assert load_mapping(mapping).cascade == cascade
    assert choices.default_mapping("fusemax_1pass") == "fusemax"
    assert choices.default_mapping("no such cascade") is None


# ------------------------------------------------------------------------------ GPU presets

TILINGS = (
    DEFAULT_TILING,
    "fused:Br=64,Bc=32,stages=1,warps=2,split=4",
    "unfused:Br=64,Bc=64,stages=2,warps=4",
)


def _gpu_reference(arch, tiling, cascade_, shape):
    """The GPU model called directly, as `einsim evaluate --arch GPU --mapping TILING` does."""
    return evaluate_gpu(
        cascade_, load_gpu_architecture(arch), parse_gpu_mapping(tiling), shape=shape
    )


@pytest.mark.parametrize("arch", gpu_presets())
@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("algorithm", ["fusemax_1pass", "stable_3pass"])
def test_gpu_design_is_the_gpu_model(arch, tiling, algorithm):
    w = workload("bert_base", algorithm, 2048)
    shape = {**w.sizes, **dict(w.outer)}
    expected = _gpu_reference(arch, tiling, w.cascade, shape)
    got = evaluate_design(DesignSpec(seq_len=2048, algorithm=algorithm, arch=arch, tiling=tiling))
    assert got.is_gpu and got.mapping == parse_gpu_mapping(tiling)
    np.testing.assert_allclose(
        [got.report.latency_s, got.report.cycles, got.report.dram_bytes],
        [expected.latency_s, expected.cycles, expected.dram_bytes],
        rtol=1e-12,
    )
    assert got.report.valid == expected.valid and got.report.reasons == expected.reasons
    assert got.report.utilization == pytest.approx(expected.utilization, rel=1e-12)


def test_a_registered_variant_on_a_gpu():
    spec = DesignSpec(seq_len=4096, attention="causal", arch="h200")
    got = evaluate_design(spec)
    model = MODELS["bert_base"]
    shape = {"B": model.batch, "H": model.H, "E": model.E, "F": model.E, "M": 4096, "P": 4096}
    expected = _gpu_reference("h200", DEFAULT_TILING, build_cascade("causal"), shape)
    np.testing.assert_allclose(got.report.latency_s, expected.latency_s, rtol=1e-12)
    assert got.problem == problem_from_cascade(build_cascade("causal"), shape)


def test_gpu_summary_reads_the_report():
    result = evaluate_design(
        DesignSpec(seq_len=2048, arch="h100_sxm", tiling="unfused:Br=64,Bc=64,warps=4")
    )
    report, summary = result.report, gpu_summary(result)
    w = workload("bert_base", "fusemax_1pass", 2048)
    flops = useful_flops(problem_from_cascade(w.cascade, {**w.sizes, **dict(w.outer)}))
    # FlashAttention-2's count: 2 (E + F) FLOPs per (key, query) pair per head.
    assert flops == 2 * (64 + 64) * 2048 * 2048 * 64 * 12
    np.testing.assert_allclose(summary.achieved_flops_per_s, flops / report.latency_s)
    assert summary.hbm_bytes == report.dram_bytes and summary.latency_s == report.latency_s
    assert [k.kernel for k in summary.kernels] == report.per_einsum.kernel.tolist()
    for kernel, numbers in zip(summary.kernels, report.kernels, strict=True):
        memory_bound = numbers["memory_cycles"] > numbers["compute_cycles"]
        assert kernel.bound == ("memory" if memory_bound else "compute")
        assert kernel.occupancy == numbers["occupancy_ctas_per_sm"]
        assert kernel.waves == numbers["waves"]
    np.testing.assert_allclose(sum(k.cycles for k in summary.kernels), report.cycles)
    longest = max(summary.kernels, key=lambda k: k.cycles)
    assert summary.bound.startswith(f"{longest.bound} ({longest.kernel} kernel, ")


def test_gpu_numbers_are_editable_and_reach_the_model():
    data, _ = architecture_data(DesignSpec(arch="h100_sxm"))
    numbers = editable_numbers(data)
    paths = [n.path for n in numbers]
    assert paths[:3] == ["gpu.sms", "gpu.clock_hz", "gpu.hbm_bytes_per_s"]
    assert "gpu.tensor_flops_per_clock_per_sm.bf16" in paths
    values = {n.path: n.value for n in numbers}
    assert values["gpu.sms"] == load_gpu_architecture("h100_sxm").sms
    edited = values | {"gpu.sms": 66.0, "gpu.hbm_bytes_per_s": 2e12}
    overrides = changed_overrides(numbers, edited)
    assert overrides == (("gpu.sms", 66), ("gpu.hbm_bytes_per_s", 2000000000000))
    spec = DesignSpec(seq_len=2048, arch="h100_sxm", overrides=overrides)
    expected_arch = load_gpu_architecture("h100_sxm", dict(overrides))
    assert build_architecture(spec) == expected_arch and expected_arch.sms == 66
    w = workload("bert_base", "fusemax_1pass", 2048)
    expected = evaluate_gpu(
        w.cascade, expected_arch, GpuMapping(), shape={**w.sizes, **dict(w.outer)}
    )
    np.testing.assert_allclose(evaluate_design(spec).report.latency_s, expected.latency_s)


def test_an_uploaded_gpu_yaml_is_the_preset():
    data, _ = architecture_data(DesignSpec(arch="h100_sxm"))
    import yaml

    spec = DesignSpec(arch=UPLOADED, arch_yaml=yaml.safe_dump(data, sort_keys=False))
    assert is_gpu(spec)
    assert build_architecture(spec) == load_gpu_architecture("h100_sxm")
    with_sms = DesignSpec(arch=UPLOADED, arch_yaml=spec.arch_yaml, overrides=(("gpu.sms", 100),))
    assert build_architecture(with_sms).sms == 100


@pytest.mark.parametrize(
    "spec, match",
    [
        (DesignSpec(phase="decode", model="llama3_8b", arch="h100_sxm"), "GPU model: "),
        (DesignSpec(attention="gemm", arch="h100_sxm"), "GPU model: .*gemm"),
        (DesignSpec(attention="linear", arch="a100_sxm"), "GPU model: .*linear"),
        (DesignSpec(arch="h100_sxm", tiling="tiled:Br=64"), "kernel must be one of"),
        (DesignSpec(arch="h100_sxm", tiling="fused:Br=64,Bc=x"), "not an integer"),
        (DesignSpec(arch="h100_sxm", tiling="unfused:Br=64,split=2"), "split_kv"),
        (DesignSpec(arch="h100_sxm", overrides=(("gpu.nope", 1),)), "no key 'nope'"),
    ],
)
def test_what_a_gpu_cannot_run_is_a_one_line_spec_error(spec, match):
    with pytest.raises(SpecError, match=match) as caught:
        evaluate_design(spec)
    message = error_message(caught.value)
    assert message.startswith("SpecError: ") and "\n" not in message


def test_unsupported_cascade_names_what_it_lacks_and_what_the_kernels_do():
    with pytest.raises(SpecError) as caught:
        evaluate_design(DesignSpec(attention="linear", arch="h100_sxm"))
    message = str(caught.value)
    # elu runs lowered (simulator/lowering.py); what is missing is the softmax's exp
    assert "linear" in message and "exp" in message and "softmax" in message


def test_comparison_with_a_gpu_compares_latency_only():
    spatial = evaluate_design(DesignSpec(seq_len=4096))
    h100 = evaluate_design(DesignSpec(seq_len=4096, arch="h100_sxm"))
    a100 = evaluate_design(DesignSpec(seq_len=4096, arch="a100_sxm"))
    c = compare(spatial, h100)
    assert c.speedup == pytest.approx(h100.report.latency_s / spatial.report.latency_s)
    assert c.energy_a_pj == spatial.report.energy_pj
    assert np.isnan(c.energy_b_pj) and np.isnan(c.energy_ratio)
    g = compare(h100, a100)
    assert g.speedup == pytest.approx(a100.report.latency_s / h100.report.latency_s)
    assert g.speedup > 1  # the H100 beats the A100
    assert np.isnan(g.energy_a_pj) and np.isnan(g.energy_b_pj) and np.isnan(g.energy_ratio)
    assert h100.spec.label() == f"fusemax_1pass / h100_sxm / {DEFAULT_TILING}"


# ------------------------------------------------------------------- the mapping as a file


def _cli_json(command: str, mapping_path) -> dict:
    """Run the command line `mapping_file` writes, with the mapping at `mapping_path`."""
    import json
    import shlex

    from click.testing import CliRunner

    from einsim.cli import main

    words = shlex.split(command)
    assert words[:2] == ["einsim", "evaluate"]
    args = words[1:]
    args[args.index("--mapping") + 1] = str(mapping_path)
    result = CliRunner().invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _costs(report_or_json) -> list[float]:
    if isinstance(report_or_json, dict):
        return [report_or_json[k] for k in ("latency_s", "energy_pj", "dram_bytes")]
    return [report_or_json.latency_s, report_or_json.energy_pj, report_or_json.dram_bytes]


@pytest.mark.parametrize(
    "spec",
    [
        DesignSpec(model="bert_base", seq_len=1000),
        DesignSpec(model="llama3_8b", seq_len=2048),
        DesignSpec(model="gemma2_9b", seq_len=1024, batch=2),
        DesignSpec(model="llama3_8b", seq_len=4096, phase="decode", mapping="fusemax_gqa"),
        DesignSpec(seq_len=1024, **FLAT, overrides=(("units.2d.rows", 128),)),
        DesignSpec(attention="causal", params=(("M0", 128),), seq_len=1536),
    ],
    ids=["bert", "llama3", "gemma2", "decode", "flat-override", "variant"],
)
def test_the_downloaded_mapping_costs_the_same_through_the_cli(spec, tmp_path):
    from einsim.dashboard.design import cascade_call, load_mapping_text, mapping_file

    result = evaluate_design(spec)
    f = mapping_file(result)
    name, params = cascade_call(spec)
    assert build_cascade(name, **params) == result.cascade  # the command's --variant/--param
    assert load_mapping_text(f.text) == result.mapping  # the YAML is the mapping
    path = tmp_path / f.filename
    path.write_text(f.text)
    assert load_mapping(path) == result.mapping
    np.testing.assert_allclose(
        _costs(_cli_json(f.command, path)), _costs(result.report), rtol=1e-12
    )


def test_a_searched_mapping_downloads_and_reads_back(tmp_path):
    from dataclasses import replace

    from einsim.dashboard.design import load_mapping_text, mapping_file
    from einsim.mapper import search

    spec = DesignSpec(model="bert_base", seq_len=1024)
    w = workload("bert_base", "fusemax_1pass", 1024)
    found = search(
        w.cascade, load_architecture("fusemax_cloud"), {**w.sizes, **dict(w.outer)},
        strategy="greedy", budget=200, seed=0, progress=False,
    )  # fmt: skip
    result = evaluate_design(replace(spec, searched=found.mapping))
    f = mapping_file(result)
    assert f.searched and "found by the mapper" in f.text.splitlines()[0]
    assert load_mapping_text(f.text) == found.mapping
    path = tmp_path / f.filename
    path.write_text(f.text)
    np.testing.assert_allclose(_costs(_cli_json(f.command, path)), _costs(found.report), rtol=1e-12)
    # fusion groups, loop nest and keep sets are in the text a reader sees
    import yaml

    data = yaml.safe_load(f.text)
    kernel = data["kernels"][0]
    assert set(kernel["einsums"]) == {k for k in found.mapping.kernels[0].einsums}
    assert {"loops", "binding"} <= set(kernel)


def test_a_gpu_tiling_downloads_as_the_text_the_cli_takes():
    import yaml

    from einsim.dashboard.design import mapping_file

    tiling = "fused:Br=64,Bc=32,stages=1,warps=2,split=4"
    result = evaluate_design(DesignSpec(seq_len=2048, arch="h100_sxm", tiling=tiling))
    f = mapping_file(result)
    assert yaml.safe_load(f.text) == {"tiling": parse_gpu_mapping(tiling).name}
    got = _cli_json(f.command, parse_gpu_mapping(tiling).name)
    np.testing.assert_allclose(got["latency_s"], result.report.latency_s, rtol=1e-12)


def test_an_uploaded_architecture_is_named_arch_yaml_in_the_command():
    import yaml

    from einsim.dashboard.design import mapping_file

    data, _ = architecture_data(DesignSpec(arch="flat_cloud"))
    spec = DesignSpec(seq_len=512, arch=UPLOADED, arch_yaml=yaml.safe_dump(data), **{
        k: v for k, v in FLAT.items() if k != "arch"
    })  # fmt: skip
    assert "--arch ARCH.yaml" in mapping_file(evaluate_design(spec)).command


# ------------------------------------------------------------------- in the browser


@pytest.fixture(scope="module")
def served_url():
    from einsim.dashboard.app import create_app, serve_in_thread

    served = serve_in_thread(create_app())
    yield served.url
    served.shutdown()


@pytest.mark.slow
def test_the_page_shows_and_downloads_the_searched_mapping(page, served_url, screenshots):
    """Headless Chromium (tests/dashboard/conftest.py): search, read the YAML on the page,
    download it, and cost the file with the command written in it: the mapper's cost."""
    import shlex

    import yaml

    from einsim.mapper import search

    timeout_ms = 60_000
    page.goto(served_url)
    page.wait_for_selector("#metric-latency", timeout=timeout_ms)
    page.wait_for_function(
        "() => document.querySelector('#mapping-yaml').innerText.includes('name: fusemax')",
        timeout=timeout_ms,
    )  # the bundled mapping first
    for field, value in (("seq-len", 1024), ("search-budget", 300)):
        page.fill(f"#{field}", str(value))
        page.press(f"#{field}", "Enter")
    page.click("#search-run")
    page.wait_for_selector("#search-found", timeout=timeout_ms)
    page.wait_for_function(
        "() => document.querySelector('#mapping-origin').innerText.includes('found by')",
        timeout=timeout_ms,
    )
    shown = page.inner_text("#mapping-yaml")
    with page.expect_download(timeout=timeout_ms) as caught:
        page.click("#mapping-download-button")
    download = caught.value
    path = download.path()
    text = Path(path).read_text()
    assert text.strip() == shown.strip()  # the file is what the page shows
    w = workload("bert_base", "fusemax_1pass", 1024)
    shape = {**w.sizes, **dict(w.outer)}
    found = search(
        w.cascade, load_architecture("fusemax_cloud"), shape, objective="latency",
        strategy="greedy", budget=300, seed=0, progress=False,
    )  # fmt: skip
    assert load_mapping(path) == found.mapping
    assert download.suggested_filename.endswith(".yaml")
    assert yaml.safe_load(text)["kernels"]  # fusion groups with loops, keep sets, binding
    check = next(line for line in text.splitlines() if line.startswith("# Check it: "))
    command = check.removeprefix("# Check it: ")
    assert shlex.split(command)[shlex.split(command).index("--mapping") + 1] == (
        download.suggested_filename
    )
    np.testing.assert_allclose(_costs(_cli_json(command, path)), _costs(found.report), rtol=1e-12)
    page.locator("#mapping-yaml").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "design_mapping.png", full_page=True)


def test_a_searched_mapping_of_the_other_kind_is_left_for_the_page_fields():
    """A mapping searched on one kind (then the architecture switched) is not the new
    target's: the design point falls back to the bundled mapping / the typed tiling."""
    w = workload("bert_base", "fusemax_1pass", 1024)
    shape = {**w.sizes, **dict(w.outer)}
    gpu_tiling = parse_gpu_mapping("fused:Br=64,Bc=64")
    spatial = evaluate_design(DesignSpec(seq_len=1024, searched=gpu_tiling))
    assert spatial.mapping == load_mapping("fusemax")
    expected = evaluate(
        w.cascade, load_architecture("fusemax_cloud"), load_mapping("fusemax"), shape
    )
    assert spatial.report.latency_s == expected.latency_s
    gpu = evaluate_design(
        DesignSpec(
            seq_len=1024, arch="h100_sxm", tiling=gpu_tiling.name, searched=load_mapping("fusemax")
        )
    )
    assert gpu.mapping == gpu_tiling and gpu.problem == problem_from_cascade(w.cascade, shape)
    expected = evaluate_gpu(w.cascade, load_gpu_architecture("h100_sxm"), gpu_tiling, shape=shape)
    assert gpu.report.latency_s == expected.latency_s
    searched = evaluate_design(DesignSpec(seq_len=1024, arch="h100_sxm", searched=gpu_tiling))
    assert searched.mapping == gpu_tiling  # its own kind's searched mapping wins over the field


def test_the_design_target_is_read_from_the_yaml():
    data, _ = architecture_data(DesignSpec(arch="fusemax_cloud"))
    import yaml

    uploaded = DesignSpec(arch=UPLOADED, arch_yaml=yaml.safe_dump(data, sort_keys=False))
    assert design_target(uploaded).kind == "spatial" and not is_gpu(uploaded)
    assert design_target(DesignSpec(arch="h100_sxm")).kind == "gpu"
    assert design_target(DesignSpec(arch=UPLOADED)) is None  # nothing uploaded yet
    assert design_target(DesignSpec(arch=UPLOADED, arch_yaml="name: x\ngpu: 5\n")).kind == "gpu"
    assert editable_numbers({"name": "x", "gpu": 5}) == []  # a GPU whose section is no mapping
