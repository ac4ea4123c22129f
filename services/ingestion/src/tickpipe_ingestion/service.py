"""The ingestion service: broker feed -> decode -> enrich -> RabbitMQ, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib

from tickpipe_core import ConfigError, Topology, get_logger
from tickpipe_core.settings import AmqpSettings, DhanSettings, IngestSettings, SourceSettings
from tickpipe_ingestion.dhan.feed import DhanFeed
from tickpipe_ingestion.publisher import TickPublisher

log = get_logger("ingest")

STATS_INTERVAL_S = 10.0


async def run_ingest(
    *,
    source: SourceSettings,
    dhan: DhanSettings,
    amqp: AmqpSettings,
    ingest: IngestSettings,
    stop: asyncio.Event,
    silence_timeout: float | None = 30.0,
) -> None:
    """Run the feed named by DATA_SOURCE until `stop` is set or the feed fails terminally."""
    if source.data_source != "dhan":
        raise ConfigError(f"DATA_SOURCE: the {source.data_source!r} feed is not available in this build")
    client_id, token = dhan.credentials()
    instruments = dhan.instrument_list()
    if not instruments:
        raise ConfigError("DHAN_INSTRUMENTS: no instruments to subscribe")

    publisher = TickPublisher(amqp.amqp_url, Topology(amqp.amqp_prefix), ingest)
    await publisher.start()
    feed = DhanFeed(
        base_url=dhan.feed_url,
        client_id=client_id,
        token=token,
        mode=dhan.feed_mode,
        instruments=instruments,
        sink=publisher.submit,
        silence_timeout=silence_timeout,
    )
    log.info("ingest_started", source="dhan", instruments=len(instruments), connections=len(feed.connections))
    feed_task = asyncio.create_task(feed.run(), name="dhan-feed")
    stats_task = asyncio.create_task(_report(feed, publisher), name="ingest-stats")
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({feed_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feed.stop()
        stop_task.cancel()
        stats_task.cancel()
        try:
            await feed_task  # re-raises a terminal feed error after the publisher is drained below
        finally:
            await publisher.close()
            log.info("ingest_stopped", **dict(feed.decoder.counters))


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
