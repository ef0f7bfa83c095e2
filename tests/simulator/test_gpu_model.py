"""The GPU cost model: tile classes against brute force, invariants, batch == scalars."""

import numpy as np
import pytest

import einsim
from einsim import SpecError
from einsim.simulator.gpu import (
    AttentionProblem,
    Calibration,
    Form,
    GpuMapping,
    KernelForm,
    Mask,
    cta_tiles,
    evaluate_gpu,
    evaluate_gpu_batch,
    list_schedule,
    load_calibration,
    load_gpu_architecture,
    parse_gpu_mapping,
    problem_from_cascade,
)

H100 = load_gpu_architecture("h100_sxm")
MASKS = [
    (Mask.NONE, 0),
    (Mask.CAUSAL, 0),
    (Mask.WINDOW, 5),
    (Mask.WINDOW, 17),
    (Mask.SYMMETRIC_WINDOW, 6),
    (Mask.SYMMETRIC_WINDOW, 9),
]


def _brute(problem, br, bc):
    """(active, full) key tiles per query tile from the dense mask."""
    P, M = problem.seq_q, problem.seq_kv
    nk = -(-M // bc)
    m = np.arange(nk * bc)[:, None]
    p = np.arange(-(-P // br) * br)[None, :]
    keep = problem.keep(m, p) & (m < M) & (p < P)
    valid = (m < M) & (p < P)
    active, full = [], []
    for i in range(-(-P // br)):
        a = f = 0
        for j in range(nk):
            tile = keep[j * bc : (j + 1) * bc, i * br : (i + 1) * br]
            rows = valid[0:1, i * br : (i + 1) * br].repeat(bc, 0)
            a += bool(tile.any())
            f += bool(tile[rows].all() and (j + 1) * bc <= M)
        active.append(a)
        full.append(f)
    return np.array(active), np.array(full)


@pytest.mark.parametrize(("mask", "window"), MASKS)
@pytest.mark.parametrize(("P", "M", "br", "bc"), [(37, 37, 8, 4), (29, 41, 4, 8), (41, 23, 16, 8)])
def test_tile_classes_match_the_dense_mask(mask, window, P, M, br, bc):
    problem = AttentionProblem(1, 1, P, M, 8, 8, mask, window)
    full, partial = cta_tiles(problem, br, bc, 1)
    active, expected_full = _brute(problem, br, bc)
    np.testing.assert_array_equal(full + partial, active)
    np.testing.assert_array_equal(full, expected_full)


@pytest.mark.parametrize("split", [2, 3, 7])
def test_split_kv_partitions_the_key_tiles(split):
    problem = AttentionProblem(1, 1, 45, 45, 8, 8, Mask.WINDOW, 13)
    full, partial = cta_tiles(problem, 8, 4, split)
    full1, partial1 = cta_tiles(problem, 8, 4, 1)
    tiles = full.reshape(split, -1).sum(0), partial.reshape(split, -1).sum(0)
    np.testing.assert_array_equal(tiles[0], full1)
    np.testing.assert_array_equal(tiles[1], partial1)


def test_list_schedule_by_hand():
    np.testing.assert_allclose(list_schedule(np.array([[3.0, 1, 1, 1]]), 2), [3.0])
    np.testing.assert_allclose(list_schedule(np.array([[1.0, 1, 1, 3]]), 2), [4.0])
    np.testing.assert_allclose(list_schedule(np.ones((1, 5)), 2, repeat=3), [8.0])


def test_wave_quantization_steps_at_multiples_of_the_slots():
    # One query tile per head, so the grid is B CTAs; uniform CTAs: the compute time is
    # constant inside a wave and jumps by one CTA time when the grid passes a multiple of
    # SMs x occupancy.
    mapping = GpuMapping(block_q=64, block_kv=64, warps=4)
    times, slots = {}, None
    for b in range(1, 3 * 132 * 3):
        rep = evaluate_gpu_batch(AttentionProblem(b, 1, 64, 1024, 64, 64), H100, mapping)
        k = int(rep.factors["attention"]["occupancy"][0])
        slots = slots or 132 * k
        times[b] = rep.kernels[0]["compute_cycles"][0]
    one = times[1]
    for b, t in times.items():
        assert t == pytest.approx(one * -(-b // slots)), b


@pytest.mark.parametrize("mask", [Mask.NONE, Mask.CAUSAL, Mask.WINDOW])
@pytest.mark.parametrize("kernel", list(KernelForm))
def test_more_sms_never_slower(mask, kernel):
    problem = AttentionProblem(2, 8, 2048, 2048, 128, 128, mask, 300)
    params = dict(block_q=[64, 128, 128], block_kv=[32, 64, 128], warps=[4, 4, 8])
    mapping = GpuMapping(kernel)
    previous = None
    for sms in (16, 33, 66, 100, 132, 200, 400):
        arch = load_gpu_architecture("h100_sxm", {"gpu.sms": sms})
        latency = evaluate_gpu_batch(problem, arch, mapping, params).latency_s
        if previous is not None:
            assert np.all(latency <= previous * (1 + 1e-12))
        previous = latency


@pytest.mark.parametrize("kernel", list(KernelForm))
def test_masks_never_cost_more_than_full_attention(kernel):
    params = dict(block_q=[64, 128], block_kv=[64, 32])
    full = evaluate_gpu_batch(
        AttentionProblem(2, 4, 3000, 3000, 64, 64), H100, GpuMapping(kernel), params
    )
    for mask, w in [(Mask.CAUSAL, 0), (Mask.WINDOW, 256), (Mask.SYMMETRIC_WINDOW, 512)]:
        masked = evaluate_gpu_batch(
            AttentionProblem(2, 4, 3000, 3000, 64, 64, mask, w), H100, GpuMapping(kernel), params
        )
        # equal when one wave holds every CTA (the longest, unmasked row tile, sets the time)
        assert np.all(masked.latency_s <= full.latency_s * (1 + 1e-12))
        if kernel is KernelForm.FUSED:  # masked-out tiles are skipped: less tensor work
            assert np.all(
                masked.utilization["tensor"] * masked.latency_s
                < full.utilization["tensor"] * full.latency_s
            )


def test_causal_does_half_the_tensor_work_at_long_sequences():
    problem = AttentionProblem(1, 1, 8192, 8192, 128, 128)
    causal = AttentionProblem(1, 1, 8192, 8192, 128, 128, Mask.CAUSAL)
    f = [evaluate_gpu(p, H100, GpuMapping()).per_einsum.ops.iloc[0] for p in (problem, causal)]
    assert 0.5 < f[1] / f[0] < 0.52


def test_occupancy_limits_and_invalid_reasons():
    problem = AttentionProblem(1, 16, 4096, 4096, 128, 128)
    rep = evaluate_gpu_batch(
        problem, H100, GpuMapping(),
        dict(block_q=[64, 64, 64, 256, 256, 96], block_kv=[64, 64, 256, 128, 64, 64],
             stages=[1, 2, 8, 2, 2, 2], warps=[4, 4, 4, 4, 16, 4]),
    )  # fmt: skip
    occupancy = rep.factors["attention"]["occupancy"]
    assert occupancy[0] >= occupancy[1] >= 1  # a deeper ring takes more shared memory
    smem_1 = (64 * 128 + 1 * 64 * 256) * 2 + 1024
    assert occupancy[0] == min(233472 // smem_1, 64 // 4, 65536 // (4 * 32 * 136))
    assert not rep.valid[2] and "shared memory" in rep.reasons(2)[0]
    assert not rep.valid[3] and "registers per thread" in rep.reasons(3)[0]
    assert occupancy[4] <= 64 // 16
    assert not rep.valid[5] and "multiple of 16 x warps" in rep.reasons(5)[0]
    assert rep.valid[:2].all() and rep.valid[4]


def test_batch_equals_a_loop_of_scalars():
    problem = AttentionProblem(2, 8, 3000, 3000, 64, 64, Mask.CAUSAL)
    rng = np.random.default_rng(0)
    params = {
        "block_q": rng.choice([64, 128], 12),
        "block_kv": rng.choice([32, 64, 128], 12),
        "stages": rng.choice([1, 2, 3], 12),
        "warps": rng.choice([4, 8], 12),
        "split_kv": rng.choice([1, 2], 12),
    }
    batch = evaluate_gpu_batch(problem, H100, GpuMapping(), params)
    for i in range(12):
        one = GpuMapping(**{k: int(v[i]) for k, v in params.items()})
        report = evaluate_gpu(problem, H100, one)
        assert report.latency_s == batch.latency_s[i]
        assert report.dram_bytes == batch.dram_bytes[i]
        assert report.valid == batch.valid[i]


def test_calibration_defaults_are_marked_uncalibrated():
    table = load_calibration("h100_sxm")
    assert all(c == Calibration() and c.status == "uncalibrated" for c in table.values())
    problem = AttentionProblem(1, 1, 128, 128, 64, 64)
    base = evaluate_gpu(problem, H100, GpuMapping()).latency_s
    cal = dict(table, fused=Calibration(1.0, 1.0, 5e-6, "test"))
    assert evaluate_gpu(problem, H100, GpuMapping(), calibration=cal).latency_s == pytest.approx(
        base + 5e-6
    )


@pytest.mark.parametrize(
    ("variant", "params", "mask", "form"),
    [
        ("fusemax", {}, Mask.NONE, Form.FUSEMAX_1PASS),
        ("stable_3pass", {}, Mask.NONE, Form.STABLE_3PASS),
        ("causal", {"form": "online_2pass"}, Mask.CAUSAL, Form.ONLINE_2PASS),
        ("sliding_window", {"W": 64}, Mask.WINDOW, Form.FUSEMAX_1PASS),
        ("sliding_window", {"W": 64, "causal": 0}, Mask.SYMMETRIC_WINDOW, Form.FUSEMAX_1PASS),
    ],
)
def test_problem_from_cascade(variant, params, mask, form):
    shape = dict(B=2, H=3, E=64, F=32, M=500, P=400)
    problem = problem_from_cascade(einsim.attention(variant, **params), shape)
    assert (problem.mask, problem.form) == (mask, form)
    assert (problem.batch, problem.heads, problem.seq_q, problem.seq_kv) == (2, 3, 400, 500)
    assert problem.head_dim_v == 32 and problem.window == params.get("W", 0)


def test_more_sweeps_cost_more():
    shape = dict(B=1, H=16, E=128, F=128, M=4096, P=4096)
    times = [
        evaluate_gpu(einsim.attention(form), H100, GpuMapping(), shape=shape).latency_s
        for form in ("fusemax_1pass", "online_2pass", "stable_3pass")
    ]
    assert times[0] < times[1] < times[2]


def test_report_fields_and_errors():
    shape = dict(B=1, H=8, E=64, F=64, M=1000, P=1000)
    report = evaluate_gpu(einsim.attention("stable_3pass"), H100, parse_gpu_mapping(
        "unfused:Br=64,Bc=64,warps=4"), shape=shape)  # fmt: skip
    assert report.per_einsum.kernel.tolist() == ["qk", "softmax", "av"]
    assert report.per_einsum.einsum.tolist() == ["QK", "GM, SN, SD, A", "AV"]
    assert report.energy_pj == pytest.approx(report.latency_s * 700 * 1e12)
    assert report.dram_bytes > 8 * 1000 * 1000 * 4  # S is written once in FP32
    with pytest.raises(SpecError, match="no GPU kernel for cascade 'gqa'"):
        problem_from_cascade(einsim.attention("gqa"), shape)
    with pytest.raises(SpecError, match="KEY=INT"):
        parse_gpu_mapping("fused:tile=3")
    with pytest.raises(SpecError, match="kernel must be one of fused, unfused"):
        parse_gpu_mapping("flash:Br=64")
    with pytest.raises(SpecError, match="split_kv applies to the fused kernel only"):
        parse_gpu_mapping("unfused:split=2")
    with pytest.raises(SpecError, match="unknown parameter"):
        evaluate_gpu_batch(AttentionProblem(1, 1, 8, 8, 8, 8), H100, GpuMapping(), {"Br": [64]})
