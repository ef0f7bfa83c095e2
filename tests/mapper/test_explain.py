"""`SearchResult.explain`'s runners-up come from the templates costed, labelled from their
recipes: the same lines as labelling every template of the space, without building them."""

import math

import numpy as np
import pandas as pd
import pytest

import einsim
from einsim.mapper import search
from einsim.mapper.result import _runners_up
from einsim.simulator import load_architecture


def _reference(result) -> list[str]:
    """The runners-up from every template of the space, each built (the definition)."""
    table = result.candidates[result.candidates.valid]
    space, best = result.space, result.best_value
    mine_of = dict(space.templates[result.best_template].structure)
    labels = pd.DataFrame([dict(t.structure) for t in space.templates])
    per_template = table.groupby("template").objective.min()
    out = ["Why: the best alternative for each structural choice it made:"]
    for dim in ("fusion", "compute", "order", "keep"):
        if dim not in labels:
            continue
        others = per_template[labels.loc[per_template.index, dim].to_numpy() != mine_of.get(dim)]
        if others.empty:
            out.append(f"  {dim}: no alternative was costed.")
            continue
        t = int(others.idxmin())
        ratio = float(others.min()) / best if best else math.inf
        out.append(f"  {dim}: {t} {ratio:.3g}")
    return out


@pytest.mark.parametrize("variant", ["fusemax_1pass", "causal", "online_2pass"])
def test_runners_up_match_the_labels_of_every_template(variant):
    arch = load_architecture("fusemax_cloud", {"units.2d.rows": 16, "units.2d.cols": 16})
    shape = dict(B=1, H=4, E=32, F=32, M=512, P=512)
    result = search(einsim.attention(variant), arch, shape, budget=20_000)
    assert len(result.space.templates) > result.space.templates.built  # some never built
    ours = _runners_up(result)
    reference = _reference(result)
    assert len(ours) == len(reference) and ours[0] == reference[0]
    for line, ref in zip(ours[1:], reference[1:], strict=True):
        dim = ref.split(":")[0].strip()
        assert line.strip().startswith(f"{dim}:")
        if "no alternative" in ref:
            assert "no alternative" in line
        else:
            t, ratio = ref.split(": ")[1].split()
            assert line.endswith(f"is {ratio}x worse ({result.objective}).")
            label = dict(result.space.templates[int(t)].structure).get(dim)
            assert dim == "compute" or str(label) in line
    assert np.isfinite(result.best_value)
