"""Stage 3 of ingestion: a decoded packet's fields -> one `Tick`, built in this one place.

Broker decoders (`dhan/parse.py`, `kite/parse.py`) know their wire layouts and nothing of our
tick beyond the raw fields they hand over here. The builder adds what is ours: the tick's identity,
which clock its `time` comes from (with a sanity check against the receive time), our instrument
id (and the unknown-instrument policy), and the derived fields. Decoders call `build` by keyword
(resolved when the decoders are compiled, so it costs nothing). It runs once per tick, so it builds
the `Tick` by position, in the one call below; tests/unit/test_tick_builder.py gives every field a
value of its own and checks that each lands in its place.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, Protocol

from tickpipe_brokers.enrich import derived_values
from tickpipe_core import Tick, content_ids, get_logger, new_tick_id

log = get_logger("ticks")

# A broker time before EARLIEST or more than MAX_AHEAD past our receive time is garbage (a
# zero-filled or corrupt field), not a real event: the tick keeps the receive time instead, so a
# bad value can never create a 1970 or 2106 chunk or pin `latest_quotes` to the future. An old
# but plausible time is kept: an illiquid contract's last trade can be days old, and a replayed
# capture is old by design. Two minutes ahead covers clock skew between exchange and host.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(minutes=2)
# No Indian exchange lists a price of a hundred million rupees or more, either way: such a value is a
# damaged field.
MAX_PRICE: Final = 1e8  # Final: compiled, a constant rather than a module lookup per tick
UNKNOWN_SEGMENT: Final = "SEGMENT_"  # how both brokers' wire layouts name a segment code they do not know
_LOG_FIRST_N = 20  # bad packets of a kind logged, then every 1000th


class InstrumentLookup(Protocol):
    """Broker id -> our instrument id (an `InstrumentMap`, or a plain dict in tests)."""

    def get(self, key: Hashable, /) -> int | None: ...


class TickBuilder:
    """Builds the ticks of one feed; counts what it built, dropped and corrected."""

    def __init__(
        self,
        source: str,
        instruments: InstrumentLookup | None = None,
        unknown: Literal["store", "drop"] = "store",
        *,
        pair_key: bool,
    ) -> None:
        """`instruments` is read on every tick, so a reloaded map takes effect at once. `pair_key`: the
        broker names a listing by (segment, id), not by one number (its adapter's `ids.pair`)."""
        self.source = source
        self.instruments: InstrumentLookup = instruments if instruments is not None else {}
        self.keep_unknown = unknown == "store"
        self.counters: defaultdict[str, int] = defaultdict(int)  # per packet: plainer than Counter's +=
        self._pair_key = pair_key
        # A packet's own bytes -> its id, personalised by broker: the same bytes from two brokers differ.
        self._content_id = content_ids(source.encode())
        self._receive_ts = self._latest_sane = EARLIEST  # the last receive time and its MAX_AHEAD bound

    def _bad(self, kind: str, segment: str, ltp: float) -> None:
        """A packet no exchange sends: counted as a bad packet of its kind, logged (rate-limited)."""
        counters = self.counters
        counters[f"bad_packets.{kind}"] += 1  # beside the decoder's bad_packets.* kinds
        n = counters[f"bad_packets.{kind}"]
        if n <= _LOG_FIRST_N or n % 1000 == 0:
            log.warning(f"{self.source}_bad_packet", reason=kind, segment=segment, ltp=repr(ltp), seen=n)

    def _sane_until(self, receive_time: datetime) -> datetime:
        """The latest sane exchange time for ticks received at `receive_time` (a frame's ticks share it)."""
        self._receive_ts, self._latest_sane = receive_time, receive_time + MAX_AHEAD
        return self._latest_sane

    def _time(
        self, receive_time: datetime, last_trade_time: datetime | None, packet_time: datetime | None
    ) -> tuple[datetime, Literal["exchange", "receive"]]:
        """The exchange's packet time, else the last-trade time, else the receive time; sane ones only."""
        if packet_time is None and last_trade_time is None:
            return receive_time, "receive"
        for candidate in (packet_time, last_trade_time):
            if candidate is not None:
                if EARLIEST <= candidate <= receive_time + MAX_AHEAD:
                    return candidate, "exchange"
                self.counters["ticks.insane_time"] += 1
                if self.counters["ticks.insane_time"] <= 20:
                    log.warning(
                        "insane_exchange_time",
                        source=self.source,
                        exchange_time=candidate.isoformat(),
                        receive_time=receive_time.isoformat(),
                    )
        return receive_time, "receive"

    def build(
        self,
        *,
        segment: str,
        security_id: int,
        receive_time: datetime,
        packet: str,
        ltp: float,
        last_trade_time: datetime | None = None,
        packet_time: datetime | None = None,
        ltq: int | None = None,
        atp: float | None = None,
        volume: int | None = None,
        total_buy_qty: int | None = None,
        total_sell_qty: int | None = None,
        oi: int | None = None,
        oi_day_high: int | None = None,
        oi_day_low: int | None = None,
        open_: float | None = None,
        high: float | None = None,
        low: float | None = None,
        close: float | None = None,
        prev_close: float | None = None,
        bid_price: tuple[float, ...] = (),
        bid_qty: tuple[int, ...] = (),
        bid_orders: tuple[int, ...] = (),
        ask_price: tuple[float, ...] = (),
        ask_qty: tuple[int, ...] = (),
        ask_orders: tuple[int, ...] = (),
        raw: bytes | None = None,
    ) -> Tick | None:
        """One tick; None when the packet cannot be one (a price no exchange sends, a segment the broker
        does not have: a counted bad packet) or its instrument is unknown and the policy is to drop it.

        `raw`, the packet's bytes, makes the tick's identity when the packet carries an exchange time
        of its own: the same packet received twice is then the same tick. A packet without one (Kite
        quote and LTP packets) cannot be told from a genuinely repeated quote, so it gets a fresh id.
        """
        counters = self.counters
        # NaN fails both comparisons. Zero is an instrument not traded yet (its book still counts), and a
        # price can be negative (MCX crude oil traded at -37.63 in April 2020).
        if not -MAX_PRICE < ltp < MAX_PRICE or segment.startswith(UNKNOWN_SEGMENT):
            self._bad("unknown_segment" if segment.startswith(UNKNOWN_SEGMENT) else "implausible_price", segment, ltp)
            return None
        instrument_id = self.instruments.get((segment, security_id) if self._pair_key else security_id)
        if instrument_id is None:
            counters["ticks.unknown_instrument"] += 1
            if not self.keep_unknown:
                counters["ticks.dropped_unknown"] += 1
                return None
        counters["ticks"] += 1
        # The exchange's own time where it has one and it is sane (the common case, checked here);
        # `_time` sorts out the rest: no time, an insane one, a fallback to the last-trade time.
        candidate = last_trade_time if packet_time is None else packet_time
        time_source: Literal["exchange", "receive"]
        if candidate is None:
            when, time_source = receive_time, "receive"
        elif (
            EARLIEST
            <= candidate
            <= (self._latest_sane if receive_time is self._receive_ts else self._sane_until(receive_time))
        ):
            when, time_source = candidate, "exchange"
        else:
            when, time_source = self._time(receive_time, last_trade_time, packet_time)
        # The packet's own bytes identify it where it has a time of its own; else a fresh id.
        tick_id = self._content_id(raw) if raw is not None and candidate is not None else new_tick_id()
        # Positional arguments only: a starred call (`*derived_values(...)`) about doubles Tick's construction.
        change, change_pct, spread, spread_bps, mid, micro_price, imbalance, book_imbalance = derived_values(
            ltp, prev_close, bid_price, bid_qty, ask_price, ask_qty, total_buy_qty, total_sell_qty
        )
        return Tick(
            tick_id, self.source, segment, security_id, when, receive_time, time_source, packet,
            ltp, ltq, atp, volume, total_buy_qty, total_sell_qty, oi, oi_day_high, oi_day_low,
            open_, high, low, close, prev_close,
            bid_price, bid_qty, bid_orders, ask_price, ask_qty, ask_orders,
            instrument_id, change, change_pct, spread, spread_bps, mid, micro_price, imbalance, book_imbalance,
            last_trade_time, packet_time,
        )  # fmt: skip
