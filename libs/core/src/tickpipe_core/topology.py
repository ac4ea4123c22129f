"""The RabbitMQ contract both services use: names, arguments and declaration, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from tickpipe_core.logging import get_logger

TICKS_ROUTING_KEY = "ticks"
ORDERS_ROUTING_KEY = "orders"
DEAD_REASON_HEADER = "x-tickpipe-error"

# Quorum queues: replicated Raft logs that survive a node loss, and no slower than classic queues for
# our batch messages (python -m tickpipe_bench.queues compares them), both far above what the database
# can absorb.
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}

# The side queues have a length limit, so that nobody reading them can fill the broker's disk (which
# would block every publisher, ticks included). Order updates past the limit are refused
# (reject-publish: ingestion keeps them and retries, loudly); dead letters drop their oldest (each
# was also logged with its reason by the worker that set it aside).

log = get_logger("topology")


@dataclass(frozen=True)
class Topology:
    """Exchange and queue names derived from one prefix (AMQP_PREFIX)."""

    prefix: str = "tickpipe"
    orders_max_length: int = 100_000
    dead_max_length: int = 100_000

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.market"

    @property
    def events_exchange(self) -> str:
        """Where order updates go: apart from the market exchange, so that a user who may read (bind
        to) the market's ticks, the read side, cannot bind a queue to the orders."""
        return f"{self.prefix}.events"

    @property
    def ticks_queue(self) -> str:
        return f"{self.prefix}.ticks"

    @property
    def orders_queue(self) -> str:
        return f"{self.prefix}.orders"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.ticks.dead"

    async def declare(self, channel: AbstractChannel) -> tuple[AbstractExchange, AbstractQueue]:
        """Declare everything (idempotent) and return the market exchange and the ticks queue.

        A least-privilege user may not declare it (declaring a queue with a dead-letter exchange needs
        the right to read the queue, which only the workers have): then the broker's definitions made
        it (deploy/rabbitmq/definitions.json), and it is used as it is.
        """
        try:
            return await self._declare(channel)
        except aiormq.exceptions.ChannelAccessRefused as e:
            await channel.reopen()
            log.info("topology_declared_by_the_broker", user_may_not_declare=str(e))
            return await channel.get_exchange(self.exchange), await channel.get_queue(self.ticks_queue)

    async def _declare(self, channel: AbstractChannel) -> tuple[AbstractExchange, AbstractQueue]:
        exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        dead = await channel.declare_exchange(self.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_limit = {"x-max-length": self.dead_max_length, "x-overflow": "drop-head"}
        dead_queue = await _declare_queue(channel, self.dead_queue, {**_QUORUM, **dead_limit})
        await dead_queue.bind(dead)
        queue = await channel.declare_queue(
            self.ticks_queue,
            durable=True,
            arguments={**_QUORUM, "x-dead-letter-exchange": self.dead_exchange},
        )
        await queue.bind(exchange, routing_key=TICKS_ROUTING_KEY)
        # Broker order updates (Kite's `order` text frames), kept apart from ticks for whoever needs them.
        orders_limit = {"x-max-length": self.orders_max_length, "x-overflow": "reject-publish"}
        orders = await _declare_queue(channel, self.orders_queue, {**_QUORUM, **orders_limit})
        events = await channel.declare_exchange(self.events_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        await orders.bind(events, routing_key=ORDERS_ROUTING_KEY)
        return exchange, queue

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove every queue and exchange of this prefix (tests and teardown)."""
        for queue in (self.ticks_queue, self.orders_queue, self.dead_queue):
            await channel.queue_delete(queue)
        for exchange in (self.exchange, self.dead_exchange, self.events_exchange):
            await channel.exchange_delete(exchange)


async def _declare_queue(channel: AbstractChannel, name: str, arguments: dict[str, Any]) -> AbstractQueue:
    """Declare a queue with its arguments; one declared earlier with other arguments is used as it is.

    RabbitMQ refuses to change a queue's arguments (PRECONDITION_FAILED, which closes the channel): a
    deployment from before the length limits keeps its queue, with a warning saying how to adopt them.
    """
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except aio_pika.exceptions.ChannelPreconditionFailed as e:
        await channel.reopen()
        log.warning(
            "queue_arguments_differ",
            queue=name,
            wanted=arguments,
            error=str(e),
            fix="delete the queue when it is empty (or set the same limits by policy); it is then declared anew",
        )
        return await channel.declare_queue(name, passive=True)
