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
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import psycopg
import pytest
from psycopg import sql

from tickpipe_core import Topology, configure_logging
from tickpipe_core.db import with_database
from tickpipe_core.migrate import migrate

REQUIRE_SERVICES = os.environ.get("TICKPIPE_REQUIRE_SERVICES") == "1"
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


def _unavailable(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (TICKPIPE_REQUIRE_SERVICES=1) but unavailable", pytrace=False)
    pytest.skip(f"{what} unavailable: set its TEST_*_URL or run a Docker engine")


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
            _unavailable(f"PostgreSQL at TEST_DATABASE_URL ({e})")
        if row is None:
            _unavailable("the timescaledb extension (run scripts/install-timescaledb.sh)")
        yield url
        return
    if not _docker_available():
        _unavailable("PostgreSQL/TimescaleDB")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("timescale/timescaledb:2.19.3-pg15", driver=None) as pg:
        yield pg.get_connection_url()


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> Iterator[str]:
    """A database migrated once per session, cloned by each test."""
    name = f"tickpipe_tmpl_{os.getpid()}"
    url = with_database(pg_server_url, name)
    _drop(pg_server_url, name)
    migrate(url)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        # No connections to the template, or CREATE DATABASE ... TEMPLATE would refuse to copy it.
        conn.execute(sql.SQL("alter database {} allow_connections false").format(sql.Identifier(name)))
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (name,))
    yield name
    _drop(pg_server_url, name)


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(pg_server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"tickpipe_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template_database))
        )
    yield with_database(pg_server_url, name)
    _drop(pg_server_url, name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A URL naming a database that does not exist yet (migrate creates it)."""
    name = f"tickpipe_e_{uuid.uuid4().hex[:12]}"
    yield with_database(pg_server_url, name)
    _drop(pg_server_url, name)


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
            _unavailable(f"RabbitMQ at TEST_AMQP_URL ({type(e).__name__})")
        yield url
        return
    if not _docker_available():
        _unavailable("RabbitMQ")
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
    """A dedicated PostgreSQL instance (with TimescaleDB) that a test may stop and start."""
    bin_dir = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    if bin_dir is None or not (bin_dir / "initdb").exists():
        _unavailable("PostgreSQL server binaries for a scratch instance")
    assert bin_dir is not None
    import shutil
    import tempfile

    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="tickpipe-scratch-pg-"))
    instance = ScratchPostgres(bin_dir, base)
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)


class ScratchPostgres:
    """initdb + pg_ctl on a free port, run as the postgres user when we are root."""

    def __init__(self, bin_dir: Path, base: Path) -> None:
        import socket

        self.bin_dir = bin_dir
        self.data = base / "data"
        self.sockets = base
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/tickpipe"

    def _run(self, *args: str) -> None:
        import subprocess

        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            import shutil

            shutil.chown(self.sockets, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", str(self.sockets / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
