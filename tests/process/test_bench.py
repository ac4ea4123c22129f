"""`tickpipe bench` end to end: numbered ticks through real processes, a report, a plot, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest


def test_bench_reports_exactly_once_throughput_latency_and_resources_and_cleans_up(
    tmp_path: Path, pg_server_url: str, amqp_url: str
) -> None:
    report, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    env = {**os.environ, "DATABASE_URL": pg_server_url, "AMQP_URL": amqp_url, "LOG_FORMAT": "json"}
    args = ["--ticks", "3000", "--rate", "3000", "--instruments", "50", "--report", str(report), "--plot", str(plot)]
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "bench", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(report.read_text())
    assert (found["stored"], found["exactly_once"], found["duplicates"]) == (3000, True, 0)
    assert (found["with_instrument_id"], found["with_change"]) == (3000, 3000)  # a real day's rows
    assert found["sustained_ticks_per_s"] > 0
    assert found["copy_ceiling_ticks_per_s"] > 0 and found["copy_unindexed_ticks_per_s"] > 0
    assert found["receive_to_commit_ms"]["samples"] > 0 and found["receive_to_commit_ms"]["p99"] is not None
    assert set(found["processes"]) == {"ingest", "work-0", "work-1"}  # two workers, as tickpipe run
    assert all(p["cpu_s"] >= p["cpu_s_with_ticks"] > 0 and p["peak_rss_mb"] > 10 for p in found["processes"].values())
    # The servers run on this machine (as the test services do): what they spent on the run is measured.
    assert found["postgresql_cpu_s"] > 0 and found["rabbitmq_cpu_s"] > 0
    budget = found["cpu_budget"]
    assert set(budget["us_per_tick"]) == {"ingest", "work-0", "work-1", "feed server", "PostgreSQL", "RabbitMQ"}
    assert budget["total_us_per_tick"] == pytest.approx(sum(budget["us_per_tick"].values()), abs=0.5)
    assert 0 < budget["busy_share"] <= 1.05 and budget["cores"] == os.cpu_count()
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "exactly once       yes" in result.stdout
    with psycopg.connect(pg_server_url) as conn:  # the scratch database is gone
        assert conn.execute("select count(*) from pg_database where datname like 'tickpipe_bench_%'").fetchone() == (0,)
