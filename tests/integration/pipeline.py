"""Helpers of the integration tests: run ingestion and workers in-process against a feed URL; count rows; publish."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
from pydantic import SecretStr

from tests.helpers import until
from tickpipe_brokers import adapter
from tickpipe_brokers.dhan.settings import DhanSettings
from tickpipe_brokers.kite.settings import KiteSettings
from tickpipe_core import Topology
from tickpipe_core.settings import (
    AmqpSettings,
    DatabaseSettings,
    IngestSettings,
    InstrumentSettings,
    WorkerSettings,
)
from tickpipe_core.topology import TICKS_ROUTING_KEY
from tickpipe_ingestion import run_ingest
from tickpipe_ingestion.service import Broker
from tickpipe_simulator.server import SimulatorServer
from tickpipe_workers import run_workers


def count_ticks(url: str) -> int:
    """Rows in `ticks` now."""
    with psycopg.connect(url) as conn:
        row = conn.execute("select count(*) from ticks").fetchone()
    return int(row[0]) if row else 0


async def publish_bodies(amqp_url: str, topology: Topology, bodies: list[bytes]) -> None:
    """Publish raw message bodies to the ticks routing key, confirmed and persistent."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange, _ = await topology.declare(channel)
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=TICKS_ROUTING_KEY
            )


async def queue_depths(amqp_url: str, topology: Topology) -> tuple[int, int]:
    """Messages ready in the ticks queue and in the dead-letter queue."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        ticks = await channel.declare_queue(topology.ticks_queue, passive=True)
        dead = await channel.declare_queue(topology.dead_queue, passive=True)
        return ticks.declaration_result.message_count or 0, dead.declaration_result.message_count or 0


async def count_rows(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("select count(*) from ticks")).fetchone()
        return int(row[0]) if row else 0


def dhan(feed_url: str, instruments: list[tuple[str, int]]) -> Broker:
    return Broker(
        adapter("dhan"),
        DhanSettings(
            feed_url=feed_url,
            client_id="test",
            access_token=SecretStr("test-secret"),
            instruments=",".join(f"{seg}:{sid}" for seg, sid in instruments),
        ),
    )


def kite(feed_url: str, tokens: list[int], mode: str = "full") -> Broker:
    return Broker(
        adapter("kite"),
        KiteSettings(
            feed_url=feed_url,
            api_key="test",
            access_token=SecretStr("test-secret"),
            feed_mode=mode,
            instruments=",".join(map(str, tokens)),
        ),
    )


async def run_pipeline(
    *,
    broker: Broker,
    database_url: str,
    amqp_url: str,
    topology: Topology,
    rows: int,
    sent_all: Callable[[], bool] = lambda: True,
    record: Path | None = None,
    timeout: float = 60,
    unknown: str = "store",
) -> None:
    """Ingest with 2 workers until `sent_all()` and `rows` rows are stored, then stop."""
    stop_ingest, stop_work = asyncio.Event(), asyncio.Event()
    ingest = asyncio.create_task(
        run_ingest(
            broker=broker,
            amqp=AmqpSettings(amqp_url=amqp_url, amqp_prefix=topology.prefix),
            ingest=IngestSettings(max_ticks_per_message=200, linger_ms=5, market_hours="always"),
            stop=stop_ingest,
            record=record,
            db=DatabaseSettings(database_url=database_url),
            instruments=InstrumentSettings(unknown=unknown),
        )
    )
    worker_settings = WorkerSettings(batch_rows=1000, batch_timeout_s=0.2)
    work = asyncio.create_task(run_workers(2, database_url, amqp_url, topology, worker_settings, stop_work))

    async def all_sent() -> bool:
        assert not ingest.done(), ingest
        return sent_all()

    async def all_stored() -> bool:
        return await count_rows(database_url) >= rows

    await until(all_sent, "the feed to send everything", timeout, interval=0.1)
    await until(all_stored, f"{rows} rows to be stored", timeout, interval=0.1)
    stop_ingest.set()
    await ingest
    stop_work.set()
    await work


def run_simulated(simulator: SimulatorServer, broker: Callable[[str], Broker], **pipeline: Any) -> None:
    """Serve `simulator` and run the pipeline against it (broker(url)) until it sent all and `rows` are stored."""

    async def scenario() -> None:
        async with simulator.serving() as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            await run_pipeline(broker=broker(url), sent_all=lambda: simulator.done, **pipeline)

    asyncio.run(scenario())


def sync_dhan_lines(database_url: str, lines: list[str]) -> dict[int, int]:
    """Sync compact Dhan master rows (without the header); returns security id -> instrument id."""
    from tests.helpers import COMPACT_HEADER
    from tickpipe_instruments import parse_master, sync_instruments

    sync_instruments(database_url, parse_master("dhan", io.StringIO("\n".join([COMPACT_HEADER, *lines]))))
    with psycopg.connect(database_url) as conn:
        return dict(conn.execute("select dhan_security_id, instrument_id from instruments").fetchall())
