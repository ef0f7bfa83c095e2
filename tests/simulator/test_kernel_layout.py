"""The spatial model keeps what it derives from a kernel's structure (`cost._KernelLayout`)
across batches, by the identities of the kernel, architecture, sizes and cascade and by
which loop factors the batch sets. Whatever came before, a batch costs exactly what the same
batch costs on fresh copies of those objects (equal values that no table has seen)."""

import copy
import dataclasses

import numpy as np
import pytest

from einsim import attention
from einsim.simulator import evaluate_batch, load_architecture, load_mapping

BERT_4K = dict(B=64, H=12, E=64, F=64, M=4096, P=4096)
BERT_64K = dict(BERT_4K, M=65536, P=65536)


def _fresh(cascade, arch, template, shape, params):
    """`evaluate_batch` on deep copies: new objects, so no kept layout applies."""
    return evaluate_batch(
        copy.deepcopy(cascade), copy.deepcopy(arch), copy.deepcopy(template), dict(shape), params
    )


def _assert_same(got, want):
    for name in ("cycles", "energy_pj", "dram_bytes", "valid"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.factors.keys() == want.factors.keys()
    for kernel, factors in want.factors.items():
        for key, values in factors.items():
            np.testing.assert_array_equal(got.factors[kernel][key], values, err_msg=key)
    assert [got.reasons(i) for i in range(got.n)] == [want.reasons(i) for i in range(want.n)]


def _smaller_buffer(arch):
    """`arch` with its on-chip buffer (level 1) a quarter of its capacity."""
    levels = list(arch.levels)
    levels[1] = dataclasses.replace(levels[1], capacity_bytes=levels[1].capacity_bytes // 4)
    return dataclasses.replace(arch, levels=tuple(levels))


@pytest.mark.parametrize(("mapping", "arch_name"), [("fusemax", "fusemax_cloud")])
def test_a_kernel_costs_alike_whatever_batches_came_before(mapping, arch_name):
    rng = np.random.default_rng(3)
    template, arch = load_mapping(mapping), load_architecture(arch_name)
    cascade = attention(template.cascade)
    small = _smaller_buffer(arch)
    dram_p = {"attention.DRAM.P": rng.integers(1, 17, 12)}
    gb_p = {
        "attention.GB.P": rng.integers(1, 41, 12),
        "attention.spatial.P": rng.integers(1, 300, 12),
    }
    # The same template object each time: a loop given, then taken by `rest` or `fit`, then
    # given again; another architecture object and other sizes in between.
    batches = [
        (arch, BERT_4K, None),
        (arch, BERT_4K, dram_p),
        (arch, BERT_4K, gb_p),
        (small, BERT_4K, dram_p),
        (arch, BERT_64K, dram_p),
        (arch, BERT_4K, None),
        (small, BERT_4K, None),
        (arch, BERT_64K, gb_p),
    ]
    for hardware, shape, params in batches:
        got = evaluate_batch(cascade, hardware, template, shape, params)
        _assert_same(got, _fresh(cascade, hardware, template, shape, params))


def test_the_smaller_buffer_changes_what_fits():
    """The architectures above differ where a layout could leak: their capacity checks."""
    template, arch = load_mapping("fusemax"), load_architecture("fusemax_cloud")
    cascade = attention(template.cascade)
    params = {"attention.GB.P": np.array([1, 4, 16, 64])}
    big = evaluate_batch(cascade, arch, template, BERT_64K, params)
    small = evaluate_batch(cascade, _smaller_buffer(arch), template, BERT_64K, params)
    assert big.valid.tolist() != small.valid.tolist() or not np.array_equal(
        big.cycles, small.cycles
    )
