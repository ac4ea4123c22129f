"""Benchmark: decode throughput (packets/s) of tickpipe vs the official SDKs' parsers.

Dhan (dhanhq) and Kite (kiteconnect), full and quote packets, one per frame as the feeds send
them; the same packets, in the same run, timed in alternating rounds (the machine's speed moves
between rounds, alike for both); prints the best round's rates, their ratio and the spread of the
rounds' ratios (targets: 3x for full packets, 1.5x for the others). Ours produces complete,
enriched Ticks; the SDKs produce dicts (Dhan's of formatted strings). Each result is used (its ticks
counted) and dropped, as a feed handler does: results held in a growing list would have the cyclic
garbage collector rescan them, and the ratio would measure the collector more than the parsers.

    uv run python -m tickpipe_bench.decode --packets 100000
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from dhanhq.marketfeed import MarketFeed
from kiteconnect.ticker import KiteTicker  # type: ignore[import-untyped]  # the SDK ships no types

from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.encode import encode_full
from tickpipe_brokers.dhan.parse import DhanDecoder
from tickpipe_brokers.kite import encode as kite_sim
from tickpipe_brokers.kite.parse import KiteDecoder
from tickpipe_simulator.market import make_instruments


def quote_packet(full: bytes) -> bytes:
    """The quote packet of the same tick (quote is full's first 34 bytes, then day OHLC)."""
    v = wire.FULL_PACKET.unpack_from(full)
    return wire.QUOTE_PACKET.pack(wire.QUOTE, wire.QUOTE_PACKET.size, *v[2:11], v[14], v[15], v[16], v[17])


def streamed(parse: Any, packets: list[bytes]) -> int:
    """Parse each packet and drop the result (counting them, so that nothing is skipped)."""
    n = 0
    for p in packets:
        n += parse(p) is not None
    return n


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    instruments = make_instruments(100, seed=3)
    ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
    fulls = [encode_full(instruments[i % 100].step(), ltt) for i in range(args.packets)]
    sdk = object.__new__(MarketFeed)
    now = datetime.now(UTC)
    dhan_decoder = DhanDecoder()
    for name, packets in (("full", fulls), ("quote", [quote_packet(p) for p in fulls])):
        compare(f"dhan {name}", packets, lambda p: dhan_decoder.decode(p, now), sdk.process_data, args.runs)

    quotes = [instruments[i % 100].step() for i in range(args.packets)]
    tokens = [kite_sim.kite_token(instruments[i % 100]) for i in range(args.packets)]
    kite_now = int(time.time())  # Kite's times are plain epoch seconds
    kite_frames = {
        "full": [kite_sim.frame([kite_sim.encode_full(t, q, kite_now)]) for t, q in zip(tokens, quotes, strict=True)],
        "quote": [kite_sim.frame([kite_sim.encode_quote(t, q)]) for t, q in zip(tokens, quotes, strict=True)],
    }
    ticker = object.__new__(KiteTicker)
    kite_decoder = KiteDecoder()
    for name, frames in kite_frames.items():
        compare(f"kite {name}", frames, lambda f: kite_decoder.decode(f, now), ticker._parse_binary, args.runs)


def compare(name: str, packets: list[bytes], ours: Any, theirs: Any, runs: int) -> None:
    """Time both parsers in alternating rounds (a noisy machine slows both alike) and report the best
    round of each, with the spread of the per-round ratios."""
    rounds = [(timed(lambda: streamed(ours, packets)), timed(lambda: streamed(theirs, packets))) for _ in range(runs)]
    report(name, len(packets), rounds)


def report(name: str, n: int, rounds: list[tuple[float, float]]) -> None:
    ours, theirs = min(r[0] for r in rounds), min(r[1] for r in rounds)
    ratios = sorted(sdk / mine for mine, sdk in rounds)
    rates = f"tickpipe {n / ours:>9,.0f} packets/s   SDK {n / theirs:>9,.0f} packets/s"
    print(f"{name:21}: {rates}   ratio {theirs / ours:.2f}x (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x)")


if __name__ == "__main__":
    main()
