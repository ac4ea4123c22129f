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
from psycopg import sql

from tickpipe_core import StorageError, Tick, get_logger
from tickpipe_core.settings import redact_url

log = get_logger("writer")

# (column, postgres type for binary COPY, Tick attribute)
_COLUMNS: list[tuple[str, str, str]] = [
    ("time", "timestamptz", "exchange_ts"),
    ("tick_id", "uuid", "tick_id"),
    ("source", "text", "source"),
    ("segment", "text", "segment"),
    ("security_id", "int8", "security_id"),
    ("instrument_id", "int8", "instrument_id"),
    ("receive_time", "timestamptz", "receive_ts"),
    ("time_source", "text", "time_source"),
    ("packet", "text", "packet"),
    ("ltp", "float8", "ltp"),
    ("ltq", "int4", "ltq"),
    ("atp", "float8", "atp"),
    ("volume", "int8", "volume"),
    ("total_buy_qty", "int8", "total_buy_qty"),
    ("total_sell_qty", "int8", "total_sell_qty"),
    ("oi", "int8", "oi"),
    ("oi_day_high", "int8", "oi_day_high"),
    ("oi_day_low", "int8", "oi_day_low"),
    ("open", "float8", "open"),
    ("high", "float8", "high"),
    ("low", "float8", "low"),
    ("close", "float8", "close"),
    ("prev_close", "float8", "prev_close"),
    ("bid_price", "float8[]", "bid_price"),
    ("bid_qty", "int8[]", "bid_qty"),
    ("bid_orders", "int4[]", "bid_orders"),
    ("ask_price", "float8[]", "ask_price"),
    ("ask_qty", "int8[]", "ask_qty"),
    ("ask_orders", "int4[]", "ask_orders"),
    ("change", "float8", "change"),
    ("change_pct", "float8", "change_pct"),
    ("spread", "float8", "spread"),
    ("spread_bps", "float8", "spread_bps"),
    ("mid", "float8", "mid"),
    ("micro_price", "float8", "micro_price"),
    ("imbalance", "float8", "imbalance"),
    ("book_imbalance", "float8", "book_imbalance"),
]
COLUMNS = [c for c, _, _ in _COLUMNS]
_TYPES = [t for _, t, _ in _COLUMNS]
_ATTRS = [a for _, _, a in _COLUMNS]
_DEPTH = {i for i, t in enumerate(_TYPES) if t.endswith("[]")}

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
    # Newest wins, so a late batch never overwrites a newer quote.
    " where (excluded.time, excluded.receive_time) > (q.time, q.receive_time)"
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
        if seen is None or (t.exchange_ts, t.receive_ts) >= (seen.exchange_ts, seen.receive_ts):
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
    row = [getattr(tick, a) for a in _ATTRS]
    for i in _DEPTH:
        # psycopg's binary array dumper takes lists, not the tick's tuples.
        row[i] = list(row[i]) if row[i] else None
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
