"""A million generated frames through the Kite decoder: nothing escapes, every cut frame is counted."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.unit.fuzzing import fuzz_decoder
from tickpipe_brokers.kite.encode import encode_full, encode_ltp, encode_quote, frame
from tickpipe_brokers.kite.parse import KiteDecoder
from tickpipe_simulator.market import make_instruments

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def _packets() -> list[bytes]:
    out = []
    for inst in make_instruments(50, seed=12):
        q = inst.step()
        token = 256265 if inst.security_id % 7 == 0 else inst.security_id * 256 + 1  # some indices, some F&O
        out += [encode_full(token, q, int(NOW.timestamp())), encode_quote(token, q), encode_ltp(token, q)]
    return out


def test_a_million_fuzzed_frames_never_raise_and_every_cut_frame_is_counted() -> None:
    decoder = KiteDecoder()
    fuzz_decoder(decoder.decode, decoder.counters, _packets(), frame)
