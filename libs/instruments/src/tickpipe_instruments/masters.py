"""Broker instrument masters (CSV) -> validated instrument rows, parsed by column name.

Three formats: Dhan's compact master (SEM_* columns), Dhan's detailed master (whose columns have
changed over time: 39 then 31), and Kite's daily dump. A missing required column rejects the file
before anything is written; a bad row is reported with its line number and reason and the rest
still load. Facts in protocols.md section 3.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, NamedTuple

from tickpipe_core.errors import SyncError

Source = Literal["dhan", "kite"]
Format = Literal["dhan-compact", "dhan-detailed", "kite"]


class InstrumentRow(NamedTuple):
    """One listing, in our vocabulary, in the column order of the sync's staging table."""

    exchange: str  # NSE, BSE, MCX
    segment: str  # E equity, D derivatives, C currency, M commodity, I index
    exchange_token: int | None  # the exchange's id; None for indices (never merged across brokers)
    trading_symbol: str
    name: str | None
    underlying: str  # NIFTY for NIFTY futures and options; the symbol itself otherwise
    instrument_type: str  # EQ, INDEX, FUT, OPT (or the broker's own word for anything else)
    expiry: date | None
    strike: Decimal | None
    option_type: str | None  # CE, PE
    lot_size: Decimal
    tick_size: Decimal  # in rupees
    broker_segment: str  # Dhan feed segment (NSE_FNO) or Kite segment (NFO-OPT)
    broker_id: int  # Dhan security id or Kite instrument token
    kite_exchange_token: int | None


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class ParsedMaster:
    source: Source
    format: Format
    rows: list[InstrumentRow] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


class _RowError(ValueError):
    pass


# -- field conversions: each raises _RowError with a reason a person can act on ----------------------


def _int(text: str, column: str) -> int:
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)  # Dhan writes some counts as 1.0E7
        except ValueError:
            raise _RowError(f"{column}: {text!r} is not a number") from None
        if not as_float.is_integer():
            raise _RowError(f"{column}: {text!r} is not a whole number") from None
        value = int(as_float)
    return value


def _positive_int(text: str, column: str) -> int:
    value = _int(text, column)
    if value <= 0:
        raise _RowError(f"{column}: {text!r} must be positive")
    return value


def _decimal(text: str, column: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _RowError(f"{column}: {text!r} is not a number") from None
    if not value.is_finite():
        raise _RowError(f"{column}: {text!r} is not a number")
    return value


def _expiry(text: str, column: str) -> date | None:
    if not text or text.startswith("0001-01-01"):  # Dhan's "no expiry"
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d/%m/%y", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise _RowError(f"{column}: {text!r} is not a date")


def _strike(text: str, column: str) -> Decimal | None:
    if not text:
        return None
    value = _decimal(text, column)
    return value if value > 0 else None  # non-options carry -0.01 (Dhan) or 0 (Kite)


def _required(text: str, column: str) -> str:
    if not text:
        raise _RowError(f"{column}: empty")
    return text


def _option(text: str) -> str | None:
    if text in ("CE", "PE"):
        return text
    if text in ("", "XX", "NA"):
        return None
    raise _RowError(f"option type {text!r} is not CE, PE or XX")


# -- Dhan ---------------------------------------------------------------------------------------

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


def _dhan_type(instrument: str, option_type: str | None) -> str:
    if instrument == "EQUITY":
        return "EQ"
    if instrument == "INDEX":
        return "INDEX"
    if instrument.startswith("FUT"):
        return "FUT"
    if instrument.startswith("OPT") and option_type:
        return "OPT"
    return instrument


def _dhan_row(v: list[str], columns: tuple[str, ...]) -> InstrumentRow:
    """A row of either Dhan format, its values in `columns` order, name and underlying already chosen."""
    exchange, segment, security_id, instrument, symbol, name, underlying, lot, expiry, strike, option_type, tick = v
    feed_segment = DHAN_FEED_SEGMENTS.get((exchange, segment))
    if feed_segment is None:
        raise _RowError(f"{columns[0]}/{columns[1]}: unknown exchange and segment {exchange},{segment}")
    sid = _positive_int(security_id, columns[2])
    option = _option(option_type)
    return InstrumentRow(
        exchange,
        segment,
        None if segment == "I" else sid,
        _required(symbol, columns[4]),
        name or None,
        underlying or symbol,
        _dhan_type(_required(instrument, columns[3]), option),
        _expiry(expiry, columns[8]),
        _strike(strike, columns[9]) if option else None,
        option,
        _decimal(lot, columns[7]),
        # Tick sizes are in paise (INFY 10.0000 = Rs 0.10), except on index rows, which carry 0.05:
        # an index is not traded, and its conventional tick is Rs 0.05, so it is taken as rupees.
        _decimal(tick, columns[11]) / (1 if segment == "I" else 100),
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


# -- Kite ---------------------------------------------------------------------------------------

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
    token, exchange_token, symbol, name, expiry, strike, tick, lot, kind, segment, exchange = v
    mapped = _KITE_EXCHANGES.get(exchange)
    if mapped is None:
        raise _RowError(f"exchange: unknown {exchange!r}")
    ours, letter = mapped
    instrument_token = _positive_int(token, "instrument_token")
    ex_token = _positive_int(exchange_token, "exchange_token")
    if instrument_token >> 8 != ex_token:
        raise _RowError(f"instrument_token {instrument_token} does not encode exchange_token {ex_token}")
    index = segment == "INDICES"
    option = kind if kind in ("CE", "PE") else None
    instrument_type = "INDEX" if index else "OPT" if option else _required(kind, "instrument_type")
    return InstrumentRow(
        ours,
        "I" if index else letter,
        None if index else ex_token,
        _required(symbol, "tradingsymbol"),
        name or None,
        name if (name and instrument_type in ("FUT", "OPT")) else symbol,
        instrument_type,
        _expiry(expiry, "expiry"),
        _strike(strike, "strike") if option else None,
        option,
        _decimal(lot, "lot_size"),
        _decimal(tick, "tick_size"),
        segment,
        instrument_token,
        ex_token,
    )


# -- the file -----------------------------------------------------------------------------------

_FORMATS: dict[Format, tuple[Source, tuple[str, ...], tuple[str, ...], Callable[[list[str]], InstrumentRow]]] = {
    "dhan-compact": ("dhan", _DHAN_COMPACT, _DHAN_COMPACT_REQUIRED, _compact),
    "dhan-detailed": ("dhan", _DHAN_DETAILED, _DHAN_DETAILED_REQUIRED, _detailed),
    "kite": ("kite", _KITE, _KITE_REQUIRED, _kite),
}


def detect_format(source: Source, header: list[str]) -> Format:
    names = set(header)
    if source == "kite":
        return "kite"
    return "dhan-compact" if "SEM_SMST_SECURITY_ID" in names or "SEM_EXM_EXCH_ID" in names else "dhan-detailed"


def parse_master(source: Source, lines: Iterable[str]) -> ParsedMaster:
    """Parse a master's CSV text; raises SyncError when the header lacks a required column."""
    reader = csv.reader(lines)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise SyncError("the master is empty (no header)") from None
    fmt = detect_format(source, header)
    _, wanted, required, build = _FORMATS[fmt]
    missing = [c for c in required if c not in header]
    if missing:
        raise SyncError(f"{fmt} master: missing required column(s) {', '.join(missing)}; nothing was written")
    positions = [header.index(c) if c in header else -1 for c in wanted]
    width = len(header)
    out = ParsedMaster(source, fmt)
    seen: dict[tuple[str, int], int] = {}
    for line, values in _numbered(reader):
        if isinstance(values, str):
            out.bad.append(BadRow(line, values))
            continue
        if (unclean := _unclean(values)) is not None:
            out.bad.append(BadRow(line, unclean))
            continue
        if len(values) != width:
            out.bad.append(BadRow(line, f"{len(values)} fields, the header has {width}"))
            continue
        try:
            row = build([values[p].strip() if p >= 0 else "" for p in positions])
        except _RowError as e:
            out.bad.append(BadRow(line, str(e)))
            continue
        key = (row.broker_segment, row.broker_id) if source == "dhan" else ("", row.broker_id)
        first = seen.setdefault(key, line)
        if first != line:
            out.bad.append(BadRow(line, f"duplicate of line {first} ({row.broker_segment} {row.broker_id})"))
            continue
        out.rows.append(row)
    return out


def _numbered(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str] | str]]:
    """Rows with their line number in the file (the header is line 1); blank lines skipped.

    A line the CSV reader cannot read (a field past its size limit) comes as the reason instead.
    """
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield reader.line_num, f"unreadable: {e}"  # type: ignore[attr-defined]
            continue
        if values:
            yield reader.line_num, values  # type: ignore[attr-defined]


def _unclean(values: list[str]) -> str | None:
    """Why a row's text cannot be stored as it is: bytes that are not UTF-8, or a NUL."""
    for v in values:
        if "\x00" in v:
            return "holds a NUL character"
        if any("\udc80" <= c <= "\udcff" for c in v):
            return "is not valid UTF-8"
    return None
