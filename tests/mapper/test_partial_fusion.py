"""Partial fusion: groupings of the cascade into contiguous fused kernels that respect the
dependency graph, pinned and forbidden by constraints, each kernel with its own tiles."""

import networkx as nx
import numpy as np
import pytest

from einsim.einsum import SpecError, op_counts
from einsim.mapper import build_space
from einsim.mapper.constraints import Constraints, constraints_from_dict
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


@pytest.mark.parametrize("variant", ["fusemax_1pass", "stable_3pass"])
def test_partial_groupings_are_every_single_cut_of_a_topological_order(arch, variant):
    built = cascade(variant)
    space = build_space(built, arch, SHAPE)
    partial = [t for t in space.templates if dict(t.structure)["fusion"].startswith("partial")]
    assert partial
    cuts = set()
    for template in partial:
        kernels = template.mapping.kernels
        assert len(kernels) == 2
        _kernels_respect_the_graph(built, template.mapping)
        cuts.add(dict(template.structure)["fusion"])
    # n Einsums with work in a chain of dependencies: n - 1 cuts (the one with two
    # single-Einsum groups is `unfused` itself when n = 2)
    counts = op_counts(built, SHAPE)
    work = [e for e in built.order if counts[e]]
    assert 1 <= len(cuts) <= len(work) - 1


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
