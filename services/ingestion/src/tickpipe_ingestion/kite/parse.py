"""Kite packets -> ticks: reads each packet's wire fields and hands them to the `TickBuilder`.

Differences from the official Python SDK, on purpose: prices are read signed (MCX has had negative
prices); times are aware UTC datetimes (the SDK gives naive local ones); the SDK's `change` is a
percentage, ours is absolute, with the percentage in `change_pct`. Kite's `close` is the previous
session's close, so it is also the tick's `prev_close`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from tickpipe_core import Tick
from tickpipe_ingestion.decoding import BadPackets, EpochSeconds
from tickpipe_ingestion.kite import wire
from tickpipe_ingestion.ticks import TickBuilder

_BY_SEGMENT = wire.BY_SEGMENT


def _packets(frame: bytes) -> list[tuple[int, int]] | None:
    """(offset, length) of each packet, read in place; None unless the count and lengths add up to the
    frame exactly (then `wire.walk` goes through it and says what is wrong)."""
    end = len(frame)
    if end < 2:
        return None
    packets = []
    offset = 2
    for _ in range(frame[0] << 8 | frame[1]):
        if offset + 2 > end:
            return None
        length = frame[offset] << 8 | frame[offset + 1]
        packets.append((offset + 2, length))
        offset += 2 + length
    return packets if offset == end else None


class KiteDecoder:
    """Decodes binary frames of one Kite feed (all its connections) into ticks made by `builder`."""

    def __init__(self, builder: TickBuilder | None = None) -> None:
        self.counters: Counter[str] = Counter()
        self.builder = builder if builder is not None else TickBuilder("kite")
        self._clock = EpochSeconds()  # packet times
        self._trade_clock = EpochSeconds()  # last-trade times: a second cache, so the two never evict each other
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

    def decode(self, frame: bytes, receive_ts: datetime) -> list[Tick]:
        """Every packet of a binary frame; a heartbeat gives none. Bad packets are counted, never raised."""
        if len(frame) == 1:
            self.counters["heartbeats"] += 1
            return []
        out: list[Tick] = []
        handlers, counters = self._handlers, self.counters
        for offset, length in _packets(frame) or self._walk(frame):
            entry = handlers.get(length)
            if entry is None:
                self._bad(f"unknown packet length {length}", frame[offset : offset + length], offset)
                continue
            handler, key = entry
            handler(frame, offset, length, receive_ts, out)
            counters[key] += 1
        return out

    def _walk(self, frame: bytes) -> list[tuple[int, int]]:
        """The packets of a frame that does not add up, reporting what is wrong with it."""
        packets = []
        for item in wire.walk(frame):
            if isinstance(item, wire.FrameError):
                self._bad(item.reason, item.data, item.offset)
            else:
                packets.append(item)
        return packets

    def _utc(self, seconds: int, clock: EpochSeconds) -> datetime | None:
        return clock.utc(seconds) if seconds > 0 else None

    # Wire fields in, TickBuilder.build out. Quote and full packets are most of the feed: their handlers
    # read the segment and divisor (`wire.segment_and_divisor`) and the times (`_utc`) in place.

    def _ltp(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: list[Tick]) -> None:
        token, last = wire.LTP_PACKET.unpack_from(frame, offset)
        segment, d = wire.segment_and_divisor(token)
        tick = self.builder.build(segment, token, receive_ts, None, None, "ltp", last / d)
        if tick is not None:
            out.append(tick)

    def _index(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: list[Tick]) -> None:
        if length == wire.INDEX_FULL:
            token, last, high, low, open_, close, _change, ts = wire.INDEX_FULL_PACKET.unpack_from(frame, offset)
        else:
            token, last, high, low, open_, close, _change = wire.INDEX_QUOTE_PACKET.unpack_from(frame, offset)
            ts = 0
        segment, d = wire.segment_and_divisor(token)
        prev = close / d
        tick = self.builder.build(
            segment, token, receive_ts, None, self._utc(ts, self._clock),
            "index_full" if length == wire.INDEX_FULL else "index_quote",
            last / d, None, None, None, None, None, None, None, None,
            open_ / d, high / d, low / d, prev, prev,
            raw=frame[offset : offset + length],
        )  # fmt: skip
        if tick is not None:
            out.append(tick)

    def _quote(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: list[Tick]) -> None:
        token, last, qty, avg, volume, buy, sell, open_, high, low, close = wire.QUOTE_PACKET.unpack_from(frame, offset)
        segment, d = _BY_SEGMENT[token & 0xFF]
        prev = close / d
        tick = self.builder.build(
            segment, token, receive_ts, None, None, "quote",
            last / d, qty, avg / d, volume, buy, sell, None, None, None,
            open_ / d, high / d, low / d, prev, prev,
        )  # fmt: skip
        if tick is not None:
            out.append(tick)

    def _full(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: list[Tick]) -> None:
        v = wire.FULL_PACKET.unpack_from(frame, offset)
        token, last, qty, avg, volume, buy, sell, open_, high, low, close, ltt, oi, oi_high, oi_low, ts = v[:16]
        depth = v[16:]
        segment, d = _BY_SEGMENT[token & 0xFF]
        prev = close / d
        price = d.__rtruediv__  # price(p) is p / d, bit for bit, without a Python frame per level
        # Depth entries are (quantity, price, orders): 5 buy levels, then 5 sell levels.
        tick = self.builder.build(
            segment, token, receive_ts,
            self._trade_clock.utc(ltt) if ltt > 0 else None, self._clock.utc(ts) if ts > 0 else None, "full",
            last / d, qty, avg / d, volume, buy, sell, oi, oi_high, oi_low,
            open_ / d, high / d, low / d, prev, prev,
            tuple(map(price, depth[1:15:3])), depth[0:15:3], depth[2:15:3],
            tuple(map(price, depth[16:30:3])), depth[15:30:3], depth[17:30:3],
            frame[offset : offset + wire.FULL],
        )  # fmt: skip
        if tick is not None:
            out.append(tick)
