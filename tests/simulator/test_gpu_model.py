"""The GPU cost model: tile classes against brute force, invariants, batch == scalars."""

import re

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
    attention_kernel,
    cta_tiles,
    evaluate_gpu,
    evaluate_gpu_batch,
    list_schedule,
    load_calibration,
    load_gpu_architecture,
    parse_gpu_mapping,
    problem_from_cascade,
    score_occupancy,
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
        k = int(rep.kernels[0]["occupancy_ctas_per_sm"][0])
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
    occupancy = rep.kernels[0]["occupancy_ctas_per_sm"]
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
    with pytest.raises(SpecError, match="Einsum AV needs sigmoid"):
        problem_from_cascade(einsim.attention("gated"), shape)
    with pytest.raises(SpecError, match="read one K/V head per query head"):
        problem_from_cascade(einsim.attention("gqa"), dict(shape, H=8, G=2))
    with pytest.raises(SpecError, match="KEY=INT"):
        parse_gpu_mapping("fused:tile=3")
    with pytest.raises(SpecError, match="kernel must be one of fused, unfused"):
        parse_gpu_mapping("flash:Br=64")
    with pytest.raises(SpecError, match="split_kv applies to the fused kernel only"):
        parse_gpu_mapping("unfused:split=2")
    with pytest.raises(SpecError, match="unknown parameter"):
        evaluate_gpu_batch(AttentionProblem(1, 1, 8, 8, 8, 8), H100, GpuMapping(), {"Br": [64]})


# ----------------------------------------------------------- counts from the cascade's IR


def _old_ranges(mask, window, P, M, br, bc):
    """The GPU model's closed-form tile ranges before it read masks from the IR (the
    reference the new counts must reproduce): per query tile (first active key tile, last
    active, first full, last full)."""
    i = np.arange(-(-P // br))
    p0, p1 = i * br, np.minimum(P, (i + 1) * br) - 1
    last, whole = -(-M // bc) - 1, M // bc
    if mask is Mask.NONE:
        return 0 * i, 0 * i + last, 0 * i, 0 * i + whole - 1
    if mask is Mask.CAUSAL:
        return 0 * i, np.minimum(last, p1 // bc), 0 * i, np.minimum((p0 + 1) // bc, whole) - 1
    if mask is Mask.WINDOW:
        first_key, last_key, full_first, full_last = p0 - window + 1, p1, p1 - window + 1, p0
    else:
        h = window // 2
        first_key, last_key, full_first, full_last = p0 - h, p1 + h, p1 - h, p0 + h
    lo = np.maximum(first_key, 0) // bc
    hi = np.where(first_key > M - 1, -1, np.minimum(last_key, M - 1) // bc)
    flo = -(-np.maximum(full_first, 0) // bc)
    return lo, hi, flo, np.minimum((full_last + 1) // bc, whole) - 1


def _old_cta_tiles(problem, br, bc, split):
    lo, hi, flo, fhi = _old_ranges(problem.mask, problem.window, problem.seq_q,
                                   problem.seq_kv, br, bc)  # fmt: skip
    tiles = -(-problem.seq_kv // bc)
    chunk = -(-tiles // split)
    c = np.arange(split)[:, None]
    c_lo, c_hi = c * chunk, np.minimum(tiles, (c + 1) * chunk) - 1

    def overlap(a, b, x, y):
        return np.maximum(0, np.minimum(b, y) - np.maximum(a, x) + 1)

    active = overlap(lo[None], hi[None], c_lo, c_hi)
    full = np.minimum(active, overlap(flo[None], fhi[None], c_lo, c_hi))
    return full.reshape(-1), (active - full).reshape(-1)


def _old_kept(problem):
    p, M, W = np.arange(problem.seq_q), problem.seq_kv, problem.window
    if problem.mask is Mask.NONE:
        return problem.seq_q * M
    if problem.mask is Mask.CAUSAL:
        return int(np.minimum(p + 1, M).sum())
    if problem.mask is Mask.WINDOW:
        lo, hi = np.maximum(0, p - W + 1), np.minimum(p, M - 1)
    else:
        lo, hi = np.maximum(0, p - W // 2), np.minimum(M - 1, p + W // 2)
    return int(np.maximum(0, hi - lo + 1).sum())


OLD_MASKS = [
    (Mask.NONE, 0, {}),
    (Mask.CAUSAL, 0, {}),
    (Mask.WINDOW, 40, {}),
    (Mask.WINDOW, 333, {}),
    (Mask.SYMMETRIC_WINDOW, 64, {}),
    (Mask.SYMMETRIC_WINDOW, 301, {}),
]


def _variant(mask, window, form):
    if mask is Mask.NONE:
        return einsim.attention(form.value)
    if mask is Mask.CAUSAL:
        return einsim.attention("causal", form=form.value)
    causal = mask is Mask.WINDOW
    return einsim.attention("sliding_window", form=form.value, W=window, causal=causal)


@pytest.mark.parametrize(("mask", "window", "_"), OLD_MASKS)
@pytest.mark.parametrize(("P", "M"), [(1000, 1000), (777, 1200), (1200, 500), (1, 4099)])
def test_cascade_tile_counts_equal_the_old_closed_forms(mask, window, _, P, M):
    """The counts read from the cascade's filter equal the old per-mask closed forms, for
    the registered variants that build each mask, in every form, with split-KV."""
    shape = dict(B=1, H=2, E=64, F=64, M=M, P=P)
    for form in Form:
        kernel = attention_kernel(_variant(mask, window, form), shape)
        assert kernel.sweeps == form.sweeps
        problem = AttentionProblem(1, 2, P, M, 64, 64, mask, window, form)
        for br, bc, split in [(16, 16, 1), (64, 32, 1), (128, 64, 3), (48, 80, 2), (256, 256, 8)]:
            new = cta_tiles(kernel, br, bc, split)
            old = _old_cta_tiles(problem, br, bc, split)
            np.testing.assert_array_equal(new[0], old[0])
            np.testing.assert_array_equal(new[1], old[1])
            active, kept = score_occupancy(kernel, np.array([br]), np.array([bc]))
            # the IR's occupancy (per kernel instance: one head here) agrees
            assert active[0] == kernel.heads * (old[0].sum() + old[1].sum())
            assert kept[0] == kernel.heads * _old_kept(problem)


@pytest.mark.parametrize(("mask", "window", "_"), OLD_MASKS)
@pytest.mark.parametrize("kernel_form", list(KernelForm))
def test_predictions_equal_those_from_the_old_counts(monkeypatch, mask, window, _, kernel_form):
    """Every number of the model (latency, HBM bytes, utilizations, per-kernel ops, validity)
    is unchanged when the counts come from the old closed forms instead of the IR."""
    from einsim.simulator.gpu import cost, tiling

    rng = np.random.default_rng(1)
    params = {
        "block_q": rng.choice([16, 64, 128, 256], 40),
        "block_kv": rng.choice([16, 32, 64, 128], 40),
        "stages": rng.choice([1, 2, 3], 40),
        "warps": rng.choice([1, 2, 4, 8], 40),
        "split_kv": rng.choice([1, 2, 4], 40) if kernel_form is KernelForm.FUSED else 1,
    }
    for arch in (H100, load_gpu_architecture("a100_sxm")):
        for shape in (dict(B=2, H=4, E=64, F=64, M=3000, P=3000),
                      dict(B=1, H=2, E=128, F=64, M=777, P=1500)):  # fmt: skip
            form = Form.STABLE_3PASS if kernel_form is KernelForm.UNFUSED else Form.ONLINE_2PASS
            cascade = _variant(mask, window, form)
            new = evaluate_gpu_batch(cascade, arch, GpuMapping(kernel_form), params, shape=shape)
            problem = problem_from_cascade(cascade, shape)
            assert (problem.mask, problem.form) == (mask, form)

            def old_tiles(kernel, br, bc, split, problem=problem):
                return _old_cta_tiles(problem, br, bc, split)

            def old_occupancy(kernel, br, bc, problem=problem):
                active = [sum(x.sum() for x in _old_cta_tiles(problem, b, c, 1))
                          for b, c in zip(br, bc, strict=True)]  # fmt: skip
                kept = _old_kept(problem) * kernel.heads
                return np.array(active) * kernel.heads, np.full(len(br), kept)

            with monkeypatch.context() as patch:
                for module in (cost, tiling):  # where the model calls them
                    patch.setattr(module, "cta_tiles", old_tiles)
                    patch.setattr(module, "score_occupancy", old_occupancy)
                old = evaluate_gpu_batch(cascade, arch, GpuMapping(kernel_form), params,
                                         shape=shape)  # fmt: skip
            np.testing.assert_array_equal(new.valid, old.valid)
            for name in ("latency_s", "dram_bytes", "cycles"):
                np.testing.assert_allclose(getattr(new, name), getattr(old, name), rtol=1e-12)
            for unit in new.utilization:
                np.testing.assert_allclose(new.utilization[unit], old.utilization[unit],
                                           rtol=1e-12)  # fmt: skip
            for a, b in zip(new.einsums, old.einsums, strict=True):
                np.testing.assert_allclose(a["ops"], b["ops"], rtol=1e-12)


def _brute_tiles(cascade, shape, br, bc, split):
    """(full, partial) key tiles per CTA from the filter of the cascade's score Einsum,
    evaluated by the IR's executor over every (m, p) (key tiles padded past M are never full;
    query rows past P are not part of any tile)."""
    from einsim.einsum import resolve_shape
    from einsim.einsum.executor import mask_of

    einsum = cascade.einsum("QK")
    sizes = resolve_shape(cascade, shape)
    P, M = sizes["P"], sizes["M"]
    nq, nk = -(-P // br), -(-M // bc)
    m = np.arange(nk * bc)[None, :]
    p = np.arange(nq * br)[:, None]
    env = {"m": m, "p": p, "h": 0}
    keep, _ = mask_of(cascade, einsum, env, sizes)
    keep = np.ones((nq * br, nk * bc), bool) if keep is None else np.broadcast_to(keep, (
        nq * br, nk * bc))  # fmt: skip
    keep = keep & (m < M) & (p < P)
    real = np.broadcast_to(p < P, keep.shape)
    tiles = keep.reshape(nq, br, nk, bc)
    active = tiles.any(axis=(1, 3))
    full = (tiles | ~real.reshape(nq, br, nk, bc)).all(axis=(1, 3)) & active
    chunk = -(-nk // split)
    out_full, out_part = [], []
    for c in range(split):
        cols = slice(c * chunk, min(nk, (c + 1) * chunk))
        a, f = active[:, cols].sum(1), full[:, cols].sum(1)
        out_full.append(f)
        out_part.append(a - f)
    return np.concatenate(out_full), np.concatenate(out_part)


MASKED_CASES = [
    (name, params, shape)
    for name in einsim.ATTENTION
    for params, shapes in einsim.ATTENTION.entry(name).meta.get("cases", ())
    for shape in shapes
    if name
    in (
        "causal",
        "sliding_window",
        "sinks_window",
        "neighborhood_2d",
        "neighborhood_3d",
        "decode",
        "gqa",
        "cross",
    )
] + [
    ("neighborhood_2d", {"X": 10, "Y": 11, "KW": 5, "DIL": 2}, dict(E=2, F=2, M=110, P=110)),
    ("sinks_window", {"S": 5, "W": 17}, dict(E=2, F=2, M=91, P=91)),
    ("decode", {"W": 13}, dict(E=2, F=2, M=77, P=9)),
]


TILINGS = [(4, 3, 1), (8, 5, 2), (16, 16, 3), (3, 7, 1), (32, 48, 2), (64, 16, 1)]


@pytest.mark.parametrize(("name", "params", "shape"), MASKED_CASES)
@pytest.mark.parametrize(("br", "bc", "split"), TILINGS)
def test_masked_tile_counts_equal_a_brute_force_count(name, params, shape, br, bc, split):
    shape = {k: v for k, v in shape.items() if k != "M0"}
    reference = einsim.attention(name, form="stable_3pass", **params)
    expected = _brute_tiles(reference, shape, br, bc, split)
    for form in ("stable_3pass", "fusemax_1pass"):
        kernel = attention_kernel(einsim.attention(name, form=form, **params), shape)
        full, partial = cta_tiles(kernel, br, bc, split)
        np.testing.assert_array_equal(full, expected[0])
        np.testing.assert_array_equal(partial, expected[1])
        active, _ = score_occupancy(kernel, np.array([br]), np.array([bc]))
        assert active[0] == kernel.heads * (expected[0].sum() + expected[1].sum())


SUPPORTED = {"naive_2pass", "stable_3pass", "online_2pass", "fusemax_1pass", "causal",
             "sliding_window", "sinks_window", "neighborhood_2d", "neighborhood_3d", "gqa",
             "decode", "cross", "block_topk"}  # fmt: skip
# What a refused variant lacks, in the words of the reason (an operator or an operand).
CAPABILITIES = (r"needs \w+", r"reads input\(s\) \w+", r"one score contraction",
                r"no exp over the keys", r"mask of \w+ depends on \w+",
                r"works over the keys without the queries")  # fmt: skip


def _registry_cases():
    for name in einsim.ATTENTION:
        entry = einsim.ATTENTION.entry(name)
        forms = entry.meta.get("forms") or (None,)
        cases = entry.meta.get("cases") or (({}, (dict(E=8, F=8, M=40, P=40),)),)
        for form in forms:
            for params, shapes in cases:
                yield name, (dict(params, form=form.value) if form else params), shapes[0]


@pytest.mark.parametrize("arch", ["h100_sxm", "h200", "a100_sxm"])
@pytest.mark.parametrize(("name", "params", "shape"), list(_registry_cases()))
def test_every_variant_runs_or_is_refused_naming_the_capability(arch, name, params, shape):
    gpu = load_gpu_architecture(arch)
    cascade = einsim.attention(name, **params)
    shape = dict({k: v for k, v in shape.items() if k != "M0"}, B=2)
    grid = dict(block_q=[16, 64], block_kv=[16, 32], warps=[1, 4], split_kv=[1, 2])
    try:
        report = evaluate_gpu_batch(cascade, gpu, GpuMapping(), grid, shape=shape)
    except SpecError as error:  # variants registered later may be refused too, with a reason
        assert name not in SUPPORTED, error
        assert any(re.search(c, str(error)) for c in CAPABILITIES), error
        return
    assert report.valid.all() and np.all(report.latency_s > 0)
    assert np.all(np.isfinite(report.latency_s))


def test_gqa_reads_less_kv_than_multi_head_attention_at_equal_compute():
    shape = dict(B=1, H=32, E=128, F=128, M=4096, P=4096)
    mapping = GpuMapping(block_q=128, block_kv=64, warps=4)
    gqa = evaluate_gpu(einsim.attention("gqa"), H100, mapping, shape=dict(shape, G=8))
    mha = evaluate_gpu(einsim.attention("gqa"), H100, mapping, shape=dict(shape, G=32))
    heads = evaluate_gpu(einsim.attention("fusemax"), H100, mapping, shape=shape)
    assert gqa.dram_bytes < mha.dram_bytes
    # Q and O are the same; K and V shrink by the group size, H / G = 4.
    kv = 32 * 4096 * 256 * 2
    assert mha.dram_bytes - gqa.dram_bytes >= kv * (1 - 1 / 4) * (1 - 1e-12)
    # H is iterated by the GQA cascade and multiplies the instances of the per-head one:
    # the same compute, the same latency for multi-head attention written either way.
    for report in (mha, heads):
        assert report.per_einsum.ops.tolist() == gqa.per_einsum.ops.tolist()
    assert mha.latency_s == pytest.approx(heads.latency_s, rel=1e-12)
    assert mha.dram_bytes == pytest.approx(heads.dram_bytes, rel=1e-12)


def test_masks_the_old_model_refused_skip_the_tiles_they_remove():
    """Sinks, neighborhoods and a decode window are priced from their tile counts: less
    tensor work than the dense attention over the same tokens."""
    shape = dict(B=1, H=8, E=64, F=64, M=4096, P=4096)
    mapping = GpuMapping(block_q=64, block_kv=64, warps=4)
    dense = evaluate_gpu(einsim.attention("fusemax"), H100, mapping, shape=shape)
    for name, params in [("sinks_window", dict(S=4, W=256)),
                         ("neighborhood_2d", dict(X=64, Y=64, KW=7))]:  # fmt: skip
        report = evaluate_gpu(einsim.attention(name, **params), H100, mapping, shape=shape)
        assert report.per_einsum.ops.iloc[0] < 0.2 * dense.per_einsum.ops.iloc[0]
    decode = dict(shape, P=1, M=65536)
    split = GpuMapping(block_q=16, block_kv=64, warps=1, split_kv=8)
    window = evaluate_gpu(einsim.attention("decode", W=4096), H100, split, shape=decode)
    whole = evaluate_gpu(einsim.attention("decode"), H100, split, shape=decode)
    assert window.per_einsum.ops.sum() < whole.per_einsum.ops.sum() / 8


def test_the_gpu_model_reads_no_cascade_name_or_text():
    from pathlib import Path

    import einsim.mapper.gpu
    import einsim.simulator.gpu

    package = Path(einsim.simulator.gpu.__file__).parent
    files = [*package.glob("*.py"), Path(einsim.mapper.gpu.__file__)]
    for path in files:
        text = path.read_text()
        assert not re.search(r"\.name\s*(==|!=|\bin\b)", text), path
        assert not re.search(r"str\(cascade\)|format_cascade|W / 2", text), path


@pytest.mark.parametrize("density", [None, 0.25, 1.0])
def test_a_block_mask_is_priced_from_its_occupancy_and_a_gate_kernel(density):
    """MoBA's top-k block mask: the gate (block means, gate scores, top-k) is a kernel of its
    own with the selection Einsums' op counts; the attention's tiles are the occupancy's
    under the density (the declared one by default), spread over the CTAs."""
    from einsim.einsum import op_counts

    shape = dict(B=1, H=4, E=64, F=64, M=4096, P=4096)
    moba = einsim.attention("block_topk", BS=512, TOPK=2)
    kernel = attention_kernel(moba, shape, density=density)
    assert kernel.data_dependent and {"KS", "GATE", "T2"} <= set(kernel.selection)
    report = evaluate_gpu(moba, H100, GpuMapping(block_q=64, block_kv=64, warps=4),
                          shape=shape, density=density)  # fmt: skip
    rows = report.per_einsum.set_index("kernel")
    assert rows.einsum["select"] == ", ".join(kernel.selection)
    counts = op_counts(moba, dict(E=64, F=64, M=4096, P=4096), density=density)
    gate = sum(float(n) for name in kernel.selection for n in counts[name].values())
    assert rows.ops["select"] == pytest.approx(4 * gate)  # H = 4 copies of the cascade
    full, partial = cta_tiles(kernel, 64, 64, 2)
    active, _ = score_occupancy(kernel, [64], [64])
    assert (full + partial).sum() == pytest.approx(active[0])
    assert report.valid and report.latency_s > 0


# ----------------------------------------------------------- issue 16 on the GPU targets


def test_per_head_masks_cost_each_head_class_as_its_own_mask():
    # DuoAttention with half its heads retrieval (causal) and half streaming (sinks +
    # window): the tiles are those of 4 causal heads plus 4 sinks-window heads, counted by
    # the brute-force filter of the two plain variants (a reference independent of the
    # head classes), and the latency lies between the all-causal and all-streaming ones.
    shape = dict(B=1, H=8, E=64, F=64, M=1024, P=1024)
    mapping = GpuMapping(block_q=64, block_kv=64, warps=4)
    duo = einsim.attention("duo_attention", RP=50, S=4, W=128)
    kernel = attention_kernel(duo, shape)
    assert [count for _, count in kernel.head_classes] == [4, 4]
    one = {k: v for k, v in shape.items() if k not in ("B", "H")}
    causal = _brute_tiles(einsim.attention("causal", form="stable_3pass"), one, 64, 64, 1)
    sinks = _brute_tiles(einsim.attention("sinks_window", form="stable_3pass", S=4, W=128),
                         one, 64, 64, 1)  # fmt: skip
    for index, reference in ((0, causal), (1, sinks)):
        full, part = cta_tiles(kernel.head_class(index), 64, 64, 1)
        np.testing.assert_array_equal(full, reference[0])
        np.testing.assert_array_equal(part, reference[1])
    active, _ = score_occupancy(kernel, np.array([64]), np.array([64]))
    assert active[0] == 4 * (causal[0].sum() + causal[1].sum() + sinks[0].sum() + sinks[1].sum())
    times = [
        evaluate_gpu(einsim.attention("duo_attention", RP=rp, S=4, W=128), H100, mapping,
                     shape=shape).latency_s
        for rp in (0, 50, 100)
    ]  # fmt: skip
    assert times[0] < times[1] <= times[2]


def test_extra_inputs_are_read_from_hbm():
    # bias: QK + Bias[m, p]; each of the B x H instances reads its M x P bias once, on top
    # of the same attention without it.
    shape = dict(B=2, H=4, E=64, F=64, M=512, P=512)
    mapping = GpuMapping(block_q=64, block_kv=64, warps=4)
    plain = evaluate_gpu(einsim.attention("fusemax_1pass"), H100, mapping, shape=shape)
    bias = evaluate_gpu(einsim.attention("bias"), H100, mapping, shape=shape)
    assert bias.dram_bytes - plain.dram_bytes == pytest.approx(2 * 4 * 512 * 512 * 2)
    assert bias.latency_s >= plain.latency_s  # its tiles stream in with K and V
    with pytest.raises(SpecError, match=r"reads input\(s\) Bias besides Q, K and V"):
        problem_from_cascade(einsim.attention("bias"), shape)  # the CUDA kernels do not


def test_operators_the_gpu_lacks_run_lowered_on_its_pipes():
    # gated: AV = AVU * sigmoid(G); sigmoid = 1 / (1 + exp(-x)) is one exp and one divide
    # on the SFU per element of G[f, p], and the report names the lowered Einsum.
    from einsim.simulator.gpu.problem import extra_work

    shape = dict(B=1, H=4, E=64, F=64, M=512, P=512)
    kernel = attention_kernel(einsim.attention("gated"), shape)
    assert dict(kernel.lowered) == {"AV": "sigmoid"}
    mma, sfu, fp32 = extra_work(kernel)
    # per instance (one of the B x H heads): G[f, p] has F x P elements
    assert (mma, sfu) == (0.0, 2.0 * 64 * 512)
    assert fp32 == pytest.approx((1 + 1 + 1) * 64 * 512)  # neg, add, and the product
    report = evaluate_gpu(einsim.attention("gated"), H100, GpuMapping(), shape=shape)
    assert report.lowered_einsums and "AV: sigmoid" in next(iter(report.lowered_einsums.values()))


def test_an_operator_without_any_lowering_is_refused_naming_it():
    from einsim.einsum import parse_cascade

    text = """inputs: Q[e,p], K[e,m], V[f,m]
outputs: AV
QK[m,p] = Q[e,p] * K[e,m]
SN[m,p] = exp(QK[m,p])
SD[p] = sum(m) SN[m,p]
A[m,p] = SN[m,p] / SD[p]
AV[f,p] = A[m,p] * V[f,m]
Y[f,p] = elu(AV[f,p])
"""
    cascade = parse_cascade(text.replace("outputs: AV", "outputs: Y"), name="elu_out")
    kernel = attention_kernel(cascade, dict(E=8, F=8, M=64, P=64))
    assert dict(kernel.lowered) == {"Y": "elu"}  # elu lowers (max, exp, sub, min, add)
    from einsim.einsum import Op
    from einsim.simulator.gpu import problem as gpu_problem

    narrow = gpu_problem.GPU_INSTRUCTIONS - {Op.MIN, Op.MAX}  # no min or max: elu cannot run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpu_problem, "GPU_INSTRUCTIONS", narrow)
        with pytest.raises(SpecError, match="Einsum Y needs elu, which no GPU instruction"):
            attention_kernel(cascade, dict(E=8, F=8, M=64, P=64))


#: Variants the GPU model refused before issue 16's GPU work, and costs now on every preset.
NOW_COSTED = ("duo_attention", "razor_attention", "bias", "gated", "selective", "relative",
              "softplus", "routing", "hyper_attention", "moh", "flexprefill")  # fmt: skip


@pytest.mark.parametrize("arch", ["h100_sxm", "h200", "a100_sxm"])
@pytest.mark.parametrize("name", NOW_COSTED)
def test_literature_variants_cost_on_every_gpu_preset(arch, name):
    cascade = einsim.attention(name)
    entry = einsim.ATTENTION.entry(name)
    cases = entry.meta.get("cases")
    shape = {"B": 2, "H": 4, **{k: v for k, v in cases[0][1][0].items() if k != "M0"}}
    names = set(cascade.ranks) | {"B", "H"}
    shape = {k: v for k, v in shape.items() if k in names}
    report = evaluate_gpu(cascade, load_gpu_architecture(arch), GpuMapping(block_q=16,
                          block_kv=16, warps=1), shape=shape)  # fmt: skip
    assert report.valid and np.isfinite(report.latency_s) and report.latency_s > 0
