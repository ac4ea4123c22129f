"""Order updates go to their own queue, apart from ticks, through the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json

import aio_pika

from tests.helpers import make_tick, until
from tickpipe_core import Topology, decode_batch
from tickpipe_core.settings import IngestSettings
from tickpipe_core.topology import ORDERS_ROUTING_KEY, TICKS_ROUTING_KEY
from tickpipe_ingestion import TickPublisher


def test_order_updates_land_on_the_orders_queue_and_ticks_on_the_ticks_queue(amqp_url: str, topology: Topology) -> None:
    order = json.dumps({"type": "order", "data": {"order_id": "1", "status": "COMPLETE"}}).encode()

    async def scenario() -> tuple[list[bytes], int]:
        publisher = TickPublisher(amqp_url, topology, IngestSettings(linger_ms=0))
        await publisher.start()
        publisher.submit([make_tick(security_id=1), make_tick(security_id=2)])
        publisher.submit_event(ORDERS_ROUTING_KEY, order)
        await publisher.close()
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            orders_queue = await channel.get_queue(topology.orders_queue)
            ticks_queue = await channel.get_queue(topology.ticks_queue)
            orders: list[bytes] = []
            while (message := await orders_queue.get(fail=False)) is not None:
                orders.append(message.body)
                await message.ack()
            ticks = 0
            while (message := await ticks_queue.get(fail=False)) is not None:
                ticks += len(decode_batch(message.body))
                await message.ack()
        return orders, ticks

    orders, ticks = asyncio.run(scenario())
    assert orders == [order]
    assert ticks == 2


def test_unroutable_ticks_are_kept_and_published_once_the_queue_is_back(amqp_url: str, topology: Topology) -> None:
    """With the ticks queue unbound, the broker returns every publish: nothing may vanish."""
    ticks = [make_tick(security_id=i) for i in range(50)]

    async def scenario() -> tuple[int, int, int]:
        publisher = TickPublisher(amqp_url, topology, IngestSettings(linger_ms=0, max_ticks_per_message=10))
        await publisher.start()
        await until(lambda: publisher.connected, "the publisher to connect and declare the topology")
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(topology.exchange)
            queue = await channel.get_queue(topology.ticks_queue)
            await queue.unbind(exchange, routing_key=TICKS_ROUTING_KEY)
            publisher.submit(ticks)
            await until(lambda: publisher.counters["publish_unroutable"] > 0, "a returned publish")
            held = publisher.pending
            await queue.bind(exchange, routing_key=TICKS_ROUTING_KEY)
            await until(lambda: publisher.pending == 0, "the held ticks to be published", timeout=30)
            await publisher.close()
            stored = 0
            while (message := await queue.get(fail=False)) is not None:
                stored += len(decode_batch(message.body))
                await message.ack()
        return held, stored, publisher.counters["published_ticks"]

    held, stored, published = asyncio.run(scenario())
    assert held > 0  # returned batches stayed in the spool, not into the void
    assert stored == published == len(ticks)
