"""The analytics schema against a straightforward Python computation, on simulator data written as ticks.

Candles across an India trading-day boundary (the cumulative volume restarts), late ticks folded in
by the next refresh, a tick committed a moment ago visible in the 1m candle at once, tick bars,
spread statistics, the option chain and breadth. Every test runs on both TimescaleDB editions: candles
are `tickpipe maintain`'s tables on Apache and continuous aggregates with refresh policies on Community.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from msgspec.structs import replace
from psycopg import sql
from psycopg.rows import dict_row

from tests import analytics_reference as ref
from tests.editions import EDITIONS, refresh_candles
from tests.helpers import make_tick
from tests.integration.pipeline import sync_dhan_lines
from tickpipe_core import Tick
from tickpipe_core.settings import AnalyticsSettings
from tickpipe_simulator.market import SimInstrument
from tickpipe_workers import TickWriter

INSTRUMENT = 7
pytestmark = pytest.mark.parametrize("edition", EDITIONS)


def _simulated_day(day_start_utc: datetime, minutes: int, seed: int) -> list[Tick]:
    """A simulated instrument's quotes, one or a few per second, as full ticks of `INSTRUMENT`.

    Times are whole seconds (as the exchange's clock is); several ticks share a second.
    """
    sim = SimInstrument("NSE_FNO", 40000, prev_close=25000.0, rng=random.Random(seed))
    rng = random.Random(seed + 1)
    ticks, t = [], day_start_utc
    while t < day_start_utc + timedelta(minutes=minutes):
        q = sim.step()
        received = t + timedelta(milliseconds=rng.randint(1, 900))
        ticks.append(
            make_tick(
                security_id=40000,
                instrument_id=INSTRUMENT,
                time=t,
                receive_time=received,
                ltp=q.ltp,
                volume=q.volume,
                atp=q.atp,
                oi=q.oi,
                bid_price=tuple(q.bid_price),
                bid_qty=tuple(q.bid_qty),
                ask_price=tuple(q.ask_price),
                ask_qty=tuple(q.ask_qty),
                spread_bps=(q.ask_price[0] - q.bid_price[0]) / ((q.ask_price[0] + q.bid_price[0]) / 2) * 1e4,
                imbalance=(q.bid_qty[0] - q.ask_qty[0]) / (q.bid_qty[0] + q.ask_qty[0]),
            )
        )
        t += timedelta(seconds=rng.choice((0, 1, 1, 2, 5)))
    return ticks


def _write(database_url: str, ticks: list[Tick]) -> None:
    async def write() -> None:
        writer = TickWriter(database_url)
        try:
            for i in range(0, len(ticks), 500):
                await writer.write(ticks[i : i + 500])
        finally:
            await writer.close()

    asyncio.run(write())


def _ref(ticks: list[Tick]) -> list[ref.RefTick]:
    return [ref.RefTick(t.time, t.receive_time, t.ltp, t.volume, t.atp, t.oi) for t in ticks]


def _view(database_url: str, level: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    query = sql.SQL(
        "select time, open, high, low, close, volume, vwap, ticks, oi_open, oi_close from analytics.{}"
        " where instrument_id = %s and time >= %s and time < %s order by time"
    ).format(sql.Identifier(f"candles_{level}"))
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(query, (INSTRUMENT, start, end)).fetchall()


def _approx(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """VWAPs compared to 12 significant digits (the turnover sums differ in the last bits); the rest exactly."""
    return [{**r, "vwap": None if r["vwap"] is None else float(f"{r['vwap']:.12g}")} for r in rows]


SETTINGS = AnalyticsSettings(analytics_late_s=3600)


def test_candles_across_a_trading_day_boundary_restart_the_volume_and_match_the_reference(database_url: str) -> None:
    # The last minutes of one session and the first of the next (09:15 IST = 03:45 UTC).
    day1 = _simulated_day(datetime(2026, 3, 9, 9, 50, tzinfo=UTC), 10, seed=1)  # 15:20-15:30 IST
    # The next day's cumulative volume starts from the open again: lower than where day 1 ended.
    day2 = [
        replace(t, volume=(t.volume or 0) // 3)
        for t in _simulated_day(datetime(2026, 3, 10, 3, 45, tzinfo=UTC), 10, seed=2)
    ]
    ticks = day1 + day2
    _write(database_url, ticks)
    start, end = datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC)
    for level, width in (
        ("1m", timedelta(minutes=1)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1s", timedelta(seconds=1)),
    ):
        expected = _approx(ref.candles(_ref(ticks), width))
        assert _approx(_view(database_url, level, start, end)) == expected, f"{level} live"
    day_candles = _view(database_url, "1d", start, end)
    assert [c["volume"] for c in day_candles] == [
        max(t.volume or 0 for t in day1),
        max(t.volume or 0 for t in day2),
    ]  # each day's volume is that day's cumulative volume: the counter restarted
    refresh_candles(database_url, SETTINGS)
    for level, width in (("1m", timedelta(minutes=1)), ("15m", timedelta(minutes=15)), ("1d", timedelta(days=1))):
        assert _approx(_view(database_url, level, start, end)) == _approx(ref.candles(_ref(ticks), width)), level


def test_late_ticks_are_folded_in_by_the_next_refresh_and_a_tick_just_committed_is_in_the_1m_candle(
    database_url: str,
) -> None:
    # Within the Community edition's narrowest refresh window (the 1s level's 10 minutes), with minutes
    # to spare: late ticks older than a level's window stay out of its materialized candles there.
    now = datetime.now(UTC).replace(microsecond=0)
    ticks = _simulated_day(now - timedelta(minutes=6), 5, seed=3)
    late = ticks[100::7]  # every 7th tick from the 100th arrives late, after a refresh ran
    on_time = [t for t in ticks if t not in late]
    _write(database_url, on_time)
    refresh_candles(database_url, SETTINGS)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    assert _approx(_view(database_url, "1m", start, end)) == _approx(ref.candles(_ref(on_time), timedelta(minutes=1)))

    _write(database_url, late)
    refresh_candles(database_url, SETTINGS)
    for level, width in (("1m", timedelta(minutes=1)), ("5m", timedelta(minutes=5))):
        assert _approx(_view(database_url, level, start, end)) == _approx(ref.candles(_ref(ticks), width)), level

    just_now = make_tick(security_id=40000, instrument_id=INSTRUMENT, time=datetime.now(UTC), ltp=123.25)
    _write(database_url, [just_now])
    minute = ref.bucket(just_now.time, timedelta(minutes=1))
    (candle,) = [c for c in _view(database_url, "1m", start, end) if c["time"] == minute]
    assert candle["close"] == 123.25  # no maintain needed: the live tail serves it


def test_tick_bars_and_spread_statistics_match_the_reference(database_url: str) -> None:
    ticks = _simulated_day(datetime(2026, 3, 9, 4, 0, tzinfo=UTC), 5, seed=4)
    _write(database_url, ticks)
    start, end = datetime(2026, 3, 9, 4, 0, tzinfo=UTC), datetime(2026, 3, 9, 4, 5, tzinfo=UTC)
    ordered = sorted(ticks, key=lambda t: (t.time, t.receive_time))
    incs = ref.increments(_ref(ordered))
    with psycopg.connect(database_url) as conn:
        bars = conn.execute(
            "select open, high, low, close, volume, ticks from analytics.tick_bars(%s, 50, %s, %s)",
            (INSTRUMENT, start, end),
        ).fetchall()
        stats = conn.execute("select * from analytics.spread_stats(%s, %s, %s)", (INSTRUMENT, start, end)).fetchone()
    expected_bars = []
    for i in range(0, len(ordered), 50):
        chunk, vol = ordered[i : i + 50], incs[i : i + 50]
        ltps = [t.ltp for t in chunk]
        expected_bars.append((ltps[0], max(ltps), min(ltps), ltps[-1], sum(v or 0 for v in vol), len(chunk)))
    assert bars == expected_bars

    spreads = [t.spread_bps for t in ordered if t.spread_bps is not None]
    imbalances = [t.imbalance for t in ordered if t.imbalance is not None]
    assert len(spreads) == len(imbalances) == len(ordered)  # every simulated tick has a two-sided book
    secs = [
        ((ordered[i + 1].time if i + 1 < len(ordered) else end) - t.time).total_seconds() for i, t in enumerate(ordered)
    ]
    assert stats is not None
    count, quoted, mean, median, weighted, mean_imb, weighted_imb = stats
    assert (count, quoted) == (len(ordered), len(ordered))
    assert mean == pytest.approx(sum(spreads) / len(spreads), rel=1e-12)
    ordered_spreads = sorted(spreads)
    n = len(ordered_spreads)
    assert median == pytest.approx((ordered_spreads[(n - 1) // 2] + ordered_spreads[n // 2]) / 2, rel=1e-12)
    assert weighted == pytest.approx(sum(s * w for s, w in zip(spreads, secs, strict=True)) / sum(secs), rel=1e-9)
    assert mean_imb == pytest.approx(sum(imbalances) / n, rel=1e-9, abs=1e-12)
    assert weighted_imb == pytest.approx(
        sum(i * w for i, w in zip(imbalances, secs, strict=True)) / sum(secs), rel=1e-9, abs=1e-12
    )


def test_option_chain_and_breadth_from_the_newest_quotes(database_url: str) -> None:
    strikes = [24900, 25000, 25100, 25200]
    lines = ["NSE,I,13,INDEX,0,NIFTY,1.0,Nifty 50,0001-01-01,,XX,0.0500,,INDEX,X,NIFTY"]
    security_ids: dict[tuple[int, str], int] = {}
    for i, k in enumerate(strikes):
        for j, side in enumerate(("CE", "PE")):
            sid = 50000 + 2 * i + j
            security_ids[k, side] = sid
            lines.append(
                f"NSE,D,{sid},OPTIDX,0,NIFTY-Mar2026-{k}-{side},65.0,NIFTY {k} {side},2026-03-10 14:30:00,"
                f"{k}.00000,{side},5.0000,W,OP,,"
            )
    ids = sync_dhan_lines(database_url, lines)
    yesterday, today = datetime(2026, 3, 5, 9, 0, tzinfo=UTC), datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
    rng = random.Random(5)
    ticks = [make_tick(segment="IDX_I", security_id=13, instrument_id=ids[13], time=today, ltp=25070.0,
                       change_pct=0.4)]  # fmt: skip
    expected = {}
    for (k, side), sid in security_ids.items():
        prev_oi, oi = rng.randint(1000, 9000) * 65, rng.randint(1000, 9000) * 65
        ltp = float(max(5, 25070 - k) if side == "CE" else max(5, k - 25070)) + 12.5
        change = rng.choice((-1.5, 0.0, 2.0))
        ticks += [
            make_tick(security_id=sid, instrument_id=ids[sid], time=yesterday, oi=prev_oi - 650, ltp=ltp),
            make_tick(security_id=sid, instrument_id=ids[sid], time=yesterday + timedelta(hours=1), oi=prev_oi),
            make_tick(security_id=sid, instrument_id=ids[sid], time=today, oi=oi, ltp=ltp, change_pct=change),
        ]
        expected[k, side] = (ids[sid], ltp, oi, oi - prev_oi, change)
    _write(database_url, ticks)
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        chain = conn.execute("select * from analytics.option_chain('NIFTY', '2026-03-10')").fetchall()
        option_ids = [expected[k, s][0] for k in strikes for s in ("CE", "PE")]
        breadth = conn.execute("select * from analytics.breadth(%s)", ([*option_ids, ids[13], 999_999],)).fetchone()
    assert [float(r["strike"]) for r in chain] == strikes
    assert [float(r["strike"]) for r in chain if r["is_atm"]] == [25100]  # nearest the index at 25070
    for r in chain:
        k = int(r["strike"])
        for side in ("ce", "pe"):
            iid, ltp, oi, oi_change, _ = expected[k, side.upper()]
            assert (r[f"{side}_instrument_id"], r[f"{side}_ltp"], r[f"{side}_oi"], r[f"{side}_oi_change"]) == (
                iid,
                ltp,
                oi,
                oi_change,
            )
        assert r["spot"] == 25070.0
    changes = [e[4] for e in expected.values()] + [0.4]
    assert breadth == {
        "advances": sum(c > 0 for c in changes),
        "declines": sum(c < 0 for c in changes),
        "unchanged": sum(c == 0 for c in changes),
        "unknown": 1,  # 999999 has no quote
    }
