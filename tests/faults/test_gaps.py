"""Feed sessions and gaps in the database: an instrument that goes quiet, and a feed that goes down."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from tests.faults.conftest import Pipeline
from tests.faults.harness import NumberedFeed, TcpProxy, stored_count, wait_stored


def _gaps(database_url: str, since: datetime) -> list[tuple[int, datetime, datetime, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select security_id, gap_start, gap_end, cause from analytics.gaps(%s, min_silence => '2 seconds')",
            [since],
        ).fetchall()
    return [(int(r[0]), r[1], r[2], str(r[3])) for r in rows]


def test_an_instrument_silent_while_others_flow_is_a_gap_with_its_start_and_end(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    began = datetime.now(UTC)
    feed = numbered_feed(15_000, 1_500, instruments=10)
    quiet = feed.instruments[3].security_id
    ingest = pipeline.ingest(feed).start()
    worker = pipeline.worker().start()
    wait_stored(pipeline.database_url, 2000)
    feed.server.mute(quiet, 3.0)
    time.sleep(3.0)
    pipeline.settle(feed, [ingest], worker)

    (gap,) = _gaps(pipeline.database_url, began)
    security_id, start, end, cause = gap
    assert security_id == quiet and cause == "instrument silent while others flowed"
    with psycopg.connect(pipeline.database_url) as conn:
        rows = conn.execute(
            "select receive_time, volume from ticks where security_id = %s order by receive_time", [quiet]
        ).fetchall()
    # The gap runs from the instrument's last tick before the silence to its first after it ...
    times = [r[0] for r in rows]
    i = times.index(start)
    assert times[i + 1] == end
    # ... which the server sent one after the other (by their numbers): nothing of it was lost in
    # between, the silence was real, and other instruments' ticks were sent meanwhile.
    sent = [t.quote.volume for t in feed.server.sent]
    before, after = rows[i][1], rows[i + 1][1]
    of_quiet = [t.quote.volume for t in feed.server.sent if t.quote.security_id == quiet]
    assert of_quiet.index(after) == of_quiet.index(before) + 1
    assert sent.index(after) - sent.index(before) > 100


def test_a_feed_outage_ends_one_session_and_is_a_gap_for_every_instrument(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    began = datetime.now(UTC)
    feed = numbered_feed(20_000, 2_000, instruments=8)
    proxy = TcpProxy(feed.port)
    try:
        ingest = pipeline.ingest(feed, feed_port=proxy.port).start()
        worker = pipeline.worker().start()
        wait_stored(pipeline.database_url, 2000)
        proxy.refuse()  # the connection is cut, and reconnecting fails for a while
        stored = stored_count(pipeline.database_url)
        time.sleep(3.0)
        proxy.heal()
        wait_stored(pipeline.database_url, stored + 2000)
        pipeline.settle(feed, [ingest], worker)
    finally:
        proxy.close()

    with psycopg.connect(pipeline.database_url) as conn:
        sessions = conn.execute(
            "select connection, ended_at is not null, end_reason from feed_sessions order by started_at"
        ).fetchall()
    assert len(sessions) == 2  # the one the outage ended, and the one after it (ended by the stop)
    assert sessions[0][:2] == ("dhan-0", True) and "ConnectionClosed" in str(sessions[0][2])
    gaps = _gaps(pipeline.database_url, began)
    assert {g[0] for g in gaps} == {i.security_id for i in feed.instruments}  # every subscribed instrument
    assert all(g[3].startswith("feed session ended: ConnectionClosed") for g in gaps), gaps
    assert len(gaps) == len(feed.instruments)  # one gap each
