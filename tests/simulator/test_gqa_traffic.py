"""GQA's K/V traffic on the spatial model: heads of a group share K/V (simulator/spatial/cost.py
`_refetch`), checked against a brute-force walk of the loop nest."""

import itertools

import numpy as np
import pytest

from einsim import attention, evaluate, load_architecture, load_mapping
from einsim.simulator import bind

E = F = 8
M = P = 512


def _brute_force_k_bytes(heads: int, groups: int, per_tile: int, factors: dict) -> int:
    """K bypasses the buffer: every DRAM iteration (head block, query tile, key tile)
    fetches K[g, :, key tile] for each distinct group g its heads read (h // (H // G))."""
    ratio = heads // groups
    m0 = 256  # the cascade's default key tile, the array's columns
    total = 0
    for block, _, m1 in itertools.product(
        range(factors["DRAM.H"]), range(factors["DRAM.P"]), range(factors["DRAM.M1"])
    ):
        read = {h // ratio for h in range(block * per_tile, min((block + 1) * per_tile, heads))}
        total += len(read) * E * min(m0, M - m1 * m0)
    return total * 2  # fp16


@pytest.mark.parametrize(
    ("heads", "groups", "per_tile"),
    [(8, 2, 4), (8, 2, 2), (8, 2, 1), (8, 2, 8), (8, 8, 1), (8, 1, 3), (6, 2, 2), (6, 3, 4)],
)
def test_k_and_v_traffic_equals_a_walk_of_the_loop_nest(heads, groups, per_tile):
    arch = load_architecture("fusemax_cloud")
    mapping = bind(load_mapping("fusemax_gqa"), {"attention.GB.H": per_tile})
    shape = dict(B=1, H=heads, G=groups, E=E, F=F, M=M, P=P)
    report = evaluate(attention("gqa"), arch, mapping, shape)
    assert report.valid
    expected = _brute_force_k_bytes(heads, groups, per_tile, report.factors["attention"])
    np.testing.assert_allclose(report.dram_bytes_by_tensor["K"], expected, rtol=1e-12)
    np.testing.assert_allclose(report.dram_bytes_by_tensor["V"], expected, rtol=1e-12)


def test_gqa_reads_less_k_v_than_multi_head_attention_at_the_same_compute():
    """Llama-3-8B prefill at 4K (H = 32 heads, G = 8 groups): the same compute cycles as
    32 heads of the per-head cascade, and K/V read once per group instead of per head."""
    arch = load_architecture("fusemax_cloud")
    shape = dict(B=1, H=32, E=128, F=128, M=4096, P=4096)
    mha = evaluate(attention("fusemax"), arch, load_mapping("fusemax"), shape)
    gqa = evaluate(attention("gqa"), arch, load_mapping("fusemax_gqa"), dict(shape, G=8))
    compute = [sum(k["compute_cycles"] for k in r.kernels) for r in (mha, gqa)]
    assert compute[1] == pytest.approx(compute[0], rel=0.01)
    k_bytes = {"mha": 32 * 4096 * 128 * 2, "gqa": 8 * 4096 * 128 * 2}  # each K read once
    assert mha.dram_bytes_by_tensor["K"] == k_bytes["mha"]
    assert gqa.dram_bytes_by_tensor["K"] == k_bytes["gqa"]
    assert gqa.dram_bytes < mha.dram_bytes


def test_a_buffer_tile_holds_only_the_groups_of_its_heads():
    """With one head per buffer tile, the kept K/V tiles (BK, BV) hold one group, not G:
    the buffer fits as many query rows as the per-head cascade's."""
    arch = load_architecture("fusemax_cloud")
    shape = dict(B=1, H=8, E=128, F=128, M=16384, P=16384)
    mha = evaluate(attention("fusemax"), arch, load_mapping("fusemax"), shape)
    one = bind(load_mapping("fusemax_gqa"), {"attention.GB.H": 1})
    gqa = evaluate(attention("gqa"), arch, one, dict(shape, G=8))
    assert gqa.factors["attention"]["GB.P"] == mha.factors["attention"]["GB.P"]
    np.testing.assert_allclose(gqa.dram_bytes, mha.dram_bytes, rtol=1e-12)


def test_a_batch_of_head_tiles_equals_the_scalar_evaluations():
    from einsim import evaluate_batch

    arch = load_architecture("fusemax_cloud")
    mapping = load_mapping("fusemax_gqa")
    shape = dict(B=1, H=8, G=2, E=E, F=F, M=M, P=P)
    tiles = np.array([1, 2, 3, 4, 8, 2, 1])
    batch = evaluate_batch(attention("gqa"), arch, mapping, shape, {"attention.GB.H": tiles})
    for i, t in enumerate(tiles):
        one = evaluate(attention("gqa"), arch, bind(mapping, {"attention.GB.H": int(t)}), shape)
        assert batch.dram_bytes[i] == one.dram_bytes
        assert batch.cycles[i] == one.cycles


def test_head_groups_are_each_heads_group_whatever_the_kernel():
    """GQA's coarse rank G read through H: every kernel that does not iterate G sees the
    same groups, h // (H / G) for each head h (the direct formula), as one shared object."""
    from einsim.simulator.spatial.cost import _coarse_of

    gqa = attention("gqa")
    sizes = tuple(sorted({"B": 2, "H": 8, "G": 2, "E": 4, "F": 4, "M": 8, "P": 8}.items()))
    seen = []
    for einsum in gqa.einsums:
        coarse, groups_of = _coarse_of(gqa, (einsum.output,), sizes)
        for rank, groups in groups_of.items():
            source = coarse[rank]
            heads = np.arange(dict(sizes)[source])
            np.testing.assert_array_equal(groups.groups, heads // (8 // 2))
            seen.append(groups)
    assert seen and all(g is seen[0] for g in seen)
