"""Writes tick batches into the `ticks` hypertable with binary COPY, idempotently.

Each tick becomes its binary COPY row in one step (`tickpipe_core.rows.encode_row`), and the batch's
rows go to PostgreSQL as one buffer: no per-field adapters (they were most of a worker's CPU).
The fast path COPYs straight into `ticks`. If the batch holds a tick that is already stored (a
redelivered message), the transaction is rolled back and the batch goes through a staging table
with `INSERT ... ON CONFLICT DO NOTHING` instead, so redelivery never duplicates a row and never
fails a batch. Redelivery is rare, so the common case costs one COPY and one commit.

latest_quotes takes the newest tick of each instrument in the batch: COPYd into a temporary table
and upserted by one set-based statement (a statement per instrument cost the server more), in key
order, so that concurrent batches never deadlock on its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from tickpipe_core import StorageError, Tick, get_logger
from tickpipe_core.rows import COLUMNS, COPY_SIGNATURE, COPY_TRAILER, LATEST_COLUMNS, encode_latest_row, encode_row
from tickpipe_core.settings import redact_url

log = get_logger("writer")

# Each statement is rendered to bytes once, here: given as composed SQL, psycopg would render it again
# for every batch, on the worker's hot path.
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
_COPY_TICKS = sql.SQL("copy ticks ({}) from stdin (format binary)").format(_COLUMN_LIST).as_bytes()
_COPY_STAGE = sql.SQL("copy ticks_stage ({}) from stdin (format binary)").format(_COLUMN_LIST).as_bytes()
_CREATE_STAGE = b"create temp table if not exists ticks_stage (like ticks including defaults) on commit delete rows"
_MERGE_STAGE = (
    sql.SQL("insert into ticks ({}) select {} from ticks_stage on conflict do nothing")
    .format(_COLUMN_LIST, _COLUMN_LIST)
    .as_bytes()
)

_LATEST_LIST = sql.SQL(", ").join(map(sql.Identifier, LATEST_COLUMNS))
_CREATE_LATEST_STAGE = (
    b"create temp table if not exists latest_stage (like latest_quotes including defaults) on commit delete rows"
)
_COPY_LATEST_STAGE = sql.SQL("copy latest_stage ({}) from stdin (format binary)").format(_LATEST_LIST).as_bytes()
_UPSERT_LATEST = (
    sql.SQL(
        "insert into latest_quotes as q ({columns}) select {columns} from latest_stage"
        # Rows are locked in key order, whatever order the batch's ticks came in: two workers whose
        # batches share instruments then wait for each other instead of deadlocking (which aborts one
        # of them after deadlock_timeout, its whole batch with it).
        " order by source, segment, security_id"
        " on conflict (source, segment, security_id) do update set {updates}, updated_at = now()"
        # The last received wins, by our one clock: a late (redelivered) batch never overwrites a newer
        # quote, and a quote without an exchange time never loses to an older one that has one.
        " where (excluded.receive_time, excluded.time) > (q.receive_time, q.time)"
    )
    .format(
        columns=_LATEST_LIST,
        updates=sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in LATEST_COLUMNS[3:]),
    )
    .as_bytes()
)


def latest_ticks(ticks: Sequence[Tick]) -> list[Tick]:
    """The newest tick of each instrument in the batch (by receive time, then exchange time)."""
    latest: dict[tuple[str, str, int], Tick] = {}
    for t in ticks:
        key = (t.source, t.segment, t.security_id)
        seen = latest.get(key)
        if seen is None or (t.receive_time, t.time) >= (seen.receive_time, seen.time):
            latest[key] = t
    return list(latest.values())


class TickWriter:
    """One database connection writing batches; reconnects on the next write after a failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self.duplicate_batches = 0

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=10)
                # A temporary table lives as long as its connection: made once, committed at once (made
                # inside a batch's transaction, a rollback would take it away again).
                await conn.execute(_CREATE_LATEST_STAGE)
                await conn.commit()
                self._conn = conn
            except psycopg.OperationalError as e:
                raise StorageError(f"cannot connect to {redact_url(self._url)}: {e}") from e
            except psycopg.Error as e:
                raise StorageError(f"cannot prepare the connection: {type(e).__name__}: {e}") from e
        return self._conn

    async def write(self, ticks: Sequence[Tick]) -> int:
        """Store the ticks and update latest_quotes in one transaction; return how many ticks were new.

        A value no column can hold raises (struct.error, OverflowError) before any transaction.
        """
        if not ticks:
            return 0
        rows = b"".join([encode_row(t) for t in ticks])
        latest = b"".join([encode_latest_row(t) for t in latest_ticks(ticks)])
        conn = await self._connection()
        try:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    await self._copy(cur, _COPY_TICKS, rows)
                    await self._upsert_latest(cur, latest)
                return len(ticks)
            except psycopg.errors.UniqueViolation:
                self.duplicate_batches += 1
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_CREATE_STAGE)
                await self._copy(cur, _COPY_STAGE, rows)
                await cur.execute(_MERGE_STAGE)
                inserted = cur.rowcount
                await self._upsert_latest(cur, latest)
            log.info("batch_had_duplicates", rows=len(ticks), inserted=inserted)
            return inserted
        except psycopg.Error as e:
            raise StorageError(f"writing {len(ticks)} ticks failed: {type(e).__name__}: {e}") from e

    async def _upsert_latest(self, cur: psycopg.AsyncCursor[tuple[Any, ...]], rows: bytes) -> None:
        await self._copy(cur, _COPY_LATEST_STAGE, rows)
        await cur.execute(_UPSERT_LATEST)

    @staticmethod
    async def _copy(cur: psycopg.AsyncCursor[tuple[Any, ...]], statement: bytes, rows: bytes) -> None:
        async with cur.copy(statement) as copy:
            await copy.write(COPY_SIGNATURE)
            await copy.write(rows)
            await copy.write(COPY_TRAILER)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
