"""RabbitMQ users per service (deploy/rabbitmq/definitions.json) on a node of our own: each does its job, no more."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from tests.faults.harness import ScratchRabbit
from tests.helpers import make_tick, until
from tickpipe_core import Topology
from tickpipe_core.settings import IngestSettings
from tickpipe_core.topology import ORDERS_ROUTING_KEY
from tickpipe_ingestion import TickPublisher

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = Topology("tickpipe")  # the names the definitions grant


def _url(rabbit: ScratchRabbit, user: str, secrets: Path) -> str:
    password = (secrets / f"amqp_{user.removeprefix('tickpipe-')}_password").read_text().strip()
    return f"amqp://{user}:{password}@127.0.0.1:{rabbit.port}/"


async def _refused(url: str, action: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(TOPOLOGY.ticks_queue, ensure=False)
        exchange = await channel.get_exchange(TOPOLOGY.exchange, ensure=False)

        async def ignore(message: AbstractIncomingMessage) -> None:
            pass

        attempts: dict[str, Callable[[], Awaitable[object]]] = {
            "consume ticks": lambda: queue.consume(ignore),
            "purge ticks": lambda: queue.purge(),
            "publish ticks": lambda: exchange.publish(aio_pika.Message(b"x"), routing_key="ticks"),
            "delete ticks": lambda: queue.delete(if_unused=False, if_empty=False),
        }
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await attempts[action]()


async def _serve_never_sees_order_updates(serve: str, ingest: str, tmp_path: Path) -> None:
    """The read side may bind its own queues to the market exchange, but order updates go to the events
    exchange, which it may not bind to: a queue of its own on the orders' routing key gets nothing."""
    connection = await aio_pika.connect(serve)
    async with connection:
        spy = await (await connection.channel()).declare_queue("tickpipe.gateway.spy", exclusive=True)
        await spy.bind(TOPOLOGY.exchange, routing_key=ORDERS_ROUTING_KEY)  # allowed: the market's
        publisher = TickPublisher(ingest, TOPOLOGY, IngestSettings(spool_dir=tmp_path / "spool-orders"))
        await publisher.start()
        publisher.submit_event(ORDERS_ROUTING_KEY, b'{"type": "order", "data": {"order_id": "1"}}')
        await until(lambda: publisher.counters["published_events"] == 1, "the ingest user's order update", timeout=30)
        await publisher.close()
        assert await spy.get(fail=False) is None  # nothing reached the read side's queue
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await spy.bind(TOPOLOGY.events_exchange, routing_key=ORDERS_ROUTING_KEY)


def test_each_service_user_does_its_job_and_no_more(rabbit: ScratchRabbit, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "compose_env.py"), str(secrets)], check=True, timeout=60)
    rabbit.ctl("import_definitions", str(rabbit.readable_copy(secrets / "rabbitmq-definitions.json")))
    ingest, worker, serve = (_url(rabbit, u, secrets) for u in ("tickpipe-ingest", "tickpipe-worker", "tickpipe-serve"))

    async def scenario() -> None:
        publisher = TickPublisher(ingest, TOPOLOGY, IngestSettings(spool_dir=tmp_path / "spool"))
        await publisher.start()  # declares the topology and publishes
        publisher.submit([make_tick(security_id=1)])
        await until(lambda: publisher.counters["published_ticks"] == 1, "the ingest user's publish", timeout=30)
        await publisher.close()
        connection = await aio_pika.connect(worker)  # the worker consumes
        async with connection:
            queue = await (await connection.channel()).get_queue(TOPOLOGY.ticks_queue)
            message = await queue.get(timeout=10)
            assert message is not None
            await message.ack()
        await _refused(ingest, "consume ticks")  # ingestion cannot read the ticks it publishes
        await _refused(ingest, "purge ticks")
        for user in (ingest, worker, serve):  # nobody but the admin may delete the ticks queue
            await _refused(user, "delete ticks")
        await _refused(worker, "publish ticks")  # a worker cannot inject ticks
        await _refused(serve, "consume ticks")  # the read side cannot take ticks from the workers
        await _refused(serve, "publish ticks")
        await _serve_never_sees_order_updates(serve, ingest, tmp_path)
        # The topology the broker made is the one the code declares: declaring it again changes nothing.
        connection = await aio_pika.connect(_url(rabbit, "tickpipe-admin", secrets))
        async with connection:
            with capture_logs() as logs:
                await TOPOLOGY.declare(await connection.channel())
            assert [
                e for e in logs if e["event"] in ("queue_arguments_differ", "topology_declared_by_the_broker")
            ] == []

    asyncio.run(scenario())
