"""Sweep specs never give a point id twice (duplicates are merged, with one warning line)
and never expand beyond a bound (checked before a range or the product is expanded)."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim import SpecError
from einsim.sweeps import load_spec, parse_spec, point_id
from einsim.sweeps.spec import MAX_POINTS, MAX_SPEC_BYTES, SweepWarning

BASE = {"model": "bert_base", "arch": "fusemax_cloud", "mapping": "fusemax"}


def _spec(axes, **fixed):
    return {"fixed": {**BASE, **fixed}, "axes": axes}


def _merged(spec) -> tuple:
    """(parsed spec, the one-line warnings it gave)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = parse_spec(spec)
    messages = [str(w.message) for w in caught if issubclass(w.category, SweepWarning)]
    assert all("\n" not in m for m in messages)
    return parsed, messages


def test_duplicate_axis_values_are_merged_with_a_warning():
    parsed, messages = _merged(_spec({"seq_len": [1024, 4096, 1024, 1024]}))
    assert [p["seq_len"] for p in parsed.points()] == [1024, 4096]
    assert len(messages) == 1 and "axes.seq_len: 2 duplicate value(s) merged" in messages[0]
    # the merged spec is the spec written without the duplicates: same points, same hash
    assert parsed.digest == parse_spec(_spec({"seq_len": [1024, 4096]})).digest


def test_equal_cases_and_zip_rows_are_merged():
    cases = [
        {"label": "a", "algorithm": "stable_3pass"},
        {"algorithm": "stable_3pass", "label": "a"},  # the same setting, keys reordered
        {"label": "b", "algorithm": "stable_3pass"},
    ]
    zipped = {"arch.units.2d.rows": [64, 128, 64], "arch.units.2d.cols": [64, 128, 64]}
    parsed, messages = _merged(_spec({"cases": cases, "zip": zipped}, seq_len=1024))
    assert parsed.size == 4 and len(messages) == 2
    ids = [point_id(p) for p in parsed.points()]
    assert len(set(ids)) == len(ids) == 4


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([512, 1024, 2048, 4096]), min_size=1, max_size=8),
    st.lists(st.sampled_from([64, 128, 256]), min_size=1, max_size=6),
)
def test_point_ids_never_repeat(seq_lens, cols):
    parsed, _ = _merged(_spec({"seq_len": seq_lens, "arch.units.2d.cols": cols}))
    ids = [point_id(p) for p in parsed.points()]
    assert len(ids) == len(set(ids)) == len(set(seq_lens)) * len(set(cols))
    assert parsed.size == len(ids)


def test_a_huge_range_is_refused_before_it_is_expanded():
    with pytest.raises(SpecError) as info:
        parse_spec(_spec({"seq_len": {"from": 1, "to": 10**12, "step": 1}}))
    assert "1,000,000,000,000 values, more than the 1,000,000" in str(info.value)


def test_the_product_of_the_axes_is_bounded_and_the_bound_can_be_lifted():
    axes = {
        "seq_len": {"from": 1024, "to": 1024 * 200, "step": 1024},
        "arch.units.2d.cols": {"from": 1, "to": 200, "step": 1},
        "arch.units.2d.rows": {"from": 1, "to": 200, "step": 1},
    }
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(axes))
    message = str(info.value)
    assert "8,000,000 points (seq_len 200 x arch.units.2d.cols 200 x" in message
    assert "--max-points" in message and "\n" not in message
    assert parse_spec(_spec(axes), max_points=8_000_000).size == 200**3
    spec = parse_spec(_spec(axes), max_points=8_000_000)
    with pytest.raises(SpecError, match="8,000,000 points, more than the 1,000,000"):
        load_spec(spec)  # a SweepSpec built elsewhere is bounded too


def test_a_yaml_alias_bomb_is_refused(tmp_path):
    keys = ["seq_len", "arch.units.2d.cols", "arch.units.2d.rows", "arch.units.1d.lanes"]
    values = list(range(1, 41))  # 40^4 = 2.56 million points from a few hundred bytes
    lines = [f"  {keys[0]}: &v {values}"] + [f"  {key}: *v" for key in keys[1:]]
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "fixed: {model: bert_base, arch: fusemax_cloud, mapping: fusemax}\naxes:\n"
        + "\n".join(lines)
        + "\n"
    )
    assert len(path.read_bytes()) < 600 and MAX_POINTS < 40**4
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "2,560,000 points" in str(info.value) and "\n" not in str(info.value)


def test_a_spec_too_long_to_carry_in_every_part_is_refused():
    labels = [f"{i:06d}" + "x" * 1000 for i in range(MAX_SPEC_BYTES // 1000 + 10)]
    with pytest.raises(SpecError, match=r"the normalized spec is .* bytes, more than"):
        parse_spec(_spec({"label": labels}, seq_len=1024))
