"""`tickpipe record` captures a live feed; `tickpipe simulate --replay` serves it back identically."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from tests.helpers import free_port, listening, until, wait_until
from tickpipe_brokers.adapter import FeedParts
from tickpipe_brokers.dhan.feed import DhanFeed
from tickpipe_brokers.dhan.parse import DhanDecoder
from tickpipe_core import Tick
from tickpipe_core.capture import read_frames, read_header


def _tickpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickpipe", *args],
        env={**os.environ, "LOG_FORMAT": "json", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_record_then_replay_reproduces_the_frames_and_ticks(tmp_path: Path) -> None:
    port, replay_port = free_port(), free_port()
    capture = tmp_path / "day.cap.gz"
    simulator = _tickpipe("simulate", "--port", str(port), "--instruments", "3", "--rate", "300")
    try:
        wait_until(lambda: listening(port), "the simulator to listen")
        recorder = _tickpipe(
            "record",
            str(capture),
            "--duration",
            "1.5",
            env={
                "DATA_SOURCE": "dhan",
                "DHAN_FEED_URL": f"ws://127.0.0.1:{port}",
                "DHAN_CLIENT_ID": "1000",
                "DHAN_ACCESS_TOKEN": "record-secret-token",
                "DHAN_FEED_MODE": "quote",
                "DHAN_INSTRUMENTS": "NSE_FNO:40000,NSE_FNO:40001,NSE_FNO:40002",
            },
        )
        output, _ = recorder.communicate(timeout=30)
        assert recorder.returncode == 0, output.decode()
        assert b"record-secret-token" not in output
    finally:
        simulator.terminate()
        simulator.wait(10)

    assert read_header(capture)["source"] == "dhan"
    frames = list(read_frames(capture))
    assert len(frames) > 50
    expected_decoder = DhanDecoder()
    expected = [
        t
        for f in frames
        if isinstance(f.data, bytes)
        for t in expected_decoder.decode(f.data, datetime.fromtimestamp(f.receive_time, UTC)).ticks
    ]
    assert {t.packet for t in expected} == {"quote", "full"}  # the simulator's quote-mode mix

    server = _tickpipe("simulate", "--replay", str(capture), "--speed", "0", "--port", str(replay_port))
    ticks: list[Tick] = []
    try:
        wait_until(lambda: listening(replay_port), "the replay to listen")

        async def consume() -> None:
            feed = DhanFeed(
                base_url=f"ws://127.0.0.1:{replay_port}",
                client_id="1000",
                token=SecretStr("t"),
                mode="quote",
                instruments=[("NSE_FNO", 40000)],
                parts=FeedParts(ticks.extend),
            )
            task = asyncio.create_task(feed.run())
            await until(lambda: len(ticks) >= len(expected), "every recorded tick replayed")
            feed.stop()
            await task

        asyncio.run(consume())
    finally:
        server.terminate()
        server.wait(10)

    def essence(t: Tick) -> tuple[object, ...]:
        return (t.security_id, t.packet, t.time, t.ltp, t.volume, t.oi, t.prev_close, t.bid_price)

    assert [essence(t) for t in ticks] == [essence(t) for t in expected]
