"""Benchmark: receive-to-commit latency of the pipeline at a steady rate, old batching against group commit.

For each rate, the same processes as production (`tickpipe simulate` with 500 instruments sending
full packets, `tickpipe ingest`, `tickpipe work`) run for SECONDS twice in this run: once with the
former fixed waits (WORKER_BATCH_TIMEOUT_S=0.5, INGEST_LINGER_MS=20) as the baseline, once with the
defaults (group commit: commit when nothing more is waiting, publish at once). The workers measure
receive-to-commit themselves (a histogram of sampled ticks, in their `worker_stopped` log line), so
no server setting is needed.

    uv run python scripts/bench/bench_latency.py [--rates 100,2000,10000] [--seconds 20] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg

from tickpipe_core.db import with_database
from tickpipe_core.migrate import migrate
from tickpipe_workers.latency import BOUNDS_MS, merge, percentile

CONFIGS = {
    "fixed waits (before)": {"WORKER_BATCH_TIMEOUT_S": "0.5", "INGEST_LINGER_MS": "20"},
    "group commit (now)": {"WORKER_BATCH_TIMEOUT_S": "0", "INGEST_LINGER_MS": "0"},
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_once(
    server_url: str, amqp_url: str, rate: float, seconds: float, workers: int, env_extra: dict[str, str]
) -> dict[str, object]:
    name = f"bench_latency_{uuid.uuid4().hex[:8]}"
    db_url = with_database(server_url, name)
    migrate(db_url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "AMQP_URL": amqp_url, "AMQP_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
           "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **env_extra}  # fmt: skip
    tickpipe = [sys.executable, "-m", "tickpipe"]
    simulate = [
        "simulate",
        "--port",
        str(port),
        "--instruments",
        "500",
        "--rate",
        str(rate),
        "--packets-per-frame",
        "10",
    ]
    sim = subprocess.Popen([*tickpipe, *simulate], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ingest_env = {**env, "DATA_SOURCE": "dhan", "DHAN_FEED_URL": f"ws://127.0.0.1:{port}", "DHAN_CLIENT_ID": "bench",
                  "DHAN_ACCESS_TOKEN": "bench", "INGEST_MARKET_HOURS": "always",
                  "DHAN_INSTRUMENTS": ",".join(f"NSE_FNO:{40000 + i}" for i in range(500))}  # fmt: skip
    work = subprocess.Popen(
        [*tickpipe, "work", "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    extra = [
        subprocess.Popen(
            [*tickpipe, "work", "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(workers - 1)
    ]
    time.sleep(2)
    ingest = subprocess.Popen(
        [*tickpipe, "ingest"], env=ingest_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(seconds)
    for proc in (ingest, sim):
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    time.sleep(2)
    histograms = []
    for proc in (work, *extra):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        for line in err.decode().splitlines():
            if '"worker_stopped"' in line:
                histograms.append(json.loads(line)["latency_histogram"])
    with psycopg.connect(db_url) as conn:
        row = conn.execute("select count(*) from ticks").fetchone()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}"')
    counts, max_ms = merge(histograms)
    return {
        "rows": row[0] if row else 0,
        "p50": percentile(counts, 50, max_ms),
        "p95": percentile(counts, 95, max_ms),
        "p99": percentile(counts, 99, max_ms),
        "max": max_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,2000,10000")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    server_url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    amqp_url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    print(f"receive-to-commit in ms (a percentile is its histogram bucket's upper bound, {BOUNDS_MS[:6]}...)")
    for rate in (float(r) for r in args.rates.split(",")):
        for label, env in CONFIGS.items():
            r = run_once(server_url, amqp_url, rate, args.seconds, args.workers, env)
            figures = f"p50 {r['p50']:>6}  p95 {r['p95']:>6}  p99 {r['p99']:>6}  max {r['max']:>7.1f}"
            print(f"{rate:>7.0f}/s  {args.workers} worker(s)  {label:22}  rows {r['rows']:>8,}  {figures}", flush=True)


if __name__ == "__main__":
    main()
