"""The command line as a user meets it: one clear line and a documented exit code for every foreseeable failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until
from tickpipe.supervisor import Child, Supervisor
from tickpipe_core import EXIT_TERMINAL


def _tickpipe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reports_a_bad_setting_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "ingest"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DHAN_FEED_MODE": "bogus", "HOME": "/tmp"},
    )
    assert result.returncode == EXIT_TERMINAL  # a bad setting: retrying cannot help, so nothing restarts it
    assert result.stderr.strip().splitlines() == [
        "configuration error: DHAN_FEED_MODE: Input should be 'ticker', 'quote' or 'full'"
    ]


def test_every_command_has_help_listing_its_settings() -> None:
    for command, setting in [
        ("migrate", "DATABASE_URL"),
        ("ingest", "DHAN_ACCESS_TOKEN"),
        ("work", "WORKER_BATCH_ROWS"),
        ("run", "AMQP_URL"),
        ("simulate", "--rate"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "tickpipe", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert setting in out, (command, out)


def test_an_unknown_data_source_fails_at_start_naming_the_valid_ones() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "ingest"],
        env={**os.environ, "DATA_SOURCE": "upstox"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_TERMINAL  # a bad setting: retrying cannot help, so nothing restarts it
    assert "configuration error: DATA_SOURCE: unknown broker 'upstox'; one of dhan, kite" in result.stderr


def test_ingestion_starts_without_rabbitmq_or_its_database_and_stops_on_sigterm_within_5_s(tmp_path: Path) -> None:
    """Nothing it needs is up: it keeps trying (one line each, no traceback, no secret) and exits 0 on SIGTERM."""
    log = tmp_path / "ingest.log"
    env = {
        **os.environ,
        "DATA_SOURCE": "dhan",
        "DHAN_CLIENT_ID": "1",
        "DHAN_ACCESS_TOKEN": "start-secret",
        "DHAN_INSTRUMENTS": "NSE_FNO:1",
        "DHAN_FEED_URL": f"ws://127.0.0.1:{free_port()}",
        "DATABASE_URL": f"postgresql://postgres:db-secret@127.0.0.1:{free_port()}/x",
        "AMQP_URL": f"amqp://guest:amqp-secret@127.0.0.1:{free_port()}/",
        "LOG_FORMAT": "json",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tickpipe", "ingest"], env=env, stdout=out, stderr=out)
    try:
        wait_until(lambda: log.read_text().count('"amqp_unreachable"') >= 2, "two tries to reach RabbitMQ", 30)
        assert proc.poll() is None  # still running: an outage is not a reason to exit
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text
    for secret in ("start-secret", "db-secret", "amqp-secret"):
        assert secret not in text
    assert all(line.startswith("{") for line in text.splitlines())  # every line JSON, libraries' too


def test_the_supervisor_does_not_restart_a_terminal_failure_and_stops_its_siblings() -> None:
    children = [
        Child("simulator", ["simulate", "--port", str(free_port())], {}),
        Child("ingest", ["ingest"], {"DATA_SOURCE": "upstox"}),  # a bad setting: exit 78
    ]
    status = Supervisor(children, stop_timeout=20).run()
    assert status == EXIT_TERMINAL
    for child in children:
        assert child.process is not None and child.process.poll() is not None  # the simulator was stopped too
    assert children[1].crashes == 0  # never restarted


@pytest.mark.parametrize("interval", ["99999999999999999999d", "999999999d", "0m", "5 fortnights"])
def test_a_candle_interval_no_one_means_is_one_line_never_a_traceback(interval: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "query", "candles", "INFY", "--interval", interval],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-1000:]
    assert result.stderr.strip().splitlines()[-1].startswith("configuration error: --interval"), result.stderr


@pytest.mark.parametrize("url", ["ws://[::1", "ws://127.0.0.1:99999", "notaurl", "http://127.0.0.1:8765"])
def test_a_feed_url_no_connection_can_use_is_a_terminal_one_line_error(url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "DHAN_FEED_URL": url, "DHAN_CLIENT_ID": "c",
           "DHAN_ACCESS_TOKEN": "t", "DHAN_INSTRUMENTS": "NSE_EQ:1"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "ingest"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == EXIT_TERMINAL, result.stderr[-1000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: DHAN_FEED_URL:"), line


def test_a_refused_rabbitmq_login_stops_work_with_one_terminal_line(amqp_url: str, database_url: str) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:not-the-password@")
    assert wrong != amqp_url
    env = {**os.environ, "AMQP_URL": wrong, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "work"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == EXIT_TERMINAL, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "not-the-password" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: AmqpAuthError: RabbitMQ refused the login")
