"""DATA_SOURCE switches the whole pipeline: the same simulated market, once over Dhan's protocol and
once over Kite's, lands in the same table with the same instruments and the same enrichment."""

from __future__ import annotations

import io
from collections.abc import Callable

import psycopg

from tests.helpers import COMPACT_HEADER
from tests.integration.pipeline import dhan, kite, run_simulated
from tickpipe_brokers.kite.encode import kite_token
from tickpipe_core import Topology
from tickpipe_ingestion.service import Broker
from tickpipe_instruments import parse_master, sync_instruments
from tickpipe_simulator.dhan import DhanSimulator
from tickpipe_simulator.kite import KiteSimulator
from tickpipe_simulator.market import SimInstrument, make_instruments
from tickpipe_simulator.server import SimulatorServer

KITE_HEADER = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
    "instrument_type,segment,exchange"
)
TICKS = 600


def _masters(database_url: str, instruments: list[SimInstrument]) -> None:
    """Both brokers list the simulated futures: same exchange and exchange token, so one instrument each."""
    dhan_rows = [
        f"NSE,D,{i.security_id},FUTSTK,0,SIM{i.security_id}-Dec2026-FUT,75,SIM,2026-12-31 14:30:00,-0.01,XX,5,M,FUT,,"
        for i in instruments
    ]
    kite_rows = [
        f"{kite_token(i)},{i.security_id},SIM{i.security_id}26DECFUT,SIM{i.security_id},0.0,2026-12-31,0.0,0.05,75,"
        "FUT,NFO-FUT,NFO"
        for i in instruments
    ]
    sync_instruments(database_url, parse_master("dhan", io.StringIO("\n".join([COMPACT_HEADER, *dhan_rows]))))
    report = sync_instruments(database_url, parse_master("kite", io.StringIO("\n".join([KITE_HEADER, *kite_rows]))))
    assert report.merged == len(instruments)


def _run(
    simulator: type[SimulatorServer],
    broker: Callable[[str, list[SimInstrument]], Broker],
    stored: int,
    database_url: str,
    amqp_url: str,
    topology: Topology,
) -> None:
    """Serve the market over one broker's protocol until `stored` ticks are in the table."""
    instruments = make_instruments(3, seed=21)  # the same seed: the same trades on both protocols
    run_simulated(
        simulator(instruments, rate=2000, max_ticks=TICKS, packets_per_frame=3),
        lambda url: broker(url, instruments),
        database_url=database_url,
        amqp_url=amqp_url,
        topology=topology,
        rows=stored,
    )


def _dhan(url: str, instruments: list[SimInstrument]) -> Broker:
    return dhan(url, [(i.segment, i.security_id) for i in instruments])


def _kite(url: str, instruments: list[SimInstrument]) -> Broker:
    return kite(url, [kite_token(i) for i in instruments])


def test_dhan_then_kite_fill_one_table_with_the_same_instruments_and_enrichment(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    _masters(database_url, make_instruments(3, seed=21))
    _run(DhanSimulator, _dhan, TICKS, database_url, amqp_url, topology)
    _run(KiteSimulator, _kite, 2 * TICKS, database_url, amqp_url, topology)  # the table holds both

    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            "select source, count(*), count(instrument_id) from ticks group by 1 order by 1"
        ).fetchall()
        pairs = conn.execute(
            "select d.instrument_id, d.ltp, k.ltp, d.prev_close, k.prev_close, d.change, k.change,"
            " d.spread, k.spread, d.mid, k.mid, d.imbalance, k.imbalance, d.book_imbalance, k.book_imbalance,"
            " d.bid_qty, k.bid_qty, d.segment, k.segment"
            " from ticks d join ticks k on k.instrument_id = d.instrument_id and k.volume = d.volume"
            " and k.source = 'kite' where d.source = 'dhan'"
        ).fetchall()
    assert counts == [("dhan", TICKS, TICKS), ("kite", TICKS, TICKS)]  # every tick tied to an instrument
    assert len(pairs) == TICKS  # each trade found once per broker, under the same instrument id
    for p in pairs:
        (_, d_ltp, k_ltp, d_prev, k_prev, d_chg, k_chg, d_spr, k_spr, d_mid, k_mid) = p[:11]
        # Dhan carries prices as float32, Kite as integer paise: the same price to within half a paisa.
        assert abs(d_ltp - k_ltp) < 0.005 and abs(d_prev - k_prev) < 0.005
        assert abs(d_chg - k_chg) < 0.01 and abs(d_spr - k_spr) < 0.01 and abs(d_mid - k_mid) < 0.005
        assert p[11:17:2] == p[12:17:2]  # quantity-based enrichment and depth are identical
        assert (p[17], p[18]) == ("NSE_FNO", "NFO")
