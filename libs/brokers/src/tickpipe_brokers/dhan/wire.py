"""Dhan v2 live-feed packet layouts (little-endian), standard library only.

Facts from Dhan's v2 documentation and the official `dhanhq` 2.3.0 SDK (see protocols.md section 1).
Offsets count from the start of a packet; the 8-byte header is part of every layout. The same
Struct objects decode (ingestion) and encode (simulator), so the two cannot drift apart.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

# Response codes.
INDEX = 1
TICKER = 2
QUOTE = 4
OI = 5
PREV_CLOSE = 6
MARKET_STATUS = 7
FULL = 8
DISCONNECT = 50

# Request codes (JSON text frames).
REQUEST_CODES = {
    "ticker": (15, 16),
    "quote": (17, 18),
    "full": (21, 22),
}
REQUEST_DISCONNECT = 12

MAX_INSTRUMENTS_PER_MESSAGE = 100
MAX_INSTRUMENTS_PER_CONNECTION = 5000
MAX_CONNECTIONS = 5

# Exchange segments: numeric in packets, names in requests. 6 is unused.
SEGMENTS = {
    0: "IDX_I",
    1: "NSE_EQ",
    2: "NSE_FNO",
    3: "NSE_CURRENCY",
    4: "BSE_EQ",
    5: "MCX_COMM",
    7: "BSE_CURRENCY",
    8: "BSE_FNO",
}
SEGMENT_CODES = {name: code for code, name in SEGMENTS.items()}


_SEGMENT_NAMES = tuple(SEGMENTS.get(code) or f"SEGMENT_{code}" for code in range(256))  # the field is a u8


def segment_name(code: int) -> str:
    return _SEGMENT_NAMES[code]


DISCONNECT_REASONS = {
    800: "internal server error",
    804: "instruments exceed limit",
    805: "too many requests or connections",
    806: "data APIs not subscribed",
    807: "access token expired",
    808: "authentication failed",
    809: "access token invalid",
    810: "client id invalid",
    811: "invalid expiry date",
    812: "invalid date format",
    813: "invalid security id",
    814: "invalid request",
}
AUTH_DISCONNECT_CODES = frozenset({807, 808, 809, 810})
# The subscription itself is wrong (too many instruments, no data plan, a bad request): reconnecting
# at once cannot fix it, so these wait minutes between tries and say why.
PERMANENT_DISCONNECT_CODES = frozenset({804, 806, 811, 812, 813, 814})

# LTT is India wall-clock time encoded as if it were UTC epoch seconds.
IST_OFFSET_SECONDS = 19800

# Integer fields are read unsigned, as the official SDK does: they are quantities, counts and times
# that are never negative, and a signed i16 LTQ would turn a 40,000-unit trade negative. (The docs
# call them signed; on every value below 2**15 or 2**31 the two readings agree.)
HEADER = struct.Struct("<BHBI")  # code, packet length (header included), segment, security id
TICKER_PACKET = struct.Struct("<BHBIfI")  # + LTP, LTT
QUOTE_PACKET = struct.Struct("<BHBIfHIfIIIffff")  # + LTP LTQ LTT ATP volume sell buy open close high low
OI_PACKET = struct.Struct("<BHBII")  # + OI
PREV_CLOSE_PACKET = struct.Struct("<BHBIfI")  # + previous close, previous-day OI
DISCONNECT_PACKET = struct.Struct("<BHBIH")  # + reason
DEPTH_LEVEL = struct.Struct("<IIHHff")  # bid qty, ask qty, bid orders, ask orders, bid price, ask price
DEPTH_LEVELS = 5
# + LTP LTQ LTT ATP volume sell buy OI OI-high OI-low open close high low, then 5 depth levels.
FULL_PACKET = struct.Struct("<BHBIfHIfIIIIIIffff" + "IIHHff" * DEPTH_LEVELS)

# Packet lengths each code must have; INDEX and MARKET_STATUS are undocumented (at least a header).
LENGTHS = {
    TICKER: TICKER_PACKET.size,
    QUOTE: QUOTE_PACKET.size,
    OI: OI_PACKET.size,
    PREV_CLOSE: PREV_CLOSE_PACKET.size,
    FULL: FULL_PACKET.size,
    DISCONNECT: DISCONNECT_PACKET.size,
}
assert (TICKER_PACKET.size, QUOTE_PACKET.size, FULL_PACKET.size) == (16, 50, 162)


class Packet(NamedTuple):
    """Where one packet sits in a frame, as its header says."""

    code: int
    length: int
    segment: int
    security_id: int
    offset: int


class FrameError(NamedTuple):
    """Why the rest of a frame (from `offset`) could not be walked, or a packet was rejected."""

    reason: str
    offset: int
    data: bytes


def _resumes_at(frame: bytes, pos: int) -> bool:
    """True when `pos` is the frame's end or starts a header whose code and length agree."""
    if pos == len(frame):
        return True
    if pos + HEADER.size > len(frame):
        return False
    code, length, _, _ = HEADER.unpack_from(frame, pos)
    return bool(LENGTHS.get(code) == length and pos + length <= len(frame))


def walk(frame: bytes, start: int = 0) -> Iterator[Packet | FrameError]:
    """Yield each packet of a frame by its length field; a bad packet yields a FrameError.

    The SDK reads only the first packet of a frame; we walk them all. A packet whose length
    disagrees with its code is reported and skipped; the walk resumes after whichever of the two
    lengths (the field's or the code's) lands on the frame's end or a well-formed header, so that
    one corrupt length field does not take the good packets behind it along. A truncated packet or
    a nonsense length ends the walk of that frame. `start`: the offset of a packet to walk from.
    """
    offset, end = start, len(frame)
    while offset < end:
        if end - offset < HEADER.size:
            yield FrameError("truncated header", offset, frame[offset:])
            return
        code, length, segment, security_id = HEADER.unpack_from(frame, offset)
        if length < HEADER.size:
            yield FrameError(f"length {length} shorter than the header", offset, frame[offset:])
            return
        if offset + length > end:
            yield FrameError(f"truncated: length {length}, {end - offset} bytes left", offset, frame[offset:])
            return
        expected = LENGTHS.get(code)
        if expected is not None and length != expected:
            yield FrameError(
                f"code {code} needs {expected} bytes, length says {length}",
                offset,
                frame[offset : offset + length],
            )
            if not _resumes_at(frame, offset + length) and _resumes_at(frame, offset + expected):
                length = expected
        else:
            yield Packet(code, length, segment, security_id, offset)
        offset += length
