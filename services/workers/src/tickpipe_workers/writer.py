"""Writes tick batches into the `ticks` hypertable with binary COPY, idempotently.

The fast path COPYs straight into `ticks`. If the batch holds a tick that is already stored (a
redelivered message), the transaction is rolled back and the batch goes through a staging table
with `INSERT ... ON CONFLICT DO NOTHING` instead, so redelivery never duplicates a row and never
fails a batch. Redelivery is rare, so the common case costs one COPY and one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from msgspec.structs import astuple
from psycopg import sql

from tickpipe_core import StorageError, Tick, get_logger
from tickpipe_core.settings import redact_url
from tickpipe_workers import arrays

log = get_logger("writer")

# Tick field -> (column, postgres type for binary COPY), in Tick's field order, so that a row is
# just `astuple(tick)`: building rows attribute by attribute cost more than the COPY itself.
_COLUMN_OF_FIELD: dict[str, tuple[str, str]] = {
    "tick_id": ("tick_id", "uuid"),
    "source": ("source", "text"),
    "segment": ("segment", "text"),
    "security_id": ("security_id", "int8"),
    "exchange_ts": ("time", "timestamptz"),
    "receive_ts": ("receive_time", "timestamptz"),
    "time_source": ("time_source", "text"),
    "packet": ("packet", "text"),
    "ltp": ("ltp", "float8"),
    "ltq": ("ltq", "int8"),
    "atp": ("atp", "float8"),
    "volume": ("volume", "int8"),
    "total_buy_qty": ("total_buy_qty", "int8"),
    "total_sell_qty": ("total_sell_qty", "int8"),
    "oi": ("oi", "int8"),
    "oi_day_high": ("oi_day_high", "int8"),
    "oi_day_low": ("oi_day_low", "int8"),
    "open": ("open", "float8"),
    "high": ("high", "float8"),
    "low": ("low", "float8"),
    "close": ("close", "float8"),
    "prev_close": ("prev_close", "float8"),
    "bid_price": ("bid_price", "float8[]"),
    "bid_qty": ("bid_qty", "int8[]"),
    "bid_orders": ("bid_orders", "int4[]"),
    "ask_price": ("ask_price", "float8[]"),
    "ask_qty": ("ask_qty", "int8[]"),
    "ask_orders": ("ask_orders", "int4[]"),
    "instrument_id": ("instrument_id", "int8"),
    "change": ("change", "float8"),
    "change_pct": ("change_pct", "float8"),
    "spread": ("spread", "float8"),
    "spread_bps": ("spread_bps", "float8"),
    "mid": ("mid", "float8"),
    "micro_price": ("micro_price", "float8"),
    "imbalance": ("imbalance", "float8"),
    "book_imbalance": ("book_imbalance", "float8"),
    "last_trade_ts": ("last_trade_time", "timestamptz"),
    "packet_ts": ("packet_time", "timestamptz"),
}
assert tuple(_COLUMN_OF_FIELD) == Tick.__struct_fields__, "keep the mapping in Tick's field order"
COLUMNS = [c for c, _ in _COLUMN_OF_FIELD.values()]
_TYPES = [t for _, t in _COLUMN_OF_FIELD.values()]
FIELDS = tuple(_COLUMN_OF_FIELD)
TYPES = _TYPES
_DEPTH = [i for i, t in enumerate(_TYPES) if t.endswith("[]")]

_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_COPY_TICKS = sql.SQL("copy ticks ({}) from stdin (format binary)").format(_COLUMN_LIST)
_COPY_STAGE = sql.SQL("copy ticks_stage ({}) from stdin (format binary)").format(_COLUMN_LIST)
_CREATE_STAGE = sql.SQL(
    "create temp table if not exists ticks_stage (like ticks including defaults) on commit delete rows"
)
_MERGE_STAGE = sql.SQL("insert into ticks ({}) select {} from ticks_stage on conflict do nothing").format(
    _COLUMN_LIST, _COLUMN_LIST
)


_LATEST_COLUMNS = [
    "source",
    "segment",
    "security_id",
    "instrument_id",
    "time",
    "receive_time",
    "tick_id",
    "ltp",
    "volume",
    "oi",
    "change_pct",
    "bid_price",
    "bid_qty",
    "ask_price",
    "ask_qty",
]
_UPSERT_LATEST = sql.SQL(
    "insert into latest_quotes as q ({columns}) values ({values})"
    " on conflict (source, segment, security_id) do update set {updates}, updated_at = now()"
    # The last received wins, by our one clock: a late (redelivered) batch never overwrites a newer
    # quote, and a quote without an exchange time never loses to an older one that has one.
    " where (excluded.receive_time, excluded.time) > (q.receive_time, q.time)"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, _LATEST_COLUMNS)),
    values=sql.SQL(", ").join(sql.Placeholder() * len(_LATEST_COLUMNS)),
    updates=sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in _LATEST_COLUMNS[3:]),
)


def latest_rows(ticks: Sequence[Tick]) -> list[tuple[Any, ...]]:
    """The newest tick of each instrument in the batch, as latest_quotes rows."""
    latest: dict[tuple[str, str, int], Tick] = {}
    for t in ticks:
        key = (t.source, t.segment, t.security_id)
        seen = latest.get(key)
        if seen is None or (t.receive_ts, t.exchange_ts) >= (seen.receive_ts, seen.exchange_ts):
            latest[key] = t
    return [
        (
            t.source,
            t.segment,
            t.security_id,
            t.instrument_id,
            t.exchange_ts,
            t.receive_ts,
            t.tick_id,
            t.ltp,
            t.volume,
            t.oi,
            t.change_pct,
            t.bid_price[0] if t.bid_price else None,
            t.bid_qty[0] if t.bid_qty else None,
            t.ask_price[0] if t.ask_price else None,
            t.ask_qty[0] if t.ask_qty else None,
        )
        for t in latest.values()
    ]


def tick_row(tick: Tick) -> list[Any]:
    """The tick as a row in COLUMNS order; an empty depth side is stored as NULL."""
    row = list(astuple(tick))
    for i in _DEPTH:
        if not row[i]:
            row[i] = None
    return row


class TickWriter:
    """One database connection writing batches; reconnects on the next write after a failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self.duplicate_batches = 0

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=10)
                arrays.register(self._conn)
            except psycopg.OperationalError as e:
                raise StorageError(f"cannot connect to {redact_url(self._url)}: {e}") from e
        return self._conn

    async def write(self, ticks: Sequence[Tick]) -> int:
        """Store the ticks and update latest_quotes in one transaction; return how many ticks were new."""
        if not ticks:
            return 0
        conn = await self._connection()
        rows = [tick_row(t) for t in ticks]
        latest = latest_rows(ticks)
        try:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    await self._copy(cur, _COPY_TICKS, rows)
                    await cur.executemany(_UPSERT_LATEST, latest)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                self.duplicate_batches += 1
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_CREATE_STAGE)
                await self._copy(cur, _COPY_STAGE, rows)
                await cur.execute(_MERGE_STAGE)
                inserted = cur.rowcount
                await cur.executemany(_UPSERT_LATEST, latest)
            log.info("batch_had_duplicates", rows=len(rows), inserted=inserted)
            return inserted
        except psycopg.Error as e:
            raise StorageError(f"writing {len(rows)} ticks failed: {type(e).__name__}: {e}") from e

    @staticmethod
    async def _copy(cur: psycopg.AsyncCursor[tuple[Any, ...]], statement: sql.Composed, rows: list[list[Any]]) -> None:
        async with cur.copy(statement) as copy:
            copy.set_types(_TYPES)
            for row in rows:
                await copy.write_row(row)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
