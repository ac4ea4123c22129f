"""The bundled market: real instruments cut from the brokers' masters, for a first run that shows the product.

`market_data/` holds a slice of each broker's real instrument master (see its README.md): the
NIFTY and BANKNIFTY indices, their futures, NIFTY options around the money and six large stocks.
`tickpipe run` syncs these slices into `instruments` and the simulator serves the same contracts,
so stored ticks carry our instrument ids and enrichment from the first second. Each broker adapter
reads its own slice into simulated instruments (`simulated_instrument`), priced by `plausible_price`.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from tickpipe_simulator.market import SimInstrument

# Price levels of February 2026, near enough for a simulated walk; options are priced off these.
_SPOT = {
    "NIFTY": 25_500.0,
    "BANKNIFTY": 60_000.0,
    "INFY": 1_600.0,
    "RELIANCE": 1_450.0,
    "HDFCBANK": 950.0,
    "TCS": 3_100.0,
    "SBIN": 1_100.0,
    "ICICIBANK": 1_400.0,
}


def master_path(source: str) -> Path:
    """The bundled slice of `source`'s instrument master, in the broker's own CSV format."""
    return Path(str(files("tickpipe_simulator") / "market_data" / f"{source}-master.csv"))


def plausible_price(underlying: str, kind: str, strike: float, tick: float) -> float:
    """A price near the market's for an index or stock, its future (FUT) or option (CE, PE), on the tick grid."""
    return round(_price(underlying, kind, strike) / tick) * tick


def _price(underlying: str, kind: str, strike: float) -> float:
    spot = _SPOT[underlying]
    if kind == "FUT":
        return spot * 1.003
    if kind in ("CE", "PE"):
        intrinsic = max(0.0, spot - strike) if kind == "CE" else max(0.0, strike - spot)
        return intrinsic + 120.0 * math.exp(-abs(spot - strike) / 400.0) + 5.0
    return spot


def bundled_market(
    source: str, simulated: Callable[[dict[str, str], random.Random], SimInstrument], seed: int = 0
) -> list[SimInstrument]:
    """The bundled slice of `source`'s master as simulated instruments, each row read by `simulated`."""
    rng = random.Random(seed)
    with master_path(source).open(newline="") as f:
        return [simulated(row, random.Random(rng.random())) for row in csv.DictReader(f)]
