"""Migrations on a real TimescaleDB: create, record, refuse changed files, accept corrected ones, take
turns, and on each edition apply what it has (the Community edition everything, Apache all but its files)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from tests.editions import EDITIONS, ticks_ltq_type_and_compression
from tickpipe_core import MigrationError
from tickpipe_core.migrate import default_directory, discover, migrate


@pytest.mark.parametrize("edition", EDITIONS)
def test_migrate_creates_the_database_and_a_ticks_hypertable(empty_database_url: str, edition: str) -> None:
    applied = migrate(empty_database_url)
    assert next(m.version for m in applied) == 1
    with psycopg.connect(empty_database_url) as conn:
        hypertable = conn.execute(
            "select hypertable_name from timescaledb_information.dimensions where column_name = 'time'"
        ).fetchall()
        recorded = conn.execute("select version, checksum from schema_migrations order by version").fetchall()
        key = [
            r[0]
            for r in conn.execute(
                "select a.attname from pg_constraint c, unnest(c.conkey) with ordinality k(attnum, ord)"
                " join pg_attribute a on a.attrelid = 'ticks'::regclass and a.attnum = k.attnum"
                " where c.conrelid = 'ticks'::regclass and c.contype = 'p' order by k.ord"
            ).fetchall()
        ]
        aggregates = conn.execute(
            "select view_name from timescaledb_information.continuous_aggregates order by view_name"
        ).fetchall()
        policies = conn.execute(
            "select proc_name, count(*) from timescaledb_information.jobs where hypertable_name is not null"
            " group by 1 order by 1"
        ).fetchall()
    assert hypertable == [("ticks",)]
    assert key == ["time", "tick_id"]  # led by time: inserts append to the key's index
    assert [v for v, _ in recorded] == [m.version for m in applied]
    ltq, compression = ticks_ltq_type_and_compression(empty_database_url)
    assert ltq == "bigint"
    everything = [m.version for m in discover(default_directory())]
    if edition == "community":  # every file, the Community edition's own included
        assert [m.version for m in applied] == everything
        assert compression
        assert aggregates == [(f"_candles_{level}_cagg",) for level in ("15m", "1d", "1h", "1m", "1s", "5m")]
        assert policies == [("policy_compression", 1), ("policy_refresh_continuous_aggregate", 6)]
    else:  # all but the files that need the Community edition
        assert [m.version for m in applied] == [
            m.version for m in discover(default_directory()) if not m.needs_community
        ]
        assert (compression, aggregates, policies) == (False, [], [])


@pytest.mark.parametrize("edition", EDITIONS)
def test_second_run_applies_nothing(empty_database_url: str) -> None:
    migrate(empty_database_url)
    assert migrate(empty_database_url) == []


def test_changed_applied_file_is_an_error(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_directory(), directory)
    migrate(empty_database_url, directory)
    first = sorted(directory.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an edit\n")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(empty_database_url, directory)


def test_a_corrected_file_replaces_the_checksum_it_names_and_no_other(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_directory(), directory)
    migrate(empty_database_url, directory)
    first = sorted(directory.glob("0001_*.sql"))[0]
    released = discover(directory)[0].checksum
    first.write_text(f"-- corrects: {'0' * 64}\n{first.read_text()}\n-- a fix\n")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(empty_database_url, directory)  # it corrects another version than the one applied here

    first.write_text(f"-- corrects: {released}\n{first.read_text()}")
    with capture_logs() as logs:
        assert migrate(empty_database_url, directory) == []
    assert [e["migration"] for e in logs if e["event"] == "migration_corrected"] == [first.name]
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select checksum from schema_migrations where version = 1").fetchone() == (
            discover(directory)[0].checksum,
        )
    assert migrate(empty_database_url, directory) == []


def test_failed_migration_rolls_back_and_names_the_file(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_directory(), directory)
    (directory / "0999_broken.sql").write_text("create table half_done (x int);\nselect nonsense_fn();\n")
    with pytest.raises(MigrationError, match="0999_broken.sql failed"):
        migrate(empty_database_url, directory)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("select count(*) from schema_migrations where version = 999").fetchone() == (0,)


def test_two_migrators_at_once_apply_each_file_once(empty_database_url: str) -> None:
    # Both start on a database that does not exist yet: they race to create it, then to migrate it.
    results: list[object] = []

    def run() -> None:
        try:
            results.append(len(migrate(empty_database_url)))
        except Exception as e:
            results.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with psycopg.connect(empty_database_url) as conn:
        recorded = conn.execute("select count(*) from schema_migrations").fetchone()
    assert recorded is not None and recorded[0] >= 1
    assert sorted(results) == [0, recorded[0]]  # type: ignore[type-var]


def test_community_features_are_skipped_with_a_notice_on_the_apache_edition(empty_database_url: str) -> None:
    migrate(empty_database_url)
    with psycopg.connect(empty_database_url) as conn:
        license_ = conn.execute("show timescaledb.license").fetchone()
    if license_ != ("apache",):
        pytest.skip("this server has the Community edition; the file was applied instead")
    with capture_logs() as logs:
        migrate(empty_database_url)
    assert any(e["event"] == "migration_skipped" and "compression" in e["migration"] for e in logs)
