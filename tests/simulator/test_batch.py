"""`evaluate_batch`: a batch equals the loop of scalar evaluations of its bound rows."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim import MappingError, SpecError, attention
from einsim.simulator import (
    bind,
    evaluate,
    evaluate_batch,
    load_architecture,
    load_mapping,
    parameter_names,
)
from einsim.simulator.spatial.cost import _block_groups, _distinct_rows, _HeadGroups

BERT_4K = dict(B=64, H=12, E=64, F=64, M=4096, P=4096)


def _fusemax_batch(params, shape=BERT_4K):
    """The bundled FuseMax template on fusemax_cloud with `params` free."""
    template, arch = load_mapping("fusemax"), load_architecture("fusemax_cloud")
    return evaluate_batch(attention("fusemax"), arch, template, shape, params)


def _assert_row_matches_scalar(batch, i, cascade, arch, template, shape):
    row = {key: int(values[i]) for key, values in batch.params.items()}
    scalar = evaluate(cascade, arch, bind(template, row), shape)
    ours = batch.report(i)
    assert ours.valid == scalar.valid
    assert ours.reasons == scalar.reasons
    for name in ("cycles", "energy_pj", "dram_bytes"):
        assert getattr(ours, name) == pytest.approx(getattr(scalar, name), rel=1e-12)
    assert ours.utilization == pytest.approx(scalar.utilization, rel=1e-12)
    assert ours.energy_by_component_pj == pytest.approx(scalar.energy_by_component_pj, rel=1e-12)
    assert ours.factors == scalar.factors
    np.testing.assert_allclose(ours.per_einsum.cycles, scalar.per_einsum.cycles, rtol=1e-12)


@pytest.mark.parametrize(
    ("mapping", "arch", "draw"),
    [
        # P1 and the rows of both arrays free; DRAM P and M1 take the rest.
        ("fusemax", "fusemax_cloud", {"attention.GB.P": (1, 40), "attention.spatial.P": (1, 300)}),
        # The DRAM factor of P free: the fitted P1 then differs per row (one group per span).
        ("fusemax", "fusemax_cloud", {"attention.DRAM.P": (1, 16)}),
        ("cascade_on_flat", "flat_cloud", {"attention.spatial.M0": (1, 256)}),
        # At 64K the fitted P1 scans several divisors, on rows of different spatial P.
        ("cascade_on_flat", "flat_cloud", {"attention.spatial.P": (1, 256), "64K": ()}),
        ("unfused", "flat_cloud", {"qk.spatial.P": (1, 256), "av.spatial.M": (1, 256)}),
    ],
)
def test_batch_equals_loop_of_scalars(mapping, arch, draw):
    rng = np.random.default_rng(7)
    template, hardware = load_mapping(mapping), load_architecture(arch)
    cascade = attention(template.cascade)
    shape = dict(BERT_4K, M=65536, P=65536) if draw.pop("64K", None) == () else BERT_4K
    params = {key: rng.integers(lo, hi + 1, size=24) for key, (lo, hi) in draw.items()}
    batch = evaluate_batch(cascade, hardware, template, shape, params)
    assert batch.n == 24 and batch.cycles.shape == (24,)
    for i in range(batch.n):
        _assert_row_matches_scalar(batch, i, cascade, hardware, template, shape)


def test_rows_that_do_not_fit_are_flagged_with_their_own_reason():
    params = {"attention.GB.P": [1, 256, 4096], "attention.spatial.P": [256, 256, 512]}
    batch = _fusemax_batch(params, dict(BERT_4K, M=65536, P=65536))
    assert batch.valid.tolist() == [True, False, False]
    assert "tensors kept at GB need" in batch.reasons(1)[0]
    assert any("spatial factor 512 of P is larger than the array" in r for r in batch.reasons(2))
    assert any("loop GB.P has factor 4096 over tiles of 512" in r for r in batch.reasons(2))


def test_total_work_does_not_depend_on_the_free_parameters():
    rng = np.random.default_rng(1)
    params = {"attention.GB.P": rng.integers(1, 17, 50), "attention.spatial.M0": [256] * 50}
    batch = _fusemax_batch(params)
    macs = sum(np.broadcast_to(r["ops"], (50,)) for r in batch.einsums if r["einsum"] == "QK")
    assert np.all(macs == 64 * 12 * 64 * 4096 * 4096)


def test_a_batch_frame_has_one_row_per_mapping():
    params = {"attention.GB.P": [1, 2, 4, 8]}
    batch = _fusemax_batch(params)
    frame = batch.to_frame()
    assert list(frame["attention.GB.P"]) == [1, 2, 4, 8]
    assert {"cycles", "latency_s", "energy_pj", "dram_bytes", "valid", "util_2d"} <= set(frame)
    # Larger P1 tiles re-read K and V fewer times: DRAM traffic falls monotonically.
    assert np.all(np.diff(frame.dram_bytes) < 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"attention.GB.Q": [1]}, "no free parameter 'attention.GB.Q'; known: attention.DRAM.P"),
        ({"attention.GB.P": [1, 0]}, r"entry 1 is 0, expected a positive integer"),
        ({"attention.GB.P": [1.5]}, r"entry 0 is 1.5, expected a positive integer"),
        ({"attention.GB.P": [1, 2], "attention.spatial.P": [1, 2, 3]}, "3 values, but other"),
    ],
)
def test_bad_parameters_are_named(params, message):
    with pytest.raises(MappingError, match=message):
        _fusemax_batch(params)


def test_parameter_names_and_bind_agree():
    template = load_mapping("unfused")
    names = parameter_names(template)
    assert "qk.spatial.P" in names and "softmax.spatial.M" in names
    with pytest.raises(SpecError, match=r"no parameter 'qk\.GB\.P'"):
        bind(template, {"qk.GB.P": 2})


def test_architecture_numbers_batch_like_loaded_overrides():
    """`arch.<path>` arrays give what loading the architecture with each override gives."""
    rng = np.random.default_rng(3)
    sides = rng.choice([16, 64, 100, 256, 512], 12)
    numbers = {
        "units.2d.rows": sides,
        "units.2d.cols": sides,
        "units.1d.lanes": sides,
        "levels.GB.capacity_bytes": rng.choice([2**20, 4 * 2**20, 16 * 2**20], 12),
        "levels.DRAM.bandwidth_bytes_per_s": rng.choice([1e11, 4e11, 2e12], 12),
    }
    template, cascade_ = load_mapping("fusemax"), attention("fusemax")
    shape = dict(BERT_4K, M=65536, P=65536)
    batch = evaluate_batch(
        cascade_,
        load_architecture("fusemax_cloud"),
        template,
        shape,
        {f"arch.{k}": v for k, v in numbers.items()},
    )
    for i in range(12):
        arch = load_architecture("fusemax_cloud", {k: v[i].item() for k, v in numbers.items()})
        scalar, ours = evaluate(cascade_, arch, template, shape), batch.report(i)
        assert ours.reasons == scalar.reasons
        assert ours.latency_s == pytest.approx(scalar.latency_s, rel=1e-12)
        assert ours.energy_pj == pytest.approx(scalar.energy_pj, rel=1e-12)
        assert ours.utilization == pytest.approx(scalar.utilization, rel=1e-12)
        assert ours.factors == scalar.factors


def test_an_unknown_architecture_number_lists_the_ones_taken():
    with pytest.raises(MappingError, match=r"arch\.units\.2d\.lanes.*units 2d \(rows, cols\)"):
        _fusemax_batch({"arch.units.2d.lanes": [4]})


# ------------------------------------------------------ what a search shares across batches


@pytest.mark.parametrize(
    ("cascade_name", "mapping", "shape", "draw"),
    [
        # causal, empty tiles skipped: tile shares cached by tiling across batches
        ("causal", "fusemax", BERT_4K,
         {"attention.GB.P": (1, 16), "attention.spatial.P": (1, 256)}),
        # GQA: K/V reuse over blocks of heads (`_block_groups`, cached by block size)
        ("gqa", "fusemax_gqa", dict(B=2, H=12, G=3, E=64, F=64, M=4096, P=4096),
         {"attention.GB.H": (1, 12), "attention.spatial.P": (1, 256)}),
    ],
)  # fmt: skip
def test_a_row_costs_the_same_whatever_was_costed_before(cascade_name, mapping, shape, draw):
    """The caches a search shares across batches (tile shares, plans, an Einsum's work) never
    change a row: a batch, its reverse and its two halves costed in turn agree bit for bit."""
    rng = np.random.default_rng(11)
    template = dataclasses.replace(load_mapping(mapping), skip_empty_tiles=True)
    cascade, arch = attention(cascade_name), load_architecture("fusemax_cloud")
    params = {key: rng.integers(lo, hi + 1, size=40) for key, (lo, hi) in draw.items()}

    def run(rows):
        return evaluate_batch(
            cascade, arch, template, shape, {k: v[rows] for k, v in params.items()}
        )

    whole = run(np.arange(40))
    backwards = run(np.arange(40)[::-1])
    halves = [run(np.arange(20)), run(np.arange(20, 40))]
    for name in ("cycles", "energy_pj", "dram_bytes"):
        expected = getattr(whole, name)
        np.testing.assert_array_equal(getattr(backwards, name)[::-1], expected)
        np.testing.assert_array_equal(np.concatenate([getattr(h, name) for h in halves]), expected)
    for level, words in whole.buffer_words.items():
        np.testing.assert_array_equal(backwards.buffer_words[level][::-1], words)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=24),
    st.integers(1, 30),
    st.integers(1, 30),
    st.sampled_from(["as drawn", "ascending", "descending"]),
)
def test_block_groups_counts_the_distinct_groups_of_each_block_of_heads(groups, t, f, order):
    """`_block_groups` against the loop it replaces: np.unique of each block of t heads
    (sorted groups take the closed form of monotone groups, as drawn mostly the general)."""
    if order != "as drawn":
        groups = sorted(groups, reverse=order == "descending")
    counts = [len(np.unique(groups[i * t : (i + 1) * t])) for i in range(f)]
    heads = _HeadGroups(np.asarray(groups, np.int64))
    assert _block_groups(heads, t, f) == (sum(counts), max(counts, default=0))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_distinct_rows_are_the_sorted_unique_rows(data):
    """`_distinct_rows` (short batches: one sort of a code; long: look-up tables) against
    np.unique over the rows: the same sorted rows and the same index of each row."""
    limits = data.draw(st.lists(st.integers(1, 5000), min_size=1, max_size=3))
    n = data.draw(st.sampled_from([1, 7, 300, 1500]))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    columns = [rng.integers(1, limit + 1, n) for limit in limits]
    found, inverse = _distinct_rows(columns, limits)
    rows, expected_inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    assert [c.tolist() for c in found] == rows.T.tolist()
    assert inverse.tolist() == expected_inverse.reshape(-1).tolist()
