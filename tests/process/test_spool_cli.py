"""A damaged spool, as an operator meets it: `tickpipe spool status` says what is unreadable, and
`tickpipe spool drain` delivers every intact record, keeps the damaged file in quarantine/ and exits 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aio_pika
import pytest

from tests.helpers import make_tick
from tickpipe_core import Topology, decode_batch, encode_ticks
from tickpipe_ingestion.spool import MAGIC, QUARANTINE, Spool

pytestmark = pytest.mark.integration  # it needs RabbitMQ too

RECORDS, PER_RECORD = 40, 3


def _spool_of_numbered_ticks(directory: Path) -> None:
    """What an ingestion left while RabbitMQ was away: RECORDS records of PER_RECORD ticks, numbered by volume."""
    spool = Spool(directory, max_bytes=1 << 24)
    spool.open()
    for r in range(RECORDS):
        spool.append(encode_ticks([make_tick(volume=r * PER_RECORD + i) for i in range(PER_RECORD)]), PER_RECORD)
    spool.close()


async def _queued_volumes(amqp_url: str, topology: Topology) -> list[int]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.ticks_queue, passive=True)
        volumes = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            volumes += [t.volume or 0 for t in decode_batch(message.body)]
        return volumes


def test_drain_delivers_every_intact_record_quarantines_the_damage_and_says_so(
    tmp_path: Path, amqp_url: str, topology: Topology
) -> None:
    directory = tmp_path / "spool"
    _spool_of_numbered_ticks(directory)
    (segment,) = directory.glob("*.spool")
    data = bytearray(segment.read_bytes())
    starts = [i for i in range(len(MAGIC), len(data)) if data.startswith(b"\xd7TPR", i)]  # each record's marker
    data[starts[2] + 40] ^= 0x10  # one bit in the third record's payload
    segment.write_bytes(bytes(data))
    env = {**os.environ, "INGEST_SPOOL_DIR": str(directory), "AMQP_URL": amqp_url, "AMQP_PREFIX": topology.prefix}

    def tickpipe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tickpipe", *args], env=env, capture_output=True, text=True, timeout=60
        )

    status = tickpipe("spool", "status")
    assert status.returncode == 0, status.stderr
    assert f"ticks      {(RECORDS - 1) * PER_RECORD:,} in {RECORDS - 1:,} records" in status.stdout
    assert f"damaged    1 record(s), {starts[3] - starts[2]:,} bytes, about {PER_RECORD} tick(s)" in status.stdout
    assert list(directory.glob(f"{QUARANTINE}/*")) == []  # status only looks

    drain = tickpipe("spool", "drain")
    assert drain.returncode == 1, drain.stderr[-2000:]
    assert "the spool is empty" in drain.stderr and "quarantine 1 damaged segment file(s)" in drain.stdout
    assert [p.read_bytes() for p in directory.glob(f"{QUARANTINE}/*")] == [bytes(data)]
    delivered = asyncio.run(_queued_volumes(amqp_url, topology))
    lost = set(range(2 * PER_RECORD, 3 * PER_RECORD))
    assert sorted(delivered) == [n for n in range(RECORDS * PER_RECORD) if n not in lost]
