"""Helpers the tests share: free ports, one polling helper with a deadline, and sample data builders.

Test modules import from here (or get fixtures from conftest.py), never from one another.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from tickpipe_brokers.adapter import FeedParts
from tickpipe_core import Tick, new_tick_id
from tickpipe_simulator.market import DHAN_MASTER_HEADER

# The 16-column header of Dhan's compact instrument master.
COMPACT_HEADER = DHAN_MASTER_HEADER


REQUIRE_SERVICES = os.environ.get("TICKPIPE_REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> None:
    """A service a test needs is missing: a failure where services are required (CI), else a skip."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (TICKPIPE_REQUIRE_SERVICES=1) but unavailable", pytrace=False)
    pytest.skip(f"{what} unavailable: set its TEST_*_URL or run a Docker engine")


def free_port() -> int:
    """A local TCP port nobody listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def until(
    predicate: Callable[[], bool] | Callable[[], Awaitable[bool]],
    what: str,
    timeout: float = 15,
    interval: float = 0.01,
) -> None:
    """Poll `predicate` (plain or async) until it holds; fail naming `what` after `timeout` seconds.

    The deadline only bounds a wait for something that must happen; no test asserts how fast it happens.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15, interval: float = 0.05) -> None:
    """`until` for synchronous tests (a subprocess, a server in another process)."""
    asyncio.run(until(predicate, what, timeout, interval))


def make_tick(**overrides: object) -> Tick:
    """A plausible Dhan full tick; keywords replace any field."""
    fields: dict[str, object] = dict(
        tick_id=new_tick_id(),
        source="dhan",
        segment="NSE_FNO",
        security_id=49229,
        time=datetime(2025, 12, 29, 7, 17, 3, tzinfo=UTC),
        receive_time=datetime(2025, 12, 29, 7, 17, 3, 120_000, tzinfo=UTC),
        time_source="exchange",
        packet="full",
        ltp=25974.900390625,
        ltq=75,
        volume=123456,
        bid_price=(25974.5, 25974.0),
        bid_qty=(75, 150),
        bid_orders=(1, 2),
    )
    fields.update(overrides)
    return Tick(**fields)  # type: ignore[arg-type]


def exported_metric_names() -> set[str]:
    """Every sample name ingestion and workers export (with _total, _bucket, ... as scraped)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from pydantic import SecretStr

    from tickpipe_brokers.dhan.feed import DhanFeed
    from tickpipe_brokers.ticks import TickBuilder
    from tickpipe_core import Topology
    from tickpipe_core.metrics import registry_of
    from tickpipe_core.settings import IngestSettings, WorkerSettings
    from tickpipe_ingestion.metrics import IngestStats, ingest_metrics
    from tickpipe_ingestion.publisher import TickPublisher
    from tickpipe_workers import Worker
    from tickpipe_workers.metrics import worker_metrics

    feed = DhanFeed(
        base_url="ws://127.0.0.1:1", client_id="1", token=SecretStr("unused-token"), mode="full",
        instruments=[("NSE_FNO", 1)], parts=FeedParts(lambda ticks: None),
    )  # fmt: skip
    feed.decoder.counters["bad_packets.truncated"] += 1
    feed.connections[0].reconnects["silent"] += 1
    stats = IngestStats(
        feed, TickBuilder("dhan", pair_key=True), TickPublisher("amqp://unused/", Topology("x"), IngestSettings()), None
    )
    worker = Worker(0, "postgresql://unused/x", "amqp://unused/", Topology("x"), WorkerSettings())
    worker.newest_exchange_ts = 1.0
    names: set[str] = set()
    for registry in (
        registry_of(lambda: ingest_metrics(stats)),
        registry_of(lambda: worker_metrics([worker], worker.commit_seconds)),
    ):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            names |= {sample.name for sample in family.samples}
    return names
