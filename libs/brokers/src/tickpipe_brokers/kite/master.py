"""Kite's daily instruments dump, read by column name into our instrument rows (protocols.md section 3)."""

from __future__ import annotations

from tickpipe_brokers.master import (
    InstrumentRow,
    MasterFormat,
    RowError,
    decimal,
    expiry,
    positive_int,
    required,
    strike,
)

# Kite exchange (and segment for indices) -> our (exchange, segment letter).
_KITE_EXCHANGES = {
    "NSE": ("NSE", "E"),
    "BSE": ("BSE", "E"),
    "NFO": ("NSE", "D"),
    "BFO": ("BSE", "D"),
    "CDS": ("NSE", "C"),
    "BCD": ("BSE", "C"),
    "MCX": ("MCX", "M"),
    "NCO": ("NSE", "M"),
}
_KITE = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)
_KITE_REQUIRED = (*_KITE[:3], "tick_size", "lot_size", "instrument_type", "segment", "exchange")


def _kite(v: list[str]) -> InstrumentRow:
    token, exchange_token, symbol, name, expires, strike_price, tick, lot, kind, segment, exchange = v
    mapped = _KITE_EXCHANGES.get(exchange)
    if mapped is None:
        raise RowError(f"exchange: unknown {exchange!r}")
    ours, letter = mapped
    instrument_token = positive_int(token, "instrument_token")
    ex_token = positive_int(exchange_token, "exchange_token")
    if instrument_token >> 8 != ex_token:
        raise RowError(f"instrument_token {instrument_token} does not encode exchange_token {ex_token}")
    index = segment == "INDICES"
    option = kind if kind in ("CE", "PE") else None
    instrument_type = "INDEX" if index else "OPT" if option else required(kind, "instrument_type")
    return InstrumentRow(
        ours,
        "I" if index else letter,
        None if index else ex_token,
        required(symbol, "tradingsymbol"),
        name or None,
        name if (name and instrument_type in ("FUT", "OPT")) else symbol,
        instrument_type,
        expiry(expires, "expiry"),
        strike(strike_price, "strike") if option else None,
        option,
        decimal(lot, "lot_size"),
        decimal(tick, "tick_size"),
        segment,
        instrument_token,
        ex_token,
    )


DUMP = MasterFormat("kite", _KITE, _KITE_REQUIRED, _kite, segment_in_key=False)


def master_format(header: list[str]) -> MasterFormat:
    """Kite has one format."""
    return DUMP
