"""Apply the numbered SQL files of database/migrations in order, once each, with checksums.

Each file runs in its own transaction. A session-level advisory lock makes two migrators that
start at once take turns; the second finds nothing left to do. A file whose first lines say
`-- requires: timescaledb-community` is skipped with a notice on the Apache edition and applied
by a later run on a server that has the Community edition. A file corrected after it was released
names the checksums of the versions it replaces (`-- corrects: <sha256>`, same effect wherever those
applied): a database that applied one records the new checksum instead of refusing to start.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tickpipe_core.db import ensure_database, timescaledb_license
from tickpipe_core.errors import MigrationError, StorageError
from tickpipe_core.logging import get_logger
from tickpipe_core.settings import redact_url

log = get_logger("migrate")

_LOCK_KEY = 0x7469636B70697065  # "tickpipe" in ASCII, as a 64-bit advisory lock key
_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_REQUIRES_COMMUNITY = "-- requires: timescaledb-community"
_CORRECTS = re.compile(r"^-- corrects: ([0-9a-f]{64})$", re.M)
_HEADER_LINES = 5


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def header(self) -> str:
        return "\n".join(self.sql.split("\n", _HEADER_LINES)[:_HEADER_LINES])

    @property
    def needs_community(self) -> bool:
        return _REQUIRES_COMMUNITY in self.header.splitlines()

    @property
    def corrects(self) -> frozenset[str]:
        """Checksums of earlier versions of this file that this one replaces."""
        return frozenset(_CORRECTS.findall(self.header))


def default_directory() -> Path:
    """TICKPIPE_MIGRATIONS_DIR, else database/migrations of the checkout this package runs from."""
    if env := os.environ.get("TICKPIPE_MIGRATIONS_DIR"):
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "database" / "migrations"
        if candidate.is_dir():
            return candidate
    raise MigrationError("no database/migrations directory found; set TICKPIPE_MIGRATIONS_DIR")


def discover(directory: Path) -> list[Migration]:
    """The migration files in version order; a misnamed .sql file or a repeated number is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.sql")
        version = int(m["version"])
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used by {found[version].path.name}")
        found[version] = Migration(version, m["name"], path, path.read_text())
    return [found[v] for v in sorted(found)]


def migrate(url: str, directory: Path | None = None) -> list[Migration]:
    """Bring the database up to date; return the migrations this call applied."""
    migrations = discover(directory or default_directory())
    ensure_database(url)
    applied_now: list[Migration] = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
            try:
                conn.execute(
                    "create table if not exists schema_migrations ("
                    " version integer primary key, name text not null, checksum text not null,"
                    " applied_at timestamptz not null default now())"
                )
                applied: dict[int, str] = dict(
                    conn.execute("select version, checksum from schema_migrations").fetchall()
                )
                for mig in migrations:
                    if mig.version in applied:
                        if applied[mig.version] in mig.corrects:
                            _record_correction(conn, mig, applied[mig.version])
                        elif applied[mig.version] != mig.checksum:
                            raise MigrationError(
                                f"{mig.path.name} was changed after it was applied; add a new migration"
                            )
                        continue
                    if mig.needs_community and timescaledb_license(conn) != "timescale":
                        log.warning(
                            "migration_skipped",
                            migration=mig.path.name,
                            reason="needs the TimescaleDB Community edition (timescaledb.license=timescale)",
                        )
                        continue
                    _apply(conn, mig)
                    applied_now.append(mig)
            finally:
                conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.OperationalError as e:
        raise StorageError(f"cannot reach PostgreSQL at {redact_url(url)}: {e}") from e
    log.info("migrations_done", applied=[m.path.name for m in applied_now], total=len(migrations))
    return applied_now


def _record_correction(conn: psycopg.Connection[tuple[object, ...]], mig: Migration, old: str) -> None:
    conn.execute("update schema_migrations set checksum = %s where version = %s", (mig.checksum, mig.version))
    log.info("migration_corrected", migration=mig.path.name, replaced_checksum=old[:12])


def _apply(conn: psycopg.Connection[tuple[object, ...]], mig: Migration) -> None:
    try:
        with conn.transaction():
            conn.execute(mig.sql.encode())
            conn.execute(
                "insert into schema_migrations (version, name, checksum) values (%s, %s, %s)",
                (mig.version, mig.name, mig.checksum),
            )
    except psycopg.Error as e:
        raise MigrationError(f"{mig.path.name} failed: {e}") from e
    log.info("migration_applied", migration=mig.path.name)
