"""Partial fusion: groupings of the cascade into contiguous fused kernels that respect the
dependency graph, pinned and forbidden by constraints, each kernel with its own tiles."""

import itertools

import networkx as nx
import numpy as np
import pytest

from einsim.einsum import SpecError, op_counts
from einsim.mapper import build_space
from einsim.mapper.constraints import Constraints, constraints_from_dict
from einsim.mapper.space import ALL_PARTITIONS_CUTS, MAX_CUTS
from einsim.simulator import evaluate_batch, load_architecture
from einsim.workloads import cascade

SHAPE = dict(B=1, H=1, E=16, F=16, M=256, P=256)


@pytest.fixture(scope="module")
def arch():
    return load_architecture("fusemax_cloud")


def _kernels_respect_the_graph(built, mapping) -> None:
    """Every Einsum in one kernel; no kernel reads what a later kernel writes (checked on
    the cascade's graph with networkx, not with the mapper's own order)."""
    kernel_of = {e: i for i, k in enumerate(mapping.kernels) for e in k.einsums}
    assert sorted(kernel_of) == sorted(e.output for e in built.einsums)
    graph = built.graph
    for a, b in graph.edges:
        if a in kernel_of and b in kernel_of:
            assert kernel_of[a] <= kernel_of[b], (a, b)
    assert nx.is_directed_acyclic_graph(built.forward_graph)


def _reference_groupings(built, legal_cuts_limit, max_cuts) -> set[tuple[tuple[str, ...], ...]]:
    """Every partition of the Einsums with work, in a topological order of the forward
    graph (networkx), into contiguous groups that no dependency edge (carried ones included)
    crosses backwards; all of them while the legal cuts are few, else those with at most
    `max_cuts` cuts; not the one kernel (fused) nor the one per Einsum (unfused)."""
    counts = op_counts(built, SHAPE)
    position = {e.output: i for i, e in enumerate(built.einsums)}
    topo = nx.lexicographical_topological_sort(
        built.forward_graph, key=lambda n: position.get(n, -1)
    )
    work = [e for e in topo if e in position and counts[e]]

    def crosses_back(groups) -> bool:
        home = {e: i for i, g in enumerate(groups) for e in g}
        return any(a in home and b in home and home[b] < home[a] for a, b in built.graph.edges)

    legal = [c for c in range(1, len(work)) if not crosses_back([work[:c], work[c:]])]
    most = len(legal) if len(legal) <= legal_cuts_limit else max_cuts
    out = set()
    for k in range(1, most + 1):
        for cuts in itertools.combinations(legal, k):
            bounds = (0, *cuts, len(work))
            groups = tuple(tuple(work[a:b]) for a, b in itertools.pairwise(bounds))
            if any(len(g) > 1 for g in groups):
                assert not crosses_back(groups)
                out.add(groups)
    return out


@pytest.mark.parametrize("variant", ["fusemax_1pass", "stable_3pass", "causal"])
def test_partial_groupings_are_the_contiguous_partitions_of_a_topological_order(arch, variant):
    built = cascade(variant)
    space = build_space(built, arch, SHAPE)
    found = set()
    for template in space.templates:
        if not dict(template.structure)["fusion"].startswith("partial"):
            continue
        _kernels_respect_the_graph(built, template.mapping)
        work = tuple(
            tuple(e for e in k.einsums if op_counts(built, SHAPE)[e])
            for k in template.mapping.kernels
        )
        found.add(work)
    expected = _reference_groupings(built, ALL_PARTITIONS_CUTS, MAX_CUTS)
    assert found == expected
    assert any(len(groups) > 2 for groups in found)  # more than one cut


def test_require_fusion_keeps_einsums_together_and_contradictions_are_named(arch):
    built = cascade("fusemax_1pass")
    together = constraints_from_dict({"require_fusion": [["SLN", "SLD"]]})
    space = build_space(built, arch, SHAPE, together)
    labels = {dict(t.structure)["fusion"] for t in space.templates}
    assert "fused" in labels and "unfused" not in labels
    assert any(label.startswith("partial") for label in labels)
    for template in space.templates:
        homes = [
            i for i, k in enumerate(template.mapping.kernels) if {"SLN", "SLD"} & set(k.einsums)
        ]
        assert len(homes) == 1
    with pytest.raises(SpecError, match="both required and forbidden"):
        constraints_from_dict({"require_fusion": [["QK", "AV"]], "forbid_fusion": [["AV", "QK"]]})
    with pytest.raises(SpecError, match=r"require_fusion: unknown Einsum\(s\) XX"):
        build_space(built, arch, SHAPE, constraints_from_dict({"require_fusion": [["QK", "XX"]]}))


def test_each_fused_group_has_its_own_free_tiles(arch):
    built = cascade("fusemax_1pass")
    space = build_space(built, arch, SHAPE, Constraints(fusion="partial"))
    both = [
        t
        for t in space.templates
        if sum(bool([n for n in t.names if n.startswith(f"{k.name}.")]) for k in t.mapping.kernels)
        == 2
    ]
    assert both, "a grouping of two fused kernels searches the tiles of both"
    template = both[0]
    rows = template.seed_rows()
    params = template.params(rows)
    batch = evaluate_batch(built, arch, template.mapping, SHAPE, params)
    assert np.any(batch.valid)
    for kernel in template.mapping.kernels:  # each kernel's factors come from its own names
        assert set(batch.factors[kernel.name]) >= {
            n.split(".", 1)[1] for n in template.names if n.startswith(f"{kernel.name}.")
        }


def test_a_pinned_grouping_is_the_only_one(arch):
    built = cascade("fusemax_1pass")
    groups = [["QK", "LM", "RM", "SLN", "SLD", "PRM"], ["SPD", "RD", "SLNV", "SPNV", "RNV", "AV"]]
    space = build_space(built, arch, SHAPE, constraints_from_dict({"fusion": groups}))
    assert space.templates
    for template in space.templates:
        work = [[e for e in k.einsums if e not in ("BK", "BV")] for k in template.mapping.kernels]
        assert work == groups


def test_forbid_fusion_keeps_two_einsums_apart(arch):
    built = cascade("fusemax_1pass")
    apart = constraints_from_dict({"forbid_fusion": [["QK", "AV"]]})
    space = build_space(built, arch, SHAPE, apart)
    labels = {dict(t.structure)["fusion"] for t in space.templates}
    assert "fused" not in labels and "unfused" in labels
    for template in space.templates:
        for kernel in template.mapping.kernels:
            assert not {"QK", "AV"} <= set(kernel.einsums)


def test_a_grouping_against_the_dependencies_is_refused(arch):
    built = cascade("fusemax_1pass")
    groups = [["SPD", "RD", "SLNV", "SPNV", "RNV", "AV", "QK"], ["LM", "RM", "SLN", "SLD", "PRM"]]
    with pytest.raises(SpecError, match="groups must follow the dependency graph"):
        build_space(built, arch, SHAPE, constraints_from_dict({"fusion": groups}))
    with pytest.raises(SpecError, match="in no group"):
        build_space(built, arch, SHAPE, constraints_from_dict({"fusion": [["QK"]]}))
