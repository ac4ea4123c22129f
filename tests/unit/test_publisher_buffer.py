"""The publisher's in-memory buffer when RabbitMQ stays away: bounded, newest kept, one log line per interval."""

from __future__ import annotations

from structlog.testing import capture_logs

from tests.helpers import make_tick
from tickpipe_core import Topology
from tickpipe_core.settings import IngestSettings
from tickpipe_ingestion import TickPublisher


def test_overflow_drops_the_oldest_counts_them_and_logs_once_per_interval_not_per_frame() -> None:
    publisher = TickPublisher("amqp://unused/", Topology("unit"), IngestSettings(buffer_ticks=1000))
    frames = [[make_tick(security_id=f * 10_000 + i) for i in range(600)] for f in range(5)]
    with capture_logs() as logs:
        for ticks in frames:
            publisher.submit(ticks)
    assert publisher.pending == 1000 and publisher.counters["dropped_overflow"] == 2000
    assert [e["event"] for e in logs].count("publish_buffer_overflow") == 1
    kept = [t.security_id for t in list(publisher._buffer)]
    assert kept == [30_000 + i for i in range(200, 600)] + [40_000 + i for i in range(600)]  # the newest
