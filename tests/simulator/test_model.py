"""Invariants of the cost model and its handling of bad specs."""

import dataclasses
from importlib.resources import files

import numpy as np
import pytest
import yaml

from einsim import InfeasibleError, MappingError, SpecError, attention, cascade
from einsim.simulator import bind, evaluate, evaluate_batch, load_architecture, load_mapping

BERT_1K = dict(B=64, H=12, E=64, F=64, M=1024, P=1024)


def _run(mapping="fusemax", arch="fusemax_cloud", shape=BERT_1K, overrides=None):
    cascade = attention(load_mapping(mapping).cascade)
    return evaluate(cascade, load_architecture(arch, overrides), load_mapping(mapping), shape)


def test_total_macs_do_not_depend_on_the_mapping():
    def macs(report):
        rows = report.per_einsum
        return rows[rows.einsum.isin(["QK", "SLNV", "AV"])].ops.sum()

    fused = _run("fusemax")
    serial = _run("fusemax_serial")
    assert macs(fused) == macs(serial) == 2 * 64 * 12 * 64 * 1024 * 1024 + 64 * 12 * 64 * 1024


@pytest.mark.parametrize("mapping", ["fusemax", "unfused", "flat"])
def test_more_bandwidth_is_never_slower(mapping):
    arch = "flat_cloud" if mapping != "fusemax" else "fusemax_cloud"
    shape = dict(BERT_1K, M=65536, P=65536)
    slow = _run(mapping, arch, shape, {"levels.DRAM.bandwidth_bytes_per_s": 1e11})
    fast = _run(mapping, arch, shape, {"levels.DRAM.bandwidth_bytes_per_s": 1e13})
    assert fast.latency_s <= slow.latency_s


def test_smaller_array_is_slower_and_compute_scales():
    full = _run()
    half = _run(overrides={"units.2d.rows": 128, "units.1d.lanes": 128})
    assert half.latency_s == pytest.approx(2 * full.latency_s, rel=1e-9)


def test_non_multiple_of_the_array_pads_instead_of_failing():
    exact = _run(shape=dict(BERT_1K, M=1024, P=1024))
    padded = _run(shape=dict(BERT_1K, M=1000, P=1000))
    assert padded.valid
    # Padding costs idle lanes: as slow as the next multiple of 256, never faster.
    assert padded.latency_s == pytest.approx(exact.latency_s, rel=1e-9)
    assert padded.utilization["2d"] < exact.utilization["2d"]


def test_a_buffer_too_small_raises_infeasible_with_likely_causes():
    with pytest.raises(InfeasibleError) as caught:
        _run(overrides={"levels.GB.capacity_bytes": 1000})
    message = str(caught.value)
    assert message.startswith("mapping fusemax, kernel attention: nothing fits")
    # At P1 = 1: Q, BK, BV and RNV hold 64 x 256 words each, RM and RD 256 each.
    assert "(132096 B needed; largest tiles: Q 32768 B, BK 32768 B, BV 32768 B)" in message
    assert "raise levels.GB.capacity_bytes" in message and "\n" not in message


def test_an_explicit_factor_that_overflows_is_invalid_not_an_error():
    mapping = bind(load_mapping("fusemax"), {"attention.GB.P": 4})
    cascade, arch = (
        attention("fusemax"),
        load_architecture("fusemax_cloud", {"levels.GB.capacity_bytes": 100000}),
    )
    report = evaluate(cascade, arch, mapping, BERT_1K)
    assert not report.valid
    assert report.reasons == ("attention: tensors kept at GB need 331776 B, capacity 100000 B",)


def test_an_operator_the_unit_lacks_runs_lowered_and_is_reported():
    # The 2D array has no divider: AV's division runs as a * exp(-log(b)) (simulator/lowering.py).
    mapping = load_mapping("fusemax")
    kernel = mapping.kernels[0]
    binding = tuple((e, "2d") if e == "AV" else (e, u) for e, u in kernel.binding)
    moved = dataclasses.replace(mapping, kernels=(dataclasses.replace(kernel, binding=binding),))
    arch = load_architecture("fusemax_cloud")
    native = evaluate(attention("fusemax"), arch, mapping, BERT_1K)
    lowered = evaluate(attention("fusemax"), arch, moved, BERT_1K)
    assert lowered.lowered_einsums == {"AV": "div"}
    assert native.lowered_einsums == {}
    av = lambda report: report.per_einsum.set_index("einsum").loc["AV"]  # noqa: E731
    assert av(lowered).cycles > av(native).cycles


def test_unit_without_the_operator_and_no_lowering_is_a_mapping_error(tmp_path):
    # exp has no lowering into the other operators: a 2D array without it cannot run SLN.
    preset = files("einsim.simulator") / "architectures" / "fusemax_cloud.yaml"
    spec = yaml.safe_load(preset.read_text())
    del spec["units"]["2d"]["ops"]["exp"]
    path = tmp_path / "no_exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="unit '2d' does not support 'exp' and has no lowering"):
        arch = load_architecture(str(path))
        evaluate(attention("fusemax"), arch, load_mapping("fusemax"), BERT_1K)


def test_einsum_in_no_kernel_is_named():
    mapping = load_mapping("fusemax")
    kernel = dataclasses.replace(mapping.kernels[0], einsums=("QK",))
    bad = dataclasses.replace(mapping, kernels=(kernel,))
    with pytest.raises(MappingError, match="are in no kernel"):
        evaluate(attention("fusemax"), load_architecture("fusemax_cloud"), bad, BERT_1K)


def _write(tmp_path, data):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(clok_hz=1), "unknown key 'clok_hz'; known keys: name, clock_hz"),
        (lambda d: d.pop("clock_hz"), "missing required key 'clock_hz'"),
        (
            lambda d: d["units"]["2d"]["ops"].update(expp={"cycles": 1, "energy_pj": 1}),
            "unknown operator 'expp'",
        ),
        (lambda d: d.update(clock_hz=-1), "clock_hz: expected a positive number"),
        (lambda d: d["units"]["1d"].update(rows=3), "either lanes (1D) or rows and cols"),
    ],
)
def test_bad_architecture_specs_name_the_key(tmp_path, change, message):
    from importlib import resources

    text = resources.files("einsim.simulator").joinpath("architectures/fusemax_cloud.yaml")
    data = yaml.safe_load(text.read_text())
    change(data)
    with pytest.raises(SpecError) as info:
        load_architecture(_write(tmp_path, data))
    assert message in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_architecture(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_mapping(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="unknown architecture 'nope'; bundled: flat_cloud"):
        load_architecture("nope")


def test_bad_mapping_overlap(tmp_path):
    from importlib import resources

    text = resources.files("einsim.simulator").joinpath("mappings/fusemax.yaml")
    data = yaml.safe_load(text.read_text())
    data["kernels"][0]["overlap"] = "magic"
    with pytest.raises(SpecError, match="'magic' is not one of pipelined, perfect, serial"):
        load_mapping(_write(tmp_path, data))


def test_a_kept_output_is_written_once_and_read_once_on_its_way_out():
    """Keeping Z in the buffer adds |Z| writes (the array produces it) and |Z| reads (its
    write-out to DRAM); DRAM traffic does not change."""
    gemm = cascade("gemm")
    shape = {"K": 64, "M": 1024, "N": 512}
    bypass = load_mapping("matmul_2d")
    kernel = bypass.kernels[0]
    kept = dataclasses.replace(
        bypass, kernels=(dataclasses.replace(kernel, keep=(("GB", ("A", "B", "Z")),)),)
    )
    z_words = 1024 * 512
    for read_pj, write_pj, extra_words in ((1.0, 0.0, z_words), (0.0, 1.0, z_words)):
        arch = load_architecture(
            "fusemax_cloud",
            {"levels.GB.read_pj_per_byte": read_pj, "levels.GB.write_pj_per_byte": write_pj},
        )
        with_z, without = (evaluate(gemm, arch, m, shape) for m in (kept, bypass))
        assert with_z.dram_bytes == without.dram_bytes
        extra_pj = with_z.energy_by_component_pj["GB"] - without.energy_by_component_pj["GB"]
        assert extra_pj == pytest.approx(extra_words * arch.word_bytes)


def test_a_rank_on_two_arrays_takes_the_tile_the_smaller_one_holds():
    """P runs on the 2D rows and the 1D lanes: with 128 rows it is tiled by 128, so the
    mapping stays valid, the 1D array idles half its lanes, and no utilization exceeds 1."""
    report = _run(shape=dict(BERT_1K, M=4096, P=4096), overrides={"units.2d.rows": 128})
    assert report.valid
    assert report.factors["attention"]["spatial.P"] == 128
    assert report.utilization["1d"] <= 0.5 + 1e-12
    assert all(0 <= u <= 1 for u in report.utilization.values())


def test_a_tile_count_past_int64_is_counted_not_wrapped():
    """2^40 heads of FuseMax at M=P=2^20: DRAM.P x DRAM.M1 x GB.P x B x H = 2^64 tiles, which
    int64 arrays wrapped to 0 (a divide by zero tiles, nan cycles). A batch row costs what
    the scalar model (Python integers, exact) gives for the same bound mapping."""
    shape = dict(B=1 << 20, H=1 << 20, E=64, F=64, M=1 << 20, P=1 << 20)
    cascade, arch = attention("fusemax"), load_architecture("fusemax_cloud")
    template = load_mapping("fusemax")
    batch = evaluate_batch(cascade, arch, template, shape, {"attention.GB.P": np.array([1, 2])})
    for i, p1 in enumerate((1, 2)):
        scalar = evaluate(cascade, arch, bind(template, {"attention.GB.P": p1}), shape)
        row = batch.report(i)
        assert row.kernels[0]["tiles"] == scalar.kernels[0]["tiles"] == 2.0**64
        assert np.isfinite(row.cycles) and row.valid
        assert row.cycles == pytest.approx(scalar.cycles, rel=1e-12)
        assert row.dram_bytes == pytest.approx(scalar.dram_bytes, rel=1e-12)
