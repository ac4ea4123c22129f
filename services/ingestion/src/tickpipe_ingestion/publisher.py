"""Publishes ticks to RabbitMQ in batches, with publisher confirms and persistent messages.

Ticks are buffered in memory and a single flusher turns whatever has accumulated into messages of
up to `max_ticks_per_message` ticks, publishing up to `max_in_flight` at once and waiting for the
broker's confirms. Under load messages grow towards the maximum; at a trickle each waits at most
`linger_ms`. A failed publish puts its ticks back at the front of the buffer and is retried after
the connection recovers (connect_robust), so a RabbitMQ outage costs memory, not ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from tickpipe_core import (
    CONTENT_TYPE,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    Backoff,
    Tick,
    Topology,
    encode_batch,
    get_logger,
)
from tickpipe_core.settings import IngestSettings, redact_url
from tickpipe_core.topology import TICKS_ROUTING_KEY

log = get_logger("publisher")

_BACKOFF = Backoff(base=0.25, cap=5.0)
_OVERFLOW_LOG_INTERVAL_S = 10.0  # while RabbitMQ is away: retry soon, but never hammer it


class TickPublisher:
    """Buffer ticks with `submit` and let the flusher publish them; `close` drains the buffer."""

    def __init__(self, amqp_url: str, topology: Topology, settings: IngestSettings, max_in_flight: int = 4):
        self._url = amqp_url
        self._topology = topology
        self._settings = settings
        self._max_in_flight = max_in_flight
        self._buffer: deque[Tick] = deque()
        self._events: deque[tuple[str, bytes]] = deque()  # (routing key, JSON body), e.g. order updates
        self._wakeup = asyncio.Event()
        self._closing = False
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.counters: Counter[str] = Counter()
        self._overflow_logged = -_OVERFLOW_LOG_INTERVAL_S

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        # on_return_raises: a mandatory message nothing is bound to receive (the ticks queue deleted or
        # unbound) is returned by the broker; without it the publish would "succeed" and the ticks vanish.
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange, _ = await self._topology.declare(channel)
        self._flusher = asyncio.create_task(self._flush_loop(), name="tick-publisher")
        log.info("publisher_started", url=redact_url(self._url), exchange=self._topology.exchange)

    def submit(self, ticks: list[Tick]) -> None:
        """Queue ticks for publishing; never blocks the feed."""
        self._buffer.extend(ticks)
        overflow = len(self._buffer) - self._settings.buffer_ticks
        if overflow > 0:
            # Dropping (the oldest) is the last resort when RabbitMQ stays away longer than memory
            # allows; it is counted and logged loudly so the gap can be backfilled.
            for _ in range(overflow):
                self._buffer.popleft()
            self.counters["dropped_overflow"] += overflow
            now = time.monotonic()
            if now - self._overflow_logged >= _OVERFLOW_LOG_INTERVAL_S:  # one line per interval, not per frame
                self._overflow_logged = now
                log.error(
                    "publish_buffer_overflow",
                    dropped_total=self.counters["dropped_overflow"],
                    buffered=len(self._buffer),
                    limit=self._settings.buffer_ticks,
                )
        self.counters["submitted"] += len(ticks)
        self._wakeup.set()

    def submit_event(self, routing_key: str, body: bytes) -> None:
        """Queue one JSON event (an order update) for its own routing key; published before ticks."""
        self._events.append((routing_key, body))
        self.counters["events_submitted"] += 1
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    async def _flush_loop(self) -> None:
        size = self._settings.max_ticks_per_message
        linger = self._settings.linger_ms / 1000
        failures = 0  # consecutive failed rounds, for the backoff
        while True:
            if self._events and not await self._publish_events():
                await asyncio.sleep(_BACKOFF.delay(failures))
                failures += 1
                continue
            if not self._buffer:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._buffer) < size and linger and not self._closing:
                await asyncio.sleep(linger)
            batches: list[list[Tick]] = []
            while self._buffer and len(batches) < self._max_in_flight:
                n = min(size, len(self._buffer))
                batches.append([self._buffer.popleft() for _ in range(n)])
            results = await asyncio.gather(*(self._publish(b) for b in batches), return_exceptions=True)
            failed = [b for b, r in zip(batches, results, strict=True) if isinstance(r, BaseException)]
            for batch in reversed(failed):
                self._buffer.extendleft(reversed(batch))
            if failed:
                error = next(r for r in results if isinstance(r, BaseException))
                self.counters["publish_failures"] += len(failed)
                if isinstance(error, aio_pika.exceptions.DeliveryError):
                    # Nothing receives ticks: an operator must restore the queue; keep them and alarm.
                    self.counters["publish_unroutable"] += len(failed)
                    log.error("publish_unroutable", exchange=self._topology.exchange, buffered=len(self._buffer))
                else:
                    log.warning("publish_failed", error=f"{type(error).__name__}: {error}", buffered=len(self._buffer))
                await asyncio.sleep(_BACKOFF.delay(failures))
                failures += 1
            else:
                failures = 0

    async def _publish(self, ticks: list[Tick]) -> None:
        assert self._exchange is not None
        message = aio_pika.Message(
            encode_batch(ticks),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={SCHEMA_HEADER: SCHEMA_VERSION, "x-tick-count": len(ticks)},
        )
        # With publisher confirms on, publish() returns once the broker has confirmed the message.
        await self._exchange.publish(message, routing_key=TICKS_ROUTING_KEY, mandatory=True, timeout=30)
        self.counters["published_ticks"] += len(ticks)
        self.counters["published_messages"] += 1

    async def _publish_events(self) -> bool:
        """Publish queued events in order; False (and they stay queued) when the broker refuses."""
        assert self._exchange is not None
        while self._events:
            routing_key, body = self._events[0]
            message = aio_pika.Message(
                body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            try:
                await self._exchange.publish(message, routing_key=routing_key, mandatory=True, timeout=30)
            except Exception as e:
                self.counters["publish_failures"] += 1
                log.warning("publish_event_failed", routing_key=routing_key, error=f"{type(e).__name__}: {e}")
                return False
            self._events.popleft()
            self.counters["published_events"] += 1
        return True

    async def close(self, timeout: float = 30.0) -> None:
        """Publish what is buffered (up to `timeout`), then close the connection."""
        self._closing = True
        self._wakeup.set()
        if self._flusher is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)
            except TimeoutError:
                log.error("publisher_close_timeout", unpublished=len(self._buffer))
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher
        if self._connection is not None:
            await self._connection.close()
        log.info("publisher_closed", **dict(self.counters))
