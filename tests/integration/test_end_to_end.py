"""Simulator -> ingestion -> RabbitMQ -> worker -> hypertable, over real sockets and servers."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from tests.integration.pipeline import dhan, run_simulated
from tickpipe_brokers.dhan.wire import IST_OFFSET_SECONDS
from tickpipe_core import Topology
from tickpipe_simulator.dhan import DhanSimulator
from tickpipe_simulator.market import f32, make_instruments


def test_rows_in_the_hypertable_are_exactly_the_ticks_the_simulator_sent(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    total = 3000
    instruments = make_instruments(7, seed=11)
    simulator = DhanSimulator(instruments, rate=3000, max_ticks=total, record=True)

    run_simulated(
        simulator,
        lambda url: dhan(url, [(i.segment, i.security_id) for i in instruments]),
        database_url=database_url,
        amqp_url=amqp_url,
        topology=topology,
        rows=total,
    )

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select security_id, segment, time, time_source, packet, ltp, ltq, atp, volume, total_buy_qty,"
            " total_sell_qty, oi, oi_day_high, oi_day_low, open, high, low, close, prev_close,"
            " bid_price, bid_qty, bid_orders, ask_price, ask_qty, ask_orders, source, receive_time"
            " from ticks order by security_id, volume"
        ).fetchall()
    prev_close = {i.security_id: f32(i.prev_close) for i in instruments}
    expected = sorted(simulator.sent, key=lambda s: (s.quote.security_id, s.quote.volume))
    assert len(rows) == len(expected) == total
    for row, sent in zip(rows, expected, strict=True):
        q = sent.quote
        assert row[:19] == (
            q.security_id,
            q.segment,
            datetime.fromtimestamp(sent.ltt - IST_OFFSET_SECONDS, UTC),
            "exchange",
            "full",
            q.ltp,
            q.ltq,
            q.atp,
            q.volume,
            q.total_buy_qty,
            q.total_sell_qty,
            q.oi,
            q.oi_high,
            q.oi_low,
            q.open,
            q.high,
            q.low,
            q.close,
            prev_close[q.security_id],
        )
        assert row[19:25] == (q.bid_price, q.bid_qty, q.bid_orders, q.ask_price, q.ask_qty, q.ask_orders)
        assert row[25] == "dhan"
        assert abs((row[26] - row[2]).total_seconds()) < 5
