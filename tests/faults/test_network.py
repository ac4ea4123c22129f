"""A network that stalls and cuts: a TCP proxy of our own in front of RabbitMQ, and in front of the feed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.conftest import Pipeline
from tests.faults.harness import (
    NumberedFeed,
    TcpProxy,
    assert_exactly_once,
    log_events,
    stored_count,
    stored_numbers,
    wait_stored,
)
from tests.helpers import wait_until

TOTAL, RATE = 30_000, 3_000


@pytest.fixture
def proxies() -> Iterator[Callable[[int], TcpProxy]]:
    made: list[TcpProxy] = []

    def make(port: int) -> TcpProxy:
        made.append(TcpProxy(port))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_rabbitmq_behind_a_network_that_stalls_cuts_and_refuses_loses_and_duplicates_nothing(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed], proxies: Callable[[int], TcpProxy]
) -> None:
    proxy = proxies(5672)
    amqp = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    feed = numbered_feed(TOTAL, RATE)
    ingest = pipeline.ingest(feed, amqp_url=amqp).start()
    worker = pipeline.worker(amqp_url=amqp).start()
    for fault in (proxy.stall, proxy.cut, proxy.refuse):
        wait_stored(pipeline.database_url, stored_count(pipeline.database_url) + 1000)
        fault()
        time.sleep(3)  # the fault lasts a while; what happens meanwhile is the point
        proxy.heal()
    pipeline.settle(feed, [ingest], worker)
    assert_exactly_once(pipeline.database_url, feed.sent())
    assert proxy.connections > 2  # the cuts were real: both sides reconnected


def test_a_feed_behind_a_network_that_stalls_and_cuts_loses_only_what_the_network_held(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed], proxies: Callable[[int], TcpProxy]
) -> None:
    feed = numbered_feed(TOTAL, RATE)
    proxy = proxies(feed.port)
    ingest = pipeline.ingest(feed, feed_port=proxy.port).start()
    worker = pipeline.worker().start()
    for fault in (proxy.stall, proxy.cut, proxy.stall):
        wait_stored(pipeline.database_url, stored_count(pipeline.database_url) + 1000)
        connections = proxy.connections
        fault()
        if fault == proxy.stall:  # the watchdog (3 s here) finds the silence and reconnects
            wait_until(lambda c=connections: proxy.connections > c, "a reconnect after the stall", timeout=30)  # type: ignore[misc]
        proxy.heal()
    pipeline.settle(feed, [ingest], worker)
    stored = stored_numbers(pipeline.database_url)
    assert len(stored) == len(set(stored))  # nothing twice
    sent = feed.server.sent
    assert set(stored) <= {t.quote.volume for t in sent}
    # Everything ingestion read is stored: its own count of ticks read equals the rows.
    assert len(stored) == sum(int(e["ticks"]) for e in log_events(ingest.log(), "ingest_stopped"))
    # What is missing went out on a connection the network broke, and is the tail of what that
    # connection carried: what the stalled or cut network (socket buffers, the proxy) held.
    kept = set(stored)
    by_connection: dict[int, list[bool]] = {}
    for t in sent:
        by_connection.setdefault(t.connection, []).append(t.quote.volume in kept)
    assert len(by_connection) >= 3  # the stalls and the cut each cost a connection
    for connection, flags in by_connection.items():
        first_missing = flags.index(False) if False in flags else len(flags)
        assert not any(flags[first_missing:]), f"connection {connection}: a gap that is not a tail"
