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
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from tests.integration.pipeline import dhan, run_pipeline
from tickpipe_core import Topology
from tickpipe_ingestion.capture import CaptureWriter, read_frames
from tickpipe_ingestion.dhan import wire
from tickpipe_simulator.replay import Replay

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


def test_real_nifty_ticks_replayed_over_websocket_are_stored_exactly(
    database_url: str, amqp_url: str, topology: Topology, tmp_path: Path
) -> None:
    with CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    full_rows = [r for r in rows if r["type"] == "full"]
    assert (len(rows), len(full_rows)) == (356, 355)

    capture = tmp_path / "nifty.cap"
    with CaptureWriter(capture, "dhan") as writer:
        for row in rows:
            writer.write(_ist_epoch(row["time"]) - wire.IST_OFFSET_SECONDS, 0, _encode(row))
    replay = Replay(list(read_frames(capture)), speed=50)  # 4 recorded minutes in about 5 s
    rerecorded = tmp_path / "rerecorded.cap.gz"

    async def scenario() -> None:
        async with replay.serving() as server:
            await run_pipeline(
                brokers=dhan(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", [(SEGMENT, SECURITY_ID)]),
                database_url=database_url,
                amqp_url=amqp_url,
                topology=topology,
                rows=len(full_rows),
                sent_all=replay.finished.is_set,
                record=rerecorded,
            )

    asyncio.run(scenario())

    assert [f.data for f in read_frames(rerecorded)] == [f.data for f in read_frames(capture)]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "select time, segment, security_id, packet, time_source, ltp, ltq, atp, volume, oi,"
            " total_buy_qty, total_sell_qty, open, high, low, close,"
            " bid_price, bid_qty, bid_orders[1], ask_price, ask_qty, ask_orders[1]"
            " from ticks order by tick_id"  # tick ids count up in decode order within a process
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
