"""Hostile YAML specs and command-line values: every refusal is a one-line SpecError naming
the file and the key (or the line and column) and what was expected; nonsense numbers
(nan, inf, 1e-300, fractions of a PE) never reach the cost model. A hypothesis fuzz
replaces values at random key paths of every bundled spec kind."""

import copy
import re
import warnings
from importlib import resources

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einsim import SpecError
from einsim.cli import _parse_params, _parse_shape, main
from einsim.mapper.constraints import constraints_from_dict
from einsim.simulator.gpu import gpu_architecture_from_dict
from einsim.simulator.spatial.architecture import architecture_from_dict
from einsim.simulator.spatial.mapping import mapping_from_dict
from einsim.simulator.spec import apply_overrides, parse_yaml
from einsim.sweeps.spec import parse_spec
from einsim.workloads import attention, cascade


def _bundled(folder: str, name: str) -> dict:
    root = resources.files("einsim.simulator").joinpath(folder, f"{name}.yaml")
    return yaml.safe_load(root.read_text())


ARCH = _bundled("architectures", "fusemax_cloud")
GPU = _bundled("gpus", "h100_sxm")
MAPPING = _bundled("mappings", "fusemax")
CONSTRAINTS = {"fusion": "fused", "binding": {"QK": "2d"}, "factors": {"GB.P": 4}}


def _set(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _refusal(load, data, origin: str) -> str:
    """Load `data` dumped to YAML text through parse_yaml, as a file would be."""
    text = yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(SpecError) as info:
        load(parse_yaml(text, origin), origin)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(origin), message
    return message


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("units", "2d", "rows"), 0.5, "units.2d.rows: expected an integer, got 0.5"),
        (("units", "2d", "rows"), 256.5, "units.2d.rows: expected an integer, got 256.5"),
        (("units", "2d", "rows"), 1e30, "units.2d.rows: expected an integer <= 65536"),
        (("units", "2d", "rows"), 10**9, "units.2d.rows: expected an integer <= 65536"),
        (("units", "2d", "rows"), 0, "units.2d.rows: expected a positive integer"),
        (("units", "1d", "ops", "div", "cycles"), float("inf"), "div.cycles: expected a finite"),
        (("units", "1d", "ops", "div", "energy_pj"), float("nan"), "energy_pj: expected a finite"),
        (("units", "1d", "ops", "div", "cycles"), 1e-300, "div.cycles: expected a number >="),
        (("clock_hz",), ".nan", "clock_hz: expected a finite number"),
        (("clock_hz",), "1k", "clock_hz: expected a number, got '1k'"),
        (("levels", 1, "capacity_bytes"), -1, "capacity_bytes: expected a positive number"),
        (("levels", 1, "name"), "DRAM", "levels[1].name: level 'DRAM' is named twice"),
        (("word_bytes",), True, "word_bytes: expected an integer, got True"),
        (("units",), 42, "units: expected a mapping"),
        (("levels",), {"a": 1}, "levels: expected a non-empty list"),
    ],
)
def test_architecture_nonsense_is_refused_with_the_key(path, value, message):
    assert message in _refusal(architecture_from_dict, _set(ARCH, path, value), "arch.yaml")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("gpu", "tensor_flops_per_clock_per_sm", "bf16"), 1e-300, "bf16: expected a number >="),
        (("gpu", "tensor_flops_per_clock_per_sm", "fp16"), float("nan"), "fp16: expected a finite"),
        (("gpu", "hbm_bytes_per_s"), float("inf"), "hbm_bytes_per_s: expected a finite"),
        (("gpu", "sms"), 132.5, "gpu.sms: expected an integer, got 132.5"),
        (("gpu", "sms"), 10**9, "gpu.sms: expected an integer <= 4096"),
        (("gpu", "clock_hz"), 1e-300, "gpu.clock_hz: expected a number >= 1000"),
        (("gpu", "smem_per_block_bytes"), 2**31, "exceeds smem_per_sm_bytes"),
        (("gpu", "cuda_core_flops_per_clock_per_sm"), 5, "the fp32 rate is required"),
    ],
)
def test_gpu_nonsense_is_refused_with_the_key(path, value, message):
    assert message in _refusal(gpu_architecture_from_dict, _set(GPU, path, value), "gpu.yaml")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("kernels", 0, "binding"), 5, "kernels[0].binding: expected a mapping, got int"),
        (("kernels", 0, "loops"), 42, "kernels[0].loops: expected a list, got int"),
        (("kernels", 0, "spatial"), 42, "kernels[0].spatial: expected a mapping, got int"),
        (("kernels", 0, "keep"), "GB", "kernels[0].keep: expected a mapping, got str"),
        (("kernels", 0, "stages"), 7, "kernels[0].stages: expected a list, got int"),
        (("kernels", 0, "loops", 0, "factor"), 2**40, "loops[0].factor: expected an integer <="),
        (("kernels", 0, "loops", 0, "factor"), 0.5, "loops[0].factor: a loop factor is"),
        (("kernels", 0, "spill_fraction"), 2.0, "spill_fraction: expected at most 1"),
        (("kernels", 0, "chained_ops"), [["sub", "magic"]], "'magic' is not one of"),
        (("cascade",), "no_such_cascade", "cascade: unknown cascade 'no_such_cascade'"),
        (("kernel_overlap",), "magic", "kernel_overlap: 'magic' is not one of serial, perfect"),
    ],
)
def test_mapping_nonsense_is_refused_with_the_key(path, value, message):
    assert message in _refusal(mapping_from_dict, _set(MAPPING, path, value), "map.yaml")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("factors", "GB.P"), 2**40, "factors.GB.P: expected an integer <= 2147483647"),
        (("factors", "GB.P"), 0.5, "factors.GB.P: expected a positive integer"),
        (("fusion",), "magic", "fusion: 'magic' is not one of fused, unfused"),
        (("binding",), 5, "binding: expected a mapping"),
        (("chained_ops",), [["exp", "magic"]], "'magic' is not one of"),
    ],
)
def test_constraints_nonsense_is_refused_with_the_key(path, value, message):
    assert message in _refusal(constraints_from_dict, _set(CONSTRAINTS, path, value), "c.yaml")


# ------------------------------------------------------------------------ YAML limits

BOMB = 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)
)


def test_an_alias_bomb_is_refused_before_it_expands():
    assert len(BOMB) < 2400
    with pytest.raises(SpecError, match=r"bomb.yaml: line \d+, column \d+: the YAML expands"):
        parse_yaml(BOMB, "bomb.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: " + "[" * 100 + "]" * 100, "nested deeper than 32"),
        ("a: &a [*a]", "refers to a node that contains it"),
        (
            "".join(f"k{i}: &x{i} 1\n" for i in range(80))
            + "".join(f"v{i}: *x{i}\n" for i in range(80)),
            "more than 64 YAML aliases",
        ),
        ("a: 1\n" + "#" * 40000, "at most 32768"),
        ("a: \x03", "line 1, column 4: invalid YAML"),
        ("a: !!python/object:os.system x", "could not determine a constructor"),
        ("- 1\n- 2", "expected a mapping at the top level"),
    ],
)
def test_yaml_limits_and_unsafe_tags(text, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_yaml(text, "x.yaml")


def test_every_bundled_spec_is_within_the_yaml_limits():
    for folder, load in (
        ("architectures", architecture_from_dict),
        ("gpus", gpu_architecture_from_dict),
        ("mappings", mapping_from_dict),
    ):
        root = resources.files("einsim.simulator").joinpath(folder)
        for path in root.iterdir():
            if path.name.endswith(".yaml"):
                load(parse_yaml(path.read_text(), path.name), path.name)


# ---------------------------------------------------------------- command-line values


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (("M0=nan",), "--param M0: expected a finite number"),
        (("M0=inf",), "--param M0: expected a finite number"),
        (("M0=4", "M0=8"), "--param M0: given twice"),
        (("=4",), "expected KEY=VALUE"),
        (("M0=" + "9" * 50,), "at most 40 digits"),
    ],
)
def test_param_values_are_checked(pairs, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        _parse_params(pairs)


def test_param_values_keep_their_types():
    assert _parse_params(("M0=64", "b=0.5", "form=online_2pass", "causal=1")) == {
        "M0": 64,
        "b": 0.5,
        "form": "online_2pass",
        "causal": 1,
    }


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("M=1099511627776", "--shape M: expected an integer <= 2147483647"),
        ("M=1k", "--shape M=1k: expected an integer size"),
        ("M=2^40", "--shape M=2^40: expected an integer size"),
        ("M=0", "--shape M: expected a positive integer"),
        ("M=1e3", "--shape M=1000.0: expected an integer size"),
    ],
)
def test_shape_values_are_bounded_integers(shape, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        _parse_shape(shape)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"TOPK": 10**30}, "TOPK: expected an integer <= 64"),
        ({"TOPK": 100000}, "TOPK: expected an integer <= 64"),
        ({"TOPK": 1e30}, "TOPK: expected at most 1e+06, got 1e+30"),
        ({"M0": 2**40}, "M0: expected an integer <= 2147483647"),
    ],
)
def test_variant_parameters_are_bounded_before_anything_is_built(params, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        attention("block_topk", **params)


def test_the_resolved_shape_is_bounded():
    with pytest.raises(SpecError, match=re.escape("shape: M: expected an integer <= 2147483647")):
        cascade("fusemax").evaluate({}, {"M": 2**40, "P": 4, "E": 2, "F": 2})


def test_cli_refuses_nonsense_with_one_line_and_status_2():
    runner = CliRunner()
    cases = [
        ["show", "block_topk", "--param", "TOPK=1e30"],
        ["show", "block_topk", "--param", "TOPK=100000"],
        [
            "evaluate", "--variant", "fusemax", "--arch", "fusemax_cloud", "--mapping",
            "fusemax", "--shape", "B=1,H=1,E=64,F=64,M=1099511627776,P=64",
        ],
        [
            "evaluate", "--variant", "fusemax", "--arch", "fusemax_cloud", "--mapping",
            "fusemax", "--shape", "B=1,H=1,E=64,F=64,M=256,P=64", "--set", "units.2d.rows=0.5",
        ],
    ]  # fmt: skip
    for args in cases:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_overrides_are_checked_by_the_spec_they_change():
    data = apply_overrides(ARCH, {"units.2d.ops.mac.cycles": "inf"}, "arch")
    with pytest.raises(SpecError, match=r"units\.2d\.ops\.mac\.cycles: expected a finite number"):
        architecture_from_dict(data, "arch")


# ------------------------------------------------------------------------ the fuzz

VALUES = [
    0, -1, 0.5, 256.5, 1e30, 1e-300, 10**9, 10**20, 2**40, float("nan"), float("inf"), "1k",
    "", None, True, [], {}, [1, 2], {"a": 1}, "GB", 42, "rest", "2d", "magic", [["x"]], "M",
]  # fmt: skip
SWEEP = resources.files("einsim.sweeps").joinpath("examples", "fusemax_pareto.yaml").read_text()
KINDS = {
    "architecture": (yaml.safe_dump(ARCH), architecture_from_dict),
    "gpu": (yaml.safe_dump(GPU), gpu_architecture_from_dict),
    "mapping": (yaml.safe_dump(MAPPING), mapping_from_dict),
    "constraints": (yaml.safe_dump(CONSTRAINTS), constraints_from_dict),
    "sweep": (SWEEP, parse_spec),
}
# The file, then where: a line and column, a key path (`units.2d.rows:`), or a key named
# in quotes (`no 'arch' given`, `unknown key 'x'`).
KEYED = re.compile(
    r"^spec\.yaml(: line \d+, column \d+:|: [\w\[\]\.\-/ ]+?[:;]|\.[\w\[\]\.\-/]+:"
    r"|: [^']*'[^']+'|: expected .*at the top level|: the YAML has)"
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@st.composite
def mutated_specs(draw):
    kind = draw(st.sampled_from(sorted(KINDS)))
    text, _ = KINDS[kind]
    if draw(st.booleans()):  # a value replaced, a key dropped or added at a random path
        data = yaml.safe_load(text)
        for _ in range(draw(st.integers(1, 3))):
            paths = [p for p in _paths(data) if p]
            if not paths:  # an earlier edit emptied the document
                break
            path = draw(st.sampled_from(paths))
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.integers(0, 2))
            if action == 0 or not isinstance(parent, dict):
                # a copy: a later edit must not change the shared VALUES
                parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(VALUES)))
            elif action == 1:
                del parent[path[-1]]
            else:
                parent[draw(st.sampled_from(["bogus", "rows", "name", 5]))] = 1
        text = yaml.safe_dump(data, sort_keys=False)
    else:  # a text edit
        pos = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["&a ", "*a", "[", "]", "{", ":", "- ", "\n  ", ".nan"]))
        text = text[:pos] + edit * draw(st.sampled_from([1, 2, 40])) + text[pos:]
    return kind, text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_fuzzed_specs_raise_nothing_but_spec_errors_naming_a_key(case):
    kind, text = case
    _, load = KINDS[kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # merged duplicate sweep values warn
            load(parse_yaml(text, "spec.yaml"), "spec.yaml")
    except SpecError as error:  # only SpecError: any other exception fails the test
        first = str(error).splitlines()[0]
        assert first.startswith("spec.yaml"), first
        assert KEYED.match(first) or _names_a_key(first, text), first


def _names_a_key(message: str, text: str) -> bool:
    """Whether the message names one of the document's keys (`fixed must be a mapping`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    keys = {k for path in _paths(data) for k in path if isinstance(k, str) and len(k) > 1}
    return any(re.search(rf"\b{re.escape(k)}\b", message[len("spec.yaml") :]) for k in keys)


def test_constraints_errors_read_file_colon_key():
    cases = {
        "c.yaml: padded: expected true or false": {"padded": 3},
        "c.yaml: binding.QK: expected a unit name": {"binding": {"QK": 5}},
        "c.yaml: Q both kept and bypassed at GB": {"keep": {"GB": "Q"}, "bypass": {"GB": "Q"}},
    }
    for start, data in cases.items():
        with pytest.raises(SpecError) as info:
            constraints_from_dict(data, "c.yaml")
        assert str(info.value).startswith(start), str(info.value)


@pytest.mark.parametrize("where", ["fixed", "axis", "case"])
def test_a_sweep_value_beyond_64_bits_is_refused_with_the_key(where):
    """Found by benchmarks/fuzz_inputs.py: `arch.units.2d.rows: 10^20` passed the spec and
    crashed the first part's Parquet write (ArrowInvalid / OverflowError traceback)."""
    big = 10**20
    data = {"fixed": {"variant": "fusemax_1pass", "arch": "fusemax_cloud", "mapping": "fusemax"}}
    if where == "fixed":
        data["fixed"]["arch.units.2d.rows"] = big
    elif where == "axis":
        data["axes"] = {"arch.units.2d.rows": [16, big]}
    else:
        data["axes"] = {"cases": [{"label": "a", "arch.units.2d.rows": big}]}
    with pytest.raises(SpecError, match=r"^s\.yaml: .*arch\.units\.2d\.rows.*67-bit integer"):
        parse_spec(data, "s.yaml")
    data["fixed"]["arch.units.2d.rows"] = 2**63 - 1  # fits: refused later by the spec's bound
    data.pop("axes", None)
    parse_spec(data, "s.yaml")


def test_a_preset_name_is_the_preset_whatever_the_working_directory_holds(tmp_path, monkeypatch):
    from einsim.simulator import load_architecture

    monkeypatch.chdir(tmp_path)
    (tmp_path / "fusemax_cloud").write_text("units: [not, an, architecture]\n")
    bundled = resources.files("einsim.simulator").joinpath("architectures", "fusemax_cloud.yaml")
    expected = architecture_from_dict(yaml.safe_load(bundled.read_text()), "fusemax_cloud")
    assert load_architecture("fusemax_cloud") == expected
    with pytest.raises(SpecError, match="missing required key"):  # a path is read as one
        load_architecture("./fusemax_cloud")
