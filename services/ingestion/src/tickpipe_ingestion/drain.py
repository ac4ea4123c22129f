"""Emptying a spool without a feed: `tickpipe spool drain`, for a host that will not ingest again."""

from __future__ import annotations

import asyncio
import contextlib

from tickpipe_core import Topology
from tickpipe_core.settings import IngestSettings
from tickpipe_ingestion.publisher import TickPublisher


async def drain_spool(amqp_url: str, topology: Topology, settings: IngestSettings, stop: asyncio.Event) -> int:
    """Publish what the spool holds, without a feed, until it is empty or `stop`; returns ticks left."""
    publisher = TickPublisher(amqp_url, topology, settings)
    await publisher.start()
    try:
        while (publisher.pending or publisher.pending_events) and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await publisher.close()
    return publisher.pending
