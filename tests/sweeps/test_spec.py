"""Sweep specs: the schema's errors are one line naming the key; points and their ids."""

import pytest
import yaml

from einsim import SpecError
from einsim.sweeps import load_spec, parse_spec, point_id
from einsim.sweeps.spec import SweepSpec


def _error(spec) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_small_spec_enumerates_the_product(small):
    spec = parse_spec(small)
    points = list(spec.points())
    assert spec.size == len(points) == 12
    assert len({point_id(p) for p in points}) == 12
    # the batchable axis is innermost: a template's points are neighbours
    assert [p["mapping.attention.GB.P"] for p in points[:3]] == [1, 2, 4]
    assert spec.keys == (
        "model",
        "arch",
        "mapping",
        "seq_len",
        "arch.units.2d.cols",
        "mapping.attention.GB.P",
    )


def test_point_id_is_stable_and_order_free():
    assert point_id({"a": 1, "b": "x"}) == point_id({"b": "x", "a": 1})
    assert point_id({"a": 1}) != point_id({"a": 2})
    assert point_id({"seq_len": 1024, "arch": "fusemax_cloud"}) == "23ec1fef07ec44a6"


def test_ranges_zip_and_cases():
    spec = load_spec("fusemax_pareto")
    assert spec.size == 24  # cases: four models x six array sizes
    rows = spec.values_of("arch.units.2d.rows")
    assert rows == [16, 32, 64, 128, 256, 512] * 4
    assert spec.values_of("variant.M0") == rows  # the key tile is the array's side
    assert spec.values_of("label")[::6] == ["BERT", "TrXL", "T5", "XLM"]
    zipped = parse_spec(
        {
            **_base(),
            "axes": {
                "zip": {
                    "arch.units.2d.rows": {"from": 16, "to": 64, "times": 2},
                    "arch.units.2d.cols": [16, 32, 64],
                }
            },
        }
    )
    assert zipped.values_of("arch.units.2d.rows") == [16, 32, 64]
    step = parse_spec({**_base(), "axes": {"seq_len": {"from": 1024, "to": 4096, "step": 1024}}})
    assert step.values_of("seq_len") == [1024, 2048, 3072, 4096]


def test_digest_ignores_name_but_not_values(small):
    a = parse_spec(small)
    b = parse_spec({**small, "name": "other", "description": "x"})
    c = parse_spec({**small, "axes": {**small["axes"], "seq_len": [1024]}})
    assert a.digest == b.digest != c.digest


def _base():
    return {"fixed": {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"}}


@pytest.mark.parametrize(
    ("axes", "names"),
    [
        ({"seqlen": [1]}, "'seqlen'"),  # unknown axis
        ({"arch.units.2d.row": [64]}, "'arch.units.2d.row'"),  # unknown override path
        ({"mapping.attention.GB.Q": [1]}, "'mapping.attention.GB.Q'"),  # unknown parameter
        ({"options.exp_free": [True]}, "'options.exp_free'"),
        ({"seq_len": []}, "seq_len: empty axis"),  # empty axis
        ({"seq_len": {"from": 8, "to": 4, "step": 1}}, "seq_len: empty axis"),
        ({"cases": []}, "empty axis"),
        ({"seq_len": [1024, "long"]}, "seq_len[1]: seq_len must be a positive integer"),
        ({"seq_len": 1024}, "seq_len: expected a list"),  # bad type of the axis itself
        ({"mapping.attention.GB.P": [0]}, "must be a positive integer"),
        ({"algorithm": ["fastest"]}, "algorithm must be one of"),
        ({"zip": {"seq_len": [1, 2], "batch": [1]}}, "equal lengths, got seq_len 2, batch 1"),
        ({"model": ["bert_base"]}, "key 'model' is set twice"),
    ],
)
def test_schema_errors_name_the_key(axes, names):
    assert names in _error({**_base(), "axes": axes})


def test_top_level_errors():
    assert "unknown key 'axis'" in _error({**_base(), "axis": {}})
    assert "no 'arch' given" in _error({"fixed": {"model": "bert_base", "mapping": "fusemax"}})
    assert "unknown architecture 'nope'" in _error(
        {"fixed": {"model": "bert_base", "mapping": "fusemax", "arch": "nope"}}
    )


def test_bad_arch_and_mapping_name_the_file_and_key():
    fixed = {"model": "bert_base", "mapping": "fusemax", "arch": "nope"}
    assert _error({"fixed": fixed}).startswith("sweep spec: arch: unknown architecture 'nope'")
    # a name too long for a file system path is an unknown architecture, not an OSError
    long = _error({"fixed": {**fixed, "arch": "x" * 5000}})
    assert long.startswith("sweep spec: arch: unknown architecture 'xxx")
    fixed = {**fixed, "arch": "fusemax_cloud", "mapping": "nope"}
    assert _error({"fixed": fixed}).startswith("sweep spec: mapping: ")


def test_nested_keys_must_be_names():
    fixed = {"model": "bert_base", "mapping": "fusemax", "arch": "fusemax_cloud"}
    axes = {"arch.levels.GB.capacity_bytes": [{5: 1, "a": 2}]}
    message = _error({"fixed": fixed, "axes": axes})
    assert "arch.levels.GB.capacity_bytes has a key that is not a name: 5" in message


def test_load_spec_sources(tmp_path, small):
    path = tmp_path / "s.yaml"
    path.write_text(
        "fixed: {model: bert_base, arch: fusemax_cloud, mapping: fusemax}\n"
        "axes: {seq_len: [1024]}\n"
    )
    assert load_spec(path).size == 1
    assert isinstance(load_spec(small), SweepSpec)
    path.write_text("axes: [\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def _searched_spec(**how):
    return {
        "fixed": {"model": "bert_base", "seq_len": 4096, "arch": "fusemax_cloud"},
        "axes": {"mapping": [{"search": "random", "budget": 40, **how}]},
    }


def test_searched_mapping_without_a_mapper_is_refused(monkeypatch):
    from einsim import mapper

    monkeypatch.delattr(mapper, "search", raising=False)
    message = _error(_searched_spec())
    assert "mapper (einsim.mapper.search) is not available" in message
    assert "axes.mapping[0]" in message


@pytest.mark.skipif(
    not hasattr(__import__("einsim.mapper").mapper, "search"), reason="no mapper yet"
)
def test_searched_mapping_with_the_mapper():
    from einsim.sweeps import sweep

    assert "unknown search strategy 'psychic'" in _error(
        {**_searched_spec(), "axes": {"mapping": [{"search": "psychic", "budget": 4}]}}
    )
    assert "optionally objective, seed" in _error(_searched_spec(depth=3))
    frame = sweep(_searched_spec(objective="energy"), progress=False).to_pandas()
    assert frame.valid.all() and frame.error.isna().all() and frame.factors.iloc[0]


def test_point_by_index_matches_the_enumeration():
    spec = load_spec("fusemax_pareto")
    assert [spec.point(i) for i in range(spec.size)] == list(spec.points())
    with pytest.raises(IndexError):
        spec.point(spec.size)


def test_relative_yaml_paths_resolve_against_the_spec_file(tmp_path, monkeypatch):
    """A spec naming `my_arch.yaml` beside it works from any working directory."""
    from einsim.simulator.spec import load_yaml

    folder = tmp_path / "study"
    folder.mkdir()
    data, _ = load_yaml("fusemax_cloud", "architecture", "architectures")
    (folder / "my_arch.yaml").write_text(yaml.safe_dump(data))
    (folder / "spec.yaml").write_text(
        yaml.safe_dump(
            {
                "fixed": {"variant": "fusemax", "mapping": "fusemax", "seq_len": 1024},
                "axes": {"arch": ["my_arch.yaml", "fusemax_cloud"]},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    spec = load_spec(folder / "spec.yaml")
    assert spec.values_of("arch") == [str(folder / "my_arch.yaml"), "fusemax_cloud"]
