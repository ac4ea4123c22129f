"""`tickpipe bench`: the whole pipeline on this machine, measured, with numbered ticks.

A feed server of its own serves N numbered Dhan full packets (pre-built, so serving them costs
little) at a fixed rate or flat out; real `tickpipe ingest` and `tickpipe work` processes carry them
into a scratch database on DATABASE_URL's server, through a scratch prefix on AMQP_URL's broker.
It reports the sustained rate (ticks stored per second), the same rows' server-side COPY into a
fresh hypertable in the same run (the ceiling), receive-to-commit percentiles from the workers' own
histograms (no server setting needed), CPU seconds and peak RSS per process (from /proc), and
exactly-once from the numbers (stored = sent, none twice). The scratch database and queues go away.

Where PostgreSQL and RabbitMQ run on this machine, it also reports what the run cost them, and the
CPU a tick cost each part while ticks flowed, against what the machine's cores could give: on a
small machine, the whole pipeline and both servers share the same cores.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tickpipe.cli.simulate import feed_environment
from tickpipe_bench.common import cleanup, cpu_seconds, free_port, peak_rss_kib
from tickpipe_core import get_logger
from tickpipe_core.db import with_database
from tickpipe_core.metrics import scrape
from tickpipe_core.migrate import migrate
from tickpipe_instruments import parse_master, sync_instruments
from tickpipe_simulator.dhan import numbered_capture
from tickpipe_simulator.market import SimInstrument, dhan_master, make_instruments
from tickpipe_simulator.replay import ThreadedReplay
from tickpipe_workers.latency import BOUNDS_MS, merge, percentile

log = get_logger("bench")


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    counted: int = 0  # as last scraped: rows inserted (a worker), ticks received (ingestion)
    cpu_before_ticks: float = 0.0  # its start: CPU seconds at the last sample before ingestion received a tick

    def sample(self) -> None:
        """CPU seconds and peak RSS from /proc while the process lives."""
        self.cpu_s = cpu_seconds(self.proc.pid) or self.cpu_s
        self.peak_rss_mb = max(self.peak_rss_mb, peak_rss_kib(self.proc.pid) / 1024)


# PostgreSQL's processes that work for every database: what they spend during the run counts too.
_PG_SHARED = ["walwriter", "checkpointer", "background writer"]


@dataclass
class ServerCpu:
    """What the run cost the database server and the broker where they run on this machine (from /proc).

    PostgreSQL: the scratch database's backends (the workers' connections, autovacuum) and its WAL
    writer, checkpointer and background writer; RabbitMQ: its node process(es) here, whatever else
    they carried meanwhile. Counted from `restart` (a backend of the scratch database that starts
    later, from its start). A server elsewhere (another host, a container's own process namespace)
    is not measured: None.
    """

    start: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    rabbitmq_pids: list[int] = field(default_factory=list)
    postgres_pids: set[int] = field(default_factory=set)

    def begin(self) -> None:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and cpu_seconds(int(entry.name), "beam.smp") is not None:
                self.rabbitmq_pids.append(int(entry.name))
                self._note(int(entry.name), "beam.smp", whole_life=False)

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        backends = conn.execute(
            "select pid, datname is not null from pg_stat_activity"
            " where (datname = current_database() and pid <> pg_backend_pid()) or backend_type = any(%s)",
            [_PG_SHARED],
        ).fetchall()
        for pid, ours in backends:
            if self._note(pid, "postgres", whole_life=ours):
                self.postgres_pids.add(pid)
        for pid in self.rabbitmq_pids:
            self._note(pid, "beam.smp", whole_life=False)

    def restart(self) -> None:
        """Count from here on (the processes known so far)."""
        self.start.update(self.last)

    def _note(self, pid: int, name: str, whole_life: bool) -> bool:
        cpu = cpu_seconds(pid, name)
        if cpu is None:
            return False
        self.start.setdefault(pid, 0.0 if whole_life else cpu)
        self.last[pid] = cpu
        return True

    def cpu_s(self, pids: Iterable[int]) -> float | None:
        spent = [self.last[p] - self.start[p] for p in pids if p in self.last]
        return round(sum(spent), 2) if spent else None


@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)
    p50_ms: list[float | None] = field(default_factory=list)
    p99_ms: list[float | None] = field(default_factory=list)


_COUNTED = ("tickpipe_rows_inserted_total", "tickpipe_ticks_received_total")


def _scrape(p: Process) -> list[float] | None:
    """Note what the process has counted so far; return a worker's cumulative receive-to-commit bucket counts.

    The stored count comes from the workers' own counters, not from `count(*)`: scanning the growing
    table twice a second would take the server's CPU from the pipeline being measured.
    """
    try:
        samples = scrape(p.metrics_port, timeout=2)
    except OSError:
        return None  # not serving yet (or gone): what it counted last stands
    p.counted = max(p.counted, int(sum(s.value for s in samples if s.name in _COUNTED)))
    return [s.value for s in samples if s.name == "tickpipe_receive_to_commit_seconds_bucket"] or None


def synced_market(db: str, instruments: int) -> list[SimInstrument]:
    """The bench's simulated instruments, their master synced into `db` as in a deployment: ticks carry
    instrument ids (and, from the capture's opening previous closes, their change): a real day's rows."""
    market = make_instruments(instruments, seed=1)
    sync_instruments(db, parse_master("dhan", io.StringIO(dhan_master(market))))
    return market


def run(
    server_url: str, amqp_url: str, ticks: int, rate: float | None, workers: int, instruments: int, timeout_s: float
) -> dict[str, Any]:
    bench_id = uuid.uuid4().hex[:8]
    db = with_database(server_url, f"tickpipe_bench_{bench_id}")
    migrate(db)
    work = Path(tempfile.mkdtemp(prefix="tickpipe-bench-"))
    prefix = f"bench-{bench_id}"
    market = synced_market(db, instruments)
    feed = ThreadedReplay(numbered_capture(ticks, rate, market), speed=0 if rate is None else 1.0)
    env = {
        **os.environ, **feed_environment("dhan", f"ws://127.0.0.1:{feed.port}", market), "DHAN_FEED_MODE": "full",
        "DATABASE_URL": db, "AMQP_URL": amqp_url, "AMQP_PREFIX": prefix, "LOG_FORMAT": "json",
        "INGEST_SPOOL_DIR": str(work / "spool"),
    }  # fmt: skip
    processes: list[Process] = []
    series = Series()
    servers = ServerCpu()
    servers.begin()
    try:
        for name, args in [(f"work-{i}", ["work", "--workers", "1"]) for i in range(workers)] + [
            ("ingest", ["ingest"])
        ]:
            port = free_port()
            out = work / f"{name}.log"
            with out.open("wb") as f:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tickpipe", *args],
                    env={**env, "METRICS_PORT": str(port)},
                    stdout=f,
                    stderr=subprocess.STDOUT,
                )
            processes.append(Process(name, proc, out, port))
        started = ticks_from = time.monotonic()
        ingest = next(p for p in processes if p.name == "ingest")
        previous: list[float] | None = None
        with psycopg.connect(db, autocommit=True) as monitor:  # pg_stat_activity only: no scan of ticks
            while True:
                time.sleep(0.5)
                for p in processes:
                    p.sample()
                servers.sample(monitor)
                scraped = [(p, _scrape(p)) for p in processes]
                buckets = [b for p, b in scraped if p.name.startswith("work")]
                stored = sum(p.counted for p in processes if p.name.startswith("work"))
                if not ingest.counted:  # ingestion has received nothing yet: all spent so far is starting
                    for p in processes:
                        p.cpu_before_ticks = p.cpu_s
                    servers.restart()
                    ticks_from = time.monotonic()
                total = [sum(v) for v in zip(*[b for b in buckets if b], strict=False)] if any(buckets) else None
                series.t.append(time.monotonic() - started)
                series.stored.append(stored)
                interval = [a - b for a, b in zip(total, previous, strict=False)] if total and previous else None
                counts = [int(c) for c in _decumulate(interval)] if interval else None
                series.p50_ms.append(percentile(counts, 50, BOUNDS_MS[-1] * 2) if counts and sum(counts) else None)
                series.p99_ms.append(percentile(counts, 99, BOUNDS_MS[-1] * 2) if counts and sum(counts) else None)
                previous = total or previous
                if stored >= ticks or time.monotonic() - started > timeout_s:
                    break
            feed_cpu_s = feed.cpu_seconds()
            elapsed = time.monotonic() - ticks_from
            servers.sample(monitor)
        for p in processes:
            p.sample()
            p.proc.send_signal(signal.SIGTERM)
        for p in processes:
            p.proc.wait(30)
        with psycopg.connect(db, autocommit=True) as conn:
            numbers = [int(v) for (v,) in conn.execute("select volume from ticks").fetchall()]
            enriched = conn.execute("select count(instrument_id), count(change) from ticks").fetchone() or (0, 0)
            copy_rate, unindexed_rate = _copy_ceiling(conn)
        histograms = [
            json.loads(line)["latency_histogram"]
            for p in processes
            if p.name.startswith("work")
            for line in p.log.read_text().splitlines()
            if '"worker_stopped"' in line
        ]
        counts, max_ms = merge(histograms)
        report = _report(ticks, rate, workers, numbers, series, counts, max_ms, (copy_rate, unindexed_rate), processes)
        report["feed_server_cpu_s"] = round(feed_cpu_s, 2)
        report["postgresql_cpu_s"] = servers.cpu_s(servers.postgres_pids)
        report["rabbitmq_cpu_s"] = servers.cpu_s(servers.rabbitmq_pids)
        report["cpu_budget"] = cpu_budget(report, elapsed)
        report["with_instrument_id"], report["with_change"] = enriched
        return report
    finally:
        for p in processes:
            if p.proc.poll() is None:
                p.proc.kill()
        feed.close()
        cleanup(server_url, db, amqp_url, prefix)
        shutil.rmtree(work, ignore_errors=True)


def cpu_budget(report: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """CPU microseconds a stored tick cost each part, and how busy the ticks kept the machine's cores.

    From the last sample before ingestion received a tick: the processes' start (imports, connecting)
    is not the ticks' cost.
    """
    spent = {name: p["cpu_s_with_ticks"] for name, p in report["processes"].items()}
    spent["feed server"] = report["feed_server_cpu_s"]
    for name, key in (("PostgreSQL", "postgresql_cpu_s"), ("RabbitMQ", "rabbitmq_cpu_s")):
        if report[key] is not None:
            spent[name] = report[key]
    stored = max(report["stored"], 1)
    cores = os.cpu_count() or 1
    return {
        "us_per_tick": {name: round(cpu * 1e6 / stored, 1) for name, cpu in spent.items()},
        "total_us_per_tick": round(sum(spent.values()) * 1e6 / stored, 1),
        "cores": cores,
        "busy_share": round(sum(spent.values()) / (cores * elapsed_s), 2),
    }


def _decumulate(cumulative: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative, strict=True)]


_CEILING_RUNS = 3


def _copy_ceiling(conn: psycopg.Connection[Any]) -> tuple[float, float]:
    """Rows per second of one binary COPY of the stored rows, sent as one pre-built buffer (best of 3).

    Into an identical hypertable (the same columns, primary key and indexes as `ticks`): the ceiling,
    what PostgreSQL can take of these rows at all. And into one with only the hypertable's time index,
    for reference: what the indexes cost.
    """
    data = bytearray()
    # A hypertable's rows live in its chunks: COPY a query (COPY ticks TO reads only the empty parent).
    with conn.cursor().copy("copy (select * from ticks) to stdout (format binary)") as copy:
        for chunk in copy:
            data += chunk
    rows = int((conn.execute("select count(*) from ticks").fetchone() or (0,))[0])
    rates = []
    for table, like in (("copy_ceiling", "including all"), ("copy_unindexed", "including defaults")):
        conn.execute(f"create table {table} (like ticks {like})")
        conn.execute(f"select create_hypertable('{table}', by_range('time', interval '1 day'))")
        best = float("inf")
        for _ in range(_CEILING_RUNS):  # the best of a few: the ceiling is what the server can do
            conn.execute(f"truncate {table}")
            started = time.perf_counter()
            with conn.cursor().copy(f"copy {table} from stdin (format binary)") as copy:
                copy.write(bytes(data))
            best = min(best, time.perf_counter() - started)
        rates.append(rows / best)
        conn.execute(f"drop table {table}")
    return rates[0], rates[1]


def _report(
    ticks: int,
    rate: float | None,
    workers: int,
    numbers: list[int],
    series: Series,
    counts: list[int],
    max_ms: float,
    copy_rates: tuple[float, float],
    processes: list[Process],
) -> dict[str, Any]:
    stored = len(numbers)
    # From the last sample before the first row to the first sample with every row: a whole number of
    # sampling intervals, so a short run is underestimated by at most one interval, never undefined.
    began = max((t for t, n in zip(series.t, series.stored, strict=True) if n == 0), default=0.0)
    done = next((t for t, n in zip(series.t, series.stored, strict=True) if n >= stored), None)
    sustained = stored / (done - began) if done is not None and done > began else None
    copy_rate, unindexed_rate = copy_rates
    return {
        "ticks_sent": ticks,
        "rate": rate or "flat out",
        "workers": workers,
        "stored": stored,
        "exactly_once": sorted(numbers) == list(range(1, ticks + 1)),
        "duplicates": stored - len(set(numbers)),
        "sustained_ticks_per_s": round(sustained) if sustained else None,
        "copy_ceiling_ticks_per_s": round(copy_rate),
        "copy_unindexed_ticks_per_s": round(unindexed_rate),
        "ratio_to_copy": round(sustained / copy_rate, 3) if sustained else None,
        "receive_to_commit_ms": {
            "p50": percentile(counts, 50, max_ms),
            "p95": percentile(counts, 95, max_ms),
            "p99": percentile(counts, 99, max_ms),
            "max": round(max_ms, 1),
            "samples": sum(counts),
        },
        "processes": {
            p.name: {
                "cpu_s": round(p.cpu_s, 2),
                "cpu_s_with_ticks": round(p.cpu_s - p.cpu_before_ticks, 2),
                "peak_rss_mb": round(p.peak_rss_mb, 1),
            }
            for p in processes
        },
        "series": {"t_s": series.t, "stored": series.stored, "p50_ms": series.p50_ms, "p99_ms": series.p99_ms},
    }


def rate_label(rate: float | str) -> str:
    """The rate as words: 'at 10,000/s', or 'flat out'."""
    return rate if isinstance(rate, str) else f"at {rate:,.0f}/s"


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput and receive-to-commit latency over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["series"]
    t, stored = s["t_s"], s["stored"]
    rates = [(b - a) / (tb - ta) for a, b, ta, tb in zip(stored, stored[1:], t, t[1:], strict=False)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(t[1:], rates, color="tab:blue")
    top.set_ylabel("ticks stored / s")
    top.set_title(
        f"tickpipe bench: {report['ticks_sent']:,} ticks {rate_label(report['rate'])}, {report['workers']} worker(s); "
        f"sustained {report['sustained_ticks_per_s'] or 0:,}/s = {report['ratio_to_copy'] or 0:.2f} of COPY"
    )
    for key, color in (("p50_ms", "tab:green"), ("p99_ms", "tab:red")):
        points = [(x, y) for x, y in zip(t, s[key], strict=True) if y is not None]
        if points:
            bottom.plot(*zip(*points, strict=True), color=color, label=key.removesuffix("_ms"))
    bottom.set_ylabel("receive to commit (ms)")
    bottom.set_xlabel("seconds")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
