"""The spatial model's table of tile shares (`_tile_shares`): each row of a batch takes the
share of non-empty tiles that a brute-force count over the tile grid gives for its tiling
(the mask evaluated on every point of the causal QK, numpy), whether the table already holds
that tiling, holds part of the batch, or starts empty; repeated rows and rows past the last
tiling seen included."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim import parse_cascade
from einsim.einsum.occupancy import filter_token
from einsim.simulator.spatial import cost

M = P = 24  # small enough for a brute-force grid


def _brute_share(m0: int, p: int) -> float:
    """Non-empty tiles / tiles of the causal mask m <= p, tiles of m0 keys x p queries
    (partial tiles at the edges count as tiles)."""
    m, q = np.meshgrid(np.arange(M), np.arange(P), indexing="ij")
    keep = m <= q
    tiles = nonempty = 0
    for i in range(0, M, m0):
        for j in range(0, P, p):
            tiles += 1
            nonempty += bool(keep[i : i + m0, j : j + p].any())
    return nonempty / tiles


@pytest.fixture(scope="module")
def causal():
    cascade = parse_cascade("inputs: Q[e,p], K[e,m]\nQK[m,p] = Q[e,p] * K[e,m] where m <= p")
    return cascade, cascade.einsum("QK")


def _shares(cascade, einsum, sizes_token, m_tiles, p_tiles):
    kind = (filter_token(einsum.where), frozenset({"M", "P"}))
    sizes = (("E", 4), ("M", M), ("P", P))
    varying = {"M": m_tiles, "P": p_tiles}
    code = cost._tiling_codes(list(varying.values()), [M, P], len(m_tiles))
    return cost._tile_shares(cascade, "QK", kind, sizes, {}, varying, code, sizes_token)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_each_row_takes_the_share_of_its_tiling(causal, data):
    cascade, einsum = causal
    token = data.draw(st.integers(10**9, 2 * 10**9))  # a fresh table per example
    rows = st.tuples(st.integers(1, M), st.integers(1, P))
    first = data.draw(st.lists(rows, min_size=1, max_size=12))
    second = data.draw(st.lists(rows, min_size=1, max_size=12))
    for batch in (first, first + second, second[::-1]):  # empty, partial, full table
        m_tiles, p_tiles = (np.array(c, np.int64) for c in zip(*batch, strict=True))
        got = _shares(cascade, einsum, token, m_tiles, p_tiles)
        want = [_brute_share(m0, p) for m0, p in batch]
        np.testing.assert_allclose(got, want, rtol=1e-12)
