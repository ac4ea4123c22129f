"""The publisher through the real RabbitMQ: at a trickle each frame goes at once; under load partial
messages wait (INGEST_LINGER_MS) and fill."""

from __future__ import annotations

import asyncio

from tests.helpers import make_tick, until
from tickpipe_core import Tick, Topology
from tickpipe_core.settings import IngestSettings
from tickpipe_ingestion import TickPublisher

_LINGER_MS = 3000  # long, so that a wait is unmistakable


def test_a_trickle_is_published_at_once_and_under_load_messages_fill(amqp_url: str, topology: Topology) -> None:
    def frame() -> list[Tick]:
        return [make_tick(security_id=i) for i in range(4)]

    async def scenario() -> None:
        publisher = TickPublisher(
            amqp_url, topology, IngestSettings(linger_ms=_LINGER_MS, max_ticks_per_message=10_000)
        )
        await publisher.start()
        await until(lambda: publisher.connected, "the publisher to connect")

        def published() -> int:
            return publisher.counters["published_ticks"]

        # A trickle: the frame goes without waiting out the linger.
        publisher.submit(frame())
        await until(lambda: published() == 4, "a lone frame published", timeout=_LINGER_MS / 1000 * 2 / 3)
        # A burst (400 frames at once: far above 200 ticks/s) ...
        for _ in range(400):
            publisher.submit(frame())
        await until(lambda: published() == 1604, "the burst published")
        messages = publisher.counters["published_messages"]
        # ... so the next partial message waits to fill: two frames 0.2 s apart go as one message.
        publisher.submit(frame())
        await asyncio.sleep(0.2)
        publisher.submit(frame())
        await until(lambda: published() == 1612, "the two frames published", timeout=_LINGER_MS / 1000 * 3)
        assert publisher.counters["published_messages"] == messages + 1
        await publisher.close()

    asyncio.run(scenario())
