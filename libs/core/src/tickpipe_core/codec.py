"""The queue message format: a versioned msgpack envelope carrying many ticks.

One tick per AMQP message caps the pipeline at a few thousand ticks/s; a message therefore holds a
batch. Two schemas; this build writes 2 and reads both:

- **2** (`[2, count, rows, quotes]`): `rows` is the ticks' `ticks` rows as binary COPY tuples
  (`tickpipe_core.rows`), encoded once at ingestion, which a worker streams into COPY without
  building an object per tick; `quotes` is one `Quote` per tick, in the same order (latest_quotes
  and the live stream read those).
- **1** (`[1, [tick, ...]]`): whole `Tick`s. Written by earlier releases (a queue or spool may still
  hold some after an upgrade), and by tests that need a value no column can hold.

Ingestion encodes each frame's ticks once (`encode_frame`), spools them, and later joins several
frames into one message (`envelope`) without decoding them again.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from tickpipe_core.errors import DecodeError
from tickpipe_core.rows import Quote, decode_rows, encode_row, quote_of
from tickpipe_core.tick import Tick

SCHEMA_VERSION = 2
"""The schema this build writes."""
CONTENT_TYPE = "application/x-msgpack"
SCHEMA_HEADER = "x-tickpipe-schema"


class _Envelope(msgspec.Struct, array_like=True):
    version: int
    ticks: list[Tick]


class _RowsEnvelope(msgspec.Struct, array_like=True):
    version: int
    count: int
    rows: bytes
    quotes: list[Quote]


class _Version(msgspec.Struct, array_like=True):
    version: int


_encoder = msgspec.msgpack.Encoder()
_version_decoder = msgspec.msgpack.Decoder(_Version)
_decoder = msgspec.msgpack.Decoder(_Envelope)
_rows_decoder = msgspec.msgpack.Decoder(_RowsEnvelope)
_ROWS_LENGTH = struct.Struct("<I")


@dataclass
class Message:
    """A decoded message: rows and their quotes (schema 2), or whole ticks (schema 1)."""

    version: int
    rows: bytes = b""
    quotes: list[Quote] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.quotes) if self.version == 2 else len(self.ticks)


# -- schema 2 -----------------------------------------------------------------------------------


def encode_frame(ticks: Sequence[Tick]) -> bytes:
    """One frame's ticks as a spool record's payload: their rows and their quotes, joinable by `envelope`.

    Raises struct.error (or OverflowError) for a value no column can hold.
    """
    return _payload(b"".join([encode_row(t) for t in ticks]), [quote_of(t) for t in ticks])


def _payload(rows: bytes, quotes: Sequence[Quote]) -> bytes:
    encoded = _encoder.encode(list(quotes))
    return b"".join((_ROWS_LENGTH.pack(len(rows)), rows, encoded[_array_header_size(encoded[0]) :]))


def envelope(parts: Sequence[bytes], count: int) -> bytes:
    """One schema-2 message body from `encode_frame` payloads holding `count` ticks in all."""
    rows, quotes = [], []
    for part in parts:
        view = memoryview(part)
        (n,) = _ROWS_LENGTH.unpack_from(view)
        rows.append(view[4 : 4 + n])
        quotes.append(view[4 + n :])
    size = sum(len(r) for r in rows)
    return b"".join((_ROWS_PREFIX, _int(count), _bin_header(size), *rows, _array_header(count), *quotes))


def encode_rows(rows: bytes, quotes: Sequence[Quote]) -> bytes:
    """Rows (binary COPY tuples) and their quotes, one each, as one schema-2 message body."""
    return envelope([_payload(rows, quotes)], len(quotes))


def encode_batch(ticks: Sequence[Tick]) -> bytes:
    """Ticks as one schema-2 message body (raises for a value no column can hold)."""
    return envelope([encode_frame(ticks)], len(ticks))


_ROWS_PREFIX = b"\x94" + _encoder.encode(2)  # msgpack: a 4-array [2, count, rows, quotes]


def _int(n: int) -> bytes:
    return _encoder.encode(n)


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


# -- schema 1 -----------------------------------------------------------------------------------


def encode_batch_v1(ticks: Sequence[Tick]) -> bytes:
    """Ticks as a schema-1 body, as earlier releases wrote them (any value, even one no column holds)."""
    return _encoder.encode(_Envelope(1, list(ticks)))


def encode_ticks(ticks: Sequence[Tick]) -> bytes:
    """Schema-1 spool payload: the bare items of a batch (`envelope_v1` joins such parts)."""
    encoded = _encoder.encode(list(ticks))
    return encoded[_array_header_size(encoded[0]) :]


def envelope_v1(parts: Sequence[bytes], count: int) -> bytes:
    """One schema-1 body from `encode_ticks` parts (an earlier release's spool records)."""
    return b"".join((_V1_PREFIX, _array_header(count), *parts))


_V1_PREFIX = b"\x92" + _encoder.encode(1)  # msgpack: a 2-array [1, ticks]


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _array_header_size(first: int) -> int:
    return 1 if first < 0xDC else 3 if first == 0xDC else 5


# -- reading --------------------------------------------------------------------------------------

# msgspec raises UnicodeDecodeError, not its DecodeError, for a string that is not UTF-8 (found by fuzzing).
_INVALID = (msgspec.DecodeError, UnicodeDecodeError)


def decode_message(body: bytes) -> Message:
    """Decode and validate a message body of either schema; DecodeError says why it is unusable."""
    try:
        version = _version_decoder.decode(body).version
    except _INVALID as e:
        raise DecodeError(f"not a tickpipe message: {e}") from e
    if version == 2:
        try:
            m = _rows_decoder.decode(body)
        except _INVALID as e:
            raise DecodeError(f"invalid tick batch: {e}") from e
        if m.count != len(m.quotes):
            raise DecodeError(f"invalid tick batch: {len(m.quotes)} quotes for {m.count} ticks")
        return Message(2, rows=m.rows, quotes=m.quotes)
    if version == 1:
        try:
            return Message(1, ticks=_decoder.decode(body).ticks)
        except _INVALID as e:
            raise DecodeError(f"invalid tick batch: {e}") from e
    raise DecodeError(f"unsupported schema version {version} (this build reads 1 and 2)")


def decode_batch(body: bytes) -> list[Tick]:
    """A message body's ticks, whole (schema 2's rows read back: slow, for dead letters and tests)."""
    message = decode_message(body)
    if message.version == 1:
        return message.ticks
    try:
        ticks = decode_rows(message.rows)
    except ValueError as e:
        raise DecodeError(f"invalid tick batch: {e}") from e
    if len(ticks) != len(message.quotes):
        raise DecodeError(f"invalid tick batch: {len(ticks)} rows for {len(message.quotes)} quotes")
    return ticks
