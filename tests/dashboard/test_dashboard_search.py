"""Mapping searches run in background threads; the page polls them."""

import threading

import numpy as np
import pytest

from einsim import SpecError
from einsim.dashboard.app import searched_spec
from einsim.dashboard.design import DesignSpec, evaluate_design
from einsim.dashboard.search import SearchJobs, SearchRequest, describe

REQUEST = SearchRequest(DesignSpec(seq_len=1024), "greedy", "latency", 500)


def test_a_real_search_finishes_with_a_mapping_the_page_can_evaluate():
    mapper = pytest.importorskip("einsim.mapper")
    jobs = SearchJobs()
    status = jobs.wait(jobs.start(REQUEST))
    assert status.state == "done", status.message
    assert status.fraction == 1.0  # the mapper reported its end
    direct = mapper.search(*_problem(REQUEST.spec), objective="latency", strategy="greedy",
                           budget=500, seed=0)  # fmt: skip
    spec, note = searched_spec(REQUEST.spec, status)
    assert note is None and spec.searched == direct.mapping
    report = evaluate_design(spec).report
    np.testing.assert_allclose(report.latency_s, direct.report.latency_s, rtol=1e-12)
    assert describe(status).startswith("found (greedy, latency, budget 500)")


def test_a_gpu_search_finds_the_tiling_search_gpu_finds():
    from einsim.mapper.gpu import search_gpu

    request = SearchRequest(DesignSpec(seq_len=2048, arch="h100_sxm"), "greedy", "latency", 300)
    jobs = SearchJobs()
    status = jobs.wait(jobs.start(request))
    assert status.state == "done", status.message
    direct = search_gpu(
        *_problem(request.spec), objective="latency", budget=300, seed=0, strategy="greedy"
    )
    spec, note = searched_spec(request.spec, status)
    assert note is None and spec.searched == direct.mapping
    result = evaluate_design(spec)
    assert result.mapping == direct.mapping
    np.testing.assert_allclose(result.report.latency_s, direct.report.latency_s, rtol=1e-12)
    # the strategy asked is the strategy run (issue 14: no silent "sample" on a GPU)
    assert describe(status).startswith("found (greedy, latency, budget 300)")
    assert spec.label().endswith(f"searched {direct.mapping.name}")


def test_a_gpu_search_on_an_unsupported_cascade_fails_with_the_reason():
    request = SearchRequest(DesignSpec(attention="gemm", arch="h100_sxm"), "greedy", "latency", 9)
    jobs = SearchJobs()
    status = jobs.wait(jobs.start(request))
    assert status.state == "failed" and "GPU model: " in status.message
    assert "gemm" in status.message


def _problem(spec):
    from einsim.dashboard.design import build_architecture, build_workload

    cascade, shape = build_workload(spec)
    return cascade, build_architecture(spec), shape


def test_the_page_does_not_wait_for_a_search():
    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(10)
        raise SpecError("no valid mapping")

    jobs = SearchJobs(slow)
    job = jobs.start(REQUEST)
    running = jobs.status(job)
    assert running.state == "running"
    assert searched_spec(REQUEST.spec, running)[1].startswith("searching (greedy")
    release.set()
    failed = jobs.wait(job)
    assert failed.state == "failed" and failed.message == "SpecError: no valid mapping"
    assert describe(failed).startswith("search failed")


def test_a_running_search_shows_the_share_of_its_budget_costed():
    halfway, release = threading.Event(), threading.Event()

    def search(*args, progress, **kwargs):
        progress(250, 500)
        halfway.set()
        release.wait(10)
        raise SpecError("stopped")

    jobs = SearchJobs(search)
    job = jobs.start(REQUEST)
    assert halfway.wait(10)
    running = jobs.status(job)
    assert running.fraction == 0.5
    assert describe(running).endswith("50% of the budget costed")
    release.set()
    jobs.wait(job)


def test_a_result_for_another_design_point_is_not_used():
    class Found:
        mapping = object()
        evaluated = 1

    jobs = SearchJobs(lambda *a, **k: Found())
    status = jobs.wait(jobs.start(REQUEST))
    other = DesignSpec(seq_len=2048)
    spec, note = searched_spec(other, status)
    assert spec == other and "another design point" in note
    assert searched_spec(other, None)[1].startswith("no search yet")


@pytest.mark.parametrize("budget", [0, 1.5, True])
def test_bad_requests_fail_before_a_thread_starts(budget):
    jobs = SearchJobs(lambda *a, **k: None)
    with pytest.raises(SpecError, match="budget"):
        jobs.start(SearchRequest(DesignSpec(), "greedy", "latency", budget))
    with pytest.raises(SpecError, match="sequence length"):
        jobs.start(SearchRequest(DesignSpec(seq_len=0), "greedy", "latency", 10))
    with pytest.raises(SpecError, match="no search job"):
        jobs.status(12345)
