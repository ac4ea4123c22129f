"""The bundled market: real instruments cut from the brokers' masters, for a first run that shows the product.

`market_data/` holds a slice of each broker's real instrument master (see its README.md): the
NIFTY and BANKNIFTY indices, their futures, NIFTY options around the money and six large stocks.
`tickpipe run` syncs these slices into `instruments` and the simulator serves the same contracts,
so stored ticks carry our instrument ids and enrichment from the first second. Ingestion asks this
module what to subscribe to (`feed_settings`); nothing else spells the list out again.
"""

from __future__ import annotations

import csv
import math
import random
from importlib.resources import files
from pathlib import Path
from typing import Literal

from tickpipe_simulator.kite import kite_token
from tickpipe_simulator.market import SimInstrument

Source = Literal["dhan", "kite"]

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
_DHAN_SEGMENT = {("NSE", "I"): "IDX_I", ("NSE", "E"): "NSE_EQ", ("NSE", "D"): "NSE_FNO"}
_KITE_UNDERLYING = {"NIFTY 50": "NIFTY", "NIFTY BANK": "BANKNIFTY"}


def master_path(source: Source) -> Path:
    """The bundled slice of `source`'s instrument master, in the broker's own CSV format."""
    return Path(str(files("tickpipe_simulator") / "market_data" / f"{source}-master.csv"))


def _price(underlying: str, kind: str, strike: float) -> float:
    spot = _SPOT[underlying]
    if kind == "FUT":
        return spot * 1.003
    if kind in ("CE", "PE"):
        intrinsic = max(0.0, spot - strike) if kind == "CE" else max(0.0, strike - spot)
        return intrinsic + 120.0 * math.exp(-abs(spot - strike) / 400.0) + 5.0
    return spot


def bundled_market(source: Source, seed: int = 0) -> list[SimInstrument]:
    """The simulated instruments of the bundled slice, with the broker's real ids and plausible prices."""
    rng = random.Random(seed)
    out: list[SimInstrument] = []
    with master_path(source).open(newline="") as f:
        for row in csv.DictReader(f):
            if source == "dhan":
                exchange, seg, symbol = row["SEM_EXM_EXCH_ID"], row["SEM_SEGMENT"], row["SEM_TRADING_SYMBOL"]
                kind = row["SEM_OPTION_TYPE"] if row["SEM_OPTION_TYPE"] in ("CE", "PE") else row["SEM_INSTRUMENT_NAME"]
                kind = "FUT" if kind.startswith("FUT") else kind
                underlying = symbol.split("-")[0]
                strike = float(row["SEM_STRIKE_PRICE"] or 0)
                tick = float(row["SEM_TICK_SIZE"]) / (1 if seg == "I" else 100)  # paise, but rupees on index rows
                lot = int(float(row["SEM_LOT_UNITS"]))
                segment, security_id, token = _DHAN_SEGMENT[exchange, seg], int(row["SEM_SMST_SECURITY_ID"]), None
            else:
                kind, symbol = row["instrument_type"], row["tradingsymbol"]
                underlying = _KITE_UNDERLYING.get(symbol, row["name"] if kind in ("FUT", "CE", "PE") else symbol)
                strike, tick, lot = float(row["strike"]), float(row["tick_size"]) or 0.05, int(row["lot_size"]) or 1
                segment, security_id, token = "NSE_FNO", int(row["exchange_token"]), int(row["instrument_token"])
            price = round(_price(underlying, kind, strike) / tick) * tick
            out.append(
                SimInstrument(
                    segment,
                    security_id,
                    prev_close=round(price, 2),
                    tick_size=tick,
                    lot=lot,
                    rng=random.Random(rng.random()),
                    kite_token=token,
                )
            )
    return out


def feed_settings(
    source: Source, port: int, instruments: list[SimInstrument], host: str = "127.0.0.1"
) -> dict[str, str]:
    """The environment that points `tickpipe ingest` at a simulator serving `instruments` on `port`."""
    env = {"DATA_SOURCE": source, "INGEST_MARKET_HOURS": "always"}  # the simulated market never closes
    if source == "kite":
        return env | {
            "KITE_FEED_URL": f"ws://{host}:{port}",
            "KITE_API_KEY": "simulator",
            "KITE_ACCESS_TOKEN": "simulator-token",
            "KITE_INSTRUMENTS": ",".join(str(kite_token(i)) for i in instruments),
        }
    return env | {
        "DHAN_FEED_URL": f"ws://{host}:{port}",
        "DHAN_CLIENT_ID": "simulator",
        "DHAN_ACCESS_TOKEN": "simulator-token",
        "DHAN_INSTRUMENTS": ",".join(f"{i.segment}:{i.security_id}" for i in instruments),
    }
