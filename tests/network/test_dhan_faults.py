"""Dhan feed faults over a real socket: every disconnect code, silence, abrupt close, malformed frames.

Each test streams from the simulator, injects one fault mid-stream, and checks both what the feed
did (reconnect, stop, back off) and that every tick the simulator wrote before and after the fault
arrived decoded, none lost and none doubled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from tests.helpers import until
from tickpipe_brokers.adapter import FeedParts
from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.encode import encode_full
from tickpipe_brokers.dhan.feed import DhanFeed
from tickpipe_brokers.feed import Watchdog
from tickpipe_brokers.market_hours import MarketHours
from tickpipe_core import Backoff, FeedAuthError, Tick
from tickpipe_core.capture import CaptureWriter
from tickpipe_core.india import india_today
from tickpipe_simulator.dhan import DhanSimulator
from tickpipe_simulator.market import make_instruments

TOKEN = "eyJ-fault-test-token-0987654321"
TOTAL = 600

Scenario = Callable[[DhanSimulator, DhanFeed, list[Tick]], Awaitable[None]]


def _run(
    scenario: Scenario,
    *,
    mode: str = "full",
    watchdog: Watchdog | None = None,
    rate_limit_backoff_s: float = 0.5,
    permanent_backoff_s: float = 0.5,
    expect_auth_error: bool = False,
) -> tuple[DhanSimulator, DhanFeed, list[Tick], list[MutableMapping[str, Any]]]:
    instruments = make_instruments(4, seed=3)
    sim = DhanSimulator(instruments, rate=600, max_ticks=TOTAL, record=True, packets_per_frame=3)
    ticks: list[Tick] = []

    async def main() -> DhanFeed:
        async with sim.serving() as server:
            feed = DhanFeed(
                base_url=f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}",
                client_id="1000",
                token=SecretStr(TOKEN),
                mode=mode,  # type: ignore[arg-type]
                instruments=[(i.segment, i.security_id) for i in instruments],
                parts=FeedParts(ticks.extend, watchdog or Watchdog()),
                rate_limit_backoff_s=rate_limit_backoff_s,
                permanent_backoff_s=permanent_backoff_s,
            )
            for conn in feed.connections:
                conn.backoff = Backoff(base=0.01, cap=0.05)
            task = asyncio.create_task(feed.run())
            await until(lambda: len(ticks) >= 100, "ticks before the fault")
            await scenario(sim, feed, ticks)
            if expect_auth_error:
                with pytest.raises(FeedAuthError):  # itself, not wrapped in the feed's task group
                    await asyncio.wait_for(task, 5)
                return feed
            await until(lambda: sim.done and len(ticks) >= sim.ticks_sent, "every tick to arrive")
            feed.stop()
            await task
            return feed

    with capture_logs() as logs:
        feed = asyncio.run(main())
    assert TOKEN not in repr(logs)
    return sim, feed, ticks, logs


def _assert_nothing_lost(sim: DhanSimulator, ticks: list[Tick]) -> None:
    sent = sorted((s.quote.security_id, s.quote.volume) for s in sim.sent)
    got = sorted((t.security_id, t.volume) for t in ticks)
    assert got == sent


def _events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


@pytest.mark.parametrize("code", [800, 804, 805, 806, 811, 812, 813, 814])
def test_a_recoverable_disconnect_code_reconnects_resubscribes_and_loses_nothing(code: int) -> None:
    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        await sim.disconnect(code)

    sim, feed, ticks, logs = _run(fault)

    assert feed.connections[0].connects == 2
    assert sim.connections == 2
    assert sum(1 for r in sim.requests if r["RequestCode"] == 21) == 2  # subscribed again after reconnecting
    _assert_nothing_lost(sim, ticks)
    (disconnected,) = _events(logs, "feed_disconnected")
    assert f"Dhan disconnected with {code} ({wire.DISCONNECT_REASONS[code]})" in str(disconnected["error"])
    if code == 804:
        assert "this connection asked for 4 instruments" in str(disconnected["error"])
    (reconnecting,) = _events(logs, "feed_reconnecting")
    if code == 805 or code in wire.PERMANENT_DISCONNECT_CODES:
        # A quick retry cannot help: the wait is what is left of the 0.5 s floor (counted from the
        # disconnect, so closing the socket uses some of it), never the quick backoff (at most 0.05 s).
        assert 0.05 < float(reconnecting["delay_s"]) <= 0.5
    else:
        assert float(reconnecting["delay_s"]) <= 0.05
    if code in wire.PERMANENT_DISCONNECT_CODES:
        assert "fix the subscription: retrying in 0.5 s" in str(disconnected["error"])


@pytest.mark.parametrize("code", sorted(wire.AUTH_DISCONNECT_CODES))
def test_an_auth_disconnect_code_stops_the_feed_without_retrying(code: int) -> None:
    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        await sim.disconnect(code)

    sim, _feed, ticks, logs = _run(fault, expect_auth_error=True)

    assert sim.connections == 1  # never hammered the broker with a token that cannot work
    (stopped,) = _events(logs, "feed_stopped")
    assert f"Dhan disconnected with {code}" in str(stopped["reason"])
    _assert_nothing_lost(sim, ticks)  # what came before the disconnect packet was all decoded


def test_an_abrupt_close_reconnects_and_loses_nothing() -> None:
    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        await sim.drop()

    sim, feed, ticks, logs = _run(fault)

    assert feed.connections[0].connects == 2
    assert _events(logs, "feed_disconnected")
    _assert_nothing_lost(sim, ticks)


def test_a_feed_silent_while_the_market_is_open_is_reconnected_by_the_watchdog() -> None:
    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        sim.silence(0.8)
        await until(lambda: feed.connections[0].connects == 2, "the watchdog to reconnect")

    sim, _feed, ticks, logs = _run(fault, watchdog=Watchdog(0.3, MarketHours("always")))

    assert _events(logs, "feed_silent")
    _assert_nothing_lost(sim, ticks)


def test_silence_outside_market_hours_is_left_alone() -> None:
    closed = MarketHours("nse", holidays=frozenset({india_today()}))

    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        sim.silence(0.8)
        await asyncio.sleep(0.8)

    sim, feed, ticks, logs = _run(fault, watchdog=Watchdog(0.2, closed))

    assert feed.connections[0].connects == 1
    assert not _events(logs, "feed_silent")
    _assert_nothing_lost(sim, ticks)


_STRAY_ID = 99999  # a good packet for an instrument nobody subscribed, injected between bad ones


def test_malformed_frames_are_counted_and_logged_and_good_packets_around_them_survive() -> None:
    stray = make_instruments(1, seed=9, first_id=_STRAY_ID)[0]
    good = encode_full(stray.step(), int(time.time()) + wire.IST_OFFSET_SECONDS)
    truncated = good[:100]
    wrong_length = bytearray(good)
    wrong_length[1:3] = (60).to_bytes(2, "little")  # a full packet claiming 60 bytes: resync after 162
    unknown = bytes([99]) + (12).to_bytes(2, "little") + bytes(9)

    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        await sim.inject(good + unknown + good)
        await sim.inject(bytes(wrong_length) + good)
        await sim.inject(good + truncated)
        await sim.inject(b"\x08")

    sim, feed, ticks, logs = _run(fault)

    assert feed.connections[0].connects == 1  # bad bytes never cost the connection
    assert sum(1 for t in ticks if t.security_id == _STRAY_ID) == 4
    bad = _events(logs, "dhan_bad_packet")
    assert len(bad) == 4 == feed.decoder.counters["bad_packets"]
    assert {e["hex"] for e in bad} >= {unknown.hex(), truncated.hex(), "08"}
    _assert_nothing_lost(sim, [t for t in ticks if t.security_id != _STRAY_ID])


def test_quote_mode_streams_quotes_oi_and_occasional_full_packets_with_state_carried() -> None:
    async def nothing(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        sim.full_every = 7

    sim, feed, ticks, _logs = _run(nothing, mode="quote")

    counters = feed.decoder.counters
    assert counters["packets.4"] > 0 and counters["packets.5"] > 0 and counters["packets.8"] > 0
    assert counters["packets.6"] == 4  # one previous close per subscribed instrument
    assert {t.packet for t in ticks} == {"quote", "full"}
    assert all(t.prev_close is not None and t.change is not None for t in ticks)
    assert [t.packet for t in ticks] == [s.packet for s in sim.sent]
    _assert_nothing_lost(sim, ticks)


def test_a_full_capture_disk_stops_recording_not_ingestion() -> None:
    """/dev/full refuses every write with ENOSPC, as a full disk does."""
    writer = CaptureWriter(Path("/dev/full"), "dhan", flush_every=1)
    recorder = writer.write

    async def fault(sim: DhanSimulator, feed: DhanFeed, ticks: list[Tick]) -> None:
        feed._recorder = recorder  # from now on every frame is also recorded, to a full disk
        await until(lambda: feed.counters["recording_failed"] == 1, "the failed recording")

    sim, feed, ticks, logs = _run(fault)

    assert feed.connections[0].connects == 1  # the feed never reconnected over it
    assert len(_events(logs, "recording_stopped")) == 1
    _assert_nothing_lost(sim, ticks)
    writer.close()  # logs, never raises
