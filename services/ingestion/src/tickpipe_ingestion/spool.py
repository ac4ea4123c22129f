"""The durable spool: every tick ingestion has read is on local disk until RabbitMQ confirms it.

Ingestion appends each frame's ticks (already encoded, `encode_ticks`) as one record before anything
else happens to them; the publisher reads records in order, publishes them and, once the broker has
confirmed a prefix, `commit`s it. A segment file is deleted only when every record in it is confirmed.
So a RabbitMQ outage, a SIGTERM or a kill -9 costs nothing that was read: the next start replays
what is left, in order, before any newer tick, and the workers' dedup on tick_id absorbs a record
published before the crash and again after it.

On disk: `INGEST_SPOOL_DIR/<sequence>.spool` segments, each a magic header and then records of
`marker | length u32 | crc32 u32 | ticks u32 | payload`, the checksum over the length, the tick count
and the payload. Opening the spool checks every unconfirmed record. A damaged one (a record cut short
by a crash, a flipped byte, a damaged file header) is skipped, and reading resumes at the next
marker that starts a whole record, so one bad byte costs one record, not the rest of the file. What
was skipped is counted in records, bytes and (estimated) ticks and logged; the damaged file is moved
to `quarantine/` (never deleted), and the good records go on in a rewritten segment. Segments of the
first format (no markers) are read the same way and rewritten. The directory is locked (flock), so
two ingestions cannot share one.

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

MAGIC = b"TPSPOOL2"
_MAGIC_V1 = b"TPSPOOL1"  # the first format: records without a marker, the checksum over the payload only
_MARKER = b"\xd7TPR"  # starts every record: where reading resumes after damage
_RECORD = struct.Struct("<4sIII")  # marker, payload length, crc32 of (length, ticks, payload), ticks
_RECORD_V1 = struct.Struct("<III")  # payload length, crc32 of the payload, ticks
_LENGTH_TICKS = struct.Struct("<II")
_MAX_PAYLOAD = 256 << 20  # no record is larger: a length beyond it is damage
_SUFFIX = ".spool"
_READ_CHUNK = 1 << 20
QUARANTINE = "quarantine"


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
    """What opening the spool found from an earlier run: the good records, and what was skipped."""

    segments: int
    records: int
    ticks: int
    torn: int
    """Damaged records skipped (a record cut short, a bad checksum, a damaged file header)."""
    bytes: int = 0
    skipped_bytes: int = 0
    lost_ticks: int = 0
    """Ticks in the skipped records: their own count where a header survived, else estimated by size."""
    quarantined: int = 0
    """Segment files that held damage, moved to quarantine/ (by this open; `inspect` counts them all)."""


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
        records = ticks = torn = skipped = lost = quarantined = 0
        for path, skip in _unconfirmed(self.directory, self._confirmed):
            data = path.read_bytes()
            scan = _scan(data, skip)
            if scan.spans:
                quarantined += self._quarantine(path, data, scan)
                torn, skipped, lost = torn + scan.damaged, skipped + scan.skipped_bytes, lost + scan.lost_ticks
            if scan.spans or not data.startswith(MAGIC):
                # The good unconfirmed records, in a segment of the current format under the same name.
                _rewrite(path, data, scan)
                if int(path.stem) == self._confirmed.segment:
                    self._confirmed = Position(self._confirmed.segment, len(MAGIC))
                    self.write_mark()
                skip = len(MAGIC)
            records, ticks = records + len(scan.records), ticks + scan.ticks
            if not scan.records:
                path.unlink(missing_ok=True)
                continue
            size = path.stat().st_size
            self._segments.append(_Segment(int(path.stem), path, size, sealed=True))
            self.bytes += size
            if len(self._segments) == 1:
                self._cursor = Position(int(path.stem), skip)
        self.unread_ticks = self.pending_ticks = ticks
        found = Recovery(len(self._segments), records, ticks, torn, self.bytes, skipped, lost, quarantined)
        if self._segments:
            log.info("spool_recovered", directory=str(self.directory), **found.__dict__)
        if skipped:
            log.error(
                "spool_damaged_records_skipped",
                directory=str(self.directory),
                records=torn,
                bytes=skipped,
                ticks_estimate=lost,
                quarantined=quarantined,
            )
        self._roll()
        return found

    def _quarantine(self, path: Path, data: bytes, scan: _Scanned) -> int:
        """Keep a damaged segment as it was, in quarantine/ (the good records go on from a rewritten copy)."""
        target = self.directory / QUARANTINE / path.name
        try:
            target.parent.mkdir(exist_ok=True)
            n = 1
            while target.exists():
                target, n = target.with_name(f"{path.name}.{n}"), n + 1
            target.write_bytes(data)
        except OSError as e:
            log.error("spool_quarantine_failed", path=str(path), error=e.strerror)
            return 0
        for start, end, ticks in scan.spans:
            log.error(
                "spool_damage", path=str(path), offset=start, bytes=end - start, ticks_estimate=ticks,
                quarantined=str(target),
            )  # fmt: skip
        return 1

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
        record = _record(payload, ticks)
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
                _marker, length, _crc, count = _RECORD.unpack_from(view, at)
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
    """What a spool directory holds unconfirmed, and what of it is damaged, read without changing it
    (ingestion may be running on it); `quarantined` counts every file in quarantine/."""
    segments = records = ticks = torn = size = skipped = lost = 0
    for path, skip in _unconfirmed(directory, _read_mark(directory), delete=False):
        scan = _scan(path.read_bytes(), skip)
        segments += 1
        records, ticks, size = records + len(scan.records), ticks + scan.ticks, size + path.stat().st_size
        torn, skipped, lost = torn + scan.damaged, skipped + scan.skipped_bytes, lost + scan.lost_ticks
    return Recovery(segments, records, ticks, torn, size, skipped, lost, len(quarantined(directory)))


def quarantined(directory: Path) -> list[Path]:
    """The segment files that held damage, kept as they were."""
    folder = directory / QUARANTINE
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


_MARK = "confirmed"


def _read_mark(directory: Path) -> Position:
    try:
        segment, offset = (int(v) for v in (directory / _MARK).read_text().split())
    except (OSError, ValueError):
        return Position(0, 0)
    return Position(segment, offset)


def _unconfirmed(directory: Path, mark: Position, delete: bool = True) -> list[tuple[Path, int]]:
    """Segment files from the mark on, each with where its unconfirmed records start.

    A segment wholly before the mark was confirmed (a crash came before its deletion): deleted here,
    unless only looking.
    """
    out = []
    for path in sorted(directory.glob(f"*{_SUFFIX}")):
        seq = int(path.stem)
        if seq < mark.segment:
            if delete:
                path.unlink(missing_ok=True)
            continue
        out.append((path, max(len(MAGIC), mark.offset if seq == mark.segment else 0)))
    return out


def _record(payload: bytes, ticks: int) -> bytes:
    """One record of the current format."""
    crc = zlib.crc32(payload, zlib.crc32(_LENGTH_TICKS.pack(len(payload), ticks)))
    return _RECORD.pack(_MARKER, len(payload), crc, ticks) + payload


def _whole(data: bytes, at: int, v1: bool) -> tuple[int, int] | None:
    """(end, ticks) of the whole record at `at`, or None: cut short, a bad marker or checksum."""
    head = _RECORD_V1 if v1 else _RECORD
    if at + head.size > len(data):
        return None
    if v1:
        length, crc, ticks = _RECORD_V1.unpack_from(data, at)
    else:
        marker, length, crc, ticks = _RECORD.unpack_from(data, at)
        if marker != _MARKER:
            return None
    end = at + head.size + length
    if length > _MAX_PAYLOAD or end > len(data):
        return None
    payload = memoryview(data)[at + head.size : end]
    expected = zlib.crc32(payload) if v1 else zlib.crc32(payload, zlib.crc32(_LENGTH_TICKS.pack(length, ticks)))
    return (end, ticks) if crc == expected else None


def _next_record(data: bytes, at: int, v1: bool) -> int:
    """Where the next whole record starts after damage at `at` (the end of the data if none does).

    The current format finds candidates by their marker; the first format has none, so every offset is
    tried (its checksum tells a real record from chance).
    """
    position = at + 1
    while position < len(data):
        if not v1:
            position = data.find(_MARKER, position)
            if position < 0:
                return len(data)
        if _whole(data, position, v1) is not None:
            return position
        position += 1
    return len(data)


@dataclass
class _Scanned:
    """One segment's records from the confirmed mark on, and the damaged spans among them."""

    v1: bool
    records: list[tuple[int, int, int]]  # (start, end, ticks) of each whole unconfirmed record
    spans: list[tuple[int, int, int]]  # (start, end, ticks estimate) of each unreadable stretch
    damaged: int = 0  # records in the spans: those their markers say started there, at least one a span
    skipped_bytes: int = 0
    lost_ticks: int = 0

    @property
    def ticks(self) -> int:
        return sum(t for _, _, t in self.records)


def _scan(data: bytes, skip_before: int = 0) -> _Scanned:
    """Every whole record of a segment and every damaged stretch between them, from `skip_before` on.

    A damaged file header is a damaged stretch too: the format is then told by its records.
    """
    if data.startswith(MAGIC) or data.startswith(_MAGIC_V1):
        v1, at, spans = data.startswith(_MAGIC_V1), len(MAGIC), []
    else:  # the header itself is damaged (or the file is empty)
        v1 = _MARKER not in data[len(MAGIC) :]
        at = _next_record(data, len(MAGIC) - 1, v1) if len(data) > len(MAGIC) else len(data)
        spans = [(0, at)] if data else []
    records: list[tuple[int, int, int]] = []
    while at < len(data):
        whole = _whole(data, at, v1)
        if whole is not None:
            records.append((at, whole[0], whole[1]))
            at = whole[0]
            continue
        following = _next_record(data, at, v1)
        spans.append((at, following))
        at = following
    scanned = _Scanned(v1, [r for r in records if r[0] >= skip_before], [])
    good_ticks, good_bytes = sum(r[2] for r in records), sum(r[1] - r[0] for r in records)
    for start, end in spans:
        if end <= skip_before and start >= len(MAGIC):
            continue  # damage in records already confirmed: nothing of it is lost
        ticks = _ticks_in(data, start, end, v1, good_bytes / good_ticks if good_ticks else 0.0)
        scanned.spans.append((start, end, ticks))
        if start > 0 or end > len(MAGIC):  # more than the file header: records were lost
            scanned.damaged += 1 if v1 else max(1, data.count(_MARKER, start, end))
        scanned.skipped_bytes += end - start
        scanned.lost_ticks += ticks
    return scanned


def _ticks_in(data: bytes, start: int, end: int, v1: bool, bytes_per_tick: float) -> int:
    """The ticks a damaged stretch held: its record's own count where the header looks intact (only the
    payload is damaged), else its size over the segment's bytes per tick."""
    head = _RECORD_V1 if v1 else _RECORD
    if start >= len(MAGIC) and start + head.size <= end:
        fields = head.unpack_from(data, start)
        length, ticks = (fields[0], fields[2]) if v1 else (fields[1], fields[3])
        if (v1 or fields[0] == _MARKER) and start + head.size + length == end and 0 < ticks <= length:
            return int(ticks)
    if bytes_per_tick <= 0 or (start == 0 and end <= len(MAGIC)):
        return 0
    return max(1, round((end - start) / bytes_per_tick))


def _rewrite(path: Path, data: bytes, scan: _Scanned) -> None:
    """Replace a segment with its whole unconfirmed records, in the current format (atomically)."""
    head = _RECORD_V1.size if scan.v1 else _RECORD.size
    body = [
        _record(data[start + head : end], ticks) if scan.v1 else data[start:end] for start, end, ticks in scan.records
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(MAGIC + b"".join(body))
    os.replace(tmp, path)
