"""A process's workers: N `Worker`s as tasks, sharing one metrics endpoint."""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

from tickpipe_core import Topology
from tickpipe_core.metrics import MetricsServer, registry_of
from tickpipe_core.settings import MetricsSettings, WorkerSettings
from tickpipe_workers.consumer import Worker
from tickpipe_workers.metrics import worker_metrics, worker_readiness


async def run_workers(
    count: int,
    db_url: str,
    amqp_url: str,
    topology: Topology,
    settings: WorkerSettings,
    stop: asyncio.Event,
    metrics: MetricsSettings | None = None,
) -> None:
    """Run `count` workers as tasks of this process until `stop` is set (serving METRICS_PORT if set)."""
    commit_seconds = Histogram("tickpipe_commit_seconds", "Batch commit time.", registry=None)
    workers = [Worker(i, db_url, amqp_url, topology, settings, commit_seconds) for i in range(count)]
    server = None
    if metrics is not None and metrics.metrics_port:
        registry = registry_of(lambda: worker_metrics(workers, commit_seconds))
        server = MetricsServer(registry, lambda: worker_readiness(workers), metrics.metrics_host, metrics.metrics_port)
        await server.start()
    try:
        async with asyncio.TaskGroup() as tg:
            for w in workers:
                tg.create_task(w.run(stop))
    finally:
        if server is not None:
            await server.stop()
