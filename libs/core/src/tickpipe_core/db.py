"""Database access shared by the services: connecting, creating the database, edition checks."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tickpipe_core.errors import StorageError
from tickpipe_core.logging import get_logger
from tickpipe_core.settings import redact_url

log = get_logger("db")


def _admin_url(url: str) -> tuple[str, str]:
    """The URL of the server's `postgres` database, and the database name the URL names."""
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/") or "postgres"
    return urlunsplit(parts._replace(path="/postgres")), dbname


def ensure_database(url: str) -> bool:
    """Create the database the URL names when it does not exist; True when it was created."""
    admin, dbname = _admin_url(url)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone():
                return False
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                return False  # another migrator won the race (the loser may see either error)
    except psycopg.OperationalError as e:
        raise StorageError(f"cannot reach PostgreSQL at {redact_url(admin)}: {e}") from e
    log.info("database_created", database=dbname)
    return True


def timescaledb_license(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    """'timescale' (Community edition: compression, aggregates, policies) or 'apache'."""
    row = conn.execute("select current_setting('timescaledb.license', true)").fetchone()
    return str(row[0]) if row and row[0] else "apache"


def with_database(url: str, dbname: str) -> str:
    """The same server URL naming another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))
