"""The tiled executor against the materializing one and the direct formulas, on every
registered variant and form (odd sizes, partial tiles), plus its interval arithmetic."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim import SpecError, attention, parse_cascade
from einsim.einsum.executor import evaluate
from einsim.einsum.tiled import Executor, _Box, plan
from einsim.workloads import ATTENTION, KERNELS, direct
from einsim.workloads.direct import random_inputs

TILES = (None, {"P": 2, "M": 3, "N": 2, "A": 2}, {"P": 5, "M1": 2})


def _traced_evaluate(*args, **kwargs):
    """`evaluate(*args, **kwargs)` and the peak of Python-allocated memory it took (bytes)."""
    tracemalloc.start()
    try:
        out = evaluate(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, peak


def _cases():
    for name in ATTENTION:
        entry = ATTENTION.entry(name)
        cases = entry.meta.get("cases") or (({}, ({"E": 4, "F": 3, "M": 7, "P": 5, "M0": 3},)),)
        forms = [f.value for f in entry.meta.get("forms", ())] or [None]
        for i, (params, shapes) in enumerate(cases):
            for j, shape in enumerate(shapes):
                for form in forms:
                    yield pytest.param(name, form, params, shape, id=f"{name}-{form}-{i}{j}")


@pytest.mark.parametrize(("name", "form", "params", "shape"), list(_cases()))
def test_every_variant_and_form_matches_materialize_and_direct(name, form, params, shape, rng):
    cascade = attention(name, **params, **({"form": form} if form else {}))
    inputs = random_inputs(cascade, shape, rng)
    old = evaluate(cascade, inputs, shape, method="materialize")
    expected = direct(name, inputs, **params)
    for tile in TILES:
        new = evaluate(cascade, inputs, shape, tile=tile)
        assert set(new) == set(old)
        for tensor in old:
            np.testing.assert_allclose(
                new[tensor], old[tensor], rtol=1e-12, atol=1e-12, err_msg=f"{tensor} {tile}"
            )
        lean = evaluate(cascade, inputs, shape, keep=cascade.outputs, tile=tile)
        assert set(lean) == set(cascade.outputs)
        np.testing.assert_allclose(lean["AV"], old["AV"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(lean["AV"], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernels_match_materialize(name, rng):
    cascade = KERNELS[name]() if callable(KERNELS[name]) else KERNELS[name]
    shape = {r: 5 + i for i, r in enumerate(cascade.ranks)}
    inputs = random_inputs(cascade, shape, rng)
    old = evaluate(cascade, inputs, shape, method="materialize")
    for tile in (None, {r: 2 for r in cascade.ranks}):
        new = evaluate(cascade, inputs, shape, tile=tile)
        for tensor in old:
            np.testing.assert_allclose(new[tensor], old[tensor], rtol=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        # A masked reduction whose tiles run along the reduced rank (accumulated).
        "inputs: Q[e,p], K[e,m]\nQK[m,p] = Q[e,p] * K[e,m] where m <= p\n"
        "GM[p] = max(m) QK[m,p] where m <= p\nGS[p] = sum(m) exp(QK[m,p]) where p - m < 3",
        # A masked contraction over the masked rank: BLAS with the operand zeroed.
        "inputs: A[m,p], V[f,m]\nAV[f,p] = A[m,p] * V[f,m] where m <= p and m + 2 > p",
        # Gathers (non-affine indices) with a filter guarding the bounds.
        "inputs: X[t]\nranks: S\nY[t,s] = X[t+s] where t + s < T",
        "inputs: X[t]\nY[t] = X[T-1-t] * X[t // 2]",
        # A partition read as a reshape, a partial last tile, and a reduction over both parts.
        "inputs: K[e,m]\npartition: M -> M1, M0\nBK[e,m1,m0] = K[e,m1*M0+m0]\n"
        "S[e] = sum(m1,m0) BK[e,m1,m0]\nL[e,m1] = max(m0) BK[e,m1,m0] where m0 % 2 == 0",
        # Three operands (np.einsum) and a product over a filtered rank.
        "inputs: A[i,k], B[k,j], C[j]\nZ[i] = A[i,k] * B[k,j] * C[j]\n"
        "W[i] = prod(k) A[i,k] where k != i",
    ],
)
@pytest.mark.parametrize("tile", [None, {"M": 2, "P": 3, "T": 2, "S": 2, "K": 2, "M1": 2}])
def test_parsed_cascades_match_materialize(text, tile, rng):
    cascade = parse_cascade(text)
    shape = {"E": 3, "M": 7, "P": 6, "F": 2, "T": 9, "S": 4, "M0": 3, "I": 4, "K": 5, "J": 3}
    inputs = random_inputs(cascade, shape, rng)
    old = evaluate(cascade, inputs, shape, method="materialize")
    new = evaluate(cascade, inputs, shape, tile=tile)
    for tensor in old:
        np.testing.assert_allclose(new[tensor], old[tensor], rtol=1e-12, err_msg=tensor)


def test_streaming_keeps_only_the_live_state():
    cascade = attention("fusemax_1pass")
    slots = {name for name, _, _ in plan(cascade, cascade.outputs).slots}
    assert {"QK", "SLN", "RM", "RD", "RNV"} <= slots
    assert not plan(cascade, None).slots  # keep=None returns every tensor in full
    rng = np.random.default_rng(0)
    n = 2048
    inputs = {
        "Q": rng.normal(size=(8, n)),
        "K": rng.normal(size=(8, n)),
        "V": rng.normal(size=(4, n)),
    }
    shape = {"E": 8, "F": 4, "M": n, "P": n, "M0": 128}
    out, peak = _traced_evaluate(cascade, inputs, shape, keep=("AV",))
    # Materializing QK alone takes M x P x 8 bytes (32 MiB); the stream holds a few M0 x P
    # tiles (2 MiB each).
    assert peak < n * n * 8 / 2
    np.testing.assert_allclose(out["AV"], direct("fusemax_1pass", inputs), rtol=1e-9)


def test_errors_are_named():
    cascade = attention("naive_2pass")
    shape = {"E": 2, "F": 2, "M": 3, "P": 4}
    data = {"Q": np.ones((2, 4)), "K": np.ones((2, 3)), "V": np.ones((2, 3))}
    with pytest.raises(SpecError, match="unknown method 'fast'; known: tiled, materialize"):
        evaluate(cascade, data, shape, method="fast")
    with pytest.raises(SpecError, match="keep names unknown tensor"):
        evaluate(cascade, data, shape, keep=("XX",))
    bad = parse_cascade("inputs: X[t]\nY[t] = X[t+1] where t < T")
    with pytest.raises(SpecError, match="reads outside X"):
        evaluate(bad, {"X": np.ones(4)}, {"T": 4})
    ok = parse_cascade("inputs: X[t]\nY[t] = X[t+1] where t + 1 < T")
    np.testing.assert_allclose(evaluate(ok, {"X": np.arange(4.0)}, {"T": 4})["Y"], [1, 2, 3, 0])


_NATTEN = attention("neighborhood_2d", form="stable_3pass")


@settings(max_examples=60, deadline=None)
@given(
    x=st.integers(2, 7),
    y=st.integers(2, 7),
    kw=st.integers(1, 3),
    dil=st.integers(1, 2),
    stride=st.integers(1, 3),
    m_tile=st.integers(1, 9),
    p_tile=st.integers(1, 9),
)
def test_tile_classes_are_sound(x, y, kw, dil, stride, m_tile, p_tile):
    """A tile said empty keeps no point and a tile said full keeps every point
    (brute force over the index grid), for NATTEN's filter and the causal window."""
    sizes = {"X": x, "Y": y, "KW": min(kw, x, y), "DIL": dil, "STRIDE": stride}
    sizes.update(M=x * y, P=x * y, E=1, F=1)
    if (sizes["KW"] - 1) * dil >= min(x, y):
        sizes["DIL"] = 1
    for cascade in (_NATTEN, attention("sliding_window", form="stable_3pass", W=3)):
        einsum = cascade.einsum("QK")
        ex = Executor(cascade, {**sizes, "W": 3}, {}, np.float64, None)
        names = list(einsum.iter_vars)
        full_box = _Box(names, [0] * len(names), [sizes[v.upper()] for v in names])
        for lo_m in range(0, sizes["M"], m_tile):
            box = full_box.with_range("m", lo_m, min(lo_m + m_tile, sizes["M"]))
            for lo, hi, status in ex.classify(einsum, box, "p", p_tile):
                keep = ex.mask(einsum, box.with_range("p", lo, hi))
                keep = np.broadcast_to(keep, box.with_range("p", lo, hi).extents)
                if status == 0:
                    assert not keep.any()
                if status == 2:
                    assert keep.all()


def test_multi_pass_forms_run_in_chunks_of_the_query_rank(rng):
    """QK[m,p] of the three-pass form is read by a later pass, so it is held, but for one
    chunk of P at a time: P is never reduced and always read as plain `p`."""
    from einsim.einsum.executor import tensor_shapes
    from einsim.einsum.shape import resolve_shape
    from einsim.einsum.tiled import parallel_rank

    n = 1024
    cascade = attention("causal", form="stable_3pass")
    shape = {"E": 8, "F": 4, "M": n, "P": n}
    sizes = resolve_shape(cascade, shape)
    shapes = tensor_shapes(cascade, sizes)
    lean = plan(cascade, cascade.outputs)
    assert parallel_rank(cascade, lean, cascade.outputs, sizes, shapes, {"P": 64}) == ("P", 64)
    fused = attention("causal")  # every big tensor is a slot of the M1 loop: nothing to chunk
    fused_sizes = resolve_shape(fused, shape)
    fused_shapes = tensor_shapes(fused, fused_sizes)
    assert (
        parallel_rank(fused, plan(fused, ("AV",)), ("AV",), fused_sizes, fused_shapes, None)[0]
        == ""
    )
    inputs = random_inputs(cascade, shape, rng)
    out, peak = _traced_evaluate(cascade, inputs, shape, keep=("AV",), tile={"P": 64})
    assert peak < n * n * 8 / 2  # QK alone, held whole, is n * n * 8 bytes
    np.testing.assert_allclose(out["AV"], direct("causal", inputs), rtol=1e-9)


def _quiet(cascade, shape, keep=("AV",)):
    """The quiet-column analysis of each run of the cascade's plan (None: runs whole)."""
    from einsim.einsum.executor import tensor_shapes
    from einsim.einsum.shape import resolve_shape
    from einsim.einsum.tiled import Run, quiet_columns

    sizes = resolve_shape(cascade, shape)
    the_plan = plan(cascade, keep)
    ex = Executor(cascade, sizes, tensor_shapes(cascade, sizes), np.float64, None)
    slot = {name: (dim, iterative) for name, dim, iterative in the_plan.slots}
    kept = set(cascade.tensor_ranks) if keep is None else set(keep)
    return [quiet_columns(ex, r, slot, kept) for r in the_plan.items if isinstance(r, Run)]


_WINDOW_SHAPE = {"E": 3, "F": 2, "M": 37, "P": 41, "M0": 4}


def test_quiet_columns_are_proved_from_the_cascade():
    """The fused forms of masked attention skip, per M1 step, the queries no key of the
    step reaches: RM, RD and RNV are provably unchanged there (max(x, -inf) = x,
    exp(x - x) = 1 for finite x, x * 1 + 0 = x). A correction that is not an identity
    (+ 0.5), an unmasked cascade and keep=None (everything returned in full) run whole."""
    for name in ("causal", "sliding_window"):
        (quiet,) = _quiet(
            attention(name, W=9) if name != "causal" else attention(name), _WINDOW_SHAPE
        )
        assert quiet is not None and quiet.var == "p" and quiet.finite == ("RM",)
    assert _quiet(attention("fusemax_1pass"), _WINDOW_SHAPE) == [None]
    assert _quiet(attention("causal"), _WINDOW_SHAPE, keep=None) == [None]
    text = str(attention("causal"))
    changed = text.replace(
        "RD[m1+1,p] = SPD[m1,p] + SLD[m1,p]", "RD[m1+1,p] = SPD[m1,p] + SLD[m1,p] + 0.5"
    )
    assert changed != text
    assert _quiet(parse_cascade(changed), _WINDOW_SHAPE) == [None]


@pytest.mark.parametrize("tile", [None, {"P": 3}, {"P": 7, "M1": 2}, {"P": 64}])
@pytest.mark.parametrize(
    ("name", "params"),
    [("causal", {}), ("sliding_window", {"W": 9}), ("sliding_window", {"W": 6, "causal": False})],
)
def test_skipping_quiet_columns_is_exact(name, params, tile, rng):
    """Odd sizes, partial M0 and P tiles, windows narrower and wider than a tile: the
    streamed result (quiet columns skipped) equals the materializing executor."""
    cascade = attention(name, **params)
    inputs = random_inputs(cascade, _WINDOW_SHAPE, rng)
    old = evaluate(cascade, inputs, _WINDOW_SHAPE, method="materialize")["AV"]
    new = evaluate(cascade, inputs, _WINDOW_SHAPE, keep=("AV",), tile=tile)["AV"]
    np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new, direct(name, inputs, **params), rtol=1e-9, atol=1e-9)


def test_a_non_finite_running_max_runs_the_step_whole(rng):
    """x - x = 0 holds only for finite x: with the running max starting at -inf, the
    queries no key of the first step reaches get exp(-inf - -inf) = NaN from the cascade
    as written, and the streamed run must give the same NaNs (the step runs whole)."""
    text = str(attention("sliding_window", W=6, causal=False))
    changed = text.replace("RM[0,p] = -1e+30", "RM[0,p] = -inf")
    assert changed != text
    cascade = parse_cascade(changed)
    inputs = random_inputs(cascade, _WINDOW_SHAPE, rng)
    old = evaluate(cascade, inputs, _WINDOW_SHAPE, method="materialize")["AV"]
    new = evaluate(cascade, inputs, _WINDOW_SHAPE, keep=("AV",), tile={"P": 3})["AV"]
    assert np.isnan(old).any() and not np.isnan(old).all()
    np.testing.assert_array_equal(np.isnan(new), np.isnan(old))
    np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-12)


_SCANS = (
    "inputs: X[e,m]\nC[0,e] = 0\nG[0,e] = -1\nC[m+1,e] = C[m,e] + X[e,m]\n"
    "G[m+1,e] = max(X[e,m] * 2, G[m,e])\nY[e] = C[M,e] * G[M,e]"
)


@pytest.mark.parametrize("tile", [None, {"M": 2, "E": 2}])
def test_recurrences_run_as_one_accumulate(tile, monkeypatch, rng):
    """A loop of T[v+1] = T[v] op X (a prefix sum, a running max) runs as op.accumulate
    over all steps, no step loop, and gives the step loop's numbers (numpy's cumsum too)."""
    cascade = parse_cascade(_SCANS)
    shape = {"E": 3, "M": 11}
    inputs = random_inputs(cascade, shape, rng)
    old = evaluate(cascade, inputs, shape, method="materialize")
    stepped = []
    original = Executor.run

    def run(self, einsum, bounds, accumulate=False):
        stepped.append(einsum.output)
        return original(self, einsum, bounds, accumulate)

    monkeypatch.setattr(Executor, "run", run)
    new = evaluate(cascade, inputs, shape, tile=tile)
    assert "C" not in stepped and "G" not in stepped
    for tensor in old:
        np.testing.assert_array_equal(new[tensor], old[tensor], err_msg=tensor)
    np.testing.assert_allclose(new["C"][1:], np.cumsum(inputs["X"].T, axis=0), rtol=1e-12)


def test_a_loop_over_a_plain_rank_runs_only_its_recurrences():
    """Razor's three-pass form loops over m only for its prefix sums (CK, CV); its score
    Einsums run whole instead of one key at a time, the prefix sums as one loop."""
    from einsim.einsum.tiled import Run

    cascade = attention("razor_attention", form="stable_3pass")
    items = plan(cascade, cascade.outputs).items
    shown = [[e.output for e in i.einsums] if isinstance(i, Run) else i.output for i in items]
    assert shown[0] == ["CK", "CV"]
    assert all(isinstance(item, str) for item in shown[1:]) and "QK" in shown


def test_a_data_dependent_filter_on_a_reduced_rank_is_cut_into_bounded_tiles(rng):
    """B[n] = sum(n2) Y[n2] where Y[n2] > X[n]: no operand carries both n and n2, so no
    BLAS; the iteration space is built tile by tile (at most TILE_POINTS points), never
    whole (N x N2 float64 = 128 MiB here)."""
    cascade = parse_cascade("inputs: X[n], Y[n2]\nB[n] = sum(n2) Y[n2] where Y[n2] > X[n]")
    n = 4096
    inputs = {"X": rng.normal(size=n), "Y": rng.normal(size=n)}
    out, peak = _traced_evaluate(cascade, inputs, {"N": n, "N2": n}, keep=("B",))
    out = out["B"]
    assert peak < n * n * 8 * 3 / 4
    y, x = inputs["Y"], inputs["X"]
    expected = np.array([y[y > value].sum() for value in x])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_a_reduction_tile_one_index_wide_keeps_its_mask(monkeypatch, rng):
    """A tile one index wide along the reduced rank (the last of tiles cut at a width that
    does not divide P) has a mask over the output only; combined into the sum, it still
    adds only the kept points (BiFormer's region sums at 64 x 64)."""
    cascade = parse_cascade(
        "inputs: Q[e,p]\nranks: NQ\nQS[e,nq] = sum(p) Q[e,p] where p // 4 % 3 == nq"
    )
    from einsim.einsum import tiled

    q = rng.normal(size=(2, 13))
    monkeypatch.setattr(tiled, "TILE_POINTS", 2 * 3 * 6)  # boxes of 6 queries: 6, 6, 1
    for tile in (None, {"P": 4}, {"P": 6}):
        out = evaluate(cascade, {"Q": q}, {"E": 2, "P": 13, "NQ": 3}, tile=tile)["QS"]
        region = np.arange(13) // 4 % 3
        expected = np.stack([q[:, region == r].sum(axis=1) for r in range(3)], axis=1)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12, err_msg=str(tile))


def test_einsums_sharing_a_data_dependent_filter_evaluate_it_once_per_tile(monkeypatch, rng):
    """The four Einsums of a masked softmax share the filter `S[(p - m) % M] > 0` (a gather
    over the whole M x P space): its masks are computed for the first one's tiles and
    reused by the others (the same tiles: power-of-two tile widths), and stay exact."""
    from einsim.einsum import tiled

    where = "where S[(p - m) % M] > 0"
    text = "\n".join(
        [
            "inputs: Q[e,p], K[e,m], S[m]",
            f"QK[m,p] = Q[e,p] * K[e,m] {where}",
            f"MX[p] = max(m) QK[m,p] {where}",
            f"SN[m,p] = exp(QK[m,p] - MX[p]) {where}",
            f"SD[p] = sum(m) SN[m,p] {where}",
        ]
    )
    n, e = 37, 3
    inputs = {"Q": rng.normal(size=(e, n)), "K": rng.normal(size=(e, n)), "S": rng.normal(size=n)}
    sizes = {"E": e, "M": n, "P": n}
    monkeypatch.setattr(tiled, "TILE_POINTS", 300)  # several tiles of each Einsum
    gathers = []
    real = tiled.Executor._gather
    monkeypatch.setattr(
        tiled.Executor,
        "_gather",
        lambda self, access, box, mask, array=None: (
            gathers.append(access.tensor) or real(self, access, box, mask, array)
        ),
    )
    first = evaluate(parse_cascade("\n".join(text.splitlines()[:2])), inputs, sizes)
    alone = gathers.count("S")
    gathers.clear()
    out = evaluate(parse_cascade(text), inputs, sizes, keep=("QK", "SD"))
    assert alone > 1 and gathers.count("S") == alone
    m, p = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    kept = inputs["S"][(p - m) % n] > 0
    qk = np.where(kept, inputs["K"].T @ inputs["Q"], 0.0)
    np.testing.assert_allclose(first["QK"], qk, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["QK"], qk, rtol=1e-12, atol=1e-12)
    mx = np.where(kept, qk, -np.inf).max(axis=0)
    sd = np.where(kept, np.exp(qk - mx), 0.0).sum(axis=0)
    np.testing.assert_allclose(out["SD"], sd, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=3),
    st.lists(st.integers(0, 3), min_size=1, max_size=3),
    st.integers(0, 2**31),
)
def test_take_equals_advanced_indexing(dims, box, seed):
    """`_take` (one np.take per dimension) against numpy's advanced indexing, for index
    arrays varying along their own box axes or sharing one (X[m, m]), scalars included."""
    from einsim.einsum.tiled import _take

    rng = np.random.default_rng(seed)
    array = rng.normal(size=dims)
    n = len(box)
    index = []
    for size in dims:
        axes = [k for k in range(n) if rng.random() < 0.5]
        shape = [box[k] + 1 if k in axes else 1 for k in range(n)]
        index.append(np.array(rng.integers(0, size)) if not axes else rng.integers(0, size, shape))
    np.testing.assert_array_equal(_take(array, index), array[tuple(index)])


def test_a_head_evaluates_only_the_branch_it_takes(monkeypatch, rng):
    """`G[h] > 0 and S[(p - m) % M] > 0 or G[h] <= 0 and T[m] > 0`: a head whose G is
    positive gathers S, the others read T only (the and short-circuits per head), with
    the materializing executor's values."""
    from einsim.einsum import tiled

    text = "\n".join(
        [
            "inputs: Q[h,e,p], K[h,e,m], G[h], S[h,d], T[h,m]",
            "QK[h,m,p] = Q[h,e,p] * K[h,e,m] where m <= p and "
            "(G[h] > 0 and S[h,(p - m) % M] > 0 or G[h] <= 0 and T[h,m] > 0)",
        ]
    )
    cascade = parse_cascade(text)
    sizes = {"H": 5, "E": 2, "M": 23, "P": 23, "D": 23}
    inputs = random_inputs(cascade, sizes, rng)
    inputs["G"] = np.array([1.0, -1.0, -1.0, 1.0, 1.0])
    heads = []
    real = tiled.Executor._gather
    monkeypatch.setattr(
        tiled.Executor,
        "_gather",
        lambda self, access, box, mask, array=None: (
            (heads.extend(range(box.lo[0], box.hi[0])) if access.tensor == "S" else None)
            or real(self, access, box, mask, array)
        ),
    )
    old = evaluate(cascade, inputs, sizes, method="materialize")["QK"]
    for tile in (None, {"P": 4}):
        heads.clear()
        new = evaluate(cascade, inputs, sizes, tile=tile)["QK"]
        np.testing.assert_allclose(new, old, rtol=1e-12, atol=1e-12)
        assert heads and set(heads) == {0, 3, 4}


def test_a_masked_sum_of_values_not_finite_where_dropped(rng):
    """sum(n2) Y[n2] where Y[n2] > X[n] with Y = -inf or nan at some points: those points
    are dropped (never added), so the einsum of values and mask (0 * inf = nan) must not
    serve; max and min over the same filter keep only the kept points too."""
    text = "\n".join(
        [
            "inputs: X[n], Y[n2]",
            "B[n] = sum(n2) Y[n2] where Y[n2] > X[n]",
            "C[n] = max(n2) Y[n2] where Y[n2] < X[n]",
        ]
    )
    cascade = parse_cascade(text)
    x, y = rng.normal(size=9), rng.normal(size=11)
    y[[2, 7]] = -np.inf
    y[5] = np.nan
    out = evaluate(cascade, {"X": x, "Y": y}, {"N": 9, "N2": 11}, tile={"N2": 4})
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out["B"], [y[y > v].sum() for v in x], rtol=1e-12)
        kept = [y[y < v] for v in x]
    np.testing.assert_allclose(out["C"], [k.max() if k.size else -np.inf for k in kept])


def test_a_filter_no_later_einsum_shares_keeps_no_masks(rng):
    """B[n] = sum(n2) Y[n2] where Y[n2] > X[n], the only Einsum with its filter: each tile's
    mask is freed once used, so the masks never add up to a byte per point of the whole
    iteration space (16 MiB here), and the sum stays exact."""
    cascade = parse_cascade("inputs: X[n], Y[n2]\nB[n] = sum(n2) Y[n2] where Y[n2] > X[n]")
    n = 4096
    inputs = {"X": rng.normal(size=n), "Y": rng.normal(size=n)}
    out, peak = _traced_evaluate(cascade, inputs, {"N": n, "N2": n}, keep=("B",))
    out = out["B"]
    assert peak < n * n * 3 / 4  # a tile's mask (4 MiB) and the next one's, not all 16 MiB
    y, x = inputs["Y"], inputs["X"]
    np.testing.assert_allclose(out, [y[y > value].sum() for value in x], rtol=1e-12)
