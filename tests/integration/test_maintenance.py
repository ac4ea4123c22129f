"""Keeping the database within its settings, on both TimescaleDB editions: retention drops exactly what
the settings say (ticks and candles each by their own age), and `tickpipe status` names the edition and
the policies that do the keeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.editions import EDITIONS, is_community, run_jobs
from tests.helpers import make_tick
from tickpipe_analytics.maintain import LEVELS, maintain_once
from tickpipe_core import Tick
from tickpipe_core.settings import AnalyticsSettings
from tickpipe_workers import TickWriter

pytestmark = pytest.mark.parametrize("edition", EDITIONS)

INSTRUMENT = 11


def _write(database_url: str, ticks: list[Tick]) -> None:
    async def write() -> None:
        writer = TickWriter(database_url)
        try:
            await writer.write(ticks)
        finally:
            await writer.close()

    asyncio.run(write())


def _materialize_everything(database_url: str) -> None:
    """Every candle level materialized over all stored ticks, as a deployment did while they were new."""
    if not is_community(database_url):
        maintain_once(database_url, AnalyticsSettings(), rebuild=True)
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        for level in LEVELS:
            conn.execute(f"call refresh_continuous_aggregate('analytics._candles_{level}_cagg', null, null)")


def _stored(database_url: str) -> tuple[list[float], dict[str, list[float]]]:
    """The ticks' prices, and each candle level's closes, oldest first."""
    with psycopg.connect(database_url) as conn:
        ticks = [r[0] for r in conn.execute("select ltp from ticks order by time").fetchall()]
        candles = {
            level: [
                r[0]
                for r in conn.execute(
                    f"select close from analytics.candles_{level} where instrument_id = %s order by time",
                    (INSTRUMENT,),
                ).fetchall()
            ]
            for level in LEVELS
        }
    return ticks, candles


def test_retention_drops_ticks_and_candles_past_their_own_ages_and_nothing_else(database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ages = {90: 101.0, 40: 102.0, 1: 103.0}  # days old -> the tick's price (one tick a day, numbered by price)
    _write(
        database_url,
        [
            make_tick(
                instrument_id=INSTRUMENT, time=now - timedelta(days=d), receive_time=now - timedelta(days=d), ltp=p
            )
            for d, p in ages.items()
        ],
    )
    _materialize_everything(database_url)
    assert _stored(database_url) == ([101.0, 102.0, 103.0], {level: [101.0, 102.0, 103.0] for level in LEVELS})

    settings = AnalyticsSettings(ticks_retention_days=30, candles_retention_days=60)
    maintain_once(database_url, settings)
    if is_community(database_url):  # maintain set the retention policies; the scheduler runs them
        assert run_jobs(database_url, "policy_retention") == 1 + len(LEVELS)
    # Ticks older than 30 days are gone; candles keep the 40-day-old tick's buckets until 60 days.
    assert _stored(database_url) == ([103.0], {level: [102.0, 103.0] for level in LEVELS})


def _status(database_url: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "status", "--format", "json"],
        env={**os.environ, "DATABASE_URL": database_url, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    database: dict[str, Any] = json.loads(result.stdout)["database"]
    assert "error" not in database, database["error"]
    return database


def test_status_names_the_edition_and_the_policies_that_keep_the_data(database_url: str, edition: str) -> None:
    maintain_once(database_url, AnalyticsSettings(ticks_retention_days=30))
    found = _status(database_url)["timescaledb"]
    policies = sorted((p["policy"], p["relation"]) for p in found["policies"])
    if edition == "community":
        assert found["edition"] == "community"
        assert found["candles_kept_by"] == "continuous aggregate policies"
        assert policies == sorted(
            [("compression", "ticks"), ("retention", "ticks")]
            + [("refresh_continuous_aggregate", f"analytics._candles_{level}_cagg") for level in LEVELS]
        )
    else:
        assert (found["edition"], found["candles_kept_by"], policies) == ("apache", "tickpipe maintain", [])
    assert found["version"]
