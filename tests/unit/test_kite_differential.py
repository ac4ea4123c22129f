"""Differential test: our Kite decoder against the official `kiteconnect` SDK's binary parser.

100,000 random packets over every length (LTP, index quote, index full, quote, full) and every
segment, several per frame. Field values must be identical, except where we differ on purpose:
- prices are read signed (the SDK reads them unsigned), so random prices are kept non-negative
  here; a negative price has its own golden test;
- `change`: the SDK's is a percentage of the close, ours is absolute; we compare the SDK's value
  with our `change_pct`, and a zero close gives None for us where the SDK gives 0;
- times: the SDK gives naive local datetimes, we give aware UTC; the instants must be equal. A zero
  time is "no time" for us (we use the receive time) where the SDK gives the 1970 epoch.
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from tickpipe_brokers.kite import wire
from tickpipe_brokers.kite.parse import KiteDecoder
from tickpipe_core import Tick

ticker = pytest.importorskip("kiteconnect.ticker")

PACKETS_PER_LENGTH = 20_000  # x 5 lengths = 100,000 packets
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
LENGTHS = (wire.LTP, wire.INDEX_QUOTE, wire.INDEX_FULL, wire.QUOTE, wire.FULL)
# Offsets of the signed price fields per length: kept non-negative, as a real feed sends them.
PRICES = {
    wire.LTP: (4,),
    wire.INDEX_QUOTE: (4, 8, 12, 16, 20, 24),
    wire.INDEX_FULL: (4, 8, 12, 16, 20, 24),
    wire.QUOTE: (4, 12, 28, 32, 36, 40),
    wire.FULL: (4, 12, 28, 32, 36, 40, *(64 + 12 * i + 4 for i in range(10))),
}
TIMES = {wire.INDEX_FULL: (28,), wire.FULL: (44, 60)}


def _packet(rng: random.Random, length: int) -> bytes:
    body = bytearray(rng.randbytes(length))
    token = rng.getrandbits(24) << 8 | rng.choice(list(wire.SEGMENTS))
    struct.pack_into(">I", body, 0, token)
    for offset in PRICES[length]:
        struct.pack_into(">i", body, offset, rng.randrange(0, 2**31) if rng.random() < 0.3 else rng.randrange(0, 10**8))
    for offset in TIMES.get(length, ()):
        # Real times, and now and then zero; a random 32-bit value may be past what datetime holds.
        struct.pack_into(">I", body, offset, 0 if rng.random() < 0.05 else rng.randrange(1, 2**31))
    return bytes(body)


def _frame(packets: list[bytes]) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def _same_instant(ours: datetime | None, theirs: datetime | None) -> bool:
    """The SDK gives naive local times (or None or the epoch for a zero field); we give aware UTC or None."""
    if theirs is None or theirs.timestamp() == 0:
        return ours is None
    assert ours is not None
    return ours.timestamp() == theirs.timestamp()


def _compare(t: Tick, s: dict[str, Any], length: int) -> None:
    assert (t.security_id, t.ltp) == (s["instrument_token"], s["last_price"])
    if length == wire.LTP:
        assert t.packet == "ltp"
        return
    ohlc = s["ohlc"]
    assert (t.open, t.high, t.low, t.close) == (ohlc["open"], ohlc["high"], ohlc["low"], ohlc["close"])
    assert t.change_pct == (s["change"] if ohlc["close"] > 0 else None)
    if length in (wire.INDEX_QUOTE, wire.INDEX_FULL):
        if length == wire.INDEX_FULL:
            assert _same_instant(t.packet_time, s["exchange_timestamp"])
        return
    assert (t.ltq, t.atp, t.volume, t.total_buy_qty, t.total_sell_qty) == (
        s["last_traded_quantity"], s["average_traded_price"], s["volume_traded"],
        s["total_buy_quantity"], s["total_sell_quantity"],
    )  # fmt: skip
    if length == wire.FULL:
        assert (t.oi, t.oi_day_high, t.oi_day_low) == (s["oi"], s["oi_day_high"], s["oi_day_low"])
        assert _same_instant(t.last_trade_time, s["last_trade_time"])
        assert _same_instant(t.packet_time, s["exchange_timestamp"])
        buy, sell = s["depth"]["buy"], s["depth"]["sell"]
        assert list(zip(t.bid_qty, t.bid_price, t.bid_orders, strict=True)) == [
            (d["quantity"], d["price"], d["orders"]) for d in buy
        ]
        assert list(zip(t.ask_qty, t.ask_price, t.ask_orders, strict=True)) == [
            (d["quantity"], d["price"], d["orders"]) for d in sell
        ]


@pytest.mark.parametrize("length", LENGTHS)
def test_every_field_matches_the_official_sdk_on_random_packets(length: int) -> None:
    rng = random.Random(length)
    sdk = object.__new__(ticker.KiteTicker)  # _parse_binary needs no connection state
    decoder = KiteDecoder()
    done = 0
    while done < PACKETS_PER_LENGTH:
        packets = [_packet(rng, length) for _ in range(rng.randint(1, 5))]
        frame = _frame(packets)
        ours, theirs = decoder.decode(frame, RECEIVED), sdk._parse_binary(frame)
        assert len(ours) == len(theirs) == len(packets)
        for t, s in zip(ours, theirs, strict=True):
            _compare(t, s, length)
        done += len(packets)
    assert decoder.counters["bad_packets"] == 0
