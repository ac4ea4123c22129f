"""What a broker sends twice is stored once: snapshots after reconnects, and two ingestions on one feed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.faults.conftest import Pipeline
from tests.faults.harness import LoopThread, NumberedFeed, assert_exactly_once, stored_count, wait_stored
from tests.helpers import wait_until
from tickpipe_ingestion.capture import CapturedFrame
from tickpipe_simulator.bundled import feed_settings
from tickpipe_simulator.dhan import encode_full
from tickpipe_simulator.market import SimInstrument, make_instruments
from tickpipe_simulator.replay import Replay


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


def _numbered_capture(total: int, rate: float) -> tuple[list[CapturedFrame], list[int], list[tuple[str, int]]]:
    """A capture of `total` numbered Dhan full packets, four to a frame, `rate` a second."""
    instruments = make_instruments(20, seed=3)
    frames, numbers, packets = [], [], []
    ltt = 1_795_000_000
    for n in range(1, total + 1):
        inst = instruments[n % len(instruments)]
        quote = inst.step()
        quote.volume = n
        packets.append(encode_full(quote, ltt + n // 1000))
        numbers.append(n)
        if len(packets) == 4 or n == total:
            frames.append(CapturedFrame(n / rate, 0, b"".join(packets)))
            packets = []
    return frames, numbers, [(i.segment, i.security_id) for i in instruments]


@contextlib.contextmanager
def _replay(frames: list[CapturedFrame]) -> Iterator[int]:
    """Serve the same frames, from the start, to every connection (as a broker sends every client the market)."""
    loop = LoopThread()
    ready, stop = threading.Event(), asyncio.Event()
    port: list[int] = []

    async def serve() -> None:
        async with Replay(frames, speed=1.0).serving() as server:
            port.append(int(server.sockets[0].getsockname()[1]))
            ready.set()
            await stop.wait()

    done = asyncio.run_coroutine_threadsafe(serve(), loop.loop)
    assert ready.wait(30)
    try:
        yield port[0]
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        done.result(10)
        loop.close()


def test_two_ingestions_on_one_feed_store_each_tick_once_and_either_may_be_killed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    total = 16_000
    frames, numbers, instruments = _numbered_capture(total, rate=2_000)
    with _replay(frames) as port:
        env = feed_settings("dhan", port, [SimInstrument(s, i, 100.0) for s, i in instruments])
        env["DHAN_FEED_MODE"] = "full"
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
    assert_exactly_once(pipeline.database_url, numbers)
