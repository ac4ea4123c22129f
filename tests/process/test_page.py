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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
            # The page runs under its Content-Security-Policy: a violation is a console error.
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            missing: list[str] = []
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
            page.goto(serving)
            # Polled from here, not with wait_for_function: the page's CSP forbids the eval that uses.
            _until(page, "() => document.querySelectorAll('#quotes tbody tr').length >= 5")
            _until(page, "() => document.getElementById('chart').dataset.lastClose !== ''")
            first = page.eval_on_selector("#chart", "el => [el.dataset.lastTime, el.dataset.lastClose]")
            # The simulator trades every instrument: the selected one's last candle moves (price or a new minute).
            _until(
                page,
                "([t, c]) => { const d = document.getElementById('chart').dataset;"
                " return d.lastTime !== t || d.lastClose !== c; }",
                first,
            )
            _until(page, "() => document.getElementById('health').classList.contains('ok')")
            assert page.locator("canvas").count() > 0  # the chart library drew
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "page.png"))
            assert errors == []
            assert [u for u in missing if not u.endswith("/favicon.ico")] == []
        finally:
            browser.close()


def _until(page: Any, predicate: str, arg: Any = None, timeout_s: float = 30.0) -> None:
    """Poll a predicate in the page until it holds (a bounded wait; the page's CSP forbids eval)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never got to: {predicate}")
        page.wait_for_timeout(200)


_CALLER = """<!doctype html>
<html><body data-result="">
<script>
fetch("API/v1/health", {headers: {Authorization: "Bearer TOKEN"}})
  .then(r => r.json()).then(j => { document.body.dataset.result = "answered: " + j.auth; })
  .catch(() => { document.body.dataset.result = "refused"; });
</script>
</body></html>
"""


def test_a_page_on_an_allowed_origin_calls_the_api_with_its_token_and_another_origin_is_refused(
    database_url: str, amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    """CORS in a real browser: the preflight passes without the token, the call carries it."""
    from playwright.sync_api import sync_playwright

    api_port, page_port = free_port(), free_port()
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(_CALLER.replace("API", f"http://127.0.0.1:{api_port}").replace("TOKEN", "t0k"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": topology.prefix,
        "SERVE_PORT": str(api_port),
        "SERVE_TOKEN": "t0k",
        "SERVE_CORS_ORIGINS": f"http://127.0.0.1:{page_port}",
    }
    serve = _start(["serve"], env)
    pages = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(page_port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: listening(api_port) and listening(page_port), "the gateway and the page server", timeout=30)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                results = {}
                for host in ("127.0.0.1", "localhost"):  # the same page from the allowed origin, then another
                    page = browser.new_page()
                    page.goto(f"http://{host}:{page_port}/")
                    _until(page, "() => document.body.dataset.result !== ''")
                    results[host] = page.evaluate("() => document.body.dataset.result")
                    page.close()
            finally:
                browser.close()
        assert results == {"127.0.0.1": "answered: token", "localhost": "refused"}
    finally:
        for proc in (serve, pages):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
