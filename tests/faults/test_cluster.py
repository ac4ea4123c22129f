"""A three-node RabbitMQ cluster on this machine loses the node that leads the ticks queue mid-stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aio_pika

from tests.faults.conftest import Pipeline
from tests.faults.harness import NumberedFeed, ScratchRabbit, assert_exactly_once, scratch_rabbits, wait_stored
from tickpipe_core import Topology


def _queue_placement(node: ScratchRabbit, queue: str) -> tuple[str, set[str]]:
    """The queue's leader and its members, as the cluster reports them."""
    out = node.ctl("list_queues", "-q", "--no-table-headers", "name", "leader", "members")
    for line in out.splitlines():
        name, leader, members = line.split("\t")
        if name == queue:
            return leader, set(members.strip("[]").replace('"', "").replace(" ", "").split(","))
    raise AssertionError(f"{queue} not in {out}")


def test_losing_the_node_that_leads_the_quorum_queue_loses_and_duplicates_nothing(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    with scratch_rabbits(3) as (a, b, c):
        b.join(a)
        c.join(a)
        topology = Topology(pipeline.prefix)

        async def declare_on(node: ScratchRabbit) -> None:  # a quorum queue's leader starts where it is declared
            connection = await aio_pika.connect(node.url)
            async with connection:
                await topology.declare(await connection.channel())

        asyncio.run(declare_on(b))
        leader, members = _queue_placement(a, topology.ticks_queue)
        assert leader == b.node and members == {a.node, b.node, c.node}  # replicated on all three, led by b

        feed = numbered_feed(20_000, 2_000)
        ingest = pipeline.ingest(feed, amqp_url=a.url).start()  # clients on a: they outlive b
        worker = pipeline.worker(amqp_url=a.url).start()
        wait_stored(pipeline.database_url, 3000)
        b.shutdown()  # the leader goes away mid-stream
        new_leader, _ = _queue_placement(a, topology.ticks_queue)
        assert new_leader in {a.node, c.node}
        pipeline.settle(feed, [ingest], worker)
        assert_exactly_once(pipeline.database_url, feed.sent())
