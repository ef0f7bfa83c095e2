"""`einsim dashboard`: the command exists and refuses bad input with exit status 2."""

from click.testing import CliRunner

from einsim.cli import main


def test_dashboard_is_a_command():
    result = CliRunner().invoke(main, ["dashboard", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--data", "--host"):
        assert option in result.output


def test_missing_data_is_one_line_and_status_2(tmp_path):
    result = CliRunner().invoke(main, ["dashboard", "--data", str(tmp_path / "nope.parquet")])
    assert result.exit_code == 2
    assert "no such file or directory" in result.output


def test_app_builds_with_data(tmp_path, monkeypatch):
    """The command builds the app with the data and runs it (run itself is stubbed)."""
    import pandas as pd

    import einsim.dashboard.app as app_module

    path = tmp_path / "r.parquet"
    pd.DataFrame({"seq_len": [1], "latency_s": [1.0], "energy_pj": [1.0]}).to_parquet(path)
    calls = {}

    def fake_run(self, host, port, debug):
        calls.update(host=host, port=port, debug=debug, title=self.title)

    monkeypatch.setattr(app_module.dash.Dash, "run", fake_run)
    result = CliRunner().invoke(main, ["dashboard", "--port", "8123", "--data", str(path)])
    assert result.exit_code == 0, result.output
    assert calls == {"host": "127.0.0.1", "port": 8123, "debug": False, "title": "einsim"}
