"""The target contract (simulator/targets.py), checked for every kind in TARGETS: presets
load, a batch costs, search returns a SearchResult, bad specs raise SpecError."""

import math

import numpy as np
import pytest

import einsim
from einsim.einsum import SpecError
from einsim.mapper import SearchResult, search
from einsim.simulator.targets import TARGETS, CostRow, TargetReport, load, target_of

SHAPE = dict(B=1, H=2, E=64, F=64, M=1024, P=1024)
# One mapping each kind offers out of the box: a bundled spatial mapping, a GPU tiling.
MAPPING = {"spatial": "cascade_on_flat", "gpu": "fused:Br=64,Bc=64"}


@pytest.fixture(params=sorted(TARGETS))
def target(request):
    return TARGETS[request.param]


def test_every_kind_has_presets_that_load_to_it(target):
    assert target.presets()
    for name in target.presets():
        arch = load(name)
        assert target_of(arch) is target and target.owns(arch)
        assert einsim.target_of(einsim.load_architecture(name)) is target


def test_a_batch_costs_and_the_typed_report_says_what_is_modelled(target):
    arch = load(target.presets()[0])
    cascade = einsim.attention("causal")
    batch = target.evaluate_batch(cascade, arch, MAPPING[target.kind], SHAPE)
    assert batch.n >= 1 and np.all(np.isfinite(batch.latency_s)) and np.all(batch.latency_s > 0)
    report = einsim.evaluate(cascade, arch, MAPPING[target.kind], SHAPE)
    assert report.latency_s == pytest.approx(float(batch.latency_s[0]))
    typed = target.typed(arch, report)
    assert isinstance(typed, TargetReport) and all(isinstance(r, CostRow) for r in typed.rows)
    assert typed.target == target.kind and typed.latency_s == report.latency_s
    if target.kind == "gpu":
        assert typed.calibration == "uncalibrated"  # gpu_calibration.csv has no fitted row
        assert typed.energy_pj is None and "not modelled" in typed.energy_method
        assert any("uncalibrated" in line for line in typed.lines())
        assert typed.gpu_kernels and typed.gpu_kernels[0].occupancy_ctas_per_sm >= 1
    else:
        assert typed.energy_pj == report.energy_pj and typed.calibration == "n/a"
        assert not typed.gpu_kernels


def test_search_returns_a_search_result_honouring_the_strategy(target):
    arch = load(target.presets()[0])
    calls = []
    result = search(
        einsim.attention("causal"),
        arch,
        SHAPE,
        strategy="random",
        budget=40,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert isinstance(result, SearchResult) and result.strategy == "random"
    assert result.report.valid and result.evaluated <= 40 and calls[-1][0] == calls[-1][1]
    assert result.explain()
    assert result.target == target.kind


def test_gpu_search_refuses_what_it_cannot_honour():
    arch = load(TARGETS["gpu"].presets()[0])
    with pytest.raises(SpecError, match=r"anneal.*not implemented on the GPU tiling grid"):
        search(einsim.attention("causal"), arch, SHAPE, strategy="anneal")
    with pytest.raises(SpecError, match="no constraint applies to GPU tilings"):
        search(einsim.attention("causal"), arch, SHAPE, constraints={"binding": {"QK": "2d"}})
    greedy = search(einsim.attention("causal"), arch, SHAPE, strategy="greedy")
    exhaustive = search(einsim.attention("causal"), arch, SHAPE, strategy="exhaustive")
    assert greedy.strategy == "greedy" and greedy.evaluated < exhaustive.evaluated
    assert exhaustive.optimal and greedy.best_value >= exhaustive.best_value
    assert math.isnan(exhaustive.lower_bound)  # no bound on a GPU grid, not a made-up 0


@pytest.mark.parametrize(
    "text",
    [
        "name: x\ngpu: {sms: 0}\n",
        "name: x\nunits: {}\nlevels: []\nclock_hz: 1e9\nword_bytes: 2\n",
        "name: x\nneither: 1\n",
    ],
)
def test_bad_specs_raise_spec_error(tmp_path, text):
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    with pytest.raises(SpecError):
        load(path)


def test_a_bad_mapping_raises_spec_error(target):
    with pytest.raises(einsim.EinsimError):
        target.load_mapping("no_such_mapping_or_tiling:Q=1")


def test_an_unknown_preset_names_every_kind():
    with pytest.raises(SpecError, match=r"unknown architecture 'nope'.*GPUs: "):
        load("nope")


def test_target_of_refuses_a_non_architecture():
    with pytest.raises(SpecError, match="not an architecture of any target"):
        target_of(object())


def test_each_kind_owns_the_mappings_it_loads_and_no_other():
    loaded = {kind: TARGETS[kind].load_mapping(MAPPING[kind]) for kind in TARGETS}
    for kind, target in TARGETS.items():
        for other, mapping in loaded.items():
            assert target.owns_mapping(mapping) == (other == kind)
        assert target.load_mapping(loaded[kind]) is loaded[kind]  # a loaded one passes through
        assert not target.owns_mapping(MAPPING[kind])  # a name or tiling text is not loaded
