"""Running a test on both TimescaleDB editions, and what differs between them for a test.

`@pytest.mark.parametrize("edition", EDITIONS)` (or a module's `pytestmark`) runs a test on the shared
cluster (Apache-2 edition, marked `apache`) and on a scratch Community-edition cluster (marked
`community`): its `database_url` and `empty_database_url` are then on that edition.
"""

from __future__ import annotations

import psycopg
import pytest

from tickpipe_analytics.maintain import LEVELS, maintain_once
from tickpipe_core.db import timescaledb_license
from tickpipe_core.settings import AnalyticsSettings

EDITIONS = [
    pytest.param("apache", marks=pytest.mark.apache, id="apache"),
    pytest.param("community", marks=pytest.mark.community, id="community"),
]


def is_community(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return timescaledb_license(conn) == "timescale"


def ticks_ltq_type_and_compression(database_url: str) -> tuple[str, bool]:
    """The `ltq` column's type and whether compression is on for `ticks`."""
    with psycopg.connect(database_url) as conn:
        ltq = conn.execute(
            "select data_type from information_schema.columns where table_name = 'ticks' and column_name = 'ltq'"
        ).fetchone()
        compression = conn.execute(
            "select compression_enabled from timescaledb_information.hypertables where hypertable_name = 'ticks'"
        ).fetchone()
    assert ltq is not None and compression is not None
    return str(ltq[0]), bool(compression[0])


def policy_jobs(database_url: str, proc_name: str) -> list[tuple[int, str]]:
    """(job id, relation) of the policies of a kind, candle aggregates in level order (1s first)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select j.job_id, coalesce(c.view_schema || '.' || c.view_name, j.hypertable_name)"
            " from timescaledb_information.jobs j"
            " left join timescaledb_information.continuous_aggregates c"
            "   on c.materialization_hypertable_name = j.hypertable_name"
            " where j.proc_name = %s",
            (proc_name,),
        ).fetchall()
    order = {f"analytics._candles_{level}_cagg": i for i, level in enumerate(LEVELS)}
    return sorted(((int(job), str(rel)) for job, rel in rows), key=lambda r: (order.get(r[1], -1), r[1]))


def run_jobs(database_url: str, proc_name: str) -> int:
    """Run every policy job of a kind now, as the scheduler would; how many ran."""
    jobs = policy_jobs(database_url, proc_name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for job, _ in jobs:
            conn.execute("call run_job(%s)", (job,))
    return len(jobs)


def refresh_candles(database_url: str, settings: AnalyticsSettings) -> None:
    """Fold stored ticks into the materialized candles the way a deployment does it: `tickpipe maintain`,
    and on the Community edition first the continuous aggregates' refresh policies (their recent windows;
    maintain refreshes the history before them)."""
    if is_community(database_url):
        assert run_jobs(database_url, "policy_refresh_continuous_aggregate") == len(LEVELS)
    maintain_once(database_url, settings)
