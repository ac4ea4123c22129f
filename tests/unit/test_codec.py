"""The queue message format: round trip, versioning, and clear errors for garbage."""

from __future__ import annotations

import msgspec
import pytest

from tests.helpers import make_tick
from tickpipe_core import DecodeError, decode_batch, encode_batch


def test_round_trip_keeps_every_value_exactly() -> None:
    ticks = [make_tick(), make_tick(ltp=0.0025, prev_close=None, time_source="receive")]
    assert decode_batch(encode_batch(ticks)) == ticks


def test_ids_travel_as_bytes_and_text_ids_from_earlier_releases_still_decode() -> None:
    tick = make_tick()
    body = encode_batch([tick])
    assert tick.tick_id.bytes in body and str(tick.tick_id).encode() not in body
    earlier = msgspec.msgpack.Encoder().encode([1, [tick]])  # what releases before bytes ids published
    assert str(tick.tick_id).encode() in earlier
    assert decode_batch(earlier) == [tick]


def test_times_come_back_timezone_aware() -> None:
    (tick,) = decode_batch(encode_batch([make_tick()]))
    assert tick.time.tzinfo is not None and tick.receive_time.tzinfo is not None


def test_unknown_version_is_rejected_with_the_reason() -> None:
    body = msgspec.msgpack.encode([99, []])
    with pytest.raises(DecodeError, match="unsupported schema version 99"):
        decode_batch(body)


@pytest.mark.parametrize("body", [b"", b"\xc1", b"not msgpack", msgspec.msgpack.encode([1, [[1, 2]]])])
def test_garbage_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(body)


def test_naive_time_is_rejected() -> None:
    raw = msgspec.msgpack.decode(encode_batch([make_tick()]))
    raw[1][0][4] = "2025-12-29T07:17:03"  # a naive time
    with pytest.raises(DecodeError):
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
