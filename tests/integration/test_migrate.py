"""Migrations on a real TimescaleDB: create, record, refuse changed files, take turns, skip editions."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

from tickpipe_core import MigrationError
from tickpipe_core.migrate import default_directory, migrate


def test_migrate_creates_the_database_and_a_ticks_hypertable(empty_database_url: str) -> None:
    applied = migrate(empty_database_url)
    assert next(m.version for m in applied) == 1
    with psycopg.connect(empty_database_url) as conn:
        hypertable = conn.execute(
            "select hypertable_name from timescaledb_information.dimensions where column_name = 'time'"
        ).fetchall()
        recorded = conn.execute("select version, checksum from schema_migrations order by version").fetchall()
    assert hypertable == [("ticks",)]
    assert [v for v, _ in recorded] == [m.version for m in applied]


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
