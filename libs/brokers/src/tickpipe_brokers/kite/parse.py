"""Kite packets -> ticks: reads each packet's wire fields and hands them to the `TickBuilder`.

Differences from the official Python SDK, on purpose: prices are read signed (MCX has had negative
prices); times are aware UTC datetimes (the SDK gives naive local ones); the SDK's `change` is a
percentage, ours is absolute, with the percentage in `change_pct`. Kite's `close` is the previous
session's close, so it is also the tick's `prev_close`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from tickpipe_brokers.decoding import BadPackets, EpochSeconds
from tickpipe_brokers.kite import wire
from tickpipe_brokers.ticks import TickBuilder
from tickpipe_core import Tick


class KiteDecoder:
    """Decodes binary frames of one Kite feed (all its connections) into ticks made by `builder`."""

    def __init__(self, builder: TickBuilder | None = None) -> None:
        self.counters: defaultdict[str, int] = defaultdict(int)  # per packet: plainer than Counter's +=
        self.builder = builder if builder is not None else TickBuilder("kite", pair_key=False)
        self._packet_time = EpochSeconds().utc
        self._trade_time = EpochSeconds().utc  # a second cache, so the two never evict each other
        self._bad = BadPackets("kite", self.counters).report
        # Packet length -> (handler, its counter's key): one lookup per packet, no string formatting.
        handlers = {
            wire.FULL: self._full,
            wire.QUOTE: self._quote,
            wire.LTP: self._ltp,
            wire.INDEX_QUOTE: self._index,
            wire.INDEX_FULL: self._index,
        }
        self._handlers = {length: (handler, f"packets.{length}") for length, handler in handlers.items()}

    def decode(self, frame: bytes, receive_time: datetime) -> list[Tick]:
        """Every packet of a binary frame; a heartbeat gives none. Bad packets are counted, never raised."""
        if len(frame) == 1:
            self.counters["heartbeats"] += 1
            return []
        out: list[Tick] = []
        handlers, counters = self._handlers, self.counters
        packets, error = wire.walk(frame)
        if error is not None:
            self._bad(error.reason, error.data, error.offset)
        for offset, length in packets:
            entry = handlers.get(length)
            if entry is None:
                self._bad(f"unknown packet length {length}", frame[offset : offset + length], offset)
                continue
            handler, key = entry
            handler(frame, offset, length, receive_time, out)
            counters[key] += 1
        return out

    # Wire fields in, TickBuilder.build out.

    def _ltp(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: list[Tick]) -> None:
        token, last = wire.LTP_PACKET.unpack_from(frame, offset)
        segment, d = wire.segment_and_divisor(token)
        tick = self.builder.build(
            segment=segment, security_id=token, receive_time=receive_time, packet="ltp", ltp=last / d
        )
        if tick is not None:
            out.append(tick)

    def _index(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: list[Tick]) -> None:
        if length == wire.INDEX_FULL:
            token, last, high, low, open_, close, _change, ts = wire.INDEX_FULL_PACKET.unpack_from(frame, offset)
        else:
            token, last, high, low, open_, close, _change = wire.INDEX_QUOTE_PACKET.unpack_from(frame, offset)
            ts = 0
        segment, d = wire.segment_and_divisor(token)
        prev = close / d
        tick = self.builder.build(
            segment=segment, security_id=token, receive_time=receive_time, packet_time=self._packet_time(ts),
            packet="index_full" if length == wire.INDEX_FULL else "index_quote",
            ltp=last / d, open_=open_ / d, high=high / d, low=low / d, close=prev, prev_close=prev,
            raw=frame[offset : offset + length],
        )  # fmt: skip
        if tick is not None:
            out.append(tick)

    def _quote(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: list[Tick]) -> None:
        token, last, qty, avg, volume, buy, sell, open_, high, low, close = wire.QUOTE_PACKET.unpack_from(frame, offset)
        segment, d = wire.segment_and_divisor(token)
        prev = close / d
        tick = self.builder.build(
            segment=segment, security_id=token, receive_time=receive_time, packet="quote",
            ltp=last / d, ltq=qty, atp=avg / d, volume=volume, total_buy_qty=buy, total_sell_qty=sell,
            open_=open_ / d, high=high / d, low=low / d, close=prev, prev_close=prev,
        )  # fmt: skip
        if tick is not None:
            out.append(tick)

    def _full(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: list[Tick]) -> None:
        v = wire.FULL_PACKET.unpack_from(frame, offset)
        token, last, qty, avg, volume, buy, sell, open_, high, low, close, ltt, oi, oi_high, oi_low, ts = v[:16]
        depth = v[16:]
        segment, d = wire.segment_and_divisor(token)
        prev = close / d
        price = d.__rtruediv__  # price(p) is p / d, bit for bit, without a Python frame per level
        # Depth entries are (quantity, price, orders): 5 buy levels, then 5 sell levels.
        tick = self.builder.build(
            segment=segment, security_id=token, receive_time=receive_time,
            last_trade_time=self._trade_time(ltt), packet_time=self._packet_time(ts), packet="full",
            ltp=last / d, ltq=qty, atp=avg / d, volume=volume, total_buy_qty=buy, total_sell_qty=sell,
            oi=oi, oi_day_high=oi_high, oi_day_low=oi_low,
            open_=open_ / d, high=high / d, low=low / d, close=prev, prev_close=prev,
            bid_price=tuple(map(price, depth[1:15:3])), bid_qty=depth[0:15:3], bid_orders=depth[2:15:3],
            ask_price=tuple(map(price, depth[16:30:3])), ask_qty=depth[15:30:3], ask_orders=depth[17:30:3],
            raw=frame[offset : offset + wire.FULL],
        )  # fmt: skip
        if tick is not None:
            out.append(tick)
