"""A tick as the hypertable's row, in PostgreSQL's binary COPY format.

A worker encodes each tick of a batch into its `ticks` row (a binary COPY tuple, in `COLUMNS`
order) and hands the batch's rows to `COPY ticks FROM STDIN (FORMAT binary)` as one buffer:
psycopg's per-field adapters cost several times more. `encode_row` runs once per tick, so it spells
each field out instead of looping over the table in tick.py; a test checks it against psycopg's own
encoding of every column type, field by field.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from msgspec.structs import astuple

from tickpipe_core.tick import Tick, pg_types

# A row is the tick's fields in order, each in the column of the same name (tick.py: the one table).
COLUMNS: tuple[str, ...] = Tick.__struct_fields__
TYPES = tuple(pg_types().values())

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # the binary COPY header: signature, flags, extension
COPY_TRAILER = b"\xff\xff"
_ROW_HEAD = struct.pack(">h", len(COLUMNS))
_NULL = b"\xff\xff\xff\xff"
_I8 = struct.Struct(">iq").pack
_F8 = struct.Struct(">id").pack
_UUID = struct.Struct(">i16s").pack
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FLOAT8, _INT8, _INT4 = 701, 20, 23
_ELEMENT = {"float8": ("d", 8, _FLOAT8), "int8": ("q", 8, _INT8), "int4": ("i", 4, _INT4)}

_text_cache: dict[str, bytes] = {}


def _text(s: str) -> bytes:
    field = _text_cache.get(s)
    if field is None:
        data = s.encode()
        field = struct.pack(">i", len(data)) + data
        if len(_text_cache) < 1024:  # source, segment, clock and packet names: a handful
            _text_cache[s] = field
    return field


def _time(dt: datetime) -> bytes:
    # Computed each time: hashing an aware datetime (to look it up in a cache) costs more than this.
    return _I8(8, (dt - _PG_EPOCH) // _US)


@cache
def _depth_layout(n: int) -> tuple[struct.Struct, int]:
    """How to write the six depth arrays of n levels each: a struct that packs only the 6n values,
    with zero bytes wherever a constant goes (each array's field length, header, and each element's
    length), and those constants as one integer to OR into the packed bytes.

    The constants sit only where the struct leaves zeros, so the OR writes them without touching a
    value: one pack of 6n arguments instead of 6n values interleaved with 6n + 36 constants (which
    cost twice as much to assemble as to pack).
    """
    fmt, constants = ">", b""
    for code, size, oid in (_ELEMENT[k] for k in ("float8", "int8", "int4", "float8", "int8", "int4")):
        fmt += "24x" + ("4x" + code) * n  # field length and the array header (ndim, flags, oid, n, lbound)
        head = struct.pack(">iiIIii", 20 + (4 + size) * n, 1, 0, oid, n, 1)
        constants += head + (struct.pack(">i", size) + b"\x00" * size) * n
    layout = struct.Struct(fmt)
    if layout.size != len(constants):
        raise AssertionError("depth layout and its constants disagree")
    return layout, int.from_bytes(constants)


def _array(values: tuple[Any, ...], kind: str) -> bytes:
    code, size, oid = _ELEMENT[kind]
    n = len(values)
    args: list[Any] = [20 + (4 + size) * n, 1, 0, oid, n, 1] + [size, 0] * n
    args[7::2] = values
    return struct.pack(">iiIIii" + ("i" + code) * n, *args)


def _depth(bp: tuple[float, ...], bq: tuple[int, ...], bo: tuple[int, ...],
           ap: tuple[float, ...], aq: tuple[int, ...], ao: tuple[int, ...]) -> bytes:  # fmt: skip
    n = len(bp)
    if n and len(bq) == len(bo) == len(ap) == len(aq) == len(ao) == n:
        layout, constants = _depth_layout(n)
        return (int.from_bytes(layout.pack(*bp, *bq, *bo, *ap, *aq, *ao)) | constants).to_bytes(layout.size)
    # Sides of different depths, or an empty one (stored as NULL): array by array.
    return b"".join(
        _array(v, kind) if v else _NULL
        for v, kind in ((bp, "float8"), (bq, "int8"), (bo, "int4"), (ap, "float8"), (aq, "int8"), (ao, "int4"))
    )


def encode_row(t: Tick) -> bytes:
    """The tick as one binary COPY tuple of `COLUMNS`. Raises struct.error (or OverflowError) for an
    integer its column cannot hold; the caller isolates that tick."""
    (tick_id, source, segment, security_id, at, received, time_source, packet, ltp, ltq, atp,
     volume, tbq, tsq, oi, oi_high, oi_low, open_, high, low, close, prev_close, bp, bq, bo, ap, aq, ao,
     instrument_id, change, change_pct, spread, spread_bps, mid, micro, imbalance, book_imbalance,
     last_trade, packet_at) = astuple(t)  # fmt: skip
    n = _NULL
    return b"".join((
        _ROW_HEAD, _UUID(16, tick_id.bytes), _text(source), _text(segment), _I8(8, security_id),
        _time(at), _time(received), _text(time_source), _text(packet), _F8(8, ltp),
        n if ltq is None else _I8(8, ltq), n if atp is None else _F8(8, atp),
        n if volume is None else _I8(8, volume), n if tbq is None else _I8(8, tbq),
        n if tsq is None else _I8(8, tsq), n if oi is None else _I8(8, oi),
        n if oi_high is None else _I8(8, oi_high), n if oi_low is None else _I8(8, oi_low),
        n if open_ is None else _F8(8, open_), n if high is None else _F8(8, high),
        n if low is None else _F8(8, low), n if close is None else _F8(8, close),
        n if prev_close is None else _F8(8, prev_close),
        _depth(bp, bq, bo, ap, aq, ao) if bp or bq or bo or ap or aq or ao else _NULLS_6,
        n if instrument_id is None else _I8(8, instrument_id),
        n if change is None else _F8(8, change), n if change_pct is None else _F8(8, change_pct),
        n if spread is None else _F8(8, spread), n if spread_bps is None else _F8(8, spread_bps),
        n if mid is None else _F8(8, mid), n if micro is None else _F8(8, micro),
        n if imbalance is None else _F8(8, imbalance), n if book_imbalance is None else _F8(8, book_imbalance),
        n if last_trade is None else _time(last_trade), n if packet_at is None else _time(packet_at),
    ))  # fmt: skip


_NULLS_6 = _NULL * 6

LATEST_COLUMNS = (
    "source", "segment", "security_id", "instrument_id", "time", "receive_time", "tick_id", "ltp", "volume",
    "oi", "change_pct", "bid_price", "bid_qty", "ask_price", "ask_qty",
)  # fmt: skip
_LATEST_HEAD = struct.pack(">h", len(LATEST_COLUMNS))


def encode_latest_row(t: Tick) -> bytes:
    """The tick as a binary COPY tuple of latest_quotes' `LATEST_COLUMNS` (the top of the book only)."""
    n = _NULL
    return b"".join((
        _LATEST_HEAD, _text(t.source), _text(t.segment), _I8(8, t.security_id),
        n if t.instrument_id is None else _I8(8, t.instrument_id), _time(t.time), _time(t.receive_time),
        _UUID(16, t.tick_id.bytes), _F8(8, t.ltp), n if t.volume is None else _I8(8, t.volume),
        n if t.oi is None else _I8(8, t.oi), n if t.change_pct is None else _F8(8, t.change_pct),
        _F8(8, t.bid_price[0]) if t.bid_price else n, _I8(8, t.bid_qty[0]) if t.bid_qty else n,
        _F8(8, t.ask_price[0]) if t.ask_price else n, _I8(8, t.ask_qty[0]) if t.ask_qty else n,
    ))  # fmt: skip
