"""A union plan's ends kept as affine runs over its pieces (`_AffineRuns`, `_union_of`):
every row's value equals the array the runs stand for (the terms' ends, and the gaps
between the live terms worked out row by row here), and the kept points equal a count
of the points in the union of each row's intervals, whatever the chunks of rows its cuts
are found in (`_union_cuts`)."""

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

occ = importlib.import_module("einsim.einsum.occupancy")


@st.composite
def _piecewise(draw, n: int):
    """An int64 array of n values, affine between a few random breakpoints."""
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=3)) - {n})
    values = np.empty(n, dtype=np.int64)
    for start, stop in zip([0, *cuts], [*cuts, n], strict=True):
        base, slope = draw(st.integers(-50, 50)), draw(st.integers(-3, 3))
        values[start:stop] = base + slope * np.arange(stop - start)
    return values, [0, *cuts, n]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 60))
def test_runs_give_the_arrays_values(data, n):
    values, edges = data.draw(_piecewise(n))
    runs = occ._AffineRuns.of(values, edges)
    assert len(runs) == n
    assert [runs[y] for y in range(n)] == values.tolist()
    rows = np.unique(np.minimum(np.add.outer([0, 1], edges[:-1]), n - 1))
    at_rows = occ._AffineRuns.of(values[rows], edges, rows)
    assert [at_rows[y] for y in range(n)] == values.tolist()
    with pytest.raises(IndexError):
        runs[n]


def _gaps(terms, n_x: int, n_y: int):
    """Row by row: before each term (in order) the x past every earlier live term's hi and
    before its lo (empty, lo > hi, where it is dead), and after the last."""
    gaps = [(np.empty(n_y, np.int64), np.empty(n_y, np.int64)) for _ in range(len(terms) + 1)]
    for y in range(n_y):
        previous = -1
        for g, (lo, hi) in enumerate(terms):
            live = lo[y] <= hi[y]
            gaps[g][0][y], gaps[g][1][y] = previous + 1, (lo[y] - 1 if live else -2)
            if live:
                previous = max(previous, int(hi[y]))
        gaps[-1][0][y], gaps[-1][1][y] = previous + 1, n_x - 1
    return gaps


@st.composite
def _staircases(draw):
    """Terms [lo(y), hi(y)] of a sinks-and-window-like union: ends affine in y, slopes 0
    or 1, clipped to the extent of x."""
    n_x, n_y = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        lo0, lo_slope = draw(st.integers(-5, n_x)), draw(st.integers(0, 1))
        width, hi_slope = draw(st.integers(-3, 8)), draw(st.integers(0, 1))
        y = np.arange(n_y, dtype=np.int64)
        lo = np.maximum(lo0 + lo_slope * y, 0)
        hi = np.minimum(lo0 + width + hi_slope * y, n_x - 1)
        terms.append((lo, hi))
    return terms, n_x, n_y


@settings(max_examples=300, deadline=None)
@given(case=_staircases(), chunk=st.sampled_from([1, 2, 3, 7, occ.UNION_ROWS_CHUNK]))
def test_union_ends_and_points_equal_the_rows(case, chunk):
    """Whatever the chunks of rows the cuts are looked for in (a cut compares a row with
    the rows either side: chunks of 1 to 7 rows put every cut on a chunk's edge)."""
    terms, n_x, n_y = case
    default, occ.UNION_ROWS_CHUNK = occ.UNION_ROWS_CHUNK, chunk
    try:
        found = occ._union_of(terms, n_x, n_y)
    finally:
        occ.UNION_ROWS_CHUNK = default
    if found is None:
        return  # not ordered staircases, or too many pieces: another plan counts it
    _, _, kept, gaps, pieces, points = found
    ordered = [(lo, hi) for lo, hi in terms]
    ordered.sort(key=lambda t: occ._median_kept(t[0], t[0] <= t[1]))
    for (lo, hi), (run_lo, run_hi) in zip(ordered, kept, strict=True):
        assert [run_lo[y] for y in range(n_y)] == lo.tolist()
        assert [run_hi[y] for y in range(n_y)] == hi.tolist()
    for (lo, hi), (run_lo, run_hi) in zip(_gaps(ordered, n_x, n_y), gaps, strict=True):
        assert [run_lo[y] for y in range(n_y)] == lo.tolist()
        assert [run_hi[y] for y in range(n_y)] == hi.tolist()
    union = sum(
        len({x for lo, hi in terms for x in range(max(lo[y], 0), hi[y] + 1)}) for y in range(n_y)
    )
    assert points == union
    assert pieces[0][0] == 0 and pieces[-1][1] == n_y - 1
