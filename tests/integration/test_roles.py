"""Least privilege: each service's role can do its job and no more."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from tests.helpers import make_tick
from tickpipe_workers import TickWriter


def _as(database_url: str, group: str) -> str:
    """A login user of `group` with a random password; its URL."""
    user, password = f"t_{group}_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login password {} in role {}").format(
                sql.Identifier(user), sql.Literal(password), sql.Identifier(group)
            )
        )
    host_part = database_url.split("@", 1)[1]
    return f"postgresql://{user}:{password}@{host_part}"


def _denied(url: str, statement: str) -> None:
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_writer_stores_ticks_and_quotes_and_cannot_drop_or_read_beyond(database_url: str) -> None:
    import asyncio

    url = _as(database_url, "tickpipe_writer")

    async def write() -> int:
        writer = TickWriter(url)
        try:
            return await writer.write([make_tick(security_id=1), make_tick(security_id=2)])
        finally:
            await writer.close()

    assert asyncio.run(write()) == 2  # COPY into the hypertable (a new chunk too) and the quotes upsert
    _denied(url, "drop table ticks")
    _denied(url, "delete from ticks")
    _denied(url, "select * from instruments")
    _denied(url, "create table mine (x int)")


def test_the_analyst_reads_everything_and_cannot_write(database_url: str) -> None:
    url = _as(database_url, "tickpipe_analyst")
    with psycopg.connect(url) as conn:
        conn.execute("select count(*) from ticks").fetchone()
        conn.execute("select * from analytics.candles_1m limit 1").fetchall()
        conn.execute("select * from analytics.watermarks limit 1").fetchall()
        conn.execute("select * from feed_sessions limit 1").fetchall()
    _denied(url, "insert into instruments (exchange, segment, trading_symbol) values ('NSE', 'E', 'X')")
    _denied(url, "delete from latest_quotes")
    _denied(url, "update feed_sessions set end_reason = 'x'")


def test_ingestion_reads_instruments_records_sessions_and_nothing_else(database_url: str) -> None:
    url = _as(database_url, "tickpipe_ingest")
    with psycopg.connect(url) as conn:
        conn.execute("select count(*) from instruments").fetchone()
        conn.execute(
            "insert into feed_sessions (id, source, connection, host, pid, started_at)"
            " values (gen_random_uuid(), 'dhan', 'dhan-0', 'h', 1, now())"
        )
    _denied(url, "select * from ticks")
    _denied(url, "insert into instruments (exchange, segment, trading_symbol) values ('NSE', 'E', 'X')")
