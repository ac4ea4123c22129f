"""What a broker sends twice is stored once: snapshots after reconnects, and two ingestions on one feed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.faults.conftest import Pipeline
from tests.faults.harness import NumberedFeed, assert_exactly_once, stored_count, wait_stored
from tests.helpers import wait_until
from tickpipe.cli.simulate import feed_environment
from tickpipe_simulator.dhan import numbered_capture
from tickpipe_simulator.market import make_instruments
from tickpipe_simulator.replay import ThreadedReplay


def test_a_snapshot_resent_after_each_of_ten_reconnects_is_stored_once(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    feed = numbered_feed(12_000, 2_000, snapshot=True)
    ingest = pipeline.ingest(feed).start()
    worker = pipeline.worker().start()
    for drop in range(10):
        connections, sent = feed.server.connections, len(feed.sent())
        wait_until(lambda s=sent: len(feed.sent()) > s + 200, "ticks on the new connection", timeout=30)  # type: ignore[misc]
        feed.drop()  # the broker closes the socket; ingestion reconnects and is sent its snapshot
        wait_until(lambda c=connections: feed.server.connections > c, f"reconnect {drop + 1}", timeout=30)  # type: ignore[misc]
    pipeline.settle(feed, [ingest], worker)
    assert feed.server.snapshots_sent >= 10 * 20 - 20  # every instrument's last packet, again, on each reconnect
    assert_exactly_once(pipeline.database_url, feed.sent())


def test_two_ingestions_on_one_feed_store_each_tick_once_and_either_may_be_killed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    total = 16_000
    market = make_instruments(20, seed=3)
    with ThreadedReplay(numbered_capture(total, 2_000, market)) as feed:
        env = feed_environment("dhan", f"ws://127.0.0.1:{feed.port}", market) | {"DHAN_FEED_MODE": "full"}
        a = pipeline.service("ingest-a", ["ingest"], **env).start()
        b = pipeline.service("ingest-b", ["ingest"], **env).start()
        worker = pipeline.worker().start()
        wait_stored(pipeline.database_url, total // 4)
        a.kill()  # B alone carries the feed
        a.start()  # A comes back: the feed starts over for it, and all it sends again is already stored
        wait_stored(pipeline.database_url, stored_count(pipeline.database_url) + total // 4)
        b.kill()  # now A alone
        wait_stored(pipeline.database_url, total, timeout=60)
        code, _ = a.stop()
        assert code == 0
        worker.stop()
    assert_exactly_once(pipeline.database_url, list(range(1, total + 1)))
