"""Head-class counts kept per tiling on the plan (`_head_counts_kept`): tilings asked
again in later calls, mixed with new ones and repeated within a call, still equal a
brute-force count, and the ones already counted are not counted again."""

import pytest
from test_occupancy import _check, _head_cascade, _with_intervals

from einsim.einsum import resolve_shape


@pytest.mark.parametrize(
    "mask",
    ["m <= p and (h * 100 >= RP * H or m < S or p - m < W)", "h < 2 or m % 3 != p % 2"],
)
def test_kept_tilings_count_as_fresh_ones(monkeypatch, mask):
    occ = _with_intervals(monkeypatch)
    counted = []
    count = occ._head_counts
    monkeypatch.setattr(
        occ,
        "_head_counts",
        lambda s, hp, table, names: counted.append(len(table)) or count(s, hp, table, names),
    )
    c = _head_cascade(mask)
    sizes = resolve_shape(c, {"E": 2, "H": 5, "M": 19, "P": 17, "M0": 3, "W": 4, "S": 2, "RP": 40})
    first = [{"P": 4, "M1": 2, "H": 2}, {"P": 3, "H": 1}, {}]
    again = [
        {"P": 3, "H": 1},
        {"P": 5, "M1": 3, "H": 3},
        {"P": 3, "H": 1},
        {"P": 4, "M1": 2, "H": 2},
    ]
    _check(c, sizes, first, ["QK"])
    assert counted == [3]
    _check(c, sizes, again, ["QK"])
    assert counted == [3, 1]  # only the new tiling, once
    _check(c, sizes, first + again, ["QK"])
    assert counted == [3, 1]  # every tiling kept
