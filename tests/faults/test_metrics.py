"""Metrics and health endpoints, scraped from real `tickpipe ingest` and `tickpipe work` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import requests

from tests.faults.conftest import Pipeline
from tests.faults.harness import NumberedFeed, ScratchRabbit, wait_stored
from tests.helpers import free_port, wait_until
from tickpipe_core.metrics import scrape


def _scrape(port: int) -> dict[str, float]:
    """Every sample, named with its labels (name{a="x"})."""
    out: dict[str, float] = {}
    for sample in scrape(port):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def _health(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METRICS_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "tickpipe", "health", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _status(port: int, path: str) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_metrics_count_every_tick_received_published_and_committed_and_readyz_follows_rabbitmq(
    pipeline: Pipeline, rabbit: ScratchRabbit, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    total = 5_000
    feed = numbered_feed(total, 2_000)
    ingest_port, worker_port = free_port(), free_port()
    pipeline.ingest(feed, amqp_url=rabbit.url, METRICS_PORT=str(ingest_port)).start()
    pipeline.worker(amqp_url=rabbit.url, METRICS_PORT=str(worker_port)).start()
    wait_until(lambda: feed.done, "the feed to send everything", timeout=60)
    wait_stored(pipeline.database_url, total)

    wait_until(lambda: _scrape(ingest_port)["tickpipe_ticks_published_total"] == total, "the publish count", 30)
    ingest, worker = _scrape(ingest_port), _scrape(worker_port)
    assert ingest['tickpipe_ticks_received_total{connection="dhan-0",source="dhan"}'] == total
    assert ingest["tickpipe_ticks_published_total"] == total
    assert worker["tickpipe_rows_committed_total"] == total
    assert ingest['tickpipe_feed_connected{connection="dhan-0"}'] == 1
    assert ingest["tickpipe_spool_ticks"] == 0 and ingest["tickpipe_spool_bytes"] > 0
    assert ingest["tickpipe_publish_seconds_count"] > 0
    assert worker["tickpipe_commit_seconds_count"] == worker["tickpipe_batches_committed_total"] > 0
    assert worker['tickpipe_receive_to_commit_seconds_bucket{le="+Inf"}'] > 0
    assert 0 <= worker["tickpipe_lag_seconds"] < 3600
    for port in (ingest_port, worker_port):
        assert _status(port, "/healthz") == 200 and _status(port, "/readyz") == 200

    assert _health(ingest_port).returncode == 0 and _health(ingest_port, "--ready").returncode == 0
    rabbit.stop_app()
    try:
        wait_until(lambda: _status(ingest_port, "/readyz") == 503, "ingestion not ready", timeout=20)
        wait_until(lambda: _status(worker_port, "/readyz") == 503, "the worker not ready", timeout=20)
        assert _status(ingest_port, "/healthz") == 200  # alive, spooling
        # The container healthcheck asks the same endpoints: alive yes, ready no, and why.
        assert _health(ingest_port).returncode == 0
        not_ready = _health(ingest_port, "--ready")
        assert not_ready.returncode == 1 and "not connected to RabbitMQ" in not_ready.stderr
    finally:
        rabbit.start_app()
    wait_until(lambda: _status(ingest_port, "/readyz") == 200, "ingestion ready again", timeout=60)
    wait_until(lambda: _status(worker_port, "/readyz") == 200, "the worker ready again", timeout=60)
