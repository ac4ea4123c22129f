"""Stage 3 of ingestion: a decoded packet's fields -> one `Tick`, built in this one place.

Broker decoders (`dhan/parse.py`, `kite/parse.py`) know their wire layouts and nothing of our
tick beyond the raw fields they hand over here. The builder adds what is ours: the tick's identity,
which clock its `time` comes from (with a sanity check against the receive time), our instrument
id (and the unknown-instrument policy), and the derived fields. It runs once per tick, so it
builds the `Tick` by position; `_FIELDS` spells that order out and is checked against `Tick` at
import, so adding a field to `Tick` without updating the builder fails loudly, not silently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

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

# Tick's fields in the order `build` passes them; checked against Tick below.
_FIELDS = (
    "tick_id", "source", "segment", "security_id", "exchange_ts", "receive_ts", "time_source", "packet",
    "ltp", "ltq", "atp", "volume", "total_buy_qty", "total_sell_qty", "oi", "oi_day_high", "oi_day_low",
    "open", "high", "low", "close", "prev_close",
    "bid_price", "bid_qty", "bid_orders", "ask_price", "ask_qty", "ask_orders",
    "instrument_id", "change", "change_pct", "spread", "spread_bps", "mid", "micro_price", "imbalance",
    "book_imbalance", "last_trade_ts", "packet_ts",
)  # fmt: skip
if Tick.__struct_fields__ != _FIELDS:
    raise ImportError("TickBuilder.build passes Tick's fields by position: update _FIELDS and build() together")


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

    def _sane_until(self, receive_ts: datetime) -> datetime:
        """The latest sane exchange time for ticks received at `receive_ts` (a frame's ticks share it)."""
        self._receive_ts, self._latest_sane = receive_ts, receive_ts + MAX_AHEAD
        return self._latest_sane

    def _time(
        self, receive_ts: datetime, last_trade_ts: datetime | None, packet_ts: datetime | None
    ) -> tuple[datetime, Literal["exchange", "receive"]]:
        """The exchange's packet time, else the last-trade time, else the receive time; sane ones only."""
        if packet_ts is None and last_trade_ts is None:
            return receive_ts, "receive"
        for candidate in (packet_ts, last_trade_ts):
            if candidate is not None:
                if EARLIEST <= candidate <= receive_ts + MAX_AHEAD:
                    return candidate, "exchange"
                self.counters["ticks.insane_time"] += 1
                if self.counters["ticks.insane_time"] <= 20:
                    log.warning(
                        "insane_exchange_time",
                        source=self.source,
                        exchange_time=candidate.isoformat(),
                        receive_time=receive_ts.isoformat(),
                    )
        return receive_ts, "receive"

    def build(
        self,
        segment: str,
        security_id: int,
        receive_ts: datetime,
        last_trade_ts: datetime | None,
        packet_ts: datetime | None,
        packet: str,
        ltp: float,
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
        """One tick, or None when its instrument is unknown and the policy is to drop it.

        `raw`, the packet's bytes, makes the tick's identity when the packet carries an exchange time
        of its own: the same packet received twice is then the same tick. A packet without one (Kite
        quote and LTP packets) cannot be told from a genuinely repeated quote, so it gets a fresh id.
        """
        counters = self.counters
        instrument_id = self.instruments.get((segment, security_id) if self._pair_key else security_id)
        if instrument_id is None:
            counters["ticks.unknown_instrument"] += 1
            if not self.keep_unknown:
                counters["ticks.dropped_unknown"] += 1
                return None
        counters["ticks"] += 1
        # The exchange's own time where it has one and it is sane (the common case, checked here);
        # `_time` sorts out the rest: no time, an insane one, a fallback to the last-trade time.
        candidate = last_trade_ts if packet_ts is None else packet_ts
        time_source: Literal["exchange", "receive"]
        if candidate is None:
            exchange_ts, time_source = receive_ts, "receive"
        elif (
            EARLIEST
            <= candidate
            <= (self._latest_sane if receive_ts is self._receive_ts else self._sane_until(receive_ts))
        ):
            exchange_ts, time_source = candidate, "exchange"
        else:
            exchange_ts, time_source = self._time(receive_ts, last_trade_ts, packet_ts)
        # The packet's own bytes identify it where it has a time of its own; else a fresh id.
        tick_id = self._content_id(raw) if raw is not None and candidate is not None else new_tick_id()
        # Positional arguments only: a starred call (`*derived_values(...)`) about doubles Tick's construction.
        change, change_pct, spread, spread_bps, mid, micro_price, imbalance, book_imbalance = derived_values(
            ltp, prev_close, bid_price, bid_qty, ask_price, ask_qty, total_buy_qty, total_sell_qty
        )
        return Tick(
            tick_id, self.source, segment, security_id, exchange_ts, receive_ts, time_source, packet,
            ltp, ltq, atp, volume, total_buy_qty, total_sell_qty, oi, oi_day_high, oi_day_low,
            open_, high, low, close, prev_close,
            bid_price, bid_qty, bid_orders, ask_price, ask_qty, ask_orders,
            instrument_id, change, change_pct, spread, spread_bps, mid, micro_price, imbalance, book_imbalance,
            last_trade_ts, packet_ts,
        )  # fmt: skip
