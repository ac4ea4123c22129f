"""Publishes the spool to RabbitMQ: persistent messages, publisher confirms, in order.

`submit` encodes a frame's ticks once and appends them to the durable spool (spool.py) before
anything else: from then on they are on disk until the broker confirms them. The flusher reads
the spool in order, joins records into messages of up to `max_ticks_per_message` ticks, publishes up
to `max_in_flight` at once and commits the confirmed prefix, which frees the spool's segments. At a
trickle a message goes at once; under load a partial one waits a moment to fill (`Linger`). A
failed or returned (unroutable) publish rewinds the spool to the first unconfirmed record and is
retried with backoff, so an outage costs disk, never ticks. A record published before a failure and
again after it carries the same tick ids: the workers store it once.

Events (Kite's order updates) are rarer than ticks and matter more: each goes to a spool of its own
(`events/` in the spool directory, bounded by INGEST_EVENTS_SPOOL_MAX_BYTES) before anything else,
and is published, before any tick, to its own routing key; a restart publishes what was left.

RabbitMQ need not be up: the connector keeps trying in the background while ticks spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from prometheus_client import Histogram

from tickpipe_core import (
    CONTENT_TYPE,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    Backoff,
    Tick,
    Topology,
    encode_ticks,
    envelope,
    get_logger,
)
from tickpipe_core.settings import IngestSettings, redact_url
from tickpipe_core.topology import TICKS_ROUTING_KEY
from tickpipe_ingestion.linger import Linger
from tickpipe_ingestion.spool import Record, Spool

log = get_logger("publisher")

_BACKOFF = Backoff(base=0.25, cap=5.0)
_LOSS_LOG_INTERVAL_S = 10.0  # one line per interval while the spool is full, never one per frame
_CLOSE_TIMEOUT_S = 2.0  # SIGTERM: publish what we can in this long; the rest waits in the spool


def spool_for(settings: IngestSettings) -> Spool:
    """The spool INGEST_SPOOL_DIR, INGEST_SPOOL_MAX_BYTES and INGEST_SPOOL_FSYNC describe."""
    return Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes, fsync=settings.spool_fsync)


def events_spool_for(settings: IngestSettings) -> Spool:
    """The events' own spool: `events/` in INGEST_SPOOL_DIR, at most INGEST_EVENTS_SPOOL_MAX_BYTES."""
    return Spool(
        settings.spool_dir / EVENTS_DIR,
        max_bytes=settings.events_spool_max_bytes,
        fsync=settings.spool_fsync,
        segment_bytes=1 << 20,
    )


EVENTS_DIR = "events"


def _event_record(routing_key: str, body: bytes) -> bytes:
    """An event as a spool record: its routing key, a newline, its body."""
    return routing_key.encode() + b"\n" + body


def _event_of(payload: bytes) -> tuple[str, bytes]:
    routing_key, _, body = payload.partition(b"\n")
    return routing_key.decode(), body


class TickPublisher:
    """Spool ticks with `submit`; the flusher publishes them; `close` stops, keeping the rest spooled."""

    def __init__(
        self,
        amqp_url: str,
        topology: Topology,
        settings: IngestSettings,
        spool: Spool | None = None,
        max_in_flight: int = 16,
    ):
        self._url = amqp_url
        self._topology = topology
        self._settings = settings
        self.spool = spool if spool is not None else spool_for(settings)
        self._max_in_flight = max_in_flight
        self.events = events_spool_for(settings)  # (routing key, JSON body) records, e.g. order updates
        self._wakeup = asyncio.Event()
        self._connected = asyncio.Event()
        self._closing = False
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._events_exchange: AbstractExchange | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.counters: Counter[str] = Counter()
        self.lost_by_instrument: Counter[str] = Counter()  # "SEGMENT:ID" -> ticks the spool could not keep
        self.publish_seconds = Histogram(
            "tickpipe_publish_seconds", "From publish to RabbitMQ's confirm, per message.", registry=None
        )
        self._loss_logged = -_LOSS_LOG_INTERVAL_S
        self._unread_since: float | None = None  # when the oldest tick not yet read for publishing arrived
        self._linger = Linger(settings.linger_ms / 1000)

    async def start(self) -> None:
        """Open the spool (an earlier run's ticks are published first) and start; never waits for RabbitMQ."""
        recovered_events = self.events.open()
        self.counters["events_recovered"] += recovered_events.ticks
        self.counters["events_torn_records"] += recovered_events.torn
        recovered = self.spool.open()
        self.counters["spool_recovered_ticks"] += recovered.ticks
        self.counters["spool_torn_records"] += recovered.torn
        self.counters["spool_skipped_bytes"] += recovered.skipped_bytes
        self.counters["spool_lost_ticks_estimate"] += recovered.lost_ticks
        self.counters["spool_quarantined_segments"] += recovered.quarantined
        self._tasks = [
            asyncio.create_task(self._connect(), name="publisher-connect"),
            asyncio.create_task(self._flush_loop(), name="publisher-flush"),
        ]
        if self.spool.fsync_policy == "interval":
            self._tasks.append(asyncio.create_task(self._sync_every(self._settings.spool_fsync_interval_ms / 1000)))
        self._wakeup.set()

    def submit(self, ticks: list[Tick]) -> None:
        """Spool one frame's ticks for publishing; never blocks the feed on RabbitMQ."""
        size = self._settings.max_ticks_per_message
        if len(ticks) <= size:  # a frame: one record (a longer list is cut so a record fits a message)
            self._spool(ticks)
            return
        for i in range(0, len(ticks), size):
            self._spool(ticks[i : i + size])

    def _spool(self, ticks: list[Tick]) -> None:
        if not ticks:
            return
        if self.spool.append(encode_ticks(ticks), len(ticks)):
            self.counters["submitted"] += len(ticks)
            if self._unread_since is None:
                self._unread_since = time.monotonic()
            self._wakeup.set()
        else:
            self._lose(ticks)

    def _lose(self, ticks: list[Tick]) -> None:
        """The spool is full (or its disk is): count what is lost, per instrument, so the gap can be repaired."""
        self.counters["lost_spool_full"] += len(ticks)
        self.lost_by_instrument.update(f"{t.segment}:{t.security_id}" for t in ticks)
        now = time.monotonic()
        if now - self._loss_logged >= _LOSS_LOG_INTERVAL_S:
            self._loss_logged = now
            log.error(
                "spool_full_ticks_lost",
                lost_total=self.counters["lost_spool_full"],
                spool_bytes=self.spool.bytes,
                limit=self.spool.max_bytes,
                directory=str(self.spool.directory),
                most_lost=dict(self.lost_by_instrument.most_common(10)),
            )

    def submit_event(self, routing_key: str, body: bytes) -> None:
        """Spool one JSON event (an order update) for its own routing key; published before ticks.

        When the events' spool is full (RabbitMQ away for long), the event is lost: counted and logged.
        """
        if not self.events.append(_event_record(routing_key, body), 1):
            self.counters["events_lost_spool_full"] += 1
            log.error(
                "events_spool_full_event_lost",
                lost_total=self.counters["events_lost_spool_full"],
                spool_bytes=self.events.bytes,
                limit=self.events.max_bytes,
                routing_key=routing_key,
            )
            return
        self.counters["events_submitted"] += 1
        self._wakeup.set()

    @property
    def pending_events(self) -> int:
        """Events spooled and not yet confirmed by RabbitMQ."""
        return self.events.pending_ticks

    @property
    def pending(self) -> int:
        """Ticks spooled and not yet confirmed by RabbitMQ."""
        return self.spool.pending_ticks

    @property
    def connected(self) -> bool:
        # `connected` is cleared the moment the connection drops and set again once aio-pika has
        # reconnected (a robust connection's is_closed stays False while it retries).
        return self._connection is not None and self._connection.connected.is_set()

    async def _connect(self) -> None:
        """Connect and declare the topology, retrying with backoff while RabbitMQ is unreachable.

        Once connected, aio-pika's robust connection reconnects by itself.
        """
        failures = 0
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(self._url, timeout=10)
                # on_return_raises: a mandatory message nothing is bound to receive (the ticks queue deleted
                # or unbound) is returned by the broker; without it the publish would "succeed" and vanish.
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._exchange, _ = await self._topology.declare(channel)
                self._events_exchange = await channel.get_exchange(self._topology.events_exchange, ensure=False)
            except Exception as e:  # any failure to reach or set up RabbitMQ: keep spooling and retry
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await connection.close()
                delay = _BACKOFF.delay(failures)
                failures += 1
                self.counters["connect_failures"] += 1
                log.warning(
                    "amqp_unreachable",
                    url=redact_url(self._url),
                    error=f"{type(e).__name__}: {e}",
                    retry_in_s=round(delay, 2),
                    spooled_ticks=self.spool.pending_ticks,
                )
                await asyncio.sleep(delay)
                continue
            self._connection = connection
            self._connected.set()
            log.info(
                "publisher_started",
                url=redact_url(self._url),
                exchange=self._topology.exchange,
                spooled_ticks=self.spool.pending_ticks,
            )
            return

    async def _sync_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.spool.sync_in_background()
            await self.events.sync_in_background()

    async def _flush_loop(self) -> None:
        await self._connected.wait()
        size = self._settings.max_ticks_per_message
        failures = 0  # consecutive failed rounds, for the backoff
        while True:
            if self.events.unread_ticks and not await self._publish_events():
                await asyncio.sleep(_BACKOFF.delay(failures))
                failures += 1
                continue
            if not self.spool.unread_ticks:
                if self._closing and not self.events.unread_ticks:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.spool.unread_ticks < size and not self._closing and self._unread_since is not None:
                wait = self._linger.wait(self._unread_since, time.monotonic())
                if wait:
                    await asyncio.sleep(wait)
            unread = self.spool.unread_ticks
            records = self.spool.read(size * self._max_in_flight)
            now = time.monotonic()
            self._linger.read(unread - self.spool.unread_ticks, now)
            if not self.spool.unread_ticks:
                self._unread_since = None  # the next tick spooled starts the clock (left over: earlier still)
            messages = _messages(records, size)
            results = await asyncio.gather(*(self._publish(m) for m in messages), return_exceptions=True)
            confirmed = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), len(results))
            if confirmed:
                self.spool.commit(messages[confirmed - 1][-1].end, _ticks(messages[:confirmed]))
            if confirmed == len(messages):
                failures = 0
                continue
            # Publish again from the first unconfirmed message on (a later one that was confirmed is
            # published twice; its tick ids make the workers store it once).
            self.spool.rewind(messages[confirmed][0].start, _ticks(messages[confirmed:]))
            error = results[confirmed]
            self.counters["publish_failures"] += 1
            if isinstance(error, aio_pika.exceptions.DeliveryError):
                # Nothing receives ticks: an operator must restore the queue; keep them and alarm.
                self.counters["publish_unroutable"] += 1
                log.error("publish_unroutable", exchange=self._topology.exchange, spooled=self.spool.pending_ticks)
            else:
                log.warning(
                    "publish_failed", error=f"{type(error).__name__}: {error}", spooled=self.spool.pending_ticks
                )
            await asyncio.sleep(_BACKOFF.delay(failures))
            failures += 1

    async def _publish(self, records: list[Record]) -> None:
        assert self._exchange is not None
        count = sum(r.ticks for r in records)
        message = aio_pika.Message(
            envelope([r.payload for r in records], count),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={SCHEMA_HEADER: SCHEMA_VERSION, "x-tick-count": count},
        )
        # With publisher confirms on, publish() returns once the broker has confirmed the message.
        with self.publish_seconds.time():
            await self._exchange.publish(message, routing_key=TICKS_ROUTING_KEY, mandatory=True, timeout=30)
        self.counters["published_ticks"] += count
        self.counters["published_messages"] += 1

    async def _publish_events(self) -> bool:
        """Publish spooled events in order, each confirmed before the next (so that a queue's length limit
        holds exactly), and commit each; False, the rest staying spooled, when the broker refuses."""
        assert self._events_exchange is not None
        while records := self.events.read(100):
            for n, record in enumerate(records):
                routing_key, body = _event_of(record.payload)
                message = aio_pika.Message(
                    body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                )
                try:
                    await self._events_exchange.publish(message, routing_key=routing_key, mandatory=True, timeout=30)
                except Exception as e:
                    self.events.rewind(record.start, len(records) - n)
                    self.counters["publish_failures"] += 1
                    log.warning("publish_event_failed", routing_key=routing_key, error=f"{type(e).__name__}: {e}")
                    return False
                self.events.commit(record.end, 1)
                self.counters["published_events"] += 1
        return True

    async def close(self, timeout: float = _CLOSE_TIMEOUT_S) -> None:
        """Publish what is spooled for up to `timeout`, then stop; the rest stays spooled for the next start."""
        self._closing = True
        self._wakeup.set()
        flusher = self._tasks[1] if len(self._tasks) > 1 else None
        if flusher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(flusher), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.spool.close()
        self.events.close()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 1.0)
        if self.spool.pending_ticks or self.events.pending_ticks:
            log.warning(
                "publisher_closed_with_spooled_ticks",
                spooled_ticks=self.spool.pending_ticks,
                directory=str(self.spool.directory),
                spooled_events=self.events.pending_ticks,
            )
        log.info("publisher_closed", **dict(self.counters))


def _messages(records: list[Record], size: int) -> list[list[Record]]:
    """Consecutive records joined into messages of at most `size` ticks (a bigger record goes alone)."""
    out: list[list[Record]] = []
    ticks = size
    for record in records:
        if ticks + record.ticks > size:
            out.append([])
            ticks = 0
        out[-1].append(record)
        ticks += record.ticks
    return out


def _ticks(messages: list[list[Record]]) -> int:
    return sum(r.ticks for m in messages for r in m)
