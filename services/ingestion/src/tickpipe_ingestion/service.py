"""The ingestion service: broker feed -> decode -> enrich -> RabbitMQ, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from tickpipe_core import ConfigError, Tick, Topology, get_logger
from tickpipe_core.settings import AmqpSettings, DhanSettings, IngestSettings, SourceSettings
from tickpipe_ingestion.capture import CaptureWriter
from tickpipe_ingestion.dhan.feed import DhanFeed, Recorder
from tickpipe_ingestion.feed import Watchdog
from tickpipe_ingestion.market_hours import MarketHours, load_holidays
from tickpipe_ingestion.publisher import TickPublisher

log = get_logger("ingest")

STATS_INTERVAL_S = 10.0


def watchdog(ingest: IngestSettings) -> Watchdog:
    """The silence watchdog INGEST_SILENCE_TIMEOUT_S, INGEST_MARKET_HOURS and INGEST_HOLIDAYS_FILE describe."""
    return Watchdog(
        ingest.silence_timeout_s or None, MarketHours(ingest.market_hours, load_holidays(ingest.holidays_file))
    )


def _feed(
    source: SourceSettings,
    dhan: DhanSettings,
    ingest: IngestSettings,
    sink: Callable[[list[Tick]], None],
    recorder: Recorder | None,
) -> DhanFeed:
    if source.data_source != "dhan":
        raise ConfigError(f"DATA_SOURCE: the {source.data_source!r} feed is not available in this build")
    client_id, token = dhan.credentials()
    instruments = dhan.instrument_list()
    if not instruments:
        raise ConfigError("DHAN_INSTRUMENTS: no instruments to subscribe")
    return DhanFeed(
        base_url=dhan.feed_url,
        client_id=client_id,
        token=token,
        mode=dhan.feed_mode,
        instruments=instruments,
        sink=sink,
        watchdog=watchdog(ingest),
        recorder=recorder,
    )


async def run_ingest(
    *,
    source: SourceSettings,
    dhan: DhanSettings,
    amqp: AmqpSettings,
    ingest: IngestSettings,
    stop: asyncio.Event,
    record: Path | None = None,
) -> None:
    """Run the feed named by DATA_SOURCE until `stop` is set or the feed fails terminally.

    With `record`, every raw frame is also written to that capture file.
    """
    publisher = TickPublisher(amqp.amqp_url, Topology(amqp.amqp_prefix), ingest)
    with contextlib.ExitStack() as files:
        writer = files.enter_context(CaptureWriter(record, source.data_source)) if record else None
        feed = _feed(source, dhan, ingest, publisher.submit, writer.write if writer else None)
        await publisher.start()
        log.info("ingest_started", source=source.data_source, connections=len(feed.connections), record=str(record))
        stats = asyncio.create_task(_report(feed, publisher), name="ingest-stats")
        try:
            await _until_stopped(feed, stop)
        finally:
            stats.cancel()
            await publisher.close()
            log.info("ingest_stopped", **dict(feed.decoder.counters))


async def run_record(
    *,
    source: SourceSettings,
    dhan: DhanSettings,
    ingest: IngestSettings,
    path: Path,
    stop: asyncio.Event,
) -> None:
    """Write every raw frame of the feed to a capture file, publishing nothing, until `stop`."""
    with CaptureWriter(path, source.data_source) as writer:
        feed = _feed(source, dhan, ingest, lambda ticks: None, writer.write)
        log.info("record_started", source=source.data_source, path=str(path), connections=len(feed.connections))
        try:
            await _until_stopped(feed, stop)
        finally:
            log.info("record_stopped", path=str(path), frames=writer.frames, **dict(feed.decoder.counters))


async def _until_stopped(feed: DhanFeed, stop: asyncio.Event) -> None:
    """Run the feed until `stop` is set; a terminal feed error is re-raised after the feed stops."""
    feed_task = asyncio.create_task(feed.run(), name="feed")
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({feed_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.stop()
        stop_task.cancel()
        await feed_task


async def _report(feed: DhanFeed, publisher: TickPublisher) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            log.info(
                "ingest_stats",
                pending=publisher.pending,
                **dict(feed.decoder.counters),
                **{f"publisher.{k}": v for k, v in publisher.counters.items()},
            )
