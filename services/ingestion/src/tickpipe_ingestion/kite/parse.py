"""Kite packets -> normalized Ticks: the only place that knows both Kite's layout and `Tick`.

Differences from the official Python SDK, on purpose: prices are read signed (MCX has had negative
prices); times are aware UTC datetimes (the SDK gives naive local ones); the SDK's `change` is a
percentage, ours is absolute, with the percentage in `change_pct`. Kite's `close` is the previous
session's close, so it is also the tick's `prev_close`.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from tickpipe_core import Tick, new_tick_id
from tickpipe_core.tick import TimeSource
from tickpipe_ingestion.decoding import NO_DEPTH, BadPackets, EpochSeconds
from tickpipe_ingestion.enrich import derive
from tickpipe_ingestion.instruments import InstrumentLookup
from tickpipe_ingestion.kite import wire


class KiteDecoder:
    """Decodes binary frames of one Kite feed (all its connections)."""

    def __init__(self, instrument_ids: InstrumentLookup | None = None) -> None:
        self.counters: Counter[str] = Counter()
        self.instrument_ids: InstrumentLookup = instrument_ids if instrument_ids is not None else {}
        self._clock = EpochSeconds()
        self._bad = BadPackets("kite", self.counters).report

    def decode(self, frame: bytes, receive_ts: datetime) -> list[Tick]:
        """Every packet of a binary frame; a heartbeat gives none. Bad packets are counted, never raised."""
        if len(frame) == 1:
            self.counters["heartbeats"] += 1
            return []
        out: list[Tick] = []
        for item in wire.walk(frame):
            if isinstance(item, wire.FrameError):
                self._bad(item.reason, item.data, item.offset)
                continue
            offset, length = item
            if length == wire.FULL:
                self._full(frame, offset, receive_ts, out)
            elif length == wire.QUOTE:
                self._quote(frame, offset, receive_ts, out)
            elif length == wire.LTP:
                self._ltp(frame, offset, receive_ts, out)
            elif length in (wire.INDEX_QUOTE, wire.INDEX_FULL):
                self._index(frame, offset, length, receive_ts, out)
            else:
                self._bad(f"unknown packet length {length}", frame[offset : offset + length], offset)
                continue
            self.counters[f"packets.{length}"] += 1
        self.counters["ticks"] += len(out)
        return out

    def _time(self, *candidates: int) -> tuple[datetime | None, TimeSource]:
        for seconds in candidates:
            if seconds > 0:
                return self._clock.utc(seconds), "exchange"
        return None, "receive"

    # Ticks are built positionally, in Tick's field order (see dhan/parse.py for why).

    def _ltp(self, frame: bytes, offset: int, receive_ts: datetime, out: list[Tick]) -> None:
        token, last = wire.LTP_PACKET.unpack_from(frame, offset)
        ltp = last / wire.divisor(token)
        out.append(
            Tick(
                new_tick_id(),
                "kite",
                wire.segment_name(token),
                token,
                receive_ts,
                receive_ts,
                "receive",
                "ltp",
                ltp,
                None,  # ltq
                None,  # atp
                None,  # volume
                None,  # total_buy_qty
                None,  # total_sell_qty
                None,  # oi
                None,  # oi_day_high
                None,  # oi_day_low
                None,  # open
                None,  # high
                None,  # low
                None,  # close
                None,  # prev_close
                *NO_DEPTH,
                self.instrument_ids.get(token),
                *derive(ltp, None, (), (), (), (), None, None),
            )
        )

    def _index(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: list[Tick]) -> None:
        if length == wire.INDEX_FULL:
            token, last, high, low, open_, close, _change, ts = wire.INDEX_FULL_PACKET.unpack_from(frame, offset)
        else:
            token, last, high, low, open_, close, _change = wire.INDEX_QUOTE_PACKET.unpack_from(frame, offset)
            ts = 0
        d = wire.divisor(token)
        ltp, prev = last / d, close / d
        exchange_ts, source = self._time(ts)
        out.append(
            Tick(
                new_tick_id(),
                "kite",
                wire.segment_name(token),
                token,
                exchange_ts or receive_ts,
                receive_ts,
                source,
                "index_full" if length == wire.INDEX_FULL else "index_quote",
                ltp,
                None,  # ltq
                None,  # atp
                None,  # volume
                None,  # total_buy_qty
                None,  # total_sell_qty
                None,  # oi
                None,  # oi_day_high
                None,  # oi_day_low
                open_ / d,
                high / d,
                low / d,
                prev,
                prev,
                *NO_DEPTH,
                self.instrument_ids.get(token),
                *derive(ltp, prev, (), (), (), (), None, None),
            )
        )

    def _quote(self, frame: bytes, offset: int, receive_ts: datetime, out: list[Tick]) -> None:
        token, last, qty, avg, volume, buy, sell, open_, high, low, close = wire.QUOTE_PACKET.unpack_from(frame, offset)
        d = wire.divisor(token)
        ltp, prev = last / d, close / d
        out.append(
            Tick(
                new_tick_id(),
                "kite",
                wire.segment_name(token),
                token,
                receive_ts,
                receive_ts,
                "receive",
                "quote",
                ltp,
                qty,
                avg / d,
                volume,
                buy,
                sell,
                None,  # oi
                None,  # oi_day_high
                None,  # oi_day_low
                open_ / d,
                high / d,
                low / d,
                prev,
                prev,
                *NO_DEPTH,
                self.instrument_ids.get(token),
                *derive(ltp, prev, (), (), (), (), buy, sell),
            )
        )

    def _full(self, frame: bytes, offset: int, receive_ts: datetime, out: list[Tick]) -> None:
        v = wire.FULL_PACKET.unpack_from(frame, offset)
        token, last, qty, avg, volume, buy, sell, open_, high, low, close, ltt, oi, oi_high, oi_low, ts = v[:16]
        depth = v[16:]
        d = wire.divisor(token)
        # Depth entries are (quantity, price, orders): 5 buy levels, then 5 sell levels.
        bid_qty, ask_qty = depth[0:15:3], depth[15:30:3]
        bid_price = tuple(p / d for p in depth[1:15:3])
        ask_price = tuple(p / d for p in depth[16:30:3])
        bid_orders, ask_orders = depth[2:15:3], depth[17:30:3]
        ltp, prev = last / d, close / d
        exchange_ts, source = self._time(ltt, ts)
        out.append(
            Tick(
                new_tick_id(),
                "kite",
                wire.segment_name(token),
                token,
                exchange_ts or receive_ts,
                receive_ts,
                source,
                "full",
                ltp,
                qty,
                avg / d,
                volume,
                buy,
                sell,
                oi,
                oi_high,
                oi_low,
                open_ / d,
                high / d,
                low / d,
                prev,
                prev,
                bid_price,
                bid_qty,
                bid_orders,
                ask_price,
                ask_qty,
                ask_orders,
                self.instrument_ids.get(token),
                *derive(ltp, prev, bid_price, bid_qty, ask_price, ask_qty, buy, sell),
            )
        )
