"""A filtered Einsum's tile share is counted over the ranks its filter reads
(`cost._filter_ranks`): along any other rank the filter is constant, so cutting that rank
changes neither which tiles are empty nor the share. Checked against a brute-force count of
tiles, and against the model counting over every iterated rank (the rule before)."""

import itertools

import numpy as np
import pytest

import einsim
from einsim import parse_cascade
from einsim.mapper.space import build_space
from einsim.simulator import load_architecture
from einsim.simulator.spatial import cost


def _brute_share(keep: np.ndarray, tile: tuple[int, ...]) -> float:
    """Non-empty tiles / tiles of a boolean mask over a box, cut into tiles of `tile`."""
    tiles = nonempty = 0
    for start in itertools.product(
        *(range(0, n, t) for n, t in zip(keep.shape, tile, strict=True))
    ):
        box = tuple(slice(s, s + t) for s, t in zip(start, tile, strict=True))
        tiles += 1
        nonempty += bool(keep[box].any())
    return nonempty / tiles


def test_a_rank_the_filter_does_not_read_leaves_the_share_unchanged():
    """Brute force over (e, m, p) of the sliding window p - W < m <= p: cutting E, however
    finely, gives the share of the (m, p) tiles alone."""
    _, m, p = np.meshgrid(np.arange(6), np.arange(20), np.arange(20), indexing="ij")
    keep = (m <= p) & (p - m < 5)
    for tm, tp in ((1, 1), (3, 4), (7, 20), (20, 3)):
        alone = _brute_share(keep[0], (tm, tp))
        assert 0.0 < alone <= 1.0
        for te in (1, 4, 6):
            assert _brute_share(keep, (te, tm, tp)) == alone


def test_the_ranks_a_filter_reads():
    cascade = parse_cascade(
        "inputs: Q[e,p], K[e,m], S[m,p]\n"
        "partition: M -> M1, M0\n"
        "sizes: M0=4, W=8\n"
        "BK[e,m1,m0] = K[e,m1*M0+m0]\n"
        "QK[m1,m0,p] = Q[e,p] * BK[e,m1,m0] where m1 * M0 + m0 <= p\n"
        "QW[e,p] = Q[e,p] * 2 where p > W\n"
        "SK[m,p] = Q[e,p] * K[e,m] where S[m,p] > 0\n"
        "SW[e,p] = Q[e,p] * 3 where p > W and S[e,p] > 0"
    )
    got = {e: cost._filter_ranks(cascade, e) for e in ("QK", "QW")}
    assert got == {"QK": {"M1", "M0", "P"}, "QW": {"P"}}
    # a filter that reads a tensor: the ranks its static part reads (its data conjuncts,
    # priced by a density, empty no tile: `occupancy.emptiness_filter`), and the
    # partitioned ranks (M); E, read only by the data conjunct, is not among them
    assert cost._filter_ranks(cascade, "SK") == {"M"}
    assert cost._filter_ranks(cascade, "SW") == {"P"}
    # a partitioned rank stays, read or not: a partial last tile has points none keeps
    blocked = parse_cascade(
        "inputs: Q[e,p], K[e,m]\npartition: M -> M1, M0\nsizes: M0=4, W=8\n"
        "BK[e,m1,m0] = K[e,m1*M0+m0]\nQB[m1,m0,p] = Q[e,p] * BK[e,m1,m0] where p > W"
    )
    assert cost._filter_ranks(blocked, "QB") == {"M1", "M0", "P"}


def _costs(variant: str, shape: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cycles and energy of 64 rows of each of the first 40 templates of a space."""
    built = einsim.attention(variant)
    arch = load_architecture("fusemax_cloud")
    space = build_space(built, arch, shape)
    rng = np.random.default_rng(0)
    out = []
    for t in range(min(40, len(space.templates))):
        template = space.templates[t]
        if template.absent or not template.size:
            continue
        rows = np.unique(rng.integers(0, template.size, 64))
        batch = cost.evaluate_batch(
            built, arch, template.mapping, shape, template.params(rows), None
        )
        out.append((np.broadcast_to(batch.cycles, rows.shape), batch.energy_pj))
    return out


@pytest.mark.parametrize(
    ("variant", "shape"),
    [
        ("razor_attention", dict(B=2, H=12, E=64, F=64, M=2048, P=2048)),
        ("sliding_window", dict(B=2, H=4, E=64, F=64, M=1024, P=1024)),
        ("razor_attention", dict(B=2, H=12, E=64, F=64, M=1000, P=1000)),  # a partial M0 tile
        ("moba", dict(B=2, H=4, E=64, F=64, M=2048, P=2048)),  # a data-dependent selection
    ],
)
def test_the_model_prices_as_when_every_rank_is_counted(monkeypatch, variant, shape):
    """Every row's cycles and energy are those of the model whose shares count tiles over
    every iterated rank of the Einsum (tables started afresh both times)."""

    def fresh():
        cost._SHARES.clear()
        cost._SHARES_HELD[0] = 0
        cost._members.cache_clear()

    fresh()
    now = _costs(variant, shape)
    monkeypatch.setattr(
        cost, "_filter_ranks", lambda cascade, name: cost._iterated(cascade)[name][1]
    )
    fresh()
    before = _costs(variant, shape)
    monkeypatch.undo()
    fresh()
    _assert_same(now, before)


def _assert_same(now, before) -> None:
    assert len(now) == len(before) > 10
    for (cycles, energy), (cycles0, energy0) in zip(now, before, strict=True):
        np.testing.assert_array_equal(cycles, cycles0)
        np.testing.assert_array_equal(energy, energy0)


@pytest.mark.parametrize(
    ("variant", "shape"),
    [
        ("hip", dict(B=2, H=4, E=64, F=64, M=2048, P=2048)),
        ("flexprefill", dict(B=2, H=4, E=64, F=64, M=1024, P=1024)),
        ("moba", dict(B=2, H=4, E=64, F=64, M=2048, P=2048)),
    ],
)
def test_einsums_of_one_static_part_share_one_share(monkeypatch, variant, shape):
    """Data-dependent filters that differ only in their data conjuncts (HiP's top-k rounds)
    share one item of a share plan (`occupancy.emptiness_filter`): every row's cycles and
    energy are those of the model that keys each share by its whole filter and counts it
    over every rank that filter reads (tables started afresh both times)."""
    from einsim.einsum.ir import rank_of, variables
    from einsim.einsum.occupancy import emptiness_filter, filter_token

    def fresh():
        cost._SHARES.clear()
        cost._SHARES_HELD[0] = 0
        cost._members.cache_clear()
        getattr(cost._filter_ranks, "cache_clear", lambda: None)()

    fresh()
    now = _costs(variant, shape)

    def whole_filter_ranks(cascade, name):
        read = {rank_of(v) for v in variables(cascade.einsum(name).where)}
        ranks = cost._iterated(cascade)[name][1]
        return frozenset(r for r in ranks if r in cascade.partition_of or r in read)

    monkeypatch.setattr(cost, "emptiness_filter", lambda where: where)
    monkeypatch.setattr(cost, "_filter_ranks", whole_filter_ranks)
    fresh()
    before = _costs(variant, shape)
    monkeypatch.undo()
    fresh()
    _assert_same(now, before)
    # the merge happens: fewer distinct emptiness filters than filters
    built = einsim.attention(variant)
    cascade = getattr(built, "cascade", built)
    wheres = [e.where for e in cascade.einsums if e.where is not None]
    merged = {filter_token(emptiness_filter(w)) for w in wheres}
    assert len(merged) < len({filter_token(w) for w in wheres})
