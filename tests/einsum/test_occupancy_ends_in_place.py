"""The closed form's ends computed in place (`_whole_ends_into`, `_constant_ends`) and the
union plan's term order (`_median_kept`) against their references: the float path of
`_affine_ends` and `np.median` of the kept values."""

import importlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_occupancy import _check
from test_occupancy_whole_ends import _float_ends

from einsim import parse_cascade
from einsim.einsum import occupancy, resolve_shape
from einsim.einsum.ir import Op

occ = importlib.import_module("einsim.einsum.occupancy")

_OPS = st.sampled_from([Op.LT, Op.LE, Op.GT, Op.GE])


@settings(max_examples=300, deadline=None)
@given(
    a=st.one_of(st.integers(-9, 9), st.integers(-(2**40), 2**40)),
    value=st.integers(-(2**52) + 1, 2**52 - 1),
    op=_OPS,
    n=st.integers(1, 6),
    n_x=st.integers(1, 2**40),
    data=st.data(),
)
def test_constant_ends_equal_the_float_path_over_every_row(a, value, op, n, n_x, data):
    lo0 = np.array(data.draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), np.int64)
    hi = np.full(n, n_x - 1, dtype=np.int64)
    want = _float_ends(a, np.full(n, value, np.int64), op, lo0, hi)
    lo_got, hi_got = lo0.copy(), hi.copy()
    occ._constant_ends(a, value, op, lo_got, hi_got)
    np.testing.assert_array_equal(lo_got, want[0])
    np.testing.assert_array_equal(hi_got, want[1])


@settings(max_examples=200, deadline=None)
@given(
    a=st.integers(-12, 12),
    values=st.lists(st.integers(-(2**52) + 1, 2**52 - 1), min_size=1, max_size=12),
    op=_OPS,
)
def test_whole_ends_into_updates_in_place_as_the_float_path(a, values, op):
    whole = np.array(values, dtype=np.int64)
    lo = np.arange(len(values), dtype=np.int64) - 3
    hi = np.full(len(values), 7, dtype=np.int64)
    want = _float_ends(a, whole, op, lo, hi)
    got_lo, got_hi, tmp = lo.copy(), hi.copy(), np.empty_like(lo)
    occ._whole_ends_into(a, whole, op, got_lo, got_hi, tmp)
    np.testing.assert_array_equal(got_lo, want[0])
    np.testing.assert_array_equal(got_hi, want[1])
    np.testing.assert_array_equal(whole, np.array(values, dtype=np.int64))  # not written


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), max_size=30),
    data=st.data(),
    sort=st.booleans(),
)
def test_median_kept_is_numpys_median_of_the_kept_values(values, data, sort):
    lo = np.array(sorted(values) if sort else values, dtype=np.int64)
    on = np.array(data.draw(st.lists(st.booleans(), min_size=len(lo), max_size=len(lo))), bool)
    want = float(np.median(lo[on])) if on.any() else 0.0
    assert occ._median_kept(lo, on) == want


@settings(max_examples=40, deadline=None)
@given(
    s=st.integers(1, 9),
    w=st.integers(1, 12),
    n=st.integers(1, 90),
    tm=st.integers(1, 9),
    tp=st.integers(1, 9),
)
def test_sinks_window_and_constant_bounds_match_brute_force(s, w, n, tm, tp):
    """A filter with bounds that read no row (`m < S`, `m >= 2`) and a rest over p, counted
    by the plans against a numpy mask of every point."""
    c = parse_cascade(
        "inputs: Q[e,p], K[e,m]\n"
        "QK[m,p] = Q[e,p] * K[e,m] where m <= p and m >= 2 and (m < S or p - m < W)"
    )
    sizes = {"E": 1, "M": n, "P": n, "S": s, "W": w}
    got = occupancy(c, sizes, {"M": tm, "P": tp})["QK"]
    m, p = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = (m <= p) & (m >= 2) & ((m < s) | (p - m < w))
    kept = np.add.reduceat(np.add.reduceat(keep, np.arange(0, n, tm), 0), np.arange(0, n, tp), 1)
    valid = np.add.reduceat(
        np.add.reduceat(np.ones_like(keep), np.arange(0, n, tm), 0), np.arange(0, n, tp), 1
    )
    assert int(got.points[0]) == int(keep.sum())
    assert int(got.empty[0]) == int((kept == 0).sum())
    assert int(got.full[0]) == int(((kept == valid) & (kept > 0)).sum())
    assert int(got.busy_points[0]) == int(valid[kept > 0].sum())


def test_one_function_of_keys_and_of_queries_shares_its_values():
    """f(m) and f(p) over ranges of one length are one array (`_renamed` keys the shared
    values by structure), equal to the executor's values of each."""
    from einsim.einsum.executor import _value

    c = parse_cascade(
        "inputs: A[m,p]\nB[m,p] = A[m,p] where "
        "m // Y // RX * NRY + m % Y // RY == p // Y // RX * NRY + p % Y // RY and m - p < p - m"
    )
    sizes = {"Y": 8, "RX": 2, "NRY": 4, "RY": 2}
    (f_m, f_p), (m_minus_p, p_minus_m) = (e.args for e in c.einsums[0].where.args)
    occ._SHARED_VALUES.clear()
    a = occ._shared_whole_values(f_m, "m", 100, sizes)
    b = occ._shared_whole_values(f_p, "p", 100, sizes)
    assert a is b
    want = np.asarray(_value(f_p, {"p": np.arange(100)}, sizes, {}, None))
    np.testing.assert_array_equal(b, want)
    assert occ._shared_whole_values(f_p, "p", 101, sizes) is not b  # another length
    # another variable keeps its name: m - p over m is not p - m over p
    assert occ._renamed(m_minus_p, "m") != occ._renamed(p_minus_m, "p")


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 40),
    ends=st.lists(st.integers(-3, 43), max_size=40),
    inclusive=st.sampled_from([0, 1]),
)
def test_counts_below_is_the_binary_search(n, ends, inclusive):
    """`_counts_below` (a histogram summed in place) against `np.searchsorted`."""
    ends = np.array(sorted(ends), dtype=np.int64)
    got = occ._counts_below(ends, n, inclusive)
    want = np.searchsorted(ends, np.arange(n), side="right" if inclusive else "left")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(
    filt=st.sampled_from(
        [
            "nq * PQ + pq < P",  # every real point: every tile full, no point counted
            "nq * PQ + pq <= P + 3 and 0 <= nq * PQ + pq",
            "nq * PQ + pq < P - 1",  # one point less: counted
            "2 * (nq * PQ + pq) < 2 * P - 1",
        ]
    ),
    nq=st.integers(1, 9),
    pq=st.integers(1, 7),
    short=st.sampled_from([0, 0, 1, 3]),  # P = NQ * PQ - short: padded points when > 0
    data=st.data(),
)
def test_a_filter_over_one_partitioned_rank_matches_brute_force(filt, nq, pq, short, data):
    """A filter over a partition's two parts only (FlexPrefill's query blocks), alone and
    beside an Einsum without a filter that projects it, against brute force (padded
    points are never real)."""
    p = max(1, nq * pq - short)
    c = parse_cascade(
        "inputs: Q[e,p]\npartition: P -> NQ, PQ\n"
        f"QB[e,nq,pq] = Q[e,nq*PQ+pq] where {filt}\nQS[nq] = QB[e,nq,pq]"
    )
    sizes = resolve_shape(c, {"E": 2, "P": p, "PQ": pq})
    draw = st.integers(1, 10)
    tilings = [{}] + [
        {"NQ": data.draw(draw), "PQ": data.draw(st.sampled_from([pq, pq, 1, 2])), "E": 1}
        for _ in range(3)
    ]
    _check(c, sizes, tilings)
    _check(c, sizes, tilings, ["QB"])
