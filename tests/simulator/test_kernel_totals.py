"""`kernel_totals` and `combine_kernels`: a mapping costed kernel by kernel, each kernel on
its own rows, then combined row by row, gives `evaluate_batch`'s numbers bit for bit."""

import dataclasses

import numpy as np
import pytest

from einsim import MappingError, attention
from einsim.simulator import evaluate_batch, load_architecture, load_mapping, parameter_names
from einsim.simulator.spatial.cost import combine_kernels, kernel_totals
from einsim.simulator.spatial.mapping import Overlap

SHAPE = dict(B=64, H=12, E=64, F=64, M=4096, P=4096)


def _draw(rng, names, n):
    """Spatial factors 1..300: some rows overflow the array."""
    return {name: rng.integers(1, 301, size=n) for name in names}


@pytest.mark.parametrize("overlap", [Overlap.SERIAL, Overlap.PERFECT])
def test_kernels_costed_apart_combine_to_the_batch(overlap):
    rng = np.random.default_rng(11)
    template = dataclasses.replace(load_mapping("unfused"), kernel_overlap=overlap)
    arch, cascade = load_architecture("flat_cloud"), attention(template.cascade)
    names = parameter_names(template)
    assert len(template.kernels) > 1 and names
    # each kernel costed alone on its own rows (of different counts) ...
    parts, columns = [], {}
    for k, kernel in enumerate(template.kernels):
        alone = dataclasses.replace(template, kernels=(kernel,))
        own = [x for x in names if x.startswith(f"{kernel.name}.")]
        params = _draw(rng, own, 7 + 3 * k)
        (totals,) = kernel_totals(cascade, arch, alone, SHAPE, params)
        parts.append((totals, params, 7 + 3 * k))
    # ... then 40 mappings, each taking one row of every kernel's batch
    picks = [rng.integers(0, n, size=40) for _, _, n in parts]
    for (_, params, _), rows in zip(parts, picks, strict=True):
        columns |= {name: values[rows] for name, values in params.items()}
    combined = combine_kernels(
        arch, [t.take(rows) for (t, _, _), rows in zip(parts, picks, strict=True)], overlap, 40
    )
    batch = evaluate_batch(cascade, arch, template, SHAPE, columns)
    assert not batch.valid.all() and batch.valid.any()  # both kinds of rows are compared
    for field in ("cycles", "latency_s", "energy_pj", "dram_bytes", "valid"):
        assert np.array_equal(getattr(combined, field), getattr(batch, field)), field
    for field in ("energy_by_component_pj", "dram_bytes_by_tensor"):
        ours, theirs = getattr(combined, field), getattr(batch, field)
        assert list(ours) == list(theirs)
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours), field


def test_a_kernel_outside_its_cascade_is_costed_alone():
    """A mapping of only some of the cascade's Einsums is one `evaluate_batch` refuses."""
    template = load_mapping("unfused")
    arch, cascade = load_architecture("flat_cloud"), attention(template.cascade)
    alone = dataclasses.replace(template, kernels=template.kernels[:1])
    (totals,) = kernel_totals(cascade, arch, alone, SHAPE)
    assert totals.name == template.kernels[0].name and totals.valid.shape == (1,)
    with pytest.raises(MappingError, match="are in no kernel"):
        evaluate_batch(cascade, arch, alone, SHAPE)
