"""`tickpipe status` against a running pipeline: feeds, flow, queues, spool, gaps, database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

from tests.faults.conftest import Pipeline
from tests.faults.harness import NumberedFeed, wait_stored
from tests.helpers import free_port


def test_status_shows_the_feed_the_flow_the_queues_the_spool_and_the_last_gaps(
    pipeline: Pipeline, numbered_feed: Callable[..., NumberedFeed]
) -> None:
    feed = numbered_feed(40_000, 1_000, instruments=10)
    port = free_port()
    ingest = pipeline.ingest(feed, METRICS_PORT=str(port)).start()
    pipeline.worker().start()
    wait_stored(pipeline.database_url, 1000)
    quiet = feed.instruments[2]
    feed.server.mute(quiet.security_id, 3.0)
    time.sleep(4.0)
    wait_stored(pipeline.database_url, 6000)
    env = {**ingest.env}

    def status(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "tickpipe", "status", "--min-gap", "2", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    found = json.loads(status("--format", "json"))
    db, queues, ingestion = found["database"], found["queues"], found["ingestion"]
    assert [(f["connection"], f["ended"]) for f in db["feeds"]] == [("dhan-0", None)]  # one open session
    assert db["stored_per_s"] > 0 and db["lag_s"] is not None and db["instruments"] == 10
    assert ingestion["received_per_s"] > 0 and ingestion["amqp_connected"] is True
    assert queues[f"{pipeline.prefix}.ticks"]["consumers"] == 1
    assert found["spool"]["dir"] == ingest.env["INGEST_SPOOL_DIR"]
    assert [g["instrument"] for g in db["gaps"]] == [f"NSE_FNO:{quiet.security_id}"]
    assert db["tick_chunks"] >= 1

    text = status()
    (pipeline.workdir / "status.txt").write_text(text)  # the README's example comes from a run like this
    for expected in ("FEEDS", "dhan-0", "open since", "ingestion reads", "FLOW", "GAPS (last hour)", "DATABASE"):
        assert expected in text, text
    assert f"NSE_FNO:{quiet.security_id}" in text and "instrument silent while others flowed" in text
