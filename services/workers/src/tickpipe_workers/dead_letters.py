"""The dead-letter queue, operable: look at what was set aside and why, send it back, or drop it.

Reading never consumes: messages are fetched unacknowledged and handed back when the channel closes,
so `list` and `show` leave the queue as it was. `replay` publishes each message back to the ticks
routing key with publisher confirms and only then acks it, so a crash mid-replay duplicates at most
one message (which the workers store once) and loses none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from tickpipe_core import DecodeError, Tick, Topology, decode_batch, get_logger
from tickpipe_core.topology import DEAD_REASON_HEADER, TICKS_ROUTING_KEY

log = get_logger("dead_letters")

# Headers that belong to the message's life in the dead-letter queue, not to the message.
_DEAD_HEADERS = (DEAD_REASON_HEADER, "x-delivery-count", "x-death", "x-first-death-exchange")


@dataclass(frozen=True)
class DeadLetter:
    position: int
    reason: str
    size: int
    ticks: list[Tick] | None
    """The message's ticks, or None when it does not decode (then `reason` says why)."""
    headers: dict[str, Any]
    body: bytes

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"position": self.position, "reason": self.reason, "bytes": self.size}
        if self.ticks:
            out["ticks"] = len(self.ticks)
            out["instruments"] = sorted({f"{t.segment}:{t.security_id}" for t in self.ticks})[:5]
            out["first_time"] = min(t.time for t in self.ticks).isoformat()
        return out


def _letter(position: int, message: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(message.headers or {})
    reason = headers.get(DEAD_REASON_HEADER)
    try:
        ticks: list[Tick] | None = decode_batch(message.body)
    except DecodeError:
        ticks = None
    text = reason.decode() if isinstance(reason, bytes) else str(reason or "no reason recorded")
    return DeadLetter(position, text, len(message.body), ticks, headers, message.body)


async def peek(amqp_url: str, topology: Topology, limit: int) -> tuple[int, list[DeadLetter]]:
    """How many dead letters there are, and the first `limit` of them, leaving the queue as it was."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await topology.declare(channel)
        queue = await channel.declare_queue(topology.dead_queue, passive=True)
        total = queue.declaration_result.message_count or 0
        letters = []
        for position in range(1, min(limit, total) + 1):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letters.append(_letter(position, message))
        # Closing the channel hands every unacknowledged message back, in order.
    return total, letters


async def replay(amqp_url: str, topology: Topology, limit: int | None) -> int:
    """Send dead letters back to the ticks queue (first `limit`, or all); returns how many were sent."""
    connection = await aio_pika.connect(amqp_url)
    sent = 0
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange, _ = await topology.declare(channel)
        queue = await channel.declare_queue(topology.dead_queue, passive=True)
        while limit is None or sent < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = {k: v for k, v in (message.headers or {}).items() if k not in _DEAD_HEADERS}
            await exchange.publish(
                aio_pika.Message(
                    message.body,
                    headers=headers,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=TICKS_ROUTING_KEY,
                mandatory=True,
            )
            await message.ack()  # only once the ticks queue has it
            sent += 1
    log.info("dead_letters_replayed", messages=sent, queue=topology.ticks_queue)
    return sent


async def purge(amqp_url: str, topology: Topology) -> int:
    """Delete every dead letter; returns how many there were."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await topology.declare(channel)
        queue = await channel.declare_queue(topology.dead_queue, passive=True)
        result = await queue.purge()
    count = int(getattr(result, "message_count", 0) or 0)
    log.warning("dead_letters_purged", messages=count, queue=topology.dead_queue)
    return count
