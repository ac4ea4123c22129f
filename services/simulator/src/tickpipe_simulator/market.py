"""A simulated market: instruments whose prices take a random walk with a 5-level book.

Source-agnostic: broker simulators turn `Quote`s into their own packets (each adapter's `encode.py`).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from tickpipe_brokers.quote import Quote

_F32 = struct.Struct("<f")


def f32(x: float) -> float:
    """The float32 nearest x, as a Python float: what a broker's f32 field can carry."""
    return float(_F32.unpack(_F32.pack(x))[0])


@dataclass
class SimInstrument:
    segment: str
    security_id: int
    prev_close: float
    tick_size: float = 0.05
    lot: int = 75
    price: float = 0.0
    volume: int = 0
    turnover: float = 0.0
    day_open: float = 0.0
    day_high: float = 0.0
    day_low: float = 0.0
    oi: int = 0
    oi_high: int = 0
    oi_low: int = 0
    rng: random.Random = field(default_factory=random.Random)
    kite_token: int | None = None
    """A real Kite instrument token (the bundled market); None: derived from the Dhan id."""

    def __post_init__(self) -> None:
        self.price = self.day_open = self.day_high = self.day_low = self.prev_close
        self.oi = self.oi_high = self.oi_low = self.lot * self.rng.randint(1000, 100000)

    def _round(self, x: float) -> float:
        return max(self.tick_size, round(x / self.tick_size) * self.tick_size)

    def step(self) -> Quote:
        """Advance one trade and return the resulting quote (prices already f32-exact)."""
        rng = self.rng
        self.price = self._round(self.price * (1 + rng.gauss(0, 0.0004)))
        qty = self.lot * rng.randint(1, 20)
        self.volume += qty
        self.turnover += qty * self.price
        self.day_high, self.day_low = max(self.day_high, self.price), min(self.day_low, self.price)
        self.oi = max(0, self.oi + self.lot * rng.randint(-5, 5))
        self.oi_high, self.oi_low = max(self.oi_high, self.oi), min(self.oi_low, self.oi)
        half = self.tick_size * rng.randint(1, 3)
        best_bid, best_ask = self._round(self.price - half), self._round(self.price + half)
        bid_price = [f32(best_bid - i * self.tick_size) for i in range(5)]
        ask_price = [f32(best_ask + i * self.tick_size) for i in range(5)]
        bid_qty = [self.lot * rng.randint(1, 200) for _ in range(5)]
        ask_qty = [self.lot * rng.randint(1, 200) for _ in range(5)]
        return Quote(
            segment=self.segment,
            security_id=self.security_id,
            ltp=f32(self.price),
            ltq=qty,
            volume=self.volume,
            atp=f32(self.turnover / self.volume),
            open=f32(self.day_open),
            high=f32(self.day_high),
            low=f32(self.day_low),
            close=f32(self.prev_close),
            oi=self.oi,
            oi_high=self.oi_high,
            oi_low=self.oi_low,
            total_buy_qty=sum(bid_qty) + self.lot * rng.randint(0, 5000),
            total_sell_qty=sum(ask_qty) + self.lot * rng.randint(0, 5000),
            bid_price=bid_price,
            bid_qty=bid_qty,
            bid_orders=[rng.randint(1, 50) for _ in range(5)],
            ask_price=ask_price,
            ask_qty=ask_qty,
            ask_orders=[rng.randint(1, 50) for _ in range(5)],
        )


def make_instruments(count: int, seed: int = 0, segment: str = "NSE_FNO", first_id: int = 40000) -> list[SimInstrument]:
    """`count` instruments with ids first_id.. and starting prices between 50 and 25,000."""
    rng = random.Random(seed)
    return [
        SimInstrument(
            segment, first_id + i, prev_close=round(rng.uniform(50, 25000), 1), rng=random.Random(rng.random())
        )
        for i in range(count)
    ]


DHAN_MASTER_HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,SEM_TRADING_SYMBOL,"
    "SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,SEM_OPTION_TYPE,SEM_TICK_SIZE,"
    "SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,SM_SYMBOL_NAME"
)
"""The columns of Dhan's compact instrument master."""


def dhan_master(instruments: list[SimInstrument]) -> str:
    """Dhan's compact master (CSV) listing NSE_FNO `instruments` as futures: synced before a simulated
    run, it gives their ticks instrument ids, as a real deployment's synced master does."""
    rows = [
        f"NSE,D,{i.security_id},FUTSTK,0,SIM{i.security_id}-Dec2099-FUT,{i.lot},SIM {i.security_id},"
        f"2099-12-31 14:30:00,-0.01,XX,{i.tick_size * 100:g},M,FUT,,"
        for i in instruments
        if i.segment == "NSE_FNO"
    ]
    return "\n".join([DHAN_MASTER_HEADER, *rows]) + "\n"
