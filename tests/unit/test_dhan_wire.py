"""Dhan v2 decoding: the real captured packet, frame walking, and bad packets that must not stop us."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from tests.conftest import DATA
from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.parse import DhanDecoder

RECEIVED = datetime(2025, 7, 25, 4, 0, 0, tzinfo=UTC)


def issue_90_packet() -> bytes:
    """The first real frame of the issue-90 log: the bytes it shows, zeros where it elided them."""
    line = next(
        ln for ln in (DATA / "dhan/issue-90-full-packet-log.txt").read_text().splitlines() if "[162 bytes]" in ln
    )
    shown = line.split("BINARY ")[1].split(" [")[0]
    head, tail = (bytes.fromhex(part) for part in shown.split(" ... "))
    return head + bytes(162 - len(head) - len(tail)) + tail


def test_real_captured_full_packet_decodes_to_the_documented_values() -> None:
    frame = issue_90_packet()
    decoded = DhanDecoder().decode(frame, RECEIVED)
    (tick,) = decoded.ticks
    assert (tick.packet, tick.segment, tick.security_id, tick.ltq) == ("full", "NSE_FNO", 55796, 75)
    assert tick.ltp == struct.unpack("<f", struct.pack("<f", 152.3))[0]
    assert f"{tick.ltp:.2f}" == "152.30"
    # The last 8 bytes are level 5's bid and ask prices.
    assert (f"{tick.bid_price[4]:.2f}", f"{tick.ask_price[4]:.2f}") == ("152.10", "152.80")


def full_packet(security_id: int = 1, ltp: float = 100.0, ltt: int = 0) -> bytes:
    depth = [10, 20, 1, 2, 99.5, 100.5] * 5
    return wire.FULL_PACKET.pack(
        8, 162, 2, security_id, ltp, 1, ltt, 100.0, 10, 5, 6, 7, 8, 6, 1.0, 2.0, 3.0, 0.5, *depth
    )


def test_a_frame_with_several_packets_yields_every_tick_in_order() -> None:
    frame = full_packet(1) + wire.OI_PACKET.pack(5, 12, 2, 2, 777) + full_packet(2) + full_packet(3)
    ticks = DhanDecoder().decode(frame, RECEIVED).ticks
    assert [t.security_id for t in ticks] == [1, 2, 3]


def test_ltt_is_india_wall_clock_and_stored_as_true_utc() -> None:
    ist_as_epoch = int(datetime(2025, 12, 29, 12, 47, 2, tzinfo=UTC).timestamp())  # 12:47:02 IST
    received = datetime(2025, 12, 29, 7, 17, 3, tzinfo=UTC)
    (tick,) = DhanDecoder().decode(full_packet(ltt=ist_as_epoch), received).ticks
    assert tick.last_trade_time == tick.time == datetime(2025, 12, 29, 7, 17, 2, tzinfo=UTC)
    assert tick.time_source == "exchange"


def test_a_last_trade_time_far_from_the_receive_time_keeps_the_receive_time() -> None:
    """A garbage LTT (zero-filled, 1970, or decades ahead) must never become the row's time."""
    decoder = DhanDecoder()
    for ltt in (1, 2**31 + 12345, int(RECEIVED.timestamp()) + 19800 + 3600):  # 1970, 2038, an hour ahead
        (tick,) = decoder.decode(full_packet(ltt=ltt), RECEIVED).ticks
        assert (tick.time, tick.time_source) == (RECEIVED, "receive")
        assert tick.last_trade_time == datetime.fromtimestamp(ltt - 19800, UTC)  # still kept as sent
    assert decoder.builder.counters["ticks.insane_time"] == 3


def test_packet_without_trade_time_uses_receive_time_and_says_so() -> None:
    (tick,) = DhanDecoder().decode(full_packet(ltt=0), RECEIVED).ticks
    assert (tick.time, tick.time_source) == (RECEIVED, "receive")


def test_prev_close_and_oi_packets_update_later_ticks() -> None:
    decoder = DhanDecoder()
    frame = (
        wire.PREV_CLOSE_PACKET.pack(6, 16, 2, 9, 200.0, 1000)
        + wire.OI_PACKET.pack(5, 12, 2, 9, 4321)
        + wire.TICKER_PACKET.pack(2, 16, 2, 9, 210.0, 0)
    )
    (tick,) = decoder.decode(frame, RECEIVED).ticks
    assert (tick.prev_close, tick.oi, tick.change, tick.change_pct) == (200.0, 4321, 10.0, 5.0)


def test_bad_packets_are_counted_logged_with_hex_and_do_not_stop_the_frame() -> None:
    decoder = DhanDecoder()
    wrong_length = struct.pack("<BHBI", 4, 12, 2, 5) + b"\x00" * 4  # a quote must be 50 bytes
    unknown = struct.pack("<BHBI", 99, 8, 2, 5)
    truncated = full_packet(4)[:100]
    with capture_logs() as logs:
        ticks = decoder.decode(full_packet(1) + wrong_length + unknown + full_packet(2) + truncated, RECEIVED).ticks
    assert [t.security_id for t in ticks] == [1, 2]
    assert decoder.counters["bad_packets"] == 3
    reasons = [entry["reason"] for entry in logs if entry["event"] == "dhan_bad_packet"]
    assert reasons == [
        "code 4 needs 50 bytes, length says 12",
        "unknown response code 99",
        "truncated: length 162, 100 bytes left",
    ]
    assert all(entry["hex"] for entry in logs if entry["event"] == "dhan_bad_packet")


def test_disconnect_packet_reports_its_reason_code() -> None:
    decoded = DhanDecoder().decode(wire.DISCONNECT_PACKET.pack(50, 10, 0, 0, 807), RECEIVED)
    assert decoded.disconnect_code == 807 and decoded.ticks == []


def test_a_new_india_trading_day_forgets_the_previous_close_and_oi() -> None:
    """The next session's change is never computed from yesterday's previous close."""
    decoder = DhanDecoder()
    evening = datetime(2025, 7, 24, 18, 29, 0, tzinfo=UTC)  # 23:59 IST
    prev_close = wire.PREV_CLOSE_PACKET.pack(wire.PREV_CLOSE, wire.PREV_CLOSE_PACKET.size, 2, 1, 90.0, 0)
    decoder.decode(prev_close, evening)
    (same_day,) = decoder.decode(wire.TICKER_PACKET.pack(wire.TICKER, 16, 2, 1, 99.0, 0), evening).ticks
    assert (same_day.prev_close, same_day.change) == (90.0, 9.0)
    next_morning = evening + timedelta(minutes=2)  # 00:01 IST: a new trading day
    (next_day,) = decoder.decode(wire.TICKER_PACKET.pack(wire.TICKER, 16, 2, 1, 99.0, 0), next_morning).ticks
    assert (next_day.prev_close, next_day.change, next_day.oi) == (None, None, None)


def test_a_packet_received_twice_is_the_same_tick_and_a_different_packet_is_another() -> None:
    """The identity comes from the packet: a resent snapshot or a replay dedupes in the hypertable."""
    ltt = int(RECEIVED.timestamp()) + 19800 - 5
    first = DhanDecoder().decode(full_packet(1, 100.0, ltt), RECEIVED).ticks[0]
    again = DhanDecoder().decode(full_packet(1, 100.0, ltt), RECEIVED + timedelta(seconds=30)).ticks[0]
    other = DhanDecoder().decode(full_packet(1, 100.5, ltt), RECEIVED).ticks[0]
    other_instrument = DhanDecoder().decode(full_packet(2, 100.0, ltt), RECEIVED).ticks[0]
    assert first.tick_id == again.tick_id
    assert len({first.tick_id, other.tick_id, other_instrument.tick_id}) == 3
    # No time of its own (a zero LTT): nothing tells a resend from a real repeat, so each is new.
    no_time = [DhanDecoder().decode(full_packet(1, 100.0, 0), RECEIVED).ticks[0].tick_id for _ in range(2)]
    assert no_time[0] != no_time[1]
