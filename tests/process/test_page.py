"""The page at / in a real browser (Debian's Chromium driven by Playwright), over the whole pipeline.

`tickpipe run` streams the bundled market; `tickpipe serve` serves the page. The page must load,
show live quotes, and its chart's last candle must move when the simulator sends a tick. A
screenshot is kept in TICKPIPE_TEST_ARTIFACTS (default: test-artifacts/ in the checkout).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, listening, wait_until
from tickpipe_core import Topology

pytestmark = pytest.mark.integration  # it needs the services too

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TICKPIPE_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.fixture
def serving(empty_database_url: str, amqp_url: str, topology: Topology) -> Iterator[str]:
    """The pipeline on the bundled market and the gateway in front of it; yields the page's URL."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required for the browser tests (scripts/setup.sh installs it)")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": empty_database_url,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": topology.prefix,
        "LOG_FORMAT": "json",
        "SERVE_PORT": str(port),
    }
    run = _start(["run", "--workers", "1", "--rate", "40", "--port", str(free_port())], env)
    serve = None
    try:
        wait_until(lambda: _has_quotes(empty_database_url), "the first stored quotes", timeout=60, interval=0.5)
        serve = _start(["serve"], env)
        wait_until(lambda: listening(port), "the gateway to listen", timeout=30)
        yield f"http://127.0.0.1:{port}/"
    finally:
        for proc in (serve, run):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _has_quotes(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("select count(*) from latest_quotes where instrument_id is not null").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] >= 5


def test_the_page_shows_live_quotes_and_its_last_candle_moves_with_the_market(serving: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(serving)
            page.wait_for_function("document.querySelectorAll('#quotes tbody tr').length >= 5", timeout=30_000)
            page.wait_for_function("document.getElementById('chart').dataset.lastClose !== ''", timeout=30_000)
            first = page.eval_on_selector("#chart", "el => [el.dataset.lastTime, el.dataset.lastClose]")
            # The simulator trades every instrument: the selected one's last candle moves (price or a new minute).
            page.wait_for_function(
                "([t, c]) => { const d = document.getElementById('chart').dataset;"
                " return d.lastTime !== t || d.lastClose !== c; }",
                arg=first,
                timeout=30_000,
            )
            page.wait_for_function("document.getElementById('health').classList.contains('ok')", timeout=30_000)
            assert page.locator("canvas").count() > 0  # the chart library drew
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "page.png"))
            assert errors == []
        finally:
            browser.close()
