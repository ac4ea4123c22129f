"""The tick builder puts every packet field in its own place of the Tick, and fills in what is ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from msgspec.structs import asdict

from tickpipe_brokers.ticks import TickBuilder
from tickpipe_core import Tick

RECEIVED = datetime(2026, 3, 9, 4, 0, 1, 250_000, tzinfo=UTC)


def test_every_field_lands_in_its_own_place() -> None:
    # Every value distinct, so a swapped pair of arguments (even of the same type) shows.
    packet_fields = dict(
        segment="NSE_FNO", security_id=49229, receive_time=RECEIVED, packet="full", ltp=101.0,
        last_trade_time=RECEIVED - timedelta(seconds=3), packet_time=RECEIVED - timedelta(seconds=1),
        ltq=2, atp=103.0, volume=4, total_buy_qty=5, total_sell_qty=6, oi=7, oi_day_high=8, oi_day_low=9,
        open_=110.0, high=111.0, low=112.0, close=113.0, prev_close=114.0,
        bid_price=(100.5,), bid_qty=(15,), bid_orders=(16,), ask_price=(101.5,), ask_qty=(17,), ask_orders=(18,),
    )  # fmt: skip
    tick = TickBuilder("dhan", {("NSE_FNO", 49229): 777}, pair_key=True).build(**packet_fields, raw=b"packet")  # type: ignore[arg-type]
    assert tick is not None
    found = asdict(tick)
    expected = {("open" if k == "open_" else k): v for k, v in packet_fields.items()}
    assert {k: found[k] for k in expected} == expected
    # What the builder adds: the time (the packet's own, which wins over the last trade's), our
    # instrument, the identity from the packet's bytes, and the derived values.
    assert (found["time"], found["time_source"], found["source"]) == (
        RECEIVED - timedelta(seconds=1),
        "exchange",
        "dhan",
    )
    assert found["instrument_id"] == 777
    assert tick.tick_id == TickBuilder("dhan", pair_key=True).build(**packet_fields, raw=b"packet").tick_id  # type: ignore[arg-type,union-attr]
    assert (found["change"], found["spread"], found["mid"]) == (101.0 - 114.0, 1.0, 101.0)
    assert set(found) == set(Tick.__struct_fields__)


def test_a_price_no_exchange_sends_or_an_unknown_segment_is_a_counted_bad_packet_not_a_tick() -> None:
    builder = TickBuilder("dhan", pair_key=True)
    fields = dict(security_id=1, receive_time=RECEIVED, packet="index")
    for ltp in (float("nan"), float("inf"), -7.7e10, 1.3e29, -1e8):
        assert builder.build(segment="IDX_I", ltp=ltp, **fields) is None  # type: ignore[arg-type]
    assert builder.build(segment="SEGMENT_129", ltp=100.0, **fields) is None  # type: ignore[arg-type]
    assert builder.build(segment="IDX_I", ltp=0.0, **fields) is not None  # type: ignore[arg-type]  # not traded yet
    assert builder.build(segment="MCX_COMM", ltp=-37.63, **fields) is not None  # type: ignore[arg-type]
    assert builder.build(segment="IDX_I", ltp=25_000.0, **fields) is not None  # type: ignore[arg-type]
    counts = {k: v for k, v in builder.counters.items() if k.startswith("bad_packets.")}
    assert counts == {"bad_packets.implausible_price": 5, "bad_packets.unknown_segment": 1}
    assert builder.counters["ticks"] == 3
