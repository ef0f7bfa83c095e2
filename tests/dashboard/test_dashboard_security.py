"""The dashboard's guards in-process: path confinement, the Host check, malformed callback
requests, and the bounds of every field (issue 17)."""

import base64
import os
import time

import pandas as pd
import pytest

from einsim.dashboard import inputs, security
from einsim.dashboard.app import create_app, design_view, spec_from_inputs
from einsim.dashboard.design import DesignSpec, architecture_data, parse_assignments
from einsim.einsum import SpecError

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)


@pytest.fixture()
def served(tmp_path):
    """A --data folder with a sweep, an --allow folder, and a folder outside both."""
    data = tmp_path / "data"
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for folder in (data, allowed, outside):
        folder.mkdir()
    pd.DataFrame({"seq_len": [1024], "latency_s": [1e-3]}).to_parquet(data / "r.parquet")
    (outside / "secret.csv").write_text("password,hunter2\n1,2\n")
    return data / "r.parquet", allowed, outside


def test_paths_are_confined_to_the_served_folders(served):
    results, allowed, outside = served
    roots = security.roots_for(results, [allowed])
    assert security.confine(str(results), roots, "sweep") == results.resolve()
    (allowed / "v.csv").write_text("a\n1\n")
    assert security.confine(str(allowed / "v.csv"), roots, "csv") == (allowed / "v.csv").resolve()
    bundled = security.bundled_folders()[0] / "fusemax_cloud.yaml"
    assert security.confine(str(bundled), roots, "arch") == bundled
    # Outside: the same message whether the file exists or not (no probing).
    messages = set()
    for path in (outside / "secret.csv", outside / "missing.csv", "/etc/passwd", "/no/such"):
        with pytest.raises(SpecError) as error:
            security.confine(str(path), roots, "validation CSV")
        messages.add(str(error.value).replace(str(path), "PATH"))
    assert len(messages) == 1, messages
    # `..` and symlinks are resolved before the check.
    with pytest.raises(SpecError, match="not in a folder this dashboard serves"):
        security.confine(str(results.parent / ".." / "outside" / "secret.csv"), roots, "csv")
    os.symlink(outside / "secret.csv", results.parent / "link.csv")
    with pytest.raises(SpecError, match="not in a folder this dashboard serves"):
        security.confine(str(results.parent / "link.csv"), roots, "csv")
    # A dataset directory holding a link that leads outside is refused too.
    dataset = allowed / "parts"
    dataset.mkdir()
    os.symlink(outside, dataset / "escape")
    with pytest.raises(SpecError, match="link to a file outside"):
        security.confine(str(dataset), roots, "sweep")
    for bad in (None, 5, ["/etc"], "", "a\x00b", "x" * 5000):
        with pytest.raises(SpecError):
            security.confine(bad, roots, "sweep")


@pytest.mark.parametrize(
    "header, host, port, ok",
    [
        ("127.0.0.1:8050", "127.0.0.1", 8050, True),
        ("localhost:8050", "127.0.0.1", 8050, True),
        ("[::1]:8050", "127.0.0.1", 8050, True),
        ("LOCALHOST.:8050", "127.0.0.1", 8050, True),
        ("127.0.0.1:8051", "127.0.0.1", 8050, False),
        ("127.0.0.1", "127.0.0.1", 8050, False),
        ("evil.example:8050", "127.0.0.1", 8050, False),
        ("evil.example", "127.0.0.1", 80, False),
        ("", "127.0.0.1", 8050, False),
        (None, "127.0.0.1", 8050, False),
        ("a:b:c", "127.0.0.1", 8050, False),
        ("10.0.0.5:8050", "10.0.0.5", 8050, True),
        ("localhost:8050", "10.0.0.5", 8050, False),
        ("dash.lan:8050", "dash.lan", 8050, True),
        ("evil.example:8050", "dash.lan", 8050, False),
        ("192.168.1.9:8050", "0.0.0.0", 8050, True),
        ("[fe80::1]:8050", "::", 8050, True),
        ("evil.example:8050", "0.0.0.0", 8050, False),
    ],
)
def test_host_header(header, host, port, ok):
    assert security.host_allowed(header, host, port) is ok


def test_malformed_requests_get_short_4xx_answers():
    app = create_app()
    security.bind(app, "127.0.0.1", 8050)
    client = app.server.test_client()
    host = {"Host": "127.0.0.1:8050"}
    assert client.get("/", headers=host).status_code == 200
    answer = client.get("/", headers={"Host": "rebound.example:8050"})
    assert answer.status_code == 403 and len(answer.data) < 100
    for body in (b"{not json", b"[]", b"{}", b'{"output": "x", "outputs": {}, "inputs": []}',
                 b'{"output": "sweep-status.children", "outputs": [], "inputs": 5}'):  # fmt: skip
        answer = client.post(
            "/_dash-update-component",
            data=body,
            headers={**host, "Content-Type": "application/json"},
        )
        assert 400 <= answer.status_code < 500, body
        assert b"Traceback" not in answer.data and len(answer.data) < 200


def test_fields_refuse_what_a_number_input_would_misread():
    with pytest.raises(SpecError, match="sequence length: '1k' is not a whole number"):
        inputs.whole_number("1k", "sequence length", maximum=inputs.MAX_SEQ_LEN)
    for bad in ("4096.5", "1e3", "-5", True, [4096], {"a": 1}, 4096.5, float("inf")):
        with pytest.raises(SpecError, match="sequence length"):
            inputs.whole_number(bad, "sequence length", maximum=inputs.MAX_SEQ_LEN)
    with pytest.raises(SpecError, match="expected an integer <= 16777216"):
        inputs.whole_number(2**40, "sequence length", maximum=inputs.MAX_SEQ_LEN)
    assert inputs.whole_number(" 2048 ", "sequence length", maximum=inputs.MAX_SEQ_LEN) == 2048
    with pytest.raises(SpecError, match=r"units\.2d\.rows"):
        inputs.arch_number("1k", "units.2d.rows")


def test_design_fields_are_checked_as_the_client_sent_them():
    good = ["bert_base", "4096", None, "prefill", "", "fusemax_1pass", "", "",
            "fusemax_cloud", None, [], [], "", "fusemax", ""]  # fmt: skip
    assert spec_from_inputs(*good).seq_len == 4096

    def refused(index, value, match, **also):
        fields = list(good)
        fields[index] = value
        for at, other in also.items():
            fields[int(at[1:])] = other
        with pytest.raises(SpecError, match=match):
            spec_from_inputs(*fields)

    refused(1, "1k", "sequence length")
    refused(0, ["bert_base"], "model")
    refused(8, "/etc/passwd", "unknown architecture '/etc/passwd'")
    refused(8, "../../../etc/hostname.yaml", "unknown architecture")
    refused(13, "/etc/passwd", "unknown mapping '/etc/passwd'")
    refused(12, "x" * 5000, "more overrides: 5,000 characters")
    refused(6, "M0={a: 1}", "got a dict", f4="causal")
    fields = list(good)
    fields[4], fields[6] = "block_topk", "TOPK=100000"
    view = design_view(spec_from_inputs(*fields), None)
    assert view.result is None and "TOPK=100000 would build about" in view.error
    refused(10, [{"path": ["x"]}], "architecture numbers")


def test_variant_parameters_are_bounded_before_building():
    for topk in (100_000, 10_000_000):
        started = time.perf_counter()
        with pytest.raises(SpecError, match=f"TOPK={topk} would build about"):
            inputs.check_cascade_growth("block_topk", {"TOPK": topk})
        assert time.perf_counter() - started < 30  # a gross bound: refused, not built
    inputs.check_cascade_growth("block_topk", {"TOPK": 8})
    with pytest.raises(SpecError, match="above 16,777,216"):
        inputs.bounded_parameters({"W": 2**30}, "parameters")
    with pytest.raises(SpecError, match="a list"):
        parse_assignments("W=&a [*a]")


def test_uploaded_yaml_is_bounded():
    with pytest.raises(SpecError, match="more than 64 YAML aliases"):
        architecture_data(DesignSpec(arch="(uploaded)", arch_yaml=ALIAS_BOMB))
    with pytest.raises(SpecError, match="nested deeper than"):
        inputs.check_yaml_text("a: " + "[" * 40 + "]" * 40, "upload")
    with pytest.raises(SpecError, match="65,536"):
        inputs.check_yaml_text("a: 1\n" * 20000, "upload")
    with pytest.raises(SpecError, match="larger than 64 KiB"):
        inputs.check_yaml_text("a: " + "é" * 40000, "upload")
    big = "data:text/yaml;base64," + base64.b64encode(b"x" * (inputs.MAX_YAML_BYTES + 10)).decode()
    with pytest.raises(SpecError, match="larger than"):
        inputs.upload_bytes(big, "big.yaml", inputs.MAX_YAML_BYTES)


def _forever():
    while True:
        pass


def _allocate():
    return bytearray(8 << 30)


def _refuse():
    raise SpecError("refused in the child")


def test_bounded_evaluations_are_killed_at_the_deadline(monkeypatch):
    from einsim.dashboard import bounded

    assert bounded.run_bounded(sorted, [3, 1, 2]) == [1, 2, 3]
    with pytest.raises(SpecError, match="refused in the child"):
        bounded.run_bounded(_refuse)
    monkeypatch.setattr(bounded, "DEADLINE_S", 0.5)
    with pytest.raises(SpecError, match=r"longer than 0\.5 s"):
        bounded.run_bounded(_forever, what="spin")
    monkeypatch.setattr(bounded, "CHILD_MEMORY_BYTES", 1 << 30)
    with pytest.raises(SpecError, match="more than 1 GiB"):
        bounded.run_bounded(_allocate)


def test_large_masks_are_counted_in_a_child_and_small_ones_here():
    from einsim.dashboard import bounded
    from einsim.dashboard.design import build_workload

    small = build_workload(DesignSpec(attention="sinks_window", seq_len=1024))
    large = build_workload(DesignSpec(attention="sinks_window", seq_len=16384))
    dense = build_workload(DesignSpec(seq_len=2**24))
    assert bounded.filter_points(*small) == 1024**2 <= bounded.FORK_POINTS
    assert bounded.filter_points(*large) == 16384**2 > bounded.FORK_POINTS
    assert bounded.filter_points(*dense) == 0
