"""One share for every row in the spatial model's tile-share look-ups: `_tile_shares(...,
one=True)` gives a float where every tiling its table holds has the same share (1.0 where a
brute-force count finds a point of the causal mask in every tile), and otherwise the same
rows as without `one`; `_most` of shares holding the float 1.0 is 1.0 in every row (a share
never exceeds 1)."""

import itertools

import numpy as np

from einsim import parse_cascade
from einsim.einsum.occupancy import filter_token
from einsim.simulator.spatial import cost

M = P = 24


def _brute_share(m0: int, p: int) -> float:
    """Non-empty tiles / tiles of the causal mask m <= p (tiles of m0 keys x p queries)."""
    m, q = np.meshgrid(np.arange(M), np.arange(P), indexing="ij")
    keep = m <= q
    tiles = nonempty = 0
    for i, j in itertools.product(range(0, M, m0), range(0, P, p)):
        tiles += 1
        nonempty += bool(keep[i : i + m0, j : j + p].any())
    return nonempty / tiles


def _lookup(token: int, batch: list[tuple[int, int]], one: bool):
    cascade = parse_cascade("inputs: Q[e,p], K[e,m]\nQK[m,p] = Q[e,p] * K[e,m] where m <= p")
    kind = (filter_token(cascade.einsum("QK").where), frozenset({"M", "P"}))
    m_tiles, p_tiles = (np.array(c, np.int64) for c in zip(*batch, strict=True))
    varying = {"M": m_tiles, "P": p_tiles}
    code = cost._tiling_codes([m_tiles, p_tiles], [M, P], len(batch))
    sizes = (("E", 4), ("M", M), ("P", P))
    return cost._tile_shares(cascade, "QK", kind, sizes, {}, varying, code, token, one=one)


def test_one_where_every_tile_keeps_a_point():
    full = [(m0, P) for m0 in (1, 5, 8, 24)]  # a tile of every query: every tile keeps one
    assert all(_brute_share(m0, p) == 1.0 for m0, p in full)
    token = 3 * 10**9  # a table of its own
    got = _lookup(token, full, one=True)
    assert type(got) is float and got == 1.0
    np.testing.assert_array_equal(_lookup(token, full, one=False), np.ones(len(full)))
    partial = [*full, (4, 4)]  # the table now holds a tiling with empty tiles
    want = [_brute_share(m0, p) for m0, p in partial]
    assert min(want) < 1.0
    for one in (True, False):  # the new tiling, then every tiling seen, alike
        for batch, wanted in ((partial, want), (full, [1.0] * len(full))):
            got = _lookup(token, batch, one=one)
            assert isinstance(got, np.ndarray)
            np.testing.assert_allclose(got, wanted, rtol=1e-12)


def test_a_float_where_every_tiling_held_has_one_share():
    token = 4 * 10**9  # a table of its own
    want = _brute_share(1, 1)  # tiles of one point: the share of points the mask keeps
    assert 0.0 < want < 1.0
    got = _lookup(token, [(1, 1), (1, 1)], one=True)
    assert type(got) is float
    np.testing.assert_allclose(got, want, rtol=1e-12)
    batch = [(1, 1), (24, 24)]  # a second share: every row its own again
    got = _lookup(token, batch, one=True)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, [want, 1.0], rtol=1e-12)


def test_most_of_a_share_of_one_is_one():
    shares = [np.array([0.25, 1.0, 0.5]), 1.0, np.array([0.75, 0.0, 0.5])]
    assert cost._most(shares) == 1.0
    np.testing.assert_array_equal(np.maximum.reduce(np.broadcast_arrays(*shares)), np.ones(3))
    np.testing.assert_array_equal(cost._most([shares[0], shares[2]]), [0.75, 1.0, 0.5])


def test_a_dense_index_finds_the_rows_a_binary_search_finds(monkeypatch):
    """Tables that index their codes directly (`_DENSE_MAX`) and tables that search them give
    each row the brute-force share of its tiling, batch after batch."""
    batches = [[(1, 1), (3, 5)], [(3, 5), (24, 1), (2, 7)], [(2, 7), (1, 1)]]
    for dense_max, token in ((1 << 15, 5 * 10**9), (0, 6 * 10**9)):
        monkeypatch.setattr(cost, "_DENSE_MAX", dense_max)
        for batch in batches:
            got = _lookup(token, batch, one=False)
            want = [_brute_share(m0, p) for m0, p in batch]
            np.testing.assert_allclose(got, want, rtol=1e-12)
        held = cost._SHARES[next(k for k in cost._SHARES if k[2] == token)]
        assert (held[3] is not None) == (dense_max > 0)
