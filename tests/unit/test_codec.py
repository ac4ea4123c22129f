"""The queue message format: round trip, versioning, and clear errors for garbage."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from tickpipe_core import DecodeError, Tick, decode_batch, encode_batch, new_tick_id


def make_tick(**overrides: object) -> Tick:
    fields: dict[str, object] = dict(
        tick_id=new_tick_id(),
        source="dhan",
        segment="NSE_FNO",
        security_id=49229,
        exchange_ts=datetime(2025, 12, 29, 7, 17, 3, tzinfo=UTC),
        receive_ts=datetime(2025, 12, 29, 7, 17, 3, 120_000, tzinfo=UTC),
        time_source="exchange",
        packet="full",
        ltp=25974.900390625,
        ltq=75,
        volume=123456,
        bid_price=(25974.5, 25974.0),
        bid_qty=(75, 150),
        bid_orders=(1, 2),
    )
    fields.update(overrides)
    return Tick(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_value_exactly() -> None:
    ticks = [make_tick(), make_tick(ltp=0.0025, prev_close=None, time_source="receive")]
    assert decode_batch(encode_batch(ticks)) == ticks


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
    raw = msgspec.msgpack.decode(encode_batch([make_tick()]))
    raw[1][0][4] = "2025-12-29T07:17:03"  # a naive time
    with pytest.raises(DecodeError):
        decode_batch(msgspec.msgpack.encode(raw))
