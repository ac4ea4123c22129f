"""Benchmark: decode throughput (packets/s) of tickpipe vs the official SDKs' parsers.

Dhan (dhanhq) and Kite (kiteconnect), full and quote packets, one per frame as the feeds send
them; the same packets, in the same run; prints both rates and the ratio (target: at least 3x).
Ours produces complete, enriched Ticks; the SDKs produce dicts (Dhan's of formatted strings).

    uv run python scripts/bench/bench_decode.py --packets 100000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from dhanhq.marketfeed import MarketFeed
from kiteconnect.ticker import KiteTicker

from tickpipe_ingestion.dhan import wire
from tickpipe_ingestion.dhan.parse import DhanDecoder
from tickpipe_ingestion.kite.parse import KiteDecoder
from tickpipe_simulator import kite as kite_sim
from tickpipe_simulator.dhan import encode_full
from tickpipe_simulator.market import make_instruments


def quote_packet(full: bytes) -> bytes:
    """The quote packet of the same tick (quote is full's first 34 bytes, then day OHLC)."""
    v = wire.FULL_PACKET.unpack_from(full)
    return wire.QUOTE_PACKET.pack(wire.QUOTE, wire.QUOTE_PACKET.size, *v[2:11], v[14], v[15], v[16], v[17])


def best_of(runs: int, fn: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    instruments = make_instruments(100, seed=3)
    ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
    fulls = [encode_full(instruments[i % 100].step(), ltt) for i in range(args.packets)]
    sdk = object.__new__(MarketFeed)
    now = datetime.now(UTC)
    for name, packets in (("full", fulls), ("quote", [quote_packet(p) for p in fulls])):
        decoder = DhanDecoder()
        ours = best_of(args.runs, lambda packets=packets, decoder=decoder: [decoder.decode(p, now) for p in packets])
        theirs = best_of(args.runs, lambda packets=packets: [sdk.process_data(p) for p in packets])
        report(f"dhan {name}", len(packets), ours, theirs)

    quotes = [instruments[i % 100].step() for i in range(args.packets)]
    tokens = [kite_sim.kite_token(instruments[i % 100]) for i in range(args.packets)]
    kite_frames = {
        "full": [kite_sim.frame([kite_sim.encode_full(t, q, ltt)]) for t, q in zip(tokens, quotes, strict=True)],
        "quote": [kite_sim.frame([kite_sim.encode_quote(t, q)]) for t, q in zip(tokens, quotes, strict=True)],
    }
    ticker = object.__new__(KiteTicker)
    for name, frames in kite_frames.items():
        kite_decoder = KiteDecoder()
        ours = best_of(args.runs, lambda f=frames, d=kite_decoder: [d.decode(x, now) for x in f])
        theirs = best_of(args.runs, lambda f=frames: [ticker._parse_binary(x) for x in f])
        report(f"kite {name}", len(frames), ours, theirs)


def report(name: str, n: int, ours: float, theirs: float) -> None:
    rates = f"tickpipe {n / ours:>9,.0f} packets/s   SDK {n / theirs:>9,.0f} packets/s"
    print(f"{name:10}: {rates}   ratio {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
