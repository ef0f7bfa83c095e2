"""The closed form's array helpers against their plain definitions: `_counts_below` (a
histogram's running sum) against numpy's binary search, `_staircase` against a row-by-row
check of its definition."""

import importlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

occ = importlib.import_module("einsim.einsum.occupancy")


@settings(max_examples=200, deadline=None)
@given(
    ends=st.lists(st.integers(-3, 40), max_size=30),
    n=st.integers(1, 40),
    inclusive=st.sampled_from([0, 1]),
)
def test_counts_below_equals_searchsorted(ends, n, inclusive):
    ends = np.sort(np.array(ends, dtype=np.int64))
    got = occ._counts_below(ends, n, inclusive)
    want = np.searchsorted(ends, np.arange(n), side="right" if inclusive else "left")
    np.testing.assert_array_equal(got, want)


def _staircase_by_rows(lo, hi):
    """The definition, row by row: the feasible rows are one run, both ends never
    decrease along it, and each interval touches the next."""
    rows = [y for y in range(len(lo)) if lo[y] <= hi[y]]
    if not rows:
        return 1, 0
    a, b = rows[0], rows[-1]
    if len(rows) != b - a + 1:
        return None
    for y in range(a, b):
        if lo[y + 1] < lo[y] or hi[y + 1] < hi[y] or lo[y + 1] > hi[y] + 1:
            return None
    return a, b


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 12), st.integers(-2, 12)), min_size=1, max_size=16))
def test_staircase_matches_its_definition(pairs):
    lo = np.array([p[0] for p in pairs], dtype=np.int64)
    hi = np.array([p[1] for p in pairs], dtype=np.int64)
    assert occ._staircase(lo, hi) == _staircase_by_rows(lo.tolist(), hi.tolist())


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 5),
    steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=12),
    lead=st.integers(0, 3),
    tail=st.integers(0, 3),
)
def test_staircase_of_generated_staircases(start, steps, lead, tail):
    """Non-decreasing touching intervals between empty rows: found, with their rows."""
    lo, hi = [start], [start + steps[0][1]]
    for dl, dh in steps[1:]:
        lo.append(min(lo[-1] + dl, hi[-1] + 1))
        hi.append(max(hi[-1] + dh, lo[-1]))
    lo = [1] * lead + lo + [1] * tail
    hi = [0] * lead + hi + [0] * tail
    got = occ._staircase(np.array(lo), np.array(hi))
    assert got == (lead, len(lo) - tail - 1) == _staircase_by_rows(lo, hi)
