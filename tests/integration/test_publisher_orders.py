"""Order updates go to their own queue, apart from ticks, through the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json

import aio_pika

from tests.helpers import make_tick
from tickpipe_core import Topology, decode_batch
from tickpipe_core.settings import IngestSettings
from tickpipe_core.topology import ORDERS_ROUTING_KEY
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
