"""Tile occupancy against a brute-force count over the whole iteration space (numpy)."""

import importlib
import inspect
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einsim import ATTENTION, SpecError, attention, parse_cascade
from einsim.einsum import Einsum, iteration_points, occupancy, resolve_shape
from einsim.einsum.executor import _value, mask_of
from einsim.einsum.ir import Access, walk

# --------------------------------------------------------------------- the reference


def _keep_real(cascade, einsum, sizes, tensors):
    """Kept and real points of an Einsum over all its variables (axes in iter_vars order)."""
    names = einsum.iter_vars
    extent = [int(sizes[v.upper()]) for v in names]
    env = {
        v: np.arange(n).reshape([n if i == a else 1 for i in range(len(names))])
        for a, (v, n) in enumerate(zip(names, extent, strict=True))
    }
    bare = Einsum(einsum.output, einsum.out_indices, einsum.expr, einsum.reduce_op, None)
    real, local = mask_of(cascade, bare, env, sizes)
    real = np.ones(extent, bool) if real is None else np.broadcast_to(real, extent)
    keep = real
    if einsum.where is not None:
        keep = real & (np.asarray(_value(einsum.where, local, sizes, tensors, real)) != 0)
    return keep, real


def _brute(cascade, sizes, tiling, chosen, tensors=None):
    """{einsum: (tiles, empty, partial, full, points, busy)} by visiting every tile."""
    arrays = {e.output: _keep_real(cascade, e, sizes, tensors) for e in chosen}
    filtered = [e for e in chosen if e.where is not None]
    out = {}
    for e in chosen:
        keep, real = arrays[e.output]
        ranks = [v.upper() for v in e.iter_vars]
        sharing = [
            f
            for f in filtered
            if any(
                tiling.get(r, sizes[r]) < sizes[r]
                for r in set(ranks) & {v.upper() for v in f.iter_vars}
            )
        ]
        spans = []
        for r in ranks:
            n, t = int(sizes[r]), tiling.get(r, int(sizes[r]))
            spans.append([(s, min(s + t, n)) for s in range(0, n, t)])
        tiles = empty = partial = full = points = busy = 0
        for box in itertools.product(*spans):
            sl = tuple(slice(a, b) for a, b in box)
            k, r = int(keep[sl].sum()), int(real[sl].sum())
            tiles += 1
            if e.where is not None:
                points += k
                live = k > 0
                is_full = live and k == r
            else:
                points += r
                live = r > 0 and (
                    not sharing or any(_hits(arrays[f.output][0], f, e, box) for f in sharing)
                )
                is_full = live
            empty += not live
            full += is_full
            partial += live and not is_full
            busy += r if live else 0
        out[e.output] = (tiles, empty, partial, full, points, busy)
    return out


def _hits(keep_f, f, u, box):
    """Whether filtered Einsum f keeps a point inside u's tile `box` on their shared vars."""
    where = dict(zip(u.iter_vars, box, strict=True))
    sl = tuple(slice(*where[v]) if v in where else slice(None) for v in f.iter_vars)
    return bool(keep_f[sl].any())


def _check(cascade, sizes, tilings, chosen=None, tensors=None, inputs=None):
    chosen_e = [e for e in cascade.einsums if chosen is None or e.output in chosen]
    ranks = sorted({r for t in tilings for r in t}) or ["P"]  # n tilings even when all whole
    tile = {r: np.array([t.get(r, int(sizes[r])) for t in tilings]) for r in ranks}
    got = occupancy(cascade, sizes, tile, chosen, inputs=inputs)
    for i, t in enumerate(tilings):
        want = _brute(cascade, sizes, t, chosen_e, tensors)
        for name, expected in want.items():
            o = got[name]
            row = tuple(
                int(a[i]) for a in (o.tiles, o.empty, o.partial, o.full, o.points, o.busy_points)
            )
            assert row == expected, (name, t, o.method)


# ------------------------------------------------------------------ the registry cases


def _registry_cases():
    cases = []
    for entry in ATTENTION.entries():
        forms = entry.meta.get("forms") or (None,)
        for params, shapes in entry.meta.get("cases") or (({}, ()),):
            for shape in shapes:
                for form in forms:
                    kw = dict(params) if form is None else {**params, "form": form.value}
                    cases.append((entry.name, kw, shape))
    return cases


_CASES = _registry_cases()


def _reads_tensor(einsum):
    return einsum.where is not None and any(isinstance(x, Access) for x in walk(einsum.where))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_registry_mask_matches_brute_force(data):
    name, params, shape = data.draw(st.sampled_from(_CASES))
    m0 = data.draw(st.integers(1, int(shape["M"]) + 1))
    takes_m0 = "M0" in inspect.signature(ATTENTION[name]).parameters
    cascade = attention(name, **{**params, **({"M0": m0} if takes_m0 else {})})
    shape = {k: v for k, v in shape.items() if k != "M0" or not takes_m0}
    sizes = resolve_shape(cascade, shape)
    ranks = sorted({r for e in cascade.einsums for r in (v.upper() for v in e.iter_vars)})
    tilings = []
    for _ in range(2):
        chosen = data.draw(st.lists(st.sampled_from(ranks), max_size=3, unique=True))
        tilings.append({r: data.draw(st.integers(1, int(sizes[r]) + 1)) for r in chosen})
    tensors = inputs = None
    if any(_reads_tensor(e) for e in cascade.einsums):
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        shapes = {t.name: tuple(int(sizes[r]) for r in t.ranks) for t in cascade.inputs}
        inputs = {k: rng.standard_normal(s) for k, s in shapes.items()}
        tensors = cascade.evaluate(inputs, sizes, method="materialize")
    _check(cascade, sizes, tilings, tensors=tensors, inputs=inputs)


@pytest.mark.parametrize(("name", "params", "shape"), _CASES[::7])
def test_points_are_the_op_count_points(name, params, shape):
    cascade = attention(name, **params)
    sizes = resolve_shape(cascade, shape)
    iterated = {v.upper() for e in cascade.einsums for v in e.iter_vars}
    tile = {r: 2 for r in ("P", "M1", "M") if r in iterated}
    if any(_reads_tensor(e) for e in cascade.einsums):
        return  # priced from data or density: see the data-dependent tests
    got = occupancy(cascade, sizes, tile)
    for e in cascade.einsums:
        assert int(got[e.output].points[0]) == iteration_points(cascade, e, sizes)


# ------------------------------------------------------------------- affine masks, odd


_MASKS = (
    "m <= p",
    "p - m < W and m <= p",
    "p - m <= W / 2 and m - p <= W / 2",
    "m <= M - P + p and M - P + p - m < W",
    "2*m > p + 1",
    "m >= W",
    "m <= p and (m < S or p - m < W)",
)


@settings(max_examples=40, deadline=None)
@given(
    mask=st.sampled_from(_MASKS),
    m=st.integers(1, 13),
    p=st.integers(1, 13),
    m0=st.integers(1, 6),
    w=st.integers(1, 9),
    tiles=st.lists(st.integers(1, 14), min_size=4, max_size=4),
)
def test_affine_masks_on_odd_sizes(mask, m, p, m0, w, tiles):
    text = (
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nPR[m1,p] = LM[m1,p] + 1\nQF[m,p] = Q[e,p] * K[e,m]"
    )
    c = parse_cascade(text)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "W": w, "S": 2})
    a, b, d, f = tiles
    tilings = [{"P": a, "M1": b}, {"P": d, "M": f, "M0": b}, {"M": a}, {}]
    _check(c, sizes, tilings)


# ------------------------------------------------------------------------ data masks


def test_block_topk_from_inputs_is_exact_and_says_so(rng):
    c = attention("block_topk", BS=3, TOPK=1, M0=4)
    sizes = resolve_shape(c, dict(E=3, F=2, M=10, P=10))
    inputs = {
        "Q": rng.standard_normal((3, 10)),
        "K": rng.standard_normal((3, 10)),
        "V": rng.standard_normal((2, 10)),
    }
    tensors = c.evaluate(inputs, sizes, method="materialize")
    _check(c, sizes, [{"P": 3, "M1": 1}], tensors=tensors, inputs=inputs)
    got = occupancy(c, sizes, {"P": 3}, ["QK", "AV"], inputs=inputs)
    assert got["QK"].method == "data" and got["AV"].method == "dense"


def test_data_filter_without_inputs_uses_a_density_or_refuses():
    c = parse_cascade("inputs: S[m,p], Q[m,p]\nX[m,p] = Q[m,p] where m <= p and S[m,p] > 0")
    sizes = {"M": 8, "P": 8}
    with pytest.raises(SpecError, match=r"pass inputs= .* or density="):
        occupancy(c, sizes, {"P": 4})
    half = occupancy(c, sizes, {"P": 4, "M": 4}, density=0.5)["X"]
    assert half.method == "declared_density"
    # The static part m <= p keeps 36 points in 3 of 4 tiles (1 of them full); half of the
    # points are priced, and the 3 tiles stay busy (the selection is unknown), none full.
    assert half.points.tolist() == [18] and half.tiles.tolist() == [4]
    assert (half.empty.tolist(), half.partial.tolist(), half.full.tolist()) == ([1], [3], [0])
    assert half.busy_points.tolist() == [48]
    with pytest.raises(SpecError, match="density must be in"):
        occupancy(c, sizes, {"P": 4}, density=1.5)


# --------------------------------------------------------------------------- errors


def test_bad_tilings_are_refused():
    c = attention("causal", M0=4)
    sizes = resolve_shape(c, dict(E=2, F=2, M=8, P=8))
    with pytest.raises(SpecError, match="tile rank 'Z'"):
        occupancy(c, sizes, {"Z": 2})
    with pytest.raises(SpecError, match="positive"):
        occupancy(c, sizes, {"P": 0})
    with pytest.raises(SpecError, match="one length"):
        occupancy(c, sizes, {"P": np.array([1, 2]), "M1": np.array([1, 2, 3])})
    with pytest.raises(SpecError, match="no Einsum produces"):
        occupancy(c, sizes, {"P": 2}, ["NOPE"])


# ---------------------------------------- numpy below the compile threshold, the kernel above

_USER_MASKS = (
    "(m // 3) % 2 == (p // 5) % 2 and m + p != 7",
    "m * m + p * p < 40 or (m - p) % 3 == 0",
    "abs(m - p) <= W / 2 and not(m == 2)",
    "max(m, p) - min(m, p) < 2.5 or m >= M - 1",
)


def _static_masks():
    """(cascade, shape) of every registry case (one form: the masks are the same) and of
    user-written masks the closed form does not take."""
    seen, out = set(), []
    for name, params, shape in _CASES:
        key = (name, tuple(sorted((k, v) for k, v in params.items() if k != "form")))
        cascade = attention(name, **params)
        if key not in seen and any(e.where is not None for e in cascade.einsums):
            seen.add(key)
            out.append((cascade, shape))
    for mask in _USER_MASKS:
        text = (
            "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
            f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
            "QF[m,p] = Q[e,p] * K[e,m]"
        )
        out.append((parse_cascade(text), {"E": 2, "M": 9, "P": 7, "M0": 4, "W": 3}))
    return out


_STATIC = _static_masks()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_numpy_count_equals_the_compiled_kernel(data):
    """Every tensor-free mask (and the static part of a data mask) of the registry and of
    user-written filters, on tiny and odd sizes: the numpy count of a small space and the
    compiled kernel give the same per-tile counts."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    cascade, shape = data.draw(st.sampled_from(_STATIC))
    shape = {k: data.draw(st.integers(1, int(v) + 2)) for k, v in shape.items()}
    sizes = resolve_shape(cascade, shape)
    einsum = data.draw(st.sampled_from([e for e in cascade.einsums if e.where is not None]))
    where = occ._static_part(einsum.where)
    vars_ = occ._mask_vars_of(cascade, einsum, sizes, where)
    ranks = sorted({v.upper() for v in vars_}) or ["P"]
    tiling = {r: data.draw(st.integers(1, int(sizes.get(r, 1)) + 1)) for r in ranks}
    grids = []
    for numpy in (True, False):
        occ._RUNS.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(occ, "_count_with_numpy", lambda source, points, n=numpy: n)
            mp.setattr(occ, "_from_base", lambda *args: None)  # count this tiling itself
            grids.append(occ._compiled_grid(cascade, einsum, sizes, tiling, where, vars_))
    a, b = grids
    assert a.vars == b.vars and a.method == b.method
    np.testing.assert_array_equal(a.kept, b.kept)
    np.testing.assert_array_equal(a.valid, b.valid)


def test_a_new_small_filter_is_counted_without_compiling(monkeypatch):
    """A structure is counted with numpy until its spaces add up to NUMPY_POINTS points;
    the count that would pass them compiles its kernel, and later counts use it."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    c = parse_cascade(f"inputs: Q[e,p], K[e,m]\nmask: {_USER_MASKS[0]}\nQK[m,p] = Q[e,p] * K[e,m]")
    qk = c.einsums[0]
    monkeypatch.setattr(occ, "NUMPY_POINTS", 110)
    monkeypatch.setattr(occ, "_KERNELS", {})
    monkeypatch.setattr(occ, "_NUMPY_SPENT", {})
    compiled = []
    real_compile = occ._compile
    monkeypatch.setattr(occ, "_compile", lambda s: compiled.append(s) or real_compile(s))
    counts = []
    for m in (6, 7, 8, 9):  # 6*8 + 7*8 points fit in 110, 8*8 more do not
        sizes = resolve_shape(c, {"E": 2, "M": m, "P": 8})
        occ._RUNS.clear()
        grid = occ._compiled_grid(c, qk, sizes, {"P": 3}, qk.where, ("m", "p"))
        counts.append(len(compiled))
        keep, _ = _keep_real(c, qk, sizes, None)
        assert int(grid.kept.sum()) == int(keep[:, :, 0].sum())  # (m, p, e): e unmasked
    assert counts == [0, 0, 1, 2]


# ------------------------------------------------ coarse tilings from one fine base count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_coarse_tilings_from_a_base_equal_the_direct_count(data):
    """Every tensor-free mask of the registry and of user filters, odd sizes, partial last
    tiles: the per-tile counts reduced from a base grid (fine cells, coarsened to fit a
    small BASE_CELLS, rebuilt finer when a tiling needs it) equal a direct count, for a
    sequence of tilings meeting one base."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    cascade, shape = data.draw(st.sampled_from(_STATIC))
    shape = {k: data.draw(st.integers(1, int(v) + 3)) for k, v in shape.items()}
    sizes = resolve_shape(cascade, shape)
    einsum = data.draw(st.sampled_from([e for e in cascade.einsums if e.where is not None]))
    where = occ._static_part(einsum.where)
    vars_ = occ._mask_vars_of(cascade, einsum, sizes, where)
    ranks = sorted({v.upper() for v in vars_})
    if not vars_:
        return  # nothing to tile: _compiled_grid answers without a count
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(occ, "BASE_CELLS", data.draw(st.integers(1, 64)))
        mp.setattr(occ, "_BASES", {})
        for _ in range(3):
            tiling = {r: data.draw(st.integers(1, int(sizes[r]) + 1)) for r in ranks}
            got = occ._from_base(cascade, einsum, sizes, tiling, where, vars_)
            want = occ._direct_grid(cascade, einsum, sizes, tiling, where, vars_)
            if got is None:  # too fine for a base of BASE_CELLS: counted directly
                assert (
                    occ._base_granularity(
                        [occ._extent(sizes, v) for v in sorted(vars_)],
                        [occ._tile_of(tiling, sizes, v) for v in sorted(vars_)],
                        (1,) * len(vars_),
                    )
                    is None
                )
                continue
            assert got.vars == want.vars
            np.testing.assert_array_equal(got.kept, want.kept)
            np.testing.assert_array_equal(got.valid, want.valid)


def test_one_base_serves_every_multiple_of_its_cells(monkeypatch):
    """A base counted once at cells of 2 along P serves P tiles 2, 4, 6 and whole without
    another count; P tiles of 3 rebuild it at cells of 3 (one more count)."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    c = parse_cascade(f"inputs: Q[e,p], K[e,m]\nmask: {_USER_MASKS[1]}\nQK[m,p] = Q[e,p] * K[e,m]")
    qk = c.einsums[0]
    sizes = resolve_shape(c, {"E": 2, "M": 9, "P": 11})
    monkeypatch.setattr(occ, "BASE_CELLS", 9 * 6)  # P cells of 2: 9 x 6 cells
    monkeypatch.setattr(occ, "_BASES", {})
    counts = []
    real_direct = occ._direct_grid
    monkeypatch.setattr(occ, "_direct_grid", lambda *a: counts.append(a[3]) or real_direct(*a))
    keep, _ = _keep_real(c, qk, sizes, None)
    for p_tile, m_tile in ((2, 1), (4, 3), (6, 2), (11, 9), (3, 1)):
        grid = occ._from_base(c, qk, sizes, {"P": p_tile, "M": m_tile}, qk.where, ("m", "p"))
        starts = (np.arange(0, 9, m_tile), np.arange(0, 11, p_tile))
        want = np.add.reduceat(np.add.reduceat(keep[:, :, 0], starts[0], 0), starts[1], 1)
        np.testing.assert_array_equal(grid.kept, want)
    assert counts == [{"M": 1, "P": 2}, {"M": 1, "P": 3}]


# ------------------------------------------------- kept intervals per query row

_WHOLE_MASKS = (
    "(m // 3) % 2 == (p // 5) % 2 and m + p != 7",
    "m * m + p * p < 40 or (m - p) % 3 == 0",
    "abs(m - p) <= W // 2 and not(m == 2)",
    "m % 4 != p % 3 or (m // 2 + p) % 5 == 1",
    "m <= p and (m < S or p - m < W) and m // W != 1",
    "(p - m) % W == 0 or p // W == m // W",
    "max(m, p) - min(m, p) < 3 or m >= M - 1",  # not separable: the direct count
)


def _with_intervals(monkeypatch):
    """Every tensor-free mask outside the closed form goes through `_IntervalPlan`."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    monkeypatch.setattr(occ, "INTERVAL_POINTS", 0)
    monkeypatch.setattr(occ, "PLAN_ROWS", 5)  # plans built in blocks of rows (odd, partial)
    occ._interval_plan_cached.cache_clear()
    occ._kron_plan_cached.cache_clear()
    occ._union_plan_cached.cache_clear()
    occ._head_plan_cached.cache_clear()
    occ._PLAN_ROWS.clear()
    occ._PLANS_FOR.clear()
    return occ


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_interval_counts_of_registry_masks_match_brute_force(data):
    """The registry's masks (sinks + window, NATTEN 2D/3D, block masks with //, power
    attention, ...) counted from their kept intervals per row, odd sizes, partial tiles,
    tilings with the partition's lower part cut (those fall back): exact."""
    name, params, shape = data.draw(st.sampled_from(_CASES))
    cascade = attention(name, **params)
    if any(_reads_tensor(e) for e in cascade.einsums):
        return  # the data masks: test_declared_density_through_a_plan_equals_per_tiling
    shape = {k: data.draw(st.integers(1, int(v) + 3)) for k, v in shape.items()}
    sizes = resolve_shape(cascade, shape)
    ranks = sorted({r for e in cascade.einsums for r in (v.upper() for v in e.iter_vars)})
    tilings = []
    for _ in range(3):
        chosen = data.draw(st.lists(st.sampled_from(ranks), max_size=3, unique=True))
        tilings.append({r: data.draw(st.integers(1, int(sizes[r]) + 1)) for r in chosen})
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        _check(cascade, sizes, tilings)


@settings(max_examples=60, deadline=None)
@given(
    mask=st.sampled_from(_WHOLE_MASKS),
    m=st.integers(1, 23),
    p=st.integers(1, 23),
    m0=st.integers(1, 6),
    w=st.integers(1, 9),
    tiles=st.lists(st.integers(1, 24), min_size=4, max_size=4),
)
def test_interval_counts_of_user_masks_match_brute_force(mask, m, p, m0, w, tiles):
    text = (
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]\n"
        "LM[m1,p] = max(m0) QK[m1,m0,p]\nQF[m,p] = Q[e,p] * K[e,m]"
    )
    c = parse_cascade(text)
    sizes = resolve_shape(c, {"E": 2, "M": m, "P": p, "M0": m0, "W": w, "S": 2})
    a, b, d, f = tiles
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        _check(c, sizes, [{"P": a, "M1": b}, {"P": d, "M": f, "M0": b}, {"M": a}, {}])


@pytest.mark.parametrize(
    ("name", "params", "shape", "method"),
    [
        ("sinks_window", {"S": 3, "W": 5, "M0": 4}, {"M": 37, "P": 37}, "union"),
        ("neighborhood_2d", {"X": 6, "Y": 6, "KW": 3, "M0": 4}, {"M": 36, "P": 36}, "kronecker"),
        (
            "neighborhood_2d",
            {"X": 6, "Y": 8, "KW": 3, "DIL": 2, "M0": 3},
            {"M": 48, "P": 48},
            "kronecker",
        ),
        (
            "neighborhood_2d",  # M is no multiple of Y: no radix splits it
            {"X": 6, "Y": 6, "KW": 3, "M0": 4},
            {"M": 35, "P": 35},
            "intervals",
        ),
        (
            "neighborhood_3d",
            {"T": 3, "X": 4, "Y": 4, "KW": 3, "KT": 2, "M0": 4},
            {"M": 48, "P": 48},
            "kronecker",
        ),
        ("power_attention", {"W": 2, "BS": 2, "M0": 4}, {"M": 40, "P": 40}, "intervals"),
        ("linear", {"M0": 4}, {"M": 30, "P": 30}, "intervals"),  # 30: no multiple of 4
        ("linear", {"M0": 4}, {"M": 32, "P": 32}, "kronecker"),
    ],
)
def test_non_affine_masks_take_a_structural_plan(monkeypatch, name, params, shape, method):
    """The masks the closed form does not cover are planned from their structure (not
    their name): a union of affine staircases (sinks + window), the Kronecker split where
    a radix splits them (NATTEN's grid rows), else the intervals; their counts equal brute
    force."""
    _with_intervals(monkeypatch)
    cascade = attention(name, **params)
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, **shape})
    filtered = [e for e in cascade.einsums if e.where is not None]
    key = "M1" if any("m1" in e.iter_vars for e in filtered) else "M"
    got = occupancy(cascade, sizes, {"P": 3}, [e.output for e in filtered])
    assert {o.method for o in got.values()} == {method}
    tilings = [{"P": 3}, {"P": 5, key: 2}, {"P": 1, key: 1}, {}]
    _check(cascade, sizes, tilings, [e.output for e in filtered])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_declared_density_through_a_plan_equals_per_tiling(data):
    """A data filter priced by a density: its static part through the closed form or the
    intervals gives the same numbers as the per-tiling grids (`_totals`' density rule)."""
    occ = importlib.import_module("einsim.einsum.occupancy")
    static = data.draw(st.sampled_from(("m <= p", "m <= p and (m < 2 or p - m < 3)")))
    c = parse_cascade(
        "inputs: S[m,p], Q[m,p]\npartition: M -> M1, M0\n"
        f"X[m1,m0,p] = Q[m1*M0+m0,p] where {static.replace('m', '(m1*M0+m0)')} "
        "and S[m1*M0+m0,p] > 0"
    )
    sizes = resolve_shape(c, {k: data.draw(st.integers(1, 17)) for k in ("M", "P", "M0")})
    tile = {r: np.array([data.draw(st.integers(1, int(sizes[r]) + 1)) for _ in range(3)])
            for r in ("P", "M1")}  # fmt: skip
    density = data.draw(st.floats(0.05, 1.0))
    got = []
    for planned in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            _with_intervals(mp)
            if not planned:
                mp.setattr(occ, "_affine_plan", lambda *a: None)
                mp.setattr(occ, "_interval_plan", lambda *a: None)
            got.append(occupancy(c, sizes, tile, density=density)["X"])
    a, b = got
    assert a.method == b.method == "declared_density"
    for field in ("tiles", "empty", "partial", "full", "points", "busy_points"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def _drawn_interval_plan(data, occ):
    """The interval plan (or None) of a drawn tensor-free mask's filter at drawn sizes."""
    cascade, shape = data.draw(st.sampled_from(_STATIC))
    shape = {k: data.draw(st.integers(1, int(v) + 9)) for k, v in shape.items()}
    sizes = resolve_shape(cascade, shape)
    einsum = data.draw(st.sampled_from([e for e in cascade.einsums if e.where is not None]))
    where = occ._static_part(einsum.where)
    vars_ = occ._mask_vars_of(cascade, einsum, sizes, where)
    return occ._interval_plan(cascade, sizes, where, vars_)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_interval_rows_numpy_equals_the_compiled_kernel(data):
    """The vectorized union of tile ranges and the compiled kernel agree, for every
    tensor-free registry and user mask the intervals take, on random tilings (both
    orientations of the plan)."""
    with pytest.MonkeyPatch.context() as mp:
        occ = _with_intervals(mp)
        plan = _drawn_interval_plan(data, occ)
        if plan is None:
            return  # not separable, or affine (the closed form takes it first)
        flipped = occ._interval_transposed(plan)
        for p in (plan, flipped) if flipped is not None else (plan,):
            n = data.draw(st.integers(1, 6))
            tx = np.array([data.draw(st.integers(1, p.extent_x + 2)) for _ in range(n)])
            ty = np.array([data.draw(st.integers(1, p.extent_y + 2)) for _ in range(n)])
            got = []
            for most in (0, 1 << 40):
                mp.setattr(occ, "INTERVAL_NUMPY_RANGES", most)
                out = np.zeros((n, 3), dtype=np.int64)
                occ._interval_rows(p, tx, ty, out)
                got.append(out)
            np.testing.assert_array_equal(got[0], got[1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_transposed_interval_plan_counts_equal_the_plan(data):
    """The transposed plan (rows of key tiles) counts what the plan counts with the tile
    sides swapped: non-empty tiles, full tiles and busy points, for every mask it takes."""
    with pytest.MonkeyPatch.context() as mp:
        occ = _with_intervals(mp)
        plan = _drawn_interval_plan(data, occ)
        flipped = None if plan is None else occ._interval_transposed(plan)
        if flipped is None:
            return  # not separable either way, or affine (the closed form takes it)
        n = data.draw(st.integers(1, 6))
        tx = np.array([data.draw(st.integers(1, plan.extent_x + 2)) for _ in range(n)])
        ty = np.array([data.draw(st.integers(1, plan.extent_y + 2)) for _ in range(n)])
        got = [np.zeros((n, 3), dtype=np.int64) for _ in range(2)]
        occ._interval_rows(plan, tx, ty, got[0])
        occ._interval_rows(flipped, ty, tx, got[1])
        np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize("force", [False, True])
def test_query_tile_one_over_many_rows_matches_brute_force(monkeypatch, force):
    """Tilings with far more rows of query tiles than of key tiles (a query tile of 1, over
    4096 rows) are counted on the plan directly, or on the transposed plan once built (the
    time spent directly set past the plan's build time, or below it): both exact. Plans in blocks of
    5 rows (runs cut at each block), keys along x (the orientation not chosen by its cost)."""
    occ = _with_intervals(monkeypatch)
    monkeypatch.setattr(
        occ,
        "_orientations",
        lambda w, groups, *_: [(*o, None) for o in itertools.permutations(groups)],
    )
    c = parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\n"
        "mask: m <= p + 4090 and (m < S or p + 4090 - m < W) and (m // W) % 3 != 1\n"
        "BK[e,m1,m0] = K[e,m1*M0+m0]\nQK[m1,m0,p] = Q[e,p] * BK[e,m1,m0]"
    )
    sizes = resolve_shape(c, {"E": 2, "M": 29, "P": 4103, "M0": 2, "W": 4, "S": 3})
    tilings = [{"P": 1, "M1": 1}, {"P": 2, "M1": 3}, {"P": 1, "M1": 5}]
    _check(c, sizes, tilings[:1])
    (plan, memo) = next(iter(occ._PLAN_ROWS.values()))
    assert isinstance(plan, occ._IntervalPlan) and "direct_s" in memo
    memo["direct_s"] = float("inf") if force else float("-inf")
    _check(c, sizes, tilings[1:])
    assert (memo.get("transposed") is not None) == force


_HEAD_MASKS = (
    "m <= p and (h * 100 < RP * H or m < S or p - m < W)",  # retrieval heads keep all
    "m <= p and (h * 100 >= RP * H or m < S or p - m < W)",
    "(h % 2 == 0 and m <= p) or (not(h % 2 == 0) and p - m < W and m <= p)",
    "h < 2 or m % 3 != p % 2",  # a class keeps everything
    "h >= H or m <= p",  # a class that folds to the whole filter
    "(h == 1 and m < S) or (h != 1 and abs(m - p) <= W)",
)


def _head_cascade(mask: str):
    return parse_cascade(
        "inputs: Q[h,e,p], K[h,e,m]\npartition: M -> M1, M0\n"
        f"mask: {mask}\nBK[h,e,m1,m0] = K[h,e,m1*M0+m0]\n"
        "QK[h,m1,m0,p] = Q[h,e,p] * BK[h,e,m1,m0]\nLM[h,m1,p] = max(m0) QK[h,m1,m0,p]\n"
        "PRM[h,m1,p] = LM[h,m1,p] * 2\nQF[h,m,p] = Q[h,e,p] * K[h,e,m]"
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(_HEAD_MASKS),
    h=st.integers(3, 5),
    m=st.integers(1, 23),
    p=st.integers(1, 23),
    m0=st.integers(1, 6),
    w=st.integers(1, 9),
    tiles=st.lists(st.integers(1, 24), min_size=5, max_size=5),
)
def test_head_class_counts_match_brute_force(mask, h, m, p, m0, w, tiles):
    """Masks where a head variable enters only through conditions of its own: counted per
    class of heads (tiles of H cutting through classes, odd sizes, partial tiles)."""
    c = _head_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "H": h, "M": m, "P": p, "M0": m0, "W": w, "S": 2, "RP": 40})
    a, b, d, f, g = tiles
    tilings = [
        {"P": a, "M1": b, "H": g % h + 1},
        {"P": d, "M": f, "M0": b, "H": 1},
        {"M": a, "H": 2},
        {"H": d},
        {},
    ]
    with pytest.MonkeyPatch.context() as mp:
        _with_intervals(mp)
        _check(c, sizes, tilings)


@pytest.mark.parametrize(
    ("name", "params"), [("duo_attention", {}), ("razor_attention", {"W": 5, "S": 2})]
)
def test_per_head_masks_take_the_head_classes(monkeypatch, name, params):
    """Registry masks with per-head conditions are planned by head class (from their
    structure) and their counts equal brute force."""
    _with_intervals(monkeypatch)
    cascade = attention(name, **params)
    filtered = [e.output for e in cascade.einsums if e.where is not None]
    qk = [e for e in cascade.einsums if e.where is not None and "m1" in e.iter_vars]
    sizes = resolve_shape(cascade, {"E": 2, "F": 2, "H": 5, "M": 21, "P": 21, "M0": 4})
    got = occupancy(cascade, sizes, {"P": 3}, [e.output for e in qk])
    assert {o.method for o in got.values()} == {"head_classes"}
    tilings = [{"P": 3}, {"P": 5, "M1": 2, "H": 2}, {"P": 1, "M1": 1, "H": 1}, {"H": 3}, {}]
    _check(cascade, sizes, tilings, filtered)
