"""Differential test: our Dhan decoder against the official `dhanhq` SDK's parser on random packets.

Every layout the SDK decodes (ticker, quote, OI, prev close, full) with random field bytes; both
decoders must give the same values after the SDK's own formatting (prices "%.2f", LTT "HH:MM:SS" of
the raw epoch read as UTC). Deliberate differences, tested separately: LTT 0 means "no trade time"
to us (we use the receive time), and we walk every packet of a frame where the SDK reads the first.
"""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.parse import DhanDecoder

marketfeed = pytest.importorskip("dhanhq.marketfeed")

PACKETS_PER_LAYOUT = 20_000  # x 5 layouts = 100,000 packets
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
LAYOUTS = {
    wire.TICKER: wire.TICKER_PACKET.size,
    wire.QUOTE: wire.QUOTE_PACKET.size,
    wire.OI: wire.OI_PACKET.size,
    wire.PREV_CLOSE: wire.PREV_CLOSE_PACKET.size,
    wire.FULL: wire.FULL_PACKET.size,
}


def _sdk() -> Any:
    # process_data needs no connection state; skip __init__, which wants credentials and an event loop.
    return object.__new__(marketfeed.MarketFeed)


def _random_packet(rng: random.Random, code: int, length: int) -> bytes:
    body = bytearray(rng.randbytes(length))
    struct.pack_into("<BHBI", body, 0, code, length, rng.choice(list(wire.SEGMENTS)), rng.getrandbits(32))
    if rng.random() < 0.5:  # also plenty of realistic prices, not only random bit patterns
        struct.pack_into("<f", body, 8, rng.uniform(0, 100_000))
    return bytes(body)


def _p(x: float) -> str:
    return f"{x:.2f}"


def _hms(ts: datetime) -> str:
    return (ts + timedelta(seconds=wire.IST_OFFSET_SECONDS)).strftime("%H:%M:%S")


@pytest.mark.parametrize("code", list(LAYOUTS))
def test_every_field_matches_the_official_sdk_on_random_packets(code: int) -> None:
    rng = random.Random(code)
    sdk = _sdk()
    for _ in range(PACKETS_PER_LAYOUT):
        packet = _random_packet(rng, code, LAYOUTS[code])
        expected = sdk.process_data(packet)
        decoder = DhanDecoder()
        ticks = decoder.decode(packet, RECEIVED).ticks
        _, _, seg, sid = wire.HEADER.unpack_from(packet)
        (ltp,) = struct.unpack_from("<f", packet, 8)
        if code not in (wire.OI, wire.PREV_CLOSE) and not -1e8 < ltp < 1e8:
            # Random bits that are no price (NaN, 1e29): a counted bad packet, not a tick.
            assert ticks == [] and decoder.builder.counters["bad_packets.implausible_price"] == 1
            continue
        if code == wire.OI:
            assert (decoder.state(seg, sid).oi, seg, sid) == (
                expected["OI"],
                expected["exchange_segment"],
                expected["security_id"],
            )
            continue
        if code == wire.PREV_CLOSE:
            prev = decoder.state(seg, sid).prev_close
            assert prev is not None
            assert (_p(prev), seg, sid) == (
                expected["prev_close"],
                expected["exchange_segment"],
                expected["security_id"],
            )
            continue
        (t,) = ticks
        assert (wire.SEGMENT_CODES[t.segment], t.security_id, _p(t.ltp)) == (
            expected["exchange_segment"],
            expected["security_id"],
            expected["LTP"],
        )
        ltt = struct.unpack_from("<I", packet, 12 if code == wire.TICKER else 14)[0]
        if ltt == 0:
            assert t.last_trade_time is None and t.time_source == "receive"
        else:
            assert t.last_trade_time is not None and _hms(t.last_trade_time) == expected["LTT"]
            # `time` is the last-trade time unless it is implausibly far from the receive time.
            assert t.time == (t.last_trade_time if t.time_source == "exchange" else RECEIVED)
        if code == wire.TICKER:
            continue
        assert (t.ltq, _p(t.atp or 0), t.volume, t.total_sell_qty, t.total_buy_qty) == (
            expected["LTQ"],
            expected["avg_price"],
            expected["volume"],
            expected["total_sell_quantity"],
            expected["total_buy_quantity"],
        )
        assert (_p(t.open or 0), _p(t.close or 0), _p(t.high or 0), _p(t.low or 0)) == (
            expected["open"],
            expected["close"],
            expected["high"],
            expected["low"],
        )
        if code == wire.FULL:
            assert (t.oi, t.oi_day_high, t.oi_day_low) == (
                expected["OI"],
                expected["oi_day_high"],
                expected["oi_day_low"],
            )
            ours = [
                {
                    "bid_quantity": t.bid_qty[i],
                    "ask_quantity": t.ask_qty[i],
                    "bid_orders": t.bid_orders[i],
                    "ask_orders": t.ask_orders[i],
                    "bid_price": _p(t.bid_price[i]),
                    "ask_price": _p(t.ask_price[i]),
                }
                for i in range(5)
            ]
            assert ours == expected["depth"]
