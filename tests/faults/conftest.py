"""Fixtures of the fault matrix: a pipeline of tickpipe processes on the test's own database and queues."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import NumberedFeed, ScratchRabbit, Service, last_event, scratch_rabbits, service_env
from tests.helpers import until, wait_until
from tests.integration.pipeline import queue_depths
from tickpipe_core import Topology


@dataclass
class Pipeline:
    """`tickpipe ingest` and `tickpipe work` processes wired to one database, one RabbitMQ and one prefix."""

    database_url: str
    amqp_url: str
    prefix: str
    workdir: Path
    services: list[Service] = field(default_factory=list)

    def service(self, name: str, args: list[str], amqp_url: str | None = None, **env: str) -> Service:
        base = service_env(
            self.database_url, amqp_url or self.amqp_url, self.prefix, self.workdir / f"spool-{name}", **env
        )
        service = Service(name, args, base, self.workdir)
        self.services.append(service)
        return service

    def ingest(
        self,
        feed: NumberedFeed,
        name: str = "ingest",
        amqp_url: str | None = None,
        feed_port: int | None = None,
        **env: str,
    ) -> Service:
        return self.service(name, ["ingest"], amqp_url, **feed.env(feed_port), INGEST_SILENCE_TIMEOUT_S="3", **env)

    def worker(self, name: str = "work", amqp_url: str | None = None, **env: str) -> Service:
        return self.service(name, ["work"], amqp_url, **env)

    def settle(self, feed: NumberedFeed, ingest: list[Service], worker: Service) -> None:
        """Once the feed has sent everything: bring every spooled and queued tick to the database.

        Ingestion is stopped (and started again, replaying its spool) until it exits with nothing
        spooled; the worker is stopped (it finishes and acks its batch) until the queue is empty.
        Nothing here waits on a clock: each step ends on a fact.
        """
        wait_until(lambda: feed.done, "the feed to send everything", timeout=120)
        for service in ingest:
            for _ in range(20):
                code, _ = service.stop()
                assert code == 0, self.logs()
                if last_event(service.log(), "ingest_stopped")["spool.pending_ticks"] == 0:
                    break
                service.start()
                wait_until(partial(_started, service), f"{service.name} to start again")
            else:
                raise AssertionError(f"{service.name} never emptied its spool\n{self.logs()}")
        amqp, topology = worker.env["AMQP_URL"], Topology(self.prefix)

        async def queue_empty() -> bool:
            return (await queue_depths(amqp, topology))[0] == 0

        for _ in range(20):
            asyncio.run(until(queue_empty, "an empty queue", 120, 0.2))
            code, _ = worker.stop()
            assert code == 0, self.logs()
            if asyncio.run(queue_empty()):
                return
            worker.start()
        raise AssertionError(f"the queue never emptied\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {s.name}\n{s.log()[-3000:]}" for s in self.services if s.log_path.exists())


def _started(service: Service) -> bool:
    return '"ingest_started"' in service.last_run()


@pytest.fixture
def pipeline(database_url: str, amqp_url: str, topology: Topology, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(database_url, amqp_url, topology.prefix, tmp_path)
    try:
        yield p
    finally:
        for s in p.services:
            s.close()


@pytest.fixture
def numbered_feed() -> Iterator[Callable[..., NumberedFeed]]:
    """Make numbered feeds (NumberedFeed's arguments); each is closed at the end of the test."""
    feeds: list[NumberedFeed] = []

    def make(total: int, rate: float, **kwargs: Any) -> NumberedFeed:
        feeds.append(NumberedFeed(total, rate, **kwargs))
        return feeds[-1]

    yield make
    for f in feeds:
        f.close()


@pytest.fixture(scope="module")
def rabbit() -> Iterator[ScratchRabbit]:
    """A RabbitMQ node of the module's own, which its cases stop and start."""
    with scratch_rabbits(1) as (node,):
        yield node
