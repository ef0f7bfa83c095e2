"""`einsim dashboard`: the command exists and refuses bad input with exit status 2."""

from click.testing import CliRunner

from einsim.cli import main


def test_dashboard_is_a_command():
    result = CliRunner().invoke(main, ["dashboard", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--data", "--host", "--allow"):
        assert option in result.output


def test_missing_data_is_one_line_and_status_2(tmp_path):
    result = CliRunner().invoke(main, ["dashboard", "--data", str(tmp_path / "nope.parquet")])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_app_builds_with_data(tmp_path, monkeypatch):
    """The command builds the app with the data and serves it with waitress (the server's
    run is stubbed); off loopback it warns that the dashboard has no authentication."""
    import pandas as pd

    from einsim.dashboard import security

    path = tmp_path / "r.parquet"
    pd.DataFrame({"seq_len": [1], "latency_s": [1.0], "energy_pj": [1.0]}).to_parquet(path)
    calls = []

    class FakeServer:
        def run(self):
            calls.append("run")

        def close(self):
            calls.append("close")

    def fake_make_server(app, host, port):
        calls.append((host, port, app.title))
        security.bind(app, host, port)
        return FakeServer()

    monkeypatch.setattr(security, "make_server", fake_make_server)
    result = CliRunner().invoke(main, ["dashboard", "--port", "8123", "--data", str(path)])
    assert result.exit_code == 0, result.output
    assert calls == [("127.0.0.1", 8123, "einsim"), "run", "close"]
    assert "no authentication" not in result.output
    result = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0", "--data", str(path)])
    assert result.exit_code == 0, result.output
    assert "no authentication" in result.output
    result = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0", "--debug"])
    assert result.exit_code == 2 and "loopback only" in result.output
    result = CliRunner().invoke(main, ["dashboard", "--allow", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a directory" in result.output
