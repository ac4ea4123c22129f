"""The Kite ticker over real sockets against the Kite simulator: modes, frames, heartbeats, text
frames, reconnects with resubscription, refused credentials, and the connection limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.helpers import until
from tickpipe_brokers.adapter import FeedParts
from tickpipe_brokers.feed import Watchdog
from tickpipe_brokers.kite.encode import kite_token
from tickpipe_brokers.kite.feed import KiteFeed, shard, subscribe_messages
from tickpipe_brokers.market_hours import MarketHours
from tickpipe_core import Backoff, ConfigError, FeedAuthError, Tick
from tickpipe_simulator.kite import KiteSimulator
from tickpipe_simulator.market import make_instruments

TOKEN = "kite-secret-access-token-0123456789"
INSTRUMENTS = make_instruments(4, seed=8)
TOKENS = [kite_token(i) for i in INSTRUMENTS]


def _run(
    scenario: Callable[[KiteSimulator, KiteFeed, list[Tick]], Awaitable[None]],
    subscriptions: list[tuple[int, str]],
    *,
    total: int = 400,
    api_key: str = "key",
    watchdog: Watchdog | None = None,
) -> tuple[KiteSimulator, KiteFeed, list[Tick], list[bytes], list[MutableMapping[str, Any]]]:
    sim = KiteSimulator(INSTRUMENTS, rate=500, max_ticks=total, record=True, packets_per_frame=4)
    ticks: list[Tick] = []
    orders: list[bytes] = []

    async def main() -> KiteFeed:
        async with sim.serving() as server:
            port = server.sockets[0].getsockname()[1]
            feed = KiteFeed(
                base_url=f"ws://127.0.0.1:{port}",
                api_key=api_key,
                token=SecretStr(TOKEN),
                subscriptions=subscriptions,  # type: ignore[arg-type]
                parts=FeedParts(ticks.extend, watchdog or Watchdog(), orders=orders.append),
            )
            for conn in feed.connections:
                conn.backoff = Backoff(base=0.01, cap=0.05)
            task = asyncio.create_task(feed.run())
            try:
                await scenario(sim, feed, ticks)
            finally:
                feed.stop()
                await asyncio.wait_for(task, 10)
            return feed

    with capture_logs() as logs:
        feed = asyncio.run(main())
    assert TOKEN not in repr(logs)
    return sim, feed, ticks, orders, logs


async def _all(sim: KiteSimulator, feed: KiteFeed, ticks: list[Tick]) -> None:
    await until(lambda: sim.done and len(ticks) >= sim.ticks_sent, "every tick")


def _key(t: Tick) -> tuple[int, int | None]:
    return t.security_id, t.volume


def test_each_instrument_streams_in_its_mode_and_nothing_is_lost() -> None:
    modes = ["ltp", "quote", "full", "full"]
    sim, feed, ticks, _, _ = _run(_all, list(zip(TOKENS, modes, strict=True)))
    assert {t.security_id: t.packet for t in ticks} == dict(zip(TOKENS, modes, strict=True))
    assert len(ticks) == len(sim.sent) == 400
    for got, sent in zip(ticks, sim.sent, strict=True):
        q = sent.quote
        assert got.ltp == round(q.ltp * 100) / 100
        if got.packet == "full":
            assert (got.volume, got.oi, got.bid_qty, got.ask_orders) == (
                q.volume, q.oi, tuple(q.bid_qty), tuple(q.ask_orders),
            )  # fmt: skip
            assert got.time.timestamp() == sent.ltt and got.time_source == "exchange"
    assert (
        json.loads(sim.requests[0])
        if isinstance(sim.requests[0], str)
        else sim.requests[0]
        == {
            "a": "subscribe",
            "v": TOKENS,
        }
    )
    assert feed.decoder.counters["bad_packets"] == 0


def test_heartbeats_and_text_frames_errors_counted_orders_passed_on() -> None:
    order = {"type": "order", "data": {"order_id": "151220000000000", "status": "COMPLETE"}}

    async def scenario(sim: KiteSimulator, feed: KiteFeed, ticks: list[Tick]) -> None:
        await _all(sim, feed, ticks)
        await sim.send_text(json.dumps({"type": "error", "data": "Invalid mode"}))
        await sim.send_text(json.dumps(order))
        await sim.send_text(json.dumps({"type": "message", "data": "hello"}))
        await sim.send_text("not json")
        await until(lambda: feed.decoder.counters["heartbeats"] >= 1, "a heartbeat while idle")

    _, feed, _, orders, logs = _run(scenario, [(t, "quote") for t in TOKENS], total=50)
    counters = feed.counters
    assert (counters["text.error"], counters["text.order"], counters["text.message"], counters["text.unparsed"]) == (
        1, 1, 1, 1,
    )  # fmt: skip
    assert [json.loads(o) for o in orders] == [order]
    assert [e["data"] for e in logs if e["event"] == "kite_error"] == ["Invalid mode"]


def test_a_flood_of_text_frames_is_counted_in_full_and_logged_sparingly() -> None:
    async def scenario(sim: KiteSimulator, feed: KiteFeed, ticks: list[Tick]) -> None:
        await _all(sim, feed, ticks)
        for n in range(2_500):
            await sim.send_text(json.dumps({"type": "message", "data": f"note {n}"}))
            await sim.send_text(f"not json {n}")
        await until(lambda: feed.counters["text.unparsed"] == 2_500, "every text frame")

    _, feed, _, _, logs = _run(scenario, [(t, "quote") for t in TOKENS], total=50)
    assert (feed.counters["text.message"], feed.counters["text.unparsed"]) == (2_500, 2_500)
    logged = [e for e in logs if e["event"] in ("kite_message", "kite_text_unparsed")]
    assert len(logged) == 2 * (20 + 2)  # the first 20 of each kind, then the 1,000th and the 2,000th


def test_an_abrupt_close_reconnects_resubscribes_with_modes_and_loses_nothing() -> None:
    async def scenario(sim: KiteSimulator, feed: KiteFeed, ticks: list[Tick]) -> None:
        await until(lambda: len(ticks) >= 100, "ticks before the fault")
        await sim.drop()
        await _all(sim, feed, ticks)

    sim, feed, ticks, _, _ = _run(scenario, [(TOKENS[0], "ltp"), *((t, "full") for t in TOKENS[1:])])
    assert feed.connections[0].connects == 2
    modes = [r for r in sim.requests if isinstance(r, dict) and r["a"] == "mode"]
    assert modes == [{"a": "mode", "v": ["ltp", [TOKENS[0]]]}, {"a": "mode", "v": ["full", TOKENS[1:]]}] * 2
    assert sorted(t.volume or 0 for t in ticks if t.packet == "full") == sorted(
        s.quote.volume for s in sim.sent if s.packet == "full"
    )
    assert len(ticks) == len(sim.sent)


def test_refused_credentials_stop_the_feed_with_one_error_and_no_token_in_logs() -> None:
    """The feed itself stops on HTTP 403 (a feed that retried instead would never return)."""
    sim = KiteSimulator(INSTRUMENTS, rate=500)

    async def main() -> None:
        async with sim.serving() as server:
            port = server.sockets[0].getsockname()[1]
            feed = KiteFeed(
                base_url=f"ws://127.0.0.1:{port}",
                api_key="",  # the simulator answers HTTP 403 without one, as Kite does
                token=SecretStr(TOKEN),
                subscriptions=[(TOKENS[0], "ltp")],
                parts=FeedParts(lambda ticks: None),
            )
            await feed.run()

    with capture_logs() as logs, pytest.raises(FeedAuthError, match="refused the credentials"):
        asyncio.run(main())
    assert sum(e["event"] == "feed_stopped" for e in logs) == 1
    assert TOKEN not in repr(logs)


def test_subscribe_messages_group_tokens_by_mode() -> None:
    assert [json.loads(m) for m in subscribe_messages([(1, "full"), (2, "ltp"), (3, "full")])] == [
        {"a": "subscribe", "v": [1, 2, 3]},
        {"a": "mode", "v": ["ltp", [2]]},
        {"a": "mode", "v": ["full", [1, 3]]},
    ]


def test_at_most_3000_per_connection_and_3_connections() -> None:
    parts = shard([(t, "ltp") for t in range(1, 7001)])
    assert [len(p) for p in parts] == [3000, 3000, 1000]
    with pytest.raises(ConfigError, match="9001 instruments requested; Kite allows at most 9000"):
        shard([(t, "ltp") for t in range(1, 9002)])


def test_a_connection_that_only_sends_heartbeats_is_recycled() -> None:
    """A subscription the broker ignored (a token it does not know): heartbeats flow, data never does."""
    unknown = [(TOKENS[0] + 7 * 256, "full")]  # not in the simulator's market: nothing but heartbeats

    async def scenario(sim: KiteSimulator, feed: KiteFeed, ticks: list[Tick]) -> None:
        conn = feed.connections[0]
        await until(lambda: sim.heartbeats >= 2 and conn.reconnects["no_data"] >= 1, "a recycle", timeout=20)
        assert conn.connects >= 2 and not ticks

    _, _, _, _, logs = _run(scenario, unknown, watchdog=Watchdog(1.5, MarketHours("always")))
    silent = [e for e in logs if e["event"] == "feed_silent"]
    assert silent and silent[0]["frames_without_data"] is True


def test_no_feed_object_shows_the_token_in_its_repr() -> None:
    feed = KiteFeed(
        base_url="ws://127.0.0.1:1",
        api_key="key",
        token=SecretStr(TOKEN),
        subscriptions=[(TOKENS[0], "full")],
        parts=FeedParts(print),
    )
    assert TOKEN not in repr(feed.connections) and TOKEN not in repr(vars(feed))
