"""Browser fixtures: Debian's headless Chromium driven by Playwright (never a downloaded
browser), the app served from a thread on 127.0.0.1 with a free port."""

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at the Debian browser."""
    if not CHROMIUM.exists():
        pytest.skip(
            "no /usr/bin/chromium: apt-get install -y --no-install-recommends chromium "
            "fonts-liberation (.ci/run does) to run the browser tests"
        )
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1100}}


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests save a screenshot of each page: $EINSIM_SCREENSHOTS when set
    (tests/dashboard/screenshots holds the committed set), else a pytest tmp dir."""
    chosen = os.environ.get("EINSIM_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
