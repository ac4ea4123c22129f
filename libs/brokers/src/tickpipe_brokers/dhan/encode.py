"""Dhan v2 packets from market snapshots: what the exchange simulator sends, and tests and benchmarks build.

Each function packs one packet with the `wire` layouts, the inverse of `parse.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from tickpipe_brokers.dhan import wire
from tickpipe_brokers.quote import Listing, Quote


def encode_full(q: Quote, ltt: int) -> bytes:
    depth: list[float | int] = []
    for i in range(wire.DEPTH_LEVELS):
        depth += [q.bid_qty[i], q.ask_qty[i], q.bid_orders[i], q.ask_orders[i], q.bid_price[i], q.ask_price[i]]
    return wire.FULL_PACKET.pack(
        wire.FULL,
        wire.FULL_PACKET.size,
        wire.SEGMENT_CODES[q.segment],
        q.security_id,
        q.ltp,
        q.ltq,
        ltt,
        q.atp,
        q.volume,
        q.total_sell_qty,
        q.total_buy_qty,
        q.oi,
        q.oi_high,
        q.oi_low,
        q.open,
        q.close,
        q.high,
        q.low,
        *depth,
    )


def encode_quote(q: Quote, ltt: int) -> bytes:
    return wire.QUOTE_PACKET.pack(
        wire.QUOTE,
        wire.QUOTE_PACKET.size,
        wire.SEGMENT_CODES[q.segment],
        q.security_id,
        q.ltp,
        q.ltq,
        ltt,
        q.atp,
        q.volume,
        q.total_sell_qty,
        q.total_buy_qty,
        q.open,
        q.close,
        q.high,
        q.low,
    )


def encode_ticker(q: Quote, ltt: int) -> bytes:
    return wire.TICKER_PACKET.pack(
        wire.TICKER, wire.TICKER_PACKET.size, wire.SEGMENT_CODES[q.segment], q.security_id, q.ltp, ltt
    )


def encode_oi(q: Quote) -> bytes:
    return wire.OI_PACKET.pack(wire.OI, wire.OI_PACKET.size, wire.SEGMENT_CODES[q.segment], q.security_id, q.oi)


def encode_prev_close(inst: Listing) -> bytes:
    return wire.PREV_CLOSE_PACKET.pack(
        wire.PREV_CLOSE,
        wire.PREV_CLOSE_PACKET.size,
        wire.SEGMENT_CODES[inst.segment],
        inst.security_id,
        inst.prev_close,
        inst.oi,
    )


def encode_disconnect(code: int) -> bytes:
    return wire.DISCONNECT_PACKET.pack(wire.DISCONNECT, wire.DISCONNECT_PACKET.size, 0, 0, code)


ENCODERS: dict[str, Callable[[Quote, int], bytes]] = {
    "ticker": encode_ticker,
    "quote": encode_quote,
    "full": encode_full,
}
