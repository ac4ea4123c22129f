"""Ticks carry our instrument id from the synced master; unknown broker ids are stored or dropped."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from structlog.testing import capture_logs

from tests.helpers import until
from tests.integration.pipeline import dhan, run_simulated, sync_dhan_lines
from tickpipe_core import Topology
from tickpipe_ingestion.instrument_map import InstrumentMap
from tickpipe_simulator.dhan import DhanSimulator
from tickpipe_simulator.market import make_instruments


def _list_in_master(database_url: str, security_ids: list[int]) -> dict[int, int]:
    return sync_dhan_lines(
        database_url,
        [
            f"NSE,D,{sid},FUTSTK,0,SIM{sid}-Dec2026-FUT,75,SIM {sid},2026-12-31 14:30:00,-0.01,XX,5,M,FUT,,"
            for sid in security_ids
        ],
    )


@pytest.mark.parametrize("unknown", ["store", "drop"])
def test_ticks_carry_the_instrument_id_and_unknown_ids_follow_the_policy(
    database_url: str, amqp_url: str, topology: Topology, unknown: str
) -> None:
    instruments = make_instruments(4, seed=5)
    ids = _list_in_master(database_url, [i.security_id for i in instruments[:3]])  # the 4th is not listed
    simulator = DhanSimulator(instruments, rate=2000, max_ticks=800)

    with capture_logs() as logs:
        run_simulated(
            simulator,
            lambda url: dhan(url, [(i.segment, i.security_id) for i in instruments]),
            database_url=database_url,
            amqp_url=amqp_url,
            topology=topology,
            rows=600 if unknown == "drop" else 800,
            unknown=unknown,
        )
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("select security_id, instrument_id, count(*) from ticks group by 1, 2").fetchall()
    expected: set[tuple[int, int | None, int]] = {(sid, iid, 200) for sid, iid in ids.items()}
    if unknown == "store":
        expected.add((instruments[3].security_id, None, 200))
    assert set(stored) == expected
    unknown_logs = [e for e in logs if e["event"] == "unknown_instrument"]
    assert [e["broker_id"] for e in unknown_logs] == [str(("NSE_FNO", instruments[3].security_id))]  # once


def test_a_reload_picks_up_newly_synced_instruments_without_a_restart(database_url: str) -> None:
    imap = InstrumentMap("dhan")
    imap.load(database_url)
    assert imap.get(("NSE_FNO", 40000)) is None
    ids = _list_in_master(database_url, [40000])

    async def reload_on_demand() -> None:
        now = asyncio.Event()
        task = asyncio.create_task(imap.keep_fresh(database_url, 3600, now))
        now.set()  # what SIGHUP does
        await until(lambda: imap.loads >= 2, "the reload SIGHUP asks for")
        task.cancel()

    asyncio.run(reload_on_demand())
    assert imap.get(("NSE_FNO", 40000)) == ids[40000]
