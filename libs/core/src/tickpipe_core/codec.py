"""The queue message format: a versioned msgpack envelope carrying many ticks.

One tick per AMQP message caps the pipeline at a few thousand ticks/s; a message therefore holds a
batch. msgpack via msgspec encodes and validates a 500-tick batch in well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tickpipe_core.errors import DecodeError
from tickpipe_core.tick import Tick

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/x-msgpack"
SCHEMA_HEADER = "x-tickpipe-schema"


class _Envelope(msgspec.Struct, array_like=True):
    version: int
    ticks: list[Tick]


class _Version(msgspec.Struct, array_like=True):
    version: int


# A tick id travels as its 16 bytes (msgpack bin), not as 36 characters of text: smaller, and cheaper
# to write and read. The decoder takes either form, so messages and spools from earlier releases
# (text ids) still decode to the same UUIDs.
_encoder = msgspec.msgpack.Encoder(uuid_format="bytes")
_version_decoder = msgspec.msgpack.Decoder(_Version)
_decoder = msgspec.msgpack.Decoder(_Envelope)


def encode_batch(ticks: Sequence[Tick]) -> bytes:
    """Encode ticks into one message body."""
    return _encoder.encode(_Envelope(SCHEMA_VERSION, list(ticks)))


def encode_ticks(ticks: Sequence[Tick]) -> bytes:
    """Encode ticks as the bare items of a batch: `envelope` joins such parts into one message body.

    Ingestion encodes each frame's ticks once, spools them, and later joins several frames' parts
    into one message without decoding or encoding them again.
    """
    encoded = _encoder.encode(list(ticks))
    return encoded[_array_header_size(encoded[0]) :]


def envelope(parts: Sequence[bytes], count: int) -> bytes:
    """One message body from `encode_ticks` parts holding `count` ticks in all (same as `encode_batch`)."""
    return b"".join((_ENVELOPE_PREFIX, _array_header(count), *parts))


_ENVELOPE_PREFIX = b"\x92" + _encoder.encode(SCHEMA_VERSION)  # msgpack: a 2-array [version, ticks]


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _array_header_size(first: int) -> int:
    return 1 if first < 0xDC else 3 if first == 0xDC else 5


# msgspec raises UnicodeDecodeError, not its DecodeError, for a string that is not UTF-8 (found by fuzzing).
_INVALID = (msgspec.DecodeError, UnicodeDecodeError)


def decode_batch(body: bytes) -> list[Tick]:
    """Decode and validate a message body; DecodeError says why it is unusable."""
    try:
        version = _version_decoder.decode(body).version
    except _INVALID as e:
        raise DecodeError(f"not a tickpipe message: {e}") from e
    if version != SCHEMA_VERSION:
        raise DecodeError(f"unsupported schema version {version} (this build reads {SCHEMA_VERSION})")
    try:
        return _decoder.decode(body).ticks
    except _INVALID as e:
        raise DecodeError(f"invalid tick batch: {e}") from e
