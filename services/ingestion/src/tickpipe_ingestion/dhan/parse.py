"""Dhan packets -> normalized Ticks: the only place that knows both the wire layout and `Tick`.

The decoder keeps per-instrument state that some packets only update: the previous close (code 6)
and the latest open interest (code 5), so that later ticks of that instrument carry them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tickpipe_core import Tick, get_logger, new_tick_id
from tickpipe_core.tick import TimeSource
from tickpipe_ingestion.dhan import wire
from tickpipe_ingestion.enrich import derive

log = get_logger("dhan.decode")

_LOG_FIRST_N = 20  # per reason, then every 1000th, so a flood of bad packets cannot flood the log


@dataclass
class DecodedFrame:
    """What one frame held besides ticks: the events the connection must act on."""

    ticks: list[Tick] = field(default_factory=list)
    disconnect_code: int | None = None
    market_status: list[int] = field(default_factory=list)


@dataclass
class _InstrumentState:
    prev_close: float | None = None
    oi: int | None = None


class DhanDecoder:
    """Decodes frames of one feed (all its connections), keeping per-instrument state."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self._state: dict[tuple[int, int], _InstrumentState] = {}
        self._last_ltt, self._last_ts = 0, datetime.fromtimestamp(0, UTC)
        self._handlers: dict[int, Callable[[bytes, wire.Packet, datetime, DecodedFrame], None]] = {
            wire.TICKER: self._ticker,
            wire.INDEX: self._index,
            wire.QUOTE: self._quote,
            wire.FULL: self._full,
            wire.OI: self._oi,
            wire.PREV_CLOSE: self._prev_close,
            wire.MARKET_STATUS: self._market_status,
            wire.DISCONNECT: self._disconnect,
        }

    def decode(self, frame: bytes, receive_ts: datetime) -> DecodedFrame:
        """Decode every packet of a binary frame; bad packets are counted and logged, never raised."""
        out = DecodedFrame()
        for item in wire.walk(frame):
            if isinstance(item, wire.FrameError):
                self._bad(item.reason, item.data, item.offset)
                continue
            handler = self._handlers.get(item.code)
            if handler is None:
                self._bad(
                    f"unknown response code {item.code}", frame[item.offset : item.offset + item.length], item.offset
                )
                continue
            self.counters[f"packets.{item.code}"] += 1
            handler(frame, item, receive_ts, out)
        self.counters["ticks"] += len(out.ticks)
        return out

    def state(self, segment: int, security_id: int) -> _InstrumentState:
        key = (segment, security_id)
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _InstrumentState()
        return st

    def _bad(self, reason: str, data: bytes, offset: int) -> None:
        kind = reason.split(":")[0].split(" needs ")[0]
        self.counters["bad_packets"] += 1
        self.counters[f"bad_packets.{kind}"] += 1
        n = self.counters[f"bad_packets.{kind}"]
        if n <= _LOG_FIRST_N or n % 1000 == 0:
            log.warning("dhan_bad_packet", reason=reason, offset=offset, hex=data[:256].hex(), seen=n)

    # -- handlers -------------------------------------------------------------------------------

    def _times(self, ltt: int, receive_ts: datetime) -> tuple[datetime, TimeSource]:
        if ltt > 0:
            # LTT has one-second resolution and runs of ticks share it: convert each second once.
            if ltt != self._last_ltt:
                self._last_ltt = ltt
                self._last_ts = datetime.fromtimestamp(ltt - wire.IST_OFFSET_SECONDS, UTC)
            return self._last_ts, "exchange"
        return receive_ts, "receive"

    def _ticker(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, ltp, ltt = wire.TICKER_PACKET.unpack_from(frame, p.offset)
        self._emit_simple(seg, sid, "ticker", ltp, ltt, receive_ts, out)

    def _index(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        # Undocumented; the SDK ignores it. Where it is at least ticker-sized we read the ticker
        # layout (LTP f32 @8, LTT i32 @12), which is what Dhan sends for indices in ticker mode.
        if p.length < wire.TICKER_PACKET.size:
            self.counters["index_packets_undecoded"] += 1
            return
        _, _, seg, sid, ltp, ltt = wire.TICKER_PACKET.unpack_from(frame, p.offset)
        self._emit_simple(seg, sid, "index", ltp, ltt, receive_ts, out)

    def _emit_simple(
        self, seg: int, sid: int, packet: str, ltp: float, ltt: int, receive_ts: datetime, out: DecodedFrame
    ) -> None:
        st = self.state(seg, sid)
        ts, source = self._times(ltt, receive_ts)
        d = derive(ltp, st.prev_close, (), (), (), (), None, None)
        out.ticks.append(
            Tick(
                tick_id=new_tick_id(),
                source="dhan",
                segment=wire.SEGMENTS.get(seg, f"SEGMENT_{seg}"),
                security_id=sid,
                exchange_ts=ts,
                receive_ts=receive_ts,
                time_source=source,
                packet=packet,
                ltp=ltp,
                oi=st.oi,
                prev_close=st.prev_close,
                change=d.change,
                change_pct=d.change_pct,
            )
        )

    def _quote(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        (_, _, seg, sid, ltp, ltq, ltt, atp, volume, sell, buy, day_open, day_close, day_high, day_low) = (
            wire.QUOTE_PACKET.unpack_from(frame, p.offset)
        )
        st = self.state(seg, sid)
        ts, source = self._times(ltt, receive_ts)
        d = derive(ltp, st.prev_close, (), (), (), (), buy, sell)
        out.ticks.append(
            Tick(
                tick_id=new_tick_id(),
                source="dhan",
                segment=wire.SEGMENTS.get(seg, f"SEGMENT_{seg}"),
                security_id=sid,
                exchange_ts=ts,
                receive_ts=receive_ts,
                time_source=source,
                packet="quote",
                ltp=ltp,
                ltq=ltq,
                atp=atp,
                volume=volume,
                total_buy_qty=buy,
                total_sell_qty=sell,
                oi=st.oi,
                open=day_open,
                high=day_high,
                low=day_low,
                close=day_close,
                prev_close=st.prev_close,
                change=d.change,
                change_pct=d.change_pct,
                book_imbalance=d.book_imbalance,
            )
        )

    def _full(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        v = wire.FULL_PACKET.unpack_from(frame, p.offset)
        (
            _,
            _,
            seg,
            sid,
            ltp,
            ltq,
            ltt,
            atp,
            volume,
            sell,
            buy,
            oi,
            oi_high,
            oi_low,
            day_open,
            day_close,
            day_high,
            day_low,
        ) = v[:18]
        depth = v[18:]
        # Depth levels are (bid qty, ask qty, bid orders, ask orders, bid price, ask price) x 5.
        bid_qty, ask_qty, bid_orders, ask_orders = depth[0::6], depth[1::6], depth[2::6], depth[3::6]
        bid_price, ask_price = depth[4::6], depth[5::6]
        st = self.state(seg, sid)
        st.oi = oi
        ts, source = self._times(ltt, receive_ts)
        d = derive(ltp, st.prev_close, bid_price, bid_qty, ask_price, ask_qty, buy, sell)
        out.ticks.append(
            Tick(
                tick_id=new_tick_id(),
                source="dhan",
                segment=wire.SEGMENTS.get(seg, f"SEGMENT_{seg}"),
                security_id=sid,
                exchange_ts=ts,
                receive_ts=receive_ts,
                time_source=source,
                packet="full",
                ltp=ltp,
                ltq=ltq,
                atp=atp,
                volume=volume,
                total_buy_qty=buy,
                total_sell_qty=sell,
                oi=oi,
                oi_day_high=oi_high,
                oi_day_low=oi_low,
                open=day_open,
                high=day_high,
                low=day_low,
                close=day_close,
                prev_close=st.prev_close,
                bid_price=bid_price,
                bid_qty=bid_qty,
                bid_orders=bid_orders,
                ask_price=ask_price,
                ask_qty=ask_qty,
                ask_orders=ask_orders,
                change=d.change,
                change_pct=d.change_pct,
                spread=d.spread,
                spread_bps=d.spread_bps,
                mid=d.mid,
                micro_price=d.micro_price,
                imbalance=d.imbalance,
                book_imbalance=d.book_imbalance,
            )
        )

    def _oi(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, oi = wire.OI_PACKET.unpack_from(frame, p.offset)
        self.state(seg, sid).oi = oi

    def _prev_close(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        _, _, seg, sid, prev_close, _prev_oi = wire.PREV_CLOSE_PACKET.unpack_from(frame, p.offset)
        self.state(seg, sid).prev_close = prev_close

    def _market_status(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        # The payload is undocumented; the header's security id field is what we can report.
        out.market_status.append(p.security_id)

    def _disconnect(self, frame: bytes, p: wire.Packet, receive_ts: datetime, out: DecodedFrame) -> None:
        (*_, reason) = wire.DISCONNECT_PACKET.unpack_from(frame, p.offset)
        out.disconnect_code = reason
