"""Dhan packets -> normalized Ticks: the only place that knows both the wire layout and `Tick`.

The decoder keeps per-instrument state that some packets only update: the previous close (code 6)
and the latest open interest (code 5), so that later ticks of that instrument carry them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tickpipe_core import Tick, new_tick_id
from tickpipe_core.tick import TimeSource
from tickpipe_ingestion.decoding import NO_DEPTH, BadPackets, EpochSeconds
from tickpipe_ingestion.dhan import wire
from tickpipe_ingestion.enrich import derive
from tickpipe_ingestion.instruments import InstrumentLookup

# (frame, packet offset, packet length, receive time, output)
_Handler = Callable[[bytes, int, int, datetime, "DecodedFrame"], None]


@dataclass(slots=True)
class DecodedFrame:
    """What one frame held besides ticks: the events the connection must act on."""

    ticks: list[Tick] = field(default_factory=list)
    disconnect_code: int | None = None
    market_status: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _InstrumentState:
    prev_close: float | None = None
    oi: int | None = None


class DhanDecoder:
    """Decodes frames of one feed (all its connections), keeping per-instrument state.

    `instrument_ids` maps (segment name, security id) to our instrument id; it is read on every
    tick, so a refreshed map takes effect at once without pausing the stream.
    """

    def __init__(self, instrument_ids: InstrumentLookup | None = None) -> None:
        self.counters: Counter[str] = Counter()
        self.instrument_ids: InstrumentLookup = instrument_ids if instrument_ids is not None else {}
        self._state: dict[tuple[int, int], _InstrumentState] = {}
        self._clock = EpochSeconds()
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

    def decode(self, frame: bytes, receive_ts: datetime) -> DecodedFrame:
        """Decode every packet of a binary frame; bad packets are counted and logged, never raised."""
        out = DecodedFrame()
        n = len(frame)
        if n >= wire.HEADER.size and wire.LENGTHS.get(frame[0]) == n == frame[1] | frame[2] << 8:
            # The common case, one well-formed packet filling the frame: no walk needed.
            handler, key = self._handlers[frame[0]]
            self.counters[key] += 1
            handler(frame, 0, n, receive_ts, out)
        else:
            self._walk(frame, receive_ts, out)
        self.counters["ticks"] += len(out.ticks)
        return out

    def _walk(self, frame: bytes, receive_ts: datetime, out: DecodedFrame) -> None:
        for item in wire.walk(frame):
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
            handler(frame, item.offset, item.length, receive_ts, out)

    def state(self, segment: int, security_id: int) -> _InstrumentState:
        key = (segment, security_id)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _InstrumentState()
        return st

    # -- handlers -------------------------------------------------------------------------------
    # Ticks are built positionally, in Tick's field order: msgspec's keyword path costs 7x more,
    # and this is the per-packet hot path. The trailing comments name the fields.

    def _times(self, ltt: int, receive_ts: datetime) -> tuple[datetime, TimeSource]:
        if ltt > 0:
            return self._clock.utc(ltt - wire.IST_OFFSET_SECONDS), "exchange"
        return receive_ts, "receive"

    def _ticker(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, ltp, ltt = wire.TICKER_PACKET.unpack_from(frame, offset)
        self._emit_simple(seg, sid, "ticker", ltp, ltt, receive_ts, out)

    def _index(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        # Undocumented; the SDK ignores it. Where it is at least ticker-sized we read the ticker
        # layout (LTP f32 @8, LTT i32 @12), which is what Dhan sends for indices in ticker mode.
        if length < wire.TICKER_PACKET.size:
            self.counters["index_packets_undecoded"] += 1
            return
        _, _, seg, sid, ltp, ltt = wire.TICKER_PACKET.unpack_from(frame, offset)
        self._emit_simple(seg, sid, "index", ltp, ltt, receive_ts, out)

    def _emit_simple(
        self, seg: int, sid: int, packet: str, ltp: float, ltt: int, receive_ts: datetime, out: DecodedFrame
    ) -> None:
        st = self.state(seg, sid)
        ts, source = self._times(ltt, receive_ts)
        segment = wire.segment_name(seg)
        out.ticks.append(
            Tick(
                new_tick_id(),
                "dhan",
                segment,
                sid,
                ts,
                receive_ts,
                source,
                packet,
                ltp,
                None,  # ltq
                None,  # atp
                None,  # volume
                None,  # total_buy_qty
                None,  # total_sell_qty
                st.oi,
                None,  # oi_day_high
                None,  # oi_day_low
                None,  # open
                None,  # high
                None,  # low
                None,  # close
                st.prev_close,
                *NO_DEPTH,
                self.instrument_ids.get((segment, sid)),
                *derive(ltp, st.prev_close, (), (), (), (), None, None),
            )
        )

    def _quote(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        (_, _, seg, sid, ltp, ltq, ltt, atp, volume, sell, buy, day_open, day_close, day_high, day_low) = (
            wire.QUOTE_PACKET.unpack_from(frame, offset)
        )
        st = self.state(seg, sid)
        ts, source = self._times(ltt, receive_ts)
        segment = wire.segment_name(seg)
        out.ticks.append(
            Tick(
                new_tick_id(),
                "dhan",
                segment,
                sid,
                ts,
                receive_ts,
                source,
                "quote",
                ltp,
                ltq,
                atp,
                volume,
                buy,
                sell,
                st.oi,
                None,  # oi_day_high
                None,  # oi_day_low
                day_open,
                day_high,
                day_low,
                day_close,
                st.prev_close,
                *NO_DEPTH,
                self.instrument_ids.get((segment, sid)),
                *derive(ltp, st.prev_close, (), (), (), (), buy, sell),
            )
        )

    def _full(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        v = wire.FULL_PACKET.unpack_from(frame, offset)
        (_, _, seg, sid, ltp, ltq, ltt, atp, volume, sell, buy, oi, oi_high, oi_low, day_open, day_close) = v[:16]
        day_high, day_low = v[16], v[17]
        depth = v[18:]
        # Depth levels are (bid qty, ask qty, bid orders, ask orders, bid price, ask price) x 5.
        bid_qty, ask_qty, bid_orders, ask_orders = depth[0::6], depth[1::6], depth[2::6], depth[3::6]
        bid_price, ask_price = depth[4::6], depth[5::6]
        st = self.state(seg, sid)
        st.oi = oi
        ts, source = self._times(ltt, receive_ts)
        segment = wire.segment_name(seg)
        out.ticks.append(
            Tick(
                new_tick_id(),
                "dhan",
                segment,
                sid,
                ts,
                receive_ts,
                source,
                "full",
                ltp,
                ltq,
                atp,
                volume,
                buy,
                sell,
                oi,
                oi_high,
                oi_low,
                day_open,
                day_high,
                day_low,
                day_close,
                st.prev_close,
                bid_price,
                bid_qty,
                bid_orders,
                ask_price,
                ask_qty,
                ask_orders,
                self.instrument_ids.get((segment, sid)),
                *derive(ltp, st.prev_close, bid_price, bid_qty, ask_price, ask_qty, buy, sell),
            )
        )

    def _oi(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, oi = wire.OI_PACKET.unpack_from(frame, offset)
        self.state(seg, sid).oi = oi

    def _prev_close(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, prev_close, _prev_oi = wire.PREV_CLOSE_PACKET.unpack_from(frame, offset)
        self.state(seg, sid).prev_close = prev_close

    def _market_status(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        # The payload is undocumented; the header's security id field is what we can report.
        out.market_status.append(wire.HEADER.unpack_from(frame, offset)[3])

    def _disconnect(self, frame: bytes, offset: int, length: int, receive_ts: datetime, out: DecodedFrame) -> None:
        (*_, reason) = wire.DISCONNECT_PACKET.unpack_from(frame, offset)
        out.disconnect_code = reason
