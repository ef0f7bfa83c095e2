"""The spatial model skips the tiles a mask empties (issue 13, part 4).

References: a hand count of the non-empty tiles by brute force over the tile grid (the mask
predicate evaluated on every (key, query) pair of each tile, in numpy), and the numpy IR
executor for the attention output. Nothing here compares the model with its own output.
"""

import importlib.util
import math
import sys
import types

import numpy as np
import pytest

from einsim import SpecError, attention
from einsim.einsum.analysis import einsum_op_counts, iteration_points
from einsim.einsum.executor import mask_of
from einsim.einsum.ir import rank_of
from einsim.simulator import (
    bind,
    evaluate,
    evaluate_batch,
    load_architecture,
    load_mapping,
    mapping_from_dict,
    mapping_to_dict,
)

# ------------------------------------------------------------------ occupancy stand-in
# einsum/occupancy.py is written by another helper; until it lands, a brute-force version
# of its contract (numpy over the whole iteration space) stands in for it in these tests.


def _grid_keep(cascade, einsum, sizes):
    ranks = [rank_of(v) for v in einsum.iter_vars]
    extents = [int(sizes[r]) for r in ranks]
    grids = np.meshgrid(*[np.arange(x) for x in extents], indexing="ij")
    mask, _ = mask_of(cascade, einsum, dict(zip(einsum.iter_vars, grids, strict=True)), sizes)
    keep = np.ones(extents, bool) if mask is None else np.broadcast_to(mask, extents)
    return ranks, keep


def _tile_hits(ranks, keep, tile, on):
    """Set of tile coordinates (over the ranks `on`) that hold a kept point."""
    axes = [ranks.index(r) for r in on]
    other = tuple(i for i in range(len(ranks)) if i not in axes)
    projected = keep.any(axis=other) if other else keep
    points = np.argwhere(projected)
    return {tuple(int(c) // int(tile.get(r, 10**9)) for c, r in zip(p, on, strict=True))
            for p in points}  # fmt: skip


def _brute_occupancy(cascade, sizes, tile, einsums=None, *, inputs=None, density=None):
    names = list(einsums or [e.output for e in cascade.einsums])
    n = max((np.size(v) for v in tile.values()), default=1)
    out = {name: {"tiles": [], "empty": []} for name in names}
    keeps = {name: _grid_keep(cascade, cascade.einsum(name), sizes) for name in names}
    filtered = [name for name in names if cascade.einsum(name).where is not None]
    for i in range(n):
        row = {r: int(np.broadcast_to(v, (n,))[i]) for r, v in tile.items()}
        for name in names:
            ranks, keep = keeps[name]
            tiled = [r for r in ranks if r in row]
            count = int(np.prod([-(-int(sizes[r]) // row[r]) for r in tiled]))
            if name in filtered:
                nonempty = len(_tile_hits(ranks, keep, row, tiled))
            else:
                shared = [[r for r in tiled if r in keeps[f][0]] for f in filtered]
                if not filtered or not any(shared):
                    nonempty = count
                else:
                    hit = set()
                    for f, on in zip(filtered, shared, strict=True):
                        hits = _tile_hits(*keeps[f], row, on)
                        free = [r for r in tiled if r not in on]
                        sizes_free = [-(-int(sizes[r]) // row[r]) for r in free]
                        for coords in hits:
                            for rest in np.ndindex(*sizes_free):
                                full = dict(zip(on, coords, strict=True))
                                full |= dict(zip(free, rest, strict=True))
                                hit.add(tuple(full[r] for r in tiled))
                    nonempty = len(hit)
            out[name]["tiles"].append(count)
            out[name]["empty"].append(count - nonempty)
    return {
        name: types.SimpleNamespace(
            einsum=name, tiles=np.array(v["tiles"]), empty=np.array(v["empty"])
        )
        for name, v in out.items()
    }


@pytest.fixture(autouse=True)
def _occupancy(monkeypatch):
    """The real occupancy when it exists, else the brute-force stand-in."""
    if importlib.util.find_spec("einsim.einsum.occupancy") is None:
        module = types.ModuleType("einsim.einsum.occupancy")
        module.occupancy = _brute_occupancy
        monkeypatch.setitem(sys.modules, "einsim.einsum.occupancy", module)


# ------------------------------------------------------------------------- hand count

E, F, M0, P = 4, 3, 4, 24  # keys M = P; the array is 4 x 4, the 1D unit 4 lanes
ARCH = {"units.2d.rows": 4, "units.2d.cols": 4, "units.1d.lanes": 4}
MASKS = {
    "causal": ({}, lambda m, p: m <= p),
    "sliding_window": ({"W": 6}, lambda m, p: (m <= p) & (p - m < 6)),
    "sliding_window_sym": ({"W": 6, "causal": False}, lambda m, p: abs(p - m) <= 3),
}


def _variant(key):
    params, keep = MASKS[key]
    name = "sliding_window" if key.startswith("sliding") else key
    return attention(name, M0=M0, **params), keep


FUSEMAX_EINSUMS = ("BK", "BV", "QK", "LM", "RM", "SLN", "SLD", "PRM", "SPD", "RD", "SLNV")
FUSEMAX_EINSUMS += ("SPNV", "RNV", "AV")


def _mapping(p_gb=2, m1_gb=2, skip=True):
    """FuseMax's binding and stages with explicit loops: DRAM P, DRAM M1, GB P, GB M1."""
    data = {
        "name": "hand",
        "cascade": "fusemax_1pass",
        "skip_empty_tiles": skip,
        "kernels": [
            {
                "name": "attention",
                "einsums": list(FUSEMAX_EINSUMS),
                "overlap": "serial",
                "loops": [
                    {"level": "DRAM", "rank": "P", "factor": "rest"},
                    {"level": "DRAM", "rank": "M1", "factor": "rest"},
                    {"level": "GB", "rank": "P", "factor": p_gb},
                    {"level": "GB", "rank": "M1", "factor": m1_gb},
                ],
                "spatial": {"2d": ["P", "M0"], "1d": ["P"]},
                "binding": {
                    "2d": ["QK", "LM", "SLN", "SLD", "SLNV"],
                    "1d": ["RM", "PRM", "SPD", "RD", "SPNV", "RNV", "AV"],
                },
                "keep": {"GB": ["Q", "BK", "BV", "RM", "RD", "RNV"]},
            }
        ],
    }
    return mapping_from_dict(data)


def _nonempty_tiles(keep, p_tile, key_tile, by_p=True, by_m=True):
    """Hand count: tiles (query block x key block) holding a pair the mask keeps."""
    count = 0
    p_blocks = range(0, P, p_tile) if by_p else [0]
    m_blocks = range(0, P, key_tile) if by_m else [0]
    for p0 in p_blocks:
        for m0 in m_blocks:
            p = np.arange(p0, min(P, p0 + p_tile) if by_p else P)[None, :]
            m = np.arange(m0, min(P, m0 + key_tile) if by_m else P)[:, None]
            count += bool(np.any(keep(m, p)))
    return count


@pytest.mark.parametrize("key", list(MASKS))
def test_compute_cycles_are_the_hand_count_of_non_empty_tiles(key):
    cascade, keep = _variant(key)
    arch = load_architecture("fusemax_cloud", ARCH)
    shape = dict(B=2, H=1, E=E, F=F, M=P, P=P)
    report = evaluate(cascade, arch, _mapping(), shape)
    sizes = dict(E=E, F=F, M=P, P=P, M0=M0, M1=P // M0, W=6)
    table = report.per_einsum.set_index("einsum")
    checked = 0
    for einsum in cascade.einsums:
        unit = dict(_mapping().kernels[0].binding).get(einsum.output)
        if unit is None:
            continue
        kept = einsum_op_counts(cascade, einsum, sizes)
        if not kept:
            continue
        # ops per point x every point of the space (the sizes divide: no partial tile)
        whole = math.prod(sizes[rank_of(v)] for v in einsum.iter_vars)
        dense = {op: n * whole / iteration_points(cascade, einsum, sizes) for op, n in kept.items()}
        ranks = {rank_of(v) for v in einsum.iter_vars}
        by_p, by_m = "P" in ranks, "M1" in ranks
        tiles = (P // 4 if by_p else 1) * (P // M0 if by_m else 1)
        nonempty = _nonempty_tiles(keep, 4, M0, by_p, by_m)
        lanes = 4 * (4 if unit == "2d" and "M0" in ranks else 1) if by_p else 1
        per_point = sum(n * arch.unit(unit).cost(op).cycles for op, n in dense.items())
        expected = 2 * per_point / tiles * nonempty / lanes  # B = 2
        assert table.loc[einsum.output, "cycles"] == pytest.approx(expected, rel=1e-12)
        checked += 1
    assert checked >= 10
    # the masked-out points are idle PEs, never useful work
    assert report.utilization["2d"] < 1


@pytest.mark.parametrize("key", list(MASKS))
def test_no_key_value_traffic_for_a_block_no_query_of_the_resident_block_reads(key):
    cascade, keep = _variant(key)
    arch = load_architecture("fusemax_cloud", ARCH)
    shape = dict(B=1, H=1, E=E, F=F, M=P, P=P)
    # buffer tiles: 8 queries (spatial 4 x GB.P 2) x 8 keys (M0 4 x GB.M1 2)
    report = evaluate(cascade, arch, _mapping(), shape)
    blocks = _nonempty_tiles(keep, 8, 8)
    word = arch.word_bytes
    assert report.dram_bytes_by_tensor["K"] == blocks * 8 * E * word
    assert report.dram_bytes_by_tensor["V"] == blocks * 8 * F * word
    # Q is fetched once per query block, which every block needs (each has a key)
    assert report.dram_bytes_by_tensor["Q"] == P * E * word
    dense = evaluate(cascade, arch, _mapping(skip=False), shape)
    assert dense.dram_bytes_by_tensor["K"] == (P // 8) ** 2 * 8 * E * word


def test_not_skipping_costs_the_dense_cascade():
    arch = load_architecture("fusemax_cloud", ARCH)
    shape = dict(B=1, H=1, E=E, F=F, M=P, P=P)
    dense = evaluate(attention("fusemax", M0=M0), arch, _mapping(skip=False), shape)
    masked = evaluate(_variant("causal")[0], arch, _mapping(skip=False), shape)
    assert masked.cycles == pytest.approx(dense.cycles, rel=1e-12)
    assert masked.dram_bytes == dense.dram_bytes
    # but it does less useful work
    assert masked.per_einsum.ops.sum() < dense.per_einsum.ops.sum()


def test_the_bundled_reproduction_mappings_compute_every_tile():
    for name in ("fusemax", "flat", "unfused", "fusemax_serial", "flat_spill", "cascade_on_flat"):
        assert load_mapping(name).skip_empty_tiles is False
    assert _mapping().skip_empty_tiles is True


# ------------------------------------------------------------------- exact semantics


def _fusemax_over_tiles(q, k, v, keep, p_tile, key_tile, skip):
    """FuseMax's 1-pass recurrence (Cascade 5) per query tile, visiting only the key tiles
    in which the tile keeps a pair when `skip` (the floor -1e30 of the masked variants)."""
    out = np.zeros((v.shape[0], q.shape[1]))
    visited = 0
    for p0 in range(0, q.shape[1], p_tile):
        ps = np.arange(p0, min(q.shape[1], p0 + p_tile))
        rm = np.full(len(ps), -1e30)
        rd = np.zeros(len(ps))
        rnv = np.zeros((v.shape[0], len(ps)))
        for m0 in range(0, k.shape[1], key_tile):
            ms = np.arange(m0, min(k.shape[1], m0 + key_tile))
            kept = keep(ms[:, None], ps[None, :])
            if skip and not kept.any():
                continue
            visited += 1
            qk = np.where(kept, k[:, ms].T @ q[:, ps], -np.inf)
            new = np.maximum(rm, qk.max(axis=0))
            sln = np.exp(qk - new)
            prm = np.exp(rm - new)
            rd = prm * rd + sln.sum(axis=0)
            rnv = prm * rnv + v[:, ms] @ sln
            rm = new
        out[:, ps] = rnv / rd
    return out, visited


@pytest.mark.parametrize("key", list(MASKS))
def test_skipping_the_empty_tiles_leaves_the_attention_output_unchanged(key, rng):
    cascade, keep = _variant(key)
    shape = dict(E=E, F=F, M=P, P=P)
    inputs = {
        "Q": rng.standard_normal((E, P)),
        "K": rng.standard_normal((E, P)),
        "V": rng.standard_normal((F, P)),
    }
    reference = cascade.evaluate(inputs, shape)["AV"]
    skipped, visited = _fusemax_over_tiles(
        inputs["Q"], inputs["K"], inputs["V"], keep, 4, M0, skip=True
    )
    np.testing.assert_allclose(skipped, reference, rtol=1e-10, atol=1e-12)
    # and the model charges QK exactly the tiles the recurrence visited
    arch = load_architecture("fusemax_cloud", ARCH)
    report = evaluate(cascade, arch, _mapping(), dict(shape, B=1, H=1))
    qk = report.per_einsum.set_index("einsum").loc["QK", "cycles"]
    assert qk == pytest.approx(visited * 4 * M0 * E / 16, rel=1e-12)
    assert visited < (P // 4) * (P // M0)


# ------------------------------------------------------------------------ batch == loop


def test_batch_equals_a_loop_of_scalar_evaluations():
    cascade, _ = _variant("sliding_window")
    arch = load_architecture("fusemax_cloud", ARCH)
    shape = dict(B=2, H=3, E=E, F=F, M=P, P=P)
    template = _mapping()
    params = {
        "attention.GB.P": np.array([1, 2, 3, 2, 1, 6]),
        "attention.GB.M1": np.array([1, 1, 2, 3, 6, 2]),
        "attention.spatial.P": np.array([4, 2, 4, 4, 1, 2]),
    }
    batch = evaluate_batch(cascade, arch, template, shape, params)
    for i in range(len(params["attention.GB.P"])):
        one = evaluate(
            cascade, arch, bind(template, {k: int(v[i]) for k, v in params.items()}), shape
        )
        assert batch.cycles[i] == pytest.approx(one.cycles, rel=1e-12)
        assert batch.energy_pj[i] == pytest.approx(one.energy_pj, rel=1e-12)
        assert batch.dram_bytes[i] == pytest.approx(one.dram_bytes, rel=1e-12)
        for level, words in one.buffer_words.items():
            assert batch.buffer_words[level][i] == pytest.approx(words, rel=1e-12)


def test_skip_empty_tiles_round_trips_through_yaml_and_rejects_a_non_boolean():
    for skip in (True, False):
        mapping = _mapping(skip=skip)
        assert mapping_from_dict(mapping_to_dict(mapping)) == mapping
    data = mapping_to_dict(_mapping())
    assert "skip_empty_tiles" not in data  # the default is left out
    data["skip_empty_tiles"] = "yes"
    with pytest.raises(SpecError, match=r"skip_empty_tiles: expected true or false, got 'yes'"):
        mapping_from_dict(data)
