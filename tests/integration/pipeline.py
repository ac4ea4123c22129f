"""Run the real ingestion service and workers in-process against a broker feed URL, for tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from tickpipe_core import Topology
from tickpipe_core.settings import (
    AmqpSettings,
    DatabaseSettings,
    DhanSettings,
    IngestSettings,
    InstrumentSettings,
    KiteSettings,
    WorkerSettings,
)
from tickpipe_ingestion import run_ingest
from tickpipe_ingestion.service import Brokers
from tickpipe_simulator.server import SimulatorServer
from tickpipe_workers import run_workers


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def count_rows(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute("select count(*) from ticks")).fetchone()
        return int(row[0]) if row else 0


def dhan(feed_url: str, instruments: list[tuple[str, int]]) -> Brokers:
    return Brokers(
        "dhan",
        dhan=DhanSettings(
            feed_url=feed_url,
            client_id="test",
            access_token=SecretStr("test-secret"),
            instruments=",".join(f"{seg}:{sid}" for seg, sid in instruments),
        ),
    )


def kite(feed_url: str, tokens: list[int], mode: str = "full") -> Brokers:
    return Brokers(
        "kite",
        kite=KiteSettings(
            feed_url=feed_url,
            api_key="test",
            access_token=SecretStr("test-secret"),
            feed_mode=mode,
            instruments=",".join(map(str, tokens)),
        ),
    )


async def run_pipeline(
    *,
    brokers: Brokers,
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
            brokers=brokers,
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

    await wait_for(all_sent, timeout, "the feed to send everything")
    await wait_for(all_stored, timeout, f"{rows} rows to be stored")
    stop_ingest.set()
    await ingest
    stop_work.set()
    await work


def run_simulated(simulator: SimulatorServer, brokers: Callable[[str], Brokers], **pipeline: Any) -> None:
    """Serve `simulator` and run the pipeline against it (brokers(url)) until it sent all and `rows` are stored."""

    async def scenario() -> None:
        async with simulator.serving() as server:
            url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            await run_pipeline(brokers=brokers(url), sent_all=lambda: simulator.done, **pipeline)

    asyncio.run(scenario())
