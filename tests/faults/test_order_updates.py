"""Order updates through a RabbitMQ outage and a kill -9: spooled on disk, bounded, delivered after the restart."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aio_pika

from tests.helpers import until
from tickpipe_core import Topology
from tickpipe_core.settings import IngestSettings
from tickpipe_ingestion import TickPublisher

UPDATES = 600

# Ingestion while RabbitMQ is unreachable (a closed port): the updates come in, then the process is killed.
_INGESTION_KILLED_DURING_THE_OUTAGE = """
import asyncio, json, os, signal, sys
from pathlib import Path
from tickpipe_core import Topology
from tickpipe_core.settings import IngestSettings
from tickpipe_core.topology import ORDERS_ROUTING_KEY
from tickpipe_ingestion import TickPublisher

async def main():
    settings = IngestSettings(spool_dir=Path(sys.argv[1]), events_spool_max_bytes=int(sys.argv[3]))
    publisher = TickPublisher("amqp://guest:guest@127.0.0.1:1/", Topology(sys.argv[2]), settings)
    await publisher.start()
    for n in range(int(sys.argv[4])):
        publisher.submit_event(ORDERS_ROUTING_KEY, json.dumps({"type": "order", "data": {"order_id": str(n)}}).encode())
    print(json.dumps(dict(publisher.counters)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def _killed_during_outage(spool: Path, prefix: str, limit: int, updates: int) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", _INGESTION_KILLED_DURING_THE_OUTAGE, str(spool), prefix, str(limit), str(updates)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    counters: dict[str, int] = json.loads(result.stdout.splitlines()[-1])
    return counters


async def _delivered_after_restart(amqp_url: str, topology: Topology, spool: Path) -> list[str]:
    publisher = TickPublisher(amqp_url, topology, IngestSettings(spool_dir=spool))
    await publisher.start()
    await until(lambda: publisher.pending_events == 0, "the spooled order updates to be confirmed", timeout=30)
    await publisher.close()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.orders_queue)
        ids = []
        while (message := await queue.get(fail=False)) is not None:
            ids.append(json.loads(message.body)["data"]["order_id"])
            await message.ack()
    return ids


def test_order_updates_spooled_during_an_outage_survive_kill_9_and_arrive_once_in_order(
    amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    counters = _killed_during_outage(tmp_path / "spool", topology.prefix, 256 << 20, UPDATES)
    assert counters["events_submitted"] == UPDATES
    ids = asyncio.run(_delivered_after_restart(amqp_url, topology, tmp_path / "spool"))
    assert ids == [str(n) for n in range(UPDATES)]


def test_a_full_order_update_spool_counts_what_it_could_not_keep(
    amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    counters = _killed_during_outage(tmp_path / "spool", topology.prefix, 128 << 10, 5_000)
    kept, lost = counters["events_submitted"], counters["events_lost_spool_full"]
    assert kept + lost == 5_000 and lost > 0  # bounded: 128 KiB holds some, the rest are counted
    ids = asyncio.run(_delivered_after_restart(amqp_url, topology, tmp_path / "spool"))
    assert ids == [str(n) for n in range(kept)]  # every kept update, in order; the lost ones were the newest
