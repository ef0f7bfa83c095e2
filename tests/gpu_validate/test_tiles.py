"""The numpy tile executor against the IR executor and the direct formulas (float64)."""

import numpy as np
import pytest

import einsim
from einsim.gpu_validate.tiles import problem_arrays, run_tiles
from einsim.simulator.gpu import AttentionProblem, GpuMapping, KernelForm, problem_from_cascade

FORMS = ("fusemax_1pass", "online_2pass", "stable_3pass")
VARIANTS = [
    ("fusemax_1pass", {}),
    ("causal", {}),
    ("sliding_window", {"W": 5}),
    ("sliding_window", {"W": 7, "causal": 0}),
]
# Odd sizes: partial query and key tiles, P != M for the unmasked variant.
MAPPINGS = [
    GpuMapping(block_q=4, block_kv=3, warps=1),
    GpuMapping(block_q=5, block_kv=4, warps=1, split_kv=2),
    GpuMapping(block_q=3, block_kv=2, warps=1, split_kv=3),
    GpuMapping(block_q=16, block_kv=16, warps=1),
    GpuMapping(KernelForm.UNFUSED, block_q=4, block_kv=4, warps=1),
]


def _case(variant, params, form, rng):
    cascade = einsim.attention(variant, form=form, **params) if variant != form else (
        einsim.attention(form)
    )  # fmt: skip
    p = 13 if variant != "fusemax_1pass" else 11
    shape = dict(B=2, H=1, E=5, F=3, M=13, P=p)
    problem = problem_from_cascade(cascade, shape, dtype="fp64")
    arrays = problem_arrays(problem, rng)
    return cascade, shape, problem, arrays


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("variant", "params"), VARIANTS)
@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: m.name)
def test_tile_executor_equals_the_ir_executor(variant, params, form, mapping, rng):
    if variant == "fusemax_1pass":
        variant = form
    cascade, shape, problem, arrays = _case(variant, params, form, rng)
    got = run_tiles(problem, mapping, arrays["Q"], arrays["K"], arrays["V"])
    for b in range(problem.batch):
        inputs = {name: a[b, 0] for name, a in arrays.items()}
        expected = cascade.evaluate(inputs, {**shape, "M0": 4})["AV"]
        np.testing.assert_allclose(got[b, 0], expected, rtol=1e-10, atol=1e-12)
        direct = einsim.direct(cascade.name, inputs, **params)
        np.testing.assert_allclose(got[b, 0], direct, rtol=1e-10, atol=1e-12)


def test_a_wrong_tile_class_would_show(rng, monkeypatch):
    # The executor masks only the tiles cta_tiles calls partial: calling every tile full
    # must break a causal answer (so the equality above is evidence about the classes).
    import einsim.gpu_validate.tiles as tiles

    problem = AttentionProblem(1, 1, 9, 9, 3, 2, einsim.simulator.gpu.Mask.CAUSAL, dtype="fp64")
    arrays = problem_arrays(problem, rng)
    mapping = GpuMapping(block_q=4, block_kv=4, warps=1)
    right = run_tiles(problem, mapping, arrays["Q"], arrays["K"], arrays["V"])
    original = tiles.tile_counts

    def all_full(problem, br, bc):
        lo, hi, _, _ = original(problem, br, bc)
        return lo, hi, lo, hi

    monkeypatch.setattr(tiles, "tile_counts", all_full)
    wrong = run_tiles(problem, mapping, arrays["Q"], arrays["K"], arrays["V"])
    assert np.abs(wrong - right).max() > 1e-3


def test_long_rows_and_many_heads(rng):
    problem = AttentionProblem(
        1, 3, 70, 70, 8, 8, einsim.simulator.gpu.Mask.WINDOW, 19, dtype="fp64"
    )
    arrays = problem_arrays(problem, rng)
    got = run_tiles(
        problem, GpuMapping(block_q=16, block_kv=8, warps=1, split_kv=4), *arrays.values()
    )
    for h in range(3):
        inputs = {name: a[0, h] for name, a in arrays.items()}
        expected = einsim.direct("sliding_window", inputs, W=19)
        np.testing.assert_allclose(got[0, h], expected, rtol=1e-10, atol=1e-12)
