"""Kite Connect v3 ticker frame layouts (big-endian), standard library only.

Facts from Kite's documentation and the official SDKs (kiteconnect 5.2.2, kiteconnectjs); see
protocols.md section 2. A binary frame is a u16 packet count, then per packet a u16 length and
the payload; the length alone says what the packet is. A 1-byte frame is a heartbeat.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# Prices are read signed: MCX has allowed negative prices (the SDKs read them unsigned, which turns
# a negative price into a huge positive one). Quantities, counts and times are unsigned, as in the SDKs.
LTP_PACKET = struct.Struct(">Ii")  # token, last price
INDEX_QUOTE_PACKET = struct.Struct(">Iiiiiii")  # token, last, high, low, open, close, price change
INDEX_FULL_PACKET = struct.Struct(">IiiiiiiI")  # + exchange timestamp
QUOTE_PACKET = struct.Struct(">IiIiIIIiiii")  # token last qty avg volume buy-qty sell-qty open high low close
DEPTH_ENTRY = struct.Struct(">IiH2x")  # quantity, price, orders, 2 padding bytes
DEPTH_LEVELS = 5
# + last trade time, OI, OI day high, OI day low, exchange timestamp, then 5 buy and 5 sell entries.
FULL_PACKET = struct.Struct(">IiIiIIIiiiiIIIII" + "IiH2x" * 2 * DEPTH_LEVELS)
FRAME_COUNT = struct.Struct(">H")
PACKET_LENGTH = struct.Struct(">H")

LTP, INDEX_QUOTE, INDEX_FULL, QUOTE, FULL = 8, 28, 32, 44, 184
assert (LTP_PACKET.size, INDEX_QUOTE_PACKET.size, INDEX_FULL_PACKET.size) == (LTP, INDEX_QUOTE, INDEX_FULL)
assert (QUOTE_PACKET.size, FULL_PACKET.size) == (QUOTE, FULL)

# Segment = instrument_token & 0xff.
SEGMENTS = {
    1: "NSE",
    2: "NFO",
    3: "CDS",
    4: "BSE",
    5: "BFO",
    6: "BCD",
    7: "MCX",
    8: "MCXSX",
    9: "INDICES",
    12: "NCO",
}
SEGMENT_CODES = {name: code for code, name in SEGMENTS.items()}
INDICES = 9
# Price divisors: currency derivatives quote to 7 decimals on NSE, 4 on BSE; NCO to 4; the rest in paise.
DIVISORS = {3: 10_000_000.0, 6: 10_000.0, 12: 10_000.0}
DEFAULT_DIVISOR = 100.0

MODES = ("ltp", "quote", "full")
MAX_INSTRUMENTS_PER_CONNECTION = 3000
MAX_CONNECTIONS = 3


def segment_name(token: int) -> str:
    segment = token & 0xFF
    return SEGMENTS.get(segment) or f"SEGMENT_{segment}"


def divisor(token: int) -> float:
    return DIVISORS.get(token & 0xFF, DEFAULT_DIVISOR)


_BY_SEGMENT = {code: (segment_name(code), divisor(code)) for code in range(256)}


def segment_and_divisor(token: int) -> tuple[str, float]:
    """`segment_name` and `divisor` of a token at once (one lookup per packet)."""
    return _BY_SEGMENT[token & 0xFF]


class FrameError(NamedTuple):
    reason: str
    offset: int
    data: bytes


def walk(frame: bytes) -> tuple[list[tuple[int, int]], FrameError | None]:
    """(offset, length) of each packet, and what is wrong with the frame: None when its count and
    lengths add up to it exactly. A count or length that overruns the frame ends the walk (the packets
    before it are kept); bytes after the last packet are reported after all of them.

    One pass reading the big-endian count and lengths in place: it runs for every frame of the feed.
    """
    end = len(frame)
    if end < FRAME_COUNT.size:
        return [], FrameError("frame shorter than its packet count", 0, frame)
    count = frame[0] << 8 | frame[1]
    packets: list[tuple[int, int]] = []
    offset = FRAME_COUNT.size
    for n in range(count):
        if offset + PACKET_LENGTH.size > end:
            return packets, FrameError(f"truncated: packet {n + 1} of {count} has no length", offset, frame[offset:])
        length = frame[offset] << 8 | frame[offset + 1]
        offset += PACKET_LENGTH.size
        if offset + length > end:
            return packets, FrameError(f"truncated: length {length}, {end - offset} bytes left", offset, frame[offset:])
        packets.append((offset, length))
        offset += length
    if offset != end:
        return packets, FrameError(f"{end - offset} bytes after the last of {count} packets", offset, frame[offset:])
    return packets, None
