"""Broker instrument masters (CSV) -> validated instrument rows, parsed by column name.

Each broker adapter names its master's formats (`MasterFormat`: the columns it reads, the ones a row
cannot do without, and how a row becomes an `InstrumentRow`) and picks one from a file's header; this
module reads the file. A missing required column rejects the file before anything is written; a bad
row is reported with its line number and reason and the rest still load. Facts in protocols.md
section 3.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from tickpipe_core.errors import SyncError


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
    source: str
    format: str
    rows: list[InstrumentRow] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


class RowError(ValueError):
    """Why one row of a master cannot be stored; its line is reported and skipped."""


@dataclass(frozen=True)
class MasterFormat:
    """One layout of a broker's master: the columns a row is built from, in the order `build` takes."""

    name: str
    columns: tuple[str, ...]
    required: tuple[str, ...]  # a file without one of these is refused whole
    build: Callable[[list[str]], InstrumentRow]
    segment_in_key: bool  # a listing is (segment, id) at this broker, not the id alone


# -- field conversions: each raises RowError with a reason a person can act on ----------------------


def whole_number(text: str, column: str) -> int:
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)  # Dhan writes some counts as 1.0E7
        except ValueError:
            raise RowError(f"{column}: {text!r} is not a number") from None
        if not as_float.is_integer():
            raise RowError(f"{column}: {text!r} is not a whole number") from None
        value = int(as_float)
    return value


_BIGINT_MAX = 2**63 - 1  # the instruments table's ids are bigint


def positive_int(text: str, column: str) -> int:
    value = whole_number(text, column)
    if value <= 0:
        raise RowError(f"{column}: {text!r} must be positive")
    if value > _BIGINT_MAX:
        raise RowError(f"{column}: {text!r} is larger than any id the database holds")
    return value


def decimal(text: str, column: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RowError(f"{column}: {text!r} is not a number") from None
    if not value.is_finite():
        raise RowError(f"{column}: {text!r} is not a number")
    return value


def expiry(text: str, column: str) -> date | None:
    if not text or text.startswith("0001-01-01"):  # Dhan's "no expiry"
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d/%m/%y", "%d/%m/%Y", "%d-%m-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise RowError(f"{column}: {text!r} is not a date")


def strike(text: str, column: str) -> Decimal | None:
    if not text:
        return None
    value = decimal(text, column)
    return value if value > 0 else None  # non-options carry -0.01 (Dhan) or 0 (Kite)


def required(text: str, column: str) -> str:
    if not text:
        raise RowError(f"{column}: empty")
    return text


def option_type(text: str) -> str | None:
    if text in ("CE", "PE"):
        return text
    if text in ("", "XX", "NA"):
        return None
    raise RowError(f"option type {text!r} is not CE, PE or XX")


# -- the file -----------------------------------------------------------------------------------


def parse_master(source: str, lines: Iterable[str]) -> ParsedMaster:
    """Parse a master of `source` (an adapter's name); SyncError when the header lacks a required column."""
    from tickpipe_brokers.registry import adapter

    return read_master(source, adapter(source).master_format, lines)


def read_master(source: str, pick: Callable[[list[str]], MasterFormat], lines: Iterable[str]) -> ParsedMaster:
    """Read a master's CSV text in the format `pick` chooses from its header."""
    reader = csv.reader(lines)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise SyncError("the master is empty (no header)") from None
    fmt = pick(header)
    missing = [c for c in fmt.required if c not in header]
    if missing:
        raise SyncError(f"{fmt.name} master: missing required column(s) {', '.join(missing)}; nothing was written")
    positions = [header.index(c) if c in header else -1 for c in fmt.columns]
    width = len(header)
    out = ParsedMaster(source, fmt.name)
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
            row = fmt.build([values[p].strip() if p >= 0 else "" for p in positions])
        except RowError as e:
            out.bad.append(BadRow(line, str(e)))
            continue
        key = (row.broker_segment if fmt.segment_in_key else "", row.broker_id)
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
