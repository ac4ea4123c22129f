"""One instrument's market at one tick, as an exchange would send it: what the packet encoders read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class Quote:
    """One instrument's state at one tick."""

    segment: str
    security_id: int
    ltp: float
    ltq: int
    volume: int
    atp: float
    open: float
    high: float
    low: float
    close: float
    oi: int
    oi_high: int
    oi_low: int
    total_buy_qty: int
    total_sell_qty: int
    bid_price: list[float]
    bid_qty: list[int]
    bid_orders: list[int]
    ask_price: list[float]
    ask_qty: list[int]
    ask_orders: list[int]


class Listing(Protocol):
    """An instrument as the encoders name it: its feed segment and id, with its previous close and OI."""

    @property
    def segment(self) -> str: ...
    @property
    def security_id(self) -> int: ...
    @property
    def prev_close(self) -> float: ...
    @property
    def oi(self) -> int: ...
    @property
    def kite_token(self) -> int | None: ...
