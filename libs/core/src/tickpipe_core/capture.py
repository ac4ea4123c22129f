"""Capture files: raw feed frames with their receive times, written by `record`, served by `--replay`.

Layout: one JSON header line (`{"format": "tickpipe-capture", "version": 1, "source": ...}`), then
one record per frame: `<dBBI` (receive time as epoch seconds, connection index, kind 0 binary /
1 text, payload length) followed by the payload bytes. A name ending in `.gz` is gzip-compressed.
Frames are stored exactly as received, so a replay reproduces the day byte for byte. A file cut
short by a crash reads up to its last whole record.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tickpipe_core import ConfigError, get_logger

log = get_logger("capture")

FORMAT = "tickpipe-capture"
VERSION = 1
_RECORD = struct.Struct("<dBBI")
_BINARY, _TEXT = 0, 1


@dataclass(frozen=True)
class CapturedFrame:
    receive_time: float
    """Epoch seconds (UTC) when the socket delivered the frame."""
    connection: int
    data: bytes | str


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, mode)  # type: ignore[return-value]
    return open(path, mode)


class CaptureWriter:
    """Appends frames to a new capture file; flushes every `flush_every` frames and on close."""

    def __init__(self, path: Path, source: str, flush_every: int = 1000) -> None:
        self.path = path
        self._file = _open(path, "wb")
        self._file.write(json.dumps({"format": FORMAT, "version": VERSION, "source": source}).encode() + b"\n")
        self._flush_every = flush_every
        self.frames = 0

    def write(self, receive_time: float, connection: int, data: bytes | str) -> None:
        payload, kind = (data, _BINARY) if isinstance(data, bytes) else (data.encode(), _TEXT)
        self._file.write(_RECORD.pack(receive_time, connection, kind, len(payload)))
        self._file.write(payload)
        self.frames += 1
        if self.frames % self._flush_every == 0:
            self._file.flush()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as e:  # the disk filled up: what was written before stays readable
            log.error("capture_close_failed", path=str(self.path), error=f"{type(e).__name__}: {e}")

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_header(path: Path) -> dict[str, Any]:
    with _open(path, "rb") as f:
        return _header(f, path)


def _header(f: IO[bytes], path: Path) -> dict[str, Any]:
    try:
        header = json.loads(f.readline(4096))
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a tickpipe capture file ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a tickpipe capture file")
    if header.get("version") != VERSION:
        raise ConfigError(f"{path}: capture version {header.get('version')} (this build reads {VERSION})")
    return header


def read_frames(path: Path) -> Iterator[CapturedFrame]:
    """Every whole frame in the file, in order."""
    with _open(path, "rb") as f:
        _header(f, path)
        try:
            while head := f.read(_RECORD.size):
                receive_time, connection, kind, length = _RECORD.unpack(head)
                payload = f.read(length)
                if len(payload) < length:
                    raise EOFError(f"payload of {length} bytes has {len(payload)}")
                yield CapturedFrame(receive_time, connection, payload.decode() if kind == _TEXT else payload)
        except (struct.error, EOFError) as e:
            # A recorder killed mid-write leaves a partial last record (or gzip member).
            log.warning("capture_truncated", path=str(path), error=str(e))
