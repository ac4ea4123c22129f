"""The ingestion service: broker feed -> decode -> build ticks -> publish to RabbitMQ, until told to stop.

The stages, in the order a frame meets them:
1. `FeedConnection` (tickpipe_brokers/feed.py) reads a frame from the broker's socket (and records it, if asked);
2. the broker adapter's decoder (`tickpipe_brokers/<broker>/parse.py`) walks its packets over its
   `wire` layouts;
3. the `TickBuilder` (tickpipe_brokers/ticks.py) turns each packet's fields into a `Tick`: identity, time, our
   instrument (from the `InstrumentMap`), the derived fields;
4. the `TickPublisher` (publisher.py) batches ticks into confirmed, persistent RabbitMQ messages.
Each stage counts its own work; `IngestStats` (metrics.py) reads them all into one `ingest_stats` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickpipe_brokers import BrokerAdapter, FeedParts, Selected, adapter
from tickpipe_brokers.adapter import BrokerSettings, OrderSink
from tickpipe_brokers.feed import Feed, Recorder, Watchdog
from tickpipe_brokers.market_hours import MarketHours, load_holidays
from tickpipe_brokers.ticks import TickBuilder
from tickpipe_core import Tick, Topology, get_logger
from tickpipe_core.capture import CaptureWriter
from tickpipe_core.metrics import MetricsServer, registry_of
from tickpipe_core.settings import (
    AmqpSettings,
    DatabaseSettings,
    IngestSettings,
    InstrumentSettings,
    MetricsSettings,
)
from tickpipe_core.topology import ORDERS_ROUTING_KEY
from tickpipe_ingestion.instrument_map import InstrumentMap
from tickpipe_ingestion.metrics import IngestStats, ingest_metrics, ingest_readiness
from tickpipe_ingestion.publisher import TickPublisher
from tickpipe_ingestion.sessions import SessionLog

log = get_logger("ingest")

STATS_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Broker:
    """The broker DATA_SOURCE names: its adapter, and its settings (loaded at start, so errors come then)."""

    adapter: BrokerAdapter[Any]
    settings: BrokerSettings

    @classmethod
    def named(cls, source: str) -> Broker:
        chosen = adapter(source)
        return cls(chosen, chosen.settings())

    @property
    def source(self) -> str:
        return self.adapter.name


def watchdog(ingest: IngestSettings) -> Watchdog:
    """The silence watchdog INGEST_SILENCE_TIMEOUT_S, INGEST_MARKET_HOURS and INGEST_HOLIDAYS_FILE describe."""
    return Watchdog(
        ingest.silence_timeout_s or None, MarketHours(ingest.market_hours, load_holidays(ingest.holidays_file))
    )


def _feed(
    broker: Broker,
    ingest: IngestSettings,
    sink: Callable[[list[Tick]], None],
    recorder: Recorder | None,
    selected: Sequence[Selected] | None = None,
    builder: TickBuilder | None = None,
    orders: OrderSink | None = None,
) -> Feed:
    """The broker's feed, with its settings."""
    parts = FeedParts(sink, watchdog(ingest), recorder, builder, orders)
    return broker.adapter.feed(broker.settings, selected, parts)


async def run_ingest(
    *,
    broker: Broker,
    amqp: AmqpSettings,
    ingest: IngestSettings,
    stop: asyncio.Event,
    record: Path | None = None,
    db: DatabaseSettings | None = None,
    instruments: InstrumentSettings | None = None,
    subscribe: Sequence[Selected] | None = None,
    metrics: MetricsSettings | None = None,
) -> None:
    """Run the feed named by DATA_SOURCE until `stop` is set or the feed fails terminally.

    With `record`, every raw frame is also written to that capture file. With `db`, ticks carry
    our instrument id from a map of that database's instruments, refreshed every
    INSTRUMENTS_REFRESH_S and on SIGHUP. `subscribe` (a resolved watchlist) replaces the broker's
    *_INSTRUMENTS setting. With `metrics` (a METRICS_PORT), it serves /metrics, /healthz and /readyz.
    """
    source = broker.source
    settings = instruments or InstrumentSettings()
    imap = InstrumentMap(source) if db else None
    builder = broker.adapter.tick_builder(imap, settings.unknown)
    publisher = TickPublisher(amqp.amqp_url, Topology(amqp.amqp_prefix), ingest)
    async with contextlib.AsyncExitStack() as stack:
        writer = stack.enter_context(CaptureWriter(record, source)) if record else None
        orders = functools.partial(publisher.submit_event, ORDERS_ROUTING_KEY)
        feed = _feed(broker, ingest, publisher.submit, writer.write if writer else None, subscribe, builder, orders)
        stats = IngestStats(feed, builder, publisher, imap)
        if db is not None:
            sessions = SessionLog(db.database_url, source)
            feed.observe_sessions(sessions)
        if imap is not None and db is not None:
            await imap.reload(db.database_url)  # before the first tick; market data flows even if this fails
        await publisher.start()
        if metrics is not None and metrics.metrics_port:
            server = MetricsServer(
                registry_of(lambda: ingest_metrics(stats)),
                lambda: ingest_readiness(stats),
                metrics.metrics_host,
                metrics.metrics_port,
            )
            await server.start()
            stack.push_async_callback(server.stop)
        tasks = [asyncio.create_task(stats.report_every(STATS_INTERVAL_S), name="ingest-stats")]
        if db is not None:
            tasks.append(asyncio.create_task(sessions.run(), name="feed-sessions"))
        if imap is not None and db is not None:
            reload = asyncio.Event()
            tasks.append(asyncio.create_task(imap.keep_fresh(db.database_url, settings.refresh_s, reload)))
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload.set)
                stack.callback(asyncio.get_running_loop().remove_signal_handler, signal.SIGHUP)
        log.info("ingest_started", source=source, connections=len(feed.connections), record=str(record))
        try:
            await _until_stopped(feed, stop)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # the session log writes its last rows
            await publisher.close()
            lost = dict(publisher.lost_by_instrument)  # what a full spool could not keep: the gaps to repair
            log.info("ingest_stopped", **stats.snapshot(), **({"lost_by_instrument": lost} if lost else {}))


async def run_record(*, broker: Broker, ingest: IngestSettings, path: Path, stop: asyncio.Event) -> None:
    """Write every raw frame of the feed to a capture file, publishing nothing, until `stop`."""
    with CaptureWriter(path, broker.source) as writer:
        feed = _feed(broker, ingest, lambda ticks: None, writer.write)
        log.info("record_started", source=broker.source, path=str(path), connections=len(feed.connections))
        try:
            await _until_stopped(feed, stop)
        finally:
            log.info("record_stopped", path=str(path), frames=writer.frames, **feed.stats(), **feed.decoder.counters)


async def _until_stopped(feed: Feed, stop: asyncio.Event) -> None:
    """Run the feed until `stop` is set; a terminal feed error is re-raised after the feed stops."""
    feed_task = asyncio.create_task(feed.run(), name="feed")
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({feed_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.stop()
        stop_task.cancel()
        await feed_task
