"""Kite v3 packets and frames from market snapshots: what the ticker simulator sends, and tests build.

Each function packs one packet with the `wire` layouts, the inverse of `parse.py`: prices as integer
paise (or the currency divisor), a frame as the packet count and each packet with its length.
"""

from __future__ import annotations

import struct

from tickpipe_brokers.kite import wire
from tickpipe_brokers.quote import Listing, Quote

# The simulated instruments carry Dhan's segment names; these are the same markets on Kite.
KITE_SEGMENT_OF = {
    "NSE_EQ": "NSE",
    "NSE_FNO": "NFO",
    "NSE_CURRENCY": "CDS",
    "BSE_EQ": "BSE",
    "BSE_FNO": "BFO",
    "BSE_CURRENCY": "BCD",
    "MCX_COMM": "MCX",
}


def kite_token(inst: Listing) -> int:
    """The instrument's real Kite token where it has one, else one made from its Dhan id."""
    if inst.kite_token is not None:
        return inst.kite_token
    return inst.security_id << 8 | wire.SEGMENT_CODES[KITE_SEGMENT_OF[inst.segment]]


def _price(x: float, d: float) -> int:
    return round(x * d)


def encode_ltp(token: int, q: Quote) -> bytes:
    return wire.LTP_PACKET.pack(token, _price(q.ltp, wire.divisor(token)))


def _quote_fields(token: int, q: Quote) -> tuple[int, ...]:
    """The fields a quote packet and the start of a full packet share, in wire order."""
    d = wire.divisor(token)
    return (
        token,
        _price(q.ltp, d),
        q.ltq,
        _price(q.atp, d),
        q.volume,
        q.total_buy_qty,
        q.total_sell_qty,
        _price(q.open, d),
        _price(q.high, d),
        _price(q.low, d),
        _price(q.close, d),
    )


def encode_quote(token: int, q: Quote) -> bytes:
    return wire.QUOTE_PACKET.pack(*_quote_fields(token, q))


def encode_full(token: int, q: Quote, trade_time: int) -> bytes:
    d = wire.divisor(token)
    depth: list[int] = []
    for qty, price, orders in zip(q.bid_qty, q.bid_price, q.bid_orders, strict=True):
        depth += [qty, _price(price, d), orders]
    for qty, price, orders in zip(q.ask_qty, q.ask_price, q.ask_orders, strict=True):
        depth += [qty, _price(price, d), orders]
    return wire.FULL_PACKET.pack(
        *_quote_fields(token, q),
        trade_time,
        q.oi,
        q.oi_high,
        q.oi_low,
        trade_time,  # exchange timestamp
        *depth,
    )


def frame(packets: list[bytes]) -> bytes:
    """Kite's binary frame: packet count, then each packet with its length."""
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)
