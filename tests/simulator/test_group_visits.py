"""`_group_visits` (the K/V groups a loop over heads re-reads, GQA and razor_attention's
P-W+1): each row of a batch takes the (sum, max) over the loop's iterations of the distinct
groups its block of heads reads, as a brute force over the heads counts them, for monotone
and unordered head-to-group maps, scalars and arrays, repeated and partial blocks."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.simulator.spatial import cost


def _brute(groups: np.ndarray, t: int, f: int) -> tuple[int, int]:
    """(sum, max) over blocks i < f of the distinct groups of heads i*t .. i*t+t-1."""
    counts = [len(set(groups[i * t : i * t + t].tolist())) for i in range(f)]
    counts = [c for c in counts if c] or [0]
    return sum(counts), max(counts)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_each_row_takes_the_groups_its_blocks_read(data):
    heads = data.draw(st.integers(1, 24))
    monotone = data.draw(st.booleans())
    groups = data.draw(st.lists(st.integers(0, 5), min_size=heads, max_size=heads))
    groups = np.array(sorted(groups) if monotone else groups, np.int64)
    rows = data.draw(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), min_size=1))
    per = np.array([t for t, _ in rows], np.int64)
    its = np.array([f for _, f in rows], np.int64)
    total, most = cost._group_visits(cost._HeadGroups(groups), per, its)
    want = [_brute(groups, t, f) for t, f in rows]
    np.testing.assert_array_equal(total, [w[0] for w in want])
    np.testing.assert_array_equal(most, [w[1] for w in want])
    one_total, one_most = cost._group_visits(cost._HeadGroups(groups), int(per[0]), int(its[0]))
    assert (one_total, one_most) == (float(want[0][0]), float(want[0][1]))
