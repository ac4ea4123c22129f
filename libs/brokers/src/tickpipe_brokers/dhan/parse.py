"""Dhan packets -> ticks: reads each packet's wire fields and hands them to the `TickBuilder`.

The decoder keeps per-instrument state that some packets only update: the previous close (code 6)
and the latest open interest (code 5), so that later ticks of that instrument carry them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tickpipe_brokers.decoding import BadPackets, EpochSeconds
from tickpipe_brokers.dhan import wire
from tickpipe_brokers.ticks import TickBuilder
from tickpipe_core import Tick
from tickpipe_core.india import india_day, india_day_bounds

_HEADER_SIZE = wire.HEADER.size
_LENGTHS = wire.LENGTHS

# (frame, packet offset, packet length, receive time, output)
_Handler = Callable[[bytes, int, int, datetime, "DecodedFrame"], None]


class DecodedFrame:
    """A frame's ticks, and the events in it the connection must act on (made once per frame: kept small)."""

    __slots__ = ("disconnect_code", "market_status", "ticks")

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.disconnect_code: int | None = None
        self.market_status: list[int] | None = None  # made when a status packet comes


@dataclass(slots=True)
class _InstrumentState:
    prev_close: float | None = None
    oi: int | None = None


class DhanDecoder:
    """Decodes frames of one feed (all its connections) into ticks made by `builder`.

    Keeps per-instrument state for the trading day: a new IST day starts every instrument afresh,
    so the next session's change is never computed from yesterday's previous close.
    """

    def __init__(self, builder: TickBuilder | None = None) -> None:
        self.counters: defaultdict[str, int] = defaultdict(int)  # per packet: plainer than Counter's +=
        self.builder = builder if builder is not None else TickBuilder("dhan", pair_key=True)
        self._state: dict[tuple[int, int], _InstrumentState] = {}
        self._day_start, self._day_end = india_day_bounds(-1)  # no day yet: the first frame starts one
        # Dhan's times are IST wall-clock seconds dressed as epoch seconds.
        self._ltt = EpochSeconds(shift=-wire.IST_OFFSET_SECONDS).utc
        self._bad = BadPackets("dhan", self.counters).report
        handlers: dict[int, _Handler] = {
            wire.TICKER: self._ticker,
            wire.INDEX: self._index,
            wire.QUOTE: self._quote,
            wire.FULL: self._full,
            wire.OI: self._oi,
            wire.PREV_CLOSE: self._prev_close,
            wire.MARKET_STATUS: self._market_status,
            wire.DISCONNECT: self._disconnect,
        }
        # The counter key travels with the handler: no string formatting per packet.
        self._handlers = {code: (handler, f"packets.{code}") for code, handler in handlers.items()}

    def decode(self, frame: bytes, receive_time: datetime) -> DecodedFrame:
        """Decode every packet of a binary frame; bad packets are counted and logged, never raised."""
        out = DecodedFrame()
        if not self._day_start <= receive_time < self._day_end:
            # A new trading day: previous close and OI come again from the feed.
            self._state.clear()
            self._day_start, self._day_end = india_day_bounds(india_day(receive_time))
        # The common case, well-formed packets back to back: read each header's code and length in
        # place. The first packet that is not (or a frame cut short) hands the rest to `_walk`.
        n, offset = len(frame), 0
        handlers, counters = self._handlers, self.counters
        while offset < n:
            length = frame[offset + 1] | frame[offset + 2] << 8 if offset + _HEADER_SIZE <= n else -1
            code = frame[offset]
            if _LENGTHS.get(code) != length or offset + length > n:
                self._walk(frame, receive_time, out, offset)
                break
            handler, key = handlers[code]
            counters[key] += 1
            handler(frame, offset, length, receive_time, out)
            offset += length
        return out

    def _walk(self, frame: bytes, receive_time: datetime, out: DecodedFrame, start: int = 0) -> None:
        for item in wire.walk(frame, start):
            if isinstance(item, wire.FrameError):
                self._bad(item.reason, item.data, item.offset)
                continue
            entry = self._handlers.get(item.code)
            if entry is None:
                end = item.offset + item.length
                self._bad(f"unknown response code {item.code}", frame[item.offset : end], item.offset)
                continue
            handler, key = entry
            self.counters[key] += 1
            handler(frame, item.offset, item.length, receive_time, out)

    def state(self, segment: int, security_id: int) -> _InstrumentState:
        key = (segment, security_id)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _InstrumentState()
        return st

    # -- handlers: wire fields in, TickBuilder.build out ------------------------------------------

    def _ticker(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, ltp, ltt = wire.TICKER_PACKET.unpack_from(frame, offset)
        self._emit_simple(seg, sid, "ticker", ltp, ltt, receive_time, out, frame[offset : offset + length])

    def _index(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        # Undocumented; the SDK ignores it. Where it is at least ticker-sized we read the ticker
        # layout (LTP f32 @8, LTT i32 @12), which is what Dhan sends for indices in ticker mode.
        if length < wire.TICKER_PACKET.size:
            self.counters["index_packets_undecoded"] += 1
            return
        _, _, seg, sid, ltp, ltt = wire.TICKER_PACKET.unpack_from(frame, offset)
        self._emit_simple(seg, sid, "index", ltp, ltt, receive_time, out, frame[offset : offset + length])

    def _emit_simple(
        self,
        seg: int,
        sid: int,
        packet: str,
        ltp: float,
        ltt: int,
        receive_time: datetime,
        out: DecodedFrame,
        raw: bytes,
    ) -> None:
        st = self.state(seg, sid)
        tick = self.builder.build(
            segment=wire.segment_name(seg), security_id=sid, receive_time=receive_time,
            last_trade_time=self._ltt(ltt), packet=packet, ltp=ltp, oi=st.oi, prev_close=st.prev_close, raw=raw,
        )  # fmt: skip
        if tick is not None:
            out.ticks.append(tick)

    def _quote(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        (_, _, seg, sid, ltp, ltq, ltt, atp, volume, sell, buy, day_open, day_close, day_high, day_low) = (
            wire.QUOTE_PACKET.unpack_from(frame, offset)
        )
        st = self.state(seg, sid)
        tick = self.builder.build(
            segment=wire.segment_name(seg), security_id=sid, receive_time=receive_time,
            last_trade_time=self._ltt(ltt), packet="quote",
            ltp=ltp, ltq=ltq, atp=atp, volume=volume, total_buy_qty=buy, total_sell_qty=sell, oi=st.oi,
            open_=day_open, high=day_high, low=day_low, close=day_close, prev_close=st.prev_close,
            raw=frame[offset : offset + length],
        )  # fmt: skip
        if tick is not None:
            out.ticks.append(tick)

    def _full(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        v = wire.FULL_PACKET.unpack_from(frame, offset)
        (_, _, seg, sid, ltp, ltq, ltt, atp, volume, sell, buy, oi, oi_high, oi_low, day_open, day_close) = v[:16]
        st = self.state(seg, sid)
        st.oi = oi
        # Depth levels are (bid qty, ask qty, bid orders, ask orders, bid price, ask price) x 5, from v[18].
        # Each depth level is (bid qty, ask qty, bid orders, ask orders, bid price, ask price) from v[18].
        tick = self.builder.build(
            segment=wire.segment_name(seg), security_id=sid, receive_time=receive_time,
            last_trade_time=self._ltt(ltt), packet="full",
            ltp=ltp, ltq=ltq, atp=atp, volume=volume, total_buy_qty=buy, total_sell_qty=sell,
            oi=oi, oi_day_high=oi_high, oi_day_low=oi_low,
            open_=day_open, high=v[16], low=v[17], close=day_close, prev_close=st.prev_close,
            bid_price=v[22::6], bid_qty=v[18::6], bid_orders=v[20::6],
            ask_price=v[23::6], ask_qty=v[19::6], ask_orders=v[21::6],
            raw=frame[offset : offset + length],
        )  # fmt: skip
        if tick is not None:
            out.ticks.append(tick)

    def _oi(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, oi = wire.OI_PACKET.unpack_from(frame, offset)
        self.state(seg, sid).oi = oi

    def _prev_close(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, prev_close, _prev_oi = wire.PREV_CLOSE_PACKET.unpack_from(frame, offset)
        self.state(seg, sid).prev_close = prev_close

    def _market_status(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        # The payload is undocumented; the header's security id field is what we can report.
        if out.market_status is None:
            out.market_status = []
        out.market_status.append(wire.HEADER.unpack_from(frame, offset)[3])

    def _disconnect(self, frame: bytes, offset: int, length: int, receive_time: datetime, out: DecodedFrame) -> None:
        (*_, reason) = wire.DISCONNECT_PACKET.unpack_from(frame, offset)
        out.disconnect_code = reason
