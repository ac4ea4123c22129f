"""The normalized tick: one market-data event, broker-agnostic and immutable."""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec

TimeSource = Literal["exchange", "receive"]


@dataclass(frozen=True)
class Column:
    """Beside a Tick field's type: its column's PostgreSQL type, where the Python type does not say it."""

    pg_type: str


# Decoding rejects a naive datetime: every time in tickpipe is timezone-aware.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


# gc=False: a Tick holds only atoms and tuples of atoms, so it can never be part of a reference
# cycle; untracked, the collector does not rescan the millions a busy feed makes.
class Tick(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One tick as every stage after decoding sees it.

    This class is the one table of a tick's fields: each field is the column of `ticks` of the same
    name, and its PostgreSQL type follows from its Python type (`pg_types`), or from a `Column` beside
    it where that differs. The COPY column list and the row encoder (`tickpipe_core.rows`) are read
    from here. Field order is the queue wire format (array-like msgpack): append new fields at the
    end, with defaults, so that older messages still decode. Times are always timezone-aware UTC.
    Build it with keywords; only `tickpipe_brokers.ticks.TickBuilder`, on the hot path, passes every
    field by position.
    """

    tick_id: uuid.UUID
    """The row's identity: a hash of the packet where it has an exchange time of its own (the same
    packet received twice is one tick), else a fresh id given once at ingestion."""
    source: str
    """The broker feed: "dhan" or "kite"."""
    segment: str
    """The broker's exchange segment name, e.g. NSE_FNO."""
    security_id: int
    """The broker's instrument id (Dhan security id, Kite instrument token)."""
    time: AwareDatetime
    """When it happened: the exchange's packet time where the packet has one, else the last-trade
    time, else (none, or one far from the receive time) the receive time."""
    receive_time: AwareDatetime
    """When our socket read the frame."""
    time_source: TimeSource
    """Which clock `time` came from."""
    packet: str
    """The broker packet kind it was decoded from (full, quote, ticker, ...)."""
    ltp: float
    ltq: int | None = None
    atp: float | None = None
    volume: int | None = None
    total_buy_qty: int | None = None
    total_sell_qty: int | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    prev_close: float | None = None
    bid_price: tuple[float, ...] = ()
    bid_qty: tuple[int, ...] = ()
    bid_orders: Annotated[tuple[int, ...], Column("int4[]")] = ()
    ask_price: tuple[float, ...] = ()
    ask_qty: tuple[int, ...] = ()
    ask_orders: Annotated[tuple[int, ...], Column("int4[]")] = ()
    # Enrichment, filled in by the ingestion service; None where an input is missing.
    instrument_id: int | None = None
    change: float | None = None
    change_pct: float | None = None
    spread: float | None = None
    spread_bps: float | None = None
    mid: float | None = None
    micro_price: float | None = None
    imbalance: float | None = None
    book_imbalance: float | None = None
    # Both exchange clocks as sent, where the packet has them (added after schema 1's first fields).
    last_trade_time: AwareDatetime | None = None
    """The last trade's time (Dhan quote/full/ticker, Kite full)."""
    packet_time: AwareDatetime | None = None
    """The exchange's timestamp of this snapshot (Kite full and index full)."""


_PG_TYPE_OF = {uuid.UUID: "uuid", str: "text", int: "int8", float: "float8", datetime: "timestamptz"}


def pg_types() -> dict[str, str]:
    """Each Tick field -> the PostgreSQL type of its column in `ticks`, in field order."""
    out = {}
    for name, hint in typing.get_type_hints(Tick, include_extras=True).items():
        column = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Column)), None)
        if column is not None:
            out[name] = column.pg_type
            continue
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
        args = [a for a in typing.get_args(base) if a is not type(None) and a is not Ellipsis]
        if typing.get_origin(base) is tuple:  # a depth side: an array of its element's type
            out[name] = _PG_TYPE_OF[args[0]] + "[]"
        elif typing.get_origin(base) is Literal:
            out[name] = "text"
        else:
            inner = args[0] if args else base  # X | None
            inner = typing.get_args(inner)[0] if typing.get_origin(inner) is Annotated else inner
            out[name] = _PG_TYPE_OF[inner]
    return {name: out[name] for name in Tick.__struct_fields__}


def _fresh_sequence() -> Iterator[int]:
    # Random high 64 bits per process, a counter in the low 64: unique across processes for all
    # practical purposes, and three times cheaper than uuid4() on the per-tick hot path.
    return itertools.count(uuid.uuid4().int & ~0xFFFF_FFFF_FFFF_FFFF)


_sequence = _fresh_sequence()


def _reseed_after_fork() -> None:
    global _sequence
    _sequence = _fresh_sequence()


os.register_at_fork(after_in_child=_reseed_after_fork)


# A UUID built without UUID.__init__ (its argument checks cost more than the id itself): a bare
# instance, its two slots set through their descriptors (cheaper than object.__setattr__ by name).
_bare_uuid = uuid.UUID.__new__
_set_int: Callable[[uuid.UUID, int], None] = uuid.UUID.__dict__["int"].__set__
_set_safe: Callable[[uuid.UUID, uuid.SafeUUID], None] = uuid.UUID.__dict__["is_safe"].__set__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def new_tick_id() -> uuid.UUID:
    """A fresh tick identity: never repeats within a process, and a forked child gets a new range."""
    u = _bare_uuid(uuid.UUID)
    _set_int(u, next(_sequence))  # in range by construction
    _set_safe(u, _UNKNOWN_SAFETY)
    return u


@functools.cache
def content_ids(source: bytes) -> Callable[[bytes], uuid.UUID]:
    """`content_tick_id` for one broker, as a function of the packet alone (the tick builder's hot path).

    Its hash state is prepared once: copying a prepared blake2b state costs half of constructing one
    with its keyword arguments.
    """
    fresh = hashlib.blake2b(digest_size=16, person=source).copy
    from_bytes = int.from_bytes

    def content_id(packet: bytes) -> uuid.UUID:
        h = fresh()
        h.update(packet)
        u = _bare_uuid(uuid.UUID)
        _set_int(u, from_bytes(h.digest()))
        _set_safe(u, _UNKNOWN_SAFETY)
        return u

    return content_id


def content_tick_id(source: bytes, packet: bytes) -> uuid.UUID:
    """A tick identity from the broker's packet itself, so a packet received twice is one tick.

    The same bytes from the same broker (a snapshot resent after a reconnect, a replayed capture,
    two ingestions on one feed) give the same id, and the hypertable's key stores them once. It is
    blake2b-128 of the packet, personalised by the broker, as every earlier release made it.
    """
    return content_ids(source)(packet)
