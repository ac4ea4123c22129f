"""`tickpipe run` as a user starts it: the bundled market's real instruments, enriched from the first tick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from tests.helpers import free_port, wait_until
from tickpipe_brokers import adapter
from tickpipe_brokers.kite.encode import kite_token
from tickpipe_core import Topology
from tickpipe_simulator.brokers import simulated_market
from tickpipe_simulator.market import SimInstrument

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


_ID_OF_COLUMN: dict[str, Callable[[SimInstrument], object]] = {
    "dhan_segment": lambda i: i.segment,
    "dhan_security_id": lambda i: i.security_id,
    "kite_instrument_token": kite_token,
}


def _key_of(instrument: SimInstrument, columns: tuple[str, ...]) -> tuple[object, ...]:
    """A simulated instrument's ids, as the instruments columns that hold them."""
    return tuple(_ID_OF_COLUMN[c](instrument) for c in columns)


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
    market = simulated_market(source, None)
    key = adapter(source).ids.key  # the instruments columns holding this broker's ids
    listed = {_key_of(i, key) for i in market}
    with psycopg.connect(empty_database_url) as conn:
        rows = conn.execute(
            sql.SQL("select distinct {} from ticks join instruments using (instrument_id)").format(
                sql.SQL(", ").join(map(sql.Identifier, key))
            )
        )
        seen = set(rows.fetchall())
        spreads = conn.execute("select count(*) from ticks where spread_bps is not null").fetchone()
    assert len(seen) >= 10 and seen <= listed  # the bundled market's real contracts, mapped to our instruments
    assert spreads is not None and spreads[0] > 0  # enrichment: the book gives a spread
