"""Fixtures for real PostgreSQL/TimescaleDB and RabbitMQ.

TEST_DATABASE_URL and TEST_AMQP_URL name running servers (CI sets them). Without them, and with a
Docker engine, testcontainers starts them. Otherwise the tests that need them skip, or fail when
TICKPIPE_REQUIRE_SERVICES=1 (CI), because a missing service must never look like a green run.
Each test gets its own database (cloned from a migrated template) and its own queue names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import aio_pika
import psycopg
import pytest
from psycopg import sql

from tests.helpers import unavailable
from tests.scratch_postgres import ScratchPostgres, scratch_cluster
from tickpipe_core import Topology, configure_logging
from tickpipe_core.db import with_database
from tickpipe_core.migrate import migrate

DATA = Path(__file__).parent / "data"

configure_logging("INFO", "json")

# Tests are sorted by what they need: tests/unit nothing; tests/network loopback sockets to servers
# they start; tests/integration the real services; tests/process tickpipe processes; tests/faults the
# fault matrix (tickpipe processes, the real services, scratch servers the cases stop and start).
_MARK_OF_DIR = {"network": "network", "integration": "integration", "process": "process", "faults": "faults"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = _MARK_OF_DIR.get(item.path.parent.name)
        if mark is not None:
            item.add_marker(mark)


@pytest.fixture(autouse=True)
def _own_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's ingestion (in-process or a child process) spools into its own directory."""
    monkeypatch.setenv("INGEST_SPOOL_DIR", str(tmp_path / "spool"))


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A superuser URL of a PostgreSQL server with TimescaleDB available."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                row = conn.execute("select 1 from pg_available_extensions where name = 'timescaledb'").fetchone()
        except psycopg.OperationalError as e:
            unavailable(f"PostgreSQL at TEST_DATABASE_URL ({e})")
        if row is None:
            unavailable("the timescaledb extension (run scripts/install-timescaledb.sh)")
        yield url
        return
    if not _docker_available():
        unavailable("PostgreSQL/TimescaleDB")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("timescale/timescaledb:2.19.3-pg15", driver=None) as pg:
        yield pg.get_connection_url()


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A database migrated once per session, cloned by each test."""
    name = f"tickpipe_tmpl_{os.getpid()}"
    _migrated_template(pg_server_url, name)
    yield name
    _drop(pg_server_url, name)


def _migrated_template(server_url: str, name: str) -> None:
    _drop(server_url, name)
    migrate(with_database(server_url, name))
    with psycopg.connect(server_url, autocommit=True) as conn:
        # No connections to the template, or CREATE DATABASE ... TEMPLATE would refuse to copy it.
        conn.execute(sql.SQL("alter database {} allow_connections false").format(sql.Identifier(name)))
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def edition() -> str:
    """The TimescaleDB edition a test's databases are on; tests.editions.EDITIONS runs a test on both."""
    return "apache"


def _server_of(request: pytest.FixtureRequest, edition: str) -> str:
    return str(request.getfixturevalue("community_server_url" if edition == "community" else "pg_server_url"))


@pytest.fixture
def new_database(request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """Makes fresh, migrated databases for this test alone: `new_database("community")` is one on that edition."""
    made: list[tuple[str, str]] = []

    def make(edition: str) -> str:
        server_url = _server_of(request, edition)
        template = "community_template_database" if edition == "community" else "template_database"
        name = f"tickpipe_t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(request.getfixturevalue(template))
                )
            )
        made.append((server_url, name))
        return with_database(server_url, name)

    yield make
    for server_url, name in made:
        _drop(server_url, name)


@pytest.fixture
def database_url(new_database: Callable[[str], str], edition: str) -> str:
    """A fresh, migrated database for this test alone, on the test's edition."""
    return new_database(edition)


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, edition: str) -> Iterator[str]:
    """A URL naming a database that does not exist yet (migrate creates it), on the test's edition."""
    server_url = _server_of(request, edition)
    name = f"tickpipe_e_{uuid.uuid4().hex[:12]}"
    yield with_database(server_url, name)
    _drop(server_url, name)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("TEST_AMQP_URL")
    if url:

        async def check() -> None:
            connection = await aio_pika.connect(url, timeout=5)
            await connection.close()

        try:
            asyncio.run(check())
        except Exception as e:
            unavailable(f"RabbitMQ at TEST_AMQP_URL ({type(e).__name__})")
        yield url
        return
    if not _docker_available():
        unavailable("RabbitMQ")
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as rabbit:
        params = rabbit.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


@pytest.fixture
def topology(amqp_url: str) -> Iterator[Topology]:
    """Queue and exchange names of this test alone, deleted afterwards."""
    topo = Topology(prefix=f"test-{uuid.uuid4().hex[:12]}")
    yield topo

    async def cleanup() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            with contextlib.suppress(Exception):
                await topo.delete(await connection.channel())

    asyncio.run(cleanup())


@pytest.fixture
def scratch_postgres() -> Iterator[ScratchPostgres]:
    """A dedicated PostgreSQL instance (with TimescaleDB, Apache edition) that a test may stop and start."""
    with scratch_cluster("apache") as instance:
        yield instance


@pytest.fixture(scope="session")
def community_server_url() -> Iterator[str]:
    """A superuser URL of a scratch server running the TimescaleDB Community edition."""
    with scratch_cluster("timescale") as instance:
        yield instance.server_url


@pytest.fixture(scope="session")
def community_template_database(community_server_url: str) -> str:
    """The Community edition's template database (it goes with its scratch server)."""
    name = f"tickpipe_tmpl_{os.getpid()}"
    _migrated_template(community_server_url, name)
    return name
