"""`tickpipe run` as a user starts it: the bundled market's real instruments, enriched from the first tick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg
import pytest

from tests.helpers import free_port, wait_until
from tickpipe_core import Topology
from tickpipe_simulator.bundled import bundled_market
from tickpipe_simulator.kite import kite_token

pytestmark = pytest.mark.integration  # it needs the services too


def _stored(url: str, source: str) -> tuple[int, int]:
    """(ticks, ticks without an instrument id) of `source`; (0, 0) while the database is not there yet."""
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "select count(*), count(*) filter (where instrument_id is null) from ticks where source = %s",
                (source,),
            ).fetchone()
    except psycopg.Error:
        return 0, 0
    assert row is not None
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("source", ["dhan", "kite"])
def test_tickpipe_run_stores_enriched_ticks_of_real_instruments_and_stops_cleanly_on_sigterm(
    empty_database_url: str, amqp_url: str, topology: Topology, source: str
) -> None:
    env = {
        **os.environ,
        "DATA_SOURCE": source,
        "DATABASE_URL": empty_database_url,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": topology.prefix,
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "run", "--workers", "2", "--rate", "300", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _stored(empty_database_url, source)[0] >= 200, "200 stored ticks", timeout=60, interval=0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = output.decode()
    assert proc.returncode == 0, log[-3000:]
    for child in ("ingest", "worker-0", "worker-1", "maintain", "simulator"):
        assert f'"child": "{child}", "exit_code": 0' in log, child
    assert "psql " in log  # it says where to look

    stored, unknown = _stored(empty_database_url, source)
    assert stored >= 200 and unknown == 0  # every tick carries our instrument id, from the first one
    market = bundled_market("kite" if source == "kite" else "dhan")
    listed = {(i.segment, i.security_id) if source == "dhan" else kite_token(i) for i in market}
    with psycopg.connect(empty_database_url) as conn:
        if source == "dhan":
            rows = conn.execute(
                "select distinct dhan_segment, dhan_security_id from ticks join instruments using (instrument_id)"
            )
            seen = set(rows.fetchall())
        else:
            rows = conn.execute(
                "select distinct kite_instrument_token from ticks join instruments using (instrument_id)"
            )
            seen = {r[0] for r in rows.fetchall()}
        spreads = conn.execute("select count(*) from ticks where spread_bps is not null").fetchone()
    assert len(seen) >= 10 and seen <= listed  # the bundled market's real contracts, mapped to our instruments
    assert spreads is not None and spreads[0] > 0  # enrichment: the book gives a spread
