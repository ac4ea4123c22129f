"""A batch-insert worker: RabbitMQ messages in, COPY into the hypertable, ack after commit.

Group commit: a batch takes every message already waiting (up to `batch_rows` ticks) and commits at
once, so a trickle commits within milliseconds and a flood commits in large batches (what arrives
during a commit is waiting for the next). After a batch a quarter full or more (load), the next one
also lingers up to 50 ms to fill, so that throughput holds. `batch_timeout_s` > 0 sets a fixed linger.
A batch's messages are acked with one multiple-ack only after the commit, so a crash at any point
means redelivery, which the writer turns into no duplicate rows.
A message that cannot be decoded goes to the dead-letter exchange with the reason in a header
and the rest of its batch still lands; so does one the queue has delivered WORKER_MAX_DELIVERIES
times already (a message that kills or wedges every worker it reaches). A database error keeps
the batch, backs off and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time
from collections import Counter

import aio_pika
import aiormq
import psycopg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from prometheus_client import Histogram

from tickpipe_core import (
    CONTENT_TYPE,
    SCHEMA_HEADER,
    SCHEMA_VERSION,
    AmqpAuthError,
    Backoff,
    DecodeError,
    StorageError,
    Tick,
    Topology,
    decode_batch,
    encode_batch,
    get_logger,
    is_retryable,
)
from tickpipe_core.rows import COLUMNS, TYPES
from tickpipe_core.settings import WorkerSettings, redact_url
from tickpipe_core.topology import DEAD_REASON_HEADER
from tickpipe_workers.checks import unstorable
from tickpipe_workers.latency import SAMPLE_EVERY, LatencyHistogram
from tickpipe_workers.writer import TickWriter

SUMMARY_INTERVAL_S = 10.0
_SUBSCRIBE_ATTEMPTS = 6
_SUBSCRIBE_BACKOFF = Backoff(base=0.2, cap=5.0)
_COMMIT_BACKOFF = Backoff(base=0.25, cap=15.0)
_LOADED_LINGER_S = 0.05
_CLEANUP_S = 2.0


class Worker:
    """One consumer with its own channel and database connection."""

    def __init__(
        self,
        worker_id: int,
        db_url: str,
        amqp_url: str,
        topology: Topology,
        settings: WorkerSettings,
        commit_seconds: Histogram | None = None,
    ) -> None:
        self.worker_id = worker_id
        self._amqp_url = amqp_url
        self._topology = topology
        self._settings = settings
        self._writer = TickWriter(db_url)
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._dead: AbstractExchange | None = None
        self.counters: Counter[str] = Counter()
        self.latency = LatencyHistogram()
        """Receive-to-commit since the worker started, up to the last summary (the current interval is
        folded in at each summary and at the stop)."""
        self._latency_interval = LatencyHistogram()
        self._under_load = False
        self.commit_seconds = commit_seconds or Histogram(
            "tickpipe_commit_seconds", "Batch commit time.", registry=None
        )
        self.newest_exchange_ts = 0.0  # epoch seconds of the newest tick this worker stored: the lag's reference
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.database_ok = True  # the last write reached the database
        self.log = get_logger("worker", worker=worker_id, pid=os.getpid())

    @property
    def amqp_connected(self) -> bool:
        """Connected to RabbitMQ now (a robust connection clears `connected` while it reconnects)."""
        return self._connection is not None and self._connection.connected.is_set()

    @property
    def prefetch(self) -> int:
        # Messages carry up to a few hundred ticks; keep enough in flight to fill a batch twice.
        return self._settings.prefetch or max(16, 2 * self._settings.batch_rows // 100)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then finish and ack the current batch and return."""
        connection, channel, queue, tag = await self._subscribe()
        self._connection = connection
        try:
            self.log.info("worker_started", queue=queue.name, prefetch=self.prefetch, amqp=redact_url(self._amqp_url))
            summary = asyncio.create_task(self._summarize())
            try:
                while not stop.is_set():
                    batch = await self._collect(stop)
                    if batch:
                        await self._commit(batch, stop)
            finally:
                summary.cancel()
                # Each step of the way out is bounded: the broker or the database may be gone.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CLEANUP_S):
                        await queue.cancel(tag)
                        await self._drain_unstarted(channel)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLEANUP_S):
                    await self._writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLEANUP_S):
                    await connection.close()
            self.latency.add(self._latency_interval)
            self._latency_interval = LatencyHistogram()
            self.log.info(
                "worker_stopped",
                duplicate_batches=self._writer.duplicate_batches,
                latency_histogram=self.latency.as_dict(),
                **self.latency.summary(),
                **dict(self.counters),
            )

    async def _subscribe(
        self,
    ) -> tuple[aio_pika.abc.AbstractRobustConnection, AbstractChannel, aio_pika.abc.AbstractQueue, str]:
        """Connect, declare the topology and start consuming, retrying on a fresh connection.

        A consumer that races the declaration of a new quorum queue can be refused while the
        queue's replica is still starting (RabbitMQ closes the connection with INTERNAL_ERROR,
        `noproc`); a second try a moment later succeeds.
        """
        for attempt in range(_SUBSCRIBE_ATTEMPTS):
            try:
                connection = await aio_pika.connect_robust(self._amqp_url)
            except aiormq.exceptions.ProbableAuthenticationError as e:
                raise AmqpAuthError(
                    f"RabbitMQ refused the login of {redact_url(self._amqp_url)}: check its user and AMQP_PASSWORD_FILE"
                ) from e
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self.prefetch)
                _, queue = await self._topology.declare(channel)
                self._dead = await channel.get_exchange(self._topology.dead_exchange, ensure=False)
                return connection, channel, queue, await queue.consume(self._on_message)
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as e:
                with contextlib.suppress(Exception):
                    await connection.close()
                if attempt == _SUBSCRIBE_ATTEMPTS - 1:
                    raise
                self.log.warning("worker_subscribe_failed", attempt=attempt + 1, error=f"{type(e).__name__}: {e}")
                await asyncio.sleep(_SUBSCRIBE_BACKOFF.delay(attempt))
        raise AssertionError("unreachable")

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def _collect(self, stop: asyncio.Event) -> list[AbstractIncomingMessage]:
        """Wait for a first message, then take what is waiting until the batch is full (or old enough)."""
        stop_wait = asyncio.ensure_future(stop.wait())
        get = asyncio.ensure_future(self._inbox.get())
        try:
            await asyncio.wait({stop_wait, get}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if not get.done():
            get.cancel()
            return []
        batch = [get.result()]
        rows = _tick_count(batch[0])
        # Under load (the last batch came close to full), a moment's wait fills the batch: fewer, larger
        # commits keep up where many small ones would fall behind and queue for seconds.
        linger = self._settings.batch_timeout_s or (_LOADED_LINGER_S if self._under_load else 0.0)
        deadline = time.monotonic() + linger
        while rows < self._settings.batch_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and linger:
                break
            try:
                message = self._inbox.get_nowait()
            except asyncio.QueueEmpty:
                if not self._settings.batch_timeout_s and not self._under_load:
                    break  # nothing more is waiting: commit now
                try:
                    message = await asyncio.wait_for(self._inbox.get(), remaining)
                except TimeoutError:
                    break
            batch.append(message)
            rows += _tick_count(message)
        self._under_load = rows >= self._settings.batch_rows // 4
        return batch

    async def _commit(self, batch: list[AbstractIncomingMessage], stop: asyncio.Event) -> None:
        ticks: list[Tick] = []
        for message in batch:
            deliveries = _deliveries(message)
            if deliveries >= self._settings.max_deliveries:
                # Redelivered this often, it is what keeps killing or wedging workers: set it aside.
                await self._dead_letter(
                    message, f"delivered {deliveries} times without being stored (WORKER_MAX_DELIVERIES)"
                )
                continue
            try:
                ticks.extend(decode_batch(message.body))
            except DecodeError as e:
                await self._dead_letter(message, str(e))
        attempt = 0
        started = time.perf_counter()
        while True:
            try:
                inserted = await self._writer.write(ticks)
                self.database_ok = True
                break
            except _UNENCODABLE as e:
                # A value the COPY encoder cannot write: isolate the ticks that hold one, keep the rest.
                ticks = await self._isolate(ticks, batch[0], f"{type(e).__name__}: {e}")
                continue
            except StorageError as e:
                if _is_data_error(e):
                    ticks = await self._isolate(ticks, batch[0], str(e))
                    continue
                self.counters["write_failures"] += 1
                self.database_ok = False
                if stop.is_set():
                    # Shutting down during an outage: leave the batch unacked for redelivery.
                    self.log.warning("batch_left_for_redelivery", error=str(e), messages=len(batch))
                    return
                if not is_retryable(e):
                    self.log.error("batch_failed", error=str(e), rows=len(ticks))
                # Even a non-retryable error may be a schema fix away; keep the batch (unacked) and retry.
                delay = _COMMIT_BACKOFF.delay(attempt)
                attempt += 1
                self.log.warning("batch_retry", error=str(e), attempt=attempt, delay_s=delay, rows=len(ticks))
                with contextlib.suppress(TimeoutError):  # a SIGTERM ends the wait
                    await asyncio.wait_for(stop.wait(), delay)
        latency = time.perf_counter() - started
        self.commit_seconds.observe(latency)
        self._latency_interval.record_batch(t.receive_time for t in ticks[::SAMPLE_EVERY])
        if ticks:
            self.newest_exchange_ts = max(self.newest_exchange_ts, max(t.time for t in ticks).timestamp())
        await self._ack(batch)
        self.counters["batches"] += 1
        self.counters["messages"] += len(batch)
        self.counters["rows"] += len(ticks)
        self.counters["rows_inserted"] += inserted
        self.counters["commit_ms_total"] += int(latency * 1000)
        self.counters["max_batch_rows"] = max(self.counters["max_batch_rows"], len(ticks))

    async def _isolate(self, ticks: list[Tick], template: AbstractIncomingMessage, error: str) -> list[Tick]:
        """Dead-letter the ticks that cannot be stored as they are (with the reason); return the rest.

        Ticks whose values do not fit their columns are found by inspection; if PostgreSQL still
        refuses the rest, they are halved until the refused ones stand alone.
        """
        bad = [(t, reason) for t in ticks if (reason := unstorable(t, COLUMNS, TYPES))]
        if not bad:
            bad = await self._bisect(ticks)
        if not bad:  # nothing isolated: the failure was not in the data after all; retry it as it is
            raise StorageError(f"batch failed and no tick explains it: {error}")
        rejected = {id(t) for t, _ in bad}
        for tick, reason in bad:
            await self._dead_letter_ticks([tick], template, reason)
        self.counters["ticks_dead_lettered"] += len(bad)
        return [t for t in ticks if id(t) not in rejected]

    async def _bisect(self, ticks: list[Tick]) -> list[tuple[Tick, str]]:
        """Write halves in their own transactions until the ticks PostgreSQL refuses stand alone."""
        try:
            await self._writer.write(ticks)
            return []
        except _WRITE_FAILURES as e:
            if isinstance(e, StorageError) and not _is_data_error(e):
                raise
            if len(ticks) == 1:
                return [(ticks[0], str(e))]
            half = len(ticks) // 2
            return await self._bisect(ticks[:half]) + await self._bisect(ticks[half:])

    async def _dead_letter_ticks(self, ticks: list[Tick], template: AbstractIncomingMessage, reason: str) -> None:
        assert self._dead is not None
        await self._dead.publish(
            aio_pika.Message(
                encode_batch(ticks),
                headers={SCHEMA_HEADER: SCHEMA_VERSION, DEAD_REASON_HEADER: reason[:1000]},
                content_type=CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=template.routing_key or "",
        )
        self.log.error(
            "tick_dead_lettered", reason=reason, security_id=ticks[0].security_id, tick_id=str(ticks[0].tick_id)
        )

    async def _ack(self, batch: list[AbstractIncomingMessage]) -> None:
        """One multiple-ack for the whole batch, only ever after its commit."""
        try:
            await batch[-1].ack(multiple=True)
        except Exception as e:
            # The channel died after the commit: the broker redelivers and the rows dedupe.
            self.counters["ack_failures"] += 1
            self.log.warning("ack_failed", error=f"{type(e).__name__}: {e}", messages=len(batch))

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Publish a copy to the dead-letter exchange with the reason; the batch ack covers the original."""
        assert self._dead is not None
        headers = dict(message.headers or {})
        headers[DEAD_REASON_HEADER] = reason[:1000]
        await self._dead.publish(
            aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=message.routing_key or "",
        )
        self.counters["dead_lettered"] += 1
        self.log.error("message_dead_lettered", reason=reason, bytes=len(message.body))

    async def _drain_unstarted(self, channel: AbstractChannel) -> None:
        """Hand back prefetched messages no batch took, so another worker gets them at once."""
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _summarize(self) -> None:
        last, last_t = 0, time.monotonic()
        while True:
            await asyncio.sleep(SUMMARY_INTERVAL_S)
            interval, self._latency_interval = self._latency_interval, LatencyHistogram()  # per summary interval
            self.latency.add(interval)
            now = time.monotonic()
            rows = self.counters["rows"]
            batches = self.counters["batches"] or 1
            self.log.info(
                "worker_summary",
                rows_per_s=round((rows - last) / (now - last_t), 1),
                avg_batch_rows=rows // batches,
                avg_commit_ms=self.counters["commit_ms_total"] // batches,
                duplicate_batches=self._writer.duplicate_batches,
                **interval.summary(),
                **dict(self.counters),
            )
            last, last_t = rows, now


# What the binary COPY encoder raises for a value its column type cannot hold (not a psycopg error).
_UNENCODABLE: tuple[type[Exception], ...] = (OverflowError, struct.error, ValueError, TypeError)
_WRITE_FAILURES: tuple[type[Exception], ...] = (StorageError, *_UNENCODABLE)


def _is_data_error(e: StorageError) -> bool:
    """PostgreSQL refused the data itself (a NUL in text, a value out of range), not the connection."""
    return isinstance(e.__cause__, psycopg.DataError | psycopg.IntegrityError)


def _deliveries(message: AbstractIncomingMessage) -> int:
    """How often the quorum queue delivered this message before (its x-delivery-count header)."""
    count = (message.headers or {}).get("x-delivery-count")
    return count if isinstance(count, int) else 0


def _tick_count(message: AbstractIncomingMessage) -> int:
    count = (message.headers or {}).get("x-tick-count")
    return count if isinstance(count, int) else 1
