"""The live fan-out: one RabbitMQ consumer per gateway process, every tick to the clients that want it.

The gateway binds its own exclusive, auto-deleted queue to the market exchange with the ticks
routing key, so it receives a copy of every batch ingestion publishes, straight away (before the
workers commit it: the lowest latency; a client that needs only stored ticks replays from the
database with `since`). Several gateway processes each get every tick. The queue is bounded
(newest kept) so a stalled gateway can never fill RabbitMQ's memory.

Each tick is encoded to JSON once and offered to each subscribed client's bounded queue; a client
whose queue is full is disconnected with close code 4001 ("too slow") and never slows the others.
A client gets `{"type": "tick", ...}` per tick, or `{"type": "ticks", "ticks": [...]}` when several
were waiting for it (in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from tickpipe_core import DecodeError, Tick, Topology, decode_batch, get_logger
from tickpipe_core.settings import redact_url
from tickpipe_core.topology import TICKS_ROUTING_KEY

log = get_logger("gateway.stream")

SLOW_CLIENT_CODE = 4001
_MAX_BATCH = 500  # ticks in one frame at most
_QUEUE_LIMIT = 50_000  # batches held for this gateway at most; the oldest go first

_json = msgspec.json.Encoder()


class TickMessage(msgspec.Struct, omit_defaults=False):
    """What a stream client receives for each tick (docs: README, "The live read side")."""

    instrument_id: int
    symbol: str | None
    time: datetime
    receive_time: datetime
    ltp: float
    volume: int | None
    oi: int | None
    change_pct: float | None
    bid: float | None
    bid_qty: int | None
    ask: float | None
    ask_qty: int | None
    tick_id: str
    type: str = "tick"
    replay: bool = False


def tick_message(t: Tick, symbol: str | None, replay: bool = False) -> bytes:
    """A tick as the JSON a stream client receives."""
    return _json.encode(
        TickMessage(
            instrument_id=t.instrument_id or 0,
            symbol=symbol,
            time=t.time,
            receive_time=t.receive_time,
            ltp=t.ltp,
            volume=t.volume,
            oi=t.oi,
            change_pct=t.change_pct,
            bid=t.bid_price[0] if t.bid_price else None,
            bid_qty=t.bid_qty[0] if t.bid_qty else None,
            ask=t.ask_price[0] if t.ask_price else None,
            ask_qty=t.ask_qty[0] if t.ask_qty else None,
            tick_id=str(t.tick_id),
            replay=replay,
        )
    )


@dataclass(eq=False)
class Client:
    """One stream connection: what it subscribed to and the bounded queue of messages it has yet to get."""

    send: Callable[[str], Coroutine[Any, Any, None]]
    close: Callable[[int, str], Coroutine[Any, Any, None]]
    limit: int
    instruments: set[int] = field(default_factory=set)
    queue: asyncio.Queue[tuple[uuid.UUID, bytes]] = field(init=False)
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)
    skip: set[uuid.UUID] = field(default_factory=set)
    """Tick ids a replay already sent: their live copies are not sent twice."""
    dropped: bool = False
    send_timeout_s: float = 10.0
    """A send that waits this long (the client stopped reading) makes the client slow: cut with 4001,
    long before the keepalive's ping timeout would drop it without a code (1006)."""
    on_slow: Callable[[Client], None] | None = None

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.limit)

    async def pump(self) -> None:
        """Send queued messages in order until cancelled: one tick as itself, several waiting as one batch.

        Batching only what is already waiting costs nothing at a trickle and, under load, sends one
        frame where there would be many (the client's work and ours per tick drop with the load).
        """
        while True:
            batch = [await self.queue.get()]
            while len(batch) < _MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            async with self.sending:
                bodies = [body for tick_id, body in batch if tick_id not in self.skip]
                if not bodies:
                    continue
                text = bodies[0] if len(bodies) == 1 else b'{"type":"ticks","ticks":[' + b",".join(bodies) + b"]}"
                try:
                    async with asyncio.timeout(self.send_timeout_s):  # no task per send, unlike wait_for
                        await self.send(text.decode())
                except TimeoutError:
                    if self.on_slow is not None:
                        self.on_slow(self)
                    return


class Hub:
    """The gateway's RabbitMQ consumer and its subscribers."""

    def __init__(self, amqp_url: str, topology: Topology, symbol_of: Callable[[int], str | None]) -> None:
        self._url = amqp_url
        self._topology = topology
        self._symbol_of = symbol_of
        self._subscribers: dict[int, set[Client]] = {}
        self._connection: AbstractRobustConnection | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {"ticks_in": 0, "messages_out": 0, "slow_clients": 0, "bad_batches": 0}
        self.clients: set[Client] = set()

    @property
    def connected(self) -> bool:
        # Cleared when the connection drops, set once aio-pika has reconnected (is_closed stays False meanwhile).
        return self._connection is not None and self._connection.connected.is_set()

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel()
        exchange, _ = await self._topology.declare(channel)
        queue = await channel.declare_queue(
            f"{self._topology.prefix}.gateway.{uuid.uuid4().hex[:12]}",
            exclusive=True,
            auto_delete=True,
            arguments={"x-max-length": _QUEUE_LIMIT, "x-overflow": "drop-head"},
        )
        await queue.bind(exchange, routing_key=TICKS_ROUTING_KEY)
        await queue.consume(self._on_batch, no_ack=True)
        log.info("gateway_consuming", queue=queue.name, amqp=redact_url(self._url))

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def add(self, client: Client) -> None:
        client.on_slow = self._drop
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        for iid in client.instruments:
            subs = self._subscribers.get(iid)
            if subs is not None:
                subs.discard(client)
                if not subs:
                    del self._subscribers[iid]

    def subscribe(self, client: Client, ids: set[int]) -> None:
        client.instruments |= ids
        for iid in ids:
            self._subscribers.setdefault(iid, set()).add(client)

    def unsubscribe(self, client: Client, ids: set[int]) -> None:
        client.instruments -= ids
        for iid in ids:
            subs = self._subscribers.get(iid)
            if subs is not None:
                subs.discard(client)

    async def _on_batch(self, message: AbstractIncomingMessage) -> None:
        try:
            ticks = decode_batch(message.body)
        except DecodeError as e:
            self.counters["bad_batches"] += 1
            log.warning("gateway_bad_batch", error=str(e))
            return
        self.deliver(ticks)

    def deliver(self, ticks: list[Tick]) -> None:
        """Offer each tick to its subscribers; a client with a full queue is dropped as too slow."""
        self.counters["ticks_in"] += len(ticks)
        for t in ticks:
            subs = self._subscribers.get(t.instrument_id or 0)
            if not subs:
                continue
            body = tick_message(t, self._symbol_of(t.instrument_id or 0))
            for client in tuple(subs):
                try:
                    client.queue.put_nowait((t.tick_id, body))
                    self.counters["messages_out"] += 1
                except asyncio.QueueFull:
                    self._drop(client)

    def _drop(self, client: Client) -> None:
        if client.dropped:
            return
        client.dropped = True
        self.counters["slow_clients"] += 1
        self.remove(client)
        log.warning("stream_client_too_slow", waiting=client.queue.qsize())
        reason = f"too slow: {client.queue.qsize()} messages waiting"
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(client.close(SLOW_CLIENT_CODE, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "clients": len(self.clients), **self.counters}


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
