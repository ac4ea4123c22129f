"""The compose deployment's database, TimescaleDB's Community edition, on scratch clusters of its own.

Candles equal to the Apache edition's for the same ticks; a database with compressed chunks upgraded
from the previous release's schema; queries and dedup over compressed chunks; and the deployment's own
first start (init-users.sh as the image runs it, the migrations as the superuser, then each service's
login doing its job and no more).
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import roles
from tests.editions import refresh_candles, run_jobs, ticks_ltq_type_and_compression
from tests.helpers import make_tick
from tests.scratch_postgres import ScratchPostgres, scratch_cluster
from tickpipe_analytics.maintain import LEVELS
from tickpipe_core import Tick
from tickpipe_core.migrate import default_directory, discover, migrate
from tickpipe_core.settings import AnalyticsSettings
from tickpipe_workers import TickWriter

pytestmark = pytest.mark.community
ROOT = Path(__file__).parents[2]
INSTRUMENT = 21
# The last migration a Community deployment of the previous release could apply: 0008 failed there.
PREVIOUS_RELEASE = 7


@pytest.fixture
def edition() -> str:
    return "community"


def _numbered(count: int, start: datetime, first: int = 0) -> list[Tick]:
    """Ticks numbered by price (first, first + 1, ...), one every 7 s from `start`, over five instruments."""
    return [
        make_tick(
            security_id=1000 + n % 5,
            instrument_id=INSTRUMENT + n % 5,
            time=start + timedelta(seconds=7 * (n - first)),
            receive_time=start + timedelta(seconds=7 * (n - first), milliseconds=300),
            ltp=float(n),
            ltq=n,
            volume=10 * n,
        )
        for n in range(first, first + count)
    ]


def _write(database_url: str, ticks: list[Tick]) -> int:
    async def write() -> int:
        writer = TickWriter(database_url)
        try:
            return await writer.write(ticks)
        finally:
            await writer.close()

    return asyncio.run(write())


def _compress_old_chunks(database_url: str) -> int:
    """Run the compression policy as the scheduler would; how many tick chunks are then compressed."""
    assert run_jobs(database_url, "policy_compression") == 1
    return _compressed_chunks(database_url)


def _compressed_chunks(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from timescaledb_information.chunks where hypertable_name = 'ticks' and is_compressed"
        ).fetchone()
    return int(row[0]) if row else 0


def _snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored tick, and every candle level with what the analytics functions answer over them."""
    with psycopg.connect(database_url) as conn:
        found: dict[str, list[tuple[Any, ...]]] = {
            "ticks": conn.execute(
                "select tick_id, time, receive_time, security_id, ltp, ltq, volume from ticks order by ltp"
            ).fetchall()
        }
        for level in LEVELS:
            found[level] = conn.execute(
                f"select instrument_id, time, open, high, low, close, volume, ticks from analytics.candles_{level}"
                " order by instrument_id, time"
            ).fetchall()
        found["tick_bars"] = conn.execute(
            "select * from analytics.tick_bars(%s, 20, '-infinity', 'infinity')", (INSTRUMENT,)
        ).fetchall()
    return found


RECORDING = ROOT / "tests" / "data" / "dhan" / "nifty-futures-full-ticks-2025-12-29.csv"


def _recorded_ticks(shift: timedelta) -> list[Tick]:
    """The NIFTY futures recording's full packets as ticks (India wall clock read as UTC, then shifted)."""
    with RECORDING.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["type"] == "full"]
    ticks = []
    for r in rows:
        received = datetime.fromisoformat(r["time"]).replace(tzinfo=UTC) - timedelta(hours=5, minutes=30) + shift
        ticks.append(
            make_tick(
                instrument_id=INSTRUMENT,
                time=received.replace(microsecond=0),
                receive_time=received,
                ltp=float(r["ltp"]),
                ltq=int(r["ltq"]),
                volume=int(r["volume"]),
                atp=float(r["atp"]),
                oi=int(r["oi"]),
            )
        )
    return ticks


def _candles(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(database_url) as conn:
        return {
            level: conn.execute(f"select * from analytics.candles_{level} order by instrument_id, time").fetchall()
            for level in LEVELS
        }


def test_candles_at_every_level_are_the_same_on_both_editions_live_and_materialized(
    new_database: Callable[[str], str],
) -> None:
    apache, community = new_database("apache"), new_database("community")
    recorded = _recorded_ticks(timedelta(0))
    # The same session again, ending two minutes ago: inside every refresh policy's window.
    newest = datetime.now(UTC) - timedelta(minutes=2)
    recent = _recorded_ticks(newest - max(t.receive_time for t in recorded))
    for url in (apache, community):
        _write(url, recorded + recent)
    live = _candles(apache)
    assert all(live[level] for level in LEVELS)
    assert _candles(community) == live
    for url in (apache, community):
        refresh_candles(url, AnalyticsSettings(analytics_late_s=3600))
    assert _candles(apache) == live  # materialized on Apache: the same numbers
    assert _candles(community) == live


@pytest.mark.parametrize("previous", [PREVIOUS_RELEASE, "newest but one"])
def test_a_database_with_compressed_chunks_upgrades_to_the_current_schema_losing_nothing(
    empty_database_url: str, tmp_path: Path, previous: int | str
) -> None:
    everything = discover(default_directory())
    stop = everything[-2].version if previous == "newest but one" else int(previous)
    older = tmp_path / "migrations"
    older.mkdir()
    for m in everything:
        if m.version <= stop:
            shutil.copy(m.path, older / m.path.name)
    migrate(empty_database_url, older)

    old_days = datetime.now(UTC).replace(microsecond=0) - timedelta(days=12)
    _insert_as_any_release_did(empty_database_url, _numbered(400, old_days))
    assert _compress_old_chunks(empty_database_url) >= 1
    before = _snapshot(empty_database_url)

    applied = migrate(empty_database_url)
    assert [m.version for m in applied] == [m.version for m in everything if m.version > stop]
    assert _snapshot(empty_database_url) == before  # every tick and candle as it was
    assert ticks_ltq_type_and_compression(empty_database_url) == ("bigint", True)

    # The upgraded table takes what the old one could not (a last-traded quantity of 2^31 and above),
    # in its old days and now, and the compression policy compresses the old days again.
    big = [replace_ltq(t, 3_000_000_000 + i) for i, t in enumerate(_numbered(3, old_days + timedelta(hours=1), 400))]
    assert _write(empty_database_url, big) == 3
    assert _compress_old_chunks(empty_database_url) >= 1
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select count(*), max(ltq) from ticks").fetchone() == (403, 3_000_000_002)


def replace_ltq(tick: Tick, ltq: int) -> Tick:
    from msgspec.structs import replace

    return replace(tick, ltq=ltq)


def _insert_as_any_release_did(database_url: str, ticks: list[Tick]) -> None:
    """Plain INSERTs of the columns every release has had (today's writer COPYs binary `ltq` as bigint)."""
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into ticks (time, tick_id, source, segment, security_id, instrument_id, receive_time,"
            " time_source, packet, ltp, ltq, volume) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (t.time, t.tick_id, t.source, t.segment, t.security_id, t.instrument_id, t.receive_time,
                 t.time_source, t.packet, t.ltp, t.ltq, t.volume)
                for t in ticks
            ],
        )  # fmt: skip


def test_queries_over_compressed_chunks_answer_as_before_compression(database_url: str) -> None:
    old_days = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    _write(database_url, _numbered(600, old_days))
    before = _snapshot(database_url)
    assert _compressed_chunks(database_url) == 0
    assert _compress_old_chunks(database_url) >= 1
    assert _snapshot(database_url) == before


def test_a_duplicate_landing_in_a_compressed_chunk_is_rejected_and_new_ticks_beside_it_land(database_url: str) -> None:
    old_days = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    first = _numbered(300, old_days)
    assert _write(database_url, first) == 300
    assert _compress_old_chunks(database_url) >= 1
    # A redelivered batch: every tick already stored (in a compressed chunk), plus 50 new ones in the same days.
    again = first + _numbered(50, old_days + timedelta(seconds=3), first=300)
    assert _write(database_url, again) == 50
    assert _write(database_url, first[:10]) == 0
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("select ltp, count(*) from ticks group by ltp order by ltp").fetchall()
    assert stored == [(float(n), 1) for n in range(350)]  # each numbered tick exactly once


@pytest.fixture
def image_like_server(tmp_path: Path) -> Iterator[tuple[ScratchPostgres, Path]]:
    """A Community-edition server set up as the compose image does it: compose's secret files, the
    superuser's password from them, password auth over TCP, the extension in the new database."""
    if os.geteuid() != 0:
        pytest.skip("reading the secrets at /run/secrets as the image does takes a private mount namespace (root)")
    secrets = tmp_path / "secrets"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "compose_env.py"), str(secrets)], check=True)
    shutil.chown(secrets, "postgres")
    for f in secrets.iterdir():
        shutil.chown(f, "postgres")
    with scratch_cluster("timescale", password=(secrets / "postgres_password").read_text().strip()) as server:
        # What the image's entrypoint does before our script: POSTGRES_DB, and the image's own script that
        # creates the extension in it.
        with psycopg.connect(server.server_url, autocommit=True) as conn:
            conn.execute("create database tickpipe")
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("create extension if not exists timescaledb")
        yield server, secrets


def test_the_deployments_first_start_gives_each_service_a_login_that_does_its_job_and_no_more(
    image_like_server: tuple[ScratchPostgres, Path],
) -> None:
    server, secrets = image_like_server
    # deploy/postgres/init-users.sh as docker-entrypoint-initdb.d runs it: as postgres, over the local
    # socket, with POSTGRES_USER and POSTGRES_DB set and compose's secrets at /run/secrets.
    script = ROOT / "deploy" / "postgres" / "init-users.sh"
    subprocess.run(
        [
            shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs tmpfs /run && mkdir /run/secrets && mount --bind "$1" /run/secrets && shift && exec "$@"',
            "sh", str(secrets),
            "runuser", "-u", "postgres", "--", "env", "POSTGRES_USER=postgres", "POSTGRES_DB=tickpipe",
            f"PGHOST={server.sockets}", f"PGPORT={server.port}", "bash", str(script),
        ],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    # The compose `migrate` service: the superuser, its password from the secret file, over TCP.
    superuser = {"DATABASE_URL": server.url.replace(f":{server.password}@", "@"),
                 "DATABASE_PASSWORD_FILE": str(secrets / "postgres_password")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "migrate"],
        env={**os.environ, **superuser}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with psycopg.connect(server.url) as conn:
        assert conn.execute("select count(*) from schema_migrations").fetchone() == (
            len(discover(default_directory())),
        )

    def login(service: str, password: str | None = None) -> str:
        password = password or (secrets / f"db_{service}_password").read_text().strip()
        return f"postgresql://tickpipe_{service}_login:{password}@127.0.0.1:{server.port}/tickpipe"

    roles.ingest_reads_instruments_records_sessions_and_no_more(login("ingest"))
    roles.writer_stores_ticks_and_quotes_and_no_more(login("writer"))
    roles.analyst_reads_everything_and_writes_nothing(login("analyst"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(login("writer", password="not-the-secret"), connect_timeout=5).close()
