"""Order updates go to their own queue, apart from ticks, through the real RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aio_pika
from structlog.testing import capture_logs

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


def test_the_orders_queue_is_bounded_and_an_order_update_past_the_limit_waits_in_ingestion(
    amqp_url: str, topology: Topology
) -> None:
    """Past its length limit the orders queue refuses updates; the publisher keeps them and sends them, in order."""
    bounded = dataclasses.replace(topology, orders_max_length=5)
    orders = [json.dumps({"type": "order", "data": {"order_id": str(i)}}).encode() for i in range(8)]

    async def scenario() -> list[bytes]:
        publisher = TickPublisher(amqp_url, bounded, IngestSettings())
        await publisher.start()
        for body in orders:
            publisher.submit_event(ORDERS_ROUTING_KEY, body)
        await until(lambda: publisher.counters["publish_failures"] > 0, "an update refused by the full queue")
        assert 5 <= publisher.counters["published_events"] < len(orders)  # a quorum queue may take one more
        got: list[bytes] = []
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            queue = await (await connection.channel()).get_queue(bounded.orders_queue)
            while len(got) < len(orders):  # a consumer drains it; the held updates follow
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                got.append(message.body)
                await message.ack()
        await publisher.close()
        return got

    assert asyncio.run(scenario()) == orders


def test_a_queue_declared_before_the_limits_is_used_as_it_is_with_a_warning(amqp_url: str, topology: Topology) -> None:
    async def scenario() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(topology.orders_queue, durable=True, arguments={"x-queue-type": "quorum"})
            with capture_logs() as logs:
                exchange, _ = await topology.declare(channel)
            assert [e["queue"] for e in logs if e["event"] == "queue_arguments_differ"] == [topology.orders_queue]
            await exchange.publish(aio_pika.Message(b"{}"), routing_key=ORDERS_ROUTING_KEY)  # and it works

    asyncio.run(scenario())
