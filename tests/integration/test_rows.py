"""The binary COPY rows tickpipe builds itself are, byte for byte, what PostgreSQL itself sends back.

`encode_row` replaced psycopg's per-field adapters on the worker's path, so it is checked against
the server: ticks of every shape (real decoded packets of both brokers, empty and uneven depth, every
nullable field NULL, extreme values) are COPYd in through our bytes, then COPYd out in binary by
PostgreSQL; the two byte strings must be equal, and our decoder must give back the same ticks.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers import make_tick
from tickpipe_core import Tick
from tickpipe_core.rows import (
    COLUMNS,
    COPY_SIGNATURE,
    COPY_TRAILER,
    LATEST_COLUMNS,
    TYPES,
    encode_latest_row,
    encode_row,
)


def _decoded_ticks() -> list[Tick]:
    from tickpipe_brokers.dhan import wire
    from tickpipe_brokers.dhan.encode import encode_full
    from tickpipe_brokers.dhan.parse import DhanDecoder
    from tickpipe_brokers.kite import encode as kite_sim
    from tickpipe_brokers.kite.parse import KiteDecoder
    from tickpipe_simulator.market import make_instruments

    instruments = make_instruments(20, seed=7)
    now = datetime.now(UTC)
    ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
    dhan, kite = DhanDecoder(), KiteDecoder()
    ticks: list[Tick] = []
    for ins in instruments:
        quote = ins.step()
        full = encode_full(quote, ltt)
        ticks += dhan.decode(full, now).ticks
        token = kite_sim.kite_token(ins)
        for packet in (kite_sim.encode_full(token, quote, int(time.time())), kite_sim.encode_quote(token, quote)):
            ticks += kite.decode(kite_sim.frame([packet]), now)
    return ticks


_Y2K = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's epoch: a timestamp of 0


def _server_copy(
    database_url: str, table: str, like: str, columns: tuple[str, ...], rows: bytes
) -> tuple[bytes, list[tuple[Any, ...]]]:
    """COPY our rows into a fresh temporary table; what PostgreSQL sends back of them in binary, and as values."""
    names = ", ".join(columns)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"create temp table {table} (n serial, like {like})")
        with conn.cursor().copy(f"copy {table} ({names}) from stdin (format binary)") as copy:
            copy.write(COPY_SIGNATURE + rows + COPY_TRAILER)
        theirs = bytearray()
        with conn.cursor().copy(f"copy (select {names} from {table} order by n) to stdout (format binary)") as out:
            for chunk in out:
                theirs += chunk
        values = conn.execute(f"select {names} from {table} order by n").fetchall()
    return bytes(theirs), values


def _shapes() -> list[Tick]:
    return [
        make_tick(),  # two depth levels on the bid, none on the ask (uneven sides)
        make_tick(bid_price=(), bid_qty=(), bid_orders=()),  # no book at all: every array NULL
        make_tick(bid_price=(1.5,), bid_qty=(2**63 - 1,), bid_orders=(2**31 - 1,)),
        make_tick(ask_price=(-0.0,), ask_qty=(-(2**63),), ask_orders=(-(2**31),)),
        make_tick(ltp=float("inf"), atp=float("-inf"), ltq=0, instrument_id=7, change=-1e-300, packet_time=None),
        make_tick(segment="NSE_EQ", packet="ticker", time_source="receive", last_trade_time=_Y2K),
        make_tick(time=datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), oi=1, oi_day_high=2),
    ]


@pytest.mark.parametrize("kind", ["decoded packets", "edge shapes"])
def test_rows_are_what_postgres_itself_sends_back(database_url: str, kind: str) -> None:
    ticks = _decoded_ticks() if kind == "decoded packets" else _shapes()
    ours = b"".join(encode_row(t) for t in ticks)
    theirs, values = _server_copy(database_url, "rows_check", "ticks", COLUMNS, ours)
    assert theirs == COPY_SIGNATURE + ours + COPY_TRAILER
    assert [(v[0], v[3], v[8]) for v in values] == [(t.tick_id, t.security_id, t.ltp) for t in ticks]
    assert decode_rows(ours) == ticks
    assert [len(r) for r in split_rows(ours)] == [len(encode_row(t)) for t in ticks]


def test_latest_rows_are_what_postgres_itself_sends_back(database_url: str) -> None:
    ticks = [*_decoded_ticks()[:6], *_shapes()]
    ours = b"".join(encode_latest_row(t) for t in ticks)
    like = "latest_quotes including defaults"
    theirs, values = _server_copy(database_url, "latest_check", like, LATEST_COLUMNS, ours)
    assert theirs == COPY_SIGNATURE + ours + COPY_TRAILER
    assert values == [
        (t.source, t.segment, t.security_id, t.instrument_id, t.time, t.receive_time, t.tick_id, t.ltp,
         t.volume, t.oi, t.change_pct, t.bid_price[0] if t.bid_price else None, t.bid_qty[0] if t.bid_qty else None,
         t.ask_price[0] if t.ask_price else None, t.ask_qty[0] if t.ask_qty else None)
        for t in ticks
    ]  # fmt: skip


def test_an_integer_no_column_can_hold_is_refused_before_the_database() -> None:
    with pytest.raises((struct.error, OverflowError)):
        encode_row(make_tick(volume=2**64 - 1))


def test_a_damaged_row_is_reported_not_misread() -> None:
    row = encode_row(make_tick())
    with pytest.raises(ValueError, match="cut short"):
        list(split_rows(row[:-3]))
    with pytest.raises(ValueError, match="fields"):
        list(split_rows(b"\x00\x05" + row[2:]))


# -- the way back, rows -> ticks: a slow, careful reader of our rows, to check them against ---------


def split_rows(rows: bytes | memoryview) -> Iterator[bytes]:
    """Each tuple of a run of binary COPY tuples (no signature, no trailer), by walking its field lengths."""
    view = memoryview(rows)
    at = 0
    while at < len(view):
        start = at
        if at + 2 > len(view):
            raise ValueError(f"row cut short at byte {at}")
        (fields,) = struct.unpack_from(">h", view, at)
        if fields != len(Tick.__struct_fields__):
            raise ValueError(f"a row of {fields} fields at byte {at}; expected {len(Tick.__struct_fields__)}")
        at += 2
        for _ in range(fields):
            if at + 4 > len(view):
                raise ValueError(f"row cut short at byte {start}")
            (length,) = struct.unpack_from(">i", view, at)
            at += 4 + max(length, 0)
        if at > len(view):
            raise ValueError(f"row cut short at byte {start}")
        yield bytes(view[start:at])


def _scalar(kind: str, data: bytes) -> Any:
    if kind == "text":
        return data.decode()
    if kind == "uuid":
        return uuid.UUID(bytes=data)
    if kind == "timestamptz":
        return _Y2K + timedelta(microseconds=struct.unpack(">q", data)[0])
    return struct.unpack({"int8": ">q", "int4": ">i", "float8": ">d"}[kind], data)[0]


def _array_values(kind: str, data: bytes) -> tuple[Any, ...]:
    ndim, _flags, _oid = struct.unpack_from(">iII", data)
    if ndim == 0:
        return ()
    n, _lower = struct.unpack_from(">ii", data, 12)
    out, at = [], 20
    for _ in range(n):
        (length,) = struct.unpack_from(">i", data, at)
        out.append(_scalar(kind, data[at + 4 : at + 4 + length]))
        at += 4 + length
    return tuple(out)


def decode_row(row: bytes) -> Tick:
    """One binary COPY tuple of `COLUMNS` back into its Tick (ValueError if it is not one)."""
    try:
        values: list[Any] = []
        at = 2
        for kind in TYPES:
            (length,) = struct.unpack_from(">i", row, at)
            at += 4
            if length < 0:
                values.append(() if kind.endswith("[]") else None)
                continue
            data = row[at : at + length]
            at += length
            values.append(_array_values(kind[:-2], data) if kind.endswith("[]") else _scalar(kind, data))
        return Tick(*values)
    except (struct.error, UnicodeDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"not a ticks row: {e}") from e


def decode_rows(rows: bytes | memoryview) -> list[Tick]:
    return [decode_row(r) for r in split_rows(rows)]
