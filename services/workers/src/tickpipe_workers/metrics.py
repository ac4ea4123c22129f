"""The workers' Prometheus metrics, read from their own counters at scrape time, and their readiness."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import Histogram
from prometheus_client.core import HistogramMetricFamily, Metric

from tickpipe_core.metrics import counter, gauge
from tickpipe_workers.latency import BOUNDS_MS, LatencyHistogram

if TYPE_CHECKING:
    from tickpipe_workers.consumer import Worker


def worker_metrics(workers: Sequence[Worker], commit_seconds: Histogram) -> Iterable[Metric]:
    def total(key: str) -> int:
        return sum(w.counters[key] for w in workers)

    yield counter("tickpipe_rows_committed", "Ticks in committed batches (stored, or already there).", total("rows"))
    yield counter("tickpipe_rows_inserted", "New rows written (a redelivered tick is not new).", total("rows_inserted"))
    yield counter("tickpipe_batches_committed", "Batches committed.", total("batches"))
    yield counter("tickpipe_write_failures", "Batch writes that failed and were retried.", total("write_failures"))
    yield counter(
        "tickpipe_dead_lettered",
        "Messages and ticks set aside in the dead-letter queue.",
        total("dead_lettered") + total("ticks_dead_lettered"),
    )
    yield from commit_seconds.collect()
    latency = LatencyHistogram()
    for w in workers:
        latency.add(w.latency)
        latency.add(w._latency_interval)
    family = HistogramMetricFamily(
        "tickpipe_receive_to_commit_seconds", "From the feed socket's read to the commit (sampled ticks)."
    )
    cumulative = list(accumulate(latency.counts))
    buckets = [(str(b / 1000), float(n)) for b, n in zip(BOUNDS_MS, cumulative, strict=False)]
    family.add_metric([], [*buckets, ("+Inf", float(cumulative[-1]))], latency.sum_ms / 1000)
    yield family
    newest = max((w.newest_exchange_ts for w in workers), default=0.0)
    if newest:
        yield gauge(
            "tickpipe_lag_seconds", "Now minus the newest exchange time this process stored.", time.time() - newest
        )


def worker_readiness(workers: Sequence[Worker]) -> tuple[bool, str]:
    """Ready: every worker is connected to RabbitMQ and its last write reached the database."""
    for w in workers:
        if not w.amqp_connected:
            return False, f"worker {w.worker_id}: not connected to RabbitMQ"
        if not w.database_ok:
            return False, f"worker {w.worker_id}: the database refuses writes (retrying)"
    return True, "consuming and writing"
