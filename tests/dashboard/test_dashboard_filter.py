"""The sweep explorer's filter language: masks against pandas' own elementwise operations,
bounds, one-line errors, and the code-execution payloads of issue 17 (never run)."""

import operator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from einsim.dashboard.filter import MAX_CHARS, MAX_DEPTH, filter_mask, parse_filter
from einsim.einsum import SpecError

OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}  # fmt: skip


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(7)
    n = 40
    seq = rng.choice([1024, 4096, 16384], n).astype(float)
    seq[[3, 11]] = np.nan
    arch = rng.choice(["flat_cloud", "fusemax_cloud", "systolic"], n).astype(object)
    arch[5] = None
    return pd.DataFrame(
        {
            "seq_len": seq,
            "arch": arch,
            "valid": rng.random(n) > 0.3,
            "arch.units.2d.rows": rng.choice([64, 128, 256], n),
            "latency_s": rng.random(n) * 1e-3,
        }
    )


def reference(frame, column, op, value):
    """pandas' comparison, where a missing value satisfies nothing."""
    series = frame[column]
    return (OPS[op](series, value) & series.notna()).to_numpy(dtype=bool)


@pytest.mark.parametrize("op", list(OPS))
def test_comparisons_match_pandas(frame, op):
    np.testing.assert_array_equal(
        filter_mask(frame, f"seq_len {op} 4096"), reference(frame, "seq_len", op, 4096)
    )
    np.testing.assert_array_equal(
        filter_mask(frame, f"arch {op} 'fusemax_cloud'"),
        reference(frame, "arch", op, "fusemax_cloud"),
    )
    # A constant on the left reads as the mirrored comparison.
    mirrored = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    np.testing.assert_array_equal(
        filter_mask(frame, f"4096 {op} seq_len"), reference(frame, "seq_len", mirrored, 4096)
    )


def test_and_or_not_parentheses_and_names(frame):
    seq, arch, valid = frame.seq_len, frame.arch, frame.valid
    cases = {
        'seq_len >= 4096 and arch == "flat_cloud"': (seq >= 4096) & (arch == "flat_cloud"),
        "not valid or `arch.units.2d.rows` < 128": ~valid | (frame["arch.units.2d.rows"] < 128),
        "arch.units.2d.rows == 256 and (seq_len < 2000 or not valid)": (
            (frame["arch.units.2d.rows"] == 256) & ((seq < 2000) | ~valid)
        ),
        "valid == true": valid,
        "latency_s < 5e-4": frame.latency_s < 5e-4,
        "seq_len > -1.5e3": seq > -1500,
        "": pd.Series(True, index=frame.index),
    }
    for text, expected in cases.items():
        np.testing.assert_array_equal(filter_mask(frame, text), expected.to_numpy(dtype=bool))


@pytest.mark.parametrize(
    "text, message",
    [
        ("seq_len = 4096", "column 9: unexpected '=' (write == to compare)"),
        ("seq_len >= 4096 && valid", "column 17: unexpected '&'"),
        ("no_such > 1", "column 1: no column 'no_such'; columns: seq_len, arch"),
        ("seq_len > 'long'", "column 9: > compares column 'seq_len' (number) with the text"),
        ("(valid", "expected ')' to close the '(' at column 1"),
        ("valid and", "column 10: unexpected end of the filter"),
        ("1 < 2", "compares two constants"),
        ("seq_len", "column 'seq_len' is not true/false"),
        ("arch == 'flat", "column 9: unclosed quote '"),
        ("valid < true", "true/false values compare with == or != only"),
    ],
)
def test_errors_name_the_column_of_the_bad_token(frame, text, message):
    with pytest.raises(SpecError) as error:
        filter_mask(frame, text)
    assert message in str(error.value)
    assert str(error.value).startswith("filter")
    assert "\n" not in str(error.value)


def test_bounds(frame):
    deep = "(" * (MAX_DEPTH + 1) + "valid" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH}"):
        filter_mask(frame, deep)
    with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH}"):
        filter_mask(frame, "not " * (MAX_DEPTH + 1) + "valid")
    ok = "(" * MAX_DEPTH + "valid" + ")" * MAX_DEPTH
    np.testing.assert_array_equal(filter_mask(frame, ok), frame.valid.to_numpy())
    with pytest.raises(SpecError, match=f"at most {MAX_CHARS}"):
        filter_mask(frame, "valid or " * MAX_CHARS)
    wide = " or ".join(["valid"] * ((MAX_CHARS - 5) // 9))  # long but within the bound
    np.testing.assert_array_equal(filter_mask(frame, wide), frame.valid.to_numpy())
    with pytest.raises(SpecError, match="expected a text"):
        filter_mask(frame, ["valid"])


def test_code_payloads_never_run(frame, tmp_path, monkeypatch):
    """The payloads that ran a command and read a file through `DataFrame.query`."""
    marker = tmp_path / "FILE"
    hostname = Path("/etc/hostname")
    secret = hostname.read_text().strip() if hostname.exists() else "\x00never"
    monkeypatch.chdir(tmp_path)
    payloads = [
        f"@pd.io.common.os.system('id > {marker}')",
        "@pd.io.common.os.system('id > FILE')",
        "@Path('/etc/hostname').read_text()",
        "seq_len > 0 and @Path('/etc/hostname').read_text() == 'x'",
        "__import__('os').system('id > FILE')",
        "arch.__class__.__mro__",
        "`arch`.str.len() > 0",
        "seq_len.sum() > 0",
    ]
    for payload in payloads:
        with pytest.raises(SpecError) as error:
            filter_mask(frame, payload)
        assert secret not in str(error.value)
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == []


TOKENS = st.sampled_from(
    ["seq_len", "arch", "valid", "arch.units.2d.rows", "`arch.units.2d.rows`", "nope", "==",
     "!=", "<", "<=", ">", ">=", "and", "or", "not", "(", ")", "4096", "-1e3", "1e999",
     "'flat_cloud'", '"x"', "true", "false", "@", "=", "'", "`", ".", "1.2.3", " "]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(TOKENS, max_size=25).map(" ".join)))
def test_only_spec_errors(text):
    frame = pd.DataFrame(
        {"seq_len": [1024.0, np.nan], "arch": ["flat_cloud", None], "valid": [True, False],
         "arch.units.2d.rows": [64, 256]}
    )  # fmt: skip
    try:
        mask = filter_mask(frame, text)
    except SpecError as error:
        assert str(error).startswith("filter")
        return
    assert mask.dtype == bool and mask.shape == (2,)


COMPARISONS = st.tuples(
    st.sampled_from(["seq_len", "rows"]), st.sampled_from(list(OPS)), st.integers(0, 5)
)


@st.composite
def expressions(draw, depth=0):
    """(filter text, the pandas reference mask as a function of the frame)."""
    kind = draw(st.sampled_from(["cmp", "cmp", "not", "and", "or"] if depth < 4 else ["cmp"]))
    if kind == "cmp":
        column, op, value = draw(COMPARISONS)
        return f"{column} {op} {value}", lambda f: reference(f, column, op, value)
    if kind == "not":
        text, ref = draw(expressions(depth + 1))
        return f"not ({text})", lambda f: ~ref(f)
    (a, ra), (b, rb) = draw(expressions(depth + 1)), draw(expressions(depth + 1))
    combine = np.logical_and if kind == "and" else np.logical_or
    return f"({a}) {kind} ({b})", lambda f: combine(ra(f), rb(f))


@settings(max_examples=200, deadline=None)
@given(expressions(), st.lists(st.integers(0, 5), min_size=1, max_size=12))
def test_random_expressions_match_pandas(expression, values):
    text, ref = expression
    frame = pd.DataFrame({"seq_len": values, "rows": values[::-1]})
    np.testing.assert_array_equal(filter_mask(frame, text), ref(frame))


def test_parse_tree_is_data():
    node = parse_filter("not valid or seq_len > 1024")
    assert type(node).__name__ == "Combine" and node.op == "or"
