"""Golden Kite frames: the official JS SDK's test frames and Zerodha's mock packets."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tickpipe_brokers.kite import wire
from tickpipe_brokers.kite.parse import KiteDecoder

PACKETS = Path(__file__).parent.parent / "data" / "kite" / "packets"
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def _frame(*packets: bytes) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def test_js_sdk_ltp_frame() -> None:
    (tick,) = KiteDecoder().decode((PACKETS / "kiteconnectjs__ltpMode_binary.packet").read_bytes(), NOW)
    assert (tick.security_id, tick.segment, tick.ltp, tick.packet, tick.time_source) == (
        884737, "NSE", 392.95, "ltp", "receive",
    )  # fmt: skip


def test_js_sdk_quote_frame() -> None:
    (tick,) = KiteDecoder().decode((PACKETS / "kiteconnectjs__quoteMode_binary.packet").read_bytes(), NOW)
    assert (tick.ltp, tick.ltq, tick.atp, tick.volume, tick.total_buy_qty, tick.total_sell_qty) == (
        392.95, 2, 403.07, 22261032, 5617, 0,
    )  # fmt: skip
    assert (tick.open, tick.high, tick.low, tick.close, tick.prev_close) == (420.0, 420.9, 390.1, 414.1, 414.1)
    assert tick.change == pytest.approx(392.95 - 414.1)
    assert tick.book_imbalance == 1.0  # all buyers, no sellers


def test_js_sdk_full_frame() -> None:
    (tick,) = KiteDecoder().decode((PACKETS / "kiteconnectjs__fullMode_binary.packet").read_bytes(), NOW)
    assert tick.last_trade_time == datetime.fromtimestamp(1655375264, UTC)
    assert tick.packet_time is not None and tick.packet_time >= tick.last_trade_time  # the exchange's snapshot time
    assert (tick.bid_qty[0], tick.bid_price[0], tick.bid_orders[0]) == (5617, 392.95, 30)
    assert tick.bid_qty[1:] == (0, 0, 0, 0) and tick.ask_qty == (0,) * 5
    assert tick.spread is None and tick.imbalance is None  # an empty ask side is not a quote


@pytest.mark.parametrize("name", ["quote", "full"])
def test_zerodha_mock_packets_match_zerodhas_expected_values(name: str) -> None:
    packet = (PACKETS / f"kiteconnect-mocks__ticker_{name}.decoded.bin").read_bytes()
    expected = json.loads((PACKETS / f"kiteconnect-mocks__ticker_{name}.json").read_text())
    (tick,) = KiteDecoder().decode(_frame(packet), NOW)
    assert (tick.security_id, tick.packet, tick.ltp, tick.ltq, tick.atp, tick.volume) == (
        expected["instrument_token"], expected["mode"], expected["last_price"], expected["last_quantity"],
        expected["average_price"], expected["volume"],
    )  # fmt: skip
    assert (tick.total_buy_qty, tick.total_sell_qty) == (expected["buy_quantity"], expected["sell_quantity"])
    ohlc = expected["ohlc"]
    assert (tick.open, tick.high, tick.low, tick.close) == (ohlc["open"], ohlc["high"], ohlc["low"], ohlc["close"])
    assert tick.change == pytest.approx(tick.ltp - ohlc["close"])
    if name == "full":
        # The mocks' change is absolute, as ours is (the Python SDK's is a percentage). The quote
        # mock repeats the full mock's 5.9, which its own prices contradict (1573.15 - 1567.8).
        assert tick.change == pytest.approx(expected["change"])
        assert tick.last_trade_time == datetime.fromisoformat(expected["last_trade_time"])
        assert tick.packet_time == datetime.fromisoformat(expected["timestamp"])
        assert [(p, q, o) for p, q, o in zip(tick.bid_price, tick.bid_qty, tick.bid_orders, strict=True)] == [
            (lvl["price"], lvl["quantity"], lvl["orders"]) for lvl in expected["depth"]["buy"]
        ]
        assert [(p, q, o) for p, q, o in zip(tick.ask_price, tick.ask_qty, tick.ask_orders, strict=True)] == [
            (lvl["price"], lvl["quantity"], lvl["orders"]) for lvl in expected["depth"]["sell"]
        ]
        assert (tick.oi, tick.oi_day_high, tick.oi_day_low) == (expected["oi"], 0, 0)


def test_several_packets_per_frame_segments_divisors_and_signed_prices() -> None:
    cds = (1 << 8) | 3  # currency: price / 1e7
    bcd = (2 << 8) | 6  # BSE currency: / 1e4
    mcx = (3 << 8) | 7
    frame = _frame(
        wire.LTP_PACKET.pack(cds, 832_500_000),
        wire.LTP_PACKET.pack(bcd, 832_500),
        wire.LTP_PACKET.pack(mcx, -3_763),  # a negative price survives
    )
    ticks = KiteDecoder().decode(frame, NOW)
    assert [(t.segment, t.ltp) for t in ticks] == [("CDS", 83.25), ("BCD", 83.25), ("MCX", -37.63)]


def test_heartbeats_unknown_lengths_and_truncated_frames_are_counted_never_fatal() -> None:
    decoder = KiteDecoder()
    good = wire.LTP_PACKET.pack(884737, 39295)
    with capture_logs() as logs:
        assert decoder.decode(b"\x00", NOW) == []
        ticks = decoder.decode(_frame(good, b"\x01" * 12, good), NOW)  # a 12-byte packet is no known kind
        truncated = decoder.decode(_frame(good, good)[:-3], NOW)
    assert len(ticks) == 2 and len(truncated) == 1
    assert decoder.counters["heartbeats"] == 1 and decoder.counters["bad_packets"] == 2
    bad = [e for e in logs if e["event"] == "kite_bad_packet"]
    assert [e["reason"] for e in bad] == ["unknown packet length 12", "truncated: length 8, 5 bytes left"]
    assert bad[0]["hex"] == "01" * 12


def test_bad_packets_of_many_odd_lengths_make_one_counter_not_one_per_length() -> None:
    decoder = KiteDecoder()
    for n in range(9, 40):
        if n not in (wire.LTP, wire.INDEX_QUOTE, wire.INDEX_FULL, wire.QUOTE, wire.FULL):
            decoder.decode(_frame(b"\x01" * n), NOW)
    kinds = [k for k in decoder.counters if k.startswith("bad_packets.")]
    assert kinds == ["bad_packets.unknown packet length N"]


def test_kite_full_packets_dedupe_by_content_and_quote_packets_without_a_time_never_do() -> None:
    full = (PACKETS / "kiteconnectjs__fullMode_binary.packet").read_bytes()
    quote = (PACKETS / "kiteconnectjs__quoteMode_binary.packet").read_bytes()
    assert KiteDecoder().decode(full, NOW)[0].tick_id == KiteDecoder().decode(full, NOW)[0].tick_id
    assert KiteDecoder().decode(quote, NOW)[0].tick_id != KiteDecoder().decode(quote, NOW)[0].tick_id
