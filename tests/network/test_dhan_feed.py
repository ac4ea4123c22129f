"""The Dhan feed over real sockets: secrets stay out of logs, auth disconnects stop, limits hold."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.helpers import free_port, until
from tickpipe_brokers.adapter import FeedParts
from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.feed import DhanFeed, shard, subscribe_messages
from tickpipe_core import Backoff, ConfigError, FeedAuthError

TOKEN = "eyJ-known-secret-token-1234567890"


def _feed(port: int, backoff: Backoff | None = None) -> DhanFeed:
    """A one-instrument feed on a local port, with a fast backoff so reconnects come quickly."""
    feed = DhanFeed(
        base_url=f"ws://127.0.0.1:{port}",
        client_id="1000",
        token=SecretStr(TOKEN),
        mode="full",
        instruments=[("NSE_FNO", 1)],
        parts=FeedParts(lambda ticks: None),
    )
    for conn in feed.connections:
        conn.backoff = backoff or conn.backoff
    return feed


def test_the_token_appears_in_no_log_line_around_a_failed_connection() -> None:
    feed = _feed(free_port(), Backoff(base=0.01, cap=0.02))

    async def scenario() -> None:
        task = asyncio.create_task(feed.run())
        await until(lambda: sum(e["event"] == "feed_disconnected" for e in logs) >= 2, "two failed connects")
        feed.stop()
        await task

    with capture_logs() as logs:
        asyncio.run(scenario())
    text = json.dumps(logs, default=str)
    assert TOKEN not in text
    assert "token=***" in text or "?***" in text  # the URL is logged, redacted


def test_auth_disconnect_stops_the_feed_with_one_clear_error_and_no_token() -> None:
    from websockets.asyncio.server import serve

    async def reject(ws):  # type: ignore[no-untyped-def]
        await ws.send(wire.DISCONNECT_PACKET.pack(wire.DISCONNECT, 10, 0, 0, 807))
        await asyncio.sleep(1)

    async def scenario() -> None:
        async with serve(reject, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            await _feed(port).run()

    with capture_logs() as logs, pytest.raises(FeedAuthError) as raised:
        asyncio.run(scenario())
    error = raised.value
    assert "807 (access token expired)" in str(error)
    assert TOKEN not in json.dumps(logs, default=str) + str(error)


def test_subscriptions_are_chunked_by_100_and_sharded_by_5000() -> None:
    instruments = [("NSE_FNO", i) for i in range(12_345)]
    parts = shard(instruments)
    assert [len(p) for p in parts] == [5000, 5000, 2345]
    messages = subscribe_messages("quote", parts[2])
    assert len(messages) == 24
    first = json.loads(messages[0])
    assert first["RequestCode"] == 17
    assert first["InstrumentCount"] == 100
    assert first["InstrumentList"][0] == {"ExchangeSegment": "NSE_FNO", "SecurityId": "10000"}
    with pytest.raises(ConfigError, match="25000"):
        shard([("NSE_FNO", i) for i in range(25_001)])


def test_a_broker_that_only_sends_disconnects_gets_a_growing_backoff() -> None:
    """A disconnect packet is a frame, but not data flowing again: it must not reset the backoff."""
    from websockets.asyncio.server import serve

    async def disconnect_at_once(ws):  # type: ignore[no-untyped-def]
        await ws.send(wire.DISCONNECT_PACKET.pack(wire.DISCONNECT, 10, 0, 0, 800))
        await asyncio.sleep(1)

    async def scenario() -> None:
        async with serve(disconnect_at_once, "127.0.0.1", 0) as server:
            feed = _feed(server.sockets[0].getsockname()[1], Backoff(base=0.001, cap=0.01))
            task = asyncio.create_task(feed.run())
            await until(lambda: feed.connections[0].connects >= 4, "four connects")
            feed.stop()
            await task

    with capture_logs() as logs:
        asyncio.run(scenario())
    attempts = [e["attempt"] for e in logs if e["event"] == "feed_reconnecting"]
    assert attempts[:3] == [1, 2, 3]  # counting up, never back to 1


def test_text_frames_are_counted_in_full_and_logged_sparingly() -> None:
    from websockets.asyncio.server import serve

    async def chatty(ws):  # type: ignore[no-untyped-def]
        await ws.recv()  # the subscription
        for n in range(5_000):
            await ws.send(f"note {n}")
        await ws.wait_closed()

    async def scenario() -> DhanFeed:
        async with serve(chatty, "127.0.0.1", 0) as server:
            feed = _feed(server.sockets[0].getsockname()[1])
            task = asyncio.create_task(feed.run())
            await until(lambda: feed.counters["text_frames"] == 5_000, "every text frame counted")
            feed.stop()
            await task
            return feed

    with capture_logs() as logs:
        feed = asyncio.run(scenario())
    assert feed.counters["text_frames"] == 5_000
    assert sum(e["event"] == "dhan_text_frame" for e in logs) == 20 + 5  # the first 20, then every 1000th
