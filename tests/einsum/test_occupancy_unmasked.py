"""A data filter with no static conjunct, priced by a density (`_unmasked_stats`): every
tile is kept whole, for many tilings at once, against the counts by hand."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim import parse_cascade
from einsim.einsum import resolve_shape
from einsim.einsum.occupancy import occupancy

_CASCADE = parse_cascade(
    "inputs: S[m,p], Q[e,p], K[e,m]\nX[e,m,p] = Q[e,p] * K[e,m] where S[m,p] > 0"
)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 40),
    p=st.integers(1, 40),
    tilings=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), min_size=1, max_size=6),
    density=st.sampled_from([1.0, 0.5, 0.3, 0.05]),
)
def test_every_tile_kept_whole_and_the_points_scaled(m, p, tilings, density):
    sizes = resolve_shape(_CASCADE, {"E": 3, "M": m, "P": p})
    tile = {"M": np.array([a for a, _ in tilings]), "P": np.array([b for _, b in tilings])}
    got = occupancy(_CASCADE, sizes, tile, density=density)["X"]
    assert got.method == "declared_density"
    for i, (a, b) in enumerate(tilings):
        tiles = math.ceil(m / min(a, m)) * math.ceil(p / min(b, p))
        points = 3 * m * p
        full = tiles if density == 1.0 else 0  # a scaled selection: none known full
        assert got.tiles[i] == tiles and got.empty[i] == 0
        assert (got.partial[i], got.full[i]) == (tiles - full, full)
        assert got.points[i] == round(density * points) and got.busy_points[i] == points
