"""mapping_to_dict is the inverse of mapping_from_dict: every bundled mapping survives
dict -> YAML -> load unchanged, and so does a searched one."""

from importlib import resources

import pytest

from einsim.mapper import search
from einsim.simulator import (
    evaluate,
    load_architecture,
    load_mapping,
    mapping_from_dict,
    mapping_to_dict,
    mapping_to_yaml,
)
from einsim.workloads import cascade

BUNDLED = sorted(
    p.name[: -len(".yaml")]
    for p in resources.files("einsim.simulator").joinpath("mappings").iterdir()
    if p.name.endswith(".yaml")
)


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_mapping_round_trips_through_dict_and_yaml(name, tmp_path):
    mapping = load_mapping(name)
    assert mapping_from_dict(mapping_to_dict(mapping)) == mapping
    path = tmp_path / f"{name}.yaml"
    path.write_text(mapping_to_yaml(mapping, header=f"copy of {name}\nsecond line"))
    assert path.read_text().startswith(f"# copy of {name}\n# second line\n")
    assert load_mapping(str(path)) == mapping


def test_a_searched_mapping_round_trips_and_evaluates_the_same(tmp_path):
    arch = load_architecture("fusemax_cloud", {"units.2d.rows": 8, "units.2d.cols": 8})
    shape = dict(B=1, H=1, E=8, F=8, M=64, P=64)
    chain = cascade("fusemax_1pass")
    result = search(chain, arch, shape, "latency", "greedy", budget=3000)
    assert mapping_from_dict(mapping_to_dict(result.mapping)) == result.mapping
    path = tmp_path / "best.yaml"
    path.write_text(mapping_to_yaml(result.mapping))
    again = evaluate(chain, arch, load_mapping(str(path)), shape)
    assert again.latency_s == result.report.latency_s
    assert again.energy_pj == result.report.energy_pj
