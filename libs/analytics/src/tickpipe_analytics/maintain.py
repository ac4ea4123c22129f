"""`tickpipe maintain`: keep the analytics schema fresh and the hypertable within its retention.

On the Apache edition this is what continuous aggregates and policies do on the Community edition:
it refreshes each candle level incrementally (analytics.refresh_candles), drops tick chunks older
than TICKS_RETENTION_DAYS and candles older than CANDLES_RETENTION_DAYS. On the Community edition
the refresh policies of migration 0007 keep each level's recent window fresh; maintain refreshes the
history before those windows (ticks stored before the first refresh, or later than a window reaches,
which a policy never looks at again) and sets retention policies from the same settings. On both it
keeps the ticks chunk interval at TICKS_CHUNK_HOURS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from tickpipe_core import get_logger
from tickpipe_core.db import timescaledb_license
from tickpipe_core.settings import AnalyticsSettings

log = get_logger("maintain")

LEVELS = ("1s", "1m", "5m", "15m", "1h", "1d")


@dataclass
class MaintainReport:
    edition: str
    refreshed: dict[str, int] = field(default_factory=dict)
    """Candle rows written per level (Apache edition)."""
    history_refreshed: list[str] = field(default_factory=list)
    """Levels whose history before their policy's window was refreshed (Community edition)."""
    dropped_chunks: int = 0
    deleted_candles: int = 0
    seconds: float = 0.0


Conn = psycopg.Connection[tuple[Any, ...]]


def maintain_once(
    database_url: str, settings: AnalyticsSettings, *, rebuild: bool = False, policies: bool = True
) -> MaintainReport:
    """One maintenance cycle; `rebuild` recomputes every materialized candle from the first tick.

    `policies`: (re)apply the Community edition's retention policies from the settings (once per run
    is enough; they then act on their own).
    """
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = MaintainReport(timescaledb_license(conn))
        _chunk_interval(conn, settings.ticks_chunk_hours)
        if report.edition == "timescale":
            report.history_refreshed = _community_history(conn, rebuild)
            if policies:
                _community_retention(conn, settings)
        else:
            if rebuild:
                conn.execute("update analytics._watermarks set materialized_until = '-infinity'")
            for level in LEVELS:  # each level in its own transaction; wider levels read the 1m level
                row = conn.execute(
                    "select analytics.refresh_candles(%s, make_interval(secs => %s))",
                    (level, settings.analytics_late_s),
                ).fetchone()
                report.refreshed[level] = int(row[0]) if row else 0
            _apache_retention(conn, settings, report)
    report.seconds = time.perf_counter() - started
    return report


def _chunk_interval(conn: Conn, hours: int) -> None:
    row = conn.execute(
        "select time_interval from timescaledb_information.dimensions"
        " where hypertable_name = 'ticks' and column_name = 'time'"
    ).fetchone()
    wanted = f"{hours} hours"
    if row is not None and row[0] is not None and row[0].total_seconds() != hours * 3600:
        conn.execute("select set_chunk_time_interval('ticks', %s::interval)", (wanted,))
        log.info("chunk_interval_set", hours=hours)


def _apache_retention(conn: Conn, settings: AnalyticsSettings, report: MaintainReport) -> None:
    if settings.ticks_retention_days:
        rows = conn.execute(
            "select drop_chunks('ticks', older_than => make_interval(days => %s))", (settings.ticks_retention_days,)
        ).fetchall()
        report.dropped_chunks = len(rows)
    if settings.candles_retention_days:
        for level in LEVELS:
            cur = conn.execute(
                sql.SQL("delete from analytics.{} where bucket < now() - make_interval(days => %s)").format(
                    sql.Identifier(f"_candles_{level}_store")
                ),
                (settings.candles_retention_days,),
            )
            report.deleted_candles += cur.rowcount


def _community_history(conn: Conn, rebuild: bool) -> list[str]:
    """Refresh each candle aggregate, finest first, over everything before its policy's window.

    A refresh policy only looks at its window (the 1s level's last ten minutes): ticks stored before
    the first refresh, or stored later than the window reaches, would otherwise never reach that
    level's materialized candles. Only ranges with such ticks are recomputed, so a cycle with none
    costs little; `rebuild` recomputes every bucket up to the policy's end instead.
    """
    windows = {
        relation: (start_offset, end_offset)
        for relation, start_offset, end_offset in conn.execute(
            "select c.view_schema || '.' || c.view_name, (j.config->>'start_offset')::interval,"
            "       (j.config->>'end_offset')::interval"
            " from timescaledb_information.jobs j join timescaledb_information.continuous_aggregates c"
            "   on c.materialization_hypertable_name = j.hypertable_name"
            " where j.proc_name = 'policy_refresh_continuous_aggregate'"
        ).fetchall()
    }
    done = []
    for level in LEVELS:
        relation = f"analytics._candles_{level}_cagg"
        if relation not in windows:  # no policy on this level: nothing is refreshed behind it
            continue
        start_offset, end_offset = windows[relation]
        until = end_offset if rebuild else start_offset
        conn.execute(
            "call refresh_continuous_aggregate(%s::regclass, null, now() - %s::interval, force => %s)",
            (relation, until, rebuild),
        )
        done.append(level)
    return done


def _community_retention(conn: Conn, settings: AnalyticsSettings) -> None:
    """Retention policies on ticks and every candle aggregate, replaced when the setting changes."""
    targets = [("ticks", settings.ticks_retention_days)] + [
        (f"analytics._candles_{level}_cagg", settings.candles_retention_days) for level in LEVELS
    ]
    for relation, days in targets:
        conn.execute("select remove_retention_policy(%s::regclass, if_exists => true)", (relation,))
        if days:
            conn.execute("select add_retention_policy(%s::regclass, make_interval(days => %s))", (relation, days))


async def maintain_forever(database_url: str, settings: AnalyticsSettings, stop: asyncio.Event) -> None:
    """A cycle every MAINTAIN_INTERVAL_S until `stop`; a failed cycle is logged and the next one tries again."""
    first = True
    while not stop.is_set():
        try:
            report = await asyncio.to_thread(maintain_once, database_url, settings, policies=first)
            first = False
            log.info(
                "maintain_cycle",
                edition=report.edition,
                seconds=round(report.seconds, 3),
                dropped_chunks=report.dropped_chunks,
                deleted_candles=report.deleted_candles,
                **{f"candles.{k}": v for k, v in report.refreshed.items()},
            )
        except psycopg.Error as e:
            log.warning("maintain_failed", error=f"{type(e).__name__}: {str(e).strip().splitlines()[0]}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.maintain_interval_s)
