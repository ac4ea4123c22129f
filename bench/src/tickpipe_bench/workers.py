"""Benchmark: the worker pool draining a pre-filled queue vs a plain server-side COPY of the same rows.

Both run in the same invocation on the same machine, so the ratio is meaningful on a noisy host.
Prints rows/s for each and the ratio; target: the pool reaches at least 0.5 of plain COPY.

    uv run python -m tickpipe_bench.workers --ticks 200000 --workers 1 2 --mode processes tasks
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import psycopg
from psycopg import sql

from tickpipe_bench.common import drop_database, peak_rss_kib
from tickpipe_brokers.dhan.encode import encode_full
from tickpipe_brokers.dhan.parse import DhanDecoder
from tickpipe_core import Topology, encode_batch
from tickpipe_core.db import with_database
from tickpipe_core.logging import configure_logging
from tickpipe_core.migrate import migrate
from tickpipe_core.settings import WorkerSettings
from tickpipe_core.topology import TICKS_ROUTING_KEY
from tickpipe_simulator.market import make_instruments
from tickpipe_workers import run_workers


def make_messages(total: int, per_message: int) -> list[bytes]:
    """Real full packets (with depth) from the simulator, decoded as ingestion would."""
    instruments = make_instruments(200, seed=1)
    decoder = DhanDecoder()
    now = datetime.now(UTC)
    ltt = int(now.timestamp()) + 19800
    frame = b"".join(encode_full(instruments[i % 200].step(), ltt) for i in range(total))
    ticks = decoder.decode(frame, now).ticks
    return [encode_batch(ticks[i : i + per_message]) for i in range(0, total, per_message)]


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("select count(*) from ticks").fetchone()[0])  # type: ignore[index]


async def prefill(amqp_url: str, topology: Topology, bodies: list[bytes], per_message: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange, queue = await topology.declare(channel)
        await queue.purge()
        for i in range(0, len(bodies), 64):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers={"x-tick-count": per_message}
                        ),
                        routing_key=TICKS_ROUTING_KEY,
                    )
                    for b in bodies[i : i + 64]
                )
            )


async def delete_topology(amqp_url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


def run_pool(
    mode: str, workers: int, url: str, amqp_url: str, topology: Topology, total: int, settings: WorkerSettings
) -> tuple[float, list[int]]:
    """Seconds to store `total` rows, and peak RSS (KiB) of each worker."""
    start = time.perf_counter()
    if mode == "tasks":

        async def go() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(run_workers(workers, url, amqp_url, topology, settings, stop))
            while await asyncio.to_thread(count, url) < total:
                await asyncio.sleep(0.05)
            stop.set()
            await task

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        asyncio.run(go())
        elapsed = time.perf_counter() - start
        return elapsed, [max(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)]
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": topology.prefix,
        "WORKER_BATCH_ROWS": str(settings.batch_rows),
        "WORKER_BATCH_TIMEOUT_S": str(settings.batch_timeout_s),
        "LOG_LEVEL": "WARNING",
    }
    procs = [subprocess.Popen([sys.executable, "-m", "tickpipe", "work"], env=env) for _ in range(workers)]
    peaks: dict[int, int] = {}
    while count(url) < total:
        for p in procs:
            peaks[p.pid] = max(peaks.get(p.pid, 0), peak_rss_kib(p.pid))
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    for p in procs:
        peaks[p.pid] = max(peaks.get(p.pid, 0), peak_rss_kib(p.pid))
        p.terminate()
    for p in procs:
        p.wait(30)
    return elapsed, list(peaks.values())


def plain_copy(server: str, source_url: str, total: int) -> float:
    """Seconds for a server-side COPY of the same rows from a binary file into a fresh table."""
    name = f"bench_copy_{uuid.uuid4().hex[:8]}"
    target = with_database(server, name)
    migrate(target)
    path = Path(tempfile.mkdtemp(prefix="tickpipe-bench-")) / "ticks.bin"
    path.parent.chmod(0o777)
    try:
        with psycopg.connect(source_url, autocommit=True) as conn:
            # COPY TO on a hypertable reads only its empty parent; select the rows instead.
            conn.execute(sql.SQL("copy (select * from ticks) to {} (format binary)").format(sql.Literal(str(path))))
        with psycopg.connect(target) as conn:
            start = time.perf_counter()
            conn.execute(sql.SQL("copy ticks from {} (format binary)").format(sql.Literal(str(path))))
            conn.commit()
            elapsed = time.perf_counter() - start
        assert count(target) == total
        return elapsed
    finally:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
        drop_database(server, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--per-message", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mode", nargs="+", choices=["tasks", "processes"], default=["processes", "tasks"])
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument(
        "--server", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--amqp", default=os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    configure_logging("WARNING", "json")

    bodies = make_messages(args.ticks, args.per_message)
    total = args.ticks
    settings = WorkerSettings(batch_rows=args.batch_rows, batch_timeout_s=0.5)
    print(f"{total} full ticks with depth in {len(bodies)} messages of {args.per_message}")
    last_url = None
    results = []
    for mode in args.mode:
        for workers in args.workers:
            name = f"bench_pool_{uuid.uuid4().hex[:8]}"
            url = with_database(args.server, name)
            migrate(url)
            topology = Topology(prefix=f"bench-{uuid.uuid4().hex[:8]}")
            asyncio.run(prefill(args.amqp, topology, bodies, args.per_message))
            elapsed, peaks = run_pool(mode, workers, url, args.amqp, topology, total, settings)
            asyncio.run(delete_topology(args.amqp, topology))
            results.append((mode, workers, total / elapsed, peaks))
            if last_url:
                drop_database(args.server, last_url)
            last_url = url
    assert last_url is not None
    copy_rate = total / plain_copy(args.server, last_url, total)
    drop_database(args.server, last_url)
    print(f"plain server-side COPY from file: {copy_rate:,.0f} rows/s (baseline)")
    for mode, workers, rate, peaks in results:
        peak = ", ".join(f"{p / 1024:.0f}" for p in peaks)
        print(
            f"worker pool {mode:9} x{workers}: {rate:,.0f} rows/s  ratio {rate / copy_rate:.2f}  "
            f"peak RSS MiB per worker: {peak}"
        )


if __name__ == "__main__":
    main()
