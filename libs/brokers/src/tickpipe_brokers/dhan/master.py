"""Dhan's instrument masters: the compact one (SEM_* columns) and the detailed one (whose columns have
changed over time: 39 then 31), read by column name into our instrument rows (protocols.md section 3)."""

from __future__ import annotations

from tickpipe_brokers.master import (
    InstrumentRow,
    MasterFormat,
    RowError,
    decimal,
    expiry,
    option_type,
    positive_int,
    required,
    strike,
)

# (exchange, segment letter) -> the feed's exchange segment (protocols.md section 3). NSE commodity
# rows (NSE, M) have no documented feed segment: they are kept as instruments under NSE_COMM.
DHAN_FEED_SEGMENTS = {
    ("NSE", "E"): "NSE_EQ",
    ("NSE", "D"): "NSE_FNO",
    ("NSE", "C"): "NSE_CURRENCY",
    ("NSE", "M"): "NSE_COMM",
    ("BSE", "E"): "BSE_EQ",
    ("BSE", "D"): "BSE_FNO",
    ("BSE", "C"): "BSE_CURRENCY",
    ("MCX", "M"): "MCX_COMM",
    ("NSE", "I"): "IDX_I",
    ("BSE", "I"): "IDX_I",
}


def _dhan_type(instrument: str, option: str | None) -> str:
    if instrument == "EQUITY":
        return "EQ"
    if instrument == "INDEX":
        return "INDEX"
    if instrument.startswith("FUT"):
        return "FUT"
    if instrument.startswith("OPT") and option:
        return "OPT"
    return instrument


def _dhan_row(v: list[str], columns: tuple[str, ...]) -> InstrumentRow:
    """A row of either Dhan format, its values in `columns` order, name and underlying already chosen."""
    (
        exchange,
        segment,
        security_id,
        instrument,
        symbol,
        name,
        underlying,
        lot,
        expires,
        strike_price,
        kind_of_option,
        tick,
    ) = v
    feed_segment = DHAN_FEED_SEGMENTS.get((exchange, segment))
    if feed_segment is None:
        raise RowError(f"{columns[0]}/{columns[1]}: unknown exchange and segment {exchange},{segment}")
    sid = positive_int(security_id, columns[2])
    option = option_type(kind_of_option)
    return InstrumentRow(
        exchange,
        segment,
        None if segment == "I" else sid,
        required(symbol, columns[4]),
        name or None,
        underlying or symbol,
        _dhan_type(required(instrument, columns[3]), option),
        expiry(expires, columns[8]),
        strike(strike_price, columns[9]) if option else None,
        option,
        decimal(lot, columns[7]),
        # Tick sizes are in paise (INFY 10.0000 = Rs 0.10), except on index rows, which carry 0.05:
        # an index is not traded, and its conventional tick is Rs 0.05, so it is taken as rupees.
        decimal(tick, columns[11]) / (1 if segment == "I" else 100),
        feed_segment,
        sid,
        None,
    )


_DHAN_COMPACT = (
    "SEM_EXM_EXCH_ID",
    "SEM_SEGMENT",
    "SEM_SMST_SECURITY_ID",
    "SEM_INSTRUMENT_NAME",
    "SEM_TRADING_SYMBOL",
    "SEM_CUSTOM_SYMBOL",
    "SM_SYMBOL_NAME",
    "SEM_LOT_UNITS",
    "SEM_EXPIRY_DATE",
    "SEM_STRIKE_PRICE",
    "SEM_OPTION_TYPE",
    "SEM_TICK_SIZE",
)
_DHAN_DETAILED = (
    "EXCH_ID",
    "SEGMENT",
    "SECURITY_ID",
    "INSTRUMENT",
    "SYMBOL_NAME",
    "DISPLAY_NAME",
    "UNDERLYING_SYMBOL",
    "LOT_SIZE",
    "SM_EXPIRY_DATE",
    "STRIKE_PRICE",
    "OPTION_TYPE",
    "TICK_SIZE",
)
# Columns a row cannot do without; the others may be missing from a format's revision.
_DHAN_COMPACT_REQUIRED = (*_DHAN_COMPACT[:5], "SEM_LOT_UNITS", "SEM_TICK_SIZE")
_DHAN_DETAILED_REQUIRED = (*_DHAN_DETAILED[:5], "LOT_SIZE", "TICK_SIZE")


def _compact(v: list[str]) -> InstrumentRow:
    segment, symbol, custom, company = v[1], v[4], v[5], v[6]
    # Derivatives carry no underlying column here: NIFTY-Mar2026-FUT's underlying is NIFTY.
    underlying = symbol.split("-", 1)[0] if segment in ("D", "C", "M") else symbol
    v[5], v[6] = company or custom, underlying
    return _dhan_row(v, _DHAN_COMPACT)


def _detailed(v: list[str]) -> InstrumentRow:
    instrument, symbol, display, underlying = v[3], v[4], v[5], v[6]
    if instrument in ("EQUITY", "INDEX") and underlying:
        # For cash and index rows SYMBOL_NAME is the company name; the ticker is the underlying.
        v[4], v[5] = underlying, display or symbol
    return _dhan_row(v, _DHAN_DETAILED)


COMPACT = MasterFormat("dhan-compact", _DHAN_COMPACT, _DHAN_COMPACT_REQUIRED, _compact, segment_in_key=True)
DETAILED = MasterFormat("dhan-detailed", _DHAN_DETAILED, _DHAN_DETAILED_REQUIRED, _detailed, segment_in_key=True)


def master_format(header: list[str]) -> MasterFormat:
    """The compact master has SEM_* columns; anything else is read as the detailed one."""
    names = set(header)
    return COMPACT if "SEM_SMST_SECURITY_ID" in names or "SEM_EXM_EXCH_ID" in names else DETAILED
