"""Worker faults on the real services: crash between commit and ack, SIGTERM mid-batch, database outage."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import psycopg
import pytest

from tests.helpers import make_tick, until, wait_until
from tests.integration.pipeline import count_ticks, publish_bodies, queue_depths
from tests.scratch_postgres import ScratchPostgres
from tickpipe_core import Topology, encode_batch
from tickpipe_core.migrate import migrate
from tickpipe_core.settings import WorkerSettings
from tickpipe_workers import Worker, run_workers


def _bodies(messages: int, per_message: int, start: int = 0) -> list[bytes]:
    """Messages of distinct ticks; `start` shifts the ids so a second call adds new ticks."""
    return [
        encode_batch([make_tick(security_id=m * 1000 + j) for j in range(per_message)])
        for m in range(start, start + messages)
    ]


class _Crash(Exception):
    pass


class CrashAfterCommit(Worker):
    """A worker that dies after its first commit, before acking it (like a kill -9 there)."""

    async def _ack(self, batch):  # type: ignore[no-untyped-def]
        raise _Crash


async def _drain(database_url: str, amqp_url: str, topology: Topology, total: int, timeout: float = 60) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_workers(2, database_url, amqp_url, topology, WorkerSettings(batch_rows=500, batch_timeout_s=0.2), stop)
    )
    await _until_drained(database_url, amqp_url, topology, total, timeout)
    stop.set()
    await task


async def _until_drained(database_url: str, amqp_url: str, topology: Topology, total: int, timeout: float) -> None:
    """Wait until `total` rows are stored and the ticks queue is empty."""

    async def drained() -> bool:
        return count_ticks(database_url) >= total and (await queue_depths(amqp_url, topology))[0] == 0

    await until(drained, f"{total} rows stored and an empty queue", timeout, interval=0.2)


def test_redelivery_after_a_crash_between_commit_and_ack_stores_each_tick_once(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    total = 20 * 50

    async def scenario() -> None:
        await publish_bodies(amqp_url, topology, _bodies(20, 50))
        crasher = CrashAfterCommit(
            0, database_url, amqp_url, topology, WorkerSettings(batch_rows=400, batch_timeout_s=0.2)
        )
        with pytest.raises(_Crash):
            await crasher.run(asyncio.Event())
        committed = count_ticks(database_url)
        assert 0 < committed < total  # the crash left committed but unacked rows behind
        await _drain(database_url, amqp_url, topology, total)

    asyncio.run(scenario())
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*), count(distinct tick_id) from ticks").fetchone() == (total, total)


def test_sigterm_mid_stream_finishes_the_batch_acks_it_and_loses_nothing(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    messages, per_message = 300, 100
    asyncio.run(publish_bodies(amqp_url, topology, _bodies(messages, per_message)))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": topology.prefix,
        "WORKER_BATCH_ROWS": "2000",
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "work"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: count_ticks(database_url) > 0, "the first commit", timeout=30)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode()[-2000:]
    assert b'"worker_stopped"' in output
    stored = count_ticks(database_url)
    ready, _ = asyncio.run(queue_depths(amqp_url, topology))
    # Every message is either committed and acked, or back in the queue untouched: never both, never neither.
    assert stored + ready * per_message == messages * per_message
    # From the numbered ticks (message m holds security ids m*1000 ..): each message landed whole or not at all.
    with psycopg.connect(database_url) as conn:
        per: dict[int, int] = dict(conn.execute("select security_id / 1000, count(*) from ticks group by 1").fetchall())
    assert set(per.values()) == {per_message}
    # The rest drains on a new worker: every tick exactly once across the shutdown.
    asyncio.run(_drain(database_url, amqp_url, topology, messages * per_message))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*), count(distinct security_id) from ticks").fetchone() == (
            messages * per_message,
            messages * per_message,
        )


def test_database_outage_mid_stream_loses_and_duplicates_nothing(
    scratch_postgres: ScratchPostgres, amqp_url: str, topology: Topology
) -> None:
    url = scratch_postgres.url
    migrate(url)
    first, second, per_message = 30, 30, 100
    total = (first + second) * per_message

    async def scenario() -> None:
        await publish_bodies(amqp_url, topology, _bodies(first, per_message))
        stop = asyncio.Event()
        worker = Worker(0, url, amqp_url, topology, WorkerSettings(batch_rows=500, batch_timeout_s=0.1))
        task = asyncio.create_task(worker.run(stop))
        await until(lambda: count_ticks(url) > 0, "the first commit", timeout=30, interval=0.05)
        scratch_postgres.stop(mode="immediate")
        await publish_bodies(amqp_url, topology, _bodies(second, per_message, start=first))
        # The worker meets the outage, keeps its batch and retries (it does not exit).
        await until(lambda: worker.counters["write_failures"] >= 2 or task.done(), "write failures", timeout=30)
        assert not task.done()
        scratch_postgres.start()
        await _until_drained(url, amqp_url, topology, total, 60)
        stop.set()
        await task
        assert worker.counters["write_failures"] > 0  # the outage was really met

    asyncio.run(scenario())
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*), count(distinct tick_id) from ticks").fetchone() == (total, total)
