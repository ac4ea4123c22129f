"""The durable spool: every tick ingestion has read is on local disk until RabbitMQ confirms it.

Ingestion appends each frame's ticks (already encoded, `encode_ticks`) as one record before anything
else happens to them; the publisher reads records in order, publishes them and, once the broker has
confirmed a prefix, `commit`s it. A segment file is deleted only when every record in it is confirmed.
So a RabbitMQ outage, a SIGTERM or a kill -9 costs nothing that was read: the next start replays
what is left, in order, before any newer tick, and the workers' dedup on tick_id absorbs a record
published before the crash and again after it.

On disk: `INGEST_SPOOL_DIR/<sequence>.spool` segments, each a magic header and then records of
`length u32 | crc32 u32 | ticks u32 | payload`. A record cut short by a crash (or a disk that filled
up mid-write) is found by its length and checksum when the spool is opened, counted, logged and cut
off; it never stops a start. The directory is locked (flock), so two ingestions cannot share one.

Durability against a crash of the process comes from the page cache (a write() that returned is in
the kernel); against a crash of the machine, from fsync, as INGEST_SPOOL_FSYNC says: `interval`
(every INGEST_SPOOL_FSYNC_INTERVAL_MS, in a thread), `segment` (when a segment is full), or `never`.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from tickpipe_core import ConfigError, get_logger

log = get_logger("spool")

FsyncPolicy = Literal["interval", "segment", "never"]

MAGIC = b"TPSPOOL1"
_RECORD = struct.Struct("<III")  # payload length, crc32 of the payload, ticks in it
_SUFFIX = ".spool"
_READ_CHUNK = 1 << 20


# Named tuples, not dataclasses: the publisher reads one Record (and two Positions) per frame.
class Position(NamedTuple):
    """A place in the spool: the end of a record (segment sequence number, byte offset); ordered."""

    segment: int
    offset: int


class Record(NamedTuple):
    payload: bytes
    ticks: int
    start: Position
    end: Position


@dataclass
class _Segment:
    seq: int
    path: Path
    size: int
    sealed: bool


@dataclass(frozen=True)
class Recovery:
    """What opening the spool found from an earlier run."""

    segments: int
    records: int
    ticks: int
    torn: int
    bytes: int = 0


class Spool:
    """Append-only segment files with a read cursor and a confirmed prefix."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        fsync: FsyncPolicy = "interval",
        segment_bytes: int = 8 << 20,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync_policy = fsync
        self.segment_bytes = min(segment_bytes, max_bytes // 4)
        self._segments: deque[_Segment] = deque()
        self._fd = -1  # the segment being written (the last one)
        self._read_fds: dict[int, int] = {}
        self._cursor = Position(0, 0)
        self._confirmed = Position(0, 0)
        self._lock_fd = -1
        self._dirty = False  # written since the last fsync
        self.bytes = 0  # on disk, in all segments
        self.unread_ticks = 0
        self.pending_ticks = 0  # appended and not yet confirmed
        self.fsyncs = 0

    # -- opening and closing ----------------------------------------------------------------------

    def open(self) -> Recovery:
        """Lock the directory, check what an earlier run left (cutting off a torn record), start a segment."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"INGEST_SPOOL_DIR {self.directory}: {e.strerror}") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigError(
                f"INGEST_SPOOL_DIR {self.directory} is in use by another ingestion; give each ingestion its own"
            ) from None
        self._confirmed = _read_mark(self.directory)
        records = ticks = torn = 0
        for path, skip in _unconfirmed(self.directory, self._confirmed):
            good, n_records, n_ticks, n_torn = _scan(path, repair=True, skip_before=skip)
            records, ticks, torn = records + n_records, ticks + n_ticks, torn + n_torn
            if n_records == 0:
                path.unlink()
                continue
            self._segments.append(_Segment(int(path.stem), path, good, sealed=True))
            self.bytes += good
            if len(self._segments) == 1:
                self._cursor = Position(int(path.stem), skip)
        self.unread_ticks = self.pending_ticks = ticks
        found = Recovery(len(self._segments), records, ticks, torn, self.bytes)
        if self._segments:
            log.info("spool_recovered", directory=str(self.directory), **found.__dict__)
        if torn:
            log.error("spool_torn_records", directory=str(self.directory), torn=torn)
        self._roll()
        return found

    def close(self) -> None:
        """Sync what is written, delete what is confirmed, release the directory."""
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1
            if self._segments:
                self._segments[-1].sealed = True
            self._delete_confirmed()
            self.write_mark()
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- writing ----------------------------------------------------------------------------------

    def append(self, payload: bytes, ticks: int) -> bool:
        """Write one record; False when it cannot be kept (spool full, disk full): the caller counts the loss."""
        size = _RECORD.size + len(payload)
        if self.bytes + size > self.max_bytes:
            return False
        full = self._fd < 0 or self._segments[-1].size + size > self.segment_bytes
        if full and not self._roll():
            return False
        segment = self._segments[-1]
        record = _RECORD.pack(len(payload), zlib.crc32(payload), ticks) + payload
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            self._cut(segment, e)
            return False
        segment.size += size
        self.bytes += size
        self.unread_ticks += ticks
        self.pending_ticks += ticks
        self._dirty = True
        return True

    def sync(self) -> None:
        """fsync the segment being written, if anything was written since the last time."""
        if self._dirty and self._fd >= 0 and self.fsync_policy != "never":
            self._dirty = False
            os.fsync(self._fd)
            self.fsyncs += 1

    def write_mark(self) -> None:
        """Note the confirmed position on disk: the next start does not publish a segment's confirmed part again.

        A stale mark (a crash since) only means some ticks are published twice, which the workers store once.
        """
        tmp = self.directory / f"{_MARK}.tmp"
        try:
            tmp.write_text(f"{self._confirmed.segment} {self._confirmed.offset}\n")
            os.replace(tmp, self.directory / _MARK)
        except OSError as e:
            log.warning("spool_mark_failed", error=e.strerror)

    async def sync_in_background(self) -> None:
        """`sync` in a thread (the interval policy), so the feed never waits on the disk."""
        self.write_mark()
        if not self._dirty or self._fd < 0 or self.fsync_policy == "never":
            return
        self._dirty = False
        fd = os.dup(self._fd)  # the segment may roll (and its fd close) while the thread syncs
        try:
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        self.fsyncs += 1

    def _roll(self) -> bool:
        """Seal the current segment and start the next one."""
        # Sequence numbers only grow, past the confirmed mark too: a lower one would read as confirmed.
        seq = (self._segments[-1].seq if self._segments else self._confirmed.segment) + 1
        path = self.directory / f"{seq:012d}{_SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as e:
            log.error("spool_segment_failed", path=str(path), error=e.strerror)
            return False
        try:
            os.write(fd, MAGIC)
        except OSError as e:
            os.close(fd)
            path.unlink(missing_ok=True)
            log.error("spool_segment_failed", path=str(path), error=e.strerror)
            return False
        if self._fd >= 0:
            if self.fsync_policy != "never":
                self._dirty = True
                self.sync()
            os.close(self._fd)
            self._segments[-1].sealed = True
        self._fd = fd
        self._segments.append(_Segment(seq, path, len(MAGIC), sealed=False))
        self.bytes += len(MAGIC)
        if self._cursor.segment == 0:
            self._cursor = Position(seq, len(MAGIC))
        self._delete_confirmed()
        return True

    def _cut(self, segment: _Segment, error: OSError) -> None:
        """A write failed part-way: cut the segment back to its last whole record."""
        log.error("spool_write_failed", path=str(segment.path), error=error.strerror or str(error))
        try:
            os.ftruncate(self._fd, segment.size)
        except OSError:  # the next open finds the torn record by its checksum
            log.exception("spool_truncate_failed", path=str(segment.path))

    # -- reading and confirming -------------------------------------------------------------------

    def read(self, max_ticks: int, max_bytes: int = 4 << 20) -> list[Record]:
        """Records from the cursor on, in order, up to about `max_ticks` ticks (at least one record)."""
        out: list[Record] = []
        ticks = size = 0
        while ticks < max_ticks and size < max_bytes:
            segment = self._segment(self._cursor.segment)
            offset = self._cursor.offset
            if segment is None or offset >= segment.size:
                # Read to the end of this segment (which may since be sealed, confirmed and deleted).
                if segment is not None and not segment.sealed:
                    break
                following = self._after(self._cursor.segment)
                if following is None:
                    break
                self._cursor = Position(following.seq, len(MAGIC))
                continue
            fd = self._read_fd(segment)
            chunk = os.pread(fd, min(_READ_CHUNK, segment.size - offset), offset)
            view, at = memoryview(chunk), 0
            while at + _RECORD.size <= len(chunk) and ticks < max_ticks and size < max_bytes:
                length, _crc, count = _RECORD.unpack_from(view, at)
                end = at + _RECORD.size + length
                if end > len(chunk):
                    if at == 0:  # one record larger than a chunk
                        chunk = os.pread(fd, _RECORD.size + length, offset)
                        view, end = memoryview(chunk), _RECORD.size + length
                    else:
                        break
                start = Position(segment.seq, offset + at)
                out.append(
                    Record(bytes(view[at + _RECORD.size : end]), count, start, Position(segment.seq, offset + end))
                )
                ticks += count
                size += length
                at = end
            self._cursor = Position(segment.seq, offset + at)
        self.unread_ticks -= ticks
        return out

    def rewind(self, to: Position, ticks: int) -> None:
        """Read again from `to` (a publish failed): the `ticks` read since then count as unread."""
        self._cursor = to
        self.unread_ticks += ticks

    def commit(self, upto: Position, ticks: int) -> None:
        """The broker confirmed every record before `upto` (`ticks` of them): delete the segments it completes."""
        self.pending_ticks -= ticks
        self._confirmed = upto
        self._delete_confirmed()

    def _delete_confirmed(self) -> None:
        """Delete sealed segments whose every record is confirmed (confirms come as a prefix, in order)."""
        while self._segments:
            first = self._segments[0]
            confirmed = self._confirmed.segment > first.seq or (
                self._confirmed.segment == first.seq and self._confirmed.offset >= first.size
            )
            if not (first.sealed and (confirmed or first.size == len(MAGIC))):
                return
            self._segments.popleft()
            fd = self._read_fds.pop(first.seq, None)
            if fd is not None:
                os.close(fd)
            first.path.unlink(missing_ok=True)
            self.bytes -= first.size

    def _segment(self, seq: int) -> _Segment | None:
        for segment in self._segments:
            if segment.seq == seq:
                return segment
        return None

    def _after(self, seq: int) -> _Segment | None:
        for segment in self._segments:
            if segment.seq > seq:
                return segment
        return None

    def _read_fd(self, segment: _Segment) -> int:
        fd = self._read_fds.get(segment.seq)
        if fd is None:
            fd = self._read_fds[segment.seq] = os.open(segment.path, os.O_RDONLY)
        return fd

    @property
    def segments(self) -> int:
        return len(self._segments)


def inspect(directory: Path) -> Recovery:
    """What a spool directory holds unconfirmed, read without changing it (ingestion may be running on it)."""
    segments = records = ticks = torn = size = 0
    for path, skip in _unconfirmed(directory, _read_mark(directory)):
        good, n_records, n_ticks, n_torn = _scan(path, repair=False, skip_before=skip)
        segments += 1
        records, ticks, torn, size = records + n_records, ticks + n_ticks, torn + n_torn, size + good
    return Recovery(segments, records, ticks, torn, size)


_MARK = "confirmed"


def _read_mark(directory: Path) -> Position:
    try:
        segment, offset = (int(v) for v in (directory / _MARK).read_text().split())
    except (OSError, ValueError):
        return Position(0, 0)
    return Position(segment, offset)


def _unconfirmed(directory: Path, mark: Position) -> list[tuple[Path, int]]:
    """Segment files from the mark on, each with where its unconfirmed records start.

    A segment wholly before the mark was confirmed (a crash came before its deletion): deleted here.
    """
    out = []
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        seq = int(path.stem)
        if seq < mark.segment:
            path.unlink(missing_ok=True)
            continue
        out.append((path, max(len(MAGIC), mark.offset if seq == mark.segment else 0)))
    return out


def _scan(path: Path, repair: bool, skip_before: int = 0) -> tuple[int, int, int, int]:
    """Check one segment: (good bytes, records and ticks from `skip_before` on, torn records).

    With `repair`, a torn record (and whatever follows it) is cut off the file.
    """
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        log.error("spool_segment_unreadable", path=str(path), size=len(data))
        return 0, 0, 0, 1 if data else 0
    at, records, ticks = len(MAGIC), 0, 0
    while at + _RECORD.size <= len(data):
        length, crc, count = _RECORD.unpack_from(data, at)
        end = at + _RECORD.size + length
        if end > len(data) or zlib.crc32(data[at + _RECORD.size : end]) != crc:
            break
        if at >= skip_before:
            records, ticks = records + 1, ticks + count
        at = end
    torn = 1 if at < len(data) else 0
    if torn and repair:
        log.error("spool_record_torn", path=str(path), offset=at, cut_bytes=len(data) - at)
        with open(path, "r+b") as f:
            f.truncate(at)
    return at, records, ticks, torn
