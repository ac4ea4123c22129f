"""Least privilege: each service's role can do its job and no more, on both TimescaleDB editions."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from tests import roles
from tests.editions import EDITIONS

pytestmark = pytest.mark.parametrize("edition", EDITIONS)


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


def test_the_writer_stores_ticks_and_quotes_and_cannot_drop_or_read_beyond(database_url: str) -> None:
    roles.writer_stores_ticks_and_quotes_and_no_more(_as(database_url, "tickpipe_writer"))


def test_the_analyst_reads_everything_and_cannot_write(database_url: str) -> None:
    roles.analyst_reads_everything_and_writes_nothing(_as(database_url, "tickpipe_analyst"))


def test_ingestion_reads_instruments_records_sessions_and_nothing_else(database_url: str) -> None:
    roles.ingest_reads_instruments_records_sessions_and_no_more(_as(database_url, "tickpipe_ingest"))
