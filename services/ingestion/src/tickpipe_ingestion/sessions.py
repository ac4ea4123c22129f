"""Feed sessions in the database: each connection's start, end and reason (table feed_sessions).

Best effort and off the hot path: the feed calls `started`/`ended` (no I/O), a task writes the rows in
order, and keeps them while the database is away. A session a killed process left open is closed by
the next start of the same connection on the same host, with a reason that says so: only when that
process is gone, so that a second ingestion running beside this one (active-active) keeps its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import deque
from datetime import UTC, datetime

import psycopg

from tickpipe_core import Backoff, get_logger

log = get_logger("sessions")

_BACKOFF = Backoff(base=0.5, cap=30.0)
_MAX_PENDING = 10_000  # rows kept while the database is away (sessions are rare: this is days)


class SessionLog:
    def __init__(self, database_url: str, source: str) -> None:
        self._url = database_url
        self.source = source
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._open: dict[str, uuid.UUID] = {}
        self._pending: deque[tuple[str, tuple[object, ...]]] = deque(maxlen=_MAX_PENDING)
        self._wakeup = asyncio.Event()

    def started(self, connection: str) -> None:
        session = self._open[connection] = uuid.uuid4()
        now = datetime.now(UTC)
        self._pending.append((_CLOSE_ABANDONED, (now, self.source, connection, self.host, self.pid)))
        self._pending.append((_INSERT, (session, self.source, connection, self.host, self.pid, now)))
        self._wakeup.set()

    def ended(self, connection: str, reason: str, frames: int, ticks: int) -> None:
        session = self._open.pop(connection, None)
        if session is not None:
            self._pending.append((_END, (datetime.now(UTC), reason[:500], frames, ticks, session)))
            self._wakeup.set()

    async def run(self) -> None:
        """Write pending rows in order until cancelled; on cancel, one last try to write what is left."""
        failures = 0
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                try:
                    await self._write()
                    failures = 0
                except (psycopg.Error, OSError) as e:
                    delay = _BACKOFF.delay(failures)
                    failures += 1
                    log.warning("sessions_not_written", error=f"{type(e).__name__}: {e}", pending=len(self._pending))
                    await asyncio.sleep(delay)
                    self._wakeup.set()
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(self._write(), 1.0)
            except (psycopg.Error, OSError, TimeoutError):
                log.warning("sessions_not_written", pending=len(self._pending), at="stop")
            raise

    async def _write(self) -> None:
        if not self._pending:
            return
        async with await psycopg.AsyncConnection.connect(self._url, connect_timeout=5, autocommit=True) as conn:
            while self._pending:
                statement, params = self._pending[0]
                if statement is _CLOSE_ABANDONED:
                    await _close_abandoned(conn, params)
                else:
                    await conn.execute(statement, params)
                self._pending.popleft()


async def _close_abandoned(conn: psycopg.AsyncConnection[tuple[object, ...]], params: tuple[object, ...]) -> None:
    """Close the sessions of this connection that a process on this host left open and is no longer there for.

    `params`: (now, source, connection, host, our pid).
    """
    now, *key = params
    cur = await conn.execute(_OPEN_ELSEWHERE, key)
    gone = [session for session, other in await cur.fetchall() if isinstance(other, int) and not _alive(other)]
    if gone:
        await conn.execute(_CLOSE, (now, gone))


def _alive(pid: int) -> bool:
    """A process with this pid runs on this machine (signal 0 tests without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, and belongs to someone else
    return True


_INSERT = """insert into feed_sessions (id, source, connection, host, pid, started_at)
             values (%s, %s, %s, %s, %s, %s) on conflict (id) do nothing"""
_END = "update feed_sessions set ended_at = %s, end_reason = %s, frames = %s, ticks = %s where id = %s"
_CLOSE_ABANDONED = "close the sessions of processes that are gone"  # done by _close_abandoned
_OPEN_ELSEWHERE = """select id, pid from feed_sessions
    where ended_at is null and source = %s and connection = %s and host = %s and pid <> %s"""
_CLOSE = """update feed_sessions set ended_at = %s, end_reason = 'the process ended without closing it (killed?)'
    where id = any(%s) and ended_at is null"""
