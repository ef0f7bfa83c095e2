"""Design points: built and evaluated exactly as `einsim.simulator.evaluate` does."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import einsim.dashboard
from einsim import InfeasibleError, MappingError, SpecError
from einsim.dashboard import choices
from einsim.dashboard.design import (
    UPLOADED,
    DesignSpec,
    architecture_data,
    build_architecture,
    changed_overrides,
    compare,
    editable_numbers,
    error_message,
    evaluate_design,
    format_assignments,
    parse_assignments,
)
from einsim.simulator import Architecture, evaluate, load_architecture, load_mapping
from einsim.workloads import ATTENTION, KERNELS, MODELS, workload

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
    assert {"fusemax_cloud", "flat_cloud", "systolic"} <= set(choices.architectures())
    for name in choices.architectures():  # every offered preset builds as a spatial array
        assert isinstance(build_architecture(DesignSpec(arch=name)), Architecture)
    assert {"fusemax", "flat", "unfused"} <= set(choices.mappings())
    for mapping, cascade in choices.mapping_cascades().items():
        assert load_mapping(mapping).cascade == cascade
    assert choices.default_mapping("fusemax_1pass") == "fusemax"
    assert choices.default_mapping("no such cascade") is None
