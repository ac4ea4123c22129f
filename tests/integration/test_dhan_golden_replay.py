"""Golden: real NIFTY futures ticks, encoded as Dhan packets, replayed over WebSocket into the hypertable.

`tests/data/dhan/nifty-futures-full-ticks-2025-12-29.csv` holds 355 full packets (and one OI-only
packet) a user's Dhan client decoded on 2025-12-29. We encode each row back into its packet (f32
prices re-encode losslessly), write them as a capture file with the recorded receive times, serve
it with `Replay` and run the real ingestion service and workers. Every stored value must equal
the recorded one exactly, and recording the replay must give back the same frames byte for byte.

The file names neither the security id nor the trade time: we use NSE_FNO 49229 and take the
receive second (India wall clock, as Dhan's LTT is) as the LTT.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests import analytics_reference as ref
from tests.editions import EDITIONS
from tests.helpers import until
from tests.integration.pipeline import dhan, queue_depths, run_pipeline, sync_dhan_lines
from tickpipe_brokers.dhan import wire
from tickpipe_core import Topology
from tickpipe_core.capture import CaptureWriter, read_frames
from tickpipe_core.settings import WorkerSettings
from tickpipe_simulator.replay import Replay
from tickpipe_workers import run_workers

CSV = Path(__file__).parent.parent / "data" / "dhan" / "nifty-futures-full-ticks-2025-12-29.csv"
SEGMENT, SECURITY_ID = "NSE_FNO", 49229


def _ist_epoch(text: str) -> float:
    """India wall-clock text read as if it were UTC: Dhan's encoding of time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _level(row: dict[str, str], side: str, n: int) -> tuple[float, int, int]:
    orders = row.get(f"{side}_orders_{n}") or "0"  # the file keeps order counts for level 1 only
    return float(row[f"{side}_price_{n}"]), int(row[f"{side}_qty_{n}"]), int(orders)


def _encode(row: dict[str, str]) -> bytes:
    seg = wire.SEGMENT_CODES[SEGMENT]
    if row["type"] == "oi":
        return wire.OI_PACKET.pack(wire.OI, wire.OI_PACKET.size, seg, SECURITY_ID, int(row["oi"]))
    depth: list[float | int] = []
    for n in range(1, 6):
        bid_price, bid_qty, bid_orders = _level(row, "bid", n)
        ask_price, ask_qty, ask_orders = _level(row, "ask", n)
        depth += [bid_qty, ask_qty, bid_orders, ask_orders, bid_price, ask_price]
    oi = int(row["oi"])
    return wire.FULL_PACKET.pack(
        wire.FULL,
        wire.FULL_PACKET.size,
        seg,
        SECURITY_ID,
        float(row["ltp"]),
        int(row["ltq"]),
        int(_ist_epoch(row["time"])),
        float(row["atp"]),
        int(row["volume"]),
        int(row["total_sell_qty"]),
        int(row["total_buy_qty"]),
        oi,
        oi,  # the file has no OI day high/low: use the OI itself
        oi,
        float(row["open"]),
        float(row["close"]),
        float(row["high"]),
        float(row["low"]),
        *depth,
    )


def _replay_through_the_pipeline(
    rows: list[dict[str, str]], database_url: str, amqp_url: str, topology: Topology, tmp_path: Path
) -> Path:
    """Serve the recording as a capture over a real WebSocket into ingestion and workers; the re-recording's path."""
    capture = tmp_path / "nifty.cap"
    with CaptureWriter(capture, "dhan") as writer:
        for row in rows:
            writer.write(_ist_epoch(row["time"]) - wire.IST_OFFSET_SECONDS, 0, _encode(row))
    replay = Replay(list(read_frames(capture)), speed=50)  # 4 recorded minutes in about 5 s
    rerecorded = tmp_path / "rerecorded.cap.gz"

    async def scenario() -> None:
        async with replay.serving() as server:
            await run_pipeline(
                broker=dhan(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", [(SEGMENT, SECURITY_ID)]),
                database_url=database_url,
                amqp_url=amqp_url,
                topology=topology,
                rows=sum(r["type"] == "full" for r in rows),
                sent_all=replay.finished.is_set,
                record=rerecorded,
            )

    asyncio.run(scenario())
    return rerecorded


def test_real_nifty_ticks_replayed_over_websocket_are_stored_exactly(
    database_url: str, amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    with CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    full_rows = [r for r in rows if r["type"] == "full"]
    assert (len(rows), len(full_rows)) == (356, 355)

    rerecorded = _replay_through_the_pipeline(rows, database_url, amqp_url, topology, tmp_path)

    assert [f.data for f in read_frames(rerecorded)] == [f.data for f in read_frames(tmp_path / "nifty.cap")]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "select time, segment, security_id, packet, time_source, ltp, ltq, atp, volume, oi,"
            " total_buy_qty, total_sell_qty, open, high, low, close,"
            " bid_price, bid_qty, bid_orders[1], ask_price, ask_qty, ask_orders[1]"
            " from ticks order by receive_time"  # the replay serves frames in recorded order
        ).fetchall()
    assert len(stored) == len(full_rows)
    for got, row in zip(stored, full_rows, strict=True):
        assert got[0] == datetime.fromtimestamp(int(_ist_epoch(row["time"])) - wire.IST_OFFSET_SECONDS, UTC)
        assert got[1:5] == (SEGMENT, SECURITY_ID, "full", "exchange")
        assert got[5:16] == (
            float(row["ltp"]),
            int(row["ltq"]),
            float(row["atp"]),
            int(row["volume"]),
            int(row["oi"]),
            int(row["total_buy_qty"]),
            int(row["total_sell_qty"]),
            float(row["open"]),
            float(row["high"]),
            float(row["low"]),
            float(row["close"]),
        )
        bids = [_level(row, "bid", n) for n in range(1, 6)]
        asks = [_level(row, "ask", n) for n in range(1, 6)]
        assert got[16:] == (
            [b[0] for b in bids],
            [b[1] for b in bids],
            bids[0][2],
            [a[0] for a in asks],
            [a[1] for a in asks],
            asks[0][2],
        )
    first = stored[0]
    assert (first[5], first[0]) == (25974.900390625, datetime(2025, 12, 29, 7, 17, 2, tzinfo=UTC))


def _tickpipe(database_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", *args],
        env={**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("edition", EDITIONS)
def test_candles_and_profile_of_the_nifty_recording_equal_the_reference_computation(
    database_url: str, amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    """Through the pipeline, then `tickpipe query`, live (the tail) and after `tickpipe maintain` (materialized)."""
    sync_dhan_lines(
        database_url,
        ["NSE,D,49229,FUTIDX,0,NIFTY-Dec2025-FUT,75.0,NIFTY DEC FUT,2025-12-30 14:30:00,-0.01000,XX,10.0000,M,FUT,,"],
    )
    with CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    _replay_through_the_pipeline(rows, database_url, amqp_url, topology, tmp_path)

    # The reference: the recorded values, at the times Dhan's packets carry (the LTT, whole seconds).
    ticks = [
        ref.RefTick(
            time=datetime.fromtimestamp(int(_ist_epoch(r["time"])) - wire.IST_OFFSET_SECONDS, UTC),
            receive_time=datetime.fromtimestamp(_ist_epoch(r["time"]) - wire.IST_OFFSET_SECONDS, UTC),
            ltp=float(r["ltp"]),
            volume=int(r["volume"]),
            atp=float(r["atp"]),
            oi=int(r["oi"]),
        )
        for r in rows
        if r["type"] == "full"
    ]
    window = ["--from", "2025-12-29", "--to", "2025-12-30"]
    for when in ("live", "materialized"):
        if when == "materialized":
            _tickpipe(database_url, "maintain", "--once")
        for interval, width in (
            ("1m", timedelta(minutes=1)),
            ("5m", timedelta(minutes=5)),
            ("1d", timedelta(days=1)),
            ("90s", timedelta(seconds=90)),
        ):
            out = _tickpipe(
                database_url,
                "query",
                "candles",
                "NIFTY-Dec2025-FUT",
                "--interval",
                interval,
                "--format",
                "csv",
                *window,
            )
            assert out.splitlines() == ref.csv_lines(ref.candles(ticks, width)), (when, interval)

    chart = tmp_path / "nifty-1m.png"
    table = _tickpipe(database_url, "query", "candles", "NIFTY-Dec2025-FUT", *window, "--plot", str(chart))
    assert table.splitlines()[0].split() == [
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "ticks",
        "oi_open",
        "oi_close",
    ]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    (Path(os.environ.get("TICKPIPE_TEST_ARTIFACTS", tmp_path)) / chart.name).write_bytes(chart.read_bytes())

    expected = ref.profile(ticks, date(2025, 12, 29), 0.1)
    out = json.loads(
        _tickpipe(database_url, "query", "profile", "NIFTY-Dec2025-FUT", "--day", "2025-12-29", "--format", "json")
    )
    assert [(p["price_low"], p["volume"], p["is_poc"], p["in_value_area"]) for p in out] == expected
    assert sum(p[2] for p in expected) == 1 and len(expected) > 5


def test_the_same_capture_replayed_twice_stores_each_tick_once(
    database_url: str, amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    """Tick identity comes from the packet: the second replay's ticks are the first's, and dedupe."""
    with CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        _replay_through_the_pipeline(rows, database_url, amqp_url, topology, tmp_path / run)

    async def drain() -> None:
        """What the pipeline left in the queue when it stopped, so that every replayed tick met the table."""
        stop = asyncio.Event()
        task = asyncio.create_task(run_workers(1, database_url, amqp_url, topology, WorkerSettings(), stop))

        async def empty() -> bool:
            return task.done() or (await queue_depths(amqp_url, topology))[0] == 0

        await until(empty, "an empty ticks queue", timeout=30, interval=0.2)
        stop.set()
        await task

    asyncio.run(drain())
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("select count(*), count(distinct tick_id) from ticks").fetchone()
    assert stored == (355, 355)
