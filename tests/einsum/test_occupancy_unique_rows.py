"""`_unique_rows` (the distinct tilings of a call and where each row went) against
numpy's `np.unique(axis=0)`, on both of its paths (a Python sort of few rows, numpy's
sort of many)."""

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

occ = importlib.import_module("einsim.einsum.occupancy")


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(1, 9), min_size=3, max_size=3), min_size=1, max_size=90),
    by_dict=st.sampled_from([0, 64, 1000]),
)
def test_unique_rows_equal_numpy(rows, by_dict):
    table = np.array(rows, dtype=np.int64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(occ, "UNIQUE_BY_DICT", by_dict)
        unique, inverse = occ._unique_rows(table)
    want, want_inverse = np.unique(table, axis=0, return_inverse=True)
    np.testing.assert_array_equal(unique, want)
    np.testing.assert_array_equal(inverse, np.asarray(want_inverse).reshape(-1))
    np.testing.assert_array_equal(unique[inverse], table)
