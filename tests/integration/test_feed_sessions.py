"""feed_sessions: a session a killed process left open is closed by the next start of that connection
on the host, and a second ingestion running beside it (active-active) keeps its own open."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import psycopg

from tickpipe_ingestion.sessions import SessionLog


def _gone_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def _start(database_url: str, pid: int) -> None:
    async def write() -> None:
        sessions = SessionLog(database_url, "dhan")
        sessions.pid = pid
        sessions.started("dhan-0")
        task = asyncio.create_task(sessions.run())
        await asyncio.sleep(0)
        task.cancel()  # cancelling writes what is pending, then ends
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(write())


def test_only_the_sessions_of_processes_that_are_gone_are_closed(database_url: str) -> None:
    live_elsewhere, gone = os.getppid(), _gone_pid()  # another process that runs, and one that ended
    _start(database_url, live_elsewhere)
    _start(database_url, gone)
    _start(database_url, os.getpid())  # this process starts the connection: it cleans up after the dead only
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select pid, ended_at is null, end_reason from feed_sessions order by started_at"
        ).fetchall()
    assert rows == [
        (live_elsewhere, True, None),
        (gone, False, "the process ended without closing it (killed?)"),
        (os.getpid(), True, None),
    ]
