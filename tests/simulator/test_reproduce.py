"""The FuseMax paper's published results, reproduced through the general model."""

import pytest

from einsim.simulator.reproduce import headline, reproduce


@pytest.fixture(scope="module")
def table():
    return reproduce()


def test_every_published_latency_within_one_percent(table):
    published = table.dropna(subset=["published_latency_s"])
    assert len(published) == 60  # BERT and XLM, six lengths, five configurations
    worst = (published.latency_s / published.published_latency_s - 1).abs()
    assert worst.max() < 0.01, published.loc[worst.idxmax()]


def test_utilizations_match_published(table):
    published = table.dropna(subset=["published_util_2d"])
    assert (published.util_2d - published.published_util_2d).abs().max() < 0.005
    assert (published.util_1d - published.published_util_1d).abs().max() < 0.005


@pytest.mark.parametrize("config", ["binding", "flat"])
def test_dram_bytes_match_where_published(table, config):
    rows = table[(table.config == config) & table.published_dram_bytes.notna()]
    # FLAT's spill fractions are rounded to 4 digits in its dataflow table; XLM's Q/V
    # placement is approximated, so only BERT is held to 2% for FLAT.
    if config == "flat":
        rows = rows[rows.model == "BERT"]
    assert len(rows) >= 6
    ratio = rows.dram_bytes / rows.published_dram_bytes
    assert ratio.between(0.98, 1.02).all(), rows[["model", "seq_len", "dram_bytes"]]


def test_headline_speedup_is_the_papers(table):
    assert headline(table)["speedup_vs_flat"] == pytest.approx(6.7, abs=0.1)
