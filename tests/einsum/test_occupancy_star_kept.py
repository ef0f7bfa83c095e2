"""Star plans keep per-row arrays per tile side (`_star_side`, `_star_rows`, `_star_full`)
within STAR_VALUES_KEPT values: with room for none (forgotten at every keep) or for all,
tilings sharing sides count exactly as a brute force does, and the arrays kept stay
within the bound."""

import importlib

import pytest
from test_occupancy import _check, _with_intervals
from test_occupancy_star import _STAR_MASKS, _cascade

from einsim.einsum import resolve_shape

occ = importlib.import_module("einsim.einsum.occupancy")


@pytest.mark.parametrize("most", [1, 40, 2**23])
@pytest.mark.parametrize("mask", _STAR_MASKS[:3])
def test_kept_star_arrays_count_exactly(monkeypatch, most, mask):
    _with_intervals(monkeypatch)
    occ._star_plan_cached.cache_clear()
    monkeypatch.setattr(occ, "STAR_VALUES_KEPT", most)
    c = _cascade(mask, False)
    sizes = resolve_shape(c, {"N": 11, "N2": 9, "Q": 13, "A": 2, "B": 3, "C": 2})
    sides = [1, 2, 3, 5]
    tilings = [{"N": a, "N2": b, "Q": q} for a in sides for b in sides[:2] for q in (1, 4)]
    _check(c, sizes, tilings)
    _check(c, sizes, [*tilings[::-1], {"N": 7, "Q": 2}])  # the same sides again, one new
    einsum = c.einsums[0]
    vars_ = occ._mask_vars_of(c, einsum, sizes, einsum.where)
    plan = occ._star_plan(c, sizes, einsum.where, vars_)
    kept = plan.counted.get(("arrays",), {})
    held = sum(a.size for arrays in kept.values() for a in arrays)
    assert kept and held == plan.counted["values",]
    assert held <= most or len(kept) == 1  # one entry larger than the bound stays alone
