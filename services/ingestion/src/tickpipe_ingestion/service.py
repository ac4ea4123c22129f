"""The ingestion service: broker feed -> decode -> enrich -> RabbitMQ, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from tickpipe_core import ConfigError, Tick, Topology, get_logger
from tickpipe_core.settings import (
    AmqpSettings,
    DatabaseSettings,
    DhanSettings,
    IngestSettings,
    InstrumentSettings,
    SourceSettings,
)
from tickpipe_ingestion.capture import CaptureWriter
from tickpipe_ingestion.dhan.feed import DhanFeed, Instrument, Recorder
from tickpipe_ingestion.feed import Watchdog
from tickpipe_ingestion.instruments import InstrumentLookup, InstrumentMap
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
    subscribe: Sequence[Instrument] | None = None,
    instrument_ids: InstrumentLookup | None = None,
) -> DhanFeed:
    if source.data_source != "dhan":
        raise ConfigError(f"DATA_SOURCE: the {source.data_source!r} feed is not available in this build")
    client_id, token = dhan.credentials()
    instruments = dhan.instrument_list() if subscribe is None else list(subscribe)
    if not instruments:
        raise ConfigError("DHAN_INSTRUMENTS: no instruments to subscribe (or an empty watchlist)")
    return DhanFeed(
        base_url=dhan.feed_url,
        client_id=client_id,
        token=token,
        mode=dhan.feed_mode,
        instruments=instruments,
        sink=sink,
        watchdog=watchdog(ingest),
        recorder=recorder,
        instrument_ids=instrument_ids,
    )


async def run_ingest(
    *,
    source: SourceSettings,
    dhan: DhanSettings,
    amqp: AmqpSettings,
    ingest: IngestSettings,
    stop: asyncio.Event,
    record: Path | None = None,
    db: DatabaseSettings | None = None,
    instruments: InstrumentSettings | None = None,
    subscribe: Sequence[Instrument] | None = None,
) -> None:
    """Run the feed named by DATA_SOURCE until `stop` is set or the feed fails terminally.

    With `record`, every raw frame is also written to that capture file. With `db`, ticks carry
    our instrument id from a map of that database's instruments, refreshed every
    INSTRUMENTS_REFRESH_S and on SIGHUP. `subscribe` (a resolved watchlist) replaces DHAN_INSTRUMENTS.
    """
    settings = instruments or InstrumentSettings()
    imap = InstrumentMap(source.data_source, settings.unknown) if db else None
    publisher = TickPublisher(amqp.amqp_url, Topology(amqp.amqp_prefix), ingest)
    sink = publisher.submit if imap is None else lambda ticks: publisher.submit(imap.keep(ticks))
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(CaptureWriter(record, source.data_source)) if record else None
        feed = _feed(source, dhan, ingest, sink, writer.write if writer else None, subscribe, imap)
        if imap is not None and db is not None:
            await imap.reload(db.database_url)  # before the first tick; market data flows even if this fails
        await publisher.start()
        tasks = [asyncio.create_task(_report(feed, publisher, imap), name="ingest-stats")]
        if imap is not None and db is not None:
            reload = asyncio.Event()
            tasks.append(asyncio.create_task(imap.keep_fresh(db.database_url, settings.refresh_s, reload)))
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload.set)
                stack.callback(asyncio.get_running_loop().remove_signal_handler, signal.SIGHUP)
        log.info("ingest_started", source=source.data_source, connections=len(feed.connections), record=str(record))
        try:
            await _until_stopped(feed, stop)
        finally:
            for task in tasks:
                task.cancel()
            await publisher.close()
            log.info("ingest_stopped", **dict(feed.decoder.counters), **_map_counters(imap))


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


def _map_counters(imap: InstrumentMap | None) -> dict[str, int]:
    return {} if imap is None else {"instruments.known": len(imap), "instruments.unknown_ticks": imap.unknown_ticks}


async def _report(feed: DhanFeed, publisher: TickPublisher, imap: InstrumentMap | None) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            log.info(
                "ingest_stats",
                pending=publisher.pending,
                **dict(feed.decoder.counters),
                **{f"publisher.{k}": v for k, v in publisher.counters.items()},
                **_map_counters(imap),
            )
