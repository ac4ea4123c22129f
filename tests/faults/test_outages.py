"""Outages of RabbitMQ and PostgreSQL, and killed processes, while numbered ticks stream through the pipeline."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable

from tests.faults.conftest import Pipeline
from tests.faults.harness import (
    NumberedFeed,
    ScratchRabbit,
    Service,
    assert_exactly_once,
    last_event,
    log_events,
    stored_count,
    stored_numbers,
    wait_stored,
)
from tests.helpers import wait_until
from tests.scratch_postgres import ScratchPostgres
from tickpipe_core.migrate import migrate

TOTAL, RATE = 15_000, 2_000


def _start(pipeline: Pipeline, feed: NumberedFeed, amqp_url: str | None = None, **env: str) -> tuple[Service, Service]:
    """Ingestion on `feed` and one worker, both on `amqp_url` (default: the shared RabbitMQ)."""
    ingest = pipeline.ingest(feed, "ingest", amqp_url, None, **env)
    return ingest.start(), pipeline.worker(amqp_url=amqp_url).start()


def _read_on(feed: NumberedFeed, ticks: int, what: str) -> None:
    """Wait until the feed has sent `ticks` more (to an ingestion that reads on through a fault)."""
    sent = len(feed.sent())
    wait_until(lambda: len(feed.sent()) > sent + ticks, what, timeout=30)


def test_rabbitmq_down_across_an_ingestion_restart_loses_nothing(
    pipeline: Pipeline, rabbit: ScratchRabbit, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    """The row that lost 45,500 of 60,000: RabbitMQ stops, ingestion is restarted during the outage."""
    feed = numbered_feed(TOTAL, RATE)
    ingest, worker = _start(pipeline, feed, rabbit.url)
    wait_stored(pipeline.database_url, 2000)
    rabbit.stop_app()
    _read_on(feed, 2000, "ticks read during the outage")
    code, took = ingest.stop()
    assert code == 0 and took < 5, (code, took, pipeline.logs())  # SIGTERM in an outage: spooled, out in 5 s
    ingest.start()  # while RabbitMQ is still down: it starts, reads the feed and spools
    wait_until(lambda: '"amqp_unreachable"' in ingest.last_run(), "the second start to meet the outage", timeout=30)
    _read_on(feed, 1000, "the second start to read the feed")
    assert ingest.running, pipeline.logs()
    rabbit.start_app()
    pipeline.settle(feed, [ingest], worker)
    assert_exactly_once(pipeline.database_url, feed.sent())
    assert "Traceback" not in ingest.log()


def test_rabbitmq_stop_and_start_mid_stream_loses_and_duplicates_nothing(
    pipeline: Pipeline, rabbit: ScratchRabbit, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    feed = numbered_feed(TOTAL, RATE)
    ingest, worker = _start(pipeline, feed, rabbit.url)
    wait_stored(pipeline.database_url, 2000)
    rabbit.stop_app()
    _read_on(feed, 2000, "ticks read during the outage")
    rabbit.start_app()
    pipeline.settle(feed, [ingest], worker)
    assert_exactly_once(pipeline.database_url, feed.sent())


def test_a_full_spool_loses_only_what_it_counts_per_instrument(
    pipeline: Pipeline, rabbit: ScratchRabbit, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    """The spool's disk is capped at 1 MiB and RabbitMQ stays down past it: the loss is counted, to the tick."""
    feed = numbered_feed(TOTAL, RATE)
    ingest, worker = _start(pipeline, feed, rabbit.url, INGEST_SPOOL_MAX_BYTES=str(1 << 20))
    wait_stored(pipeline.database_url, 1000)
    rabbit.stop_app()
    wait_until(lambda: '"spool_full_ticks_lost"' in ingest.log(), "the spool to fill", timeout=60)
    rabbit.start_app()
    pipeline.settle(feed, [ingest], worker)
    lost: Counter[str] = Counter()
    for stopped in log_events(ingest.log(), "ingest_stopped"):
        lost.update(stopped.get("lost_by_instrument", {}))
    sent, stored = feed.sent(), stored_numbers(pipeline.database_url)
    assert len(stored) == len(set(stored))  # nothing twice
    missing = set(sent) - set(stored)
    assert len(missing) == sum(lost.values()) > 0  # lost exactly what was counted
    by_instrument = Counter(
        f"{t.quote.segment}:{t.quote.security_id}" for t in feed.server.sent if t.quote.volume in missing
    )
    assert by_instrument == lost  # and counted against the right instruments


def test_ingestion_killed_loses_only_frames_it_never_read(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    feed = numbered_feed(TOTAL, RATE)
    ingest, worker = _start(pipeline, feed)
    wait_stored(pipeline.database_url, 3000)
    ingest.kill()
    sent_at_kill = len(feed.sent())
    ingest.start()  # replays its spool, reconnects to the feed
    pipeline.settle(feed, [ingest], worker)
    sent = feed.sent()
    stored = stored_numbers(pipeline.database_url)
    assert len(stored) == len(set(stored))  # nothing twice, although the spool was replayed
    missing = sorted(set(sent) - set(stored))
    # What is missing was written to the dead connection and never read: one run of consecutive
    # numbers, all sent before the kill was noticed, and no more than the socket buffers can hold.
    if missing:
        assert missing == list(range(missing[0], missing[-1] + 1))
        assert missing[-1] <= sent_at_kill + 64
        assert len(missing) * 162 <= _socket_buffer_bytes()
    assert set(stored) <= set(sent)


def _socket_buffer_bytes() -> int:
    """The most a sender's and a receiver's TCP buffers can hold between them on this machine."""
    rmem = int(open("/proc/sys/net/ipv4/tcp_rmem").read().split()[2])  # noqa: SIM115
    wmem = int(open("/proc/sys/net/ipv4/tcp_wmem").read().split()[2])  # noqa: SIM115
    return rmem + wmem + (1 << 20)  # and the WebSocket library's frame queue


def test_worker_killed_mid_batch_stores_each_tick_once(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    feed = numbered_feed(TOTAL, RATE)
    ingest, worker = _start(pipeline, feed)
    for _ in range(3):
        wait_stored(pipeline.database_url, stored_count(pipeline.database_url) + 1500)
        worker.kill()
        worker.start()
    pipeline.settle(feed, [ingest], worker)
    assert_exactly_once(pipeline.database_url, feed.sent())


def test_postgresql_restart_mid_stream_loses_and_duplicates_nothing(
    pipeline: Pipeline, scratch_postgres: ScratchPostgres, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    migrate(scratch_postgres.url)
    pipeline.database_url = scratch_postgres.url
    feed = numbered_feed(TOTAL, RATE)
    ingest, worker = _start(pipeline, feed)
    wait_stored(scratch_postgres.url, 2000)
    scratch_postgres.stop(mode="fast")
    wait_until(lambda: '"batch_retry"' in worker.log(), "the outage met", 30)
    scratch_postgres.start()
    pipeline.settle(feed, [ingest], worker)
    assert_exactly_once(scratch_postgres.url, feed.sent())


def test_a_worker_whose_rabbitmq_and_database_vanished_stops_within_10_s_of_sigterm(
    pipeline: Pipeline,
    rabbit: ScratchRabbit,
    scratch_postgres: ScratchPostgres,
    numbered_feed: Callable[..., NumberedFeed],
) -> None:
    migrate(scratch_postgres.url)
    pipeline.database_url = scratch_postgres.url
    feed = numbered_feed(TOTAL, RATE)
    _, worker = _start(pipeline, feed, rabbit.url)
    wait_stored(scratch_postgres.url, 1000)
    scratch_postgres.stop(mode="immediate")
    rabbit.stop_app()
    try:
        wait_until(lambda: '"batch_retry"' in worker.log(), "the worker to meet the outage", timeout=30)
        code, took = worker.stop(timeout=30)
        assert took < 10, pipeline.logs()
        assert code == 0
    finally:
        rabbit.start_app()


def test_the_spool_of_a_host_that_will_not_ingest_again_is_read_and_drained_by_the_cli(
    pipeline: Pipeline, rabbit: ScratchRabbit, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    """RabbitMQ is down when ingestion stops for good: `tickpipe spool status` shows what is held, `drain` sends it."""
    feed = numbered_feed(6_000, RATE)
    ingest, worker = _start(pipeline, feed, rabbit.url)
    wait_stored(pipeline.database_url, 1000)
    rabbit.stop_app()
    wait_until(lambda: feed.done, "the feed to send everything", timeout=60)
    assert ingest.stop()[0] == 0
    spooled = int(last_event(ingest.log(), "ingest_stopped")["spool.pending_ticks"])
    assert spooled > 0
    env = {**ingest.env, "AMQP_URL": rabbit.url}
    status = subprocess.run(
        [sys.executable, "-m", "tickpipe", "spool", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and f"ticks      {spooled:,} in" in status.stdout, status
    rabbit.start_app()
    drain = subprocess.run(
        [sys.executable, "-m", "tickpipe", "spool", "drain"], env=env, capture_output=True, text=True, timeout=60
    )
    assert drain.returncode == 0 and "the spool is empty" in drain.stderr, drain.stderr[-2000:]
    wait_stored(pipeline.database_url, len(feed.sent()))
    worker.stop()
    assert_exactly_once(pipeline.database_url, feed.sent())
