"""A million generated frames through the Dhan decoder: nothing escapes, every cut frame is counted."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.unit.fuzzing import fuzz_decoder
from tickpipe_brokers.dhan.encode import (
    encode_disconnect,
    encode_full,
    encode_oi,
    encode_prev_close,
    encode_quote,
    encode_ticker,
)
from tickpipe_brokers.dhan.parse import DhanDecoder
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
    fuzz_decoder(decoder.decode, decoder.counters, _packets(), b"".join)
