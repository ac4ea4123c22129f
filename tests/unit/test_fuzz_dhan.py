"""A million generated frames through the Dhan decoder: nothing escapes, every cut frame is counted."""

from __future__ import annotations

from datetime import UTC, datetime

from structlog.testing import capture_logs

from tests.unit.fuzzing import FRAMES_PER_DECODER, frames
from tickpipe_ingestion.dhan.parse import DhanDecoder
from tickpipe_simulator.dhan import (
    encode_disconnect,
    encode_full,
    encode_oi,
    encode_prev_close,
    encode_quote,
    encode_ticker,
)
from tickpipe_simulator.market import make_instruments

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def _packets() -> list[bytes]:
    out = []
    for inst in make_instruments(50, seed=11):
        q = inst.step()
        ltt = int(NOW.timestamp()) + 19800
        out += [encode_full(q, ltt), encode_quote(q, ltt), encode_ticker(q, ltt), encode_oi(q), encode_prev_close(inst)]
    return [*out, encode_disconnect(805)]


def test_a_million_fuzzed_frames_never_raise_and_every_cut_frame_is_counted() -> None:
    decoder = DhanDecoder()
    counters = decoder.counters
    broken = 0
    with capture_logs():
        for fuzzed in frames(_packets(), b"".join, FRAMES_PER_DECODER, seed=20261130):
            before = counters["bad_packets"]
            decoder.decode(fuzzed.frame, NOW)  # raises nothing, whatever the bytes
            if fuzzed.broken:
                broken += 1
                assert counters["bad_packets"] > before, fuzzed.frame.hex()
    assert broken > FRAMES_PER_DECODER // 10
    assert counters["bad_packets"] >= broken
