"""The queue message format: round trip, versioning, and clear errors for garbage."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.helpers import make_tick
from tickpipe_core import DecodeError, decode_batch, encode_batch
from tickpipe_core.codec import decode_message, encode_batch_v1
from tickpipe_core.rows import encode_row, quote_of


@pytest.mark.parametrize("encode", [encode_batch, encode_batch_v1])
def test_round_trip_keeps_every_value_exactly(encode: Any) -> None:
    ticks = [make_tick(), make_tick(ltp=0.0025, prev_close=None, time_source="receive")]
    assert decode_batch(encode(ticks)) == ticks


def test_a_schema_2_message_carries_each_ticks_row_and_quote() -> None:
    ticks = [make_tick(security_id=i, instrument_id=i * 10) for i in range(3)]
    message = decode_message(encode_batch(ticks))
    assert message.version == 2 and len(message) == 3
    assert message.rows == b"".join(encode_row(t) for t in ticks)
    assert message.quotes == [quote_of(t) for t in ticks]


def test_quotes_that_do_not_match_the_count_are_refused() -> None:
    raw = msgspec.msgpack.decode(encode_batch([make_tick(), make_tick()]))
    raw[1] = 3
    with pytest.raises(DecodeError, match="2 quotes for 3 ticks"):
        decode_message(msgspec.msgpack.encode(raw))


def test_times_come_back_timezone_aware() -> None:
    (tick,) = decode_batch(encode_batch([make_tick()]))
    assert tick.exchange_ts.tzinfo is not None and tick.receive_ts.tzinfo is not None


def test_unknown_version_is_rejected_with_the_reason() -> None:
    body = msgspec.msgpack.encode([99, []])
    with pytest.raises(DecodeError, match="unsupported schema version 99"):
        decode_batch(body)


@pytest.mark.parametrize("body", [b"", b"\xc1", b"not msgpack", msgspec.msgpack.encode([1, [[1, 2]]])])
def test_garbage_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(body)


def test_naive_time_is_rejected() -> None:
    raw = msgspec.msgpack.decode(encode_batch_v1([make_tick()]))
    raw[1][0][4] = "2025-12-29T07:17:03"  # a naive time
    with pytest.raises(DecodeError):
        decode_batch(msgspec.msgpack.encode(raw))
    raw = msgspec.msgpack.decode(encode_batch([make_tick()]))
    raw[3][0][4] = "2025-12-29T07:17:03"  # a quote's naive time
    with pytest.raises(DecodeError):
        decode_message(msgspec.msgpack.encode(raw))


def test_rows_that_do_not_read_back_are_a_decode_error() -> None:
    raw = msgspec.msgpack.decode(encode_batch([make_tick()]))
    raw[2] = raw[2][:-5]
    with pytest.raises(DecodeError, match="row cut short"):
        decode_batch(msgspec.msgpack.encode(raw))


def test_a_content_tick_id_is_the_same_as_every_earlier_release_made() -> None:
    """Stored rows dedupe against ids made before: the id stays blake2b-128 of the packet, personalised."""
    import hashlib
    import uuid

    from tickpipe_core import content_tick_id

    for source, packet in ((b"dhan", bytes(range(162))), (b"kite", b"\x00" * 184), (b"dhan", b"")):
        expected = uuid.UUID(bytes=hashlib.blake2b(packet, digest_size=16, person=source).digest())
        assert content_tick_id(source, packet) == expected
        assert content_tick_id(source, packet) == expected  # the shared hasher state is never consumed
    assert content_tick_id(b"dhan", b"x") != content_tick_id(b"kite", b"x")
