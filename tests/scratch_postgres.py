"""A PostgreSQL instance of a test's own (initdb + pg_ctl on a free port), with TimescaleDB preloaded.

Tests that stop or restart a server, or need the Community edition, use one instead of the shared
cluster. The edition is the cluster's `timescaledb.license`: 'apache' (the shared cluster's) or
'timescale' (the Community edition, which the compose image runs; scripts/install-timescaledb.sh
builds it where ../shared/vendor holds its source).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import free_port, unavailable

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def server_binaries() -> Path | None:
    """The newest installed server's bin directory, if it has initdb."""
    bin_dir = next(iter(BIN_DIRS), None)
    return bin_dir if bin_dir is not None and (bin_dir / "initdb").exists() else None


def community_edition_installed() -> bool:
    """The Community edition's library sits beside the Apache one in the server's library directory."""
    lib_dir = Path("/usr/lib/postgresql") / (BIN_DIRS[0].parent.name if BIN_DIRS else "none") / "lib"
    return any(lib_dir.glob("timescaledb-tsl-*.so"))


class ScratchPostgres:
    """initdb + pg_ctl on a free port, run as the postgres user when we are root.

    `license` picks the TimescaleDB edition. With `password`, connections over TCP need it
    (scram-sha-256, as the compose image sets up the server); the Unix socket stays trusted.
    """

    def __init__(self, bin_dir: Path, *, license: str = "apache", password: str | None = None) -> None:
        self.bin_dir = bin_dir
        self.license = license
        self.password = password
        # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
        self.base = Path(tempfile.mkdtemp(prefix="tickpipe-scratch-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base
        self.port = free_port()
        secret = f":{password}" if password else ""
        self.server_url = f"postgresql://postgres{secret}@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres{secret}@127.0.0.1:{self.port}/tickpipe"

    def run_as_postgres(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command as the server's OS user (root drops to postgres), its output captured."""
        full = ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)
        return subprocess.run(full, check=True, capture_output=True, text=True, timeout=120, env=env)

    def _run(self, *args: str) -> None:
        self.run_as_postgres(str(self.bin_dir / args[0]), *args[1:])

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
        auth = ["-A", "trust"]
        if self.password is not None:
            pwfile = self.base / "pwfile"
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres")
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run("initdb", "-D", str(self.data), *auth, "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
            f" -c timescaledb.license={self.license}"
            # Every test database gets a job scheduler of its own: room for them, as the image gives.
            " -c max_worker_processes=40 -c timescaledb.max_background_workers=32"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-l", str(self.sockets / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def scratch_cluster(license_: str, password: str | None = None) -> Iterator[ScratchPostgres]:
    """A scratch server of the edition ('apache' or 'timescale'), removed afterwards."""
    bin_dir = server_binaries()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries for a scratch instance")
    assert bin_dir is not None
    if license_ == "timescale" and not community_edition_installed():
        unavailable(
            "the TimescaleDB Community edition (scripts/install-timescaledb.sh builds it from ../shared/vendor)"
        )
    instance = ScratchPostgres(bin_dir, license=license_, password=password)
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        instance.remove()
