"""Derived fields of a tick, source-agnostic: change, spread, mid, micro-price, imbalances.

Every function returns None where an input is missing (no depth, no previous close, an empty
side of the book) rather than a fake zero or a division error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class Derived(NamedTuple):
    change: float | None
    change_pct: float | None
    spread: float | None
    spread_bps: float | None
    mid: float | None
    micro_price: float | None
    imbalance: float | None
    book_imbalance: float | None


_F = float | None
DerivedValues = tuple[_F, _F, _F, _F, _F, _F, _F, _F]


def derive(*values: Any) -> Derived:
    """`derived_values`, named (the tick builder, once per tick, takes the plain tuple)."""
    return Derived(*derived_values(*values))


def derived_values(
    ltp: float,
    prev_close: float | None,
    bid_price: Sequence[float],
    bid_qty: Sequence[int],
    ask_price: Sequence[float],
    ask_qty: Sequence[int],
    total_buy_qty: int | None,
    total_sell_qty: int | None,
) -> DerivedValues:
    """Compute the derived fields from a tick's raw values, in `Derived`'s order."""
    change = change_pct = None
    if prev_close is not None and prev_close > 0:
        change = ltp - prev_close
        change_pct = change * 100.0 / prev_close  # the order Kite's SDK uses: same float, bit for bit

    spread = spread_bps = mid = micro = imbalance = None
    # A level with a zero price or quantity is an empty slot in the broker's book, not a quote.
    if bid_price and ask_price and bid_price[0] > 0 and ask_price[0] > 0 and bid_qty[0] > 0 and ask_qty[0] > 0:
        bid, ask, bq, aq = bid_price[0], ask_price[0], bid_qty[0], ask_qty[0]
        spread = ask - bid
        mid = (bid + ask) / 2.0
        spread_bps = spread / mid * 10_000.0
        micro = (bid * aq + ask * bq) / (bq + aq)
        imbalance = (bq - aq) / (bq + aq)

    book_imbalance = None
    if total_buy_qty is not None and total_sell_qty is not None and total_buy_qty + total_sell_qty > 0:
        book_imbalance = (total_buy_qty - total_sell_qty) / (total_buy_qty + total_sell_qty)

    return change, change_pct, spread, spread_bps, mid, micro, imbalance, book_imbalance
