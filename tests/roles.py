"""What each service's database login may do, checked from a login's URL: its job and no more.

Used on logins made by a test (tests/integration/test_roles.py) and on the logins the deployment's own
start makes (deploy/postgres/init-users.sh, tests/integration/test_community.py).
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tests.helpers import make_tick
from tickpipe_workers import TickWriter


def _denied(url: str, statement: str) -> None:
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def writer_stores_ticks_and_quotes_and_no_more(url: str) -> None:
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


def analyst_reads_everything_and_writes_nothing(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("select count(*) from ticks").fetchone()
        conn.execute("select * from analytics.candles_1m limit 1").fetchall()
        conn.execute("select * from analytics.watermarks limit 1").fetchall()
        conn.execute("select * from feed_sessions limit 1").fetchall()
    _denied(url, "insert into instruments (exchange, segment, trading_symbol) values ('NSE', 'E', 'X')")
    _denied(url, "delete from latest_quotes")
    _denied(url, "update feed_sessions set end_reason = 'x'")


def ingest_reads_instruments_records_sessions_and_no_more(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("select count(*) from instruments").fetchone()
        conn.execute(
            "insert into feed_sessions (id, source, connection, host, pid, started_at)"
            " values (gen_random_uuid(), 'dhan', 'dhan-0', 'h', 1, now())"
        )
    _denied(url, "select * from ticks")
    _denied(url, "insert into instruments (exchange, segment, trading_symbol) values ('NSE', 'E', 'X')")
