"""`tickpipe status`: one screen a trader can read at a glance, gathered from every part that knows.

The database (feed sessions, the newest stored tick, rows per second, gaps, size and chunks),
RabbitMQ (queue depths and consumers), ingestion's /metrics when METRICS_PORT is set (ticks/s read
from the feed), and the local spool. A part that cannot be reached is shown as such; it never stops
the rest of the screen.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import psycopg
from prometheus_client.samples import Sample

from tickpipe_core import Topology
from tickpipe_core.india import IST
from tickpipe_core.metrics import scrape
from tickpipe_core.settings import redact_url


def collect(
    database_url: str, amqp_url: str, topology: Topology, spool_dir: Path, metrics_port: int, min_gap_s: float = 30
) -> dict[str, Any]:
    return {
        "at": datetime.now(UTC).isoformat(),
        "database": _database(database_url, min_gap_s),
        "queues": _queues(amqp_url, topology),
        "ingestion": _ingestion_rate(metrics_port) if metrics_port else None,
        "spool": _spool(spool_dir),
    }


def _database(url: str, min_gap_s: float) -> dict[str, Any]:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            one = conn.execute
            sessions = one(
                "select source, connection, host, started_at, ended_at, end_reason, ticks from feed_sessions"
                " where ended_at is null or ended_at > now() - interval '1 day'"
                " order by ended_at is not null, started_at desc limit 8"
            ).fetchall()
            newest = one("select max(time), max(receive_time) from latest_quotes").fetchone() or (None, None)
            stored = one("select count(*) from ticks where receive_time > now() - interval '10 seconds'").fetchone()
            instruments = one(
                "select count(*), count(*) filter (where receive_time < now() - interval '60 seconds')"
                " from latest_quotes"
            ).fetchone() or (0, 0)
            gaps = one(
                "select segment, security_id, gap_start, gap_end, seconds, cause"
                " from analytics.gaps(now() - interval '1 hour', min_silence => make_interval(secs => %s))"
                " order by gap_start desc limit 5",
                [min_gap_s],
            ).fetchall()
            size = one(
                "select pg_database_size(current_database()), (select count(*) from show_chunks('ticks'))"
            ).fetchone() or (0, 0)
            timescaledb = _timescaledb(conn)
    except psycopg.Error as e:
        return {"error": f"{redact_url(url)}: {type(e).__name__}: {str(e).strip().splitlines()[0]}"}
    now = datetime.now(UTC)
    return {
        "url": redact_url(url),
        "feeds": [
            {
                "source": s[0],
                "connection": s[1],
                "host": s[2],
                "started": s[3].isoformat(),
                "ended": s[4].isoformat() if s[4] else None,
                "end_reason": s[5],
                "ticks": s[6],
            }
            for s in sessions
        ],
        "stored_per_s": round((stored[0] if stored else 0) / 10, 1),
        "lag_s": round((now - newest[0]).total_seconds(), 1) if newest[0] else None,
        "newest_tick": newest[0].isoformat() if newest[0] else None,
        "instruments": instruments[0],
        "instruments_silent_60s": instruments[1],
        "gaps": [
            {
                "instrument": f"{g[0]}:{g[1]}",
                "start": g[2].isoformat(),
                "end": g[3].isoformat(),
                "seconds": round(g[4], 1),
                "cause": g[5],
            }
            for g in gaps
        ],
        "size_bytes": size[0],
        "tick_chunks": size[1],
        "timescaledb": timescaledb,
    }


def _timescaledb(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, Any]:
    """The edition, compressed chunks, and the policies that keep candles, compression and retention.

    On the Apache edition there are none: `tickpipe maintain` does their work.
    """
    one = conn.execute
    version, license_ = one(
        "select extversion, current_setting('timescaledb.license', true) from pg_extension"
        " where extname = 'timescaledb'"
    ).fetchone() or (None, None)
    compressed = one(
        "select count(*) filter (where is_compressed) from timescaledb_information.chunks"
        " where hypertable_name = 'ticks'"
    ).fetchone()
    policies = one(
        "select j.job_id, j.proc_name, coalesce(c.view_schema || '.' || c.view_name, j.hypertable_name),"
        "       extract(epoch from j.schedule_interval), j.scheduled, s.last_run_status,"
        # next_start is -infinity while a job runs or waits for its first start: Python has no such time.
        "       case when isfinite(s.next_start) then s.next_start end"
        " from timescaledb_information.jobs j"
        " left join timescaledb_information.job_stats s using (job_id)"
        " left join timescaledb_information.continuous_aggregates c"
        "   on c.materialization_hypertable_name = j.hypertable_name"
        " where j.hypertable_name is not null order by 2, 3"
    ).fetchall()
    community = license_ == "timescale"
    return {
        "version": version,
        "edition": "community" if community else "apache",
        "compressed_chunks": compressed[0] if compressed else 0,
        "candles_kept_by": "continuous aggregate policies" if community else "tickpipe maintain",
        "policies": [
            {
                "job": p[0],
                "policy": p[1].removeprefix("policy_"),
                "relation": p[2],
                "every_s": float(p[3]),
                "scheduled": p[4],
                "last_run": p[5],
                "next_start": p[6].isoformat() if p[6] else None,
            }
            for p in policies
        ],
    }


def _queues(url: str, topology: Topology) -> dict[str, Any]:
    async def depths() -> dict[str, Any]:
        connection = await aio_pika.connect(url, timeout=5)
        async with connection:
            channel = await connection.channel()
            out: dict[str, Any] = {}
            for name in (topology.ticks_queue, topology.dead_queue, topology.orders_queue):
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    channel = await connection.channel()
                    out[name] = None
                    continue
                result = queue.declaration_result
                out[name] = {"messages": result.message_count, "consumers": result.consumer_count}
            return out

    try:
        return asyncio.run(depths())
    except Exception as e:  # unreachable, refused, timed out: shown, never a traceback
        return {"error": f"{redact_url(url)}: {type(e).__name__}: {e}"}


def _ingestion_rate(port: int) -> dict[str, Any]:
    """Ticks/s read from the feed, from two scrapes of ingestion's /metrics a second apart."""

    try:
        first = scrape(port)
        time.sleep(1.0)
        second = scrape(port)
    except OSError as e:
        return {"error": f"ingestion metrics on port {port}: {type(e).__name__}"}

    def total(samples: list[Sample], name: str) -> float:
        return sum(s.value for s in samples if s.name == name)

    received = total(second, "tickpipe_ticks_received_total")
    connected = {s.labels["connection"]: bool(s.value) for s in second if s.name == "tickpipe_feed_connected"}
    return {
        "received_per_s": received - total(first, "tickpipe_ticks_received_total"),
        "received_total": received,
        "published_total": total(second, "tickpipe_ticks_published_total"),
        "amqp_connected": bool(total(second, "tickpipe_amqp_connected")),
        "connections": connected,
    }


def _spool(directory: Path) -> dict[str, Any] | None:
    from tickpipe_ingestion.spool import inspect

    if not directory.exists():
        return None
    found = inspect(directory)
    return {
        "dir": str(directory),
        "ticks": found.ticks,
        "bytes": found.bytes,
        "torn": found.torn,
        "damaged_bytes": found.skipped_bytes,
        "quarantined": found.quarantined,
    }


def render(status: dict[str, Any]) -> str:
    """The screen: feeds, flow, queues, spool, gaps, database."""
    now = datetime.fromisoformat(status["at"]).astimezone(IST)
    lines = [f"tickpipe status  {now:%Y-%m-%d %H:%M:%S} IST", ""]
    db = status["database"]
    ing = status["ingestion"]
    lines.append("FEEDS")
    if "error" in db:
        lines.append(f"  database unreachable: {db['error']}")
    else:
        if not db["feeds"]:
            lines.append("  no feed session in the last day")
        for f in db["feeds"]:
            started = _clock(f["started"])
            state = f"open since {started}" if f["ended"] is None else f"ended {_clock(f['ended'])}: {f['end_reason']}"
            lines.append(f"  {f['connection']:<8} {f['source']:<5} {f['host']:<16} {state}")
    if ing is not None:
        if "error" in ing:
            lines.append(f"  ingestion: {ing['error']}")
        else:
            rabbit = "connected" if ing["amqp_connected"] else "NOT CONNECTED (spooling)"
            lines.append(f"  ingestion reads {ing['received_per_s']:,.0f} ticks/s; RabbitMQ {rabbit}")
    lines.append("")
    lines.append("FLOW")
    if "error" not in db:
        lag = "-" if db["lag_s"] is None else f"{db['lag_s']:,.1f} s"
        lines.append(
            f"  stored   {db['stored_per_s']:,.1f} ticks/s (last 10 s)   lag {lag}   newest {_clock(db['newest_tick'])}"
        )
        lines.append(f"  instruments {db['instruments']:,} quoted, {db['instruments_silent_60s']:,} silent for 60 s+")
    queues = status["queues"]
    if "error" in queues:
        lines.append(f"  RabbitMQ unreachable: {queues['error']}")
    else:
        for name, q in queues.items():
            shown = "missing" if q is None else f"{q['messages']:,} waiting, {q['consumers']} consumer(s)"
            lines.append(f"  {name:<28} {shown}")
    spool = status["spool"]
    if spool is not None:
        torn = f", {spool['torn']} damaged" if spool["torn"] else ""
        torn += f", {spool['quarantined']} file(s) in quarantine" if spool["quarantined"] else ""
        lines.append(f"  spool    {spool['ticks']:,} ticks unconfirmed, {spool['bytes'] / 2**20:,.1f} MiB{torn}")
    if "error" not in db:
        lines.append("")
        lines.append("GAPS (last hour)")
        if not db["gaps"]:
            lines.append("  none")
        for g in db["gaps"]:
            span = f"{_clock(g['start'])} -> {_clock(g['end'])}"
            lines.append(f"  {g['instrument']:<18} {span}  {g['seconds']:>7,.1f} s  {g['cause']}")
        lines.append("")
        lines.append(f"DATABASE  {db['size_bytes'] / 2**30:,.2f} GiB, {db['tick_chunks']} tick chunk(s)   {db['url']}")
        ts = db["timescaledb"]
        lines.append(
            f"  TimescaleDB {ts['version']} {ts['edition']} edition, {ts['compressed_chunks']} compressed chunk(s);"
            f" candles kept by {ts['candles_kept_by']}"
        )
        for p in ts["policies"]:
            last = p["last_run"] or "not run yet"
            lines.append(f"  {p['policy']:<34} {p['relation']:<30} every {p['every_s']:,.0f} s, last: {last}")
    return "\n".join(lines)


def _clock(iso: str | None) -> str:
    return "-" if iso is None else f"{datetime.fromisoformat(iso).astimezone(IST):%H:%M:%S}"
