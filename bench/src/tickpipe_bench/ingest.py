"""Benchmark: what ingestion alone costs a tick, flat out (CPU microseconds per tick, wall ticks/s).

`tickpipe ingest` reads a replayed capture of numbered Dhan full packets (instruments synced, their
previous closes first: a real day's ticks) as fast as it can and publishes them to a scratch queue
on AMQP_URL's broker; no worker runs, so nothing else competes for the process's core. Its CPU
seconds (from /proc) over the ticks RabbitMQ confirmed is the figure: far steadier on a noisy
machine than the whole pipeline's throughput. Variants (environments) run in alternating rounds,
so two versions of the code can be compared in the same minutes:

    uv run python -m tickpipe_bench.ingest --ticks 200000 --rounds 3 \\
        --variant 'before:PYTHONPATH=/tmp/base/libs/core/src:...' --variant 'now:'
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tickpipe.cli.simulate import feed_environment
from tickpipe_bench.common import drop_database, drop_topology, free_port
from tickpipe_bench.pipeline import Process, synced_market
from tickpipe_core.db import with_database
from tickpipe_core.metrics import scrape
from tickpipe_core.migrate import migrate
from tickpipe_simulator.dhan import numbered_capture
from tickpipe_simulator.market import SimInstrument
from tickpipe_simulator.replay import ThreadedReplay


def _published(port: int) -> int:
    try:
        return int(sum(s.value for s in scrape(port, timeout=2) if s.name == "tickpipe_ticks_published_total"))
    except OSError:
        return 0


def run_once(
    db: str, amqp_url: str, ticks: int, market: list[SimInstrument], extra_env: dict[str, str]
) -> tuple[float, float]:
    """(CPU microseconds per tick, ticks/s) of one ingestion run."""
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingest-") as spool,
        ThreadedReplay(numbered_capture(ticks, None, market), speed=0) as feed,
    ):
        env = {
            **os.environ, **feed_environment("dhan", f"ws://127.0.0.1:{feed.port}", market), "DHAN_FEED_MODE": "full",
            "DATABASE_URL": db, "AMQP_URL": amqp_url, "AMQP_PREFIX": prefix, "LOG_FORMAT": "json",
            "INGEST_SPOOL_DIR": spool, "METRICS_PORT": str(port), **extra_env,
        }  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "ingest"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        ingest = Process("ingest", proc, Path(os.devnull), port)
        try:
            while _published(port) == 0:  # started, connected, publishing: count from the first confirm
                if proc.poll() is not None:
                    raise SystemExit(f"tickpipe ingest exited with {proc.returncode}")
                time.sleep(0.005)
            ingest.sample()
            first, cpu0, t0 = _published(port), ingest.cpu_s, time.monotonic()
            while (done := _published(port)) < ticks:
                time.sleep(0.05)
            ingest.sample()
            cpu, wall = ingest.cpu_s - cpu0, time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(30)
            drop_topology(amqp_url, prefix)
    return cpu / (done - first) * 1e6, (done - first) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--instruments", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], help="label:NAME=VALUE;NAME=VALUE (repeatable)")
    parser.add_argument("--database", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/"))
    parser.add_argument("--amqp", default=os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    variants: dict[str, dict[str, str]] = {}
    for spec in args.variant or ["as installed:"]:
        label, _, assignments = spec.partition(":")
        variants[label] = dict(a.split("=", 1) for a in assignments.split(";") if a)
    db = with_database(args.database, f"tickpipe_bench_ingest_{uuid.uuid4().hex[:8]}")
    migrate(db)
    market = synced_market(db, args.instruments)
    results: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    try:
        for _ in range(args.rounds):
            for label, env in variants.items():
                results[label].append(run_once(db, args.amqp, args.ticks, market, env))
    finally:
        drop_database(args.database, db)
    print(f"{args.ticks:,} numbered Dhan full packets, flat out, into RabbitMQ; {args.rounds} rounds alternated")
    for label, runs in results.items():
        cpu = sorted(c for c, _ in runs)
        rates = sorted(r for _, r in runs)
        print(
            f"{label:>16}: {cpu[0]:5.1f} us CPU a tick (rounds {cpu[0]:.1f}-{cpu[-1]:.1f}), "
            f"{rates[-1]:,.0f} ticks/s at best ({rates[0]:,.0f}-{rates[-1]:,.0f})"
        )


if __name__ == "__main__":
    main()
