"""`tickpipe dead-letters`: list and show leave the queue as it was, replay sends back, purge drops."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aio_pika
from aiormq.abc import FieldValue

from tests.helpers import make_tick, until
from tests.integration.pipeline import count_ticks, publish_bodies, queue_depths
from tickpipe_core import Topology, encode_batch
from tickpipe_core.settings import WorkerSettings
from tickpipe_core.topology import DEAD_REASON_HEADER
from tickpipe_workers import run_workers


def _cli(topology: Topology, amqp_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMQP_URL": amqp_url, "AMQP_PREFIX": topology.prefix, "LOG_FORMAT": "json"}
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "dead-letters", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


async def _store(database_url: str, amqp_url: str, topology: Topology, rows: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(1, database_url, amqp_url, topology, WorkerSettings(), stop))
    await until(lambda: count_ticks(database_url) >= rows, f"{rows} rows", timeout=30, interval=0.1)
    stop.set()
    await task


def test_dead_letters_are_listed_shown_replayed_and_purged(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    good = encode_batch([make_tick(security_id=1)])
    nul = encode_batch([make_tick(security_id=2, segment="NSE\x00FNO")])
    asyncio.run(publish_bodies(amqp_url, topology, [good, b"\xc1 not msgpack", nul]))
    asyncio.run(_store(database_url, amqp_url, topology, 1))
    assert asyncio.run(queue_depths(amqp_url, topology)) == (0, 2)

    listed = json.loads(_cli(topology, amqp_url, "list", "--format", "json").stdout)
    assert listed["total"] == 2
    reasons = [d["reason"] for d in listed["letters"]]
    assert reasons[0].startswith("not a tickpipe message") and reasons[1] == "segment holds a NUL character"
    assert json.loads(_cli(topology, amqp_url, "list", "--format", "json").stdout) == listed  # nothing consumed
    shown = json.loads(_cli(topology, amqp_url, "show", "2").stdout)
    assert shown["ticks"][0]["security_id"] == 2 and shown["reason"] == "segment holds a NUL character"
    assert asyncio.run(queue_depths(amqp_url, topology)) == (0, 2)

    # A message set aside for a passing reason (here: the delivery limit during an outage) goes back and lands.
    async def dead_letter_a_good_one() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.get_exchange(topology.dead_exchange)
            headers: dict[str, FieldValue] = {
                DEAD_REASON_HEADER: "delivered 10 times without being stored",
                "x-delivery-count": 10,
            }
            await dead.publish(aio_pika.Message(encode_batch([make_tick(security_id=3)]), headers=headers), "ticks")

    asyncio.run(dead_letter_a_good_one())
    _cli(topology, amqp_url, "purge", "--yes")
    assert asyncio.run(queue_depths(amqp_url, topology)) == (0, 0)
    asyncio.run(dead_letter_a_good_one())
    assert "replayed 1 message(s)" in _cli(topology, amqp_url, "replay").stdout
    assert asyncio.run(queue_depths(amqp_url, topology)) == (1, 0)
    asyncio.run(_store(database_url, amqp_url, topology, 2))
    assert count_ticks(database_url) == 2
