"""What the benchmarks share: free ports, a process's CPU and peak memory from /proc, scratch clean-up."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import psycopg
from psycopg import sql

from tickpipe_core import Topology, get_logger
from tickpipe_core.db import with_database

log = get_logger("bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int, name: str | None = None) -> float | None:
    """A process's CPU seconds so far, from /proc; None if it is not on this machine (or not called `name`)."""
    try:
        comm, _, rest = Path(f"/proc/{pid}/stat").read_text().partition("(")[2].rpartition(")")
        fields = rest.split()
        if name is not None and comm != name:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def peak_rss_kib(pid: int) -> int:
    """A process's peak resident memory (VmHWM) in KiB, from /proc; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


def cleanup(server_url: str, db: str, amqp_url: str, prefix: str) -> None:
    """Drop the scratch database and the scratch queues (a failure is logged: they are named bench-*)."""
    drop_database(server_url, db)
    drop_topology(amqp_url, prefix)


def drop_database(server_url: str, db: str) -> None:
    """Drop a scratch database, named or given by its URL."""
    name = str(psycopg.conninfo.conninfo_to_dict(db)["dbname"]) if "://" in db else db
    try:  # from the server's maintenance database: DATABASE_URL's own may not exist (a bench-only server)
        with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    except psycopg.Error as e:
        log.warning("bench_cleanup_failed", database=str(name), error=str(e))


def drop_topology(amqp_url: str, prefix: str) -> None:
    import aio_pika

    async def drop() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            await Topology(prefix).delete(await connection.channel())

    try:
        asyncio.run(drop())
    except Exception as e:  # the broker went away meanwhile: the scratch queues stay, named bench-*
        log.warning("bench_cleanup_failed", prefix=prefix, error=f"{type(e).__name__}: {e}")
