"""The search's rarer garbage collections are scoped to the search: the caller's
thresholds come back after it, whether it returns or raises."""

import gc

import pytest

import einsim
from einsim.einsum import SpecError
from einsim.mapper.search import _rare_collections
from einsim.simulator import load_architecture

GEMM = {"M": 16, "N": 8, "K": 4}


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_thresholds_raised_inside_and_restored_after(thresholds):
    with _rare_collections(50_000):
        assert gc.get_threshold() == (50_000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_caller_with_rarer_collections_keeps_them(thresholds):
    gc.set_threshold(200_000, 10, 10)
    with _rare_collections(50_000):
        assert gc.get_threshold()[0] == 200_000
    assert gc.get_threshold() == (200_000, 10, 10)


def test_a_search_restores_the_thresholds_when_it_returns_or_raises(thresholds):
    arch = load_architecture("fusemax_cloud", {"units.2d.rows": 8, "units.2d.cols": 8})
    gemm = einsim.cascade("gemm")
    result = einsim.search(gemm, arch, GEMM, strategy="greedy", budget=2_000)
    assert result.report.valid
    assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(SpecError):
        einsim.search(gemm, arch, GEMM, strategy="exhaustive", budget=1)
    assert gc.get_threshold() == (700, 10, 10)
