"""The command line as a user meets it: one clear line and a documented exit code for every foreseeable failure."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import free_port
from tickpipe.supervisor import Child, Supervisor
from tickpipe_core import EXIT_FAILURE, EXIT_TERMINAL


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
    assert "configuration error: DATA_SOURCE: Input should be 'dhan' or 'kite'" in result.stderr


def test_rabbitmq_unreachable_at_start_is_one_line_and_a_retryable_exit() -> None:
    result = _tickpipe(
        "ingest",
        DATA_SOURCE="dhan",
        DHAN_CLIENT_ID="1",
        DHAN_ACCESS_TOKEN="start-secret",
        DHAN_INSTRUMENTS="NSE_FNO:1",
        DHAN_FEED_URL=f"ws://127.0.0.1:{free_port()}",
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        AMQP_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        LOG_FORMAT="json",
    )
    assert result.returncode == EXIT_FAILURE  # a server that is down: a restart may fix it
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("cannot reach RabbitMQ")
    assert "start-secret" not in result.stderr + result.stdout


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
