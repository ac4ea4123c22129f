"""Ingestion's counters in one place (`IngestStats`): its log event, its Prometheus metrics read at
scrape time, and its readiness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tickpipe_brokers.feed import Feed
from tickpipe_brokers.ticks import TickBuilder
from tickpipe_core import get_logger
from tickpipe_core.metrics import counter, gauge, labelled
from tickpipe_ingestion.instrument_map import InstrumentMap
from tickpipe_ingestion.publisher import TickPublisher

log = get_logger("ingest")


class IngestStats:
    """Every stage's counters, read in one place: the `ingest_stats` log event and the metrics."""

    def __init__(self, feed: Feed, builder: TickBuilder, publisher: TickPublisher, imap: InstrumentMap | None) -> None:
        self.feed, self.builder, self.publisher, self.imap = feed, builder, publisher, imap

    def snapshot(self) -> dict[str, int]:
        """One flat dict: feed and connections, decoder, tick builder, publisher, instrument map."""
        out = self.feed.stats()
        out.update(self.feed.decoder.counters)
        out.update(self.builder.counters)
        out.update({f"publisher.{k}": v for k, v in self.publisher.counters.items()})
        out["spool.pending_ticks"] = self.publisher.pending
        out["spool.bytes"] = self.publisher.spool.bytes
        out["spool.segments"] = self.publisher.spool.segments
        if self.imap is not None:
            out["instruments.known"] = len(self.imap)
            out["instruments.loads"] = self.imap.loads
        return out

    async def report_every(self, interval_s: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(interval_s)
                log.info("ingest_stats", **self.snapshot())


def ingest_metrics(stats: IngestStats) -> Iterable[Metric]:
    feed, publisher, source = stats.feed, stats.publisher, stats.builder.source
    connections = feed.connections
    yield labelled(
        CounterMetricFamily("tickpipe_ticks_received", "Ticks decoded from the feed.", labels=["source", "connection"]),
        (((source, c.name), c.ticks) for c in connections),
    )
    yield counter("tickpipe_ticks_published", "Ticks RabbitMQ confirmed.", publisher.counters["published_ticks"])
    yield labelled(
        CounterMetricFamily("tickpipe_bad_packets", "Malformed packets, counted and skipped.", labels=["kind"]),
        (
            ((k.removeprefix("bad_packets."),), v)
            for counters in (feed.decoder.counters, stats.builder.counters)
            for k, v in counters.items()
            if k.startswith("bad_packets.")
        ),
    )
    yield labelled(
        CounterMetricFamily("tickpipe_reconnects", "Feed reconnections by reason.", labels=["connection", "reason"]),
        (((c.name, reason), n) for c in connections for reason, n in c.reconnects.items()),
    )
    yield labelled(
        GaugeMetricFamily("tickpipe_feed_connected", "1 while the feed connection is open.", labels=["connection"]),
        (((c.name,), 1.0 if c.connected else 0.0) for c in connections),
    )
    yield gauge(
        "tickpipe_amqp_connected", "1 while the publisher is connected to RabbitMQ.", float(publisher.connected)
    )
    yield gauge("tickpipe_spool_bytes", "Bytes in the durable spool.", publisher.spool.bytes)
    yield gauge("tickpipe_spool_ticks", "Ticks spooled and not yet confirmed by RabbitMQ.", publisher.pending)
    yield counter(
        "tickpipe_spool_lost_ticks", "Ticks lost because the spool was full.", publisher.counters["lost_spool_full"]
    )
    yield counter(
        "tickpipe_publish_unroutable",
        "Publishes RabbitMQ returned (nothing bound).",
        publisher.counters["publish_unroutable"],
    )
    yield from publisher.publish_seconds.collect()


def ingest_readiness(stats: IngestStats) -> tuple[bool, str]:
    """Ready: RabbitMQ connected, every feed connection open, and frames flowing while the market is open."""
    if not stats.publisher.connected:
        return False, "not connected to RabbitMQ (spooling)"
    down = [c.name for c in stats.feed.connections if not c.connected]
    if down:
        return False, f"feed connection(s) down: {', '.join(down)}"
    now = time.monotonic()
    for c in stats.feed.connections:
        silence = c.watchdog.silence_s
        if silence and c.watchdog.fires() and now - c.last_frame > silence:
            return False, f"{c.name}: no frame for {now - c.last_frame:.0f} s while the market is open"
    return True, "connected and flowing"
